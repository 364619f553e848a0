"""Every field the forge readers touch (app/hooks/github.py, gitlab.py, gitea.py and
payload.push), replaced in turn by each wrong type in a real fixture payload: the answer is
never a 5xx, a correctly signed one is 200, 202 or 400, and every delivery is recorded.

The requests are signed so that the readers past the signature check run, and the history is
emptied before each so that what a reader let through reaches the database's columns (a
commit seen before would be answered as a twin without storing anything)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.context import Context
from app.models import Delivery
from tests.support import deliveries
from tests.support.intake import (  # noqa: F401 - fixtures are found by name
    client_fixture,
    ctx_fixture,
    empty_history,
    usual_event,
)

Path_ = tuple[str | int, ...]

# The fields each reader reads, containers included (a whole `pull_request` of a wrong type).
_TAG_PUSH: list[Path_] = [
    ("ref",), ("before",), ("after",), ("head_commit",), ("head_commit", "id"),
    ("head_commit", "message"), ("head_commit", "author"), ("head_commit", "author", "name"),
    ("commits",), ("repository",), ("repository", "full_name"), ("repository", "clone_url"),
    ("repository", "default_branch"), ("repository", "master_branch")]
_PUSH = [*_TAG_PUSH, ("commits", -1), ("commits", -1, "id"), ("commits", -1, "message")]
_GITHUB_PR: list[Path_] = [
    ("action",), ("number",), ("pull_request",), ("pull_request", "head"),
    ("pull_request", "head", "repo"), ("pull_request", "head", "repo", "full_name"),
    ("pull_request", "base"), ("pull_request", "base", "repo"),
    ("pull_request", "base", "repo", "full_name"), ("pull_request", "head", "sha"),
    ("pull_request", "head", "ref"), ("pull_request", "base", "ref"),
    ("pull_request", "title"), ("pull_request", "user"), ("pull_request", "user", "login"),
    ("repository",), ("repository", "full_name"), ("repository", "clone_url")]
_GITEA_PR: list[Path_] = [
    *[path for path in _GITHUB_PR if "repo" not in path],
    ("pull_request", "head", "repo_id"), ("pull_request", "base", "repo_id")]
_GITLAB_TAG_PUSH: list[Path_] = [
    ("ref",), ("before",), ("after",), ("checkout_sha",), ("commits",), ("user_name",),
    ("project",), ("project", "path_with_namespace"), ("project", "git_http_url"),
    ("project", "default_branch"), ("repository",), ("repository", "git_http_url")]
_GITLAB_PUSH = [*_GITLAB_TAG_PUSH, ("commits", 0), ("commits", -1), ("commits", -1, "id"),
                ("commits", -1, "message"), ("commits", -1, "author"),
                ("commits", -1, "author", "name")]
_GITLAB_MR: list[Path_] = [
    ("object_attributes",), *[("object_attributes", key) for key in (
        "action", "oldrev", "iid", "source_project_id", "target_project_id", "last_commit",
        "source_branch", "target_branch", "title")],
    ("object_attributes", "last_commit", "id"), ("user",), ("user", "username"),
    ("project",), ("project", "path_with_namespace"), ("project", "git_http_url")]
FIELDS: dict[str, list[Path_]] = {
    "github/push-branch-created.json": _PUSH,
    "github/push-tag-created-docs.json": _TAG_PUSH,
    "github/pull_request-synchronize.json": _GITHUB_PR,
    "github/ping-repo.json": [("repository",), ("repository", "full_name"), ("hook_id",)],
    "github/ping-organization.json": [("repository",), ("hook_id",), ("zen",)],
    "gitlab/push-hook-docs.json": _GITLAB_PUSH,
    "gitlab/tag_push-hook-created-docs.json": _GITLAB_TAG_PUSH,
    "gitlab/merge_request-hook-open-docs.json": _GITLAB_MR,
    "gitea/push-branch-created.json": _PUSH,
    "gitea/pull-request-fork.json": _GITEA_PR,
}
WRONG: list[Any] = [
    None, -1, 10**500, 1.5, True, [], ["refs/heads/main"], {}, {"id": "x"}, "", "x" * 100_000,
    "refs/heads/a\x00b\x1b[2J\x7f", "0" * 40 + "\n"]


def replaced(payload: dict[str, Any], path: Path_, value: Any) -> dict[str, Any] | None:
    """A copy of `payload` with the field at `path` set to `value`; None when the fixture
    has no object (or list) there to hold it."""
    changed = copy.deepcopy(payload)
    holder: Any = changed
    for key in path[:-1]:
        try:
            holder = holder[key]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(holder, dict) or (isinstance(holder, list) and holder):
        holder[path[-1]] = value
        return changed
    return None


def recorded(ctx: Context) -> int:
    """How many deliveries the history holds."""
    with ctx.db.session() as session:
        return session.scalar(select(func.count()).select_from(Delivery)) or 0


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_a_wrong_type_at_any_field_the_readers_touch_is_never_a_5xx(
        client: FlaskClient, ctx: Context, redis_url: str, name: str) -> None:
    provider, event = name.split("/")[0], usual_event(name)
    payload = deliveries.fixture(name)
    send = Sender(client, ctx, redis_url, provider, event)
    assert send(payload, "baseline") in (200, 202), "the fixture itself must reach the readers"
    wrong = []
    for path in FIELDS[name]:
        assert replaced(payload, path, None) is not None, f"{path} is not in {name}"
        for number, value in enumerate(WRONG):
            answer = send(replaced(payload, path, value), f"{path}-{number}")
            if answer not in (200, 202, 400):
                wrong.append(f"{'.'.join(map(str, path))} = {value!r:.60}: {answer}")
    assert not wrong, "\n".join(wrong)


class Sender:
    """POSTs payloads signed as `provider` sends them, each onto a history where its commit
    is new; the answer's status, or what went wrong with it."""

    def __init__(self, client: FlaskClient, ctx: Context, redis_url: str, provider: str,
                 event: str) -> None:
        self.client, self.ctx, self.redis_url = client, ctx, redis_url
        self.provider, self.event = provider, event
        self.recorded = -1  # deliveries in the history, -1 when work was stored

    def __call__(self, payload: Any, delivery: str) -> int | str:
        if self.recorded < 0:  # emptying the history only after work was stored keeps it fast
            empty_history(self.ctx, self.redis_url)
            self.recorded = 0
        body = json.dumps(payload).encode()
        answer = self.client.post(f"/hooks/{self.provider}", data=body, headers=deliveries.signed(
            self.provider, body, self.event, delivery))
        self.recorded += 1
        if not answer.is_json or recorded(self.ctx) != self.recorded:
            self.recorded = -1
            return f"{answer.status_code}, not recorded: {answer.get_data(as_text=True)[:200]}"
        if answer.status_code == 202:
            self.recorded = -1
        return answer.status_code
