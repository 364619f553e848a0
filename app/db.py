"""The history database: engine, sessions and migrations (SQLite by default, PostgreSQL too)."""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
# Seconds a SQLite connection waits for another process's lock.
SQLITE_BUSY_TIMEOUT = 30


class SchemaTooNew(Exception):
    """The database holds a revision this code does not know: a newer Conveyor migrated it."""

    def __init__(self, revisions: tuple[str, ...]) -> None:
        super().__init__(f"the database schema is newer than this Conveyor (revision"
                         f" {', '.join(revisions)}); upgrade Conveyor")
        self.revisions = revisions


@dataclass(frozen=True)
class Revisions:
    """What this code's migration scripts know: every revision, and the heads."""

    known: frozenset[str]
    heads: frozenset[str]


@cache
def revisions() -> Revisions:
    """The migration scripts' revisions, read once per process (they ship with the code)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS))
    return Revisions(known=frozenset(r.revision for r in scripts.walk_revisions()),
                     heads=frozenset(scripts.get_heads()))


class Database:
    """One engine per process; sessions are short and used as context managers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def migrate(self) -> None:
        """Make sure the schema is this code's, once per Database: migrate it when it is older
        (under a lock, so processes starting together do not race). Raises SchemaTooNew when
        a newer Conveyor migrated it, and SQLAlchemy's OperationalError when it is unreachable;
        either way the next call tries again."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self._bring_schema_up()
                self._schema_ready = True

    def _bring_schema_up(self) -> None:
        with self.engine.connect() as conn:
            if _up_to_date(conn):
                return  # the common start: no lock, no Alembic run
        from alembic import command
        from alembic.config import Config as AlembicConfig

        alembic_config = AlembicConfig()
        alembic_config.set_main_option("script_location", str(MIGRATIONS))
        with self._migration_lock() as conn:
            # Another process may have migrated while this one waited for the lock.
            if not _up_to_date(conn):
                alembic_config.attributes["connection"] = conn
                command.upgrade(alembic_config, "heads")

    @contextmanager
    def _migration_lock(self) -> Iterator:
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
                yield conn
            return
        lock_path = Path(self.engine.url.database or "conveyor.db").with_suffix(".migrate.lock")
        with open(lock_path, "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            with self.engine.begin() as conn:
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


# A pooled connection is pinged before use (as `pool_pre_ping` would) only after it has been
# idle this long: a server that restarted or failed over is noticed as before, while under
# load (a burst of deliveries) a connection just used costs no extra round trip.
PING_AFTER_IDLE = 1.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(str(exc)) from exc  # the pool connects anew


def _up_to_date(conn: Connection) -> bool:
    """Whether the database is at this code's heads; SchemaTooNew when it is past them."""
    from alembic.runtime.migration import MigrationContext

    current = MigrationContext.configure(conn).get_current_heads()
    code = revisions()
    unknown = tuple(sorted(set(current) - code.known))
    if unknown:
        raise SchemaTooNew(unknown)
    return set(current) == code.heads


def _engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        engine = create_engine(url, pool_size=5, max_overflow=10)
        _ping_when_idle(engine)
        return engine
    database = url.split("///", 1)[-1]
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Web and worker processes write at once: WAL lets readers go on while one writes.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT * 1000}")
        _wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _wal(cursor: sqlite3.Cursor) -> None:
    """Switch a new database to WAL. SQLite answers "database is locked" at once, without
    waiting, while another connection switches it or writes to it in the old mode (processes
    starting together on a new database), so wait for the lock here."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
