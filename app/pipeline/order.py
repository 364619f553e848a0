"""What runs when (SPEC §7): a deployment waits for its build, for its source environment
(`promote_from`) and for approval; per environment one runs at a time and the newest waiting
one goes next (older waiting ones are superseded, and a push never moves an environment
backwards); a deployment that succeeds is promoted to the environments that take from it.

Workers bring facts (the lock is free; these commits descend from those); the decisions
are `rules.gate` and `rules.choose`, and every state change is one `states.Changes.move`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import config as cfg
from app.context import Context
from app.models import Deployment
from app.pipeline import deployments as rows
from app.pipeline.common import insert_once
from app.pipeline.rules import (
    LOCK_RETRY_SECONDS,
    Candidate,
    choose,
    deployment_deadline,
    deployment_kind,
    gate,
    lock_retry_job_id,
    promotion_targets,
)
from app.pipeline.states import Changes, changes

# The RQ job deadline of a deployment whose environment is no longer configured (it ends at
# once as `error`); a configured one gets `rules.deployment_deadline`.
UNCONFIGURED_TIMEOUT = 300
# Asked for by a person: approved by asking, and free to go back (SPEC §7).
EXPLICIT_KINDS = frozenset({"deploy:manual", "rollback", "retry"})


@dataclass(frozen=True)
class Waiting:
    """The deployments ready to run on an environment, and the commit live there."""

    candidates: list[Candidate]
    live_sha: str | None


def advance(ctx: Context, deployment_ids: list[int]) -> None:
    """Move each queued deployment as far as its build, its source environment and its
    approval allow: end it like a failed or skipped build, park it `awaiting_approval`, or
    queue its job. Harmless to repeat: the job id is the deployment's."""
    for deployment_id in deployment_ids:
        with changes(ctx) as change:
            ready = advance_in(ctx, change, [deployment_id])
        for deployment in ready:
            enqueue_deployment(ctx, deployment)


def advance_in(ctx: Context, change: Changes, deployment_ids: list[int]) -> list[Deployment]:
    """`advance` inside a transaction of the caller's (a build's end and the fate of the
    deployments waiting for it are one change): the deployments to enqueue once it commits."""
    ready = []
    for deployment_id in deployment_ids:
        deployment = change.session.get(Deployment, deployment_id, with_for_update=True)
        if deployment is not None and deployment.state == "queued" \
                and _gate(ctx, change, deployment) == "go":
            ready.append(deployment)
    return ready


def _gate(ctx: Context, change: Changes, deployment: Deployment) -> str:
    """Where a queued deployment stands (`go`, `wait`, or ended/parked here)."""
    build = deployment.build
    if build.state in ("failed", "canceled"):
        change.move(deployment, "failed", error="the build failed; no host was touched")
        return "ended"
    if build.state == "skipped":
        change.move(deployment, "skipped")
        return "ended"
    if build.state != "succeeded":
        return "wait"  # the build's end advances it
    env = _environment(ctx, deployment)
    if env is None:
        change.move(deployment, "error", error="the environment is no longer configured")
        return "ended"
    source = _source(change.session, deployment, env)
    if source == "failed":
        change.move(deployment, "failed", error=f"{env.promote_from} did not succeed with"
                    " this build; no host was touched")
        return "ended"
    kind = deployment_kind(deployment.kind, deployment.trigger)
    verdict = gate(env, source_succeeded=source == "succeeded",
                   approved=deployment.approved_by is not None or kind in EXPLICIT_KINDS)
    if verdict == "awaiting_approval":
        change.move(deployment, "awaiting_approval")
        _supersede_parked(change, deployment)
    return verdict


def _source(session: Session, deployment: Deployment, env: cfg.Environment) -> str:
    """How the source environment fared with this deployment's build: `succeeded`, `failed`,
    `pending` (still to come), or `none` when there is no source to wait for."""
    if env.promote_from is None or deployment.kind in ("rollback", "retry"):
        return "succeeded"
    states = set(session.scalars(select(Deployment.state).where(
        Deployment.project == deployment.project, Deployment.environment == env.promote_from,
        Deployment.build_id == deployment.build_id)))
    if "succeeded" in states:
        return "succeeded"
    if states & {"queued", "running", "awaiting_approval"} or not states:
        return "pending"
    return "failed"


def _supersede_parked(change: Changes, newer: Deployment) -> None:
    """A newer deployment awaiting approval replaces the older ones awaiting it there."""
    older = change.session.scalars(select(Deployment).where(
        Deployment.project == newer.project, Deployment.environment == newer.environment,
        Deployment.state == "awaiting_approval", Deployment.id < newer.id))
    for deployment in older:
        change.move(deployment, "superseded", error=_superseded_by(newer))


def _superseded_by(newer: Deployment) -> str:
    return f"superseded by deployment {newer.id} of {newer.sha[:7]}"


# -- the environment's turn ---------------------------------------------------------------------


def waiting(ctx: Context, project: str, environment: str) -> Waiting:
    """The deployments ready to run on an environment (queued, past every gate), and the
    commit live there now, for the worker to add what it knows of their commits' order."""
    with changes(ctx) as change:
        queued = change.session.scalars(select(Deployment).where(
            Deployment.project == project, Deployment.environment == environment,
            Deployment.state == "queued").order_by(Deployment.id))
        ready = [d for d in queued if _gate(ctx, change, d) == "go"]
        candidates = [Candidate(d.id, d.sha, deployment_kind(d.kind, d.trigger)
                                not in EXPLICIT_KINDS) for d in ready]
        live = rows.live_deployment(change.session, project, environment)
    return Waiting(candidates, live.sha if live else None)


def take_turn(ctx: Context, project: str, environment: str, found: Waiting,
              ancestors: set[tuple[str, str]]) -> int | None:
    """The environment is free (its lock is held): supersede what waits in vain and say which
    deployment runs now (`rules.choose`), or None."""
    chosen, superseded = choose(found.candidates, found.live_sha, ancestors)
    if not superseded:
        return chosen
    with changes(ctx) as change:
        newer = change.session.get(Deployment, chosen) if chosen is not None else None
        for deployment_id in superseded:
            deployment = change.session.get(Deployment, deployment_id, with_for_update=True)
            if deployment is None or deployment.state != "queued":
                continue
            reason = (_superseded_by(newer) if newer is not None else
                      f"{deployment.sha[:7]} is live there already, or behind what is live")
            change.move(deployment, "superseded", error=reason)
    return chosen


def enqueue_deployment(ctx: Context, deployment: Deployment, *, job_id: str | None = None,
                       delay: float = 0) -> None:
    """Queue the deploy job of `deployment` (once per job id: by default the deployment's)."""
    ctx.jobs.enqueue("deploys", "workers.deploy.run", deployment.id,
                     job_id=job_id or f"deploy-{deployment.id}", delay=delay,
                     timeout=job_timeout(ctx, deployment.project, deployment.environment))


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
    """The deployment `after` ended and freed its environment: queue a job for what waits
    there now, so that it need not wait for its scheduled retry (the job chooses)."""
    with ctx.db.session() as session:
        waiting_one = session.scalar(select(Deployment).where(
            Deployment.project == project, Deployment.environment == environment,
            Deployment.state == "queued").order_by(Deployment.id.desc()).limit(1))
    if waiting_one is not None:
        enqueue_deployment(ctx, waiting_one, job_id=f"deploy-{waiting_one.id}-after-{after}")


# -- the end of a deployment --------------------------------------------------------------------


def finish_deployment(ctx: Context, deployment_id: int, state: str,
                      error: str | None = None) -> None:
    """Record the end of a running deployment (`succeeded`, `failed`, `canceled` or `error`)
    and what follows from it: promotion to the environments that take from this one, or the
    end of those waiting for it in vain."""
    deployment = rows.record_end(ctx, deployment_id, state, error)
    if deployment is None:
        return
    project = ctx.config.projects.get(deployment.project)
    if project is None:
        return
    # A rollback puts back what went live before: it is no new candidate to promote.
    targets = [] if deployment.kind == "rollback" else promotion_targets(
        project, deployment.environment)
    if state == "succeeded":
        for env in targets:
            promote(ctx, deployment, env)
    elif targets:
        advance(ctx, _followers(ctx, deployment, targets))


def promote(ctx: Context, source: Deployment, env: cfg.Environment) -> None:
    """`source` succeeded: `env` (which takes from its environment) gets a deployment of the
    same build, unless one of that build already waits there (a pushed tag, say)."""
    waiting_ids = _followers(ctx, source, [env])
    if not waiting_ids:
        key = {"project": source.project, "environment": env.name,
               "trigger": f"promote:{source.id}"}
        promoted, _new = insert_once(ctx, Deployment(
            **key, kind="promotion", source_id=source.id, build_id=source.build_id,
            sha=source.sha, ref=source.ref), select(Deployment).filter_by(**key))
        waiting_ids = [promoted.id]
    advance(ctx, waiting_ids)


def _followers(ctx: Context, source: Deployment, targets: list[cfg.Environment]) -> list[int]:
    """Deployments of the same build waiting on the environments that take from `source`."""
    with ctx.db.session() as session:
        return list(session.scalars(select(Deployment.id).where(
            Deployment.project == source.project,
            Deployment.environment.in_([env.name for env in targets]),
            Deployment.build_id == source.build_id, Deployment.state == "queued")))


def _environment(ctx: Context, deployment: Deployment) -> cfg.Environment | None:
    return ctx.config.environment(deployment.project, deployment.environment)


def job_timeout(ctx: Context, project: str, environment: str) -> int:
    """The RQ timeout of a job that deploys to (or puts back) an environment."""
    env = ctx.config.environment(project, environment)
    return deployment_deadline(env, ctx.config.ssh) if env else UNCONFIGURED_TIMEOUT
