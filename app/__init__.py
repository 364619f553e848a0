"""Conveyor's web process: `create_app()` wires settings, database, queues and blueprints."""

from __future__ import annotations

from contextlib import suppress

from flask import Flask, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from app.context import Context, load
from app.db import SchemaTooNew
from app.settings import Settings
from app.web import MaskedJSONProvider

# GitHub caps payloads at 25 MB; a little room for form encoding's overhead.
MAX_BODY = 25 * 1024 * 1024 + 64 * 1024
# Routes that answer without the database: /readyz reports on the schema itself.
WITHOUT_DATABASE = frozenset({"health"})


def create_app(settings: Settings | None = None, context: Context | None = None) -> Flask:
    """The Flask application gunicorn serves (`app:create_app()`)."""
    from app import api, health, ui
    from app.hooks import routes as hooks

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json = MaskedJSONProvider(app)
    ctx = context or load(settings)
    app.extensions["conveyor"] = ctx
    _bring_schema_up_at_start(app, ctx)
    app.before_request(lambda: _schema_before_request(ctx))
    app.register_blueprint(hooks.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(health.blueprint)
    ui.init_app(app, ctx.settings)
    _register_errors(app)
    return app


def _bring_schema_up_at_start(app: Flask, ctx: Context) -> None:
    """Migrate a new or older database now; when that cannot be done, start anyway so that
    /healthz and /readyz answer, and try again on the requests that need the database."""
    try:
        ctx.db.migrate()
    except SchemaTooNew as exc:
        app.logger.error("%s", exc)
    except OperationalError as exc:
        app.logger.error("the database cannot be reached, will retry: %s", exc.orig)


def _schema_before_request(ctx: Context) -> None:
    """Until the schema is known to be up to date, try again; after that a flag check.
    A newer schema ends the request (503); an unreachable database does not, since a
    refusal (401) needs no database and a route that does use it answers 503 itself."""
    if request.blueprint in WITHOUT_DATABASE:
        return
    with suppress(OperationalError):
        ctx.db.migrate()


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        from app import api

        if api.is_api(request.path):  # the API's errors name the status in snake case
            return api.http_error(exc)
        return jsonify(error=exc.name, detail=exc.description), exc.code

    # The forge shows a failed delivery, which can be redelivered once we are back.
    @app.errorhandler(RedisError)
    def redis_unavailable(exc: RedisError):  # type: ignore[no-untyped-def]
        app.logger.error("Redis cannot be reached: %s", type(exc).__name__)
        return _unavailable("Redis cannot be reached; redeliver later")

    @app.errorhandler(OperationalError)
    def database_unavailable(exc: OperationalError):  # type: ignore[no-untyped-def]
        app.logger.error("the database cannot be reached: %s", type(exc.orig).__name__)
        return _unavailable("the database cannot be reached; redeliver later")

    @app.errorhandler(SchemaTooNew)
    def schema_too_new(exc: SchemaTooNew):  # type: ignore[no-untyped-def]
        app.logger.error("%s", exc)
        return _unavailable(str(exc))


def _unavailable(detail: str):  # type: ignore[no-untyped-def]
    error = "service_unavailable" if request.path.startswith("/api/") else "service unavailable"
    return jsonify(error=error, detail=detail), 503
