"""What the dashboard reads from the history: plain values for the templates, read in one
short session each, so that a page never holds a database connection while it renders.

The DORA panel reads `app.dora`'s figures; a deployment page, its entries of the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app import dora as dora_figures
from app.context import Context
from app.models import AuditEntry, Build, Deployment, DeploymentHost
from app.pipeline.deployments import live_deployment
from app.queries import Running, running_on_hosts

RECENT = 25


@dataclass(frozen=True)
class HostLive:
    """What one host of an environment runs, as far as Conveyor knows."""

    host: str
    release: str | None
    sha: str | None
    since: datetime | None


@dataclass(frozen=True)
class EnvironmentView:
    """One environment on the overview: its hosts and the deployment live there."""

    project: str
    name: str
    hosts: list[HostLive]
    live: DeploymentRow | None
    approval: str
    promote_from: str | None


@dataclass(frozen=True)
class ProjectView:
    name: str
    repo: str
    environments: list[EnvironmentView]


@dataclass(frozen=True)
class HostRow:
    """One host's progress in one deployment."""

    host: str
    state: str
    step: str | None
    release: str | None
    previous_release: str | None
    uploaded: bool | None
    error: str | None
    timings: dict[str, Any]
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class DeploymentRow:
    """A deployment as the pages show it."""

    id: int
    project: str
    environment: str
    sha: str
    ref: str
    state: str
    kind: str
    build_id: int
    release: str | None
    error: str | None
    source_id: int | None
    requested_by: str | None
    approved_by: str | None
    approved_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    hosts: list[HostRow] = field(default_factory=list)


@dataclass(frozen=True)
class BuildRow:
    id: int
    project: str
    sha: str
    ref: str
    state: str
    error: str | None
    artifact_sha256: str | None
    artifact_size: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deployments: list[int]


def overview(ctx: Context) -> list[ProjectView]:
    """Every configured project and environment with the release live on each host."""
    projects = []
    with ctx.db.session() as session:
        running = running_on_hosts(session)
        for project in ctx.config.projects.values():
            envs = []
            for env in project.environments.values():
                live = live_deployment(session, project.name, env.name)
                envs.append(EnvironmentView(
                    project=project.name, name=env.name,
                    hosts=[_host_live(running, project.name, env.name, h.spec)
                           for h in env.hosts],
                    live=_row(live) if live else None, approval=env.approval,
                    promote_from=env.promote_from))
            projects.append(ProjectView(name=project.name, repo=project.repo,
                                        environments=envs))
    return projects


def recent_deployments(ctx: Context, limit: int = RECENT) -> list[DeploymentRow]:
    """The newest deployments of every project, newest first."""
    with ctx.db.session() as session:
        found = session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(limit))
        return [_row(d) for d in found]


def deployment(ctx: Context, deployment_id: int) -> DeploymentRow | None:
    """One deployment with each host's progress, or None."""
    with ctx.db.session() as session:
        found = session.get(Deployment, deployment_id)
        return _row(found, hosts=True) if found else None


def live_sha(ctx: Context, row: DeploymentRow) -> str | None:
    """The commit live on the deployment's environment (what a promotion adds to)."""
    with ctx.db.session() as session:
        live = live_deployment(session, row.project, row.environment)
        return live.sha if live else None


def builds_between(ctx: Context, project: str, live_sha: str | None,
                   sha: str) -> list[tuple[str, str]]:
    """(sha, ref) of the builds Conveyor made of `project` after the one of `live_sha`, up to
    the one of `sha`, newest first: the commits being promoted as far as the database knows
    (when the git mirror is not on this machine)."""
    with ctx.db.session() as session:
        rows = list(session.execute(select(Build.id, Build.sha, Build.ref)
                                    .where(Build.project == project).order_by(Build.id.desc())))
    upto = next((r.id for r in rows if r.sha == sha), None)
    since = next((r.id for r in rows if r.sha == live_sha), 0) if live_sha else 0
    seen: set[str] = set()
    found = []
    for r in rows:
        if upto is not None and since < r.id <= upto and r.sha not in seen:
            seen.add(r.sha)
            found.append((r.sha, r.ref))
    return found


def build(ctx: Context, build_id: int) -> BuildRow | None:
    """One build and the ids of its deployments, or None."""
    with ctx.db.session() as session:
        b = session.get(Build, build_id)
        if b is None:
            return None
        ids = list(session.scalars(select(Deployment.id).where(Deployment.build_id == b.id)
                                   .order_by(Deployment.id)))
        return BuildRow(id=b.id, project=b.project, sha=b.sha, ref=b.ref, state=b.state,
                        error=b.error, artifact_sha256=b.artifact_sha256,
                        artifact_size=b.artifact_size, created_at=b.created_at,
                        started_at=b.started_at, finished_at=b.finished_at, deployments=ids)


def dora(ctx: Context, project: str | None = None, environment: str | None = None,
         days: int = 30) -> list[dict[str, Any]]:
    """DORA figures (`app.dora`) of each environment that had a deployment in the last
    `days`: each a dict with `project`, `environment`, `deployment_frequency` (per day),
    `lead_time` (seconds, median), `change_failure_rate` (0..1) and `time_to_restore`
    (seconds, median); None where nothing was measured."""
    answer = dora_figures.dora(ctx, project=project, environment=environment, days=days)
    return [{"project": f["project"], "environment": f["environment"],
             "deployment_frequency": f["deployment_frequency"],
             "lead_time": f["lead_time_seconds"],
             "change_failure_rate": f["change_failure_rate"],
             "time_to_restore": f["time_to_restore_seconds"]}
            for f in answer["environments"] if f["deployments"] or f["changes"]]


def audit(ctx: Context, deployment_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """Who did what to a deployment (the audit log), newest first: each a dict with `at`
    (datetime), `who`, `action` and `detail`."""
    with ctx.db.session() as session:
        entries = session.scalars(select(AuditEntry).filter_by(deployment_id=deployment_id)
                                  .order_by(AuditEntry.id.desc()).limit(limit))
        return [{"at": e.at, "who": e.by, "action": e.action, "detail": e.detail}
                for e in entries]


def _host_live(running: dict[tuple[str, str, str], Running], project: str,
               environment: str, spec: str) -> HostLive:
    now = running.get((project, environment, spec))
    return HostLive(host=spec, release=now.release if now else None,
                    sha=now.sha if now else None, since=now.since if now else None)


def _row(d: Deployment, *, hosts: bool = False) -> DeploymentRow:
    return DeploymentRow(
        id=d.id, project=d.project, environment=d.environment, sha=d.sha, ref=d.ref,
        state=d.state, kind=d.kind, build_id=d.build_id, release=d.release_id, error=d.error,
        source_id=d.source_id, requested_by=d.requested_by, approved_by=d.approved_by,
        approved_at=d.approved_at, created_at=d.created_at, started_at=d.started_at,
        finished_at=d.finished_at, hosts=[_host(h) for h in d.hosts] if hosts else [])


def _host(h: DeploymentHost) -> HostRow:
    return HostRow(host=h.host, state=h.state, step=h.step, release=h.release,
                   previous_release=h.previous_release, uploaded=h.uploaded, error=h.error,
                   timings=dict(h.timings or {}), started_at=h.started_at,
                   finished_at=h.finished_at)
