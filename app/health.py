"""`/healthz` (the process is up) and `/readyz` (Redis answers, the database answers and
holds this code's schema)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, jsonify

from app.context import Context
from app.db import SchemaTooNew
from app.web import context

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify(ok=True)


@blueprint.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    ctx = context()
    checks = {"redis": _check(ctx.jobs.ping), "database": _check(lambda: _database(ctx))}
    ready = all(v == "ok" for v in checks.values())
    return jsonify(ready=ready, checks=checks), 200 if ready else 503


def _database(ctx: Context) -> None:
    ctx.db.ping()
    ctx.db.migrate()  # a schema not brought up at start is tried again here


def _check(probe: Callable[[], None]) -> str:
    try:
        probe()
    except SchemaTooNew as exc:
        return str(exc)
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"
