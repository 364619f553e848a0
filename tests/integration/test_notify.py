"""Commit statuses through the notify job to the GitHub stand-in (checked against its schema)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import workers
from tests.support import conveyor
from tests.support.forge import GitHubForge
from workers import notify

TOKEN = "ghs_notify_test"
PIPELINE = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    status: {{api_url: "{api_url}", token: "${{STATUS_TOKEN}}"}}
    build: {{artifact: dist}}
    environments:
      staging: {{branches: [main], hosts: [local], path: /srv/shop}}
"""


@pytest.fixture
def forge(github_forge: Callable[[str], GitHubForge], tmp_path: Path, redis_url: str,
          redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubForge]:
    stand_in = github_forge(TOKEN)
    _settings, environ = conveyor.settings(
        tmp_path, f"sqlite:///{tmp_path}/c.db", redis_url,
        PIPELINE.format(api_url=stand_in.url), {"STATUS_TOKEN": TOKEN})
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    workers.context.cache_clear()
    yield stand_in
    workers.context.cache_clear()


def status(state: str, seq: int) -> dict:
    return {"project": "shop", "sha": "a" * 40, "context": "conveyor/build", "state": state,
            "description": f"{state} {seq}", "target_url": "https://d.example/builds/1",
            "seq": seq}


def test_statuses_reach_github_in_its_schema(forge: GitHubForge) -> None:
    notify.send_status(status("queued", 1))
    notify.send_status(status("succeeded", 2))
    assert [(s["state"], s["description"]) for s in forge.statuses] == [
        ("pending", "queued 1"), ("success", "succeeded 2")]
    assert forge.violations == []


def test_a_late_older_status_never_overwrites_a_newer_one(forge: GitHubForge) -> None:
    notify.send_status(status("succeeded", 20))
    notify.send_status(status("running", 10))  # a retry of an older one, arriving late
    assert [s["state"] for s in forge.statuses] == ["success"]


def test_a_5xx_raises_for_a_retry_and_a_4xx_is_dropped(forge: GitHubForge) -> None:
    forge.fail_next(1, 502)
    with pytest.raises(notify.ReportError):
        notify.send_status(status("queued", 1))
    notify.send_status(status("queued", 1))  # the retry goes through
    forge.fail_next(1, 422)
    notify.send_status(status("succeeded", 2))  # refused for good: logged, not raised
    assert [s["state"] for s in forge.statuses] == ["pending"]
