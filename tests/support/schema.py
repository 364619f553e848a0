"""The schema's bookkeeping as a test reads and forges it: Alembic's version table."""

from __future__ import annotations

from sqlalchemy import text

from app.db import Database
from app.db import revisions as code_revisions

FUTURE = "9999_from_a_newer_conveyor"
NEWER = (f"the database schema is newer than this Conveyor (revision {FUTURE});"
         " upgrade Conveyor")


def heads() -> set[str]:
    """The revisions a database this code migrated is at."""
    return set(code_revisions().heads)


def revisions(database_url: str) -> set[str]:
    """The revisions recorded in the database's alembic_version."""
    database = Database(database_url)
    try:
        with database.engine.connect() as conn:
            return set(conn.scalars(text("SELECT version_num FROM alembic_version")))
    finally:
        database.dispose()


def stamp_newer(database_url: str) -> None:
    """Make it a database a newer Conveyor migrated: up to date here, plus a revision we lack."""
    database = Database(database_url)
    try:
        database.migrate()
        with database.engine.begin() as conn:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                         {"v": FUTURE})
    finally:
        database.dispose()
