"""`Database.migrate`, the one migrate-or-check function every process runs at start."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from app.db import MIGRATIONS, Database, SchemaTooNew
from tests.support.schema import FUTURE, NEWER, heads, revisions, stamp_newer


def test_a_database_at_the_three_old_heads_is_brought_to_the_merge(database_url: str) -> None:
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.begin() as conn:
        config.attributes["connection"] = conn
        for head in ("0002", "0003", "0004"):  # as a database migrated before 0005 is
            command.upgrade(config, head)
    assert revisions(database_url) == {"0002", "0003", "0004"}
    database.migrate()
    assert revisions(database_url) == heads()
    database.dispose()


def test_a_newer_database_is_refused_and_left_alone(database_url: str) -> None:
    stamp_newer(database_url)
    database = Database(database_url)  # a process starting on it
    with pytest.raises(SchemaTooNew) as refused:
        database.migrate()
    assert str(refused.value) == NEWER
    assert revisions(database_url) == {*heads(), FUTURE}
    database.dispose()


def test_once_up_to_date_a_process_does_not_look_again(database_url: str) -> None:
    # What lets the web process call it before every request.
    database = Database(database_url)
    database.migrate()
    stamp_newer(database_url)
    database.migrate()  # remembered: no query, so the newer stamp goes unseen
    starting = Database(database_url)
    with pytest.raises(SchemaTooNew):
        starting.migrate()  # a process starting now does see it
    starting.dispose()
    database.dispose()


def test_a_new_sqlite_database_held_by_another_process_is_waited_for(tmp_path: Path) -> None:
    """Processes starting together on a new SQLite database: while one holds it in the old
    journal mode, SQLite refuses another's switch to WAL at once; the switch waits instead."""
    path = tmp_path / "conveyor.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE first_writer (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO first_writer VALUES (1)")
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    try:
        database = Database(f"sqlite:///{path}")
        database.migrate()
    finally:
        release.join()
        holder.close()
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    database.dispose()
