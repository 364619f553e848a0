"""The deploy job over real sshd hosts: both phases, and what a failure leaves behind."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import workers
from app import pipeline
from app.context import Context
from app.models import Build, Deployment
from tests.support import conveyor
from tests.support.sshd import SshFleet
from workers import build, deploy

SHA = "c0ffee" + "0" * 34
PIPELINE = """\
ssh: {{key: {key}, known_hosts: {known_hosts}, connect_timeout: 5s, command_timeout: 1m}}
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    build: {{commands: ["true"], artifact: dist}}
    environments:
      staging:
        branches: [main]
        hosts: [{hosts}]
        path: {path}
        keep_releases: 2
"""


@pytest.fixture
def fleet(ssh_fleet: Callable[[int], SshFleet]) -> SshFleet:
    return ssh_fleet(3)


@pytest.fixture
def ctx(tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        fleet: SshFleet, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    text = PIPELINE.format(key=fleet.client_key, known_hosts=fleet.known_hosts,
                           hosts=", ".join(h.spec for h in fleet.hosts), path=fleet.deploy_path)
    _settings, environ = conveyor.settings(tmp_path, database_url, redis_url, text)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    workers.context.cache_clear()  # the job reads the environment, as in a real worker
    context = workers.context()
    context.db.migrate()
    yield context
    workers.context.cache_clear()


def deployment(ctx: Context, tmp_path: Path, content: str, build_id: int | None = None) -> int:
    """A queued deployment of a succeeded build holding dist/app.txt = content
    (or of the build `build_id`, to ship an artifact again)."""
    with ctx.db.session() as session:
        if build_id is None:
            workspace = tmp_path / f"ws-{content}"
            (workspace / "dist").mkdir(parents=True)
            (workspace / "dist/app.txt").write_text(content)
            artifact = build.pack(workspace, ("dist",), tmp_path / "artifacts", {"time": 0})
            row = Build(project="shop", sha=SHA, ref="refs/heads/main", repository="acme/shop",
                        clone_url="", settings_hash=content, state="succeeded",
                        artifact_path=artifact.path, artifact_sha256=artifact.sha256,
                        artifact_size=artifact.size)
            session.add(row)
            session.flush()
            build_id = row.id
        count = session.query(Deployment).count()
        job = Deployment(project="shop", environment="staging", trigger=f"test:{count}",
                         build_id=build_id, sha=SHA, ref="refs/heads/main")
        session.add(job)
        session.flush()
        return job.id


def state(ctx: Context, deployment_id: int) -> Deployment:
    with ctx.db.session() as session:
        found = session.get(Deployment, deployment_id)
        assert found is not None
        list(found.hosts)
        return found


def live(fleet: SshFleet) -> list[str | None]:
    return [os.readlink(h.root / "current") if (h.root / "current").is_symlink() else None
            for h in fleet.hosts]


def releases(fleet: SshFleet) -> list[list[str]]:
    return [sorted(p.name for p in (h.root / "releases").iterdir()
                   if not p.name.startswith(".")) if (h.root / "releases").exists() else []
            for h in fleet.hosts]


def test_every_host_goes_live_and_a_redeploy_sends_no_bytes(
        ctx: Context, fleet: SshFleet, tmp_path: Path) -> None:
    first = deployment(ctx, tmp_path, "one")
    deploy.run(first)
    done = state(ctx, first)
    assert done.state == "succeeded", done.error
    assert live(fleet) == [f"releases/{done.release_id}"] * 3
    assert [(h.state, h.uploaded, h.previous_release) for h in done.hosts] == \
        [("succeeded", True, None)] * 3
    for host in fleet.hosts:
        assert (host.root / "current/dist/app.txt").read_text() == "one"
    artifact = next((fleet.hosts[0].root / ".conveyor/artifacts").glob("*.tar.gz")).stat()

    second = deployment(ctx, tmp_path, "one", build_id=done.build_id)
    deploy.run(second)
    redeployed = state(ctx, second)
    assert redeployed.state == "succeeded", redeployed.error
    assert [h.uploaded for h in redeployed.hosts] == [False] * 3
    assert [h.previous_release for h in redeployed.hosts] == [done.release_id] * 3
    after = next((fleet.hosts[0].root / ".conveyor/artifacts").glob("*.tar.gz")).stat()
    assert (after.st_ino, after.st_mtime_ns) == (artifact.st_ino, artifact.st_mtime_ns)


def test_a_dead_host_at_prepare_leaves_every_host_on_its_release(
        ctx: Context, fleet: SshFleet, tmp_path: Path) -> None:
    first = deployment(ctx, tmp_path, "one")
    deploy.run(first)
    before_live, before_releases = live(fleet), releases(fleet)
    fleet.hosts[1].stop()

    second = deployment(ctx, tmp_path, "two")
    deploy.run(second)
    failed = state(ctx, second)
    assert failed.state == "error"
    assert f"cannot reach {fleet.hosts[1].spec}" in (failed.error or "")
    assert live(fleet) == before_live
    fleet.hosts[1].start()
    assert releases(fleet) == before_releases  # the half-made releases were removed
    for host in fleet.hosts:
        assert (host.root / "current/dist/app.txt").read_text() == "one"


def test_a_changed_host_key_is_refused_with_both_fingerprints(
        ctx: Context, fleet: SshFleet, tmp_path: Path) -> None:
    fleet.hosts[2].regenerate_host_key()
    deployment_id = deployment(ctx, tmp_path, "one")
    deploy.run(deployment_id)
    refused = state(ctx, deployment_id)
    # The host could not be used: Conveyor could not finish, the release is not to blame.
    assert refused.state == "error"
    assert fleet.hosts[2].spec in (refused.error or "")
    host = refused.hosts[2]
    assert host.state == "failed"
    assert "has changed: expected ssh-ed25519 SHA256:" in (host.error or "")
    assert "but the host offered ssh-ed25519 SHA256:" in (host.error or "")
    assert live(fleet) == [None, None, None]
    assert releases(fleet) == [[], [], []]


def test_a_deployment_runs_once(ctx: Context, fleet: SshFleet, tmp_path: Path) -> None:
    deployment_id = deployment(ctx, tmp_path, "one")
    deploy.run(deployment_id)
    release = state(ctx, deployment_id).release_id
    deploy.run(deployment_id)  # RQ redelivers a job: nothing happens twice
    assert state(ctx, deployment_id).release_id == release
    assert releases(fleet) == [[release]] * 3
    assert pipeline.deployment_target(ctx, deployment_id) is None
