"""The notify jobs: commit statuses and deployments on the forge; never in a deployment's way."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import requests
from redis import Redis

from app import config as cfg
from app import pipeline
from app.context import Context
from app.report import GITLAB_DEPLOYMENT_STATES, GITLAB_STATES, ReportError, github, gitlab
from workers import context

log = logging.getLogger(__name__)
SEEN_TTL = 7 * 24 * 3600
RECORD_TTL = 90 * 24 * 3600  # how long the forge's id of a deployment is remembered
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
    project = _ready(ctx, status)
    if project is None:
        return
    repeated = _gitlab_key(status) if project.provider == "gitlab" else None
    if repeated and _text(ctx.jobs.redis.get(repeated)) == GITLAB_STATES[status["state"]]:
        return  # GitLab refuses to set the state a status has already
    status = pipeline.mask_all(status, ctx.secrets())  # what leaves for the forge, masked
    api_url, token, repo, sha = (project.status.api_url, project.status.token,
                                 pipeline.forge_project(ctx, project), status["sha"])
    args = (status["state"], status["context"], status["description"], status["target_url"])

    def post(http: requests.Session) -> None:
        if project.provider == "gitlab":
            gitlab.post_status(http, api_url, token, repo, sha, gitlab.status_body(*args))
        else:  # GitHub, and Gitea / Forgejo with the same request
            scheme = "token" if project.provider == "gitea" else "Bearer"
            github.post_status(http, api_url, token, repo, sha, github.status_body(*args),
                               scheme=scheme)

    if _deliver(ctx, api_url, status, post) and repeated:
        ctx.jobs.redis.set(repeated, GITLAB_STATES[status["state"]], ex=SEEN_TTL)


def send_deployment(record: dict[str, Any]) -> None:
    """RQ job on `notify`: bring the forge's record of one deployment to its state (GitHub: a
    deployment and its statuses, the one it replaced set `inactive`; GitLab: a deployment of
    the environment, from the moment it runs). The forge's id of the deployment is kept in
    Redis; one job at a time works on a deployment, and an older state never follows a
    newer one. Held back and retried like commit statuses."""
    ctx = context()
    project = _ready(ctx, record)
    if project is None:
        return
    redis = ctx.jobs.redis
    with redis.lock(_record_key("lock", record), timeout=300, blocking_timeout=120):
        if not _still_newest(redis, record):
            return
        record = pipeline.mask_all(record, ctx.secrets())
        if project.provider == "gitlab":
            address = pipeline.forge_project(ctx, project)
            _deliver(ctx, project.status.api_url, record,
                     lambda http: _gitlab_deployment(redis, http, project, address, record))
        else:
            _deliver(ctx, project.status.api_url, record,
                     lambda http: _github_deployment(redis, http, project, record))


def _ready(ctx: Context, status: dict[str, Any]) -> cfg.Project | None:
    """The project a status goes to, or None when it is not to be sent now: the project no
    longer reports, a newer status went out, or its API root's gate is closed (then it is
    queued again for when the gate opens)."""
    project = ctx.config.projects.get(status["project"])
    if project is None or project.status is None:
        return None
    if not is_newest(ctx.jobs.redis, status):
        log.info("status %s of %s skipped: a newer one was sent", status["state"],
                 status["context"])
        return None
    wait = gate_wait(ctx.jobs.redis, project.status.api_url)
    if wait > 0:
        pipeline.send_status_later(ctx, status, wait)
        return None
    return project


def _deliver(ctx: Context, api_url: str, status: dict[str, Any],
             call: Callable[[requests.Session], None]) -> bool:
    """Run `call` against the forge: True once it went through. A `Retry-After` closes the
    API root's gate and queues the status again; other retryable refusals raise (RQ retries
    with backoff); the rest are logged with the forge's message."""
    with requests.Session() as http:
        try:
            call(http)
            return True
        except ReportError as exc:
            if exc.retry_after is not None:
                close_gate(ctx.jobs.redis, api_url, exc.retry_after)
                pipeline.send_status_later(ctx, status, exc.retry_after)
                return False
            if exc.retry:
                raise
            log.warning("status not sent: %s", exc)
            return False


# A deployment that ends before it started needs no record on the forge.
_NEVER_STARTED = frozenset({"superseded", "canceled"})


def _github_deployment(redis: Redis, http: requests.Session, project: cfg.Project,
                       record: dict[str, Any]) -> None:
    status, state = project.status, record["state"]
    found = _text(redis.get(_record_key("id", record)))
    if found is None:
        if state in _NEVER_STARTED:
            return
        body = github.deployment_body(record["sha"], record["environment"],
                                      production=record["production"],
                                      description=record["description"])
        found = str(github.create_deployment(http, status.api_url, status.token, project.repo,
                                             body))
        redis.set(_record_key("id", record), found, ex=RECORD_TTL)
    body = github.deployment_status_body(state, record["description"], record["log_url"],
                                         record["environment_url"])
    github.post_deployment_status(http, status.api_url, status.token, project.repo,
                                  int(found), body)
    if state != "succeeded":
        return
    # The deployment live before is no longer: marked first, so a retry marks it again.
    live_key = f"conveyor:forge-live:{record['project']}:{record['environment']}"
    previous = _text(redis.get(live_key))
    if previous and previous != found:
        inactive = github.deployment_status_body(
            "inactive", f"Replaced by {record['sha'][:7]}", record["log_url"], None)
        github.post_deployment_status(http, status.api_url, status.token, project.repo,
                                      int(previous), inactive)
    redis.set(live_key, found)


def _gitlab_deployment(redis: Redis, http: requests.Session, project: cfg.Project,
                       address: str, record: dict[str, Any]) -> None:
    status, state = project.status, record["state"]
    if state not in GITLAB_DEPLOYMENT_STATES:
        return  # GitLab's deployment exists from the moment it runs
    found = _text(redis.get(_record_key("id", record)))
    if found is None:
        if state in _NEVER_STARTED:
            return
        created = gitlab.create_deployment(http, status.api_url, status.token, address,
                                           environment=record["environment"],
                                           sha=record["sha"], ref=record["ref"], state=state)
        redis.set(_record_key("id", record), str(created), ex=RECORD_TTL)
    elif _text(redis.get(_record_key("state", record))) != GITLAB_DEPLOYMENT_STATES[state]:
        gitlab.update_deployment(http, status.api_url, status.token, address, int(found),
                                 state)
    redis.set(_record_key("state", record), GITLAB_DEPLOYMENT_STATES[state], ex=RECORD_TTL)


def _record_key(kind: str, record: dict[str, Any]) -> str:
    return f"conveyor:forge-deployment:{kind}:{record['project']}:{record['deployment']}"


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


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def is_newest(redis: Redis, status: dict[str, Any]) -> bool:
    """Whether no newer status of the same commit and context has been sent (and mark this
    one the newest)."""
    return bool(redis.eval(_NEWEST, 1, _seq_key(status), int(status.get("seq", 0)), SEEN_TTL))


def _still_newest(redis: Redis, status: dict[str, Any]) -> bool:
    """Whether no newer status of the same key was marked since `is_newest` passed."""
    current = _text(redis.get(_seq_key(status)))
    return current is None or int(current) <= int(status.get("seq", 0))


def _seq_key(status: dict[str, Any]) -> str:
    return f"conveyor:status:{status['project']}:{status['sha']}:{status['context']}"
