"""The dashboard (SPEC §4): server-rendered pages, a little plain JavaScript, no build step.
`init_app` registers it; the routes are in `views.py`."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from markupsafe import Markup

from app.pipeline.rules import mask
from app.settings import Settings
from app.ui import format as fmt
from app.ui.signin import csrf_token, secret_key

SESSION_DAYS = 7


def init_app(app: Flask, settings: Settings) -> None:
    """Register the dashboard on `app`: its blueprint, the session's key and cookie, and
    the templates' helpers (every value a template writes is masked)."""
    from app.ui.views import blueprint

    app.secret_key = secret_key(settings)
    app.config.update(SESSION_COOKIE_NAME="conveyor_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax",
                      PERMANENT_SESSION_LIFETIME=timedelta(days=SESSION_DAYS))
    app.jinja_options = {**app.jinja_options, "finalize": _masking(app)}
    app.jinja_env.globals.update(csrf_token=csrf_token, fmt=fmt)
    app.register_blueprint(blueprint)


def _masking(app: Flask):  # type: ignore[no-untyped-def]
    """Jinja's `finalize`: each value a template writes, with every secret masked."""
    def finalize(value: object) -> object:
        if not isinstance(value, str):
            return value
        masked = mask(value, app.extensions["conveyor"].secrets())
        # Markup here is the templates' own HTML; replacing a secret by *** keeps it safe.
        return Markup(masked) if isinstance(value, Markup) else masked  # noqa: S704
    return finalize
