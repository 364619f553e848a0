"""Commit statuses through the notify job to the GitHub stand-in (checked against its schema)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

import workers
from app import pipeline
from app.context import Context
from tests.support.forge import GitHubForge, GitLabForge
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
def forge(github_forge: Callable[[str], GitHubForge],
          worker_context: Callable[..., Context], tmp_path: Path) -> GitHubForge:
    stand_in = github_forge(TOKEN)
    worker_context(PIPELINE.format(api_url=stand_in.url), f"sqlite:///{tmp_path}/c.db",
                   {"STATUS_TOKEN": TOKEN})
    return stand_in


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


@pytest.fixture
def gitlab(worker_context: Callable[..., Context], tmp_path: Path) -> Iterator[GitLabForge]:
    stand_in = GitLabForge(TOKEN)
    text = PIPELINE.format(api_url=stand_in.url).replace("provider: github", "provider: gitlab")
    text = text.replace("repo: acme/shop", "repo: acme/platform/shop")
    worker_context(text, f"sqlite:///{tmp_path}/c.db", {"STATUS_TOKEN": TOKEN})
    yield stand_in
    stand_in.stop()


def test_gitlab_gets_its_own_states_by_project_path_and_repeats_are_benign(
        gitlab: GitLabForge) -> None:
    for state, seq in (("queued", 1), ("running", 2), ("running", 3), ("failed", 4)):
        notify.send_status(status(state, seq))  # the repeated `running` is refused: harmless
    assert [(s["repo"], s["state"], s["context"]) for s in gitlab.statuses] == [
        ("acme%2Fplatform%2Fshop", "pending", "conveyor/build"),
        ("acme%2Fplatform%2Fshop", "running", "conveyor/build"),
        ("acme%2Fplatform%2Fshop", "failed", "conveyor/build")]
    assert gitlab.violations == []


def test_gitlab_is_addressed_by_the_numeric_id_a_delivery_told(gitlab: GitLabForge) -> None:
    pipeline.remember_forge_project(workers.context(), "shop", "4242")
    notify.send_status(status("running", 1))
    assert [s["repo"] for s in gitlab.statuses] == ["4242"]
    assert gitlab.violations == []


def test_gitea_takes_githubs_request_with_a_token_header(
        github_forge: Callable[[str], GitHubForge], worker_context: Callable[..., Context],
        tmp_path: Path) -> None:
    stand_in = github_forge(TOKEN)  # Gitea's /api/v1 statuses take GitHub's request
    text = PIPELINE.format(api_url=stand_in.url).replace("provider: github", "provider: gitea")
    worker_context(text, f"sqlite:///{tmp_path}/c.db", {"STATUS_TOKEN": TOKEN})
    notify.send_status(status("succeeded", 1))
    assert [s["state"] for s in stand_in.statuses] == ["success"]
    assert stand_in.violations == []


def test_retry_after_holds_back_every_status_to_that_api_root_from_every_worker(
        forge: GitHubForge, redis_db: redis.Redis) -> None:
    forge.fail_next(3, 500)
    forge.fail_next(1, 429, {"Retry-After": "2"})
    for _ in range(3):  # RQ retries these
        with pytest.raises(notify.ReportError):
            notify.send_status(status("queued", 1))
    notify.send_status(status("queued", 1))  # 429: the gate closes, the status waits
    told_at = forge.requests[-1]["at"]
    notify.send_status(status("succeeded", 2))  # another job: held back too, nothing sent
    assert [r["code"] for r in forge.requests] == [500, 500, 500, 429]
    assert notify.gate_wait(redis_db, forge.url) > 0

    queue = Queue("notify", connection=redis_db, serializer=JSONSerializer)
    assert len(queue.scheduled_job_registry.get_job_ids()) == 2
    while notify.gate_wait(redis_db, forge.url) > 0:  # the event: the gate opens
        time.sleep(0.05)
    run_due_jobs(redis_db, queue)

    sent = [r for r in forge.requests if r["code"] == 201]
    assert sent and all(r["at"] >= told_at + 2 for r in sent)  # nothing before 2 s passed
    states = [s["state"] for s in forge.statuses]
    assert states[-1] == "success" and "pending" not in states[states.index("success"):]
    assert forge.violations == []


def test_gitlab_is_never_sent_a_state_a_status_has_already(gitlab: GitLabForge) -> None:
    for state, seq in (("queued", 1), ("awaiting_approval", 2), ("running", 3)):
        notify.send_status(status(state, seq))  # queued and awaiting_approval: both pending
    assert [s["state"] for s in gitlab.statuses] == ["pending", "running"]
    assert len(gitlab.requests) == 2


def run_due_jobs(redis_db: redis.Redis, queue: Queue) -> None:
    """What RQ's scheduler and a worker do with jobs that are due, in this process."""
    scheduler = RQScheduler([queue], connection=redis_db, serializer=JSONSerializer)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()
    SimpleWorker([queue], connection=redis_db, serializer=JSONSerializer).work(burst=True)
