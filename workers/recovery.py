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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache, partial

from redis import Redis
from redis.exceptions import RedisError

from app import context as app_context
from app import pipeline
from app.context import Context
from app.settings import Settings
from workers import context, deploy, hosts, remote, transport


def _seconds(name: str, default: float) -> float:
    """A duration from the environment (tests make them short), else the default."""
    value = os.environ.get(name, "")
    return float(value) if value else default


INTERVAL = _seconds("CONVEYOR_RECOVERY_INTERVAL", 15.0)   # between scans
LIVENESS_TTL = _seconds("CONVEYOR_RECOVERY_TTL", float(deploy.LOCK_TTL))  # of a build's key
SCAN_LOCK = "conveyor:lock:recovery"
NO_ARTIFACT = "0" * 64  # probe needs a sha256; only `current` is read from it here

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
    target = pipeline.running_target(ctx, deployment_id)
    if target is None:
        return
    try:
        with deploy.environment_lock(ctx.jobs.redis, pipeline.lock_name(*target)):
            ended = recover_environment(ctx, *target)
    except deploy.LockBusy:
        # Its holder is alive after all, or is the next deployment, which recovers it first.
        return
    if ended:
        pipeline.queue_next(ctx, *target, after=ended[-1])


def recover_environment(ctx: Context, project: str, environment: str) -> list[int]:
    """Put back and end every deployment of the environment still `running`; the caller
    holds the environment's lock, so each of them lost its worker. Their ids."""
    ended = []
    for abandoned in pipeline.abandoned_in(ctx, project, environment):
        pipeline.log(ctx, f"recovery: {pipeline.WORKER_STOPPED}; putting its hosts back",
                     deployment_id=abandoned.deployment_id)
        undone = put_back(ctx, abandoned)
        pipeline.end_abandoned_deployment(ctx, abandoned.deployment_id, undone)
        ended.append(abandoned.deployment_id)
    return ended


def put_back(ctx: Context, abandoned: pipeline.Abandoned) -> str:
    """Look at each host of an abandoned deployment, put back those on the new release,
    remove it everywhere; say what was done."""
    order = abandoned.order
    if order is None:
        return "its environment is no longer configured: its hosts were not checked"
    deployer = deploy.Deployer(ctx, order, threading.Event())
    look = partial(_look, ctx, order, abandoned.hosts)
    with ThreadPoolExecutor(max_workers=max(1, min(order.environment.parallel,
                                                   len(deployer.runs)))) as pool:
        list(pool.map(look, deployer.runs))
    unchecked = [r.host.spec for r in deployer.runs if r.link is None and not r.switched]
    deployer.commits = pipeline.release_commits(
        ctx, order.project.name, order.environment.name,
        {r.previous for r in deployer.runs if r.previous})
    switched = any(r.switched for r in deployer.runs)
    stuck = deployer.put_back()
    done = stuck or ("every switched host put back" if switched else "no host was switched")
    if unchecked:
        done += f"; not reached, so not checked: {', '.join(unchecked)}"
    return done


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


def _look(ctx: Context, order: pipeline.DeploymentOrder,
          progress: dict[str, pipeline.HostProgress], host_run: deploy.HostRun) -> None:
    """Connect to a host and see whether `current` is the new release; a host that cannot
    be looked at counts as switched when its row says it was (it is then tried again)."""
    row = progress.get(host_run.host.spec)
    recorded = (row.previous_release or "") if row else ""
    try:
        host_run.link = hosts.connect(ctx.config.ssh, host_run.host)
        current = _current(host_run.link, order, float(ctx.config.ssh.command_timeout))
    except (transport.TransportError, ValueError) as exc:
        host_run.error, host_run.cut = str(exc), True
        host_run.switched = pipeline.may_have_switched(row, order.release_id)
        host_run.previous = recorded
        return
    host_run.switched = current == order.release_id
    host_run.previous = recorded if host_run.switched else (current or "")


def _current(link: transport.Transport, order: pipeline.DeploymentOrder,
             timeout: float) -> str | None:
    """The release `current` points at on a host (None: nothing live)."""
    env = order.environment
    step = remote.probe(env.path, order.artifact.sha256 or NO_ARTIFACT, order.artifact.size,
                        look=True)
    result = link.run(step, timeout=timeout)
    if result.exit_status != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit {result.exit_status}"]
        raise ValueError(f"probe failed: {reason[0]}")
    return remote.parse_probe(result.stdout).current


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
