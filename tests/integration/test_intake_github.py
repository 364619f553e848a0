"""`POST /hooks/github` through the real app, on a real Redis and a real database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import create_app
from app.context import Context
from app.models import Build, Delivery, Deployment
from tests.support import conveyor

BEFORE, AFTER = "737d38c599c1b2991664dfc6155d6bf516fcce36", "a" * 40
CONFIG = """\
server: {public_url: "https://deploy.example.com"}
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${WEBHOOK_SECRET}
    build: {commands: ["true"], artifact: dist}
    environments:
      staging: {branches: [main], hosts: [deploy@127.0.0.1], path: /srv/shop}
      qa: {branches: ["ma*"], hosts: [deploy@127.0.0.1], path: /srv/shop}
      production: {branches: [release], hosts: [deploy@127.0.0.1], path: /srv/shop}
"""


@pytest.fixture
def ctx(tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> Context:
    return conveyor.context(tmp_path, database_url, redis_url, CONFIG)


@pytest.fixture
def client(ctx: Context) -> FlaskClient:
    return create_app(context=ctx).test_client()


@pytest.fixture
def push(fixture_json: Callable[[str], dict]) -> Callable[..., bytes]:
    def make(ref: str = "refs/heads/main", repo: str = "acme/shop") -> bytes:
        return conveyor.push_payload(fixture_json("github/push-branch-updated.json"), repo=repo,
                                     clone_url="https://example.invalid/shop.git", ref=ref,
                                     before=BEFORE, after=AFTER)
    return make


def counts(ctx: Context) -> tuple[int, int, int]:
    with ctx.db.session() as session:
        return tuple(session.scalar(select(func.count()).select_from(model))
                     for model in (Delivery, Build, Deployment))  # type: ignore[return-value]


def rq_keys(redis_db: redis.Redis) -> list[bytes]:
    return sorted(redis_db.keys("rq:*"))


def test_a_signed_push_queues_one_build_and_a_deployment_per_matching_environment(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        redis_db: redis.Redis) -> None:
    body = push()
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "push", "d-1"))
    assert answer.status_code == 202
    assert answer.json == {"delivery": "d-1", "builds": [1], "deployments": [1, 2]}
    with ctx.db.session() as session:
        build = session.get(Build, 1)
        assert (build.sha, build.ref, build.state) == (AFTER, "refs/heads/main", "queued")
        deployments = session.scalars(select(Deployment).order_by(Deployment.id)).all()
        assert [(d.environment, d.state, d.build_id) for d in deployments] == [
            ("staging", "queued", 1), ("qa", "queued", 1)]
    assert redis_db.lrange("rq:queue:builds", 0, -1) == [b"build-1-1"]
    assert redis_db.llen("rq:queue:deploys") == 0  # deployments wait for the build


def test_a_wrong_or_missing_signature_is_401_and_queues_nothing(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        redis_db: redis.Redis) -> None:
    body = push()
    wrong = conveyor.signed_headers(body, "push", "d-2", secret="not-the-secret")
    missing = {k: v for k, v in wrong.items() if k != "X-Hub-Signature-256"}
    for headers in (wrong, missing):
        answer = client.post("/hooks/github", data=body, headers=headers)
        assert answer.status_code == 401
        assert "signature" in answer.json["error"]
    assert counts(ctx) == (0, 0, 0)
    assert rq_keys(redis_db) == []
    # The forge's redelivery with the right signature is still processed.
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "push", "d-2"))
    assert answer.status_code == 202


def test_a_redelivery_answers_the_first_answer_and_queues_nothing_more(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        redis_db: redis.Redis) -> None:
    body = push()
    headers = conveyor.signed_headers(body, "push", "d-3")
    first = client.post("/hooks/github", data=body, headers=headers)
    again = client.post("/hooks/github", data=body, headers=headers)
    assert again.status_code == 200
    assert again.json == {**first.json, "duplicate": True}
    other_hook = client.post("/hooks/github", data=body,
                             headers=conveyor.signed_headers(body, "push", "d-4"))
    assert other_hook.status_code == 200
    assert other_hook.json == {"delivery": "d-4", "builds": [1], "deployments": [1, 2],
                               "duplicate": True}
    assert counts(ctx) == (2, 1, 2)
    assert redis_db.lrange("rq:queue:builds", 0, -1) == [b"build-1-1"]


def test_ping_and_unconfigured_branches_are_ignored_with_a_reason(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        fixture_json: Callable[[str], dict], redis_db: redis.Redis) -> None:
    import json

    ping = fixture_json("github/ping-repo.json")
    ping["repository"]["full_name"] = "acme/shop"
    body = json.dumps(ping).encode()
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "ping", "p-1"))
    assert (answer.status_code, answer.json) == (200, {"delivery": "p-1", "ignored": "ping"})
    body = push(ref="refs/heads/feature")
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "push", "p-2"))
    assert answer.status_code == 200
    assert answer.json["ignored"] == "no environment deploys branch 'feature'"
    assert counts(ctx) == (2, 0, 0)
    assert rq_keys(redis_db) == []


def test_unknown_repository_bad_body_and_content_type_are_refused(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        redis_db: redis.Redis) -> None:
    body = push(repo="acme/unknown")
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "push", "x-1"))
    assert answer.status_code == 404
    answer = client.post("/hooks/github", data=b"{not json",
                         headers=conveyor.signed_headers(b"{not json", "push", "x-2"))
    assert answer.status_code == 400
    headers = {**conveyor.signed_headers(push(), "push", "x-3"), "Content-Type": "text/plain"}
    assert client.post("/hooks/github", data=push(), headers=headers).status_code == 415
    assert counts(ctx) == (0, 0, 0)
    assert rq_keys(redis_db) == []
