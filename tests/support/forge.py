"""Local stand-ins for GitHub's and GitLab's commit-status and deployments APIs that check every
request against the forge's documented schema."""

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
DEPLOYMENTS_PATH = re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments")
DEPLOYMENT_STATUS_PATH = re.compile(
    r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments/(?P<id>[0-9]+)/statuses")
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
        # Deployments created, and every deployment status (with its deployment's id).
        self.deployments: list[dict[str, Any]] = []
        self.deployment_statuses: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.requests: list[dict[str, Any]] = []  # every request: method, path, code, at
        self._validator = jsonschema.Draft4Validator(request_schema("repos/create-commit-status"))
        self._validators = {
            name: jsonschema.Draft4Validator(request_schema(f"repos/{name}"))
            for name in ("create-deployment", "create-deployment-status")}
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

    def wait_for(self, predicate: Predicate, timeout: float = 30,
                 of: str = "statuses") -> list[dict[str, Any]]:
        """Block until predicate(<the records named `of`>) holds: `statuses` (commit
        statuses) or `deployment_statuses`; fail at once on a new violation."""
        with self._changed:
            seen = len(self.violations)
            self._changed.wait_for(
                lambda: len(self.violations) > seen or predicate(list(getattr(self, of))),
                timeout)
            if len(self.violations) > seen or not predicate(list(getattr(self, of))):
                records = json.dumps(getattr(self, of), indent=1)
                raise AssertionError(f"{of}: {records}\nviolations: {self.violations}")
            return list(getattr(self, of))

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
        routes = ((STATUS_PATH, None), (DEPLOYMENT_STATUS_PATH, "create-deployment-status"),
                  (DEPLOYMENTS_PATH, "create-deployment"))
        found = next(((m, op) for pattern, op in routes if (m := pattern.fullmatch(path))),
                     None)
        if method != "POST" or found is None:
            return self._refuse(404, f"{method} {path}: no such route", "Not Found")
        route, operation = found
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
        validator = self._validators[operation] if operation else self._validator
        errors = [
            _error(".".join(map(str, e.path)) or "body", "invalid", e.message)
            for e in validator.iter_errors(status)
        ]
        if isinstance(status, dict) and len(status.get("description") or "") > MAX_DESCRIPTION:
            too_long = f"description is too long (maximum is {MAX_DESCRIPTION} characters)"
            errors.append(_error("description", "custom", too_long))
        if operation is None and not SHA.fullmatch(route["sha"]):
            errors.append(_error("sha", "invalid", f"No commit found for SHA: {route['sha']}"))
        if operation == "create-deployment-status" and not (
                0 < int(route["id"]) <= len(self.deployments)):
            return self._refuse(404, f"{path}: no deployment {route['id']}", "Not Found")
        if errors:
            self.violations += [f"{path}: {e['field']}: {e['message']}" for e in errors]
            return 422, {"message": "Validation Failed", "errors": errors}, {}
        if operation == "create-deployment":
            return self._record_deployment(route, status)
        if operation == "create-deployment-status":
            return self._record_deployment_status(route, status)
        return self._record(route, status)

    def _record_deployment(self, route: re.Match[str], body: dict[str, Any]) -> Answer:
        deployment = {"id": len(self.deployments) + 1, "repo": f"{route['owner']}/{route['repo']}",
                      **body}
        self.deployments.append(deployment)
        return 201, {**deployment, "sha": body["ref"], "created_at": _now()}, {}

    def _record_deployment_status(self, route: re.Match[str], body: dict[str, Any]) -> Answer:
        recorded = {"deployment": int(route["id"]), **body}
        self.deployment_statuses.append(recorded)
        return 201, {"id": len(self.deployment_statuses), **recorded, "created_at": _now()}, {}

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
        now = _now()
        location = f"{self.url}/repos/{owner}/{repo}/statuses/{sha}"
        payload = {"id": len(self.statuses), "url": location, **recorded}
        del payload["repo"], payload["sha"]
        payload |= {"created_at": now, "updated_at": now}
        return 201, payload, {"Location": location}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
GITLAB_DEPLOYMENTS_DOC = Path(__file__).parents[1] / "fixtures/api/gitlab-deployments.md"
GITLAB_DEPLOYMENTS = re.compile(r"/projects/(?P<project>[^/]+)/deployments(/(?P<id>[0-9]+))?")


def gitlab_deployment_rules() -> dict[str, tuple[set[str], set[str]]]:
    """Per operation ("create", "update"): (required body attributes, allowed `status`
    values), read from the attribute tables of tests/fixtures/api/gitlab-deployments.md."""
    rules: dict[str, tuple[set[str], set[str]]] = {}
    section = ""
    for line in GITLAB_DEPLOYMENTS_DOC.read_text().splitlines():
        if line.startswith("## "):
            section = line.removeprefix("## ").split()[0].lower()
            rules[section] = (set(), set())
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if section not in rules or len(cells) != 4 or not cells[0].startswith("`"):
            continue
        name = cells[0].strip("`")
        if cells[2] == "yes" and name not in ("id", "deployment_id"):
            rules[section][0].add(name)
        if name == "status":
            rules[section][1].update(re.findall(r"`([a-z]+)`", cells[3]))
    return rules


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
        self.deployment_rules = gitlab_deployment_rules()
        self._current: dict[tuple[str, str, str], str] = {}

    def _decide(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        route = GITLAB_PATH.fullmatch(path)
        deployments = GITLAB_DEPLOYMENTS.fullmatch(path)
        operation = {("POST", False): "create", ("PUT", True): "update"}.get(
            (method, bool(deployments and deployments["id"])))
        if not ((method == "POST" and route) or (deployments and operation)):
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
        if deployments and operation:
            return self._deployment(deployments, operation, status)
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

    def _deployment(self, route: re.Match[str], operation: str, body: Any) -> Answer:
        required, statuses = self.deployment_rules[operation]
        known = required | {"status"}
        problems = [f"{k} is missing" for k in sorted(required) if k not in body]
        problems += [f"unknown attribute {k!r}" for k in body if k not in known]
        if body.get("status") not in statuses:
            problems.append(f"status {body.get('status')!r} is not one of {sorted(statuses)}")
        if operation == "create" and not SHA.fullmatch(str(body.get("sha"))):
            problems.append(f"no commit {body.get('sha')}")
        if operation == "update" and not 0 < int(route["id"]) <= len(self.deployments):
            return self._refuse(404, f"deployment {route['id']}: none", "404 Not found")
        if problems:
            self.violations += [f"deployments ({operation}): {p}" for p in problems]
            return 400, {"message": problems}, {}
        if operation == "create":
            self.deployments.append({"id": len(self.deployments) + 1,
                                     "repo": route["project"], **body})
            deployment_id = len(self.deployments)
        else:
            deployment_id = int(route["id"])
        self.deployment_statuses.append({"deployment": deployment_id, "state": body["status"]})
        return 201 if operation == "create" else 200, {
            "id": deployment_id, "status": body["status"],
            "environment": {"name": self.deployments[deployment_id - 1]["environment"]}}, {}
