"""The `conveyor` command's HTTP client to the API (SPEC §4), so that the verbs that read or
act work from a laptop as well as on the server: `CONVEYOR_URL` (default
http://127.0.0.1:8000) and `CONVEYOR_API_TOKEN`. Whatever goes wrong is a `CommandError`
with one sentence: 2 when the URL or token is wrong, 1 when the operation failed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from app.cli.output import CommandError, sentence

DEFAULT_URL = "http://127.0.0.1:8000"
# How a 404 that names nothing in particular begins: Flask's own, and the API's "no route".
GENERIC_404 = ("The requested URL was not found", "no API route", "Not Found", "not_found")
TIMEOUT = (10.0, 60.0)  # connect, read: longer than the log stream's 15 s heartbeat


@dataclass(frozen=True)
class Event:
    """One Server-Sent Events message: its name (`line`, `end`) and its decoded data."""

    name: str
    data: Any


@dataclass(frozen=True)
class Client:
    """The API of one Conveyor, with one bearer token."""

    url: str
    token: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Client:
        """The API named by `CONVEYOR_URL` and `CONVEYOR_API_TOKEN` (exit 2 when unusable)."""
        env = os.environ if environ is None else environ
        url = (env.get("CONVEYOR_URL") or DEFAULT_URL).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(2, f"CONVEYOR_URL must be an http:// or https:// URL, not"
                                  f" {url!r}")
        token = (env.get("CONVEYOR_API_TOKEN") or "").strip()
        if not token:
            raise CommandError(2, f"set CONVEYOR_API_TOKEN to an API token of the Conveyor at"
                                  f" {url}")
        return cls(url, token)

    def get(self, path: str, params: Mapping[str, Any] | None = None, *,
            missing: str | None = None) -> Any:
        """GET `path` (under /api) and return its JSON; `missing` is the sentence for a 404."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self._answer(self._send("GET", path, params=query), missing)

    def post(self, path: str, body: Mapping[str, Any] | None = None, *,
             missing: str | None = None) -> Any:
        """POST a JSON body to `path` (under /api) and return the answer's JSON."""
        return self._answer(self._send("POST", path, json=dict(body or {})), missing)

    def events(self, path: str, *, missing: str | None = None,
               after: int = 0) -> Iterator[Event]:
        """Follow `path` as Server-Sent Events (`Accept: text/event-stream`) until the
        server ends the stream; heartbeats (comments) are skipped."""
        headers = {"Accept": "text/event-stream"}
        if after:
            headers["Last-Event-ID"] = str(after)
        response = self._send("GET", path, headers=headers, stream=True)
        with response:
            if response.status_code >= 400:
                self._answer(response, missing)
            try:
                yield from parse_events(response.iter_lines(decode_unicode=True))
            except requests.RequestException as exc:
                raise CommandError(1, f"the connection to {self.url} broke while following"
                                      f" {path}: {type(exc).__name__}") from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        try:
            return requests.request(method, f"{self.url}/api{path}", headers=headers,
                                    timeout=TIMEOUT, allow_redirects=False, **kwargs)
        except requests.ConnectionError as exc:
            raise CommandError(1, f"cannot reach Conveyor at {self.url} (is the web process"
                                  " running? CONVEYOR_URL says where it is)") from exc
        except requests.Timeout as exc:
            raise CommandError(1, f"Conveyor at {self.url} did not answer in time") from exc
        except requests.RequestException as exc:
            raise CommandError(1, f"cannot talk to Conveyor at {self.url}:"
                                  f" {type(exc).__name__}") from exc

    def _answer(self, response: requests.Response, missing: str | None) -> Any:
        status = response.status_code
        if status < 300:
            try:
                return response.json()
            except ValueError:
                raise CommandError(1, f"Conveyor at {self.url} answered {status} with"
                                      " something other than JSON") from None
        raise CommandError(*refusal(status, _json_or_none(response), self.url, missing))


def refusal(status: int, body: Any, url: str, missing: str | None = None) -> tuple[int, str]:
    """(exit status, sentence) for an API answer of `status` with JSON `body` (or None)."""
    error = body.get("error") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else None
    said = sentence(detail if isinstance(detail, str) and detail else error or "")
    if status == 401:
        return 2, f"Conveyor at {url} refused the token: CONVEYOR_API_TOKEN is not one of its" \
                  " API tokens"
    if status == 404 and missing is not None and _unspecific(body):
        return 1, missing
    if status == 503 and "not enabled" in f"{error} {detail}":
        return 2, f"the API of Conveyor at {url} is not enabled: set CONVEYOR_API_TOKEN for" \
                  " its web process"
    if status == 400:
        return 2, said or f"Conveyor at {url} refused the request (400)"
    if status >= 500:
        return 1, f"Conveyor at {url} failed ({status}){': ' + said if said else ''}"
    return 1, said or f"Conveyor at {url} answered {status}"


def _unspecific(body: Any) -> bool:
    """Whether a 404's body says no more than "not found" (no route, or Flask's own page),
    rather than a sentence of the API's such as "there is no environment 'qa'"."""
    if not isinstance(body, dict):
        return True
    error, detail = body.get("error"), body.get("detail")
    said = detail if isinstance(detail, str) and detail else error
    return not isinstance(said, str) or said.startswith(GENERIC_404)


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events from a stream's lines: `event:` and `data:` fields up to a blank
    line make one event; comments (heartbeats) and ids are skipped."""
    name, data = "message", []
    for line in lines:
        if line == "":
            if data:
                text = "\n".join(data)
                try:
                    decoded = json.loads(text)
                except ValueError:
                    decoded = text
                yield Event(name, decoded)
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
