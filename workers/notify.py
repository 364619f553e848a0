"""The notify jobs: send commit statuses; never fail or delay a deployment."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import requests
from redis import Redis

from app import pipeline
from app.report import GITLAB_STATES, ReportError, github, gitlab
from workers import context

log = logging.getLogger(__name__)
SEEN_TTL = 7 * 24 * 3600
# Marks `seq` as the newest status of its key unless a newer one is marked already.
_NEWEST = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def send_status(status: dict[str, Any]) -> None:
    """RQ job on `notify`: post one commit status; raise (RQ retries) only when that helps.
    A forge's `Retry-After` holds back every status to that API root, from every worker
    process (a gate in Redis), until it has passed."""
    ctx = context()
    project = ctx.config.projects.get(status["project"])
    if project is None or project.status is None:
        return
    if not is_newest(ctx.jobs.redis, status):
        log.info("status %s of %s skipped: a newer one was sent", status["state"],
                 status["context"])
        return
    api_url, token, repo, sha = (project.status.api_url, project.status.token, project.repo,
                                 status["sha"])
    wait = gate_wait(ctx.jobs.redis, api_url)
    if wait > 0:
        pipeline.send_status_later(ctx, status, wait)
        return
    repeated = _gitlab_key(status) if project.provider == "gitlab" else None
    if repeated and _sent_state(ctx.jobs.redis, repeated) == GITLAB_STATES[
            status["state"]]:
        return  # GitLab refuses to set the state a status has already
    status = pipeline.mask_all(status, ctx.secrets())  # what leaves for the forge, masked
    args = (status["state"], status["context"], status["description"], status["target_url"])
    with requests.Session() as http:
        try:
            if project.provider == "gitlab":
                gitlab.post_status(http, api_url, token, repo, sha, gitlab.status_body(*args))
            else:  # GitHub, and Gitea / Forgejo with the same request
                scheme = "token" if project.provider == "gitea" else "Bearer"
                github.post_status(http, api_url, token, repo, sha, github.status_body(*args),
                                   scheme=scheme)
        except ReportError as exc:
            if exc.retry_after is not None:
                close_gate(ctx.jobs.redis, api_url, exc.retry_after)
                pipeline.send_status_later(ctx, status, exc.retry_after)
                return
            if exc.retry:
                raise
            log.warning("status not sent: %s", exc)
            return
    if repeated:
        ctx.jobs.redis.set(repeated, GITLAB_STATES[status["state"]], ex=SEEN_TTL)


def gate_wait(redis: Redis, api_url: str) -> float:
    """Seconds until requests to `api_url` may go again (0: now)."""
    left = redis.pttl(_gate_key(api_url))
    return left / 1000 if left and left > 0 else 0.0


def close_gate(redis: Redis, api_url: str, seconds: float) -> None:
    """Hold back every request to `api_url` for `seconds` (the forge's Retry-After)."""
    redis.set(_gate_key(api_url), "1", px=max(1, int(seconds * 1000)))


def _gate_key(api_url: str) -> str:
    return f"conveyor:gate:{hashlib.sha256(api_url.encode()).hexdigest()[:24]}"


def _gitlab_key(status: dict[str, Any]) -> str:
    return f"conveyor:gitlab-state:{status['project']}:{status['sha']}:{status['context']}"


def _sent_state(redis: Redis, key: str) -> str | None:
    value = redis.get(key)
    return value.decode() if isinstance(value, bytes) else value


def is_newest(redis: Redis, status: dict[str, Any]) -> bool:
    """Whether no newer status of the same commit and context has been sent."""
    key = f"conveyor:status:{status['project']}:{status['sha']}:{status['context']}"
    return bool(redis.eval(_NEWEST, 1, key, int(status.get("seq", 0)), SEEN_TTL))
