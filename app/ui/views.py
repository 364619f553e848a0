"""The dashboard's routes: the overview, a page per deployment (hosts' progress, the log
followed live over Server-Sent Events, the operations' buttons), the approval page, a page
per build, and signing in and out. Every page needs a signed-in session; every form a CSRF
token. Operations call the pipeline as the API does, recording who = the token's name."""

from __future__ import annotations

from collections.abc import Callable

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException

from app import auth, logs, pipeline
from app.context import Context
from app.models import Deployment
from app.settings import mirror_path
from app.ui import commits, reads
from app.ui.signin import check_csrf, sign_in, sign_out, signed_in
from app.web import context

blueprint = Blueprint("ui", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/ui-static")
OPEN = frozenset({"ui.signin", "ui.static"})
FOLLOWED = frozenset({"queued", "running"})
MAX_LINES = 100_000


@blueprint.before_request
def require_session():  # type: ignore[no-untyped-def]
    settings = context().settings
    if not auth.enabled(settings):
        return render_template("ui/disabled.html"), 503
    if request.method == "POST":
        check_csrf()
    g.who = signed_in(settings)
    if g.who is None and request.endpoint not in OPEN:
        if request.endpoint in ("ui.deployment_log", "ui.build_log", "ui.deployment_live"):
            return Response("sign in first\n", status=401, mimetype="text/plain")
        return render_template("ui/signin.html", next=_local(request.full_path)), 401
    return None


@blueprint.errorhandler(HTTPException)
def page_error(exc: HTTPException):  # type: ignore[no-untyped-def]
    return render_template("ui/error.html", error=exc), exc.code


@blueprint.route("/signin", methods=["GET", "POST"])
def signin():  # type: ignore[no-untyped-def]
    if request.method == "GET":
        return render_template("ui/signin.html", next=_local(request.args.get("next")))
    who = sign_in(context().settings, request.form.get("token"))
    if who is None:
        return render_template("ui/signin.html", next=_local(request.form.get("next")),
                               refused=True), 401
    return redirect(_local(request.form.get("next")))


@blueprint.post("/signout")
def signout():  # type: ignore[no-untyped-def]
    sign_out()
    return redirect(url_for("ui.signin"))


@blueprint.get("/")
def index():  # type: ignore[no-untyped-def]
    ctx = context()
    return render_template("ui/index.html", projects=reads.overview(ctx),
                           recent=reads.recent_deployments(ctx), dora=reads.dora(ctx))


@blueprint.get("/deployments/<int:deployment_id>")
def deployment(deployment_id: int):  # type: ignore[no-untyped-def]
    ctx = context()
    row = reads.deployment(ctx, deployment_id) or abort(404)
    # A stream holds one of the web process's threads: follow only a deployment that runs
    # or is about to (one awaiting approval may wait for days; its page polls instead).
    follow = row.state in FOLLOWED
    lines = [] if follow else logs.lines(ctx, "deployment", deployment_id, limit=MAX_LINES)
    return render_template("ui/deployment.html", d=row, hosts=_hosts(ctx, row),
                           lines=lines, follow=follow,
                           audit=reads.audit(ctx, deployment_id))


@blueprint.get("/deployments/<int:deployment_id>/live")
def deployment_live(deployment_id: int):  # type: ignore[no-untyped-def]
    """The part of a deployment's page that changes while it runs (state, buttons, hosts)."""
    ctx = context()
    row = reads.deployment(ctx, deployment_id) or abort(404)
    return render_template("ui/_live.html", d=row, hosts=_hosts(ctx, row))


@blueprint.get("/deployments/<int:deployment_id>/log")
def deployment_log(deployment_id: int):  # type: ignore[no-untyped-def]
    return _stream("deployment", deployment_id)


@blueprint.get("/deployments/<int:deployment_id>/approval")
def approval(deployment_id: int):  # type: ignore[no-untyped-def]
    ctx = context()
    row = reads.deployment(ctx, deployment_id) or abort(404)
    live = reads.live_sha(ctx, row)
    mirror = mirror_path(ctx.settings.data_dir, row.project)
    found = commits.from_mirror(mirror, live, row.sha)
    from_mirror = found is not None
    if found is None:
        found = [commits.Commit(sha) for sha, _ref in
                 reads.builds_between(ctx, row.project, live, row.sha)]
    return render_template("ui/approval.html", d=row, live=live, commits=found,
                           from_mirror=from_mirror)


@blueprint.post("/deployments/<int:deployment_id>/<any(approve, cancel, retry):action>")
def act(deployment_id: int, action: str):  # type: ignore[no-untyped-def]
    operation = {"approve": pipeline.approve, "cancel": pipeline.cancel,
                 "retry": pipeline.retry}[action]
    done = {"approve": "Approved", "cancel": "Cancel asked for", "retry": "Retrying"}[action]
    return _operate(lambda ctx: operation(ctx, deployment_id, by=g.who), done,
                    fallback=deployment_id)


@blueprint.post("/projects/<project>/environments/<environment>/rollback")
def rollback(project: str, environment: str):  # type: ignore[no-untyped-def]
    release = request.form.get("release") or None
    return _operate(lambda ctx: pipeline.rollback(ctx, project, environment, by=g.who,
                                                  release=release), "Rolling back")


@blueprint.get("/builds/<int:build_id>")
def build(build_id: int):  # type: ignore[no-untyped-def]
    ctx = context()
    row = reads.build(ctx, build_id) or abort(404)
    follow = row.state in FOLLOWED
    lines = [] if follow else logs.lines(ctx, "build", build_id, limit=MAX_LINES)
    return render_template("ui/build.html", b=row, lines=lines, follow=follow)


@blueprint.get("/builds/<int:build_id>/log")
def build_log(build_id: int):  # type: ignore[no-untyped-def]
    return _stream("build", build_id)


def _operate(operation: Callable[[Context], Deployment], done: str,
             fallback: int | None = None):  # type: ignore[no-untyped-def]
    """Run an operation; to the deployment's page, saying what happened or why not."""
    try:
        deployment = operation(context())
    except pipeline.OperationError as exc:
        if exc.status == 404:
            abort(404, exc.message)
        flash(exc.message, "error")
        return redirect(url_for("ui.deployment", deployment_id=fallback)
                        if fallback else url_for("ui.index"), code=303)
    flash(f"{done}: deployment {deployment.id}, by {g.who}", "done")
    return redirect(url_for("ui.deployment", deployment_id=deployment.id), code=303)


def _stream(kind: logs.Kind, row_id: int) -> Response:
    """The log followed live as Server-Sent Events (resuming after Last-Event-ID)."""
    ctx = context()
    if logs.state(ctx, kind, row_id) is None:
        abort(404)
    after = logs.last_event_id(request.headers.get("Last-Event-ID"), request.args.get("after"))
    secrets = ctx.secrets()
    stream = (logs.sse(item, secrets) for item in logs.follow(ctx, kind, row_id, after=after))
    return Response(stream, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _hosts(ctx: Context, row: reads.DeploymentRow) -> list[reads.HostRow]:
    """The deployment's hosts; before it starts, the environment's configured hosts."""
    if row.hosts:
        return row.hosts
    env = ctx.config.environment(row.project, row.environment)
    return [reads.HostRow(host=h.spec, state="waiting", step=None, release=None,
                          previous_release=None, uploaded=None, error=None, timings={},
                          started_at=None, finished_at=None) for h in (env.hosts if env else ())]


def _local(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("ui.index")
    return target.rstrip("?") or url_for("ui.index")
