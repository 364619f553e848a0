"""The JSON API (SPEC §4): every route needs `Authorization: Bearer $CONVEYOR_API_TOKEN`."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, jsonify, request
from sqlalchemy import select

from app.models import Build, Delivery, Deployment, DeploymentHost, LogLine, aware
from app.web import context

blueprint = Blueprint("api", __name__, url_prefix="/api")
MAX_LIMIT = 500


@blueprint.before_request
def require_token():  # type: ignore[no-untyped-def]
    token = context().settings.api_token
    if not token:
        return jsonify(error="the API is not enabled",
                       detail="set CONVEYOR_API_TOKEN for the web process"), 503
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(offered.encode(), token.encode()):
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
    return _log(Deployment, deployment_id, LogLine.deployment_id)


@blueprint.get("/builds/<int:build_id>")
def build(build_id: int):  # type: ignore[no-untyped-def]
    with context().db.session() as session:
        found = session.get(Build, build_id) or abort(404)
        return jsonify(_build(found))


@blueprint.get("/builds/<int:build_id>/log")
def build_log(build_id: int):  # type: ignore[no-untyped-def]
    return _log(Build, build_id, LogLine.build_id)


def _log(model: Any, row_id: int, column: Any):  # type: ignore[no-untyped-def]
    with context().db.session() as session:
        session.get(model, row_id) or abort(404)
        lines = session.scalars(select(LogLine).where(column == row_id).order_by(LogLine.id))
        return jsonify(lines=[{"at": _time(line.at), "text": line.text} for line in lines])


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
            "ref": d.ref, "state": d.state, "build": d.build_id, "release": d.release_id,
            "error": d.error, "created_at": _time(d.created_at),
            "started_at": _time(d.started_at), "finished_at": _time(d.finished_at)}
    if hosts:
        data["hosts"] = [_host(h) for h in d.hosts]
    return data


def _host(h: DeploymentHost) -> dict[str, Any]:
    return {"host": h.host, "state": h.state, "step": h.step,
            "previous_release": h.previous_release, "release": h.release,
            "uploaded": h.uploaded, "error": h.error, "timings": h.timings or {},
            "started_at": _time(h.started_at), "finished_at": _time(h.finished_at)}
