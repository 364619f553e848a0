"""The JSON API (SPEC §4): every route needs `Authorization: Bearer $CONVEYOR_API_TOKEN`."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, g, jsonify, request
from sqlalchemy import select

from app import auth, logs, pipeline
from app.context import Context
from app.models import Build, Delivery, Deployment, DeploymentHost, aware
from app.web import context

blueprint = Blueprint("api", __name__, url_prefix="/api")
MAX_LIMIT = 500
_SHA = re.compile(r"[0-9a-f]{40}")


@blueprint.before_request
def require_token():  # type: ignore[no-untyped-def]
    settings = context().settings
    if not auth.enabled(settings):
        return jsonify(error="the API is not enabled",
                       detail="set CONVEYOR_API_TOKEN for the web process"), 503
    g.who = auth.identify(settings, auth.bearer(request.headers.get("Authorization")))
    if g.who is None:
        return jsonify(error="unauthorized",
                       detail="send Authorization: Bearer <CONVEYOR_API_TOKEN>"), 401
    return None


@blueprint.get("/deliveries")
def deliveries():  # type: ignore[no-untyped-def]
    """Every delivery received, refused ones too, newest first (`project`, `provider`, `limit`)."""
    query = select(Delivery).order_by(Delivery.id.desc()).limit(_limit())
    for name in ("project", "provider"):
        if request.args.get(name):
            query = query.where(getattr(Delivery, name) == request.args[name])
    with context().db.session() as session:
        return jsonify(deliveries=[_delivery(d) for d in session.scalars(query)])


@blueprint.get("/deployments")
def deployments():  # type: ignore[no-untyped-def]
    query = select(Deployment).order_by(Deployment.id.desc()).limit(_limit())
    for name in ("project", "environment", "state"):
        if request.args.get(name):
            query = query.where(getattr(Deployment, name) == request.args[name])
    with context().db.session() as session:
        return jsonify(deployments=[_deployment(d) for d in session.scalars(query)])


@blueprint.get("/deployments/<int:deployment_id>")
def deployment(deployment_id: int):  # type: ignore[no-untyped-def]
    with context().db.session() as session:
        found = session.get(Deployment, deployment_id) or abort(404)
        return jsonify(_deployment(found, hosts=True))


@blueprint.get("/deployments/<int:deployment_id>/log")
def deployment_log(deployment_id: int):  # type: ignore[no-untyped-def]
    return _log("deployment", deployment_id)


@blueprint.post("/deployments/<int:deployment_id>/<any(approve, cancel, retry):action>")
def act(deployment_id: int, action: str):  # type: ignore[no-untyped-def]
    """Approve a deployment awaiting approval, cancel one, or retry a failed one."""
    operation = {"approve": pipeline.approve, "cancel": pipeline.cancel,
                 "retry": pipeline.retry}[action]
    return _operate(lambda ctx: operation(ctx, deployment_id, by=_who()))


@blueprint.post("/projects/<project>/environments/<environment>/deploy")
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
        return jsonify(error=exc.message, detail=None), exc.status
    with ctx.db.session() as session:
        found = session.get(Deployment, deployment.id)
        return jsonify(_deployment(found, hosts=True)), 202


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


@blueprint.get("/builds/<int:build_id>")
def build(build_id: int):  # type: ignore[no-untyped-def]
    with context().db.session() as session:
        found = session.get(Build, build_id) or abort(404)
        return jsonify(_build(found))


@blueprint.get("/builds/<int:build_id>/log")
def build_log(build_id: int):  # type: ignore[no-untyped-def]
    return _log("build", build_id)


def _log(kind: logs.Kind, row_id: int):  # type: ignore[no-untyped-def]
    """The log as JSON lines, or followed live with `Accept: text/event-stream`."""
    ctx = context()
    if logs.state(ctx, kind, row_id) is None:
        abort(404)
    after = logs.last_event_id(request.headers.get("Last-Event-ID"), request.args.get("after"))
    if request.accept_mimetypes.best == "text/event-stream":
        secrets = ctx.secrets()
        stream = (logs.sse(item, secrets) for item in logs.follow(ctx, kind, row_id,
                                                                  after=after))
        return Response(stream, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return jsonify(lines=[line.as_json() for line in logs.lines(ctx, kind, row_id,
                                                                after=after)])


def _limit() -> int:
    try:
        return max(1, min(MAX_LIMIT, int(request.args.get("limit", 50))))
    except ValueError:
        abort(400, "limit must be a number")


def _time(moment: datetime | None) -> str | None:
    return aware(moment).isoformat() if moment else None


def _delivery(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "provider": d.provider, "delivery": d.delivery_id, "event": d.event,
            "project": d.project, "repository": d.repository, "ref": d.ref, "sha": d.sha,
            "status_code": d.status_code, "reason": d.reason, "answer": d.answer,
            "done": d.done, "received_at": _time(d.received_at), "duration_ms": d.duration_ms}


def _build(b: Build) -> dict[str, Any]:
    return {"id": b.id, "project": b.project, "sha": b.sha, "ref": b.ref, "state": b.state,
            "error": b.error, "artifact": {"sha256": b.artifact_sha256, "size": b.artifact_size}
            if b.artifact_sha256 else None,
            "created_at": _time(b.created_at), "started_at": _time(b.started_at),
            "finished_at": _time(b.finished_at)}


def _deployment(d: Deployment, *, hosts: bool = False) -> dict[str, Any]:
    data = {"id": d.id, "project": d.project, "environment": d.environment, "sha": d.sha,
            "ref": d.ref, "state": d.state, "kind": d.kind, "build": d.build_id,
            "release": d.release_id, "error": d.error, "source": d.source_id,
            "requested_by": d.requested_by, "approved_by": d.approved_by,
            "approved_at": _time(d.approved_at), "created_at": _time(d.created_at),
            "started_at": _time(d.started_at), "finished_at": _time(d.finished_at)}
    if hosts:
        data["hosts"] = [_host(h) for h in d.hosts]
    return data


def _host(h: DeploymentHost) -> dict[str, Any]:
    return {"host": h.host, "state": h.state, "step": h.step,
            "previous_release": h.previous_release, "release": h.release,
            "uploaded": h.uploaded, "error": h.error, "timings": h.timings or {},
            "started_at": _time(h.started_at), "finished_at": _time(h.finished_at)}
