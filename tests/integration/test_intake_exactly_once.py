"""Exactly once: deliveries racing each other, twin hooks, and Redis or the database going
away mid-delivery, with real threads, a real Redis server and real databases."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from app import config as config_module
from app import create_app
from app.context import Context
from app.db import Database
from app.models import Build, Delivery, Deployment
from app.queue import Jobs, connect
from tests.support import conveyor, deliveries
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
      qa: {branches: [main], hosts: [local], path: /srv/shop}
"""


@pytest.fixture
def push_body(fixture_json: Callable[[str], dict]) -> bytes:
    return conveyor.push_payload(fixture_json("github/push-branch-updated.json"),
                                 repo="acme/shop", clone_url="https://example.invalid/s.git",
                                 ref="refs/heads/main", before="1" * 40, after="2" * 40)


def rows(ctx: Context) -> dict[str, int]:
    with ctx.db.session() as session:
        count = lambda query: session.scalar(query)  # noqa: E731
        return {"deliveries": count(select(func.count()).select_from(Delivery)),
                "done": count(select(func.count()).where(Delivery.done)),
                "builds": count(select(func.count()).select_from(Build)),
                "deployments": count(select(func.count()).select_from(Deployment))}


def post_at_once(ctx: Context, requests: list[tuple[bytes, dict[str, str]]]) -> list[Any]:
    """POST every request from its own thread, all released at the same moment."""
    app = create_app(context=ctx)
    start = threading.Barrier(len(requests))
    answers: list[Any] = [None] * len(requests)

    def post(index: int, body: bytes, headers: dict[str, str]) -> None:
        client = app.test_client()
        start.wait()
        answers[index] = client.post("/hooks/github", data=body, headers=headers)

    threads = [threading.Thread(target=post, args=(i, *request))
               for i, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_one_delivery_posted_by_20_threads_at_once_is_done_once(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        push_body: bytes) -> None:
    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG)
    headers = conveyor.signed_headers(push_body, "push", "same-delivery")
    answers = post_at_once(ctx, [(push_body, headers)] * 20)
    assert rows(ctx) == {"deliveries": 1, "done": 1, "builds": 1, "deployments": 2}
    assert sorted(a.status_code for a in answers) == [200] * 19 + [202]
    first = next(a.json for a in answers if a.status_code == 202)
    assert all(a.json == {**first, "duplicate": True} for a in answers if a.status_code == 200)
    deliveries.run_dispatch_jobs(ctx, redis_db)  # as the notify worker would
    assert redis_db.lrange("rq:queue:builds", 0, -1) == [f"build-{first['builds'][0]}-1".encode()]


def test_one_push_under_two_delivery_ids_makes_one_build_and_one_deployment_per_environment(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        push_body: bytes) -> None:
    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG)
    answers = post_at_once(ctx, [(push_body, conveyor.signed_headers(push_body, "push", name))
                                 for name in ("hook-a", "hook-b")])
    assert rows(ctx) == {"deliveries": 2, "done": 2, "builds": 1, "deployments": 2}
    assert {a.status_code for a in answers} <= {200, 202}
    assert answers[0].json["builds"] == answers[1].json["builds"]
    assert answers[0].json["deployments"] == answers[1].json["deployments"]
    deliveries.run_dispatch_jobs(ctx, redis_db)
    assert redis_db.llen("rq:queue:builds") == 1
    later = create_app(context=ctx).test_client().post(
        "/hooks/github", data=push_body,
        headers=conveyor.signed_headers(push_body, "push", "hook-c"))
    assert later.status_code == 200
    assert later.json == {"delivery": "hook-c", "duplicate": True,
                          "builds": answers[0].json["builds"],
                          "deployments": answers[0].json["deployments"]}


@contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[str]]:
    """A throwaway redis-server on `port`, started and ready, stopped at exit."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # its own word that it is ready, not a sleep
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server on port {port} ended before it was ready")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_redis_down_is_503_nothing_done_and_the_redelivery_queues_the_work(
        tmp_path: Path, database_url: str, push_body: bytes) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with redis_server(port):
        ctx = conveyor.context(tmp_path, database_url, url, CONFIG)
        client = create_app(context=ctx).test_client()
    headers = conveyor.signed_headers(push_body, "push", "outage-1")
    answer = client.post("/hooks/github", data=push_body, headers=headers)
    assert answer.status_code == 503 and "redeliver" in answer.json["detail"]
    # The rows were made before the enqueue failed: the crash window. Nothing is done.
    assert rows(ctx) == {"deliveries": 1, "done": 0, "builds": 1, "deployments": 2}
    with redis_server(port):
        again = client.post("/hooks/github", data=push_body, headers=headers)
        assert (again.status_code, again.json) == (
            202, {"delivery": "outage-1", "builds": [1], "deployments": [1, 2]})
        with redis.Redis.from_url(url) as queues:
            assert queues.lrange("rq:queue:builds", 0, -1) == [b"build-1-1"]
        third = client.post("/hooks/github", data=push_body, headers=headers)
        assert third.json == {**again.json, "duplicate": True}
    assert rows(ctx) == {"deliveries": 2, "done": 1, "builds": 1, "deployments": 2}
    with ctx.db.session() as session:
        outage = session.scalars(select(Delivery).where(~Delivery.done)).one()
        assert (outage.delivery_id, outage.status_code, outage.done) == ("outage-1", 503, False)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_database_down_is_503_and_nothing_is_queued(
        tmp_path: Path, database: str, redis_url: str, redis_db: redis.Redis,
        push_body: bytes) -> None:
    dead = {"sqlite": f"sqlite:///{tmp_path}",  # a folder is no database file
            "postgresql": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"}
    settings, environ = conveyor.settings(tmp_path, dead[database], redis_url, CONFIG)
    ctx = Context(settings=settings, config=config_module.load(settings.config_path, environ),
                  db=Database(settings.database_url), jobs=Jobs(connect(redis_url)))
    client = create_app(context=ctx).test_client()
    answer = client.post("/hooks/github", data=push_body,
                         headers=conveyor.signed_headers(push_body, "push", "db-down"))
    assert answer.status_code == 503 and "redeliver" in answer.json["detail"]
    assert redis_db.keys("rq:*") == []
    refused = client.post("/hooks/github", data=push_body,
                          headers=conveyor.signed_headers(push_body, "push", "x", "bad"))
    assert refused.status_code == 401  # a refusal does not need the database to answer


def test_intake_makes_the_rows_the_pipeline_would_find_for_the_same_push(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        push_body: bytes) -> None:
    # Intake inserts a new commit's rows itself (one transaction); the pipeline's own
    # find-or-create functions must find exactly those rows, or a push could run twice.
    from app.hooks import github
    from app.pipeline.builds import find_or_create_build
    from app.pipeline.deployments import find_or_create_deployment

    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG)
    answer = create_app(context=ctx).test_client().post(
        "/hooks/github", data=push_body,
        headers=conveyor.signed_headers(push_body, "push", "rows-1")).json
    push = github.event("push", json.loads(push_body))
    project = ctx.config.projects["shop"]
    build, new = find_or_create_build(ctx, project, sha=push.after, ref=push.ref,
                                      repository=push.repository, clone_url=push.clone_url)
    assert (build.id, new, build.state, build.attempt) == (answer["builds"][0], False, "queued", 1)
    found = [find_or_create_deployment(ctx, project, env, build, push)
             for env in project.environments.values()]
    assert [(d.id, created) for d, created in found] == [
        (deployment_id, False) for deployment_id in answer["deployments"]]
