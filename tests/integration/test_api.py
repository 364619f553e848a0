"""The JSON API over real Redis and a real database (SQLite and PostgreSQL): every route,
pagination, errors in the API's words, the audit log of each operation, and DORA."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from app import create_app, pipeline
from app.context import Context
from app.models import Build, Delivery, DeploymentHost, HostRelease, Release
from tests.support import conveyor
from tests.support.history import PIPELINE, SHA, add_build, add_deployment

CONFIG = PIPELINE
TOKENS = {"CONVEYOR_API_TOKENS": "alice:alice-token-123,ci:ci-token-12345"}
ALICE = {"Authorization": "Bearer alice-token-123"}
CI = {"Authorization": "Bearer ci-token-12345"}
ADMIN = {"Authorization": f"Bearer {conveyor.API_TOKEN}"}
NOW = datetime.now(UTC)


@pytest.fixture(name="ctx")
def ctx_fixture(tmp_path: Path, database_url: str, redis_url: str,
                redis_db: redis.Redis) -> Iterator[Context]:
    yield conveyor.context(tmp_path, database_url, redis_url, CONFIG, TOKENS)


@pytest.fixture(name="client")
def client_fixture(ctx: Context) -> FlaskClient:
    return create_app(context=ctx).test_client()


def test_every_read_route_needs_a_token_and_names_the_error(client: FlaskClient) -> None:
    for path in ("/api/projects", "/api/builds", "/api/audit", "/api/dora",
                 "/api/openapi.json", "/api/deployments/1", "/api/deliveries",
                 "/api/no-such-route"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert answer.json["error"] == "unauthorized"
        assert answer.json["detail"]
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.delete("/api/projects").status_code == 401  # no route's method, no token


def test_errors_inside_the_api_are_json_with_the_status_name(client: FlaskClient) -> None:
    missing = client.get("/api/nothing-here", headers=ADMIN)
    assert (missing.status_code, missing.json["error"]) == (404, "not_found")
    assert "/api/nothing-here" in missing.json["detail"]
    wrong_method = client.delete("/api/projects", headers=ADMIN)
    assert (wrong_method.status_code, wrong_method.json["error"]) == (405,
                                                                      "method_not_allowed")
    assert "GET" in wrong_method.headers["Allow"]
    no_build = client.get("/api/builds/99", headers=ADMIN)
    assert no_build.status_code == 404
    assert no_build.json == {"error": "not_found", "detail": "there is no build 99"}
    no_deployment = client.post("/api/deployments/99/approve", headers=ADMIN)
    assert no_deployment.status_code == 404
    assert no_deployment.json == {"error": "not_found", "detail": "there is no deployment 99"}
    not_json = client.post("/api/projects/shop/environments/staging/rollback", headers=ADMIN,
                           data="[1]", content_type="application/json")
    assert (not_json.status_code, not_json.json["error"]) == (400, "bad_request")
    # Outside /api the forge-facing answers are as they were.
    assert client.get("/hooks/nothing").status_code == 404


def test_a_disabled_api_answers_503_in_its_words(tmp_path: Path, database_url: str,
                                                 redis_url: str, redis_db: redis.Redis) -> None:
    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG,
                           {"CONVEYOR_API_TOKEN": ""})
    answer = create_app(context=ctx).test_client().get("/api/projects")
    assert (answer.status_code, answer.json["error"]) == (503, "service_unavailable")
    assert "CONVEYOR_API_TOKEN" in answer.json["detail"]


def test_unknown_query_parameters_and_bad_limits_are_refused(client: FlaskClient) -> None:
    for path in ("/api/builds?projet=shop", "/api/deployments?stat=failed",
                 "/api/audit?limit=5&foo=1", "/api/projects?x=1", "/api/dora?day=3",
                 "/api/deliveries?projects=shop"):
        answer = client.get(path, headers=ADMIN)
        assert answer.status_code == 400, path
        assert answer.json["error"] == "bad_request" and "unknown query parameter" in \
            answer.json["detail"]
    for limit in ("0", "501", "-1", "ten", "1.5"):
        answer = client.get(f"/api/builds?limit={limit}", headers=ADMIN)
        assert answer.status_code == 400, limit
        assert "1 to 500" in answer.json["detail"]
    assert client.get("/api/builds?limit=500", headers=ADMIN).status_code == 200
    assert client.get("/api/builds?cursor=abc", headers=ADMIN).status_code == 400
    assert client.get("/api/dora?days=0", headers=ADMIN).status_code == 400
    assert client.get("/api/dora?project=nope", headers=ADMIN).status_code == 404
    assert client.get("/api/dora?environment=nope", headers=ADMIN).status_code == 404


def test_lists_are_paged_by_cursor_newest_first(ctx: Context, client: FlaskClient) -> None:
    built = [add_build(ctx, sha=f"{n:040x}") for n in range(1, 8)]
    deployed = [add_deployment(ctx, build_id) for build_id in built]
    with ctx.db.session() as session:
        for n in range(5):
            session.add(Delivery(provider="github", delivery_id=f"d-{n}", event="push",
                                 project="shop", status_code=202))
    for path, name, ids in (("/api/builds", "builds", built),
                            ("/api/deployments", "deployments", deployed)):
        seen, cursor, pages = [], None, 0
        while True:
            query = "?limit=3&project=shop" + (f"&cursor={cursor}" if cursor else "")
            answer = client.get(path + query, headers=ADMIN)
            assert answer.status_code == 200
            seen += [item["id"] for item in answer.json[name]]
            cursor, pages = answer.json["next"], pages + 1
            if cursor is None:
                break
        assert (seen, pages) == (sorted(ids, reverse=True), 3)
    whole = client.get("/api/builds", headers=ADMIN).json
    assert len(whole["builds"]) == 7 and whole["next"] is None
    exact = client.get("/api/deliveries?limit=5", headers=ADMIN).json
    assert [d["delivery"] for d in exact["deliveries"]] == [f"d-{n}" for n in range(4, -1, -1)]
    assert exact["next"] is None  # five of five: no empty page after it
    first = client.get("/api/deliveries?limit=2&provider=github", headers=ADMIN).json
    rest = client.get(f"/api/deliveries?limit=2&cursor={first['next']}", headers=ADMIN).json
    assert [d["delivery"] for d in rest["deliveries"]] == ["d-2", "d-1"]
    assert client.get("/api/builds?state=failed", headers=ADMIN).json["builds"] == []
    one = client.get(f"/api/builds?sha={1:040x}", headers=ADMIN).json["builds"]
    assert [b["id"] for b in one] == [built[0]]


def test_projects_show_the_release_live_on_each_host_since_when(
        ctx: Context, client: FlaskClient) -> None:
    build_id = add_build(ctx)
    deployment_id = add_deployment(ctx, build_id, release_id="20261205T100000Z-aaaaaaa")
    live_at = NOW - timedelta(hours=2)
    with ctx.db.session() as session:
        session.add(Release(project="shop", environment="staging",
                            release_id="20261205T100000Z-aaaaaaa", deployment_id=deployment_id,
                            build_id=build_id, sha=SHA, ref="refs/heads/main",
                            live_at=live_at))
        session.add(HostRelease(project="shop", environment="staging", host="local",
                                live_release="20261205T100000Z-aaaaaaa",
                                last_good_release="20261205T100000Z-aaaaaaa",
                                deployment_id=deployment_id))
    answer = client.get("/api/projects", headers=ADMIN)
    assert answer.status_code == 200
    (shop,) = answer.json["projects"]
    assert (shop["name"], shop["repo"]) == ("shop", "acme/shop")
    staging, production = shop["environments"]
    assert staging["hosts"] == [{"host": "local", "release": "20261205T100000Z-aaaaaaa",
                                 "sha": SHA, "since": live_at.isoformat(),
                                 "deployment": deployment_id}]
    assert production["approval"] == "manual" and production["promote_from"] == "staging"
    assert production["hosts"] == [{"host": "local", "release": None, "sha": None,
                                    "since": None, "deployment": None}]


def test_each_operation_is_audited_with_the_tokens_name(ctx: Context,
                                                        client: FlaskClient) -> None:
    build_id = add_build(ctx)
    parked = add_deployment(ctx, build_id, "production", "awaiting_approval", kind="promotion")
    approved = client.post(f"/api/deployments/{parked}/approve", headers=ALICE)
    assert approved.status_code == 202
    assert approved.json["approved_by"] == "alice"
    assert [(a["by"], a["action"]) for a in approved.json["audit"]] == [("alice", "approve")]
    again = client.post(f"/api/deployments/{parked}/approve", headers=ALICE)
    assert again.status_code == 409
    assert again.json["error"] == "conflict" and "not awaiting approval" in again.json["detail"]

    waiting = add_deployment(ctx, build_id, "staging", "queued")
    assert client.post(f"/api/deployments/{waiting}/cancel", headers=CI).status_code == 202
    failed = add_deployment(ctx, build_id, "staging", "failed", release_id="r-1")
    retried = client.post(f"/api/deployments/{failed}/retry", headers=ADMIN)
    assert retried.status_code == 202 and retried.json["kind"] == "retry"
    by_hand = client.post("/api/projects/shop/environments/staging/deploy", headers=CI,
                          json={"sha": SHA})
    assert by_hand.status_code == 202 and by_hand.json["requested_by"] == "ci"

    log = client.get("/api/audit", headers=ADMIN).json
    assert [(e["by"], e["action"], e["deployment"]) for e in log["audit"]] == [
        ("ci", "deploy", by_hand.json["id"]), ("admin", "retry", retried.json["id"]),
        ("ci", "cancel", waiting), ("alice", "approve", parked)]
    assert all(e["project"] == "shop" and e["at"] for e in log["audit"])
    assert log["audit"][0]["environment"] == "staging"
    assert "by hand" in log["audit"][0]["detail"] and SHA[:7] in log["audit"][0]["detail"]
    assert f"retries deployment {failed}" in log["audit"][1]["detail"]
    paged = client.get("/api/audit?limit=3&project=shop", headers=ADMIN).json
    rest = client.get(f"/api/audit?limit=3&cursor={paged['next']}", headers=ADMIN).json
    assert [e["action"] for e in rest["audit"]] == ["approve"] and rest["next"] is None
    assert client.get("/api/audit?project=other", headers=ADMIN).json["audit"] == []
    shown = client.get(f"/api/deployments/{waiting}", headers=ADMIN).json
    assert shown["state"] == "canceled" and shown["error"] == "canceled by ci"
    assert [(a["by"], a["action"]) for a in shown["audit"]] == [("ci", "cancel")]


def test_a_refused_operation_leaves_no_audit_entry(ctx: Context, client: FlaskClient) -> None:
    build_id = add_build(ctx)
    done = add_deployment(ctx, build_id, "staging", "succeeded")
    assert client.post(f"/api/deployments/{done}/cancel", headers=ALICE).status_code == 409
    assert client.post(f"/api/deployments/{done}/retry", headers=ALICE).status_code == 409
    refused = client.post("/api/projects/shop/environments/staging/rollback", headers=ALICE)
    assert refused.status_code == 409 and refused.json["error"] == "conflict"
    assert client.get("/api/audit", headers=ADMIN).json["audit"] == []


def test_a_rollback_is_audited_and_the_cli_name_is_used_outside_the_api(
        ctx: Context, client: FlaskClient) -> None:
    first = add_build(ctx, sha="1" * 40)
    second = add_build(ctx, sha="2" * 40)
    old = add_deployment(ctx, first, release_id="r-1", finished_at=NOW - timedelta(hours=2))
    new = add_deployment(ctx, second, release_id="r-2", finished_at=NOW - timedelta(hours=1))
    with ctx.db.session() as session:
        for deployment_id, build_id, release in ((old, first, "r-1"), (new, second, "r-2")):
            build = session.get(Build, build_id)
            session.add(Release(project="shop", environment="staging", release_id=release,
                                deployment_id=deployment_id, build_id=build_id,
                                sha=build.sha, ref=build.ref, live_at=NOW))
    answer = client.post("/api/projects/shop/environments/staging/rollback", headers=ALICE)
    assert answer.status_code == 202 and answer.json["release"] == "r-1"
    (entry,) = answer.json["audit"]
    assert (entry["by"], entry["action"], entry["detail"]) == (
        "alice", "rollback", "back to r-1 from r-2")
    canceled = pipeline.cancel(ctx, answer.json["id"])  # as the command line on the server
    assert canceled.error == "canceled by cli"
    log = client.get("/api/audit", headers=ADMIN).json["audit"]
    assert [(e["by"], e["action"]) for e in log] == [("cli", "cancel"), ("alice", "rollback")]


def test_a_deployment_shows_its_hosts_and_log_routes_answer(ctx: Context,
                                                           client: FlaskClient) -> None:
    build_id = add_build(ctx)
    deployment_id = add_deployment(ctx, build_id)
    with ctx.db.session() as session:
        session.add(DeploymentHost(deployment_id=deployment_id, host="local",
                                   state="succeeded", step="done", release="r-1",
                                   timings={"connect": 0.1}))
    shown = client.get(f"/api/deployments/{deployment_id}", headers=ADMIN).json
    assert shown["hosts"][0]["host"] == "local" and shown["audit"] == []
    listed = client.get("/api/deployments", headers=ADMIN).json["deployments"]
    assert "hosts" not in listed[0] and "audit" not in listed[0]
    assert client.get(f"/api/builds/{build_id}", headers=ADMIN).json["artifact"]["size"] == 10
    assert client.get(f"/api/deployments/{deployment_id}/log?after=0",
                      headers=ADMIN).json == {"lines": []}
    assert client.get("/api/builds/77/log", headers=ADMIN).json["error"] == "not_found"


def test_dora_from_the_history(ctx: Context, client: FlaskClient) -> None:
    """Three changes on staging in the window: one good, one rolled back an hour after it
    went live, one failed; the rollback restores."""
    committed = NOW - timedelta(days=2)
    good = add_build(ctx, sha="1" * 40, committed_at=committed)
    bad = add_build(ctx, sha="2" * 40, committed_at=committed + timedelta(hours=1))
    t0 = NOW - timedelta(days=1)
    add_deployment(ctx, good, release_id="r-1", finished_at=t0)
    add_deployment(ctx, bad, release_id="r-2", finished_at=t0 + timedelta(hours=1))
    add_deployment(ctx, good, release_id="r-1", kind="rollback", replaces_release="r-2",
                   finished_at=t0 + timedelta(hours=2))
    add_deployment(ctx, bad, state="failed", release_id="r-3",
                   finished_at=t0 + timedelta(hours=3))
    add_deployment(ctx, good, release_id="r-0", finished_at=NOW - timedelta(days=40))
    add_deployment(ctx, good, state="superseded")
    answer = client.get("/api/dora?project=shop&environment=staging&days=7", headers=ADMIN)
    assert answer.status_code == 200
    (staging,) = answer.json["environments"]
    assert staging["project"] == "shop" and staging["days"] == 7
    assert staging["deployments"] == 2
    assert staging["deployment_frequency"] == round(2 / 7, 4)
    # commit → live: good 1 day, bad 1 day (each committed a day before going live)
    assert staging["lead_time_seconds"] == pytest.approx(86400, abs=1)
    assert (staging["changes"], staging["failed_changes"]) == (3, 2)
    assert staging["change_failure_rate"] == round(2 / 3, 4)
    # r-2 rolled back 1 h after going live; the failure at +3 h not restored yet
    assert (staging["restores"], staging["time_to_restore_seconds"]) == (1, 3600)
    everything = client.get("/api/dora", headers=ADMIN).json["environments"]
    assert [(e["project"], e["environment"]) for e in everything] == [
        ("shop", "staging"), ("shop", "production")]
    assert everything[1]["deployments"] == 0 and everything[1]["lead_time_seconds"] is None


def test_cancelling_a_running_deployment_asks_its_job_and_is_audited(
        ctx: Context, client: FlaskClient) -> None:
    running = add_deployment(ctx, add_build(ctx), "staging", "running")
    answer = client.post(f"/api/deployments/{running}/cancel", headers=ALICE)
    assert answer.status_code == 202 and answer.json["state"] == "running"
    assert pipeline.cancel_requested(ctx, running) == "alice"
    (entry,) = answer.json["audit"]
    assert (entry["by"], entry["action"], entry["detail"]) == (
        "alice", "cancel", "asked to stop at the next safe point")
