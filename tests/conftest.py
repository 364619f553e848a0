"""Fixtures shared by the whole suite: real Redis, real SQLite and PostgreSQL, real sshd hosts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import workers
from app.context import Context
from tests.support import conveyor
from tests.support.fixtures import (  # noqa: F401 - fixtures are found by name
    git_repo_fixture,
    github_forge_fixture,
    postgres_url_fixture,
    redis_url_fixture,
    ssh_fleet_fixture,
)
from tests.support.services import postgres_database, reset_redis
from tests.support.stage import stage_fixture  # noqa: F401 - found by name

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
def worker_context(tmp_path: Path, redis_url: str, redis_db: redis.Redis,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Context]]:
    """Factory: make(config_text, database_url, env=None) sets the process environment a
    worker would have and returns the (migrated) context its jobs build from it."""
    def make(config_text: str, database_url: str, env: dict[str, str] | None = None) -> Context:
        _settings, environ = conveyor.settings(tmp_path, database_url, redis_url, config_text,
                                               env)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        workers.context.cache_clear()  # a job reads the environment, as in a real worker
        ctx = workers.context()
        ctx.db.migrate()
        return ctx

    yield make
    workers.context.cache_clear()


@pytest.fixture
def fixture_json() -> Callable[[str], dict]:
    """Load a forge payload from tests/fixtures (copied from the project's shared fixtures)."""
    return lambda name: json.loads((FIXTURES / name).read_text())
