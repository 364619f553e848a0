"""A local stand-in for a Slack-format incoming webhook (Slack, Mattermost, Discord's /slack):
checks each request's shape as Slack would and records the messages it takes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

ATTACHMENT_FIELDS = ("color", "fallback", "title", "text")


class ChatWebhook:
    """Records messages in arrival order; a malformed one goes to `violations` (and gets
    Slack's 400 `invalid_payload`). `fail_next` answers the next requests with a code."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.requests: list[tuple[str, int]] = []  # (path, code answered)
        self._lock = threading.Lock()
        self._failures: list[tuple[int, str, dict[str, str]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.webhook = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/services/T0/B0/secret"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail_next(self, count: int = 1, code: int = 500, text: str = "server_error",
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next `count` requests with `code` and a plain-text body, as Slack does."""
        with self._lock:
            self._failures += [(code, text, headers or {})] * count

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, str, dict[str, str]]:
        """Decide the webhook's answer to one POST and record it."""
        with self._lock:
            code, text, extra = self._decide(path, headers, body)
            self.requests.append((path, code))
            return code, text, extra

    def _decide(self, path: str, headers: Any, body: bytes) -> tuple[int, str, dict[str, str]]:
        if self._failures:
            return self._failures.pop(0)
        problem = shape_problem(headers.get("Content-Type") or "", body)
        if problem:
            self.violations.append(f"{path}: {problem}")
            return 400, "invalid_payload", {}
        self.messages.append(json.loads(body))
        return 200, "ok", {}


def shape_problem(content_type: str, body: bytes) -> str | None:
    """What Slack, Mattermost or Discord would not render in this body, or None."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        return f"Content-Type {content_type!r}"
    try:
        message = json.loads(body)
    except ValueError:
        return "not JSON"
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return "no `text` string"
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "no `attachments` list"
    for attachment in attachments:
        if not isinstance(attachment, dict):
            return "an attachment is not an object"
        missing = [f for f in ATTACHMENT_FIELDS if not isinstance(attachment.get(f), str)]
        if missing:
            return f"an attachment lacks {missing}"
    if "blocks" in message:
        return "`blocks` (Mattermost and Discord do not render them)"
    return None


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        webhook: ChatWebhook = self.server.webhook  # type: ignore[attr-defined]
        code, text, extra = webhook.answer(self.path, self.headers, body)
        payload = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(name="chat_webhook")
def chat_webhook_fixture() -> Iterator[ChatWebhook]:
    """A stand-in chat webhook, stopped after the test."""
    webhook = ChatWebhook()
    yield webhook
    webhook.stop()
