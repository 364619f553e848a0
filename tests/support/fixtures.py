"""Pytest fixtures over the harness; import them into a conftest.py or a test module.

Each function is `<name>_fixture` and registers the fixture `<name>`, so that a test's
parameter does not shadow the imported function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.forge import GitHubForge, start_github_forge
from tests.support.gitrepo import GitRepo, make_repo
from tests.support.services import postgres_database, redis_url_for_run, release_redis
from tests.support.sshd import SshFleet, start_fleet


@pytest.fixture(name="ssh_fleet")
def ssh_fleet_fixture(tmp_path: Path) -> Iterator[Callable[[int], SshFleet]]:
    """Factory: ssh_fleet(count) starts that many sshd hosts, all stopped after the test."""
    fleets: list[SshFleet] = []

    def start(count: int) -> SshFleet:
        fleets.append(start_fleet(tmp_path / f"fleet{len(fleets) + 1}", count))
        return fleets[-1]

    yield start
    for fleet in fleets:
        fleet.stop()


@pytest.fixture(name="git_repo")
def git_repo_fixture(tmp_path: Path) -> GitRepo:
    """A repository with one commit on main, in a bare origin."""
    return make_repo(tmp_path / "git")


@pytest.fixture(name="github_forge")
def github_forge_fixture() -> Iterator[Callable[[str], GitHubForge]]:
    """Factory: github_forge(token) starts a commit-status stand-in, stopped after the test."""
    forges: list[GitHubForge] = []

    def start(token: str) -> GitHubForge:
        forges.append(start_github_forge(token))
        return forges[-1]

    yield start
    for forge in forges:
        forge.stop()


@pytest.fixture(scope="session", name="redis_url")
def redis_url_fixture() -> Iterator[str]:
    """A Redis database of this test run's own, flushed at the start and at the end."""
    url = redis_url_for_run()
    yield url
    release_redis(url)


@pytest.fixture(scope="session", name="postgres_url")
def postgres_url_fixture() -> Iterator[str]:
    """A PostgreSQL database of this test run's own (SQLAlchemy URL), dropped at the end."""
    with postgres_database() as url:
        yield url
