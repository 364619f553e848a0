"""Build a Conveyor context or app for a test: a pipeline file, real Redis, a real database."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from app.context import Context, load
from app.settings import Settings

SECRET = "webhook-secret-for-tests"
API_TOKEN = "api-token-for-tests"


def settings(tmp_path: Path, database_url: str, redis_url: str, config_text: str,
             env: dict[str, str] | None = None) -> tuple[Settings, dict[str, str]]:
    """Write `config_text` to conveyor.yml and return settings plus the process environment."""
    config_path = tmp_path / "conveyor.yml"
    config_path.write_text(config_text)
    environ = {
        "CONVEYOR_CONFIG": str(config_path),
        "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CONVEYOR_API_TOKEN": API_TOKEN,
        "WEBHOOK_SECRET": SECRET,
        **(env or {}),
    }
    return Settings.from_env(environ), environ


def context(tmp_path: Path, database_url: str, redis_url: str, config_text: str,
            env: dict[str, str] | None = None) -> Context:
    """A migrated context over the test's own database and Redis."""
    import os

    conf_settings, environ = settings(tmp_path, database_url, redis_url, config_text, env)
    saved = {k: os.environ.get(k) for k in environ}
    os.environ.update(environ)  # ${VAR} in the pipeline file reads the process environment
    try:
        ctx = load(conf_settings)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    ctx.db.migrate()
    return ctx


def signed_headers(body: bytes, event: str, delivery: str, secret: str = SECRET) -> dict[str, str]:
    """The headers GitHub sends with a delivery, signed with `secret`."""
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": f"sha256={signature}",
            "User-Agent": "GitHub-Hookshot/044aadd"}


def push_payload(fixture: dict[str, Any], *, repo: str, clone_url: str, ref: str,
                 before: str, after: str) -> bytes:
    """GitHub's real push payload, rewritten only where it must point at the test's repository."""
    payload = json.loads(json.dumps(fixture))
    payload.update(ref=ref, before=before, after=after)
    payload["repository"].update(full_name=repo, name=repo.split("/")[1], clone_url=clone_url)
    payload["head_commit"]["id"] = after
    payload["commits"][-1]["id"] = after
    return json.dumps(payload).encode()
