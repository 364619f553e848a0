"""Conveyor's web process: `create_app()` wires settings, database, queues and blueprints."""

from __future__ import annotations

from flask import Flask, jsonify
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from app.context import Context, load
from app.settings import Settings
from app.web import MaskedJSONProvider

# GitHub caps payloads at 25 MB; a little room for form encoding's overhead.
MAX_BODY = 25 * 1024 * 1024 + 64 * 1024


def create_app(settings: Settings | None = None, context: Context | None = None) -> Flask:
    """The Flask application gunicorn serves (`app:create_app()`)."""
    from app import api, health
    from app.hooks import routes as hooks

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json = MaskedJSONProvider(app)
    app.extensions["conveyor"] = context or load(settings)
    app.register_blueprint(hooks.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(health.blueprint)
    _register_errors(app)
    return app


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        return jsonify(error=exc.name, detail=exc.description), exc.code

    @app.errorhandler(RedisError)
    @app.errorhandler(OperationalError)
    def unavailable(exc: Exception):  # type: ignore[no-untyped-def]
        app.logger.error("a backing service is unreachable: %s", type(exc).__name__)
        # The forge shows a failed delivery, which can be redelivered once we are back.
        return jsonify(error="service unavailable",
                       detail="Redis or the database cannot be reached; redeliver later"), 503
