"""GitLab webhooks: the secret token, push, tag push and merge request events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.events import ZERO_SHA, Event, Ignored, PullRequest, Push
from app.hooks import payload as p

PROVIDER = "gitlab"
CREDENTIALS = "the X-Gitlab-Token secret token is missing or wrong"
MERGE_REQUEST_ACTIONS = ("open", "reopen", "update")


def read_payload(content_type: str | None, body: bytes) -> dict[str, Any]:
    """GitLab always sends JSON."""
    return p.read(content_type, body, (p.JSON,), "GitLab")


def repository(payload: dict[str, Any]) -> str | None:
    """The project's `path_with_namespace` (group/subgroup/name)."""
    return p.name(payload, "project", "path_with_namespace", what="project path")


def authentic(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """GitLab sends the secret token itself (not an HMAC): compare it in constant time."""
    return p.same(secret, headers.get("X-Gitlab-Token"))


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """`Idempotency-Key` (GitLab 17.4+, the same on every retry), else `X-Gitlab-Event-UUID`."""
    return headers.get("Idempotency-Key") or headers.get("X-Gitlab-Event-UUID") or None


def event_name(headers: Mapping[str, str]) -> str | None:
    return headers.get("X-Gitlab-Event") or None


def event(name: str, payload: dict[str, Any]) -> Event:
    """Turn a verified delivery of event `name` into a Push or PullRequest, or say why not."""
    repo = repository(payload) or ""
    if name in ("Push Hook", "Tag Push Hook"):
        return _push(repo, payload)
    if name == "Merge Request Hook":
        return _merge_request(repo, payload)
    return Ignored(repo, f"event {name!r} is not handled")


def _push(repo: str, payload: dict[str, Any]) -> Push:
    ref = p.ref(payload, "ref")
    after = p.sha(payload, "after", what="after")
    if after != ZERO_SHA and p.field(payload, "checkout_sha"):
        after = p.sha(payload, "checkout_sha", what="checkout_sha")  # a tag peeled to its commit
    commits = p.objects(payload, "commits")
    head = next((c for c in commits if c.get("id") == after), {})
    return Push(
        repository=repo, ref=ref, before=p.sha(payload, "before", what="before"), after=after,
        clone_url=p.clone_url(payload, "project", "git_http_url")
        or p.clone_url(payload, "repository", "git_http_url"),
        message=p.text(head, "message"),
        author=p.text(head, "author", "name") or p.text(payload, "user_name"),
        default_branch=p.default_branch(payload, "project", "default_branch") or None,
        forge_project=project_id(payload),
    )


def _merge_request(repo: str, payload: dict[str, Any]) -> PullRequest | Ignored:
    attributes = p.field(payload, "object_attributes")
    action = p.text(attributes, "action")
    if action not in MERGE_REQUEST_ACTIONS:
        return Ignored(repo, f"merge request action {action!r} starts no build")
    if action == "update" and not p.field(attributes, "oldrev"):
        return Ignored(repo, "merge request update without new commits")
    number = p.number(attributes, "iid", what="merge request iid")
    source = p.field(attributes, "source_project_id")
    return PullRequest(
        repository=repo, number=number, action=action,
        head_sha=p.sha(attributes, "last_commit", "id", what="the head commit"),
        head_ref=p.name(attributes, "source_branch", what="source branch"),
        base_ref=p.name(attributes, "target_branch", what="target branch"),
        from_fork=source is None or source != p.field(attributes, "target_project_id"),
        clone_url=p.clone_url(payload, "project", "git_http_url"),
        ref=f"refs/merge-requests/{number}/head",
        title=p.text(attributes, "title"), author=p.text(payload, "user", "username"),
        forge_project=project_id(payload),
    )


def project_id(payload: dict[str, Any]) -> str:
    """The project's numeric id, which GitLab's API addresses it by (SPEC §4); "" if absent."""
    value = p.field(payload, "project", "id")
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= p.MAX_NUMBER:
        return str(value)
    return ""
