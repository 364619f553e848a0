"""A deployment interrupted after the first switch (a connection dropped, a host gone, the
job's RQ timeout) puts every switched host back before it ends, reconnecting where needed,
and names any host it could not put back with the release that host may still run."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from app.models import HostRelease
from tests.support.stage import Stage, live, releases, revisions
from workers import deploy

# Blocks after_activate of the release whose dist/app.txt says "blocking", until `go` exists
# beside the deploy path, after saying it got there; other releases pass (so a rollback's
# after_activate, run in the previous release, never blocks).
BLOCK = ("if grep -qx blocking dist/app.txt; then touch ../../activated;"
         " while [ ! -e ../../go ]; do sleep 0.05; done; fi")
SETTINGS = f"hooks: {{after_activate: ['{BLOCK}']}}"


def start_blocked(s: Stage) -> tuple[int, str, threading.Thread]:
    """A live first release, then a second deployment held in after_activate on every host:
    (its id, the first release, the thread running it)."""
    first = s.deploy("one")
    assert first.state == "succeeded", first.error
    second = s.deployment("blocking")
    thread = threading.Thread(target=_run_quietly, args=(second,))
    thread.start()
    s.wait_for(lambda: all((h.root / "activated").exists() for h in s.fleet.hosts))
    return second, first.release_id or "", thread


def _run_quietly(deployment_id: int) -> None:
    try:
        deploy.run(deployment_id)
    except Exception as exc:  # what interrupted it is what the test looks at
        print(f"deploy.run raised {type(exc).__name__}: {exc}")


def go(s: Stage) -> None:
    for host in s.fleet.hosts:
        (host.root / "go").touch()


def test_a_connection_dropped_during_after_activate_is_made_again_to_put_the_host_back(
        stage: Callable[..., Stage]) -> None:
    s = stage(3, SETTINGS)
    second, old, thread = start_blocked(s)

    s.fleet.hosts[1].drop_connections()  # the hook and the connection under it are gone
    go(s)
    thread.join()

    done = s.state(second)
    assert done.state == "error", done.error  # the host, not the release, went wrong
    assert done.error and done.error.startswith("activate failed, every switched host put back")
    assert "was lost during after_activate" in done.error
    assert live(s.fleet) == [f"releases/{old}"] * 3
    assert releases(s.fleet) == [[old]] * 3
    new = done.release_id
    for host in s.fleet.hosts:
        assert revisions(host)[-2:] == [f"activate {new} previous={old}",
                                        f"rollback {old} previous={new}"]
    assert [h.release for h in done.hosts] == [old] * 3
    assert [h.state for h in done.hosts] == ["rolled_back", "failed", "rolled_back"]
    assert any("connecting again" in line for line in s.log(second))


def test_a_host_gone_for_good_after_switching_is_named_with_the_release_it_may_still_run(
        stage: Callable[..., Stage]) -> None:
    s = stage(3, SETTINGS)
    second, old, thread = start_blocked(s)
    gone = s.fleet.hosts[2]

    gone.stop()  # sshd and every session: it cannot be reached to put it back
    go(s)
    thread.join()

    done = s.state(second)
    new = done.release_id
    assert done.state == "error"
    assert done.error and done.error.startswith(
        f"rollback failed: {gone.spec} may still run {new} (its previous release {old}"
        " could not be put back:")
    assert live(s.fleet) == [f"releases/{old}", f"releases/{old}", f"releases/{new}"]
    assert [(h.state, h.release) for h in done.hosts] == \
        [("rolled_back", old), ("rolled_back", old), ("error", new)]
    with s.ctx.db.session() as session:
        row = session.query(HostRelease).filter_by(host=gone.spec).one()
        assert row.live_release == new  # what Conveyor must assume runs there


def test_the_jobs_rq_timeout_during_after_activate_puts_every_host_back(
        stage: Callable[..., Stage], tmp_path: Path) -> None:
    s = stage(2, SETTINGS, timeout="30s")
    first = s.deploy("one")
    assert first.state == "succeeded", first.error
    second = s.deployment("blocking")
    # A deployment's own deadline is far above its steps'; this one is made short to fire.
    s.ctx.jobs.enqueue("deploys", "workers.deploy.run", second, job_id=f"short-{second}",
                       timeout=3)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "rq-worker", "deploys"],
                                  stdout=out, stderr=subprocess.STDOUT)
    job = Job(f"short-{second}", connection=s.ctx.jobs.redis, serializer=JSONSerializer)
    try:
        s.wait_for(lambda: s.state(second).state not in ("queued", "running"), timeout=60,
                   what=lambda: log.read_text(errors="replace"))
        # The work horse ends after the state is written: stop the worker once RQ has the
        # job's end too, so that its warm shutdown has no horse left to wait for.
        s.wait_for(lambda: job.get_status(refresh=True) in (JobStatus.FAILED,
                                                            JobStatus.FINISHED),
                   timeout=60, what=lambda: log.read_text(errors="replace"))
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise AssertionError("the worker did not stop on SIGTERM: "
                                 + log.read_text(errors="replace")) from None

    done = s.state(second)
    assert done.state == "error"
    assert done.error and done.error.startswith("interrupted by JobTimeoutException")
    assert done.error.endswith("every switched host put back")
    assert all((h.root / "activated").exists() for h in s.fleet.hosts)  # it had switched
    assert live(s.fleet) == [f"releases/{first.release_id}"] * 2
    assert releases(s.fleet) == [[first.release_id]] * 2
    assert [h.state for h in done.hosts] == ["rolled_back"] * 2
    assert "JobTimeoutException" in log.read_text()
