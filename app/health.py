"""`/healthz` (the process is up) and `/readyz` (Redis and the database answer)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.web import context

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify(ok=True)


@blueprint.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    ctx = context()
    checks = {}
    for name, ping in (("redis", ctx.jobs.ping), ("database", ctx.db.ping)):
        try:
            ping()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(ready=ready, checks=checks), 200 if ready else 503
