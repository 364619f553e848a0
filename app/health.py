"""`/healthz` (the process is up), `/readyz` (Redis answers, the database answers and
holds this code's schema) and `/metrics` (Prometheus text, behind CONVEYOR_METRICS_TOKEN
when it is set)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from flask import Blueprint, Response, jsonify, request

from app import auth, metrics
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


@blueprint.get("/metrics")
def metrics_text():  # type: ignore[no-untyped-def]
    ctx = context()
    token = ctx.settings.metrics_token
    if token is not None and not _bearer_is(token):
        return jsonify(error="Unauthorized",
                       detail="/metrics needs Authorization: Bearer CONVEYOR_METRICS_TOKEN"), \
            401, {"WWW-Authenticate": "Bearer"}
    body, content_type = metrics.exposition(ctx.jobs.depths)
    return Response(body, content_type=content_type)


def _bearer_is(token: str) -> bool:
    given = auth.bearer(request.headers.get("Authorization")) or ""
    return hmac.compare_digest(given.encode(), token.encode())


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
