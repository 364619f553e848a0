"""What the pipeline's parts share: insert-once, log lines."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.context import Context
from app.models import LogLine
from app.pipeline.rules import mask


def insert_once(ctx: Context, row: Any, existing: Any) -> tuple[Any, bool]:
    """Insert `row` unless `existing` finds it; the database's uniqueness settles races."""
    with ctx.db.session() as session:
        found = session.scalar(existing)
        if found is not None:
            return found, False
    try:
        with ctx.db.session() as session:
            session.add(row)
        return row, True
    except IntegrityError:
        with ctx.db.session() as session:
            return session.scalars(existing).one(), False



def log(ctx: Context, text: str, *, build_id: int | None = None,
        deployment_id: int | None = None) -> None:
    """Store one log line of a build or deployment, secrets masked."""
    log_many(ctx, [text], build_id=build_id, deployment_id=deployment_id)


def log_many(ctx: Context, lines: list[str], *, build_id: int | None = None,
             deployment_id: int | None = None) -> None:
    """Store log lines in one transaction, in order, secrets masked."""
    with ctx.db.session() as session:
        session.add_all(log_rows(ctx, lines, build_id=build_id, deployment_id=deployment_id))


def log_rows(ctx: Context, lines: Iterable[str], *, build_id: int | None = None,
             deployment_id: int | None = None) -> list[LogLine]:
    """The rows of log lines, secrets masked: the one place a log line is made, for callers
    that store them in a transaction of their own."""
    secrets = ctx.secrets()
    return [LogLine(build_id=build_id, deployment_id=deployment_id,
                    text=mask(text.rstrip("\n"), secrets)) for text in lines]
