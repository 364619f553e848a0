"""What a person asks of the pipeline (SPEC §4, §7): deploy by hand, approve, cancel, retry,
roll back. Each checks what it may do and says why not (`OperationError`, a sentence and the
HTTP status the API answers with), records who asked, and moves states like the rest of the
pipeline."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app import config as cfg
from app.context import Context
from app.models import Build, Deployment, Release, utcnow
from app.pipeline.audit import CLI, record
from app.pipeline.builds import find_or_create_build, queue_work
from app.pipeline.deployments import create_manual_deployment, live_deployment
from app.pipeline.order import advance, enqueue_deployment
from app.pipeline.rules import rollback_target
from app.pipeline.states import changes

# How long a request to cancel a running deployment is kept for its job to see.
CANCEL_TTL = 24 * 3600


class OperationError(Exception):
    """What was asked cannot be done; `status` is the HTTP answer (404, 409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def deploy_by_hand(ctx: Context, project: cfg.Project, env: cfg.Environment, *, sha: str,
                   ref: str, repository: str, clone_url: str,
                   by: str = CLI) -> tuple[Build, Deployment]:
    """Queue a deployment of commit `sha` to `env`, and its build unless one succeeded:
    the build is made once per commit, as for a push."""
    build, _new = find_or_create_build(ctx, project, sha=sha, ref=ref,
                                       repository=repository, clone_url=clone_url)
    deployment = create_manual_deployment(ctx, project, env, build, sha=sha, ref=ref, by=by)
    queue_work(ctx, build, [deployment])
    return build, deployment


def approve(ctx: Context, deployment_id: int, *, by: str = CLI) -> Deployment:
    """Let a deployment awaiting approval go on."""
    with changes(ctx) as change:
        deployment = _get(change.session, deployment_id)
        if deployment.state != "awaiting_approval":
            raise OperationError(409, f"deployment {deployment_id} is {deployment.state},"
                                      " not awaiting approval")
        deployment.approved_by, deployment.approved_at = by, utcnow()
        change.move(deployment, "queued")
        record(change.session, "approve", deployment, by=by,
               detail=f"approved {deployment.sha[:7]} for {deployment.environment}")
    advance(ctx, [deployment_id])
    return deployment


def cancel(ctx: Context, deployment_id: int, *, by: str = CLI) -> Deployment:
    """Cancel a deployment: one that waits ends at once; a running one stops at its next
    safe point between steps, putting back the hosts it switched."""
    with changes(ctx) as change:
        deployment = _get(change.session, deployment_id)
        if deployment.state in ("queued", "awaiting_approval"):
            record(change.session, "cancel", deployment, by=by,
                   detail=f"canceled while {deployment.state}")
            change.move(deployment, "canceled", error=f"canceled by {by}")
            return deployment
        if deployment.state != "running":
            raise OperationError(409, f"deployment {deployment_id} is {deployment.state}:"
                                      " only a waiting or running deployment can be canceled")
        record(change.session, "cancel", deployment, by=by,
               detail="asked to stop at the next safe point")
        # Asked before the entry commits: a request Redis refused leaves no entry behind.
        ctx.jobs.redis.set(cancel_key(deployment_id), by, ex=CANCEL_TTL)
    return deployment


def cancel_key(deployment_id: int) -> str:
    return f"conveyor:cancel:deployment:{deployment_id}"


def cancel_requested(ctx: Context, deployment_id: int) -> str | None:
    """Who asked to cancel a running deployment, if anyone did."""
    who = ctx.jobs.redis.get(cancel_key(deployment_id))
    return who.decode() if isinstance(who, bytes) else who


def retry(ctx: Context, deployment_id: int, *, by: str = CLI) -> Deployment:
    """Run a failed (or errored) deployment again, under the same release id, for the hosts
    that did not reach its release; what they already did (upload, unpack, hooks) is kept."""
    with ctx.db.session() as session:
        original = _get(session, deployment_id)
        if original.state not in ("failed", "error"):
            raise OperationError(409, f"deployment {deployment_id} is {original.state}:"
                                      " only a failed deployment can be retried")
        build = original.build
        if build.state != "succeeded" or not build.artifact_path:
            raise OperationError(409, f"deployment {deployment_id} has no artifact to deploy"
                                      " (its build failed or was pruned): deploy again")
        reached = {h.host for h in original.hosts if h.release == original.release_id}
        configured = configured_environment(ctx, original.project, original.environment)
        hosts = [h.spec for h in configured.hosts if h.spec not in reached]
        if not hosts:
            raise OperationError(409, f"every host of deployment {deployment_id} reached"
                                      f" {original.release_id}: nothing to retry")
        again = Deployment(project=original.project, environment=original.environment,
                           trigger=f"retry:{original.id}:{uuid.uuid4().hex}", kind="retry",
                           source_id=original.id, build_id=original.build_id,
                           sha=original.sha, ref=original.ref,
                           release_id=original.release_id, requested_by=by,
                           hosts_only=hosts if len(hosts) < len(configured.hosts) else None)
        session.add(again)
        record(session, "retry", again, by=by,
               detail=f"retries deployment {original.id} on {', '.join(hosts)}")
    enqueue_deployment(ctx, again)
    return again


def rollback(ctx: Context, project: str, environment: str, *, by: str = CLI,
             release: str | None = None) -> Deployment:
    """Put the environment back on its last good release before the live one (or on
    `release`, which must have gone live and not be marked bad); the release rolled away
    from is marked bad once the rollback has succeeded."""
    configured_environment(ctx, project, environment)
    with ctx.db.session() as session:
        releases = list(session.scalars(select(Release).filter_by(
            project=project, environment=environment)))
        current = live_deployment(session, project, environment)
        live = current.release_id if current else None
        target = release or rollback_target(
            ((r.release_id, r.live_at is not None, r.bad) for r in releases), live)
        chosen = next((r for r in releases if r.release_id == target), None)
        if chosen is None:
            what = f"release {release}" if release else "a good release before the live one"
            raise OperationError(409 if not release else 404,
                                 f"{environment} has no {what} to roll back to")
        if chosen.bad:
            raise OperationError(409, f"release {target} is marked bad ({chosen.bad_reason});"
                                      " deploy its commit with --sha to run it again")
        if chosen.live_at is None:
            raise OperationError(409, f"release {target} never went live on {environment}")
        if target == live:
            raise OperationError(409, f"release {target} is live on {environment} already")
        back = Deployment(project=project, environment=environment,
                          trigger=f"rollback:{uuid.uuid4().hex}", kind="rollback",
                          build_id=chosen.build_id, sha=chosen.sha, ref=chosen.ref,
                          release_id=target, target_release=target, replaces_release=live,
                          requested_by=by)
        session.add(back)
        record(session, "rollback", back, by=by,
               detail=f"back to {target}" + (f" from {live}" if live else ""))
    advance(ctx, [back.id])
    return back


def _get(session, deployment_id: int) -> Deployment:  # type: ignore[no-untyped-def]
    deployment = session.get(Deployment, deployment_id, with_for_update=True)
    if deployment is None:
        raise OperationError(404, f"there is no deployment {deployment_id}")
    return deployment


def configured_environment(ctx: Context, project: str, environment: str) -> cfg.Environment:
    """The configured environment, or OperationError 404 naming what is not there."""
    env = ctx.config.environment(project, environment)
    if env is None:
        raise OperationError(404, f"there is no environment {environment!r} in project"
                                  f" {project!r}")
    return env
