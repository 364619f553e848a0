"""What the intake robustness tests share: a pipeline file with a project for every forge
fixture they send (most with `paths:`, so that a push's base branch is stored too), the event
each fixture is delivered as, and an empty history per request."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import delete

from app import create_app
from app.context import Context
from app.models import Base
from tests.support import conveyor
from tests.support.services import reset_redis

_ENV = "hosts: [local], path: /srv/app"
CONFIG = f"""\
projects:
  hello:
    provider: github
    repo: Codertocat/Hello-World
    webhook_secret: ${{WEBHOOK_SECRET}}
    pull_requests: build_forks
    paths: [src]
    build: {{artifact: dist}}
    environments: {{staging: {{branches: ["*"], tags: ["*"], {_ENV}}}}}
  octocoders:
    provider: github
    repo: Octocoders/Hello-World
    webhook_secret: ${{WEBHOOK_SECRET}}
    build: {{artifact: dist}}
    environments: {{staging: {{branches: ["*"], {_ENV}}}}}
  diaspora:
    provider: gitlab
    repo: mike/diaspora
    webhook_secret: ${{WEBHOOK_SECRET}}
    paths: [src]
    build: {{artifact: dist}}
    environments: {{staging: {{branches: ["*"], {_ENV}}}}}
  example-gitlab:
    provider: gitlab
    repo: jsmith/example
    webhook_secret: ${{WEBHOOK_SECRET}}
    build: {{artifact: dist}}
    environments: {{staging: {{tags: ["*"], {_ENV}}}}}
  gitlab-test:
    provider: gitlab
    repo: gitlabhq/gitlab-test
    webhook_secret: ${{WEBHOOK_SECRET}}
    pull_requests: build_forks
    paths: [src]
    build: {{artifact: dist}}
    environments: {{staging: {{branches: ["*"], {_ENV}}}}}
  example:
    provider: gitea
    repo: example/example
    webhook_secret: ${{WEBHOOK_SECRET}}
    pull_requests: build_forks
    paths: [src]
    build: {{artifact: dist}}
    environments: {{staging: {{branches: ["*"], {_ENV}}}}}
"""

# The event header each kind of fixture comes with, by the start of its file name.
_EVENTS = {"push-": {"github": "push", "gitlab": "Push Hook", "gitea": "push"},
           "tag_push-": {"gitlab": "Tag Push Hook"},
           "pull": {"github": "pull_request", "gitea": "pull_request"},
           "merge": {"gitlab": "Merge Request Hook"}, "ping": {"github": "ping"}}


def usual_event(name: str) -> str:
    """The event a forge names when it sends fixture `name` (`github/push-....json`)."""
    provider, file = name.split("/")
    return next(events[provider] for prefix, events in _EVENTS.items()
                if file.startswith(prefix) and provider in events)


def empty_history(ctx: Context, redis_url: str) -> None:
    """No deliveries, builds or deployments recorded and nothing queued: each request then
    goes all the way (a new commit is stored, not found as a twin of an earlier one)."""
    with ctx.db.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    reset_redis(redis_url)


@pytest.fixture(name="ctx")
def ctx_fixture(tmp_path: Path, database_url: str, redis_url: str,
                redis_db: redis.Redis) -> Context:
    """A context over CONFIG, the test's database and an empty Redis database."""
    return conveyor.context(tmp_path, database_url, redis_url, CONFIG)


@pytest.fixture(name="client")
def client_fixture(ctx: Context) -> FlaskClient:
    """The app over `ctx`, to send deliveries to."""
    return create_app(context=ctx).test_client()
