"""Every forge payload in tests/fixtures through the real app, with the right, a wrong and no
credentials: the answer SPEC §4 gives it, the work it queues, and its record."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from app import create_app, pipeline
from app.context import Context
from app.models import Base, Build, Delivery, Deployment
from tests.support import conveyor, deliveries
from tests.support.services import postgres_database

ENV = "hosts: [deploy@127.0.0.1], path: /srv/app"
CONFIG = f"""\
projects:
  hello:
    provider: github
    repo: Codertocat/Hello-World
    webhook_secret: ${{WEBHOOK_SECRET}}
    pull_requests: build
    build: {{artifact: dist}}
    environments:
      staging: {{branches: [master], {ENV}}}
      production: {{tags: ["simple-*"], {ENV}}}
  octocoders:
    provider: github
    repo: Octocoders/Hello-World
    webhook_secret: ${{WEBHOOK_SECRET}}
    build: {{artifact: dist}}
    environments: {{staging: {{branches: [master], {ENV}}}}}
  sample:
    provider: github
    repo: binkkatal/sample_app
    webhook_secret: ${{WEBHOOK_SECRET}}
    build: {{artifact: dist}}
    environments: {{staging: {{branches: [master], {ENV}}}}}
  diaspora:
    provider: gitlab
    repo: mike/diaspora
    webhook_secret: ${{WEBHOOK_SECRET}}
    build: {{artifact: dist}}
    environments: {{staging: {{branches: [master], {ENV}}}}}
  example-gitlab:
    provider: gitlab
    repo: jsmith/example
    webhook_secret: ${{WEBHOOK_SECRET}}
    build: {{artifact: dist}}
    environments: {{production: {{tags: ["v*"], {ENV}}}}}
  gitlab-test:
    provider: gitlab
    repo: gitlabhq/gitlab-test
    webhook_secret: ${{WEBHOOK_SECRET}}
    pull_requests: build
    build: {{artifact: dist}}
    environments: {{staging: {{branches: [master], {ENV}}}}}
  deployment-webhooks:
    provider: gitlab
    repo: root/test-deployment-webhooks
    webhook_secret: ${{WEBHOOK_SECRET}}
    build: {{artifact: dist}}
    environments: {{staging: {{branches: [master], {ENV}}}}}
  example-gitea:
    provider: gitea
    repo: example/example
    webhook_secret: ${{WEBHOOK_SECRET}}
    pull_requests: build
    build: {{artifact: dist}}
    environments: {{staging: {{branches: [master], {ENV}}}}}
  webhooks:
    provider: gitea
    repo: gitea/webhooks
    webhook_secret: ${{WEBHOOK_SECRET}}
    build: {{artifact: dist}}
    environments: {{staging: {{branches: [master, develop], {ENV}}}}}
"""

UNHANDLED = "event {!r} is not handled"
# (fixture, event header, answer): ("queued", deployments) or ("ignored", reason).
CASES = [
    ("github/create-tag.json", "create", ("ignored", UNHANDLED.format("create"))),
    ("github/delete-tag.json", "delete", ("ignored", UNHANDLED.format("delete"))),
    ("github/deployment-created.json", "deployment", ("ignored", UNHANDLED.format("deployment"))),
    ("github/deployment_status-created.json", "deployment_status",
     ("ignored", UNHANDLED.format("deployment_status"))),
    ("github/ping-app.json", "ping", ("ignored", "ping")),
    ("github/ping-organization.json", "ping", ("ignored", "ping")),
    ("github/ping-repo.json", "ping", ("ignored", "ping")),
    ("github/pull_request-closed.json", "pull_request",
     ("ignored", "pull request action 'closed' starts no build")),
    ("github/pull_request-opened.json", "pull_request", ("queued", 0)),
    ("github/pull_request-reopened.json", "pull_request", ("queued", 0)),
    ("github/pull_request-synchronize.json", "pull_request", ("queued", 0)),
    ("github/push-branch-created-no-username-committer.json", "push", ("queued", 1)),
    ("github/push-branch-created.json", "push", ("queued", 1)),
    ("github/push-branch-updated.json", "push", ("queued", 1)),
    ("github/push-tag-created-docs.json", "push", ("queued", 1)),
    ("github/push-tag-created-ghes35.json", "push", ("queued", 1)),
    ("github/push-tag-deleted-with-installation.json", "push",
     ("ignored", "refs/tags/simple-tag was deleted")),
    ("github/push-tag-deleted-with-organization.json", "push",
     ("ignored", "refs/tags/simple-tag was deleted")),
    ("github/push-tag-deleted.json", "push", ("ignored", "refs/tags/simple-tag was deleted")),
    ("github/status-default.json", "status", ("ignored", UNHANDLED.format("status"))),
    ("gitlab/push-hook-docs.json", "Push Hook", ("queued", 1)),
    ("gitlab/tag_push-hook-created-docs.json", "Tag Push Hook", ("queued", 1)),
    ("gitlab/merge_request-hook-open-docs.json", "Merge Request Hook", ("queued", 0)),
    ("gitlab/merge_request-hook-go-playground.json", "Merge Request Hook", ("queued", 0)),
    ("gitlab/deployment-hook-docs.json", "Deployment Hook",
     ("ignored", UNHANDLED.format("Deployment Hook"))),
    ("gitea/push-docs.json", "push", ("queued", 1)),
    ("gitea/push-branch-created.json", "push", ("queued", 1)),
    ("gitea/create-branch.json", "create", ("ignored", UNHANDLED.format("create"))),
    ("gitea/delete-branch.json", "delete", ("ignored", UNHANDLED.format("delete"))),
    ("gitea/pull-request-fork.json", "pull_request",
     ("ignored", "pull request #2 comes from a fork (pull_requests: build_forks builds those)")),
]


def test_every_fixture_has_a_case() -> None:
    stored = {f"{path.parent.name}/{path.name}" for provider in ("github", "gitlab", "gitea")
              for path in (deliveries.FIXTURES / provider).glob("*.json")}
    assert stored == {name for name, _event, _answer in CASES}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_ctx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               redis_url: str) -> Iterator[Context]:
    """One app per database for all cases (each case empties the tables first)."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        yield conveyor.context(tmp_path, f"sqlite:///{tmp_path / 'conveyor.db'}", redis_url,
                               CONFIG)
        return
    with postgres_database() as url:
        ctx = conveyor.context(tmp_path, url, redis_url, CONFIG)
        yield ctx
        ctx.db.dispose()


@pytest.fixture
def client(shared_ctx: Context, redis_db: redis.Redis) -> FlaskClient:
    with shared_ctx.db.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    return create_app(context=shared_ctx).test_client()


@pytest.mark.parametrize("credentials", ["right", "wrong", "missing"])
@pytest.mark.parametrize(("name", "event", "expected"), CASES,
                         ids=[name for name, _event, _answer in CASES])
def test_fixture_gets_the_answer_the_spec_gives_it(
        client: FlaskClient, shared_ctx: Context, redis_db: redis.Redis, name: str,
        event: str, expected: tuple[str, object], credentials: str) -> None:
    provider = name.split("/")[0]
    body = deliveries.fixture_bytes(name)
    secret = {"right": conveyor.SECRET, "wrong": "not-the-secret", "missing": None}[credentials]
    answer = client.post(f"/hooks/{provider}", data=body,
                         headers=deliveries.signed(provider, body, event, "id-1", secret))
    with shared_ctx.db.session() as session:
        record = session.scalars(select(Delivery)).one()
        builds = session.scalars(select(Build)).all()
        deployments = session.scalars(select(Deployment)).all()
    assert (record.provider, record.delivery_id, record.status_code) == (
        provider, "id-1", answer.status_code)
    if credentials != "right":
        assert answer.status_code == 401 and not record.done
        assert (builds, deployments, redis_db.keys("rq:*")) == ([], [], [])
        return
    kind, detail = expected
    assert record.done and record.answer == answer.json
    if kind == "ignored":
        assert (answer.status_code, answer.json) == (200, {"delivery": "id-1", "ignored": detail})
        assert (builds, deployments, redis_db.keys("rq:*")) == ([], [], [])
        return
    assert answer.status_code == 202
    assert answer.json == {"delivery": "id-1", "builds": [builds[0].id],
                           "deployments": [d.id for d in deployments]}
    assert len(deployments) == detail and builds[0].sha == record.sha
    assert deliveries.run_dispatch_jobs(shared_ctx, redis_db) == [f"dispatch-{builds[0].id}-1"]
    if provider == "gitlab":  # SPEC §4: GitLab's API is sent the payload's numeric project id
        project = shared_ctx.config.projects[builds[0].project]
        expected_id = str(json.loads(body)["project"]["id"])
        assert pipeline.forge_project(shared_ctx, project) == expected_id
    queued = redis_db.lrange("rq:queue:builds", 0, -1)
    assert queued == [f"build-{builds[0].id}-1".encode()]
