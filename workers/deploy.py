"""The deploy job: one deployment at a time per environment, across workers and machines.

It takes the environment's lock (or goes back to the queue when another holds it), puts
back what a dead worker left switched there (`workers.abandoned`), lets the pipeline choose
which waiting deployment runs (the mirror tells which commits descend from which), and runs
it (`workers.deployer`), recording its end whatever happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from redis import Redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from app import metrics, pipeline
from app.context import Context
from workers import abandoned, artifacts, changes, context, mirrors
from workers.deployer import Deployer, persist

log = logging.getLogger(__name__)
LOCK_TTL = 60            # a dead worker's lock is free again after this many seconds
LOCK_HEARTBEAT = 15      # the live holder renews it this often
LOCK_WAIT_MEMORY = 7 * 24 * 3600  # when a deployment first waited, for the lock-wait metric


class LockBusy(Exception):
    """Another deployment of the environment holds its lock."""


def run(deployment_id: int) -> None:
    """RQ job on the `deploys` queue: one deployment, one at a time per environment. A
    deployment whose environment is busy goes back to the queue instead of holding a worker."""
    ctx = context()
    target = pipeline.deployment_target(ctx, deployment_id)
    if target is None:
        return
    try:
        with environment_lock(ctx.jobs.redis, pipeline.lock_name(*target)) as lock_lost:
            _measure_lock_wait(ctx.jobs.redis, deployment_id)
            # A deployment still `running` here lost its worker (it would hold the lock):
            # its hosts are put back before this one touches them.
            abandoned.recover_environment(ctx, *target)
            chosen = _take_turn(ctx, *target)
            if chosen is not None:
                _deploy(ctx, chosen, lock_lost)
    except LockBusy:
        _note_lock_wait(ctx.jobs.redis, deployment_id)
        pipeline.wait_for_lock(ctx, deployment_id)
        return
    pipeline.queue_next(ctx, *target, after=deployment_id)


def _lock_wait_key(deployment_id: int) -> str:
    return f"conveyor:lock-wait:{deployment_id}"


def _note_lock_wait(redis: Redis, deployment_id: int) -> None:
    """The first time a deployment finds its environment busy (Redis's clock: workers on
    several machines share it)."""
    with suppress(RedisError):
        redis.set(_lock_wait_key(deployment_id), _redis_now(redis), nx=True,
                  ex=LOCK_WAIT_MEMORY)


def _measure_lock_wait(redis: Redis, deployment_id: int) -> None:
    """The lock is ours: how long since the deployment first found it taken (0 if never)."""
    with suppress(RedisError):
        since = redis.getdel(_lock_wait_key(deployment_id))
        waited = 0.0
        if since is not None:
            waited = _redis_now(redis) - float(since)
        metrics.lock_wait(waited)


def _redis_now(redis: Redis) -> float:
    seconds, micro = redis.time()
    return seconds + micro / 1e6


def _take_turn(ctx: Context, project: str, environment: str) -> int | None:
    """The environment is ours: which of the deployments waiting there runs now. What the
    pipeline cannot know itself is which commits descend from which: the mirror says."""
    found = pipeline.waiting(ctx, project, environment)
    if not found.candidates:
        return None
    shas = {c.sha for c in found.candidates} | ({found.live_sha} if found.live_sha else set())
    ancestors: set[tuple[str, str]] = set()
    if len(shas) > 1:  # a worker that built nothing fetches the commits into its own mirror
        ancestors = changes.ancestry(mirrors.holding(ctx, project, shas), sorted(shas))
    return pipeline.take_turn(ctx, project, environment, found, ancestors)


def _deploy(ctx: Context, deployment_id: int, lock_lost: threading.Event) -> None:
    order = pipeline.start_deployment(ctx, deployment_id)
    if order is None:
        return
    order = local_artifact(ctx, order)
    if order is None:
        return
    deployer = Deployer(ctx, order, lock_lost)
    try:
        state, error = deployer.deploy()
    except BaseException as exc:  # the RQ timeout too: recorded, then RQ sees it
        reason = f"interrupted by {type(exc).__name__}: {exc}"
        persist(lambda: pipeline.finish_deployment(
            ctx, deployment_id, "error", f"{reason}; {deployer.undone or 'nothing switched'}"))
        raise
    pipeline.finish_deployment(ctx, deployment_id, state, error)
    try:
        artifacts.prune_cache(ctx, order.project.name)
    except Exception:  # the deployment is recorded; the next one prunes again
        log.warning("pruning the artifact cache of %s failed", order.project.name,
                    exc_info=True)


def local_artifact(ctx: Context, order: pipeline.DeploymentOrder
                   ) -> pipeline.DeploymentOrder | None:
    """The order with its artifact as a file on this machine (`artifacts.store` s3: this
    worker's verified copy, fetched once); None when it cannot be had and the deployment
    ended for it, with no host touched. A rollback or retry goes on without it: its hosts
    may hold the release already (a host that does not fails as the artifact gone)."""
    def say(line: str) -> None:
        pipeline.log(ctx, line, deployment_id=order.deployment_id)

    try:
        return artifacts.on_this_machine(ctx, order, say)
    except artifacts.StoreError as exc:
        if order.existing_release:
            say(str(exc))
            return order
        pipeline.finish_deployment(ctx, order.deployment_id, "failed",
                                   f"{exc}; no host changed")
        return None
    except BaseException as stop:  # the RQ timeout too: recorded, then RQ sees it
        reason = (f"interrupted by {type(stop).__name__} while fetching the artifact;"
                  " nothing switched")
        persist(lambda: pipeline.finish_deployment(ctx, order.deployment_id, "error", reason))
        raise


@contextmanager
def environment_lock(redis: Redis, name: str, *, ttl: float = LOCK_TTL,
                     heartbeat: float = LOCK_HEARTBEAT) -> Iterator[threading.Event]:
    """Hold the environment's lock, or raise LockBusy at once when another holds it. It
    expires after `ttl` seconds unless renewed, every `heartbeat` seconds, by a thread of its
    own; the event is set once it may have been lost (taken over, or not renewable for so
    long that it may have expired)."""
    lock = redis.lock(name, timeout=ttl, thread_local=False)
    if not lock.acquire(blocking=False):
        raise LockBusy(name)
    lost, done = threading.Event(), threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(lock, lost, done, ttl, heartbeat),
                            name="lock-heartbeat", daemon=True)
    beat.start()
    try:
        yield lost
    finally:
        done.set()
        beat.join()
        with suppress(LockError, RedisError):
            lock.release()


def _heartbeat(lock: Lock, lost: threading.Event, done: threading.Event, ttl: float,
               interval: float) -> None:
    renewed = time.monotonic()
    while not done.wait(interval):
        try:
            lock.reacquire()
            renewed = time.monotonic()
        except LockError:  # not ours any more
            lost.set()
            return
        except RedisError:  # unreachable: lost once it may expire before the next beat
            if time.monotonic() - renewed + interval >= ttl:
                lost.set()
                return
