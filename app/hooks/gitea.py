"""Gitea and Forgejo webhooks: hex HMAC signature, push and pull request events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.events import Event, Ignored, PullRequest
from app.hooks import payload as p

PROVIDER = "gitea"
CREDENTIALS = "the X-Gitea-Signature (or X-Forgejo-Signature) signature is missing or wrong"
PULL_REQUEST_ACTIONS = ("opened", "synchronized", "reopened")


def read_payload(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The JSON payload of a JSON or form-encoded (`payload=`) delivery."""
    return p.read(content_type, body, (p.JSON, p.FORM), "Gitea")


def repository(payload: dict[str, Any]) -> str | None:
    return p.name(payload, "repository", "full_name", what="repository")


def authentic(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """`X-Gitea-Signature` / `X-Forgejo-Signature`: hex HMAC-SHA256 of the body, no prefix."""
    offered = headers.get("X-Forgejo-Signature") or headers.get("X-Gitea-Signature")
    if not offered:
        return False
    return p.same(p.hmac_sha256(secret, body), offered.strip().lower())


def delivery_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("X-Forgejo-Delivery") or headers.get("X-Gitea-Delivery") or None


def event_name(headers: Mapping[str, str]) -> str | None:
    return headers.get("X-Forgejo-Event") or headers.get("X-Gitea-Event") or None


def event(name: str, payload: dict[str, Any]) -> Event:
    """Turn a verified delivery of event `name` into a Push or PullRequest, or say why not."""
    repo = repository(payload) or ""
    if name == "push":
        return p.push(repo, payload)
    if name == "pull_request":
        return _pull_request(repo, payload)
    return Ignored(repo, f"event {name!r} is not handled")


def _pull_request(repo: str, payload: dict[str, Any]) -> PullRequest | Ignored:
    action = p.text(payload, "action")
    if action not in PULL_REQUEST_ACTIONS:
        return Ignored(repo, f"pull request action {action!r} starts no build")
    number = p.number(payload, "number", what="pull request number")
    head_repo = p.field(payload, "pull_request", "head", "repo_id")
    base_repo = p.field(payload, "pull_request", "base", "repo_id")
    return PullRequest(
        repository=repo, number=number, action=action,
        head_sha=p.sha(payload, "pull_request", "head", "sha", what="the head commit"),
        head_ref=p.name(payload, "pull_request", "head", "ref", what="head branch"),
        base_ref=p.name(payload, "pull_request", "base", "ref", what="base branch"),
        from_fork=head_repo is None or head_repo != base_repo,
        clone_url=p.clone_url(payload, "repository", "clone_url"), ref=f"refs/pull/{number}/head",
        title=p.text(payload, "pull_request", "title"),
        author=p.text(payload, "pull_request", "user", "login"),
    )
