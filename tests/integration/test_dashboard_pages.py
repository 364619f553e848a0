"""The dashboard's pages through Flask's test client, on real Redis and a real database
(SQLite and PostgreSQL): sign-in, CSRF, masking, 404s, operations recording who acted."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from app import create_app
from app.context import Context
from app.models import Build, Deployment, LogLine, utcnow
from tests.support import conveyor
from tests.support.gitrepo import GitRepo
from tests.support.history import PIPELINE

CONFIG = PIPELINE
ALICE = "alice-token-for-the-dashboard"


@pytest.fixture
def ctx(tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> Context:
    return conveyor.context(tmp_path, database_url, redis_url, CONFIG,
                            {"CONVEYOR_API_TOKENS": f"alice:{ALICE}"})


@pytest.fixture
def client(ctx: Context) -> FlaskClient:
    return create_app(context=ctx).test_client()


def awaiting(ctx: Context, sha: str = "a" * 40, error: str | None = None) -> int:
    """A production deployment awaiting approval (and its build), as a promotion leaves it."""
    with ctx.db.session() as session:
        build = Build(project="shop", sha=sha, ref="refs/heads/main", repository="acme/shop",
                      clone_url="", settings_hash="x", state="succeeded",
                      artifact_path="/nowhere", started_at=utcnow(), finished_at=utcnow())
        session.add(build)
        session.flush()
        deployment = Deployment(project="shop", environment="production", trigger=f"t:{sha}",
                                build_id=build.id, sha=sha, ref="refs/heads/main",
                                state="awaiting_approval", kind="promotion", error=error)
        session.add(deployment)
        session.flush()
        return deployment.id


def sign_in(client: FlaskClient, token: str = conveyor.API_TOKEN, next_: str = "/") -> str:
    """Sign in through the form; the session's CSRF token."""
    form = client.get("/signin").get_data(as_text=True)
    answer = client.post("/signin", data={"token": token, "next": next_,
                                          "csrf_token": csrf_of(form)})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return csrf_of(client.get("/").get_data(as_text=True))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def state_of(ctx: Context, deployment_id: int) -> tuple[str, str | None]:
    with ctx.db.session() as session:
        d = session.get(Deployment, deployment_id)
        return d.state, d.approved_by


def test_every_page_needs_a_signed_in_session(client: FlaskClient, ctx: Context) -> None:
    deployment_id = awaiting(ctx)
    for path in ("/", f"/deployments/{deployment_id}", f"/deployments/{deployment_id}/approval",
                 "/builds/1", f"/deployments/{deployment_id}/live"):
        assert client.get(path).status_code == 401, path
    stream = client.get(f"/deployments/{deployment_id}/log")
    assert (stream.status_code, stream.mimetype) == (401, "text/plain")
    page = client.get("/").get_data(as_text=True)
    assert 'name="token"' in page and "Sign in" in page

    form = client.get("/signin").get_data(as_text=True)
    refused = client.post("/signin", data={"token": "nope", "csrf_token": csrf_of(form)})
    assert refused.status_code == 401
    assert "not one of Conveyor's API tokens" in refused.get_data(as_text=True)
    assert client.get("/").status_code == 401

    sign_in(client, next_=f"/deployments/{deployment_id}")
    overview = client.get("/")
    assert overview.status_code == 200
    text = overview.get_data(as_text=True)
    assert 'signed in as <b id="who">admin</b>' in text
    assert "awaiting approval" in text and "promotion" in text

    client.post("/signout", data={"csrf_token": csrf_of(text)})
    assert client.get("/").status_code == 401


def test_sign_in_goes_back_to_the_page_asked_for_and_only_on_this_site(
        client: FlaskClient, ctx: Context) -> None:
    deployment_id = awaiting(ctx)
    form = csrf_of(client.get("/signin").get_data(as_text=True))
    back = client.post("/signin", data={"token": conveyor.API_TOKEN, "csrf_token": form,
                                        "next": f"/deployments/{deployment_id}"})
    assert back.headers["Location"] == f"/deployments/{deployment_id}"
    client.post("/signout", data={"csrf_token": csrf_of(client.get("/").get_data(as_text=True))})
    form = csrf_of(client.get("/signin").get_data(as_text=True))
    away = client.post("/signin", data={"token": conveyor.API_TOKEN, "csrf_token": form,
                                        "next": "//evil.example/"})
    assert away.headers["Location"] == "/"


def test_a_form_without_this_sessions_csrf_token_is_refused(
        client: FlaskClient, ctx: Context) -> None:
    deployment_id = awaiting(ctx)
    csrf = sign_in(client)
    for data in ({}, {"csrf_token": "forged"}):
        refused = client.post(f"/deployments/{deployment_id}/approve", data=data)
        assert refused.status_code == 400
        assert "CSRF token" in refused.get_data(as_text=True)
    assert state_of(ctx, deployment_id) == ("awaiting_approval", None)
    assert client.post("/signin", data={"token": conveyor.API_TOKEN}).status_code == 400

    done = client.post(f"/deployments/{deployment_id}/approve", data={"csrf_token": csrf})
    assert (done.status_code, done.headers["Location"]) == (303, f"/deployments/{deployment_id}")
    assert state_of(ctx, deployment_id) == ("queued", "admin")
    page = client.get(f"/deployments/{deployment_id}").get_data(as_text=True)
    assert f"Approved: deployment {deployment_id}, by admin" in page


def test_operations_record_the_signed_in_tokens_name_and_say_why_not(
        client: FlaskClient, ctx: Context) -> None:
    deployment_id = awaiting(ctx)
    csrf = sign_in(client, ALICE)
    client.post(f"/deployments/{deployment_id}/approve", data={"csrf_token": csrf})
    assert state_of(ctx, deployment_id) == ("queued", "alice")

    again = client.post(f"/deployments/{deployment_id}/approve", data={"csrf_token": csrf},
                        follow_redirects=True)
    assert f"deployment {deployment_id} is queued, not awaiting approval" in \
        again.get_data(as_text=True)
    retry = client.post(f"/deployments/{deployment_id}/retry", data={"csrf_token": csrf},
                        follow_redirects=True)
    assert "only a failed deployment can be retried" in retry.get_data(as_text=True)
    rollback = client.post("/projects/shop/environments/staging/rollback",
                           data={"csrf_token": csrf}, follow_redirects=True)
    assert "staging has no good release before the live one to roll back to" in \
        rollback.get_data(as_text=True)
    cancel = client.post(f"/deployments/{deployment_id}/cancel", data={"csrf_token": csrf})
    assert cancel.status_code == 303
    assert state_of(ctx, deployment_id)[0] == "canceled"
    # The deployment's page shows who did what (the audit log), newest first.
    page = client.get(f"/deployments/{deployment_id}").get_data(as_text=True)
    audit = page[page.index('id="audit"'):]
    assert re.search(r"alice</td><td>cancel.*alice</td><td>approve", audit, re.S), audit


def test_secrets_are_never_shown(client: FlaskClient, ctx: Context) -> None:
    deployment_id = awaiting(ctx, error=f"hook said {conveyor.SECRET} and {ALICE}")
    with ctx.db.session() as session:  # a line stored unmasked must still not be shown
        session.add(LogLine(deployment_id=deployment_id,
                            text=f"token {conveyor.API_TOKEN} at https://u:pw1234567@x.example/"))
        session.get(Deployment, deployment_id).state = "failed"
    sign_in(client)
    page = client.get(f"/deployments/{deployment_id}").get_data(as_text=True)
    for secret in (conveyor.SECRET, ALICE, conveyor.API_TOKEN, "pw1234567"):
        assert secret not in page
    assert "hook said *** and ***" in page and "token *** at https://u:***@x.example/" in page
    stream = client.get(f"/deployments/{deployment_id}/log").get_data(as_text=True)
    assert "token *** at" in stream and conveyor.API_TOKEN not in stream
    assert "event: end" in stream


def test_missing_deployments_and_builds_are_404_pages(client: FlaskClient, ctx: Context) -> None:
    csrf = sign_in(client)
    for path in ("/deployments/999", "/deployments/999/approval", "/deployments/999/live",
                 "/builds/999", "/deployments/999/log", "/builds/999/log"):
        answer = client.get(path)
        assert answer.status_code == 404, path
    assert "text/html" in client.get("/builds/999").content_type
    acted = client.post("/deployments/999/approve", data={"csrf_token": csrf})
    assert acted.status_code == 404
    assert "there is no deployment 999" in acted.get_data(as_text=True)
    assert client.post("/projects/shop/environments/nowhere/rollback",
                       data={"csrf_token": csrf}).status_code == 404


def test_the_approval_page_lists_the_commits_from_the_mirror_or_the_database(
        client: FlaskClient, ctx: Context, git_repo: GitRepo) -> None:
    first = git_repo.commit({"app.txt": "1"}, message="Speed up the checkout")
    deployment_id = awaiting(ctx, sha=first)
    sign_in(client)
    page = client.get(f"/deployments/{deployment_id}/approval").get_data(as_text=True)
    assert first[:7] in page and "The git mirror is not on this machine" in page
    assert 'data-action="approve"' in page

    mirror = ctx.settings.data_dir / "mirrors" / "shop.git"
    subprocess.run(["git", "clone", "-q", "--mirror", git_repo.url, str(mirror)], check=True)
    page = client.get(f"/deployments/{deployment_id}/approval").get_data(as_text=True)
    assert "Speed up the checkout" in page and "The git mirror is not" not in page
    assert "<td>Conveyor Tests</td>" in page  # the author


def test_sessions_are_valid_in_every_worker_and_end_when_the_token_changes(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> None:
    one = create_app(context=conveyor.context(tmp_path, database_url, redis_url, CONFIG))
    other = create_app(context=conveyor.context(tmp_path, database_url, redis_url, CONFIG))
    client = one.test_client()
    sign_in(client)
    cookie = client.get_cookie("conveyor_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    second = other.test_client()  # another gunicorn worker: the same derived key
    second.set_cookie("conveyor_session", cookie.value)
    assert second.get("/").status_code == 200

    changed = create_app(context=conveyor.context(
        tmp_path, database_url, redis_url, CONFIG, {"CONVEYOR_API_TOKEN": "a-new-token-1234"}))
    third = changed.test_client()
    third.set_cookie("conveyor_session", cookie.value)
    assert third.get("/").status_code == 401


def test_without_an_api_token_the_dashboard_says_how_to_enable_it(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> None:
    app = create_app(context=conveyor.context(tmp_path, database_url, redis_url, CONFIG,
                                              {"CONVEYOR_API_TOKEN": ""}))
    answer = app.test_client().get("/")
    assert answer.status_code == 503
    assert "Set <code>CONVEYOR_API_TOKEN</code>" in answer.get_data(as_text=True)


def test_a_build_page_shows_its_state_artifact_deployments_and_log(
        client: FlaskClient, ctx: Context) -> None:
    deployment_id = awaiting(ctx)
    with ctx.db.session() as session:
        build = session.get(Deployment, deployment_id).build
        build.artifact_sha256, build.artifact_size = "f" * 64, 2048
        session.add(LogLine(build_id=build.id, text="$ make dist"))
        build_id = build.id
    sign_in(client)
    page = client.get(f"/builds/{build_id}").get_data(as_text=True)
    assert 'data-state="succeeded"' in page and "ffffffffffff</code> 2048 bytes" in page
    assert f'href="/deployments/{deployment_id}"' in page
    assert '<span class="line">$ make dist</span>' in page and "data-stream" not in page


def test_the_dora_panel_shows_each_environment_that_deployed(
        client: FlaskClient, ctx: Context) -> None:
    sign_in(client)
    assert "No figures yet." in client.get("/").get_data(as_text=True)
    deployment_id = awaiting(ctx)
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        deployment.state, deployment.release_id = "succeeded", "20261205T120000Z-aaaaaaa"
        deployment.started_at = deployment.finished_at = utcnow()
        deployment.build.committed_at = utcnow() - timedelta(minutes=30)

    page = client.get("/").get_data(as_text=True)
    panel = page[page.index('id="dora"'):]
    assert "No figures yet." not in panel
    # One succeeded deployment in 30 days, 30 min from commit to live, no failure.
    assert re.search(r"shop / production</td>\s*<td>0\.03</td>\s*<td>30 min</td>"
                     r"\s*<td>0%</td>\s*<td>—</td>", panel), panel
