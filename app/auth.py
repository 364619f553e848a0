"""Who is asking: the API tokens and their names (SPEC §2). The API, the dashboard and the
audit log all ask here, so that a token is checked one way everywhere."""

from __future__ import annotations

import hmac

from app.settings import ADMIN, Settings

__all__ = ["ADMIN", "bearer", "enabled", "identify"]


def enabled(settings: Settings) -> bool:
    """Whether any API token is set (without one the API and dashboard answer 503)."""
    return bool(settings.api_tokens)


def identify(settings: Settings, offered: str | None) -> str | None:
    """The name of the token `offered`, or None. Every token is compared, in constant time,
    so that the answer's timing tells nothing about which one nearly matched."""
    if not offered:
        return None
    found = None
    for name, token in settings.api_tokens:
        if hmac.compare_digest(offered.encode(), token.encode()):
            found = found or name
    return found


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (header or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
