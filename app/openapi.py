"""The API's OpenAPI 3.1 document (`GET /api/openapi.json`), written next to the code it
describes: tests check it against every registered `/api` route, each route's query
parameters, and real answers."""

from __future__ import annotations

from typing import Any

from app.dora import DEFAULT_DAYS, MAX_DAYS
from app.queries import DEFAULT_LIMIT, MAX_LIMIT

VERSION = "1"
Schema = dict[str, Any]


def document() -> dict[str, Any]:
    """The whole document, as a JSON-ready dict."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Conveyor API", "version": VERSION,
                 "description": "Self-hosted continuous delivery: builds, deployments, "
                                "operations, the audit log and DORA figures. Lists are "
                                "newest first; pass a page's `next` as `cursor` for the "
                                "next page."},
        "servers": [{"url": "/"}],
        "security": [{"token": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"token": {
                "type": "http", "scheme": "bearer",
                "description": "CONVEYOR_API_TOKEN (named `admin`) or a token of "
                               "CONVEYOR_API_TOKENS; its name is who acts in the audit log"}},
            "schemas": SCHEMAS,
            "responses": {name: _error_response(text) for name, text in ERRORS.items()},
        },
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **more: Any) -> Schema:
    return {"type": [kind, "null"], **more}


TIME = _nullable("string", format="date-time")
STRING = {"type": "string"}
INT = {"type": "integer"}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object", "required": ["error", "detail"],
        "properties": {"error": {"type": "string", "examples": ["not_found"],
                                 "description": "the HTTP status's name in snake case"},
                       "detail": {"type": ["string", "null"],
                                  "description": "one sentence saying what is wrong"}}},
    "Delivery": {
        "type": "object",
        "required": ["id", "provider", "delivery", "event", "status_code", "received_at"],
        "properties": {
            "id": INT, "provider": {"enum": ["github", "gitlab", "gitea"]},
            "delivery": {**STRING, "description": "the forge's delivery id"},
            "event": STRING, "project": _nullable("string"),
            "repository": _nullable("string"), "ref": _nullable("string"),
            "sha": _nullable("string"), "status_code": INT, "reason": _nullable("string"),
            "answer": {"type": "object"}, "done": {"type": "boolean"},
            "received_at": TIME, "duration_ms": INT}},
    "Build": {
        "type": "object", "required": ["id", "project", "sha", "ref", "state"],
        "properties": {
            "id": INT, "project": STRING, "sha": STRING, "ref": STRING,
            "state": {"enum": ["queued", "running", "succeeded", "failed", "canceled",
                               "skipped"]},
            "attempt": INT, "error": _nullable("string"),
            "artifact": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["sha256", "size"],
                "properties": {"sha256": STRING, "size": _nullable("integer")}}]},
            "committed_at": {**TIME, "description": "the commit's committer time"},
            "created_at": TIME, "started_at": TIME, "finished_at": TIME}},
    "Host": {
        "type": "object", "required": ["host", "state"],
        "properties": {
            "host": STRING, "state": STRING, "step": _nullable("string"),
            "previous_release": _nullable("string"), "release": _nullable("string"),
            "uploaded": _nullable("boolean"), "error": _nullable("string"),
            "timings": {"type": "object", "additionalProperties": {"type": "number"}},
            "started_at": TIME, "finished_at": TIME}},
    "AuditEntry": {
        "type": "object",
        "required": ["id", "at", "by", "action", "project", "environment", "deployment"],
        "properties": {
            "id": INT, "at": TIME, "by": {**STRING, "description": "the token's name"},
            "action": {"enum": ["deploy", "approve", "cancel", "retry", "rollback"]},
            "project": STRING, "environment": STRING, "deployment": _nullable("integer"),
            "detail": _nullable("string")}},
    "Deployment": {
        "type": "object",
        "required": ["id", "project", "environment", "sha", "ref", "state", "kind", "build"],
        "properties": {
            "id": INT, "project": STRING, "environment": STRING, "sha": STRING, "ref": STRING,
            "state": {"enum": ["queued", "awaiting_approval", "running", "succeeded",
                               "failed", "error", "canceled", "superseded", "skipped"]},
            "kind": {"enum": ["deploy", "promotion", "rollback", "retry"]},
            "build": INT, "release": _nullable("string"), "error": _nullable("string"),
            "source": _nullable("integer"), "requested_by": _nullable("string"),
            "approved_by": _nullable("string"), "approved_at": TIME, "created_at": TIME,
            "started_at": TIME, "finished_at": TIME,
            "hosts": {"type": "array", "items": _ref("Host"),
                      "description": "only on a single deployment"},
            "audit": {"type": "array", "items": _ref("AuditEntry"),
                      "description": "only on a single deployment"}}},
    "Project": {
        "type": "object", "required": ["name", "provider", "repo", "environments"],
        "properties": {
            "name": STRING, "provider": STRING, "repo": STRING,
            "environments": {"type": "array", "items": {
                "type": "object", "required": ["name", "hosts"],
                "properties": {
                    "name": STRING, "approval": {"enum": ["auto", "manual"]},
                    "promote_from": _nullable("string"), "url": _nullable("string"),
                    "hosts": {"type": "array", "items": {
                        "type": "object", "required": ["host", "release", "since"],
                        "properties": {
                            "host": STRING, "release": _nullable("string"),
                            "sha": _nullable("string"), "since": TIME,
                            "deployment": _nullable("integer")}}}}}}}},
    "LogLine": {"type": "object", "required": ["id", "at", "text"],
                "properties": {"id": INT, "at": TIME, "text": STRING}},
    "Dora": {
        "type": "object",
        "required": ["project", "environment", "days", "deployments", "deployment_frequency",
                     "lead_time_seconds", "change_failure_rate", "time_to_restore_seconds"],
        "properties": {
            "project": STRING, "environment": STRING, "days": INT,
            "deployments": {**INT, "description": "changes that succeeded (not rollbacks)"},
            "deployment_frequency": {"type": "number", "description": "deployments per day"},
            "lead_time_seconds": {"type": ["number", "null"], "description":
                                  "median, commit time to live on this environment"},
            "changes": {**INT, "description": "deployments other than rollbacks that "
                                              "succeeded or failed"},
            "failed_changes": {**INT, "description": "changes that failed or were rolled back"},
            "change_failure_rate": {"type": ["number", "null"]},
            "restores": INT,
            "time_to_restore_seconds": {"type": ["number", "null"], "description":
                                        "median, a failure's end to the next success"}}},
}

ERRORS = {"BadRequest": "a parameter or body the API cannot use",
          "Unauthorized": "the token is missing or wrong",
          "NotFound": "no such deployment, build, project or environment",
          "Conflict": "not in a state that allows it",
          "Unavailable": "the API has no token set, or Redis or the database is down"}


def _error_response(description: str) -> Schema:
    return {"description": description,
            "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(description: str, schema: Schema, status: str = "200") -> dict[str, Schema]:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": schema}}}}


def _list_of(name: str, item: str) -> Schema:
    return {"type": "object", "required": [name, "next"],
            "properties": {name: {"type": "array", "items": _ref(item)},
                           "next": {"type": ["string", "null"], "description":
                                    "the cursor of the next page; null on the last"}}}


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or STRING}


def _path(name: str, kind: str = "string") -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


PAGED = [_query("limit", f"page size, 1 to {MAX_LIMIT}",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                 "default": DEFAULT_LIMIT}),
         _query("cursor", "the `next` of the previous page")]
AFTER = [_query("after", "only lines after this line id (or send Last-Event-ID)",
                {"type": "integer"})]


def _operation(summary: str, responses: dict[str, Schema], parameters: list[Schema],
               *, errors: tuple[str, ...] = (), body: Schema | None = None) -> Schema:
    answers = dict(responses)
    for code, name in (("400", "BadRequest"), ("401", "Unauthorized"),
                       ("503", "Unavailable")):
        answers[code] = {"$ref": f"#/components/responses/{name}"}
    for code in errors:
        name = {"404": "NotFound", "409": "Conflict"}[code]
        answers[code] = {"$ref": f"#/components/responses/{name}"}
    operation: Schema = {"summary": summary, "parameters": parameters, "responses": answers}
    if body is not None:
        operation["requestBody"] = {"required": False,
                                    "content": {"application/json": {"schema": body}}}
    return operation


def _log(kind: str) -> Schema:
    return _operation(
        f"The {kind}'s log; `Accept: text/event-stream` follows it live",
        {"200": {"description": "the lines so far, or a stream of `line` events ended by "
                                "an `end` event",
                 "content": {"application/json": {"schema": {
                     "type": "object", "required": ["lines"],
                     "properties": {"lines": {"type": "array", "items": _ref("LogLine")}}}},
                     "text/event-stream": {"schema": STRING}}}},
        [_path(f"{kind}_id", "integer"), *AFTER], errors=("404",))


def _paths() -> dict[str, Schema]:
    deployment = _ok("the deployment, with its hosts and audit entries", _ref("Deployment"))
    accepted = _ok("the deployment it made or changed", _ref("Deployment"), "202")
    where = [_path("project"), _path("environment")]
    return {
        "/api/projects": {"get": _operation(
            "Projects, environments, the release live on each host and since when",
            _ok("every configured project", {
                "type": "object", "required": ["projects"],
                "properties": {"projects": {"type": "array", "items": _ref("Project")}}}),
            [])},
        "/api/deliveries": {"get": _operation(
            "Every delivery received, refused ones too, newest first",
            _ok("a page of deliveries", _list_of("deliveries", "Delivery")),
            [_query("project", "only this project's"), _query("provider", "only this forge's"),
             *PAGED])},
        "/api/builds": {"get": _operation(
            "Builds, newest first", _ok("a page of builds", _list_of("builds", "Build")),
            [_query("project", "only this project's"), _query("state", "only in this state"),
             _query("sha", "only of this commit"), *PAGED])},
        "/api/builds/{build_id}": {"get": _operation(
            "One build", _ok("the build", _ref("Build")), [_path("build_id", "integer")],
            errors=("404",))},
        "/api/builds/{build_id}/log": {"get": _log("build")},
        "/api/deployments": {"get": _operation(
            "Deployments, newest first",
            _ok("a page of deployments", _list_of("deployments", "Deployment")),
            [_query("project", "only this project's"),
             _query("environment", "only this environment's"),
             _query("state", "only in this state"), *PAGED])},
        "/api/deployments/{deployment_id}": {"get": _operation(
            "One deployment: hosts and their steps, and its audit entries", deployment,
            [_path("deployment_id", "integer")], errors=("404",))},
        "/api/deployments/{deployment_id}/log": {"get": _log("deployment")},
        **{f"/api/deployments/{{deployment_id}}/{action}": {"post": _operation(
            summary, accepted, [_path("deployment_id", "integer")], errors=("404", "409"))}
           for action, summary in (
               ("approve", "Let a deployment awaiting approval go on"),
               ("cancel", "Cancel a waiting deployment, or stop a running one at its next "
                          "safe point"),
               ("retry", "Run a failed deployment again for the hosts that did not reach "
                         "its release"))},
        "/api/projects/{project}/environments/{environment}/deploy": {"post": _operation(
            "Deploy a commit by hand: its sha, or the commit last pushed to a ref", accepted,
            where, errors=("404", "409"), body={
                "type": "object", "properties": {
                    "sha": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
                    "ref": {"type": "string", "description": "branch, tag or full ref"}}})},
        "/api/projects/{project}/environments/{environment}/rollback": {"post": _operation(
            "Roll back to the last good release before the live one, or to `release`",
            accepted, where, errors=("404", "409"), body={
                "type": "object", "properties": {"release": {"type": "string"}}})},
        "/api/audit": {"get": _operation(
            "Who approved, canceled, retried, rolled back or deployed by hand, newest first",
            _ok("a page of audit entries", _list_of("audit", "AuditEntry")),
            [_query("project", "only this project's"),
             _query("environment", "only this environment's"), *PAGED])},
        "/api/dora": {"get": _operation(
            "DORA's four keys per project and environment", _ok("the figures", {
                "type": "object", "required": ["days", "since", "until", "environments"],
                "properties": {"days": INT, "since": TIME, "until": TIME,
                               "environments": {"type": "array", "items": _ref("Dora")}}}),
            [_query("project", "only this project"),
             _query("environment", "only this environment"),
             _query("days", "the window, in days up to now",
                    {"type": "integer", "minimum": 1, "maximum": MAX_DAYS,
                     "default": DEFAULT_DAYS})],
            errors=("404",))},
        "/api/openapi.json": {"get": _operation(
            "This document", {"200": {"description": "the OpenAPI 3.1 document",
                                      "content": {"application/json": {
                                          "schema": {"type": "object"}}}}}, [])},
    }
