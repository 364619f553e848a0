"""The pipeline's rules: the only code that creates builds and deployments and moves their states.

The top half decides without I/O (what a push starts, what a state reports); the bottom half
reads and writes the database, enqueues jobs by name and emits commit statuses.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import config as cfg
from app.context import Context
from app.hooks.events import Ignored, Push
from app.models import Build, Delivery, Deployment, DeploymentHost, LogLine, aware, utcnow

BUILD_CONTEXT = "conveyor/build"
# The RQ job deadline is a backstop above our own deadlines, never the one that fires first.
JOB_GRACE = 300
NOTIFY_RETRY_INTERVALS = [2, 10, 30, 120, 600]


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to a delivery."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class BuildOrder:
    """What a build job needs to build one commit."""

    build_id: int
    project: cfg.Project
    sha: str
    ref: str
    clone_url: str


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


# -- decisions (no I/O) --------------------------------------------------------------------


def environments_for(project: cfg.Project, push: Push) -> list[cfg.Environment] | str:
    """The environments a push deploys to, or the reason it deploys nowhere."""
    if push.deleted:
        return f"{push.ref} was deleted"
    branch = push.branch
    if branch is None:
        return f"{push.ref} is not a branch"
    matching = [env for env in project.environments.values()
                if any(fnmatch.fnmatchcase(branch, pattern) for pattern in env.branches)]
    return matching or f"no environment deploys branch {branch!r}"


def settings_hash(build: cfg.Build) -> str:
    """A digest of the build settings: a build is done once per (project, sha, this)."""
    data = {"commands": build.commands, "artifact": build.artifact, "env": dict(build.env)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def release_id(now: datetime, sha: str) -> str:
    """`<UTC yyyymmddTHHMMSSZ>-<short sha>`: one per deployment, the same on every host."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{sha[:7]}"


def next_release_id(now: datetime, sha: str, latest: str | None) -> str:
    """A release id later than `latest` (the environment's newest), so that two deployments in
    one second never share a release folder and ids keep sorting by time."""
    if latest:
        after_latest = datetime.strptime(latest.split("-")[0], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=UTC) + timedelta(seconds=1)
        now = max(now.astimezone(UTC), after_latest)
    return release_id(now, sha)


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***`."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def lock_name(project: str, environment: str) -> str:
    """The Redis key that allows one deployment per (project, environment) at a time."""
    return f"conveyor:lock:deploy:{project}:{environment}"


def build_description(build: Build) -> str:
    if build.state == "succeeded" and build.started_at and build.finished_at:
        return f"Built in {_duration(build.started_at, build.finished_at)}"
    return {"queued": "Build queued", "running": "Building",
            "failed": f"Build failed: {build.error or 'see the log'}"}.get(build.state, build.state)


def deployment_description(deployment: Deployment) -> str:
    env = deployment.environment
    if deployment.state == "succeeded" and deployment.started_at and deployment.finished_at:
        took = _duration(deployment.started_at, deployment.finished_at)
        return f"Deployed {deployment.release_id} to {env} in {took}"
    return {"queued": f"Waiting to deploy to {env}", "running": f"Deploying to {env}",
            "failed": f"Deploy to {env} failed: {deployment.error or 'see the log'}",
            "error": f"Deploy to {env} could not finish: {deployment.error or 'see the log'}",
            }.get(deployment.state, f"{deployment.state}")


def _duration(start: datetime, end: datetime) -> str:
    seconds = max(0, round((aware(end) - aware(start)).total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# -- intake -------------------------------------------------------------------------------


def receive(ctx: Context, *, provider: str, delivery_id: str, event_name: str,
            project: cfg.Project, event: Push | Ignored, started: float) -> Answer:
    """Act on one verified delivery: queue its work once, record it, and answer."""
    seen = _recorded_answer(ctx, provider, delivery_id)
    if seen is not None:
        return seen
    if isinstance(event, Ignored):
        answer = Answer(200, {"delivery": delivery_id, "ignored": event.reason})
    else:
        answer = _receive_push(ctx, delivery_id, project, event)
    return _record(ctx, provider, delivery_id, event_name, project.name, event, answer, started)


def _recorded_answer(ctx: Context, provider: str, delivery_id: str) -> Answer | None:
    with ctx.db.session() as session:
        delivery = session.scalar(select(Delivery).where(
            Delivery.provider == provider, Delivery.delivery_id == delivery_id))
        if delivery is None:
            return None
        return Answer(200, {**delivery.answer, "duplicate": True})


def _receive_push(ctx: Context, delivery_id: str, project: cfg.Project, push: Push) -> Answer:
    targets = environments_for(project, push)
    if isinstance(targets, str):
        return Answer(200, {"delivery": delivery_id, "ignored": targets})
    build, created_build = _find_or_create_build(ctx, project, push)
    deployments, created = [], False
    for env in targets:
        deployment, new = _find_or_create_deployment(ctx, project, env, build, push)
        deployments.append(deployment)
        created = created or new
    _dispatch(ctx, build, deployments, announce_build=created_build)
    body: dict[str, Any] = {"delivery": delivery_id, "builds": [build.id],
                            "deployments": [d.id for d in deployments]}
    if not (created or created_build):
        return Answer(200, {**body, "duplicate": True})
    return Answer(202, body)


def _find_or_create_build(ctx: Context, project: cfg.Project, push: Push) -> tuple[Build, bool]:
    key = {"project": project.name, "sha": push.after,
           "settings_hash": settings_hash(project.build)}
    new = Build(**key, ref=push.ref, repository=push.repository,
                clone_url=project.clone_url or push.clone_url)
    return _insert_once(ctx, new, select(Build).filter_by(**key))


def _find_or_create_deployment(ctx: Context, project: cfg.Project, env: cfg.Environment,
                               build: Build, push: Push) -> tuple[Deployment, bool]:
    key = {"project": project.name, "environment": env.name,
           "trigger": f"push:{push.ref}:{push.after}"}
    new = Deployment(**key, build_id=build.id, sha=push.after, ref=push.ref)
    return _insert_once(ctx, new, select(Deployment).filter_by(**key))


def _insert_once(ctx: Context, row: Any, existing: Any) -> tuple[Any, bool]:
    """Insert `row` unless `existing` finds it; the database's uniqueness settles races."""
    with ctx.db.session() as session:
        found = session.scalar(existing)
        if found is not None:
            return found, False
    try:
        with ctx.db.session() as session:
            session.add(row)
        return row, True
    except IntegrityError:
        with ctx.db.session() as session:
            return session.scalars(existing).one(), False


def _dispatch(ctx: Context, build: Build, deployments: list[Deployment], *,
              announce_build: bool) -> None:
    """Queue whatever is waiting: the build, or the deployments of a build that is done."""
    if build.state == "queued":
        if announce_build:
            report_build(ctx, build)
        ctx.jobs.enqueue("builds", "workers.build.run", build.id, job_id=f"build-{build.id}",
                         timeout=_project(ctx, build.project).build.timeout + JOB_GRACE)
    for deployment in deployments:
        if deployment.state == "queued":
            report_deployment(ctx, deployment)
            if build.state == "succeeded":
                _enqueue_deployment(ctx, deployment)


def _enqueue_deployment(ctx: Context, deployment: Deployment) -> None:
    ctx.jobs.enqueue("deploys", "workers.deploy.run", deployment.id,
                     job_id=f"deploy-{deployment.id}", timeout=24 * 3600)


def _record(ctx: Context, provider: str, delivery_id: str, event_name: str, project: str,
            event: Push | Ignored, answer: Answer, started: float) -> Answer:
    """Record the delivery as done; a concurrent twin that got there first wins."""
    push = event if isinstance(event, Push) else None
    row = Delivery(
        provider=provider, delivery_id=delivery_id, event=event_name, project=project,
        repository=event.repository, ref=push.ref if push else None,
        sha=push.after if push else None, status_code=answer.status,
        reason=answer.body.get("ignored"), answer=answer.body,
        duration_ms=round((time.monotonic() - started) * 1000))
    try:
        with ctx.db.session() as session:
            session.add(row)
    except IntegrityError:
        return _recorded_answer(ctx, provider, delivery_id) or answer
    return answer


# -- builds -------------------------------------------------------------------------------


def start_build(ctx: Context, build_id: int) -> BuildOrder | None:
    """Mark a queued build running and say what to build; None when it is not queued."""
    with ctx.db.session() as session:
        build = session.get(Build, build_id, with_for_update=True)
        if build is None or build.state != "queued":
            return None
        project = ctx.config.projects.get(build.project)
        if project is None:
            build.state, build.error = "failed", "the project is no longer configured"
            return None
        build.state, build.started_at = "running", utcnow()
        order = BuildOrder(build.id, project, build.sha, build.ref, build.clone_url)
    report_build(ctx, build)
    return order


def log(ctx: Context, text: str, *, build_id: int | None = None,
        deployment_id: int | None = None) -> None:
    """Store one log line of a build or deployment, secrets masked."""
    with ctx.db.session() as session:
        session.add(LogLine(build_id=build_id, deployment_id=deployment_id,
                            text=mask(text.rstrip("\n"), ctx.secrets())))


def finish_build(ctx: Context, build_id: int, *, artifact: Artifact | None = None,
                 error: str | None = None) -> None:
    """Record a build's end; start the deployments waiting for it, or fail them."""
    with ctx.db.session() as session:
        build = session.get(Build, build_id)
        if build is None or build.state != "running":
            return
        build.finished_at = utcnow()
        if artifact is not None:
            build.state = "succeeded"
            build.artifact_path, build.artifact_sha256 = artifact.path, artifact.sha256
            build.artifact_size = artifact.size
        else:
            build.state, build.error = "failed", mask(error or "failed", ctx.secrets())
        waiting = list(session.scalars(select(Deployment).where(
            Deployment.build_id == build_id, Deployment.state == "queued")))
        if build.state == "failed":
            for deployment in waiting:
                deployment.state, deployment.finished_at = "failed", utcnow()
                deployment.error = "the build failed; no host was touched"
    report_build(ctx, build)
    for deployment in waiting:
        if build.state == "succeeded":
            _enqueue_deployment(ctx, deployment)
        else:
            report_deployment(ctx, deployment)


# -- deployments ----------------------------------------------------------------------------


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


def update_host(ctx: Context, deployment_id: int, host: str, **fields: Any) -> None:
    """Record progress on one host: `state`, `step`, `previous_release`, `release`, `error`..."""
    with ctx.db.session() as session:
        row = session.scalar(select(DeploymentHost).where(
            DeploymentHost.deployment_id == deployment_id, DeploymentHost.host == host))
        if row is None:
            return
        if fields.get("error"):
            fields["error"] = mask(fields["error"], ctx.secrets())
        if row.started_at is None:
            row.started_at = utcnow()
        if fields.get("state") in ("succeeded", "failed", "rolled_back", "error"):
            row.finished_at = utcnow()
        for name, value in fields.items():
            setattr(row, name, value)


def finish_deployment(ctx: Context, deployment_id: int, state: str,
                      error: str | None = None) -> None:
    """Record the end of a running deployment (`succeeded`, `failed` or `error`)."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None or deployment.state != "running":
            return
        deployment.state, deployment.finished_at = state, utcnow()
        deployment.error = mask(error, ctx.secrets()) if error else None
    report_deployment(ctx, deployment)


# -- reporting ----------------------------------------------------------------------------


def report_build(ctx: Context, build: Build) -> None:
    """Queue the commit status `conveyor/build` for the build's current state."""
    _report(ctx, build.project, build.sha, BUILD_CONTEXT, build.state, build_description(build),
            f"/builds/{build.id}", f"build-{build.id}")


def report_deployment(ctx: Context, deployment: Deployment) -> None:
    """Queue the commit status `conveyor/deploy/<environment>` for the deployment's state."""
    _report(ctx, deployment.project, deployment.sha, f"conveyor/deploy/{deployment.environment}",
            deployment.state, deployment_description(deployment),
            f"/deployments/{deployment.id}", f"deploy-{deployment.id}")


def _report(ctx: Context, project_name: str, sha: str, context: str, state: str,
            description: str, link: str, subject: str) -> None:
    project = ctx.config.projects.get(project_name)
    if project is None or project.status is None:
        return
    from rq import Retry

    status = {"project": project_name, "sha": sha, "context": context, "state": state,
              "description": mask(description, ctx.secrets())[:140],
              "target_url": f"{ctx.config.public_url}{link}"}
    ctx.jobs.enqueue("notify", "workers.notify.send_status", status,
                     job_id=f"status-{subject}-{state}", timeout=120,
                     retry=Retry(max=len(NOTIFY_RETRY_INTERVALS),
                                 interval=NOTIFY_RETRY_INTERVALS))


def _project(ctx: Context, name: str) -> cfg.Project:
    return ctx.config.projects[name]

