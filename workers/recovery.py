"""Recovery from a dead worker (issue 9, SPEC §7): work whose worker was killed (kill -9,
a machine lost) does not stay `running` for ever.

RQ notices an abandoned job only through another worker of the same queue, and late; so
every `rq-worker` process runs `scan` in a thread of its own, every INTERVAL seconds (one
scan per interval across all processes and machines, under a Redis key taken with SET NX).
A scan finds:
- running builds whose liveness key (kept by `alive` in the build job) is gone: they end
  `failed`, and the deployments waiting for them with them;
- running deployments whose environment's lock is gone (its holder renews it every 15 s;
  it expires after 60 s): a `recover_deployment` job is queued on `deploys`, which takes
  the lock, puts every host that was switched back on its previous release (the deploy
  job's own remote steps), removes the new release, marks the deployment `error` and
  queues the next one. A deployment that takes the lock first does the same itself
  (`recover_environment`) before it touches a host.
Bound: lock TTL 60 s + scan interval 15 s + the recovery job, within two minutes.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache

from redis import Redis
from redis.exceptions import RedisError

from app import context as app_context
from app import pipeline
from app.context import Context
from app.settings import Settings
from workers import abandoned, context, deploy


def _seconds(name: str, default: float) -> float:
    """A duration from the environment (tests make them short), else the default."""
    value = os.environ.get(name, "")
    return float(value) if value else default


INTERVAL = _seconds("CONVEYOR_RECOVERY_INTERVAL", 15.0)   # between scans
LIVENESS_TTL = _seconds("CONVEYOR_RECOVERY_TTL", float(deploy.LOCK_TTL))  # of a build's key
SCAN_LOCK = "conveyor:lock:recovery"

log = logging.getLogger(__name__)
# Held by the scan thread while it works. RQ forks a work horse for each job, and a fork
# taken while this thread held one of SQLAlchemy's or redis-py's locks would leave the horse
# waiting on it for ever: forks wait for the scan in progress instead (`_fork_between_scans`).
_SCANNING = threading.Lock()


@dataclass(frozen=True)
class Scanned:
    """What one scan did: the builds it failed, the deployments it queued recovery for."""

    builds: tuple[int, ...] = ()
    deployments: tuple[int, ...] = ()
    skipped: bool = False  # another process scanned in this interval


def start_scanning(settings: Settings, interval: float = INTERVAL) -> threading.Thread:
    """Run `scan` every `interval` seconds in a daemon thread of this process, on a context
    of its own (never shared with the jobs RQ forks)."""
    _fork_between_scans()
    thread = threading.Thread(target=_scan_forever, args=(settings, interval),
                              name="conveyor-recovery", daemon=True)
    thread.start()
    return thread


def scan(ctx: Context, interval: float = INTERVAL) -> Scanned:
    """Look once for builds and deployments whose worker died, and act on them; at most one
    scan runs per `interval` across every process sharing this Redis."""
    if not ctx.jobs.redis.set(SCAN_LOCK, _owner(), nx=True, ex=max(1, math.ceil(interval))):
        return Scanned(skipped=True)
    return Scanned(builds=tuple(_fail_abandoned_builds(ctx)),
                   deployments=tuple(_queue_abandoned_deployments(ctx)))


def recover_deployment(deployment_id: int) -> None:
    """RQ job on `deploys`: put back and end an abandoned deployment, under its
    environment's lock, then queue the next deployment waiting there."""
    ctx = context()
    target = pipeline.deployment_target(ctx, deployment_id, state="running")
    if target is None:
        return
    try:
        with deploy.environment_lock(ctx.jobs.redis, pipeline.lock_name(*target)):
            ended = abandoned.recover_environment(ctx, *target)
    except deploy.LockBusy:
        # Its holder is alive after all, or is the next deployment, which recovers it first.
        return
    if ended:
        pipeline.queue_next(ctx, *target, after=ended[-1])


@contextmanager
def alive(redis: Redis, key: str, ttl: float = LIVENESS_TTL) -> Iterator[None]:
    """Keep `key` in Redis while the block runs: set now, renewed every ttl/4 seconds by a
    thread of its own, deleted after. Gone, it tells `scan` that the worker died."""
    expiry = max(1, math.ceil(ttl))
    redis.set(key, _owner(), ex=expiry)
    done = threading.Event()
    beat = threading.Thread(target=_keep_alive, args=(redis, key, expiry, done),
                            name="liveness", daemon=True)
    beat.start()
    try:
        yield
    finally:
        done.set()
        beat.join()
        with suppress(RedisError):
            redis.delete(key)


def _keep_alive(redis: Redis, key: str, expiry: int, done: threading.Event) -> None:
    while not done.wait(expiry / 4):
        with suppress(RedisError):  # Redis away: the next beat tries again
            redis.set(key, _owner(), ex=expiry)


def _scan_forever(settings: Settings, interval: float) -> None:
    ctx: Context | None = None
    while True:
        with _SCANNING:
            try:
                ctx = ctx or app_context.load(settings)
                scan(ctx, interval)
            except Exception:  # Redis or the database away: the next round tries again
                log.exception("recovery scan failed; trying again in %s s", interval)
        time.sleep(interval)


@cache
def _fork_between_scans() -> None:
    """Make every fork of this process wait until no scan is under way (once per process)."""
    os.register_at_fork(before=_SCANNING.acquire, after_in_parent=_SCANNING.release,
                        after_in_child=_SCANNING.release)


def _fail_abandoned_builds(ctx: Context) -> list[int]:
    # Read the rows before the keys: a build that ends in between has deleted its key only
    # after recording its end, which the failing then leaves alone.
    running = pipeline.running_builds(ctx)
    alive_now = [b for b in running if ctx.jobs.redis.exists(pipeline.build_liveness_key(b))]
    abandoned = pipeline.abandoned_builds(running, alive_now)
    for build_id in abandoned:
        log.warning("build %s: %s; marking it failed", build_id, pipeline.WORKER_STOPPED)
        pipeline.fail_abandoned_build(ctx, build_id)
    return abandoned


def _queue_abandoned_deployments(ctx: Context) -> list[int]:
    running = pipeline.running_deployments(ctx)
    held = [d.lock for d in running if ctx.jobs.redis.exists(d.lock)]
    queued = []
    for deployment in pipeline.abandoned_deployments(running, held):
        if pipeline.enqueue_recovery(ctx, deployment, time.time()):
            log.warning("deployment %s: %s; recovery queued", deployment.deployment_id,
                        pipeline.WORKER_STOPPED)
            queued.append(deployment.deployment_id)
    return queued


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
