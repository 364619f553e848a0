"""`POST /hooks/github` through the real app, on a real Redis and a real database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import MAX_BODY, create_app
from app.context import Context
from app.models import Build, Delivery, Deployment
from tests.support import conveyor, deliveries

BEFORE, AFTER = "737d38c599c1b2991664dfc6155d6bf516fcce36", "a" * 40
CONFIG = """\
server: {public_url: "https://deploy.example.com"}
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${WEBHOOK_SECRET}
    pull_requests: build
    build: {commands: ["true"], artifact: dist}
    environments:
      staging: {branches: [main], hosts: [deploy@127.0.0.1], path: /srv/shop}
      qa: {branches: ["ma*"], hosts: [deploy@127.0.0.1], path: /srv/shop}
      production: {branches: [release], tags: ["v*"], hosts: [deploy@127.0.0.1], path: /srv/shop}
  hello:
    provider: github
    repo: Codertocat/Hello-World
    webhook_secret: ${WEBHOOK_SECRET}
    build: {commands: ["true"], artifact: dist}
    environments:
      production: {tags: ["simple-*"], hosts: [deploy@127.0.0.1], path: /srv/hello}
"""


@pytest.fixture
def ctx(tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> Context:
    return conveyor.context(tmp_path, database_url, redis_url, CONFIG)


@pytest.fixture
def client(ctx: Context) -> FlaskClient:
    return create_app(context=ctx).test_client()


@pytest.fixture
def push(fixture_json: Callable[[str], dict]) -> Callable[..., bytes]:
    def make(ref: str = "refs/heads/main", repo: str = "acme/shop", after: str = AFTER) -> bytes:
        return conveyor.push_payload(fixture_json("github/push-branch-updated.json"), repo=repo,
                                     clone_url="https://example.invalid/shop.git", ref=ref,
                                     before=BEFORE, after=after)
    return make


def counts(ctx: Context) -> tuple[int, int, int]:
    """Deliveries recorded as done, builds, deployments."""
    with ctx.db.session() as session:
        return (session.scalar(select(func.count()).where(Delivery.done)),
                session.scalar(select(func.count()).select_from(Build)),
                session.scalar(select(func.count()).select_from(Deployment)))  # type: ignore[return-value]


def refused(ctx: Context) -> list[tuple[str, int, str | None]]:
    """(delivery id, answer code, reason) of every delivery recorded but not done."""
    with ctx.db.session() as session:
        rows = session.scalars(select(Delivery).where(~Delivery.done).order_by(Delivery.id))
        return [(d.delivery_id, d.status_code, d.reason) for d in rows]


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
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.provider, delivery.event, delivery.project, delivery.repository,
                delivery.ref, delivery.sha, delivery.status_code, delivery.done) == (
            "github", "push", "shop", "acme/shop", "refs/heads/main", AFTER, 202, True)
        assert delivery.duration_ms >= 0 and delivery.answer == answer.json
    # One job in the request; the notify worker runs it and queues the build and statuses.
    assert redis_db.lrange("rq:queue:notify", 0, -1) == [b"dispatch-1-1"]
    assert deliveries.run_dispatch_jobs(ctx, redis_db) == ["dispatch-1-1"]
    assert redis_db.lrange("rq:queue:builds", 0, -1) == [b"build-1-1"]
    assert redis_db.llen("rq:queue:deploys") == 0  # deployments wait for the build


def test_a_wrong_or_missing_signature_is_401_queues_nothing_and_blocks_no_redelivery(
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
    reason = "the X-Hub-Signature-256 signature is missing or wrong"
    assert refused(ctx) == [("d-2", 401, reason), ("d-2", 401, reason)]
    # The forge's redelivery with the right signature is still processed.
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "push", "d-2"))
    assert answer.status_code == 202
    assert counts(ctx) == (1, 1, 2)


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
    assert other_hook.json == {"delivery": "d-4", "duplicate": True, "builds": [1],
                               "deployments": [1, 2]}
    assert counts(ctx) == (2, 1, 2)  # the redelivery is the same delivery: no second row
    assert redis_db.lrange("rq:queue:notify", 0, -1) == [b"dispatch-1-1"]


def test_ping_unconfigured_branches_and_deletions_are_ignored_with_a_reason(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        fixture_json: Callable[[str], dict], redis_db: redis.Redis) -> None:
    ping = fixture_json("github/ping-repo.json")
    ping["repository"]["full_name"] = "acme/shop"
    body = json.dumps(ping).encode()
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "ping", "p-1"))
    assert (answer.status_code, answer.json) == (200, {"delivery": "p-1", "ignored": "ping"})
    cases = [(push(ref="refs/heads/feature"), "no environment deploys branch 'feature'"),
             (push(ref="refs/tags/beta"), "no environment deploys tag 'beta'"),
             (push(after="0" * 40), "refs/heads/main was deleted")]
    for number, (body, reason) in enumerate(cases):
        answer = client.post("/hooks/github", data=body,
                             headers=conveyor.signed_headers(body, "push", f"p-{number + 2}"))
        assert (answer.status_code, answer.json["ignored"]) == (200, reason)
    assert counts(ctx) == (4, 0, 0)
    assert rq_keys(redis_db) == []


def test_a_tag_deploys_to_the_environments_its_globs_name(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        redis_db: redis.Redis) -> None:
    body = push(ref="refs/tags/v1.4.0")
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "push", "t-1"))
    assert answer.json == {"delivery": "t-1", "builds": [1], "deployments": [1]}
    with ctx.db.session() as session:
        deployment = session.get(Deployment, 1)
        assert (deployment.environment, deployment.ref) == ("production", "refs/tags/v1.4.0")


def test_github_enterprise_server_pushes_are_the_same(
        client: FlaskClient, ctx: Context, redis_db: redis.Redis) -> None:
    body = deliveries.fixture_bytes("github/push-tag-created-ghes35.json")
    headers = {**deliveries.github(body, "push", "ghes-1"),
               "X-GitHub-Enterprise-Version": "3.5.0",
               "X-GitHub-Enterprise-Host": "octocoders.github.io"}
    answer = client.post("/hooks/github", data=body, headers=headers)
    assert answer.status_code == 202
    with ctx.db.session() as session:
        build = session.get(Build, answer.json["builds"][0])
        assert (build.project, build.ref, build.sha) == (
            "hello", "refs/tags/simple-tag", json.loads(body)["head_commit"]["id"])


def test_form_encoded_deliveries_are_read_from_the_payload_field(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        redis_db: redis.Redis) -> None:
    body = deliveries.form(push())
    headers = deliveries.github(body, "push", "f-1",
                                content_type="application/x-www-form-urlencoded")
    answer = client.post("/hooks/github", data=body, headers=headers)
    assert (answer.status_code, answer.json["builds"]) == (202, [1])
    empty = b"other=1"
    headers = deliveries.github(empty, "push", "f-2",
                                content_type="application/x-www-form-urlencoded")
    answer = client.post("/hooks/github", data=empty, headers=headers)
    assert answer.status_code == 400 and "payload=" in answer.json["error"]


def test_a_pull_request_head_is_built_and_deployed_nowhere(
        client: FlaskClient, ctx: Context, redis_db: redis.Redis) -> None:
    payload = deliveries.fixture("github/pull_request-opened.json")
    payload["repository"]["full_name"] = "acme/shop"
    payload["pull_request"]["head"]["repo"]["full_name"] = "acme/shop"
    payload["pull_request"]["base"]["repo"]["full_name"] = "acme/shop"
    body = json.dumps(payload).encode()
    answer = client.post("/hooks/github", data=body,
                         headers=deliveries.github(body, "pull_request", "pr-1"))
    assert (answer.status_code, answer.json) == (
        202, {"delivery": "pr-1", "builds": [1], "deployments": []})
    with ctx.db.session() as session:
        build = session.get(Build, 1)
        assert (build.sha, build.ref, build.state) == (
            payload["pull_request"]["head"]["sha"], "refs/pull/2/head", "queued")
    deliveries.run_dispatch_jobs(ctx, redis_db)
    assert redis_db.lrange("rq:queue:builds", 0, -1) == [b"build-1-1"]
    payload["pull_request"]["head"]["repo"]["full_name"] = "stranger/shop"
    body = json.dumps(payload).encode()
    answer = client.post("/hooks/github", data=body,
                         headers=deliveries.github(body, "pull_request", "pr-2"))
    assert answer.status_code == 200 and "from a fork" in answer.json["ignored"]
    payload["action"] = "closed"
    body = json.dumps(payload).encode()
    answer = client.post("/hooks/github", data=body,
                         headers=deliveries.github(body, "pull_request", "pr-3"))
    assert answer.json["ignored"] == "pull request action 'closed' starts no build"
    assert counts(ctx) == (3, 1, 0)


def test_unknown_repository_bad_body_and_content_type_are_refused_and_recorded(
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
    no_id = {k: v for k, v in conveyor.signed_headers(push(), "push", "").items()}
    answer = client.post("/hooks/github", data=push(), headers=no_id)
    assert answer.status_code == 400 and "delivery id" in answer.json["error"]
    assert client.get("/hooks/github").status_code == 405
    assert client.post("/hooks/bitbucket", data=push()).status_code == 404
    assert counts(ctx) == (0, 0, 0)
    assert rq_keys(redis_db) == []
    assert [(code, delivery) for delivery, code, _reason in refused(ctx)] == [
        (404, "x-1"), (400, "x-2"), (415, "x-3"), (400, "")]
    with ctx.db.session() as session:
        unknown = session.scalars(select(Delivery).where(Delivery.delivery_id == "x-1")).one()
        assert (unknown.repository, unknown.project, unknown.event) == (
            "acme/unknown", None, "push")


def test_bodies_over_25_mib_are_refused_by_the_real_app(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        redis_db: redis.Redis) -> None:
    payload = json.loads(push())
    payload["padding"] = ""
    fits = json.dumps(payload).encode()
    payload["padding"] = "x" * (25 * 1024 * 1024 - len(fits))  # exactly 25 MiB: GitHub's cap
    body = json.dumps(payload).encode()
    assert len(body) == 25 * 1024 * 1024
    answer = client.post("/hooks/github", data=body,
                         headers=conveyor.signed_headers(body, "push", "big-1"))
    assert answer.status_code == 202
    too_big = b" " * (MAX_BODY + 1)
    answer = client.post("/hooks/github", data=too_big,
                         headers=conveyor.signed_headers(too_big, "push", "big-2"))
    assert answer.status_code == 413 and "25 MiB" in answer.json["error"]
    assert refused(ctx) == [("big-2", 413, answer.json["error"])]


def test_deliveries_are_listed_newest_first_with_their_answers(
        client: FlaskClient, ctx: Context, push: Callable[..., bytes],
        redis_db: redis.Redis) -> None:
    body = push()
    client.post("/hooks/github", data=body, headers=conveyor.signed_headers(body, "push", "a-1"))
    client.post("/hooks/github", data=body,
                headers=conveyor.signed_headers(body, "push", "a-2", secret="wrong"))
    other = push(repo="Codertocat/Hello-World", ref="refs/heads/master")
    client.post("/hooks/github", data=other,
                headers=conveyor.signed_headers(other, "push", "a-3"))
    token = {"Authorization": f"Bearer {conveyor.API_TOKEN}"}
    assert client.get("/api/deliveries").status_code == 401
    listed = client.get("/api/deliveries", headers=token).json["deliveries"]
    assert [(d["delivery"], d["status_code"], d["done"]) for d in listed] == [
        ("a-3", 200, True), ("a-2", 401, False), ("a-1", 202, True)]
    assert listed[0]["reason"] == "no environment deploys branch 'master'"
    assert listed[0]["project"] == "hello" and listed[2]["sha"] == AFTER
    shop = client.get("/api/deliveries?project=shop&limit=1", headers=token).json["deliveries"]
    assert [d["delivery"] for d in shop] == ["a-2"]
    assert client.get("/api/deliveries?limit=x", headers=token).status_code == 400
