"""Reading and following a log (app.logs), and the API's named tokens, on both databases."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import redis

from app import create_app, logs
from app.context import Context
from app.models import Build
from app.pipeline import log
from app.pipeline.states import changes
from tests.support import conveyor

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


def _build(ctx: Context) -> int:
    with ctx.db.session() as session:
        build = Build(project="shop", sha="a" * 40, ref="refs/heads/main",
                      repository="acme/shop", clone_url="", settings_hash="h", state="queued")
        session.add(build)
        session.flush()
        return build.id


def _finish(ctx: Context, build_id: int) -> None:
    with changes(ctx) as change:
        build = change.session.get(Build, build_id)
        change.move(build, "running")
    with changes(ctx) as change:
        change.move(change.session.get(Build, build_id), "succeeded")


def test_follow_yields_lines_as_they_come_then_the_end(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> None:
    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG)
    build_id = _build(ctx)
    log(ctx, "first", build_id=build_id)
    followed = logs.follow(ctx, "build", build_id, poll=0.01)
    first = next(followed)
    assert isinstance(first, logs.Line) and first.text == "first"
    log(ctx, "second", build_id=build_id)
    _finish(ctx, build_id)
    rest = list(followed)
    assert [item.text for item in rest if isinstance(item, logs.Line)] == ["second"]
    assert rest[-1] == logs.End(state="succeeded")
    # Resuming after the first line gives the second only.
    assert [line.text for line in logs.lines(ctx, "build", build_id, after=first.id)] == [
        "second"]


def test_follow_sends_a_heartbeat_while_quiet(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> None:
    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG)
    build_id = _build(ctx)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    followed = logs.follow(ctx, "build", build_id, poll=1, heartbeat=3,
                           clock=lambda: now[0], sleep=sleep)
    assert next(followed) is None  # three quiet seconds of the fake clock
    assert logs.sse(None, ()) == ": still here\n\n"
    assert next(logs.follow(ctx, "deployment", 999)) == logs.End(state="gone")


def test_the_api_streams_a_log_and_knows_named_tokens(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> None:
    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG,
                           {"CONVEYOR_API_TOKENS": "alice:alice-token-123"})
    client = create_app(context=ctx).test_client()
    build_id = _build(ctx)
    log(ctx, "one alice-token-123", build_id=build_id)
    alice = {"Authorization": "Bearer alice-token-123"}
    assert client.get("/api/builds/1/log", headers={
        "Authorization": "Bearer alice-token-12"}).status_code == 401
    answer = client.get(f"/api/builds/{build_id}/log", headers=alice)
    assert [line["text"] for line in answer.json["lines"]] == ["one ***"]

    threading.Timer(0.3, lambda: (log(ctx, "two", build_id=build_id),
                                  _finish(ctx, build_id))).start()
    streamed = client.get(f"/api/builds/{build_id}/log",
                          headers={**alice, "Accept": "text/event-stream"})
    assert streamed.mimetype == "text/event-stream"
    events = [block for block in streamed.get_data(as_text=True).split("\n\n") if block]
    data = [json.loads(block.rsplit("data: ", 1)[1]) for block in events]
    assert [d.get("text") for d in data[:-1]] == ["one ***", "two"]
    assert events[-1].startswith("event: end") and data[-1] == {"state": "succeeded"}
    resumed = client.get(f"/api/builds/{build_id}/log", headers={
        **alice, "Accept": "text/event-stream", "Last-Event-ID": str(data[0]["id"])})
    assert "one" not in resumed.get_data(as_text=True)
    assert client.get("/api/deployments/5/log", headers=alice).status_code == 404
