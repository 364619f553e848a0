"""GitHub (and GitHub Enterprise) webhooks: signature, body formats and events."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import parse_qs

from app.hooks import HookError
from app.hooks.events import Ignored, Push

PROVIDER = "github"
_SHA = re.compile(r"^[0-9a-f]{40}$")


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `X-Hub-Signature-256` is `sha256=` + HMAC-SHA256 of the raw body (constant time)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


def read_payload(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The JSON payload of a JSON or form-encoded (`payload=`) delivery."""
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype == "application/json":
        text = body
    elif mimetype == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8", "replace")).get("payload")
        if not values:
            raise HookError(400, "a form-encoded delivery must carry a payload= field")
        text = values[0].encode()
    else:
        raise HookError(415, f"GitHub sends application/json or form data, not {mimetype!r}")
    try:
        payload = json.loads(text)
    except ValueError:
        raise HookError(400, "the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise HookError(400, "the payload must be a JSON object")
    return payload


def repository(payload: dict[str, Any]) -> str:
    """The repository's `full_name` (owner/name)."""
    name = (payload.get("repository") or {}).get("full_name")
    if not isinstance(name, str) or not name:
        raise HookError(400, "the payload has no repository.full_name")
    return name


def event(name: str, payload: dict[str, Any]) -> Push | Ignored:
    """Turn a verified delivery of event `name` into a Push, or say why it is ignored."""
    repo = repository(payload)
    if name == "ping":
        return Ignored(repo, "ping")
    if name != "push":
        return Ignored(repo, f"event {name!r} is not handled")
    return _push(repo, payload)


def _push(repo: str, payload: dict[str, Any]) -> Push:
    fields = {key: payload.get(key) for key in ("ref", "before", "after")}
    for key, value in fields.items():
        if not isinstance(value, str) or not value:
            raise HookError(400, f"a push payload needs {key!r}")
    if not _SHA.match(fields["after"]) or not _SHA.match(fields["before"]):
        raise HookError(400, "before and after must be 40-character hexadecimal commit ids")
    head = payload.get("head_commit") or {}
    clone_url = (payload.get("repository") or {}).get("clone_url") or ""
    return Push(
        repository=repo,
        ref=fields["ref"],
        before=fields["before"],
        after=fields["after"],
        clone_url=clone_url if isinstance(clone_url, str) else "",
        message=str(head.get("message") or ""),
        author=str((head.get("author") or {}).get("name") or ""),
    )
