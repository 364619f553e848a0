"""The read side shared by the JSON API and the dashboard: projects and what each host runs,
deliveries, builds, deployments and the audit log, as JSON-ready dicts.

Lists are newest first and paged by a cursor: each page says `next`, the cursor of the page
after it (None on the last), which the next call passes back. Nothing here needs a Flask
request: the dashboard calls the same functions with a context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.context import Context
from app.models import (
    AuditEntry,
    Build,
    Delivery,
    Deployment,
    DeploymentHost,
    HostRelease,
    Release,
    aware,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class QueryError(ValueError):
    """A parameter the read side cannot use; the message says which and why."""


@dataclass(frozen=True)
class Page:
    """One page of a list: its items, and the cursor of the next page (None: no more)."""

    items: list[dict[str, Any]]
    next: str | None


def limit_of(value: str | None) -> int:
    """The page size asked for (`limit`): 1 to MAX_LIMIT, DEFAULT_LIMIT when not given."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def cursor_of(value: str | None) -> int | None:
    """The position a `cursor` names (the id the previous page ended at), or None."""
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18 or int(value) < 1:
        raise QueryError("cursor must be the `next` of an earlier answer")
    return int(value)


@dataclass(frozen=True)
class Running:
    """What Conveyor last put on one host of an environment, and since when."""

    release: str
    sha: str | None
    since: datetime | None
    deployment: int | None


def running_on_hosts(session: Session) -> dict[tuple[str, str, str], Running]:
    """(project, environment, host) → the release live there, as far as Conveyor's
    deployments know; two queries, whatever the number of hosts."""
    live = [row for row in session.scalars(select(HostRelease)) if row.live_release]
    wanted = {row.live_release for row in live}
    releases = {(r.project, r.environment, r.release_id): r for r in session.scalars(
        select(Release).where(Release.release_id.in_(wanted)))} if wanted else {}
    answer = {}
    for row in live:
        release = releases.get((row.project, row.environment, row.live_release))
        answer[(row.project, row.environment, row.host)] = Running(
            release=row.live_release or "", sha=release.sha if release else None,
            since=release.live_at if release and release.live_at else row.updated_at,
            deployment=row.deployment_id)
    return answer


def projects(ctx: Context) -> list[dict[str, Any]]:
    """Every configured project, its environments, and the release live on each host (with
    its commit and since when), as far as Conveyor's deployments know."""
    with ctx.db.session() as session:
        running = running_on_hosts(session)
    answer = []
    for project in ctx.config.projects.values():
        environments = []
        for env in project.environments.values():
            hosts = []
            for host in env.hosts:
                now = running.get((project.name, env.name, host.spec))
                hosts.append({"host": host.spec, "release": now.release if now else None,
                              "sha": now.sha if now else None,
                              "since": _time(now.since) if now else None,
                              "deployment": now.deployment if now else None})
            environments.append({"name": env.name, "approval": env.approval,
                                 "promote_from": env.promote_from, "url": env.url,
                                 "hosts": hosts})
        answer.append({"name": project.name, "provider": project.provider,
                       "repo": project.repo, "environments": environments})
    return answer


def deliveries(ctx: Context, *, project: str | None = None, provider: str | None = None,
               limit: int = DEFAULT_LIMIT, cursor: int | None = None) -> Page:
    """Every delivery received, refused ones too, newest first."""
    query = _filtered(select(Delivery), Delivery, project=project, provider=provider)
    return _page(ctx, query, Delivery, limit, cursor, delivery_json)


def builds(ctx: Context, *, project: str | None = None, state: str | None = None,
           sha: str | None = None, limit: int = DEFAULT_LIMIT,
           cursor: int | None = None) -> Page:
    """Builds, newest first."""
    query = _filtered(select(Build), Build, project=project, state=state, sha=sha)
    return _page(ctx, query, Build, limit, cursor, build_json)


def build(ctx: Context, build_id: int) -> dict[str, Any] | None:
    """One build, or None."""
    with ctx.db.session() as session:
        found = session.get(Build, build_id)
        return build_json(found) if found else None


def deployments(ctx: Context, *, project: str | None = None, environment: str | None = None,
                state: str | None = None, limit: int = DEFAULT_LIMIT,
                cursor: int | None = None) -> Page:
    """Deployments, newest first."""
    query = _filtered(select(Deployment), Deployment, project=project,
                      environment=environment, state=state)
    return _page(ctx, query, Deployment, limit, cursor, deployment_json)


def deployment(ctx: Context, deployment_id: int) -> dict[str, Any] | None:
    """One deployment with its hosts and its audit entries, or None."""
    with ctx.db.session() as session:
        found = session.get(Deployment, deployment_id)
        if found is None:
            return None
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.deployment_id == deployment_id).order_by(AuditEntry.id))
        return {**deployment_json(found, hosts=True),
                "audit": [audit_json(entry) for entry in entries]}


def audit(ctx: Context, *, project: str | None = None, environment: str | None = None,
          limit: int = DEFAULT_LIMIT, cursor: int | None = None) -> Page:
    """The audit log, newest first."""
    query = _filtered(select(AuditEntry), AuditEntry, project=project,
                      environment=environment)
    return _page(ctx, query, AuditEntry, limit, cursor, audit_json)


def _filtered(query: Select, model: Any, **equal: str | None) -> Select:
    for name, value in equal.items():
        if value:
            query = query.where(getattr(model, name) == value)
    return query


def _page(ctx: Context, query: Select, model: Any, limit: int, cursor: int | None,
          as_json: Any) -> Page:
    """One page of `query` by descending id: one row more than asked tells if more follow."""
    if cursor is not None:
        query = query.where(model.id < cursor)
    with ctx.db.session() as session:
        rows: Sequence[Any] = list(session.scalars(
            query.order_by(model.id.desc()).limit(limit + 1)))
        items = [as_json(row) for row in rows[:limit]]
    return Page(items, str(rows[limit - 1].id) if len(rows) > limit else None)


def _time(moment: datetime | None) -> str | None:
    return aware(moment).isoformat() if moment else None


def delivery_json(d: Delivery) -> dict[str, Any]:
    """A delivery as the API shows it."""
    return {"id": d.id, "provider": d.provider, "delivery": d.delivery_id, "event": d.event,
            "project": d.project, "repository": d.repository, "ref": d.ref, "sha": d.sha,
            "status_code": d.status_code, "reason": d.reason, "answer": d.answer,
            "done": d.done, "received_at": _time(d.received_at), "duration_ms": d.duration_ms}


def build_json(b: Build) -> dict[str, Any]:
    """A build as the API shows it."""
    return {"id": b.id, "project": b.project, "sha": b.sha, "ref": b.ref, "state": b.state,
            "attempt": b.attempt, "error": b.error,
            "artifact": {"sha256": b.artifact_sha256, "size": b.artifact_size}
            if b.artifact_sha256 else None, "committed_at": _time(b.committed_at),
            "created_at": _time(b.created_at), "started_at": _time(b.started_at),
            "finished_at": _time(b.finished_at)}


def deployment_json(d: Deployment, *, hosts: bool = False) -> dict[str, Any]:
    """A deployment as the API shows it; with `hosts`, each host's step and releases."""
    data: dict[str, Any] = {
        "id": d.id, "project": d.project, "environment": d.environment, "sha": d.sha,
        "ref": d.ref, "state": d.state, "kind": d.kind, "build": d.build_id,
        "release": d.release_id, "error": d.error, "source": d.source_id,
        "requested_by": d.requested_by, "approved_by": d.approved_by,
        "approved_at": _time(d.approved_at), "created_at": _time(d.created_at),
        "started_at": _time(d.started_at), "finished_at": _time(d.finished_at)}
    if hosts:
        data["hosts"] = [host_json(h) for h in d.hosts]
    return data


def host_json(h: DeploymentHost) -> dict[str, Any]:
    """What a deployment did on one host."""
    return {"host": h.host, "state": h.state, "step": h.step,
            "previous_release": h.previous_release, "release": h.release,
            "uploaded": h.uploaded, "error": h.error, "timings": h.timings or {},
            "started_at": _time(h.started_at), "finished_at": _time(h.finished_at)}


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """One audit entry: who did what, when."""
    return {"id": entry.id, "at": _time(entry.at), "by": entry.by, "action": entry.action,
            "project": entry.project, "environment": entry.environment,
            "deployment": entry.deployment_id, "detail": entry.detail}

