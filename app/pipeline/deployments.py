"""Deployments: created once per push (or by hand), started, tracked per host, finished; and
what they leave known: each release good or bad, what each host runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import config as cfg
from app.context import Context
from app.hooks.events import Push
from app.models import Build, Deployment, DeploymentHost, HostRelease, Release, utcnow
from app.pipeline.common import insert_once, log_rows
from app.pipeline.report import report_deployment
from app.pipeline.rules import (
    LOCK_RETRY_SECONDS,
    deployment_deadline,
    lock_retry_job_id,
    marks_release_bad,
    mask,
    next_release_id,
    rollback_target,
    settings_hash,
)

# The RQ job deadline of a deployment whose environment is no longer configured (it ends at
# once as `error`); a configured one gets `rules.deployment_deadline`.
UNCONFIGURED_TIMEOUT = 300


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


def find_or_create_deployment(ctx: Context, project: cfg.Project, env: cfg.Environment,
                               build: Build, push: Push) -> tuple[Deployment, bool]:
    key = {"project": project.name, "environment": env.name,
           "trigger": f"push:{push.ref}:{push.after}"}
    new = Deployment(**key, build_id=build.id, sha=push.after, ref=push.ref)
    return insert_once(ctx, new, select(Deployment).filter_by(**key))


def create_manual_deployment(ctx: Context, project: cfg.Project, env: cfg.Environment,
                             build: Build, *, sha: str, ref: str) -> Deployment:
    """A new deployment asked for by hand (`conveyor deploy`): never merged with another."""
    deployment = Deployment(project=project.name, environment=env.name,
                            trigger=f"manual:{uuid.uuid4().hex}", build_id=build.id,
                            sha=sha, ref=ref)
    with ctx.db.session() as session:
        session.add(deployment)
    return deployment


def deploy_by_hand(ctx: Context, project: cfg.Project, env: cfg.Environment, *, sha: str,
                   ref: str, repository: str, clone_url: str) -> tuple[Build, Deployment]:
    """Queue a deployment of commit `sha` to `env`, and its build unless one succeeded:
    the build is made once per commit, as for a push."""
    from app.pipeline.builds import find_or_create_build, queue_work  # builds imports us

    build, _new = find_or_create_build(ctx, project, sha=sha, ref=ref,
                                       repository=repository, clone_url=clone_url)
    deployment = create_manual_deployment(ctx, project, env, build, sha=sha, ref=ref)
    queue_work(ctx, build, [deployment])
    return build, deployment


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


def queue_deployments(ctx: Context, deployments: list[Deployment]) -> None:
    """Bring each waiting deployment level with its build and report where it stands."""
    for deployment in deployments:
        if deployment.state == "queued":
            followed = follow_build(ctx, deployment.id)
            if followed is not None and followed.state == "queued":
                report_deployment(ctx, followed)


def follow_build(ctx: Context, deployment_id: int) -> Deployment | None:
    """Enqueue a waiting deployment whose build succeeded, or end it as its build ended
    (`failed`, `skipped`). Read after the deployment was stored, so that a build finishing
    meanwhile (and sweeping only the deployments it saw) is not missed; enqueueing twice is
    harmless: the job id is the deployment's."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None or deployment.state != "queued":
            return deployment
        state = deployment.build.state
        if state == "failed":
            deployment.state, deployment.finished_at = "failed", utcnow()
            deployment.error = "the build failed; no host was touched"
        elif state == "skipped":
            deployment.state, deployment.finished_at = "skipped", utcnow()
    if state == "succeeded":
        enqueue_deployment(ctx, deployment)
    elif state in ("failed", "skipped"):
        report_deployment(ctx, deployment)
    return deployment


def enqueue_deployment(ctx: Context, deployment: Deployment, *, job_id: str | None = None,
                       delay: float = 0) -> None:
    """Queue the deploy job of `deployment` (once per job id: by default the deployment's)."""
    ctx.jobs.enqueue("deploys", "workers.deploy.run", deployment.id,
                     job_id=job_id or f"deploy-{deployment.id}", delay=delay,
                     timeout=_deadline(ctx, deployment.project, deployment.environment))


def _deadline(ctx: Context, project_name: str, environment: str) -> int:
    project = ctx.config.projects.get(project_name)
    env = project.environments.get(environment) if project else None
    return deployment_deadline(env, ctx.config.ssh) if env else UNCONFIGURED_TIMEOUT


def wait_for_lock(ctx: Context, deployment_id: int) -> None:
    """A queued deployment found its environment's lock taken: try again a little later,
    through RQ's scheduler, rather than hold a worker while the other one runs. It stays
    `queued`; the deployment holding the lock also queues it when it ends (`queue_next`)."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None or deployment.state != "queued":
            return
    enqueue_deployment(ctx, deployment, delay=LOCK_RETRY_SECONDS,
                       job_id=lock_retry_job_id(deployment_id, time.time()))


def queue_next(ctx: Context, project: str, environment: str, after: int) -> None:
    """The deployment `after` ended and freed its environment: queue the oldest deployment
    waiting there now, so it need not wait for its scheduled retry."""
    with ctx.db.session() as session:
        waiting = session.scalar(
            select(Deployment).join(Build, Deployment.build_id == Build.id)
            .where(Deployment.project == project, Deployment.environment == environment,
                   Deployment.state == "queued", Build.state == "succeeded")
            .order_by(Deployment.id).limit(1))
    if waiting is not None:
        enqueue_deployment(ctx, waiting, job_id=f"deploy-{waiting.id}-after-{after}")


def deployment_target(ctx: Context, deployment_id: int) -> tuple[str, str] | None:
    """(project, environment) of a deployment that is still to run, else None."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None or deployment.state != "queued":
            return None
        return deployment.project, deployment.environment


def start_deployment(ctx: Context, deployment_id: int) -> DeploymentOrder | None:
    """Mark a queued deployment running and say what to do; None when it is not queued."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id, with_for_update=True)
        if deployment is None or deployment.state != "queued":
            return None
        project = ctx.config.projects.get(deployment.project)
        env = project.environments.get(deployment.environment) if project else None
        build = deployment.build
        order = None
        if project is None or env is None or build.state != "succeeded":
            deployment.state, deployment.finished_at = "error", utcnow()
            deployment.error = "the environment is no longer configured or has no artifact"
        else:
            deployment.state, deployment.started_at = "running", utcnow()
            latest = session.scalar(select(func.max(Deployment.release_id)).where(
                Deployment.project == deployment.project,
                Deployment.environment == deployment.environment))
            deployment.release_id = next_release_id(deployment.started_at, deployment.sha, latest)
            for host in env.hosts:
                session.add(DeploymentHost(deployment_id=deployment.id, host=host.spec))
            order = DeploymentOrder(
                deployment.id, project, env, deployment.sha, deployment.ref,
                deployment.release_id,
                Artifact(build.artifact_path or "", build.artifact_sha256 or "",
                         build.artifact_size or 0))
    report_deployment(ctx, deployment)
    return order


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


def finish_deployment(ctx: Context, deployment_id: int, state: str,
                      error: str | None = None) -> None:
    """Record the end of a running deployment (`succeeded`, `failed` or `error`), what each
    host runs now, and whether the release is good or bad."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None or deployment.state != "running":
            return
        deployment.state, deployment.finished_at = state, utcnow()
        deployment.error = mask(error, ctx.secrets()) if error else None
        if deployment.release_id:
            _record_release(session, deployment)
            _record_hosts(session, deployment)
    report_deployment(ctx, deployment)


def _record_release(session: Session, deployment: Deployment) -> None:
    release = session.scalar(select(Release).filter_by(
        project=deployment.project, environment=deployment.environment,
        release_id=deployment.release_id))
    if release is None:
        release = Release(project=deployment.project, environment=deployment.environment,
                          release_id=deployment.release_id, deployment_id=deployment.id,
                          build_id=deployment.build_id, sha=deployment.sha, ref=deployment.ref)
        session.add(release)
    if deployment.state == "succeeded":
        release.live_at = deployment.finished_at
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
        release = session.scalar(select(Release).filter_by(
            project=project, environment=environment, release_id=release_id))
        if release is not None and not release.bad:
            release.bad, release.marked_bad_at = True, utcnow()
            release.bad_reason = mask(reason, ctx.secrets())


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
