"""A `conveyor worker` killed with kill -9 (it and every process it started, as a lost
machine) leaves no build or deployment running for ever: a newly started worker ends it
within two minutes, with every host on a complete release and the next deployment run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app import pipeline
from app.context import Context
from app.models import Build, Deployment
from tests.integration.test_build_job import log_text, row
from tests.integration.test_deploy_interrupted import SETTINGS
from tests.support.gitrepo import GitRepo
from tests.support.processes import conveyor_argv, kill_tree, read_logs, start
from tests.support.services import postgres_database
from tests.support.stage import Stage, live, releases, wait_for

BOUND = 120  # SPEC §7: within two minutes


@pytest.fixture
def database_url() -> Iterator[str]:
    """The processes a user runs, on PostgreSQL (tests/integration/test_recovery.py runs the
    same recovery on SQLite too): each of these waits out a real lock's time to live."""
    with postgres_database() as url:
        yield url


@pytest.mark.timeout(300)
def test_a_worker_killed_in_after_activate_is_recovered_by_a_new_worker(
        stage: Callable[..., Stage], tmp_path: Path) -> None:
    s = stage(2, SETTINGS)
    logs = tmp_path / "logs"
    first = s.deploy("one")
    assert first.state == "succeeded", first.error
    blocked = s.deployment("blocking")
    s.ctx.jobs.enqueue("deploys", "workers.deploy.run", blocked, job_id=f"deploy-{blocked}",
                       timeout=600)
    worker = start("worker-1", conveyor_argv("worker"), {}, logs)
    try:
        s.wait_for(lambda: all((h.root / "activated").exists() for h in s.fleet.hosts),
                   timeout=60, what=lambda: read_logs(logs))
    finally:
        kill_tree(worker)
    killed_at = time.monotonic()
    # Queued behind it (made after it started: a newer one waiting would have gone first).
    waiting = s.deployment("three")
    s.ctx.jobs.enqueue("deploys", "workers.deploy.run", waiting, job_id=f"deploy-{waiting}",
                       timeout=600)
    assert s.state(blocked).state == "running"
    assert s.state(waiting).state == "queued"

    with _worker("worker-2", logs):
        s.wait_for(lambda: s.state(blocked).state != "running", timeout=BOUND,
                   what=lambda: read_logs(logs))
        assert time.monotonic() - killed_at < BOUND
        s.wait_for(lambda: s.state(waiting).state not in ("queued", "running"), timeout=60,
                   what=lambda: read_logs(logs))

    done, after = s.state(blocked), s.state(waiting)
    assert done.state == "error"
    assert done.error == f"{pipeline.WORKER_STOPPED}; every switched host put back"
    assert [h.state for h in done.hosts] == ["rolled_back"] * 2
    assert after.state == "succeeded", after.error
    assert live(s.fleet) == [f"releases/{after.release_id}"] * 2
    for host in s.fleet.hosts:  # a complete release, and no piece of the killed one left
        assert (host.root / "current/dist/app.txt").read_text() == "three"
    assert all(done.release_id not in held for held in releases(s.fleet))
    assert not s.ctx.jobs.redis.exists(pipeline.lock_name("shop", "staging"))


BUILD_PIPELINE = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    build: {{commands: ["sleep 30"], artifact: dist}}
    environments:
      staging:
        branches: [main]
        hosts: [local]
        path: {path}
"""


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_build_leaves_the_build_failed_and_its_deployment_failed(
        worker_context: Callable[..., Context], database_url: str, tmp_path: Path,
        git_repo: GitRepo) -> None:
    target = tmp_path / "host"
    ctx = worker_context(BUILD_PIPELINE.format(path=target, clone_url=git_repo.url), database_url)
    build_id, deployment_id = _queued_build(ctx, git_repo)
    logs = tmp_path / "logs"
    # The build's liveness key lives 4 s here (60 s by default), scans come every second.
    short = {"CONVEYOR_RECOVERY_TTL": "4", "CONVEYOR_RECOVERY_INTERVAL": "1"}
    worker = start("worker-1", conveyor_argv("worker"), short, logs)
    try:
        wait_for(lambda: "$ sleep 30" in log_text(ctx, build_id), timeout=60,
                       what=lambda: read_logs(logs))
    finally:
        kill_tree(worker)
    assert row(ctx, build_id).state == "running"

    with _worker("worker-2", logs, short):
        wait_for(lambda: row(ctx, build_id).state != "running", timeout=BOUND,
                       what=lambda: read_logs(logs))

    build = row(ctx, build_id)
    assert (build.state, build.error) == ("failed", pipeline.WORKER_STOPPED)
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        assert deployment is not None
        assert (deployment.state, deployment.error) == \
            ("failed", "the build failed; no host was touched")
        assert deployment.started_at is None and deployment.hosts == []
    assert not target.exists()  # nothing switched, nothing even prepared
    assert not ctx.jobs.redis.exists(pipeline.build_liveness_key(build_id))


@contextmanager
def _worker(name: str, logs: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """A `conveyor worker` for the block, stopped after it."""
    process = start(name, conveyor_argv("worker"), env or {}, logs)
    try:
        yield
    finally:
        kill_tree(process)


def _queued_build(ctx: Context, repo: GitRepo) -> tuple[int, int]:
    """A queued build of the repository's head with a deployment waiting for it, its job
    queued: (their ids)."""
    sha = repo.sha("main")
    with ctx.db.session() as session:
        build = Build(project="shop", sha=sha, ref="refs/heads/main", repository="acme/shop",
                      clone_url=repo.url, settings_hash="recovery-test")
        session.add(build)
        session.flush()
        deployment = Deployment(project="shop", environment="staging", trigger="test",
                                build_id=build.id, sha=sha, ref="refs/heads/main")
        session.add(deployment)
        session.flush()
        ids = build.id, deployment.id
    with ctx.db.session() as session:
        pipeline.enqueue_build(ctx, session.get(Build, ids[0]))  # type: ignore[arg-type]
    return ids
