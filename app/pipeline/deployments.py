"""Deployments: created once per push (or by hand), started, tracked per host, finished; and
what they leave known: each release good or bad, what each host runs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import config as cfg
from app.context import Context
from app.events import Push
from app.models import Build, Deployment, DeploymentHost, HostRelease, Release, utcnow
from app.pipeline.audit import CLI, record
from app.pipeline.common import insert_once, log_rows
from app.pipeline.rules import (
    marks_release_bad,
    mask,
    next_release_id,
    rollback_target,
    settings_hash,
)
from app.pipeline.states import changes


@dataclass(frozen=True)
class Artifact:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DeploymentOrder:
    """What a deploy job needs to put one artifact live on one environment."""

    deployment_id: int
    project: cfg.Project
    environment: cfg.Environment
    sha: str
    ref: str
    release_id: str
    artifact: Artifact
    hosts: tuple[cfg.Host, ...] = ()   # the hosts worked on: every host, or a retry's
    # A rollback's release exists on the hosts already (and a retry's may): prepare takes the
    # folder it finds, and a failure never removes a rollback's.
    existing_release: bool = False
    keep_release: bool = False


#: What makes a deployment one: an environment and what asked for it (a push, a promotion).
DEPLOYMENT_KEY = ("project", "environment", "trigger")


def push_deployment(project: cfg.Project, env: cfg.Environment, build_id: int,
                    push: Push) -> dict[str, Any]:
    """The values of the deployment a push makes on an environment: one per push and
    environment, however often it is delivered (intake's fast path and
    `find_or_create_deployment` alike)."""
    return {"project": project.name, "environment": env.name,
            "trigger": f"push:{push.ref}:{push.after}", "build_id": build_id,
            "sha": push.after, "ref": push.ref}


def find_or_create_deployment(ctx: Context, project: cfg.Project, env: cfg.Environment,
                              build: Build, push: Push) -> tuple[Deployment, bool]:
    values = push_deployment(project, env, build.id, push)
    key = {name: values[name] for name in DEPLOYMENT_KEY}
    return insert_once(ctx, Deployment(**values), select(Deployment).filter_by(**key))


def create_manual_deployment(ctx: Context, project: cfg.Project, env: cfg.Environment,
                             build: Build, *, sha: str, ref: str,
                             by: str = CLI) -> Deployment:
    """A new deployment asked for by hand (`conveyor deploy`): never merged with another;
    recorded in the audit log with it."""
    deployment = Deployment(project=project.name, environment=env.name,
                            trigger=f"manual:{uuid.uuid4().hex}", build_id=build.id,
                            sha=sha, ref=ref, requested_by=by)
    with ctx.db.session() as session:
        session.add(deployment)
        record(session, "deploy", deployment, by=by,
               detail=f"deployed {sha[:7]}" + (f" ({ref})" if ref else "") + " by hand")
    return deployment


def find_build(ctx: Context, project: cfg.Project, sha: str) -> Build | None:
    """The build of `sha` with the project's current build settings, if there is one."""
    with ctx.db.session() as session:
        return session.scalar(select(Build).filter_by(
            project=project.name, sha=sha, settings_hash=settings_hash(project.build)))


def known_clone_url(ctx: Context, project: cfg.Project) -> str | None:
    """Where the project's repository is: `clone_url` in the pipeline file, or the URL the
    newest push of it carried."""
    if project.clone_url:
        return project.clone_url
    with ctx.db.session() as session:
        return session.scalar(select(Build.clone_url).where(
            Build.project == project.name, Build.clone_url != "").order_by(Build.id.desc())
            .limit(1))


def deployment_target(ctx: Context, deployment_id: int,
                      state: str = "queued") -> tuple[str, str] | None:
    """(project, environment) of a deployment in `state` (by default: still to run), else
    None."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None or deployment.state != state:
            return None
        return deployment.project, deployment.environment


def start_deployment(ctx: Context, deployment_id: int) -> DeploymentOrder | None:
    """Mark a queued deployment running and say what to do; None when it is not queued."""
    with changes(ctx) as change:
        session = change.session
        deployment = session.get(Deployment, deployment_id, with_for_update=True)
        if deployment is None or deployment.state != "queued":
            return None
        env = ctx.config.environment(deployment.project, deployment.environment)
        if env is None or deployment.build.state != "succeeded":
            change.move(deployment, "error",
                        error="the environment is no longer configured or has no artifact")
            return None
        change.move(deployment, "running")
        if not deployment.release_id:
            latest = session.scalar(select(func.max(Deployment.release_id)).where(
                Deployment.project == deployment.project,
                Deployment.environment == deployment.environment))
            deployment.release_id = next_release_id(deployment.started_at, deployment.sha,
                                                    latest)
        order = order_of(ctx, deployment)
        assert order is not None  # configured: checked above
        for host in order.hosts:
            session.add(DeploymentHost(deployment_id=deployment.id, host=host.spec))
        return order


def order_of(ctx: Context, deployment: Deployment) -> DeploymentOrder | None:
    """What running (or putting back) a deployment that has its release id takes; None when
    its environment is no longer configured."""
    env = ctx.config.environment(deployment.project, deployment.environment)
    if env is None or not deployment.release_id:
        return None
    project = ctx.config.projects[deployment.project]
    build = deployment.build
    only = set(deployment.hosts_only or ())
    return DeploymentOrder(
        deployment.id, project, env, deployment.sha, deployment.ref, deployment.release_id,
        Artifact(build.artifact_path or "", build.artifact_sha256 or "", build.artifact_size or 0),
        hosts=tuple(h for h in env.hosts if not only or h.spec in only),
        existing_release=deployment.kind in ("rollback", "retry"),
        keep_release=deployment.kind == "rollback")


def update_host(ctx: Context, deployment_id: int, host: str, *, log: Sequence[str] = (),
                **fields: Any) -> None:
    """Record progress on one host: `state`, `step`, `previous_release`, `release` (live after),
    `uploaded`, `timings`, `error`; and the deployment's `log` lines that came with it, in the
    same transaction (a deployment writes as it goes, so it writes seldom)."""
    update_hosts(ctx, deployment_id, {host: fields}, log=log)


def update_hosts(ctx: Context, deployment_id: int, updates: Mapping[str, Mapping[str, Any]], *,
                 log: Sequence[str] = ()) -> None:
    """Record progress on several hosts at once (`{host: fields}`, as for `update_host`),
    with log lines, in one transaction."""
    secrets = ctx.secrets()
    with ctx.db.session() as session:
        session.add_all(log_rows(ctx, log, deployment_id=deployment_id))
        query = select(DeploymentHost).where(DeploymentHost.deployment_id == deployment_id)
        if len(updates) == 1:
            query = query.where(DeploymentHost.host == next(iter(updates)))
        rows = {row.host: row for row in session.scalars(query)}
        for host, fields in updates.items():
            if host in rows:
                _apply(rows[host], dict(fields), secrets)


def _apply(row: DeploymentHost, fields: dict[str, Any], secrets: tuple[str, ...]) -> None:
    if fields.get("error"):
        fields["error"] = mask(fields["error"], secrets)
    if row.started_at is None:
        row.started_at = utcnow()
    if fields.get("state") in ("succeeded", "failed", "rolled_back", "canceled", "error"):
        row.finished_at = utcnow()
    for name, value in fields.items():
        setattr(row, name, value)


def record_end(ctx: Context, deployment_id: int, state: str,
               error: str | None = None) -> Deployment | None:
    """Record the end of a running deployment, what each host runs now, and whether the
    release is good or bad (a rollback that succeeded marks the release it replaced bad);
    the deployment, or None when it was not running."""
    with changes(ctx) as change:
        deployment = change.session.get(Deployment, deployment_id, with_for_update=True)
        if deployment is None or deployment.state != "running":
            return None
        change.move(deployment, state, error=error)
        if deployment.release_id:
            _record_release(change.session, deployment)
            _record_hosts(change.session, deployment)
        if state == "succeeded" and deployment.kind == "rollback" and deployment.replaces_release:
            _mark_bad(change.session, deployment.project, deployment.environment,
                      deployment.replaces_release,
                      f"rolled back to {deployment.release_id} by deployment {deployment.id}")
    return deployment


def _record_release(session: Session, deployment: Deployment) -> None:
    release = session.scalar(select(Release).filter_by(
        project=deployment.project, environment=deployment.environment,
        release_id=deployment.release_id))
    if release is None:
        release = Release(project=deployment.project, environment=deployment.environment,
                          release_id=deployment.release_id, deployment_id=deployment.id,
                          build_id=deployment.build_id, sha=deployment.sha, ref=deployment.ref)
        session.add(release)
    if deployment.state == "succeeded":  # live everywhere: good (a retry clears its mark)
        release.live_at = deployment.finished_at
        release.bad, release.bad_reason, release.marked_bad_at = False, None, None
    elif marks_release_bad(deployment.state):
        release.bad, release.marked_bad_at = True, deployment.finished_at
        release.bad_reason = deployment.error


def _record_hosts(session: Session, deployment: Deployment) -> None:
    """Each host's live release after the deployment (when it is known) and last good one."""
    for host in deployment.hosts:
        if host.release is None and host.previous_release is None and host.state != "succeeded":
            continue  # never reached: nothing learnt about this host
        row = session.scalar(select(HostRelease).filter_by(
            project=deployment.project, environment=deployment.environment, host=host.host))
        if row is None:
            row = HostRelease(project=deployment.project, environment=deployment.environment,
                              host=host.host)
            session.add(row)
        row.live_release, row.deployment_id = host.release, deployment.id
        if deployment.state == "succeeded":
            row.last_good_release = host.release


def mark_release_bad(ctx: Context, project: str, environment: str, release_id: str,
                     reason: str) -> None:
    """Mark a release bad (e.g. rolled back by hand): never again a rollback target."""
    with ctx.db.session() as session:
        _mark_bad(session, project, environment, release_id, mask(reason, ctx.secrets()))


def _mark_bad(session: Session, project: str, environment: str, release_id: str,
              reason: str) -> None:
    release = session.scalar(select(Release).filter_by(
        project=project, environment=environment, release_id=release_id))
    if release is not None and not release.bad:
        release.bad, release.marked_bad_at, release.bad_reason = True, utcnow(), reason


def release_commits(ctx: Context, project: str, environment: str,
                    release_ids: set[str]) -> dict[str, tuple[str, str]]:
    """(sha, ref) of each release id Conveyor made in this environment."""
    if not release_ids:
        return {}
    with ctx.db.session() as session:
        rows = session.execute(select(Deployment.release_id, Deployment.sha, Deployment.ref)
                               .where(Deployment.project == project,
                                      Deployment.environment == environment,
                                      Deployment.release_id.in_(release_ids)))
        return {release_id: (sha, ref) for release_id, sha, ref in rows}


def live_deployment(session: Session, project: str, environment: str) -> Deployment | None:
    """The deployment whose release an environment runs: the last one that succeeded."""
    return session.scalar(select(Deployment).where(
        Deployment.project == project, Deployment.environment == environment,
        Deployment.state == "succeeded").order_by(Deployment.finished_at.desc(),
                                                  Deployment.id.desc()).limit(1))


def last_good_release(ctx: Context, project: str, environment: str,
                      host: str | None = None) -> str | None:
    """The last good release of an environment, or of one of its hosts."""
    with ctx.db.session() as session:
        if host is not None:
            return session.scalar(select(HostRelease.last_good_release).filter_by(
                project=project, environment=environment, host=host))
        rows = session.execute(select(Release.release_id, Release.live_at, Release.bad)
                               .filter_by(project=project, environment=environment))
        return rollback_target(((r, at is not None, bad) for r, at, bad in rows), None)
