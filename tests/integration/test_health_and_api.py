"""Health, readiness and the API's token, on real Redis and a real database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis

from app import create_app
from tests.support import conveyor
from tests.support.services import free_port

CONFIG = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${WEBHOOK_SECRET}
    build: {artifact: dist}
    environments:
      staging: {branches: [main], hosts: [local], path: /srv/shop}
"""


def test_ready_when_redis_and_the_database_answer(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> None:
    client = create_app(context=conveyor.context(tmp_path, database_url, redis_url,
                                                 CONFIG)).test_client()
    assert client.get("/healthz").json == {"ok": True}
    answer = client.get("/readyz")
    assert (answer.status_code, answer.json["checks"]) == (
        200, {"redis": "ok", "database": "ok"})


def test_not_ready_and_intake_503_when_redis_is_down(
        tmp_path: Path, database_url: str, fixture_json: Callable[[str], dict]) -> None:
    down_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    ctx_down = conveyor.context(tmp_path, database_url, down_url, CONFIG)
    client = create_app(context=ctx_down).test_client()
    assert client.get("/healthz").status_code == 200
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["checks"]["redis"].startswith("unreachable")
    body = conveyor.push_payload(fixture_json("github/push-branch-updated.json"),
                                 repo="acme/shop", clone_url="x", ref="refs/heads/main",
                                 before="1" * 40, after="2" * 40)
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "push", "r-1"))
    assert answer.status_code == 503
    assert "redeliver" in answer.json["detail"]


def test_the_api_needs_the_token(tmp_path: Path, database_url: str, redis_url: str,
                                 redis_db: redis.Redis) -> None:
    client = create_app(context=conveyor.context(tmp_path, database_url, redis_url,
                                                 CONFIG)).test_client()
    assert client.get("/api/deployments").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/api/deployments", headers=wrong).status_code == 401
    right = {"Authorization": f"Bearer {conveyor.API_TOKEN}"}
    assert client.get("/api/deployments", headers=right).json == {"deployments": [],
                                                                  "next": None}
    assert client.get("/api/builds/9", headers=right).status_code == 404
