"""`Database.migrate`, the one migrate-or-check function every process runs at start."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from app.db import MIGRATIONS, Database, SchemaTooNew

FUTURE = "9999_from_a_newer_conveyor"


def _revisions(database: Database) -> set[str]:
    with database.engine.connect() as conn:
        return set(conn.scalars(text("SELECT version_num FROM alembic_version")))


def _stamp_future(database: Database) -> None:
    with database.engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                     {"v": FUTURE})


def test_a_database_at_the_three_old_heads_is_brought_to_the_merge(database_url: str) -> None:
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.begin() as conn:
        config.attributes["connection"] = conn
        for head in ("0002", "0003", "0004"):  # as a database migrated before 0005 is
            command.upgrade(config, head)
    assert _revisions(database) == {"0002", "0003", "0004"}
    database.migrate()
    assert _revisions(database) == {"0005"}
    database.dispose()


def test_a_newer_database_is_refused_and_left_alone(database_url: str) -> None:
    newer = Database(database_url)
    newer.migrate()
    _stamp_future(newer)
    newer.dispose()
    database = Database(database_url)  # a process starting on it
    with pytest.raises(SchemaTooNew) as refused:
        database.migrate()
    assert str(refused.value) == (f"the database schema is newer than this Conveyor"
                                  f" (revision {FUTURE}); upgrade Conveyor")
    assert _revisions(database) == {"0005", FUTURE}
    database.dispose()


def test_once_up_to_date_a_process_does_not_look_again(database_url: str) -> None:
    # What lets the web process call it before every request.
    database = Database(database_url)
    database.migrate()
    _stamp_future(database)
    database.migrate()  # remembered: no query, so the newer stamp goes unseen
    starting = Database(database_url)
    with pytest.raises(SchemaTooNew):
        starting.migrate()  # a process starting now does see it
    starting.dispose()
    database.dispose()
