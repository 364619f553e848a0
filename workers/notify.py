"""The notify jobs: send commit statuses; never fail or delay a deployment."""

from __future__ import annotations

import logging
from typing import Any

import requests
from redis import Redis

from app import pipeline
from app.report import ReportError, github, gitlab
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
    """RQ job on `notify`: post one commit status; raise (RQ retries) only when that helps."""
    ctx = context()
    project = ctx.config.projects.get(status["project"])
    if project is None or project.status is None:
        return
    if not is_newest(ctx.jobs.redis, status):
        log.info("status %s of %s skipped: a newer one was sent", status["state"],
                 status["context"])
        return
    status = pipeline.mask_all(status, ctx.secrets())  # what leaves for the forge, masked
    args = (status["state"], status["context"], status["description"], status["target_url"])
    api_url, token, repo, sha = (project.status.api_url, project.status.token, project.repo,
                                 status["sha"])
    with requests.Session() as http:
        try:
            if project.provider == "gitlab":
                gitlab.post_status(http, api_url, token, repo, sha, gitlab.status_body(*args))
            else:  # GitHub, and Gitea / Forgejo with the same request
                scheme = "token" if project.provider == "gitea" else "Bearer"
                github.post_status(http, api_url, token, repo, sha, github.status_body(*args),
                                   scheme=scheme)
        except ReportError as exc:
            if exc.retry:
                raise
            log.warning("status not sent: %s", exc)


def is_newest(redis: Redis, status: dict[str, Any]) -> bool:
    """Whether no newer status of the same commit and context has been sent."""
    key = f"conveyor:status:{status['project']}:{status['sha']}:{status['context']}"
    return bool(redis.eval(_NEWEST, 1, key, int(status.get("seq", 0)), SEEN_TTL))
