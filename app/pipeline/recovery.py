"""Recovery from a dead worker (SPEC §5, §7): what counts as abandoned, and marking it.

A running deployment holds its environment's lock for as long as its worker lives (the
holder renews it); a running build keeps its liveness key (`build_liveness_key`) alive the
same way. Either gone means nobody is at work any more: the worker was killed or lost.
`workers.recovery` looks for such work and puts it to an end through the functions here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from app.context import Context
from app.models import Build, Deployment
from app.pipeline.builds import finish_build
from app.pipeline.deployments import DeploymentOrder, order_of
from app.pipeline.order import finish_deployment, job_timeout
from app.pipeline.rules import lock_name

WORKER_STOPPED = "the worker running it stopped (killed or lost)"
# Steps a host row shows once `current` was switched (or was being switched) there.
SWITCHING_STEPS = frozenset({"activate", "after_activate", "healthcheck", "live", "rollback"})
# A recovery job's id holds the time slot it was queued in: scans of one slot queue it once,
# and a recovery job that died itself is queued again in a later slot.
RECOVERY_SLOT_SECONDS = 300


@dataclass(frozen=True)
class RunningDeployment:
    """A deployment the database says is running, and the lock its worker must hold."""

    deployment_id: int
    project: str
    environment: str

    @property
    def lock(self) -> str:
        return lock_name(self.project, self.environment)


@dataclass(frozen=True)
class HostProgress:
    """How far an abandoned deployment got on one host, as its row recorded it."""

    host: str
    step: str | None
    previous_release: str | None
    release: str | None


@dataclass(frozen=True)
class Abandoned:
    """An abandoned deployment: what putting its hosts back needs (`order` is None when its
    environment is no longer configured, so its hosts cannot be reached)."""

    deployment_id: int
    order: DeploymentOrder | None
    hosts: dict[str, HostProgress]


def build_liveness_key(build_id: int) -> str:
    """The Redis key a running build's worker keeps alive."""
    return f"conveyor:alive:build:{build_id}"


def running_deployments(ctx: Context) -> list[RunningDeployment]:
    """Every deployment the database says is running."""
    with ctx.db.session() as session:
        rows = session.execute(select(Deployment.id, Deployment.project, Deployment.environment)
                               .where(Deployment.state == "running").order_by(Deployment.id))
        return [RunningDeployment(*row) for row in rows]


def running_builds(ctx: Context) -> list[int]:
    """The ids of every build the database says is running."""
    with ctx.db.session() as session:
        return list(session.scalars(select(Build.id).where(Build.state == "running")
                                    .order_by(Build.id)))


def abandoned_deployments(running: Iterable[RunningDeployment],
                          held: Iterable[str]) -> list[RunningDeployment]:
    """The running deployments whose environment's lock is not `held` by anyone: their
    worker stopped renewing it for longer than its time to live."""
    taken = set(held)
    return [deployment for deployment in running if deployment.lock not in taken]


def abandoned_builds(running: Iterable[int], alive: Iterable[int]) -> list[int]:
    """The running builds whose liveness key is gone."""
    living = set(alive)
    return [build_id for build_id in running if build_id not in living]


def fail_abandoned_build(ctx: Context, build_id: int) -> None:
    """End a build whose worker stopped as `failed` (SPEC §5 has no `error` for builds), and
    the deployments waiting for it as a failed build ends them. Nothing happens when the
    build is no longer running (it ended meanwhile)."""
    finish_build(ctx, build_id, error=WORKER_STOPPED)


def enqueue_recovery(ctx: Context, deployment: RunningDeployment, now: float) -> bool:
    """Queue the job that puts an abandoned deployment's hosts back and ends it (once per
    time slot, however many scans ask); False when it is queued already."""
    return ctx.jobs.enqueue(
        "deploys", "workers.recovery.recover_deployment", deployment.deployment_id,
        job_id=f"recover-{deployment.deployment_id}-{int(now // RECOVERY_SLOT_SECONDS)}",
        # Putting hosts back takes fewer steps than deploying: the deploy job's is ample.
        timeout=job_timeout(ctx, deployment.project, deployment.environment))


def abandoned_in(ctx: Context, project: str, environment: str) -> list[Abandoned]:
    """The running deployments of an environment. Call it holding the environment's lock:
    a live deployment holds that lock, so every one found then is abandoned."""
    with ctx.db.session() as session:
        rows = session.scalars(select(Deployment).where(
            Deployment.project == project, Deployment.environment == environment,
            Deployment.state == "running").order_by(Deployment.id))
        return [Abandoned(row.id, order_of(ctx, row), _progress(row)) for row in rows]


def end_abandoned_deployment(ctx: Context, deployment_id: int, undone: str) -> None:
    """Mark an abandoned deployment `error`, saying what was put back (`undone`); it is
    reported as any deployment's end. Nothing happens when it is no longer running."""
    finish_deployment(ctx, deployment_id, "error", f"{WORKER_STOPPED}; {undone}")


def may_have_switched(progress: HostProgress | None, release_id: str) -> bool:
    """Whether a host that cannot be looked at may run the new release: its row says it
    was switched, or was being switched, when the worker stopped."""
    if progress is None:
        return False
    return progress.release == release_id or progress.step in SWITCHING_STEPS


def _progress(deployment: Deployment) -> dict[str, HostProgress]:
    return {row.host: HostProgress(row.host, row.step, row.previous_release, row.release)
            for row in deployment.hosts}
