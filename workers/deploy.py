"""The deploy job: put one artifact live on every host of an environment, in two phases.

*prepare* runs on every host (`parallel` at once) and changes nothing that is live: upload
unless the host holds the artifact, verify, unpack into `releases/<release-id>`. Any failure
there removes the half-made releases and ends the deployment with no host switched.
*activate* then switches `current` on every host; a failure puts every activated host back.
What runs on a host is data (`workers.remote`); how it runs is the transport.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.exceptions import LockError

from app import pipeline
from app.config import Host, Ssh
from app.context import Context
from workers import context, remote, transport

LOCK_TTL = 60            # a dead worker's lock is free again after this many seconds
LOCK_HEARTBEAT = 15      # the live holder renews it this often
LOCK_WAIT = 6 * 3600     # a deployment waits this long for the one before it


class LockLost(Exception):
    """The environment's lock expired under us: another deployment may be running."""


@dataclass
class HostRun:
    """One host's part in a deployment, with the one connection it uses for everything."""

    host: Host
    link: transport.Transport | None = None
    previous: str = ""
    prepared: bool = False
    activated: bool = False
    error: str | None = None
    unreachable: bool = False
    lines: list[str] = field(default_factory=list)


def run(deployment_id: int) -> None:
    """RQ job on the `deploys` queue: one deployment, one at a time per environment."""
    ctx = context()
    target = pipeline.deployment_target(ctx, deployment_id)
    if target is None:
        return
    with environment_lock(ctx.jobs.redis, pipeline.lock_name(*target)) as lock_lost:
        order = pipeline.start_deployment(ctx, deployment_id)
        if order is None:
            return
        try:
            state, error = Deployer(ctx, order, lock_lost).deploy()
        except Exception as exc:
            pipeline.finish_deployment(ctx, deployment_id, "error",
                                       f"internal error: {type(exc).__name__}: {exc}")
            raise
    pipeline.finish_deployment(ctx, deployment_id, state, error)


@contextmanager
def environment_lock(redis: Redis, name: str) -> Iterator[threading.Event]:
    """Hold the environment's lock, renewed by a heartbeat; the event is set if it is lost."""
    lock = redis.lock(name, timeout=LOCK_TTL, sleep=0.5, blocking_timeout=LOCK_WAIT,
                      thread_local=False)
    if not lock.acquire():
        raise LockLost(f"waited {LOCK_WAIT}s for {name} without getting it")
    lost, done = threading.Event(), threading.Event()

    def heartbeat() -> None:
        while not done.wait(LOCK_HEARTBEAT):
            try:
                lock.reacquire()
            except LockError:
                lost.set()
                return

    beat = threading.Thread(target=heartbeat, name="lock-heartbeat", daemon=True)
    beat.start()
    try:
        yield lost
    finally:
        done.set()
        beat.join()
        with suppress(LockError):
            lock.release()


class Deployer:
    """Drives the two phases over the environment's hosts."""

    def __init__(self, ctx: Context, order: pipeline.DeploymentOrder,
                 lock_lost: threading.Event) -> None:
        self.ctx, self.order, self.lock_lost = ctx, order, lock_lost
        self.env = order.environment
        self.runs = [HostRun(host) for host in self.env.hosts]
        self.timeout = float(ctx.config.ssh.command_timeout)

    def deploy(self) -> tuple[str, str | None]:
        """(`succeeded` | `failed` | `error`, what went wrong)."""
        try:
            self._each(self._prepare)
            failed = [r for r in self.runs if r.error]
            if failed:
                self._each(self._discard, only=[r for r in self.runs if r.prepared])
                state = "error" if all(r.unreachable for r in failed) else "failed"
                return state, self._summary("prepare", failed)
            if self.lock_lost.is_set():
                self._each(self._discard)
                return "error", "the environment's lock was lost before activation; nothing changed"
            self._each(self._activate)
            failed = [r for r in self.runs if r.error]
            if failed:
                self._each(self._rollback, only=[r for r in self.runs if r.activated])
                return "failed", self._summary("activate", failed)
            self._each(self._prune)
            return "succeeded", None
        finally:
            for host_run in self.runs:
                if host_run.link is not None:
                    host_run.link.close()

    def _each(self, step: Callable[[HostRun], None], only: list[HostRun] | None = None) -> None:
        runs = self.runs if only is None else only
        if not runs:
            return
        with ThreadPoolExecutor(max_workers=min(self.env.parallel, len(runs))) as pool:
            list(pool.map(lambda host_run: self._guarded(step, host_run), runs))

    def _guarded(self, step: Callable[[HostRun], None], host_run: HostRun) -> None:
        try:
            step(host_run)
        except transport.TransportError as exc:
            host_run.error = str(exc)
            host_run.unreachable = host_run.unreachable or host_run.link is None
        except (StepFailed, ValueError) as exc:
            # ValueError: a value the step builders refuse to send to a host.
            host_run.error = str(exc)
        if host_run.error:
            self._note(host_run, state="failed", error=host_run.error)

    # -- steps ------------------------------------------------------------------------------

    def _prepare(self, host_run: HostRun) -> None:
        self._note(host_run, state="running", step="connect")
        ssh: Ssh = self.ctx.config.ssh
        host_run.link = transport.connect(
            transport.HostSpec.parse(host_run.host.spec, host_run.host.host_key),
            key_path=ssh.key, known_hosts=ssh.known_hosts,
            connect_timeout=float(ssh.connect_timeout))
        artifact = self.order.artifact
        self._note(host_run, step="probe")
        probed = remote.parse_probe(
            self._step(host_run, remote.probe(self.env.path, artifact.sha256)))
        host_run.previous = probed.current or ""
        self._note(host_run, previous_release=probed.current)
        uploaded = not probed.has_artifact
        if uploaded:
            self._note(host_run, step="upload")
            host_run.link.put(Path(artifact.path),
                              remote.artifact_path(self.env.path, artifact.sha256),
                              timeout=self.timeout)
        self._note(host_run, step="prepare", uploaded=uploaded)
        self._step(host_run, remote.prepare(self.env.path, artifact.sha256,
                                            self.order.release_id, self._env(host_run)))
        host_run.prepared = True
        self._note(host_run, state="prepared")

    def _activate(self, host_run: HostRun) -> None:
        self._note(host_run, step="activate")
        self._step(host_run, remote.activate(self.env.path, self.order.release_id,
                                             self._env(host_run)))
        host_run.activated = True
        self._note(host_run, state="succeeded", step="live", release=self.order.release_id)

    def _rollback(self, host_run: HostRun) -> None:
        self._step(host_run, remote.rollback(self.env.path, host_run.previous or None,
                                             self._env(host_run)))
        self._note(host_run, state="rolled_back", step="rolled back",
                   release=host_run.previous or None)

    def _discard(self, host_run: HostRun) -> None:
        if host_run.link is not None and host_run.prepared:
            self._step(host_run, remote.discard(self.env.path, self.order.release_id))
            host_run.prepared = False

    def _prune(self, host_run: HostRun) -> None:
        self._step(host_run, remote.prune(self.env.path, self.env.keep_releases))

    # -- helpers ----------------------------------------------------------------------------

    def _step(self, host_run: HostRun, step: remote.Step) -> str:
        assert host_run.link is not None
        result = host_run.link.run(step, timeout=self.timeout)
        for line in (result.stdout + result.stderr).splitlines():
            pipeline.log(self.ctx, f"[{host_run.host.spec}] {step.name}: {line}",
                         deployment_id=self.order.deployment_id)
        if result.exit_status != 0:
            reason = (result.stderr.strip().splitlines() or [f"exit {result.exit_status}"])[-1]
            raise StepFailed(f"{host_run.host.spec}: {step.name} failed: {reason}")
        return result.stdout

    def _env(self, host_run: HostRun) -> dict[str, str]:
        releases = f"{self.env.path}/releases"
        return {
            "CONVEYOR_PROJECT": self.order.project.name,
            "CONVEYOR_ENVIRONMENT": self.env.name,
            "CONVEYOR_SHA": self.order.sha,
            "CONVEYOR_REF": self.order.ref,
            "CONVEYOR_RELEASE_ID": self.order.release_id,
            "CONVEYOR_RELEASE_PATH": f"{releases}/{self.order.release_id}",
            "CONVEYOR_PREVIOUS_RELEASE_PATH":
                f"{releases}/{host_run.previous}" if host_run.previous else "",
        }

    def _note(self, host_run: HostRun, **fields: object) -> None:
        pipeline.update_host(self.ctx, self.order.deployment_id, host_run.host.spec, **fields)

    def _summary(self, phase: str, failed: list[HostRun]) -> str:
        first = failed[0].error or "failed"
        more = f" (and {len(failed) - 1} more host(s))" if len(failed) > 1 else ""
        return f"{phase} failed, no host changed: {first}{more}" if phase == "prepare" \
            else f"{phase} failed, activated hosts put back: {first}{more}"


class StepFailed(Exception):
    """A remote step exited non-zero; the message names the host and the step."""
