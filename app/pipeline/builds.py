"""Builds: one per (project, sha, build settings), started, logged and finished."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app import config as cfg
from app.context import Context
from app.models import Build, Deployment
from app.pipeline.common import insert_once, log
from app.pipeline.deployments import Artifact
from app.pipeline.order import advance, advance_in, enqueue_deployment
from app.pipeline.report import report_build, report_deployment
from app.pipeline.rules import (
    artifacts_to_drop,
    clone_source,
    is_local_url,
    needs_rebuild,
    settings_hash,
    stored_clone_url,
)
from app.pipeline.states import changes

# The RQ job deadline is a backstop above our own deadlines, never the one that fires first.
JOB_GRACE = 300


@dataclass(frozen=True)
class BuildOrder:
    """What a build job needs to build one commit."""

    build_id: int
    project: cfg.Project
    sha: str
    ref: str
    clone_url: str                 # with the pipeline file's credentials, if it has them
    allow_file: bool = False       # the pipeline file's clone_url is a path on this machine


#: What makes a build one: a commit, built with one set of build settings.
BUILD_KEY = ("project", "sha", "settings_hash")


def new_build(project: cfg.Project, *, sha: str, ref: str, repository: str,
              clone_url: str) -> dict[str, str]:
    """The values of the build a commit gets (intake's fast path and `find_or_create_build`
    alike): its key, where it came from, and its clone URL without credentials."""
    return {"project": project.name, "sha": sha, "settings_hash": settings_hash(project.build),
            "ref": ref, "repository": repository,
            "clone_url": stored_clone_url(project.clone_url, clone_url)}


def find_or_create_build(ctx: Context, project: cfg.Project, *, sha: str, ref: str,
                         repository: str, clone_url: str) -> tuple[Build, bool]:
    """The build of (project, sha, build settings), made once; (build, whether it is new).

    A build that succeeded is reused and one that runs is joined. One that failed, or whose
    artifact was pruned, is queued again as a new attempt (and counts as new).
    """
    values = new_build(project, sha=sha, ref=ref, repository=repository, clone_url=clone_url)
    key = {name: values[name] for name in BUILD_KEY}
    build, created = insert_once(ctx, Build(**values), select(Build).filter_by(**key))
    if not created and needs_rebuild(build.state, build.artifact_path):
        return _requeue(ctx, build.id) or build, True
    return build, created


def _requeue(ctx: Context, build_id: int) -> Build | None:
    """Queue a failed build (or one without its artifact) again, once however many ask."""
    with ctx.db.session() as session:
        build = session.get(Build, build_id, with_for_update=True)
        if build is None or not needs_rebuild(build.state, build.artifact_path):
            return build
        build.attempt += 1
        build.state, build.error, build.started_at, build.finished_at = "queued", None, None, None
        build.artifact_path = build.artifact_sha256 = build.artifact_size = None
        return build


def enqueue_build(ctx: Context, build: Build) -> None:
    """Queue the build job, once per attempt (the job id is the build's and attempt's)."""
    timeout = ctx.config.projects[build.project].build.timeout + JOB_GRACE
    ctx.jobs.enqueue("builds", "workers.build.run", build.id,
                     job_id=f"build-{build.id}-{build.attempt}", timeout=timeout)


def queue_work(ctx: Context, build: Build, deployments: list[Deployment]) -> None:
    """Queue what waits: the build when it is queued, and each deployment as far as its build
    allows. Every step has a deterministic job id, so doing it twice queues nothing twice."""
    if build.state == "queued":
        report_build(ctx, build)
        enqueue_build(ctx, build)
    waiting = [d.id for d in deployments if d.state == "queued"]
    advance(ctx, waiting)
    with ctx.db.session() as session:  # the pending statuses of those still waiting
        for deployment in session.scalars(select(Deployment).where(
                Deployment.id.in_(waiting), Deployment.state == "queued")):
            report_deployment(ctx, deployment)


def start_build(ctx: Context, build_id: int) -> BuildOrder | None:
    """Mark a queued build running and say what to build; None when it is not queued."""
    with changes(ctx) as change:
        build = change.session.get(Build, build_id, with_for_update=True)
        if build is None or build.state != "queued":
            return None
        project = ctx.config.projects.get(build.project)
        if project is None:
            change.move(build, "failed", error="the project is no longer configured")
            return None
        change.move(build, "running")
        clone_url, refusal = clone_source(project.clone_url, build.clone_url)
        order = BuildOrder(build.id, project, build.sha, build.ref, clone_url,
                           allow_file=is_local_url(project.clone_url))
    if refusal is not None:  # never fetched: the build fails before the job touches git
        log(ctx, f"build failed: {refusal}", build_id=build_id)
        finish_build(ctx, build_id, error=refusal)
        return None
    return order


def finish_build(ctx: Context, build_id: int, *, artifact: Artifact | None = None,
                 error: str | None = None, committed_at: datetime | None = None) -> None:
    """Record a build's end (and its commit's time, when known); move on the deployments
    waiting for it."""
    with changes(ctx) as change:
        build = change.session.get(Build, build_id, with_for_update=True)
        if build is None or build.state != "running":
            return
        if committed_at is not None:
            build.committed_at = committed_at
        if artifact is not None:
            change.move(build, "succeeded")
            build.artifact_path, build.artifact_sha256 = artifact.path, artifact.sha256
            build.artifact_size = artifact.size
        else:
            change.move(build, "failed", error=error or "failed")
        waiting = list(change.session.scalars(select(Deployment.id).where(
            Deployment.build_id == build_id, Deployment.state == "queued")))
        change.session.flush()
        ready = advance_in(ctx, change, waiting)
    for deployment in ready:
        enqueue_deployment(ctx, deployment)


def release_artifacts(ctx: Context, project_name: str) -> list[str]:
    """Forget the artifacts the project no longer keeps; return their files to delete.

    Kept: the newest `build.keep_artifacts` and every artifact an environment runs (its
    newest succeeded deployment) or waits for (a queued or running deployment).
    """
    project = ctx.config.projects.get(project_name)
    keep = project.build.keep_artifacts if project else 10
    with ctx.db.session() as session:
        builds = session.scalars(select(Build).where(
            Build.project == project_name, Build.state == "succeeded",
            Build.artifact_path.is_not(None)).order_by(Build.finished_at.desc(), Build.id.desc()))
        newest_first = [(b.id, b.artifact_path or "") for b in builds]
        waiting = session.scalars(select(Deployment.build_id).where(
            Deployment.project == project_name, Deployment.state.in_(("queued", "running"))))
        live = session.execute(select(Deployment.environment, Deployment.build_id).where(
            Deployment.project == project_name, Deployment.state == "succeeded")
            .order_by(Deployment.finished_at))
        in_use = set(waiting) | set(dict(live.all()).values())
        dropped = artifacts_to_drop(newest_first, in_use, keep)
        paths = []
        for build in session.scalars(select(Build).where(Build.id.in_(dropped))):
            paths.append(build.artifact_path or "")
            build.artifact_path = None
    return [p for p in paths if p]
