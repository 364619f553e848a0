"""Who is signed in to the dashboard, and the forms' CSRF tokens.

A session (Flask's signed cookie) holds the name of the API token that signed in and a
fingerprint of that token: a token that is changed or removed ends its sessions at the next
request. The session is signed with `CONVEYOR_SECRET_KEY`, or by default with a key derived
from every API token (HMAC), the same in every gunicorn worker and across restarts."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import abort, request, session

from app import auth
from app.settings import Settings

_PURPOSE = b"conveyor dashboard sessions"
CSRF_FIELD = "csrf_token"


def secret_key(settings: Settings) -> str:
    """The key that signs sessions: CONVEYOR_SECRET_KEY, else HMAC of all the API tokens
    (holding every token is needed to derive it), else random (no token: no dashboard)."""
    if settings.secret_key:
        return settings.secret_key
    if settings.api_tokens:
        material = "\n".join(f"{name}:{token}" for name, token in sorted(settings.api_tokens))
        return hmac.new(material.encode(), _PURPOSE, hashlib.sha256).hexdigest()
    return secrets.token_hex(32)


def sign_in(settings: Settings, offered: str | None) -> str | None:
    """Start a session for the token `offered`; its name, or None when no token matches."""
    who = auth.identify(settings, (offered or "").strip())
    if who is None:
        return None
    session.clear()
    session.permanent = True
    session["who"] = who
    session["token"] = _fingerprint(settings, who)
    session[CSRF_FIELD] = secrets.token_urlsafe(32)  # a new one at each sign-in
    return who


def sign_out() -> None:
    """End the session."""
    session.clear()


def signed_in(settings: Settings) -> str | None:
    """The name of who is signed in, while that token still exists unchanged."""
    who, seen = session.get("who"), session.get("token")
    if not isinstance(who, str) or not isinstance(seen, str):
        return None
    current = _fingerprint(settings, who)
    return who if current and hmac.compare_digest(seen, current) else None


def csrf_token() -> str:
    """This session's CSRF token (made when first needed), for a form's hidden field."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Refuse (400) a form whose CSRF token is missing or not this session's."""
    expected = session.get(CSRF_FIELD)
    offered = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(offered.encode(),
                                                               expected.encode()):
        abort(400, "the form's CSRF token is missing or has expired: reload the page and "
                   "try again")


def _fingerprint(settings: Settings, who: str) -> str | None:
    token = next((t for name, t in settings.api_tokens if name == who), None)
    if token is None:
        return None
    return hmac.new(token.encode(), _PURPOSE, hashlib.sha256).hexdigest()[:32]
