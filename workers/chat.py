"""The chat job (on `notify`): send one message to one webhook; never fail or delay a
deployment. One message a second per webhook URL (a gate in Redis, as Slack allows), a 429's
Retry-After holds back every message to that URL, 5xx and network errors are retried by RQ,
other refusals are logged."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from app import pipeline
from app.context import Context
from app.report import ReportError
from app.report.chat import MAX_COMMITS, Commit, RateLimited, message_body, post_message
from workers import context
from workers.git import GitError, mirror_path, read

log = logging.getLogger(__name__)
GATE_MS = 1000
# A 429 sends the message again after Retry-After, this many times at most.
MAX_LIMITED = len(pipeline.CHAT_RETRY_INTERVALS)
GIT_TIMEOUT = 30
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_FIELD = "%x1f"


def send(message: dict[str, Any]) -> None:
    """RQ job on `notify`: post one chat message; raise (RQ retries) only when that helps."""
    ctx = context()
    project = ctx.config.projects.get(message["project"])
    if project is None or message["webhook"] >= len(project.notify):
        return
    url = project.notify[message["webhook"]].slack
    facts = pipeline.chat_facts(ctx, message)
    if facts is None:
        return
    if not take_turn(ctx.jobs.redis, url):
        pipeline.queue_chat(ctx, {**message, "waits": message.get("waits", 0) + 1}, delay=1)
        return
    body = pipeline.mask_all(compose(ctx, facts), ctx.secrets())  # what leaves, masked
    with requests.Session() as http:
        try:
            post_message(http, url, body)
        except RateLimited as exc:
            _later(ctx, message, url, exc)
        except ReportError as exc:
            if exc.retry:
                raise
            log.warning("chat message %s not sent: %s", message["id"], exc)


def take_turn(redis: Redis, url: str) -> bool:
    """Whether this message may go to `url` now (one a second per URL)."""
    return bool(redis.set(_gate(url), "1", nx=True, px=GATE_MS))


def compose(ctx: Context, facts: pipeline.ChatFacts) -> dict[str, object]:
    """The message body: the facts, and the commit's words and added commits from the mirror."""
    mirror = mirror_path(ctx.settings.data_dir, facts.project)
    head = commit(mirror, facts.sha) or Commit(facts.sha, "")
    added, more = added_commits(mirror, facts.live_sha, facts.sha)
    return message_body(facts.event, facts.project, facts.environment, head, facts.link,
                        duration=facts.duration, error=facts.error, added=added, more=more,
                        by=facts.by)


def commit(mirror: Path, sha: str) -> Commit | None:
    """The commit's subject and author, or None when the mirror cannot tell."""
    if not _SHA.match(sha):
        return None
    out = _git(mirror, "log", "-1", f"--format=%H{_FIELD}%s{_FIELD}%an", "--end-of-options", sha)
    fields = out.rstrip("\n").split("\x1f") if out else []
    return Commit(*fields) if len(fields) == 3 else None


def added_commits(mirror: Path, live: str | None, sha: str) -> tuple[list[Commit], int]:
    """The newest commits of `live..sha` (at most MAX_COMMITS) and how many more there are;
    none when what was live is unknown or the mirror cannot tell."""
    if live is None or not _SHA.match(live) or not _SHA.match(sha):
        return [], 0
    span = f"{live}..{sha}"
    out = _git(mirror, "log", f"-{MAX_COMMITS}", f"--format=%H{_FIELD}%s", "--end-of-options",
               span)
    count = _git(mirror, "rev-list", "--count", "--end-of-options", span)
    if out is None or count is None or not count.strip().isdigit():
        return [], 0
    added = [Commit(*line.split("\x1f", 1)) for line in out.splitlines() if "\x1f" in line]
    return added, max(0, int(count) - len(added))


def _later(ctx: Context, message: dict[str, Any], url: str, limited: RateLimited) -> None:
    # Every message to this URL waits out Retry-After, not only this one.
    ctx.jobs.redis.set(_gate(url), "429", px=int(limited.retry_after * 1000))
    tries = message.get("limited", 0) + 1
    if tries > MAX_LIMITED:
        log.warning("chat message %s not sent: still rate limited after %d tries",
                    message["id"], MAX_LIMITED)
        return
    pipeline.queue_chat(ctx, {**message, "limited": tries, "waits": message.get("waits", 0) + 1},
               delay=limited.retry_after)


def _gate(url: str) -> str:
    # The URL is a secret: Redis keeps only its hash.
    return f"conveyor:chat:gate:{hashlib.sha256(url.encode()).hexdigest()}"


def _git(mirror: Path, *args: str) -> str | None:
    """git's output in the mirror, or None (a message goes out without what git cannot say)."""
    try:
        return read(mirror, *args, timeout=GIT_TIMEOUT)
    except GitError:
        return None
