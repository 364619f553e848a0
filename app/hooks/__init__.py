"""Webhook intake: one module per forge turns a request into a `Push`, a `PullRequest` or
`Ignored` (app/events.py); `routes.py` runs the request flow they share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from app.events import Event


class HookError(Exception):
    """A request the forge would never send; `status` is the HTTP answer (400, 401, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Forge(Protocol):
    """What each forge module (github, gitlab, gitea) provides to the request flow."""

    PROVIDER: str
    CREDENTIALS: str  # what a refused request lacked, for the 401 answer

    def read_payload(self, content_type: str | None, body: bytes) -> dict[str, Any]:
        """The JSON object the body carries; HookError 415 or 400 otherwise."""
        ...

    def repository(self, payload: dict[str, Any]) -> str | None:
        """The repository's name as configured in `repo`; None for a hook-level ping."""
        ...

    def authentic(self, secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether the signature or token proves the request came with `secret`."""
        ...

    def delivery_id(self, headers: Mapping[str, str]) -> str | None:
        """The forge's id of this delivery, the same when it is delivered again."""
        ...

    def event_name(self, headers: Mapping[str, str]) -> str | None:
        """The event's name as the forge's header gives it."""
        ...

    def event(self, name: str, payload: dict[str, Any]) -> Event:
        """What a verified delivery of event `name` asks for."""
        ...
