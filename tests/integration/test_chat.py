"""Chat messages end to end in-process: real builds (git mirror), real deployments to a
`local` host, the chat jobs run as a notify worker runs them, to the stand-in webhook."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from app.context import Context
from app.models import Deployment
from app.pipeline.builds import find_or_create_build
from app.report import ReportError
from tests.support.chat import ChatWebhook, chat_webhook_fixture  # noqa: F401 - a fixture
from tests.support.gitrepo import GitRepo
from tests.support.jobs import run_jobs
from workers import build, chat, deploy

HOOK_TOKEN = "hook-token-0123456789abcdef"
PIPELINE = """\
server: {{public_url: "https://deploy.example.com"}}
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    build: {{commands: ["mkdir -p dist && cp app.txt dist/"], artifact: dist, timeout: 1m}}
    environments:
      staging:
        branches: [main]
        hosts: [local]
        path: {path}
        hooks: {{before_activate: ["test \\"$(cat dist/app.txt)\\" != hook || \
{{ echo token=${{HOOK_TOKEN}}; exit 3; }}"]}}
        healthcheck: {{command: "test \\"$(cat dist/app.txt)\\" != sick", retries: 1, \
interval: 1s, timeout: 10s}}
    notify:
      - slack: ${{CHAT_URL}}
        events: {events}
"""


@pytest.fixture
def shop(worker_context: Callable[..., Context], database_url: str, git_repo: GitRepo,
         chat_webhook: ChatWebhook, tmp_path: Path) -> Callable[..., Context]:
    """Factory: shop(events) configures the project with one webhook on `events`."""
    def make(events: list[str]) -> Context:
        text = PIPELINE.format(clone_url=git_repo.url, path=tmp_path / "srv",
                               events=json.dumps(events))
        return worker_context(text, database_url, {"CHAT_URL": chat_webhook.url,
                                                   "HOOK_TOKEN": HOOK_TOKEN})
    return make


def ship(ctx: Context, repo: GitRepo, content: str, message: str = "change",
         **values: str) -> Deployment:
    """Commit app.txt = content, build it, deploy it to staging (the deployment's other
    columns in `values`); the deployment's end."""
    sha = repo.commit({"app.txt": content}, message=message)
    found, _new = find_or_create_build(ctx, ctx.config.projects["shop"], sha=sha,
                                       ref="refs/heads/main", repository="acme/shop",
                                       clone_url=repo.url)
    build.run(found.id)
    with ctx.db.session() as session:
        row = Deployment(project="shop", environment="staging", trigger=f"test:{uuid.uuid4()}",
                         build_id=found.id, sha=sha, ref="refs/heads/main", **values)
        session.add(row)
        session.flush()
        deployment_id = row.id
    deploy.run(deployment_id)
    with ctx.db.session() as session:
        done = session.get(Deployment, deployment_id)
        assert done is not None
        return done


def run_chat_jobs(queues: redis.Redis, timeout: float = 30) -> list[str]:
    """Run the chat jobs queued (others dropped) as a notify worker would; errors raised."""
    return run_jobs(queues, only=["workers.chat.send"], timeout=timeout, expected=ReportError)


def attachment(message: dict) -> dict:
    return message["attachments"][0]


def test_a_succeeded_deployment_tells_the_commits_it_adds(
        shop: Callable[..., Context], git_repo: GitRepo, chat_webhook: ChatWebhook,
        redis_db: redis.Redis) -> None:
    ctx = shop(["succeeded"])
    first = ship(ctx, git_repo, "one", message="First release")
    for n in range(11):
        git_repo.commit({f"notes/{n}.txt": str(n)}, message=f"Note {n}")
    done = ship(ctx, git_repo, "two", message="Second release\n\nA body line not shown")
    assert (first.state, done.state) == ("succeeded", "succeeded")
    assert run_chat_jobs(redis_db) == []
    assert chat_webhook.violations == []
    assert len(chat_webhook.messages) == 2  # `started` was not chosen: not sent
    latest = attachment(chat_webhook.messages[1])
    assert latest["color"] == "good"
    assert latest["title"] == f"Deployed: shop to staging ({done.sha[:7]})"
    lines = latest["text"].splitlines()
    assert lines[0].startswith(f"{done.sha[:7]} Second release · by ")
    assert "took " in lines[0] and "A body line" not in latest["text"]
    assert lines[1] == "Commits:"
    assert lines[2] == f"• {done.sha[:7]} Second release"
    assert lines[3:12] == [f"• {git_repo.sha(f'HEAD~{n}')[:7]} Note {11 - n}"
                           for n in range(1, 10)]
    assert lines[12] == "and 2 more"  # 12 commits added: 10 shown
    assert lines[13] == f"<https://deploy.example.com/deployments/{done.id}|Details>"
    assert "Commits:" not in attachment(chat_webhook.messages[0])["text"]  # nothing was live


def test_a_message_says_who_approved_or_deployed_by_hand(
        shop: Callable[..., Context], git_repo: GitRepo, chat_webhook: ChatWebhook,
        redis_db: redis.Redis) -> None:
    ctx = shop(["succeeded"])
    ship(ctx, git_repo, "one", approved_by="alice")
    ship(ctx, git_repo, "two", requested_by="ci")
    assert run_chat_jobs(redis_db) == []
    first, second = (attachment(m)["text"].splitlines()[0] for m in chat_webhook.messages)
    assert first.endswith(" · approved by alice")
    assert second.endswith(" · deployed by hand by ci")


def test_a_failed_deployment_says_failed_with_no_secret(
        shop: Callable[..., Context], git_repo: GitRepo, chat_webhook: ChatWebhook,
        redis_db: redis.Redis) -> None:
    ctx = shop(["failed", "build_failed"])
    failed = ship(ctx, git_repo, "hook")  # the hook prints its ${HOOK_TOKEN} and fails
    assert failed.state == "failed"
    assert run_chat_jobs(redis_db) == []
    assert len(chat_webhook.messages) == 1
    sent = attachment(chat_webhook.messages[0])
    assert (sent["color"], sent["title"]) == (
        "danger", f"Deploy failed: shop to staging ({failed.sha[:7]})")
    assert "error: " in sent["text"]
    assert all(HOOK_TOKEN not in json.dumps(m) for m in chat_webhook.messages)
    assert chat_webhook.url not in json.dumps(chat_webhook.messages)


def test_a_deployment_put_back_after_activation_is_rolled_back(
        shop: Callable[..., Context], git_repo: GitRepo, chat_webhook: ChatWebhook,
        redis_db: redis.Redis) -> None:
    ctx = shop(["rolled_back"])
    assert ship(ctx, git_repo, "one").state == "succeeded"
    sick = ship(ctx, git_repo, "sick")  # its health check fails: the host is put back
    assert sick.state == "failed"
    assert run_chat_jobs(redis_db) == []
    assert [attachment(m)["title"] for m in chat_webhook.messages] == [
        f"Rolled back: shop to staging ({sick.sha[:7]})"]


def test_a_500_then_200_delivers_once_and_a_400_is_not_retried(
        shop: Callable[..., Context], git_repo: GitRepo, chat_webhook: ChatWebhook,
        redis_db: redis.Redis) -> None:
    ctx = shop(["started", "succeeded"])
    chat_webhook.fail_next(1, 500)
    ship(ctx, git_repo, "one")
    errors = run_chat_jobs(redis_db)
    assert errors == ["The chat webhook answered 500; will retry"]
    assert [code for _path, code in chat_webhook.requests] == [500, 200, 200]
    assert len(chat_webhook.messages) == 2  # started (after its retry), succeeded

    chat_webhook.fail_next(2, 400, "invalid_token")
    ship(ctx, git_repo, "two")
    assert run_chat_jobs(redis_db) == []  # refused for good: logged, never raised
    assert [code for _path, code in chat_webhook.requests][3:] == [400, 400]
    assert len(chat_webhook.messages) == 2


def test_a_429_holds_the_webhook_for_its_retry_after(
        shop: Callable[..., Context], git_repo: GitRepo, chat_webhook: ChatWebhook,
        redis_db: redis.Redis) -> None:
    ctx = shop(["succeeded"])
    chat_webhook.fail_next(1, 429, "rate_limited", {"Retry-After": "2"})
    ship(ctx, git_repo, "one")
    job_id = redis_db.lrange("rq:queue:notify", 0, -1)[0].decode()
    chat.send(*Job.fetch(job_id, connection=redis_db, serializer=JSONSerializer).args)
    scheduled = ScheduledJobRegistry("notify", connection=redis_db, serializer=JSONSerializer)
    later = redis_db.zrange(scheduled.key, 0, -1, withscores=True)
    assert len(later) == 1 and later[0][1] >= time.time() + 1  # sent again after Retry-After
    assert redis_db.pttl(chat._gate(chat_webhook.url)) > 1000  # every message waits it out
    redis_db.lrem("rq:queue:notify", 1, job_id)
    assert run_chat_jobs(redis_db) == []
    assert [code for _path, code in chat_webhook.requests] == [429, 200]
