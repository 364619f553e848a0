"""Conveyor's Flask app served by a real HTTP server (werkzeug's, threaded) in the test's
process, for the `conveyor` command's API verbs; and a stand-in for the two routes being
written alongside (`GET /api/projects`, `GET /api/dora`), answered from the test's data
with the real token check, while every other route is the real app's."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from werkzeug.serving import make_server

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Environ = dict[str, Any]


class StandIn:
    """WSGI: `answers` (path -> JSON) for GET with the right bearer token, the app for the
    rest. `seen` records each stand-in request's path and query string."""

    def __init__(self, app: Flask, token: str, answers: dict[str, Any]) -> None:
        self.app, self.token, self.answers = app, token, answers
        self.seen: list[tuple[str, str]] = []

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in self.answers or environ.get("REQUEST_METHOD") != "GET":
            return self.app(environ, start_response)
        self.seen.append((path, environ.get("QUERY_STRING", "")))
        if environ.get("HTTP_AUTHORIZATION") != f"Bearer {self.token}":
            return _json(start_response, "401 UNAUTHORIZED", {"error": "unauthorized"})
        return _json(start_response, "200 OK", self.answers[path])


def _json(start_response: StartResponse, status: str, data: Any) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve the WSGI `app` on a free loopback port; yield its base URL; stop after."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
