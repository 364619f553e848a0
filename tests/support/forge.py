"""A local stand-in for GitHub's commit-status API that checks every request against the spec."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema

OPENAPI = Path(__file__).parents[1] / "fixtures/api/github-statuses-openapi-excerpt.json"
STATUS_PATH = re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/statuses/(?P<sha>.+)")
SHA = re.compile(r"[0-9a-f]{40}")
MAX_DESCRIPTION = 140  # observed API rule, not in the OpenAPI text (see github-statuses.md)
DOCS = "https://docs.github.com/rest/commits/statuses#create-a-commit-status"

Answer = tuple[int, dict[str, Any], dict[str, str]]
Predicate = Callable[[list[dict[str, Any]]], object]


def request_schema(operation_id: str) -> dict[str, Any]:
    """The JSON request-body schema of an operation in the OpenAPI excerpt, nullable resolved."""
    spec = json.loads(OPENAPI.read_text())
    for item in spec["paths"].values():
        for operation in item.values():
            if operation.get("operationId") == operation_id:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                return _allow_null(body)
    raise KeyError(operation_id)


def _allow_null(schema: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` becomes JSON Schema's `"type": [T, "null"]`."""
    if isinstance(schema, list):
        return [_allow_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _allow_null(v) for k, v in schema.items() if not (k == "nullable" and v in (1, 0))}
    if schema.get("nullable") is True and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


class GitHubForge:
    """Records statuses in arrival order; anything GitHub would refuse goes to `violations`."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.statuses: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.requests: list[dict[str, Any]] = []  # every request: method, path, code, at
        self._validator = jsonschema.Draft4Validator(request_schema("repos/create-commit-status"))
        self._changed = threading.Condition()
        self._failures: list[tuple[int, dict[str, str]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.forge = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail_next(
        self, count: int = 1, code: int = 502, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next `count` status requests with `code` (e.g. 429 and Retry-After)."""
        with self._changed:
            self._failures += [(code, headers or {})] * count

    def wait_for(self, predicate: Predicate, timeout: float = 30) -> list[dict[str, Any]]:
        """Block until predicate(statuses) holds; fail at once on a new violation."""
        with self._changed:
            seen = len(self.violations)
            self._changed.wait_for(
                lambda: len(self.violations) > seen or predicate(list(self.statuses)), timeout
            )
            if len(self.violations) > seen or not predicate(list(self.statuses)):
                statuses = json.dumps(self.statuses, indent=1)
                raise AssertionError(f"statuses: {statuses}\nviolations: {self.violations}")
            return list(self.statuses)

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        """Decide GitHub's answer to one request and record it."""
        with self._changed:
            code, payload, extra = self._decide(method, path.split("?", 1)[0], headers, body)
            self.requests.append(
                {"method": method, "path": path, "code": code, "at": time.monotonic()}
            )
            self._changed.notify_all()
        return code, payload, extra

    def _decide(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        route = STATUS_PATH.fullmatch(path)
        if method != "POST" or route is None:
            return self._refuse(404, f"{method} {path}: no such route", "Not Found")
        if not headers.get("User-Agent"):
            return self._refuse(403, f"{path}: no User-Agent header", "User-Agent required")
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or token != self.token:
            return 401, {"message": "Bad credentials", "documentation_url": DOCS}, {}
        if self._failures:
            code, extra = self._failures.pop(0)
            return code, {"message": "injected failure"}, extra
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return self._refuse(415, f"{path}: Content-Type {content_type!r}", "Unsupported")
        try:
            status = json.loads(body)
        except ValueError:
            return self._refuse(400, f"{path}: body is not JSON", "Problems parsing JSON")
        errors = [
            _error(".".join(map(str, e.path)) or "body", "invalid", e.message)
            for e in self._validator.iter_errors(status)
        ]
        if isinstance(status, dict) and len(status.get("description") or "") > MAX_DESCRIPTION:
            too_long = f"description is too long (maximum is {MAX_DESCRIPTION} characters)"
            errors.append(_error("description", "custom", too_long))
        if not SHA.fullmatch(route["sha"]):
            errors.append(_error("sha", "invalid", f"No commit found for SHA: {route['sha']}"))
        if errors:
            self.violations += [f"{path}: {e['field']}: {e['message']}" for e in errors]
            return 422, {"message": "Validation Failed", "errors": errors}, {}
        return self._record(route, status)

    def _refuse(self, code: int, violation: str, message: str) -> Answer:
        self.violations.append(violation)
        return code, {"message": message, "documentation_url": DOCS}, {}

    def _record(self, route: re.Match[str], status: dict[str, Any]) -> Answer:
        owner, repo, sha = route["owner"], route["repo"], route["sha"]
        recorded = {
            "repo": f"{owner}/{repo}",
            "sha": sha,
            "state": status["state"],
            "context": status.get("context", "default"),
            "description": status.get("description"),
            "target_url": status.get("target_url"),
        }
        self.statuses.append(recorded)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        location = f"{self.url}/repos/{owner}/{repo}/statuses/{sha}"
        payload = {"id": len(self.statuses), "url": location, **recorded}
        del payload["repo"], payload["sha"]
        payload |= {"created_at": now, "updated_at": now}
        return 201, payload, {"Location": location}


def _error(field: str, code: str, message: str) -> dict[str, str]:
    return {"resource": "Status", "field": field, "code": code, "message": message}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        forge: GitHubForge = self.server.forge  # type: ignore[attr-defined]
        code, payload, extra = forge.answer(self.command, self.path, self.headers, body)
        data = json.dumps(payload).encode()
        self.send_response(code)
        for name, value in {"Content-Type": "application/json; charset=utf-8", **extra}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: every request is in GitHubForge.requests."""


def start_github_forge(token: str) -> GitHubForge:
    """Serve the stand-in on a free port of 127.0.0.1; its `.url` is the API root."""
    return GitHubForge(token)


GITLAB_DOC = Path(__file__).parents[1] / "fixtures/api/gitlab-statuses.md"
GITLAB_PATH = re.compile(r"/projects/(?P<project>[^/]+)/statuses/(?P<sha>[^/]+)")


def gitlab_status_rules() -> tuple[set[str], set[str], dict[str, int]]:
    """(attributes, states, 255-character limits) of `POST /projects/:id/statuses/:sha`, read
    from the attribute table of GitLab's documentation (tests/fixtures/api/gitlab-statuses.md)."""
    attributes, states, limits = set(), set(), {}
    for line in GITLAB_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z_]+)`", cells[0])
        attributes.update(names)
        if names == ["state"]:
            states.update(re.findall(r"`([a-z]+)`", cells[3]))
        if "255 characters or fewer" in cells[3]:
            limits.update(dict.fromkeys(names, 255))
    return attributes - {"id", "sha"}, states, limits


class GitLabForge(GitHubForge):
    """GitLab's commit-status API: `PRIVATE-TOKEN`, the project by URL-encoded path, its
    documented attributes, and its refusal (400) to set a status to the state it has."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.attributes, self.states, self.limits = gitlab_status_rules()
        self._current: dict[tuple[str, str, str], str] = {}

    def _decide(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        route = GITLAB_PATH.fullmatch(path)
        if method != "POST" or route is None:
            return self._refuse(404, f"{method} {path}: no such route", "404 Not Found")
        if headers.get("PRIVATE-TOKEN") != self.token:
            return 401, {"message": "401 Unauthorized"}, {}
        if self._failures:
            code, extra = self._failures.pop(0)
            return code, {"message": "injected failure"}, extra
        try:
            status = json.loads(body)
        except ValueError:
            return self._refuse(400, f"{path}: body is not JSON", "400 Bad request")
        problems = [f"unknown attribute {k!r}" for k in status if k not in self.attributes]
        if status.get("state") not in self.states:
            problems.append(f"state {status.get('state')!r} is not one of {sorted(self.states)}")
        problems += [f"{k} is longer than {n}" for k, n in self.limits.items()
                     if len(str(status.get(k) or "")) > n]
        if not SHA.fullmatch(route["sha"]):
            problems.append(f"no commit {route['sha']}")
        if problems:
            self.violations += [f"{path}: {p}" for p in problems]
            return 400, {"message": problems}, {}
        key = (route["project"], route["sha"], status.get("name") or "default")
        if self._current.get(key) == status["state"]:  # GitLab refuses a repeated state
            refusal = f"Cannot transition status via :run from :{status['state']}"
            return 400, {"message": refusal}, {}
        self._current[key] = status["state"]
        self.statuses.append({"repo": route["project"], "sha": route["sha"],
                              "state": status["state"], "context": key[2],
                              "description": status.get("description"),
                              "target_url": status.get("target_url")})
        return 201, {"id": len(self.statuses), "status": status["state"], "name": key[2]}, {}
