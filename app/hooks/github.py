"""GitHub (and GitHub Enterprise Server) webhooks: signature, body formats and events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.events import Event, Ignored, PullRequest
from app.hooks import payload as p

PROVIDER = "github"
CREDENTIALS = "the X-Hub-Signature-256 signature is missing or wrong"
PULL_REQUEST_ACTIONS = ("opened", "synchronize", "reopened")


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `X-Hub-Signature-256` is `sha256=` + HMAC-SHA256 of the raw body (constant time)."""
    if not header or not header.startswith("sha256="):
        return False
    offered = header.removeprefix("sha256=").strip().lower()
    return p.same(p.hmac_sha256(secret, body), offered)


def read_payload(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The JSON payload of a JSON or form-encoded (`payload=`) delivery."""
    return p.read(content_type, body, (p.JSON, p.FORM), "GitHub")


def repository(payload: dict[str, Any]) -> str | None:
    """The repository's `full_name`; None for an organization or app hook's ping."""
    if p.field(payload, "repository") is None and "hook_id" in payload and "zen" in payload:
        return None
    return p.name(payload, "repository", "full_name", what="repository")


def authentic(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    return signature_valid(secret, body, headers.get("X-Hub-Signature-256"))


def delivery_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("X-GitHub-Delivery") or None


def event_name(headers: Mapping[str, str]) -> str | None:
    return headers.get("X-GitHub-Event") or None


def event(name: str, payload: dict[str, Any]) -> Event:
    """Turn a verified delivery of event `name` into a Push or PullRequest, or say why not."""
    repo = repository(payload) or ""
    if name == "ping":
        return Ignored(repo, "ping")
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
    head_repo = p.text(payload, "pull_request", "head", "repo", "full_name")
    base_repo = p.text(payload, "pull_request", "base", "repo", "full_name") or repo
    return PullRequest(
        repository=repo, number=number, action=action,
        head_sha=p.sha(payload, "pull_request", "head", "sha", what="the head commit"),
        head_ref=p.name(payload, "pull_request", "head", "ref", what="head branch"),
        base_ref=p.name(payload, "pull_request", "base", "ref", what="base branch"),
        from_fork=head_repo.lower() != base_repo.lower(),  # no head repo: the fork is gone
        clone_url=p.clone_url(payload, "repository", "clone_url"), ref=f"refs/pull/{number}/head",
        title=p.text(payload, "pull_request", "title"),
        author=p.text(payload, "pull_request", "user", "login"),
    )
