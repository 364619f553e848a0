"""The JSON API (SPEC §4): every route needs `Authorization: Bearer <token>`; errors are
`{"error": "<status name>", "detail": "<one sentence>"}`. `app/openapi.py` describes it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, abort, current_app, g, jsonify, request
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from app import auth, dora, logs, openapi, pipeline, queries
from app.context import Context
from app.models import Build, Deployment
from app.web import context

blueprint = Blueprint("api", __name__, url_prefix="/api")
MAX_LIMIT = queries.MAX_LIMIT
_SHA = re.compile(r"[0-9a-f]{40}")
PAGED = ("limit", "cursor")
View = TypeVar("View", bound=Callable[..., Any])


def accepts(*names: str) -> Callable[[View], View]:
    """The query parameters a route takes; any other is refused with 400 (a typo never
    silently widens a list). The OpenAPI document reads them from here."""
    def mark(view: View) -> View:
        view.query_params = names  # type: ignore[attr-defined]
        return view
    return mark


def error(status: int, detail: str):  # type: ignore[no-untyped-def]
    """An API error answer: the status's name and one sentence."""
    return jsonify(error=status_name(status), detail=detail), status


def status_name(status: int) -> str:
    """`not_found` for 404: the HTTP status's name, in snake case."""
    from werkzeug.http import HTTP_STATUS_CODES

    name = HTTP_STATUS_CODES.get(status, "error")
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("'", "")).strip("_")


def is_api(path: str) -> bool:
    """Whether a request path is the API's (its errors are the API's JSON)."""
    return path == "/api" or path.startswith("/api/")


def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
    """An HTTP error inside /api, in the API's words (the app's handler calls this). A path
    or method no route takes is refused like any request first when the token is wrong,
    so that the API's shape is not told to whoever asks."""
    code = exc.code or 500
    refused = _token_refused() if request.url_rule is None else None
    if refused is not None:
        return refused
    if code == 404 and request.url_rule is None:
        detail = f"no API route {request.path}; see /api/openapi.json"
    elif code == 405:
        detail = f"{request.path} does not answer {request.method}"
    else:
        detail = exc.description or status_name(code).replace("_", " ")
    response = error(code, detail)
    if code == 405 and exc.get_response().headers.get("Allow"):
        response[0].headers["Allow"] = exc.get_response().headers["Allow"]
    return response


@blueprint.before_request
def require_token():  # type: ignore[no-untyped-def]
    """Refuse a request without a valid token, or with a query parameter its route does not
    take; else remember who asks (`g.who`)."""
    refused = _token_refused()
    if refused is not None:
        return refused
    view = current_app.view_functions.get(request.endpoint or "")
    unknown = sorted(set(request.args) - set(getattr(view, "query_params", ())))
    if unknown:
        return error(400, f"unknown query parameter {unknown[0]!r}")
    return None


def _token_refused():  # type: ignore[no-untyped-def]
    settings = context().settings
    if not auth.enabled(settings):
        return error(503, "the API is not enabled: set CONVEYOR_API_TOKEN for the web process")
    g.who = auth.identify(settings, auth.bearer(request.headers.get("Authorization")))
    if g.who is None:
        return error(401, "send Authorization: Bearer <token> with an API token")
    return None


def _page(name: str, page: queries.Page):  # type: ignore[no-untyped-def]
    return jsonify({name: page.items, "next": page.next})


def _paging() -> dict[str, int | None]:
    try:
        return {"limit": queries.limit_of(request.args.get("limit")),
                "cursor": queries.cursor_of(request.args.get("cursor"))}
    except queries.QueryError as exc:
        abort(400, str(exc))


def _args(*names: str) -> dict[str, str | None]:
    return {name: request.args.get(name) or None for name in names}


@blueprint.get("/projects")
@accepts()
def projects():  # type: ignore[no-untyped-def]
    """Every project, its environments, and the release live on each host since when."""
    return jsonify(projects=queries.projects(context()))


@blueprint.get("/deliveries")
@accepts("project", "provider", *PAGED)
def deliveries():  # type: ignore[no-untyped-def]
    """Every delivery received, refused ones too, newest first."""
    return _page("deliveries", queries.deliveries(context(), **_args("project", "provider"),
                                                  **_paging()))


@blueprint.get("/deployments")
@accepts("project", "environment", "state", *PAGED)
def deployments():  # type: ignore[no-untyped-def]
    """Deployments, newest first."""
    return _page("deployments", queries.deployments(
        context(), **_args("project", "environment", "state"), **_paging()))


@blueprint.get("/deployments/<int:deployment_id>")
@accepts()
def deployment(deployment_id: int):  # type: ignore[no-untyped-def]
    """One deployment: its hosts and their steps, and who asked for what (`audit`)."""
    found = queries.deployment(context(), deployment_id)
    if found is None:
        return error(404, f"there is no deployment {deployment_id}")
    return jsonify(found)


@blueprint.get("/deployments/<int:deployment_id>/log")
@accepts("after")
def deployment_log(deployment_id: int):  # type: ignore[no-untyped-def]
    return _log("deployment", deployment_id)


@blueprint.post("/deployments/<int:deployment_id>/<any(approve, cancel, retry):action>")
@accepts()
def act(deployment_id: int, action: str):  # type: ignore[no-untyped-def]
    """Approve a deployment awaiting approval, cancel one, or retry a failed one."""
    operation = {"approve": pipeline.approve, "cancel": pipeline.cancel,
                 "retry": pipeline.retry}[action]
    return _operate(lambda ctx: operation(ctx, deployment_id, by=_who()))


@blueprint.post("/projects/<project>/environments/<environment>/deploy")
@accepts()
def deploy(project: str, environment: str):  # type: ignore[no-untyped-def]
    """Deploy a commit by hand: `{"sha"}`, or `{"ref"}` for the commit last pushed to it."""
    body = _body()

    def start(ctx: Context) -> Deployment:
        env = pipeline.configured_environment(ctx, project, environment)
        configured = ctx.config.projects[project]
        sha, ref = _commit(ctx, project, body)
        clone_url = pipeline.known_clone_url(ctx, configured) or ""
        _build, deployment = pipeline.deploy_by_hand(
            ctx, configured, env, sha=sha, ref=ref, repository=configured.repo,
            clone_url=clone_url, by=_who())
        return deployment

    return _operate(start)


@blueprint.post("/projects/<project>/environments/<environment>/rollback")
@accepts()
def rollback(project: str, environment: str):  # type: ignore[no-untyped-def]
    """Roll back to the last good release before the live one, or to `{"release"}`."""
    release = _body().get("release")
    if release is not None and not isinstance(release, str):
        abort(400, "release must be a release id")
    return _operate(lambda ctx: pipeline.rollback(ctx, project, environment, by=_who(),
                                                  release=release))


def _operate(operation: Callable[[Context], Deployment]):  # type: ignore[no-untyped-def]
    ctx = context()
    try:
        deployment = operation(ctx)
    except pipeline.OperationError as exc:
        return error(exc.status, exc.message)
    return jsonify(queries.deployment(ctx, deployment.id)), 202


def _commit(ctx: Context, project: str, body: dict[str, Any]) -> tuple[str, str]:
    """(sha, ref) of a manual deploy: the sha given, or the commit last pushed to the ref."""
    sha, ref = body.get("sha"), body.get("ref")
    if sha is not None:
        if not isinstance(sha, str) or not _SHA.fullmatch(sha):
            abort(400, "sha must be a full 40-character commit id")
        return sha, ref if isinstance(ref, str) else ""
    if not isinstance(ref, str) or not ref:
        abort(400, 'send {"sha": "<commit id>"} or {"ref": "<branch, tag or full ref>"}')
    refs = [ref] if ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    with ctx.db.session() as session:
        found = session.execute(select(Build.sha, Build.ref).where(
            Build.project == project, Build.ref.in_(refs)).order_by(Build.id.desc())
            .limit(1)).first()
    if found is None:
        raise pipeline.OperationError(404, f"no push of {ref!r} has reached Conveyor; give"
                                           " the commit's sha")
    return found.sha, found.ref


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        abort(400, "the body must be a JSON object")
    return body


def _who() -> str:
    """Who acts: the name of the token that signed in (the single API token is `admin`)."""
    return g.who


@blueprint.get("/builds")
@accepts("project", "state", "sha", *PAGED)
def builds():  # type: ignore[no-untyped-def]
    """Builds, newest first."""
    return _page("builds", queries.builds(context(), **_args("project", "state", "sha"),
                                          **_paging()))


@blueprint.get("/builds/<int:build_id>")
@accepts()
def build(build_id: int):  # type: ignore[no-untyped-def]
    """One build: its state, artifact and times."""
    found = queries.build(context(), build_id)
    if found is None:
        return error(404, f"there is no build {build_id}")
    return jsonify(found)


@blueprint.get("/builds/<int:build_id>/log")
@accepts("after")
def build_log(build_id: int):  # type: ignore[no-untyped-def]
    return _log("build", build_id)


def _log(kind: logs.Kind, row_id: int):  # type: ignore[no-untyped-def]
    """The log as JSON lines, or followed live with `Accept: text/event-stream`."""
    ctx = context()
    if logs.state(ctx, kind, row_id) is None:
        return error(404, f"there is no {kind} {row_id}")
    after = logs.last_event_id(request.headers.get("Last-Event-ID"), request.args.get("after"))
    if request.accept_mimetypes.best == "text/event-stream":
        secrets = ctx.secrets()
        stream = (logs.sse(item, secrets) for item in logs.follow(ctx, kind, row_id,
                                                                  after=after))
        return Response(stream, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return jsonify(lines=[line.as_json() for line in logs.lines(ctx, kind, row_id,
                                                                after=after)])


@blueprint.get("/audit")
@accepts("project", "environment", *PAGED)
def audit():  # type: ignore[no-untyped-def]
    """Who approved, canceled, retried, rolled back or deployed by hand, newest first."""
    return _page("audit", queries.audit(context(), **_args("project", "environment"),
                                        **_paging()))


@blueprint.get("/dora")
@accepts("project", "environment", "days")
def dora_figures():  # type: ignore[no-untyped-def]
    """DORA's four keys per project and environment over the last `days` (default 30)."""
    ctx = context()
    project, environment = _args("project", "environment").values()
    if project and project not in ctx.config.projects:
        return error(404, f"there is no project {project!r}")
    if environment and not any(environment in p.environments
                               for p in ctx.config.projects.values()
                               if not project or p.name == project):
        return error(404, f"there is no environment {environment!r}")
    days = request.args.get("days") or str(dora.DEFAULT_DAYS)
    if not days.isdigit() or not 1 <= int(days) <= dora.MAX_DAYS:
        return error(400, f"days must be a whole number from 1 to {dora.MAX_DAYS}")
    return jsonify(dora.dora(ctx, project=project, environment=environment, days=int(days)))


@blueprint.get("/openapi.json")
@accepts()
def openapi_document():  # type: ignore[no-untyped-def]
    """This API's OpenAPI 3.1 document."""
    return jsonify(openapi.document())
