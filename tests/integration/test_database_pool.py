"""PostgreSQL connections in the pool: one idle for a while is pinged before use, so that a
server that went away and came back meanwhile costs the caller nothing; one just used is
not (no extra round trip per request under load). Through a real proxy to real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app import db as db_module
from app.db import Database
from tests.support.proxy import TcpProxy, tcp_proxy
from tests.support.services import postgres_database


@pytest.fixture
def behind_proxy() -> Iterator[tuple[TcpProxy, Database]]:
    with postgres_database() as url:
        real = make_url(url)
        with tcp_proxy(real.host or "127.0.0.1", real.port or 5432) as proxy:
            database = Database(real.set(port=proxy.port).render_as_string(hide_password=False))
            try:
                yield proxy, database
            finally:
                database.dispose()


def one(database: Database) -> int:
    with database.engine.connect() as conn:
        return conn.scalar(text("SELECT 1"))


def test_a_connection_idle_long_enough_is_pinged_and_replaced_when_dead(
        behind_proxy: tuple[TcpProxy, Database], monkeypatch: pytest.MonkeyPatch) -> None:
    proxy, database = behind_proxy
    assert one(database) == 1  # one pooled connection now
    proxy.cut()
    proxy.restore()  # the server "restarted": the pooled connection is dead
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE", 0.0)  # idle long enough, at once
    assert one(database) == 1  # no error: the ping found it dead, the pool connected anew


def test_a_connection_just_used_is_not_pinged(
        behind_proxy: tuple[TcpProxy, Database], monkeypatch: pytest.MonkeyPatch) -> None:
    proxy, database = behind_proxy
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE", 3600.0)
    assert one(database) == 1
    proxy.cut()
    proxy.restore()
    # Not pinged, the dead connection is used and fails once; the pool is then renewed.
    with pytest.raises(OperationalError):
        one(database)
    assert one(database) == 1
