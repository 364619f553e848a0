"""Mechanics: the RQ jobs and what they drive (git, subprocesses, SSH). No policy lives here."""

from __future__ import annotations

from functools import cache

from app import context as app_context
from app.context import Context


@cache
def context() -> Context:
    """This process's Conveyor context, made on first use (inside the job, after RQ's fork),
    its schema checked (or migrated) as the web process does."""
    ctx = app_context.load()
    ctx.db.migrate()
    return ctx
