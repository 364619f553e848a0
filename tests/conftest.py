"""Fixtures shared by the whole suite: real Redis, real SQLite and PostgreSQL, real sshd hosts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.fixtures import (  # noqa: F401 - fixtures are found by name
    git_repo_fixture,
    github_forge_fixture,
    postgres_url_fixture,
    redis_url_fixture,
    ssh_fleet_fixture,
)
from tests.support.services import postgres_database, reset_redis

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty history database: SQLite in the test's folder, or PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'conveyor.db'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[redis.Redis]:
    """This run's Redis database, emptied before and after each test."""
    reset_redis(redis_url)
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
    reset_redis(redis_url)


@pytest.fixture
def fixture_json() -> Callable[[str], dict]:
    """Load a forge payload from tests/fixtures (copied from the project's shared fixtures)."""
    return lambda name: json.loads((FIXTURES / name).read_text())
