"""Webhook intake: one module per forge turns a request into a `Push` (or `Ignored`)."""

from __future__ import annotations


class HookError(Exception):
    """A request the forge would never send; `status` is the HTTP answer (400, 401, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
