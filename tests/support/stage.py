"""A deploy stage for tests: a pipeline file over a fleet of real sshd hosts, the worker's
context for it, deployments of small artifacts to run, and what the hosts hold after."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from app import pipeline
from app.context import Context
from app.models import Build, Deployment, HostRelease, LogLine, Release
from tests.support.sshd import SshFleet, SshHost
from workers import build, deploy

SHA = "c0ffee" + "0" * 34
PIPELINE = """\
ssh: {{key: {key}, known_hosts: {known_hosts}, connect_timeout: 5s, command_timeout: {timeout}}}
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
{settings}
"""
@dataclass
class Stage:
    """A pipeline file over a fleet, the worker's context for it, and deployments to run."""

    ctx: Context
    fleet: SshFleet
    tmp_path: Path

    def deployment(self, content: str = "one", build_id: int | None = None,
                   artifact: pipeline.Artifact | None = None) -> int:
        """A queued deployment of a succeeded build holding dist/app.txt = content (or of
        the build `build_id`, to ship an artifact again, or of a given artifact)."""
        with self.ctx.db.session() as session:
            if build_id is None:
                artifact = artifact or self.pack(content)
                row = Build(project="shop", sha=SHA, ref="refs/heads/main",
                            repository="acme/shop", clone_url="",
                            settings_hash=uuid.uuid4().hex, state="succeeded",
                            artifact_path=artifact.path, artifact_sha256=artifact.sha256,
                            artifact_size=artifact.size)
                session.add(row)
                session.flush()
                build_id = row.id
            job = Deployment(project="shop", environment="staging",
                             trigger=f"test:{uuid.uuid4()}", build_id=build_id, sha=SHA,
                             ref="refs/heads/main")
            session.add(job)
            session.flush()
            return job.id

    def pack(self, content: str) -> pipeline.Artifact:
        workspace = self.tmp_path / f"ws-{uuid.uuid4().hex}"
        (workspace / "dist").mkdir(parents=True)
        (workspace / "dist/app.txt").write_text(content)
        return build.pack(workspace, ("dist",), self.tmp_path / "artifacts", {"time": 0})

    def deploy(self, content: str = "one", build_id: int | None = None) -> Deployment:
        deployment_id = self.deployment(content, build_id)
        deploy.run(deployment_id)
        return self.state(deployment_id)

    def state(self, deployment_id: int) -> Deployment:
        with self.ctx.db.session() as session:
            found = session.get(Deployment, deployment_id)
            assert found is not None
            list(found.hosts)
            return found

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30,
                 what: Callable[[], str] = lambda: "") -> None:
        """Wait until `condition()` holds (an event on a host or in the history)."""
        wait_for(condition, timeout, what)

    def log(self, deployment_id: int) -> list[str]:
        with self.ctx.db.session() as session:
            return list(session.scalars(select(LogLine.text).where(
                LogLine.deployment_id == deployment_id).order_by(LogLine.id)))


@pytest.fixture(name="stage")
def stage_fixture(tmp_path: Path, database_url: str, ssh_fleet: Callable[[int], SshFleet],
          worker_context: Callable[..., Context]) -> Callable[..., Stage]:
    """Factory: stage(count, settings="...", local=False, timeout="1m") starts `count` sshd
    hosts and configures the environment `staging` over them (plus `local` first)."""
    def make(count: int = 3, settings: str = "", local: bool = False,
             timeout: str = "1m") -> Stage:
        fleet = ssh_fleet(count)
        specs = ["local"] * local + [h.spec for h in fleet.hosts]
        text = PIPELINE.format(key=fleet.client_key, known_hosts=fleet.known_hosts,
                               hosts=", ".join(specs), path=fleet.deploy_path, timeout=timeout,
                               settings="".join(f"        {line}\n"
                                                for line in settings.strip().splitlines()))
        return Stage(worker_context(text, database_url), fleet, tmp_path)

    return make


def wait_for(condition: Callable[[], bool], timeout: float = 30,
             what: Callable[[], str] = lambda: "") -> None:
    """Poll `condition()` until it holds; fail after `timeout` seconds, saying `what()`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what()}")
        time.sleep(0.05)


def live(fleet: SshFleet) -> list[str | None]:
    return [os.readlink(h.root / "current") if (h.root / "current").is_symlink() else None
            for h in fleet.hosts]


def releases(fleet: SshFleet) -> list[list[str]]:
    return [_releases(h.root) for h in fleet.hosts]


def _releases(root: Path) -> list[str]:
    folder = root / "releases"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def revisions(host: SshHost | Path) -> list[str]:
    root = host if isinstance(host, Path) else host.root
    log = root / ".conveyor/revisions.log"
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()] \
        if log.exists() else []


def known_releases(ctx: Context) -> tuple[dict[str, Release], dict[str, HostRelease]]:
    with ctx.db.session() as session:
        return ({r.release_id: r for r in session.scalars(select(Release))},
                {h.host: h for h in session.scalars(select(HostRelease))})
