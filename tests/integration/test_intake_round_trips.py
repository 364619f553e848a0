"""A new delivery costs one database round trip on PostgreSQL: one statement records the
build, its deployments and the delivery (SQLite keeps one statement per row). Counted with
SQLAlchemy's `before_cursor_execute` on the real databases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from sqlalchemy import event, select

from app import create_app
from app.models import Build, Delivery, Deployment
from tests.support import conveyor

CONFIG = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${WEBHOOK_SECRET}
    pull_requests: build
    build: {artifact: dist}
    environments:
      staging: {branches: [main], hosts: [local], path: /srv/shop}
      qa: {branches: [main], hosts: [local], path: /srv/shop}
      docs: {branches: [docs], hosts: [local], path: /srv/shop}
"""


@contextmanager
def statements(engine) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """The SQL of every statement sent to the database meanwhile."""
    sent: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_new_push_is_one_statement_on_postgresql_and_makes_the_same_rows(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        fixture_json: Callable[[str], dict]) -> None:
    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG)
    client = create_app(context=ctx).test_client()

    def push(after: str, delivery: str) -> tuple[int, dict]:
        body = conveyor.push_payload(fixture_json("github/push-branch-updated.json"),
                                     repo="acme/shop", clone_url="https://example.invalid/s.git",
                                     ref="refs/heads/main", before="1" * 40, after=after)
        answer = client.post("/hooks/github", data=body,
                             headers=conveyor.signed_headers(body, "push", delivery))
        return answer.status_code, answer.json

    push("a" * 40, "warm-up")  # the first request checks the schema once
    with statements(ctx.db.engine) as sent:
        code, answer = push("b" * 40, "second")
    assert (code, answer) == (202, {"delivery": "second", "builds": [2],
                                    "deployments": [3, 4]})
    postgres = ctx.db.engine.dialect.name == "postgresql"
    # SQLite: the build, each deployment, the delivery.
    assert len(sent) == (1 if postgres else 4), sent

    with ctx.db.session() as session:
        build = session.get(Build, 2)
        assert (build.sha, build.state, build.attempt, build.ref) == (
            "b" * 40, "queued", 1, "refs/heads/main")
        assert build.created_at is not None
        deployments = session.scalars(select(Deployment).where(
            Deployment.build_id == 2).order_by(Deployment.id)).all()
        assert [(d.id, d.environment, d.state, d.kind, d.trigger) for d in deployments] == [
            (3, "staging", "queued", "deploy", f"push:refs/heads/main:{'b' * 40}"),
            (4, "qa", "queued", "deploy", f"push:refs/heads/main:{'b' * 40}")]
        record = session.scalars(select(Delivery).where(Delivery.delivery_id == "second")).one()
        assert (record.done, record.status_code, record.answer, record.sha, record.project,
                record.event, record.reason) == (True, 202, answer, "b" * 40, "shop", "push",
                                                 None)
    queued = redis_db.lrange("rq:queue:notify", 0, -1)
    assert b"dispatch-2-1" in queued

    # The same delivery again, and the same push under another id: the first answers.
    assert push("b" * 40, "second") == (200, {**answer, "duplicate": True})
    assert push("b" * 40, "third") == (200, {"delivery": "third", "duplicate": True,
                                             "builds": [2], "deployments": [3, 4]})


def test_a_pull_request_is_one_statement_on_postgresql_too(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        fixture_json: Callable[[str], dict]) -> None:
    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG)
    client = create_app(context=ctx).test_client()
    payload = fixture_json("github/pull_request-opened.json")
    payload["repository"]["full_name"] = "acme/shop"
    payload["pull_request"]["base"]["repo"]["full_name"] = "acme/shop"
    payload["pull_request"]["head"]["repo"]["full_name"] = "acme/shop"
    body = json.dumps(payload).encode()
    client.get("/api/deployments")  # the schema is checked on the first request
    with statements(ctx.db.engine) as sent:
        answer = client.post("/hooks/github", data=body,
                             headers=conveyor.signed_headers(body, "pull_request", "pr-1"))
    assert answer.status_code == 202, answer.json
    assert answer.json["deployments"] == []
    assert len(sent) == (1 if ctx.db.engine.dialect.name == "postgresql" else 2), sent
