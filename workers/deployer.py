"""How one deployment runs over the hosts of an environment, in two phases (and a watch).

*prepare* runs on every host (`parallel` at once) and changes nothing that is live: upload
unless the host holds the artifact, verify, unpack into `releases/<release-id>`, link
`shared`, run `before_activate`. A failure stops the other hosts early (except a host that
cannot be reached: the others keep what they prepared, for a retry), removes the half-made
releases and ends the deployment with no host switched.
*activate* then switches `current` on `batch` hosts at a time (0: all together), runs
`after_activate` and the health check there; a failure puts every host switched so far back
on its previous release (running `after_activate` there) and removes the new release.
*watch* (with `healthcheck.watch`) then runs the health check once on every host, every
`interval`, for that long; a failure there puts every host back the same way.
Then old releases are pruned. Whatever interrupts it puts the switched hosts back first.
What runs on a host is data (`workers.remote`); how it runs is the transport; what the
outcome means (states, good and bad releases) is the pipeline's.
"""

from __future__ import annotations

import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from app import config as cfg
from app import pipeline
from app.context import Context
from workers import hosts, remote, transport
from workers.delta import DeltaSource
from workers.hosts import Look

LOCK_LOST = "the environment's lock was lost (Redis unreachable?); no host was left switched"
# After an interruption, the end of a deployment is recorded even through a short database
# outage: writes are tried again for this long.
RECORD_PATIENCE = 20.0
# An incremental deployment sends the changed files only while they are at most this share
# of the artifact's files; beyond it the whole artifact goes (it is compressed, they are not).
INCREMENTAL_SHARE = 0.5


class StepFailed(Exception):
    """A remote step exited non-zero; the message names the host and the step."""

    def __init__(self, message: str, result: transport.Result) -> None:
        super().__init__(message)
        self.exit_status, self.stdout = result.exit_status, result.stdout


class Canceled(Exception):
    """This host's work stopped because another host failed, the lock was lost or someone
    canceled the deployment."""


class ArtifactGone(Exception):
    """A host needs the artifact and this machine no longer has it."""


@dataclass(eq=False)  # each run is itself: compared and hashed by identity
class HostRun:
    """One host's part in a deployment, with the one connection it uses for everything."""

    host: cfg.Host
    link: transport.Transport | None = None
    previous: str = ""          # the release live before the deployment; "" = none
    uploaded: bool | None = None
    switched: bool = False      # `current` points (or may point) at the new release
    rolled_back: bool = False
    cut: bool = False           # its connection was closed under a step: connect anew
    error: str | None = None
    unreachable: bool = False   # the host, not the release, is to blame for `error`
    timings: dict[str, float] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)  # written with the host's next note


def persist(write: Callable[[], None], patience: float = RECORD_PATIENCE) -> None:
    """Run a database write, trying again through an outage of up to `patience` seconds."""
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            write()
            return
        except DBAPIError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class Deployer:
    """Drives the two phases over the environment's hosts."""

    def __init__(self, ctx: Context, order: pipeline.DeploymentOrder,
                 lock_lost: threading.Event) -> None:
        self.ctx, self.order, self.lock_lost = ctx, order, lock_lost
        self.env = order.environment
        self.runs = [HostRun(host) for host in order.hosts or self.env.hosts]
        self.timeout = float(ctx.config.ssh.command_timeout)
        self.stop = threading.Event()  # a host failed to prepare: the others stop early
        self.paths = _Paths(self.env.path, order.release_id)
        self.commits: dict[str, tuple[str, str]] = {}  # (sha, ref) of the releases put back
        self.undone: str | None = None  # after an interruption: what was put back, or not
        self.canceled_by: str | None = None
        self.preparing = True
        self._delta_lock = threading.Lock()
        self._delta: DeltaSource | bool | None = False  # False: not read yet

    def deploy(self) -> tuple[str, str | None]:
        """(`succeeded` | `failed` | `error`, what went wrong). Whatever interrupts it (a
        database error, the job's timeout, a bug) first puts every switched host back on its
        previous release, reconnecting where needed, then goes on up; `undone` says how that
        went."""
        try:
            return self._phases()
        except BaseException:
            self.undone = self._recover()
            raise
        finally:
            self._close()

    def put_back(self) -> str | None:
        """Undo a run of this deployment whose worker died (`workers.recovery` first sets
        each host's `link`, `previous` and `switched` from what the host shows): put the
        switched hosts back, remove the new release, record each host's end, close the
        connections; a sentence when some host could not be put back."""
        try:
            return self._undo()
        finally:
            self._close()

    def _close(self) -> None:
        for host_run in self.runs:
            if host_run.link is not None:
                host_run.link.close()
        if isinstance(self._delta, DeltaSource):
            self._delta.close()

    def _phases(self) -> tuple[str, str | None]:
        artifact = Path(self.order.artifact.path)
        if not self.order.existing_release and not artifact.is_file():
            return (self._outcome(stopped="artifact gone"),
                    f"the artifact {self.order.artifact.path} is gone; build again")
        self._each(self._prepare, self.runs, self.env.parallel)
        failed = self._failed()
        if failed or self.lock_lost.is_set() or self._canceled():
            # A host that could not be reached is not the release's fault: the others keep
            # what they prepared (not live), so that a retry does only what is left.
            keep = bool(failed) and self._outcome(failed) == "error"
            if not keep:
                self._each(self._discard, self._reached(), self.env.parallel)
            self._settle(kept=keep)
            if failed:
                kept = "; the prepared hosts keep the release for a retry" if keep else ""
                return self._outcome(failed), _summary("prepare failed", failed,
                                                       "no host changed" + kept)
            if self.lock_lost.is_set():
                return self._outcome(stopped="lock lost"), LOCK_LOST
            return self._outcome(stopped="canceled"), (f"canceled by {self.canceled_by};"
                                                       " no host changed")
        self.preparing = False
        # Read now: putting hosts back must not need the database.
        self.commits = pipeline.release_commits(self.ctx, self.order.project.name,
                                                self.env.name,
                                                {r.previous for r in self.runs if r.previous})
        for batch in pipeline.activation_batches(len(self.runs), self.env.batch):
            if self.lock_lost.is_set():
                return self._lock_lost_now(LOCK_LOST)
            if self._canceled():
                return self._cancel_now()
            switching = [self.runs[index] for index in batch]
            self._each(self._activate, switching, len(switching))
            failed = self._failed()
            if not failed:
                self._record({r: {"step": "live", "release": self.order.release_id}
                              for r in switching})
            else:
                undone = self._undo()
                if undone:
                    return self._outcome(failed, stuck=True), undone
                return self._outcome(failed), _summary("activate failed", failed,
                                                       "every switched host put back")
        watched = self._watch()
        if watched is not None:
            return watched
        self._each(self._prune, self.runs, self.env.parallel)
        self._record({r: {"state": "succeeded", "step": "live", "release": self.order.release_id,
                          "timings": dict(r.timings)} for r in self.runs})
        return self._outcome(), None

    # -- phases, per host ---------------------------------------------------------------------

    def _prepare(self, host_run: HostRun) -> None:
        """Connect, then prepare; prepare says when the host lacks the artifact (or holds a
        copy that is not intact): it is uploaded then, and prepare runs again, once."""
        self._checkpoint()
        self._note(host_run, state="running", step="connect")
        ssh = self.ctx.config.ssh
        with self._timed(host_run, "connect"):
            host_run.link = hosts.connect(ssh, host_run.host)
        self._checkpoint()
        env = self._env(host_run)
        del env["CONVEYOR_PREVIOUS_RELEASE_PATH"]  # prepare.sh sets it from what is live
        step = remote.prepare(self.env.path, self.order.artifact.sha256, self.order.release_id,
                              env, shared=self.env.shared, hooks=self.env.before_activate)
        host_run.uploaded = False
        try:
            with self._timed(host_run, "prepare"):
                stdout = self._step(host_run, step, quiet=(remote.EXIT_NO_ARTIFACT,))
        except StepFailed as exc:
            host_run.previous = remote.parse_prepare(exc.stdout).previous or ""
            if exc.exit_status == remote.EXIT_RELEASE_EXISTS and self.order.existing_release:
                stdout = exc.stdout  # a rollback's release, or what a retry prepared before
                self._say(host_run, f"releases/{self.order.release_id} is there already")
            elif exc.exit_status not in (remote.EXIT_NO_ARTIFACT, remote.EXIT_CORRUPT):
                raise
            else:
                stdout = self._prepare_incremental(host_run, step) or ""
                if not stdout:
                    self._upload(host_run)
                    with self._timed(host_run, "prepare"):
                        stdout = self._step(host_run, step)
        host_run.previous = remote.parse_prepare(stdout).previous or ""
        self._note(host_run, state="prepared", step="prepared", uploaded=host_run.uploaded,
                   previous_release=host_run.previous or None)

    def _prepare_incremental(self, host_run: HostRun, step: remote.Step) -> str | None:
        """Send only the files the host lacks given its live release, and assemble the new
        release from that one (`step`'s arguments, plus where from). None when the whole
        artifact is to be sent instead: no list of files in the artifact, nothing live on
        the host, too much changed, or the assembled release did not match the list."""
        assert host_run.link is not None
        if not host_run.previous:  # a new host: nothing to build on
            return None
        source = self._delta_source()
        if source is None:
            return None
        self._checkpoint()
        path, sha256 = self.env.path, self.order.artifact.sha256
        with self._timed(host_run, "upload"):
            host_run.link.put(source.files, remote.files_path(path, sha256),
                              timeout=self.timeout)
        with self._timed(host_run, "lacks"):
            said = self._step(host_run, remote.lacks(path, sha256))
        try:
            lacks = remote.parse_lacks(said)
        except ValueError as exc:
            self._say(host_run, f"{exc}: sending the whole artifact")
            return None
        names = frozenset(lacks.names)
        if not lacks.usable or lacks.previous is None:
            self._say(host_run, "no release to build on: sending the whole artifact")
            return None
        if source.size_of(names) > INCREMENTAL_SHARE * source.total:
            self._say(host_run, f"{len(names)} file(s) changed: sending the whole artifact")
            return None
        try:
            delta = source.tar(names)
        except (ValueError, OSError, tarfile.TarError, EOFError, zlib.error) as exc:
            self._say(host_run, f"{exc}: sending the whole artifact")
            return None
        self._checkpoint()
        self._note(host_run, step="upload", uploaded=True,
                   previous_release=host_run.previous or None)
        host_run.uploaded = True
        with self._timed(host_run, "upload"):
            host_run.link.put(delta, remote.delta_path(path, sha256), timeout=self.timeout)
        assemble = remote.prepare(path, sha256, self.order.release_id, step.env,
                                  shared=self.env.shared, hooks=self.env.before_activate,
                                  assemble_from=(lacks.previous, source.sha256))
        try:
            with self._timed(host_run, "prepare"):
                stdout = self._step(host_run, assemble,
                                    quiet=(remote.EXIT_CORRUPT, remote.EXIT_NO_ARTIFACT))
        except StepFailed as exc:
            if exc.exit_status not in (remote.EXIT_CORRUPT, remote.EXIT_NO_ARTIFACT):
                raise
            self._say(host_run, f"could not assemble from releases/{lacks.previous}"
                                f" ({_reason_of(exc)}): sending the whole artifact")
            return None
        kilobytes = (delta.stat().st_size + source.files.stat().st_size) / 1e3
        self._say(host_run, f"sent {len(names)} changed file(s) and the list of files"
                            f" ({kilobytes:.0f} kB); the rest linked from"
                            f" releases/{lacks.previous}")
        return stdout

    def _delta_source(self) -> DeltaSource | None:
        """The artifact's list of files, read once for every host (None without one)."""
        with self._delta_lock:
            if self._delta is False:
                self._delta = DeltaSource.of(Path(self.order.artifact.path))
            return self._delta if isinstance(self._delta, DeltaSource) else None

    def _upload(self, host_run: HostRun) -> None:
        assert host_run.link is not None
        self._checkpoint()
        artifact = self.order.artifact
        if not Path(artifact.path).is_file():
            raise ArtifactGone(f"{host_run.host.spec} lacks releases/{self.order.release_id}"
                               f" and its artifact {artifact.path} is gone from this machine")
        self._note(host_run, step="upload", uploaded=True,
                   previous_release=host_run.previous or None)
        host_run.uploaded = True
        with self._timed(host_run, "upload"):
            host_run.link.put(Path(artifact.path), self.paths.artifact(artifact.sha256),
                              timeout=self.timeout)
        megabytes, seconds = artifact.size / 1e6, host_run.timings["upload"]
        self._say(host_run, f"uploaded the artifact, {megabytes:.1f} MB in {seconds:.1f} s")

    def _activate(self, host_run: HostRun) -> None:
        self._checkpoint()
        step = remote.activate(self.env.path, self.order.release_id, self._env(host_run))
        try:
            with self._timed(host_run, "activate"):
                self._step(host_run, step)
        except transport.TransportError:
            host_run.switched = True  # it may have switched before the connection went
            raise
        host_run.switched = True
        check = self.env.healthcheck
        if check is not None or self.env.after_activate:
            after = remote.after_activate(self.env.path, self.order.release_id,
                                          self._env(host_run), hooks=self.env.after_activate,
                                          healthcheck=check)
            self._note(host_run, step="healthcheck" if check else "after_activate")
            with self._timed(host_run, "after_activate"):
                self._step(host_run, after, self.timeout + remote.healthcheck_seconds(check))

    def _watch(self) -> tuple[str, str | None] | None:
        """Every host live: check them all every `interval` for `watch` seconds. A failure, a
        host lost or the lock lost puts every host back; the outcome then, else None."""
        check = self.env.healthcheck
        if check is None or check.watch <= 0:
            return None
        self._record({r: {"step": "watch"} for r in self.runs})
        started = time.monotonic()
        rounds = check.watch_rounds
        for due in rounds:
            # Waiting on the lock's event: a lost lock ends the watch now, not at the round.
            if self.lock_lost.wait(max(0.0, started + due - time.monotonic())):
                took = round(time.monotonic() - started)
                return self._lock_lost_now(f"watch stopped after {took} s: {LOCK_LOST}")
            if self._canceled():
                return self._cancel_now()
            self._each(self._check, self.runs, len(self.runs))
            failed = self._failed()
            if failed:
                return self._watch_failed(failed, round(time.monotonic() - started))
        for host_run in self.runs:
            self._say(host_run, f"healthy for {check.watch} s of watch ({len(rounds)} checks)")
        return None

    def _watch_failed(self, failed: list[HostRun], took: int) -> tuple[str, str]:
        """Put every host back after a failed round; the deployment's outcome."""
        undone = self._undo()
        if undone:
            return self._outcome(failed, stuck=True), undone
        return self._outcome(failed), _summary(f"watch failed after {took} s", failed,
                                               "every host put back")

    def _check(self, host_run: HostRun) -> None:
        """One round of the watch on a host: one attempt of the health check, quietly when
        it passes (a long watch would fill the log with the same line)."""
        self._checkpoint()
        check = self.env.healthcheck
        assert check is not None
        step = remote.healthcheck(self.env.path, self.order.release_id, self._env(host_run),
                                  check)
        with self._timed(host_run, "watch"):
            self._step(host_run, step, self.timeout + remote.healthcheck_seconds(check.once),
                       quiet=(0,))

    def _prune(self, host_run: HostRun) -> None:
        """Prune old releases; a failure here is only logged: the release is live."""
        protect = [host_run.previous] if host_run.previous else []
        try:
            with self._timed(host_run, "prune"):
                self._step(host_run, remote.prune(self.env.path, self.env.keep_releases, protect))
        except (transport.TransportError, StepFailed) as exc:
            self._say(host_run, f"pruning failed (the release is live all the same): {exc}")

    def _recover(self) -> str:
        """After an interruption: put back every host that may have switched, remove the new
        release, record what each host runs if the database lets us; say what was done."""
        self.stop.set()
        switched = any(r.switched for r in self.runs)
        try:
            stuck = self._put_back()
        except BaseException as exc:  # never let the cleanup hide what interrupted us
            return f"putting hosts back failed: {type(exc).__name__}: {exc}"
        with suppress(Exception):
            persist(self._settle)
        done = "every switched host put back" if switched else "no host was switched"
        return _stuck_summary(stuck, self.order.release_id) or done

    def _undo(self) -> str | None:
        """Put every switched host back, remove the new release everywhere, record each
        host's end; a sentence when some host could not be put back."""
        stuck = self._put_back()
        self._settle()
        return _stuck_summary(stuck, self.order.release_id)

    def _put_back(self) -> list[HostRun]:
        """Roll every switched host back and discard the new release on every host reached
        (neither needs the database); the hosts that could not be put back."""
        switched = [r for r in self.runs if r.switched and not r.rolled_back]
        self._each(self._rollback, switched, len(switched))
        self._each(self._discard, self._reached(), self.env.parallel)
        return [r for r in switched if not r.rolled_back]

    def _rollback(self, host_run: HostRun) -> None:
        previous = host_run.previous or None
        sha, ref = self.commits.get(host_run.previous, ("", ""))
        env = self._env(host_run, release=host_run.previous, previous=self.order.release_id,
                        sha=sha, ref=ref)
        step = remote.rollback(self.env.path, previous, env, hooks=self.env.after_activate)
        try:
            with self._timed(host_run, "rollback"):
                self._step_reconnecting(host_run, step)
        except StepFailed as exc:
            if exc.exit_status != remote.EXIT_HOOK:
                raise _Unrecoverable(str(exc)) from exc
            # `current` is back; only an after_activate hook failed there.
            self._say(host_run, f"put back, but {exc}")
        except transport.TransportError as exc:
            raise _Unrecoverable(str(exc)) from exc
        host_run.rolled_back = True

    def _discard(self, host_run: HostRun) -> None:
        if host_run.link is None or (host_run.switched and not host_run.rolled_back):
            return
        if self.order.keep_release:  # a rollback's release is an old, good one: never removed
            return
        try:
            self._step_reconnecting(host_run, remote.discard(self.env.path, self.order.release_id))
        except (transport.TransportError, StepFailed) as exc:
            self._say(host_run, f"could not remove the new release: {exc}")

    def _step_reconnecting(self, host_run: HostRun, step: remote.Step) -> str:
        """Run a step that putting things back needs (it may run twice): on the host's
        connection, or on a new one when that one was cut or breaks."""
        if not host_run.cut:
            try:
                return self._step(host_run, step)
            except transport.DeadlineExceeded:
                raise
            except transport.TransportError as exc:
                self._say(host_run, f"{exc}; connecting again")
        self._reconnect(host_run)
        return self._step(host_run, step)

    def _reconnect(self, host_run: HostRun) -> None:
        if host_run.link is not None:
            with suppress(Exception):
                host_run.link.close()
        host_run.link = None
        host_run.link = hosts.connect(self.ctx.config.ssh, host_run.host)
        host_run.cut = False

    def _settle(self, *, kept: bool = False) -> None:
        """Record every host's end after a failure: what is live there now and why (`kept`:
        the hosts that prepared keep the new release)."""
        ends: dict[HostRun, dict[str, object]] = {}
        for host_run in self.runs:
            if host_run.switched and not host_run.rolled_back:
                ends[host_run] = {"state": "error", "step": "rollback",
                                  "release": self.order.release_id, "error": host_run.error,
                                  "timings": dict(host_run.timings)}
                continue
            if host_run.error:
                state = "failed"
            elif host_run.rolled_back:
                state = "rolled_back"
            else:
                state = "canceled"
            known = host_run.link is not None and (not host_run.switched or host_run.rolled_back)
            release = (host_run.previous or None) if known else None
            fields: dict[str, object] = {"state": state, "timings": dict(host_run.timings)}
            if known:
                fields["release"] = fields["previous_release"] = release
            if state == "canceled" and host_run.link is not None:
                fields["step"] = "prepared" if kept else "discarded"
            ends[host_run] = fields
        self._record(ends)

    # -- helpers ------------------------------------------------------------------------------

    def _each(self, step: Callable[[HostRun], None], runs: list[HostRun], workers: int) -> None:
        """Run `step` on each host, `workers` at once. When this thread is interrupted (the
        job's timeout) or a step raises what `_guarded` does not expect, the connections of
        the hosts still at work are cut, so that their steps end now, not at their deadline."""
        if not runs:
            return
        pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(runs))))
        futures = [pool.submit(self._guarded, step, host_run) for host_run in runs]
        try:
            for future in futures:
                future.result()
        except BaseException:
            self.stop.set()
            for host_run, future in zip(runs, futures, strict=True):
                if not future.done():
                    self._cut(host_run)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _cut(host_run: HostRun) -> None:
        link = host_run.link
        if link is not None and not isinstance(link, transport.LocalTransport):
            host_run.cut = True
            with suppress(Exception):
                link.close()

    def _guarded(self, step: Callable[[HostRun], None], host_run: HostRun) -> None:
        try:
            step(host_run)
            return
        except Canceled:  # another host failed: this one is settled with the rest
            return
        except transport.TransportError as exc:
            if host_run.cut:  # we cut it, to stop: the host itself did not fail
                return
            if isinstance(exc, transport.DeadlineExceeded):
                host_run.log += _output_lines(exc.stdout, exc.stderr)
            else:
                host_run.unreachable = True
            self._fail(host_run, str(exc))
        except (StepFailed, _Unrecoverable, ArtifactGone, ValueError) as exc:
            # ValueError: a value the step builders refuse to send to a host.
            self._fail(host_run, str(exc))
        # A host that cannot be reached while preparing does not stop the others: what they
        # prepare is kept (not live) for a retry. Any other failure stops every host early.
        if not (host_run.unreachable and self.preparing):
            self.stop.set()
        # Bookkeeping only (the end is recorded with the rest): a database outage here must
        # not stop the other hosts' work, which may be putting them back.
        with suppress(DBAPIError):
            self._note(host_run, state="failed", error=host_run.error)

    @staticmethod
    def _fail(host_run: HostRun, error: str) -> None:
        """Record what went wrong on a host, after what went wrong before (if anything)."""
        host_run.error = f"{host_run.error}; then {error}" if host_run.error else error

    def _checkpoint(self) -> None:
        if self.stop.is_set() or self.lock_lost.is_set() or self._canceled():
            raise Canceled

    def _cancel_now(self) -> tuple[str, str]:
        """Someone canceled the deployment after hosts switched: put them back."""
        undone = self._undo()
        if undone:
            return self._outcome(stopped="canceled", stuck=True), undone
        return (self._outcome(stopped="canceled"),
                f"canceled by {self.canceled_by}; every switched host put back")

    def _lock_lost_now(self, message: str) -> tuple[str, str]:
        """The lock was lost after hosts switched: put them back."""
        undone = self._undo()
        return self._outcome(stopped="lock lost", stuck=bool(undone)), undone or message

    def _canceled(self) -> bool:
        """Whether someone asked to cancel the deployment (asked once, remembered)."""
        if self.canceled_by is None:
            self.canceled_by = pipeline.cancel_requested(self.ctx, self.order.deployment_id)
        return self.canceled_by is not None

    def _step(self, host_run: HostRun, step: remote.Step, timeout: float | None = None, *,
              quiet: tuple[int, ...] = ()) -> str:
        """Run a step; its output goes to the log (unless it ends with a `quiet` status);
        StepFailed unless it exits 0."""
        assert host_run.link is not None
        result = host_run.link.run(step, timeout=timeout or self.timeout)
        if result.exit_status not in quiet:
            prefix = f"{step.name}: "
            host_run.log += [prefix + line for line in _output_lines(result.stdout, result.stderr)]
        if result.exit_status != 0:
            reason = _reason(result)
            raise StepFailed(f"{host_run.host.spec}: {step.name} failed: {reason}", result)
        return result.stdout

    @contextmanager
    def _timed(self, host_run: HostRun, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            spent = host_run.timings.get(name, 0.0) + time.monotonic() - started
            host_run.timings[name] = round(spent, 3)

    def _env(self, host_run: HostRun, *, release: str | None = None,
             previous: str | None = None, sha: str | None = None,
             ref: str | None = None) -> dict[str, str]:
        """The CONVEYOR_* variables of hooks and health checks (SPEC §6)."""
        release = self.order.release_id if release is None else release
        previous = host_run.previous if previous is None else previous
        return {
            "CONVEYOR_PROJECT": self.order.project.name,
            "CONVEYOR_ENVIRONMENT": self.env.name,
            "CONVEYOR_SHA": self.order.sha if sha is None else sha,
            "CONVEYOR_REF": self.order.ref if ref is None else ref,
            "CONVEYOR_RELEASE_ID": release,
            "CONVEYOR_RELEASE_PATH": self.paths.release(release),
            "CONVEYOR_PREVIOUS_RELEASE_PATH": self.paths.release(previous) if previous else "",
        }

    def _note(self, host_run: HostRun, **fields: object) -> None:
        """Record the host's progress, with the log lines gathered since its last note."""
        lines = [f"[{host_run.host.spec}] {line}" for line in host_run.log]
        pipeline.update_host(self.ctx, self.order.deployment_id, host_run.host.spec,
                             log=lines, **fields)
        host_run.log = []  # kept for the next write when this one failed

    def _record(self, updates: dict[HostRun, dict[str, object]]) -> None:
        """Record the progress of several hosts (and their log lines) in one write."""
        lines = [f"[{r.host.spec}] {line}" for r in updates for line in r.log]
        pipeline.update_hosts(self.ctx, self.order.deployment_id,
                              {r.host.spec: fields for r, fields in updates.items()}, log=lines)
        for host_run in updates:
            host_run.log = []

    @staticmethod
    def _say(host_run: HostRun, line: str) -> None:
        host_run.log.append(line)

    def _failed(self) -> list[HostRun]:
        return [r for r in self.runs if r.error]

    def _reached(self) -> list[HostRun]:
        return [r for r in self.runs if r.link is not None]

    @staticmethod
    def _outcome(failed: Sequence[HostRun] = (), *, stopped: str | None = None,
                 stuck: bool = False) -> str:
        """The state the pipeline gives what happened (`rules.deployment_outcome`)."""
        return pipeline.deployment_outcome(failed_unreachable=[r.unreachable for r in failed],
                                           stopped=stopped, stuck=stuck)


class _Unrecoverable(Exception):
    """A host could not be put back on its previous release."""


@dataclass(frozen=True)
class _Paths:
    root: str
    release_id: str

    def release(self, release_id: str) -> str:
        return f"{self.root}/releases/{release_id}"

    def artifact(self, sha256: str) -> str:
        return remote.artifact_path(self.root, sha256)


def _reason(result: transport.Result) -> str:
    """Why a step failed, in one line: the scripts' last `conveyor: ` message (with the lines
    that detail it), else the last line of error output."""
    lines = result.stderr.strip().splitlines()
    said = [n for n, line in enumerate(lines) if line.startswith("conveyor: ")]
    if said:
        first = said[-1]
        text = " ".join(line.strip() for line in lines[first:first + 6])
        return text.removeprefix("conveyor: ")[:600]
    return lines[-1][:600] if lines else f"exit status {result.exit_status}"


def _reason_of(exc: StepFailed) -> str:
    return str(exc).split(" failed: ", 1)[-1]


def _stuck_summary(stuck: list[HostRun], release_id: str) -> str | None:
    """Which hosts could not be put back, and on which release each may be left."""
    if not stuck:
        return None
    named = "; ".join(f"{r.host.spec} may still run {release_id} (its previous release"
                      f" {r.previous or '(none)'} could not be put back: {r.error or 'unknown'})"
                      for r in stuck)
    return f"rollback failed: {named}"


def _output_lines(stdout: str, stderr: str) -> list[str]:
    return (stdout + stderr).splitlines()


def _summary(headline: str, failed: list[HostRun], outcome: str) -> str:
    first = failed[0].error or "failed"
    more = f" (and {len(failed) - 1} more host(s))" if len(failed) > 1 else ""
    return f"{headline}, {outcome}: {first}{more}"


def plan(env: cfg.Environment, *, project: str, sha: str, ref: str,
         artifact: pipeline.Artifact | None, build: str, hosts: list[Look]) -> list[str]:
    """What a deployment of `sha` to `env` would do, as lines for a person: the hosts and
    what they hold (`hosts`: what `workers.hosts.look` saw), then the steps of each phase,
    in the order the deploy job takes them. Pure: it reads nothing and changes nothing."""
    path, release = env.path, f"{env.path}/releases/<UTC time>-{sha[:7]}"
    held = {look.host: look for look in hosts}
    lines = [f"deploy {project} to {env.name}: commit {sha[:12]}" + (f" ({ref})" if ref else "")]
    if artifact is None:
        lines.append(f"artifact: not built yet; {build} builds it first")
    else:
        lines.append(f"artifact: {artifact.sha256} ({artifact.size / 1e6:.1f} MB), {build}")
    lines.append(f"hosts ({len(env.hosts)}):")
    for host in env.hosts:
        look = held.get(host.spec)
        lines.append(f"  {host.spec}: {_held(look, artifact)}")
    lacking = [h.spec for h in env.hosts if h.spec not in held or not held[h.spec].has_artifact]
    lines += [
        f"prepare, {env.parallel} host(s) at a time (any failure: no host switched, the new"
        " release removed):",
        f"  connect (host key verified), send the artifact to {len(lacking)} host(s)"
        f" that lack it, into {path}/.conveyor/artifacts/",
        f"  verify its sha256, refuse unsafe members, unpack into {release}",
    ]
    if env.shared:
        lines.append(f"  link from {path}/shared: {', '.join(env.shared)}")
    lines += [f"  before_activate: {command}" for command in env.before_activate]
    batches = pipeline.activation_batches(len(env.hosts), env.batch)
    together = "all hosts together" if len(batches) == 1 else \
        f"{len(batches)} batches of up to {env.batch} host(s)"
    lines += [f"activate, {together} (a failure: every switched host put back on its previous"
              " release, after_activate run there):",
              f"  switch {path}/current to releases/<release-id> (one rename)"]
    lines += [f"  after_activate: {command}" for command in env.after_activate]
    if env.healthcheck is not None:
        check = env.healthcheck
        lines.append(f"  health check: {check.command} ({check.retries} attempt(s),"
                     f" {check.interval}s apart, {check.timeout}s each)")
        if check.watch:
            lines.append(f"watch: the health check once on every host every {check.interval}s"
                         f" for {check.watch}s (a failure: every host put back)")
    lines.append(f"then prune releases beyond the newest {env.keep_releases}"
                 " (never the live or the previous one)")
    return lines


def _held(look: Look | None, artifact: pipeline.Artifact | None) -> str:
    if look is None:
        return "not looked at"
    if look.error:
        return f"cannot be used: {look.error}"
    live = look.current or "nothing"
    if artifact is None:
        return f"live {live}"
    return f"live {live}, {'holds' if look.has_artifact else 'lacks'} the artifact"
