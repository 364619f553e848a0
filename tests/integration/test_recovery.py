"""Recovery from a dead worker (issue 9): a deployment whose worker was killed with kill -9
after switching hosts is found by a scan (or by the next deployment of its environment),
its hosts are put back, it ends `error` and its lock is free; a live deployment, however
slow, is never touched; many scans at once act once."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rq import Queue
from rq.serializers import JSONSerializer

from app import pipeline
from app.models import Deployment, utcnow
from tests.integration.test_deploy_interrupted import SETTINGS, go, start_blocked
from tests.support.processes import kill_tree, start
from tests.support.stage import Stage, live, releases, revisions
from workers import recovery

RECOVER = "workers.recovery.recover_deployment"


def recovery_jobs(s: Stage) -> list[str]:
    queue = Queue("deploys", connection=s.ctx.jobs.redis, serializer=JSONSerializer)
    return [job.id for job in queue.get_jobs() if job.func_name == RECOVER]


def scan(s: Stage) -> recovery.Scanned:
    """One scan now: the key that spaces scans out is freed first, as the interval passing
    would free it."""
    s.ctx.jobs.redis.delete(recovery.SCAN_LOCK)
    return recovery.scan(s.ctx, interval=30)


def kill_worker_in_after_activate(s: Stage, logs: Path) -> tuple[int, str]:
    """A live first release, then a second deployment run by a real RQ worker that is killed
    with kill -9 while after_activate holds every host; then its lock expires (deleted here
    rather than waited for). (the second deployment's id, the first release)"""
    first = s.deploy("one")
    assert first.state == "succeeded", first.error
    second = s.deployment("blocking")
    s.ctx.jobs.enqueue("deploys", "workers.deploy.run", second, job_id=f"deploy-{second}",
                       timeout=600)
    worker = start("worker", [sys.executable, "-m", "app.cli", "rq-worker", "deploys"], {},
                   logs)
    s.wait_for(lambda: all((h.root / "activated").exists() for h in s.fleet.hosts),
               timeout=60, what=lambda: (logs / "worker.log").read_text(errors="replace"))
    kill_tree(worker)
    lock = pipeline.lock_name("shop", "staging")
    assert s.ctx.jobs.redis.exists(lock)  # until its time to live runs out
    s.ctx.jobs.redis.delete(lock)
    assert s.state(second).state == "running"
    return second, first.release_id or ""


def assert_put_back(s: Stage, deployment_id: int, old: str) -> None:
    done = s.state(deployment_id)
    assert done.state == "error"
    assert done.error == f"{pipeline.WORKER_STOPPED}; every switched host put back"
    assert done.finished_at is not None
    assert live(s.fleet) == [f"releases/{old}"] * len(s.fleet.hosts)
    for host in s.fleet.hosts:
        assert (host.root / "current/dist/app.txt").read_text() == "one"
        assert revisions(host)[-2:] == [f"activate {done.release_id} previous={old}",
                                        f"rollback {old} previous={done.release_id}"]
    assert [(h.state, h.release) for h in done.hosts] == \
        [("rolled_back", old)] * len(s.fleet.hosts)


def test_a_killed_deployment_is_found_by_a_scan_put_back_and_ended_as_error(
        stage: Callable[..., Stage], tmp_path: Path) -> None:
    s = stage(2, SETTINGS)
    second, old = kill_worker_in_after_activate(s, tmp_path / "logs")
    waiting = s.deployment("three")

    found = scan(s)
    assert found.deployments == (second,)
    jobs = recovery_jobs(s)
    assert len(jobs) == 1 and jobs[0].startswith(f"recover-{second}-")
    recovery.recover_deployment(second)  # the job the scan queued, run here

    assert_put_back(s, second, old)
    assert releases(s.fleet) == [[old]] * 2  # the new release is gone
    assert not s.ctx.jobs.redis.exists(pipeline.lock_name("shop", "staging"))
    assert f"deploy-{waiting}-after-{second}" in \
        Queue("deploys", connection=s.ctx.jobs.redis, serializer=JSONSerializer).job_ids
    assert scan(s).deployments == ()  # nothing left to recover
    go(s)  # the orphaned hooks on the hosts may end now


def test_the_next_deployment_puts_a_killed_one_back_before_it_deploys(
        stage: Callable[..., Stage], tmp_path: Path) -> None:
    s = stage(2, SETTINGS)
    second, old = kill_worker_in_after_activate(s, tmp_path / "logs")

    third = s.deploy("three")

    assert third.state == "succeeded", third.error
    done = s.state(second)
    assert done.state == "error"
    assert done.error == f"{pipeline.WORKER_STOPPED}; every switched host put back"
    assert live(s.fleet) == [f"releases/{third.release_id}"] * 2
    for host in s.fleet.hosts:
        assert (host.root / "current/dist/app.txt").read_text() == "three"
        assert f"rollback {old} previous={done.release_id}" in revisions(host)
        assert f"activate {third.release_id} previous={old}" in revisions(host)
    go(s)


def test_a_slow_deployment_that_holds_its_lock_is_never_touched_by_a_scan(
        stage: Callable[..., Stage]) -> None:
    s = stage(2, SETTINGS)
    second, _old, thread = start_blocked(s)

    try:
        for _ in range(3):
            assert scan(s) == recovery.Scanned()
        assert recovery_jobs(s) == []
        assert s.state(second).state == "running"
    finally:
        go(s)
        thread.join()

    done = s.state(second)
    assert done.state == "succeeded", done.error
    assert live(s.fleet) == [f"releases/{done.release_id}"] * 2


def test_two_scans_at_once_queue_one_recovery(stage: Callable[..., Stage]) -> None:
    s = stage(1)
    deployment_id = s.deployment("one")
    with s.ctx.db.session() as session:  # as a killed worker leaves it, its lock expired
        row = session.get(Deployment, deployment_id)
        assert row is not None
        row.state, row.started_at = "running", utcnow()
    s.ctx.jobs.redis.delete(recovery.SCAN_LOCK)
    barrier = threading.Barrier(2)
    results: list[recovery.Scanned] = []

    def one_scan() -> None:
        barrier.wait()
        results.append(recovery.scan(s.ctx, interval=30))

    threads = [threading.Thread(target=one_scan) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.skipped for r in results) == [False, True]
    assert [r.deployments for r in results if not r.skipped] == [(deployment_id,)]
    assert scan(s).deployments == ()  # a later scan of the same slot queues it no more
    assert len(recovery_jobs(s)) == 1


def test_a_build_whose_liveness_key_is_gone_fails_with_its_waiting_deployments(
        stage: Callable[..., Stage]) -> None:
    s = stage(1)
    dead_deployment, dead_build = running_build(s)
    live_deployment, live_build = running_build(s)

    with recovery.alive(s.ctx.jobs.redis, pipeline.build_liveness_key(live_build)):
        found = scan(s)

    assert found.builds == (dead_build,)
    assert not s.ctx.jobs.redis.exists(pipeline.build_liveness_key(live_build))  # deleted after
    with s.ctx.db.session() as session:
        dead = session.get(Deployment, dead_deployment)
        assert dead is not None
        assert (dead.build.state, dead.build.error) == ("failed", pipeline.WORKER_STOPPED)
        assert dead.build.finished_at is not None
        assert (dead.state, dead.error) == ("failed", "the build failed; no host was touched")
        alive = session.get(Deployment, live_deployment)
        assert alive is not None
        assert (alive.build.state, alive.state) == ("running", "queued")
    assert live(s.fleet) == [None]


def running_build(s: Stage) -> tuple[int, int]:
    """A queued deployment waiting for a build that is running: (their ids)."""
    deployment_id = s.deployment("one")
    with s.ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        assert deployment is not None
        build = deployment.build
        build.state, build.started_at, build.artifact_path = "running", utcnow(), None
        return deployment_id, build.id
