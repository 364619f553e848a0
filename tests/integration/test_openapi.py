"""`GET /api/openapi.json` is a valid OpenAPI 3.1 document, true to the code: every registered
`/api` route with its methods and query parameters, and real answers (over SQLite and
PostgreSQL) match the schemas it documents for their status."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from app import create_app
from app.context import Context
from app.models import DeploymentHost
from tests.support import conveyor
from tests.support.history import PIPELINE, SHA, add_build, add_deployment

SCHEMA = Path(__file__).parents[1] / "fixtures" / "openapi" / "oas-3.1-schema-2022-10-07.json"
CONFIG = PIPELINE
AUTH = {"Authorization": f"Bearer {conveyor.API_TOKEN}"}
_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
_ANY = re.compile(r"<any\(([^)]*)\):[a-z_]+>")


@pytest.fixture(name="app")
def app_fixture(tmp_path: Path, database_url: str, redis_url: str,
                redis_db: redis.Redis) -> Flask:
    return create_app(context=conveyor.context(tmp_path, database_url, redis_url, CONFIG))


@pytest.fixture(name="document")
def document_fixture(app: Flask) -> dict[str, Any]:
    answer = app.test_client().get("/api/openapi.json", headers=AUTH)
    assert answer.status_code == 200
    return answer.json


def routes(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every registered /api route."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api"):
            continue
        choices = _ANY.search(rule.rule)
        paths = ([_ANY.sub(choice.strip(), rule.rule) for choice in choices.group(1).split(",")]
                 if choices else [rule.rule])
        for path in paths:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                found.add((_CONVERTER.sub(r"{\1}", path), method.lower()))
    return found


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["$id"] == "https://spec.openapis.org/oas/3.1/schema/2022-10-07"
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in Draft202012Validator(schema).iter_errors(document)]
    assert errors == []
    assert document["openapi"].startswith("3.1.")
    for component in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(component)  # each schema is itself valid


def test_a_broken_document_is_refused_by_the_vendored_schema(document: dict[str, Any]) -> None:
    """The check above can fail: the schema refuses what OpenAPI 3.1 forbids."""
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert not validator.is_valid({**document, "openapi": "3.0.3"})
    broken = json.loads(json.dumps(document))
    broken["paths"]["/api/builds"]["get"]["responses"]["200"].pop("description")
    assert not validator.is_valid(broken)


def test_every_api_route_is_documented_and_nothing_else(app: Flask,
                                                        document: dict[str, Any]) -> None:
    documented = {(path, method) for path, item in document["paths"].items()
                  for method in item}
    assert routes(app) == documented


def test_each_routes_query_parameters_are_the_ones_it_accepts(
        app: Flask, document: dict[str, Any]) -> None:
    adapter = app.url_map.bind("localhost")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            concrete = re.sub(r"\{[a-z_]+\}", lambda m: "1" if "id" in m.group(0) else "x",
                              path)
            endpoint, _ = adapter.match(concrete, method=method.upper())
            view = app.view_functions[endpoint]
            documented = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
            assert documented == set(view.query_params), path
            in_path = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert in_path == set(re.findall(r"\{([a-z_]+)\}", path)), path


def check(document: dict[str, Any], client: FlaskClient, method: str, url: str,
          template: str, **kwargs: Any) -> Any:
    """Send a request; its answer must match the schema documented for its status."""
    answer = getattr(client, method)(url, headers=AUTH, **kwargs)
    responses = document["paths"][template][method]["responses"]
    documented = responses.get(str(answer.status_code))
    assert documented is not None, f"{method} {url}: {answer.status_code} is not documented"
    if "$ref" in documented:
        documented = document["components"]["responses"][documented["$ref"].split("/")[-1]]
    schema = documented["content"]["application/json"]["schema"]
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(
        {**schema, "components": document["components"]}).iter_errors(answer.json)]
    assert errors == [], f"{method} {url}"
    return answer


def test_real_answers_match_their_documented_schemas(app: Flask, document: dict[str, Any],
                                                     ctx_of_app: Context) -> None:
    ctx = ctx_of_app
    client = app.test_client()
    build_id = add_build(ctx)
    done = add_deployment(ctx, build_id, release_id="r-1")
    parked = add_deployment(ctx, build_id, "production", "awaiting_approval", kind="promotion")
    with ctx.db.session() as session:
        session.add(DeploymentHost(deployment_id=done, host="local", state="succeeded",
                                   step="done", release="r-1", timings={"connect": 0.1}))
    for url, template in (
            ("/api/projects", "/api/projects"), ("/api/deliveries", "/api/deliveries"),
            ("/api/builds?limit=1", "/api/builds"), (f"/api/builds/{build_id}",
                                                     "/api/builds/{build_id}"),
            (f"/api/builds/{build_id}/log", "/api/builds/{build_id}/log"),
            ("/api/deployments", "/api/deployments"),
            (f"/api/deployments/{done}", "/api/deployments/{deployment_id}"),
            (f"/api/deployments/{done}/log", "/api/deployments/{deployment_id}/log"),
            ("/api/dora?days=7", "/api/dora"), ("/api/builds/404", "/api/builds/{build_id}"),
            ("/api/builds?limit=0", "/api/builds"), ("/api/builds?nope=1", "/api/builds")):
        assert check(document, client, "get", url, template).status_code < 500
    approved = check(document, client, "post", f"/api/deployments/{parked}/approve",
                     "/api/deployments/{deployment_id}/approve")
    assert approved.status_code == 202
    check(document, client, "post", f"/api/deployments/{parked}/approve",
          "/api/deployments/{deployment_id}/approve")  # 409 now
    deployed = check(document, client, "post", "/api/projects/shop/environments/staging/deploy",
                     "/api/projects/{project}/environments/{environment}/deploy",
                     json={"sha": SHA})
    assert deployed.status_code == 202
    check(document, client, "post", "/api/projects/shop/environments/staging/rollback",
          "/api/projects/{project}/environments/{environment}/rollback")
    audit = check(document, client, "get", "/api/audit", "/api/audit")
    assert [e["action"] for e in audit.json["audit"]] == ["deploy", "approve"]


@pytest.fixture(name="ctx_of_app")
def ctx_of_app_fixture(app: Flask) -> Context:
    return app.extensions["conveyor"]
