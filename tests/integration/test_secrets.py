"""Secrets (SPEC §7) where output is written, and the clone URL rule (issue 8, points 3 and 6):
no credential in any row, none in an answer, and a payload never names a path on the worker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import MetaData, select

from app import create_app
from app.context import Context
from app.models import Build, LogLine
from tests.support import conveyor, deliveries
from tests.support.forge import GitHubForge
from tests.support.gitrepo import GitRepo
from tests.support.services import free_port
from workers import build, notify

CLONE_TOKEN = "ghs_clone_token_in_conveyor_yml"
PAYLOAD_TOKEN = "ghp_token_a_payload_carried"
VALUE = "value-of-a-conveyor-yml-variable"
PIPELINE = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
{clone_url}    status: {{api_url: "{api_url}", token: "status-token-for-tests"}}
    build:
      commands: ["mkdir -p dist && cp app.txt dist/"]
      artifact: dist
      env: {{MY_VALUE: "${{MY_VALUE}}"}}
    environments:
      staging: {{branches: [main], hosts: [local], path: /srv/shop}}
"""


@pytest.fixture
def make_ctx(worker_context: Callable[..., Context],
             database_url: str) -> Callable[..., Context]:
    """make(clone_url=None, api_url=...): a worker's context for that pipeline file."""
    def make(clone_url: str | None = None, api_url: str = "https://api.github.invalid") -> Context:
        line = f"    clone_url: {json.dumps(clone_url)}\n" if clone_url else ""
        text = PIPELINE.format(clone_url=line, api_url=api_url)
        return worker_context(text, database_url, {"CLONE_TOKEN": CLONE_TOKEN,
                                                   "MY_VALUE": VALUE})
    return make


def push(client: FlaskClient, clone_url: str, after: str, delivery: str = "d-1") -> dict:
    """POST GitHub's push of `after` on main, naming `clone_url`; the answer's JSON."""
    body = conveyor.push_payload(deliveries.fixture("github/push-branch-updated.json"),
                                 repo="acme/shop", clone_url=clone_url, ref="refs/heads/main",
                                 before="0" * 40, after=after)
    answer = client.post("/hooks/github", data=body,
                         headers=deliveries.github(body, "push", delivery))
    assert answer.status_code == 202, answer.json
    return answer.json


def built(ctx: Context, client: FlaskClient, clone_url: str, after: str) -> Build:
    """Deliver a push and run its build job, as a worker would; the build's row."""
    build_id = push(client, clone_url, after)["builds"][0]
    build.run(build_id)
    with ctx.db.session() as session:
        found = session.get(Build, build_id)
        assert found is not None
        return found


def columns_holding(ctx: Context, needle: str) -> list[str]:
    """Every `table.column` of the database (whatever the models say) with `needle` in a row."""
    tables = MetaData()
    tables.reflect(ctx.db.engine)
    found = []
    with ctx.db.engine.connect() as conn:
        for table in tables.sorted_tables:
            for row in conn.execute(select(table)):
                found += [f"{table.name}.{name}" for name, value in row._mapping.items()
                          if needle in str(value)]
    return found


def api_answers(client: FlaskClient, build_id: int) -> str:
    """The text of every API answer about deliveries, deployments and the build."""
    auth = {"Authorization": f"Bearer {conveyor.API_TOKEN}"}
    paths = ["/api/deliveries", "/api/deployments", f"/api/builds/{build_id}", "/api/builds",
             f"/api/builds/{build_id}/log"]
    answers = [client.get(path, headers=auth) for path in paths]
    assert [a.status_code for a in answers] == [200] * len(paths)
    return "\n".join(a.get_data(as_text=True) for a in answers)


def log_text(ctx: Context, build_id: int) -> str:
    with ctx.db.session() as session:
        return "\n".join(session.scalars(select(LogLine.text).where(
            LogLine.build_id == build_id).order_by(LogLine.id)))


# -- credentials in clone URLs ------------------------------------------------------------------


def test_a_token_in_the_configured_clone_url_is_in_no_row_of_any_table(
        make_ctx, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens: the fetch fails, with the URL in git's words
    ctx = make_ctx(f"https://x-access-token:${{CLONE_TOKEN}}@127.0.0.1:{port}/acme/shop.git")
    client = create_app(context=ctx).test_client()
    done = built(ctx, client, "https://github.com/acme/shop.git", "c" * 40)
    assert done.state == "failed" and "git fetch failed" in (done.error or "")
    assert done.clone_url == f"https://127.0.0.1:{port}/acme/shop.git"
    assert columns_holding(ctx, CLONE_TOKEN) == []
    assert CLONE_TOKEN not in api_answers(client, done.id)


def test_a_token_in_a_payloads_clone_url_is_neither_stored_nor_shown(
        make_ctx, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    client = create_app(context=ctx).test_client()
    port = free_port()
    done = built(ctx, client, f"https://bot:{PAYLOAD_TOKEN}@127.0.0.1:{port}/acme/shop.git",
                 "d" * 40)
    assert done.clone_url == f"https://127.0.0.1:{port}/acme/shop.git"
    assert f"fetching from https://127.0.0.1:{port}/acme/shop.git" in log_text(ctx, done.id)
    assert columns_holding(ctx, PAYLOAD_TOKEN) == []
    assert PAYLOAD_TOKEN not in api_answers(client, done.id)


# -- a payload naming a path on the worker ------------------------------------------------------


@pytest.mark.parametrize("form", ["file-url", "path", "ext"])
def test_a_payload_naming_a_local_path_fails_the_build_and_nothing_is_fetched(
        make_ctx, git_repo: GitRepo, redis_db: redis.Redis, tmp_path: Path,
        form: str) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()  # no clone_url in the pipeline file
    client = create_app(context=ctx).test_client()
    sha = git_repo.commit({"app.txt": "from a path"})
    proof = tmp_path / "ext-ran"
    url = {"file-url": git_repo.url, "path": str(git_repo.origin),
           "ext": f"ext::sh -c touch% {proof}"}[form]
    done = built(ctx, client, url, sha)
    assert (done.state, done.error) == ("failed", "the payload's clone URL is a local path;"
                                        " set clone_url in conveyor.yml to build from a path")
    assert "build failed: the payload's clone URL is a local path" in log_text(ctx, done.id)
    assert not (ctx.settings.data_dir / "mirrors" / "shop.git").exists()
    assert not proof.exists()


def test_a_configured_path_clone_url_is_built_from(
        make_ctx, git_repo: GitRepo, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(git_repo.url)
    client = create_app(context=ctx).test_client()
    sha = git_repo.commit({"app.txt": "v1"})
    # The payload's URL is not used when the pipeline file names one.
    done = built(ctx, client, "https://github.com/acme/shop.git", sha)
    assert done.state == "succeeded", done.error
    assert done.clone_url == git_repo.url


def test_git_reads_a_path_only_when_told_the_configured_clone_url_is_one(
        tmp_path: Path, git_repo: GitRepo) -> None:
    assert build.git_env()["GIT_ALLOW_PROTOCOL"] == "git:http:https:ssh"
    assert "file" in build.git_env(allow_file=True)["GIT_ALLOW_PROTOCOL"].split(":")
    with pytest.raises(build.BuildError, match="transport 'file' not allowed"):
        build.update_mirror(tmp_path / "data", "shop", git_repo.url, lambda _line: None)
    mirror = build.update_mirror(tmp_path / "data", "shop", git_repo.url, lambda _line: None,
                                 allow_file=True)
    assert build.git("rev-parse", "refs/heads/main", cwd=mirror).strip() == git_repo.sha("main")


# -- the one place each output is written -------------------------------------------------------


def test_every_api_answer_is_masked_whatever_the_row_holds(
        make_ctx, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    client = create_app(context=ctx).test_client()
    build_id = push(client, "https://github.com/acme/shop.git", "e" * 40)["builds"][0]
    with ctx.db.session() as session:  # rows written before masking existed, say
        session.get(Build, build_id).error = f"failed with {VALUE}"  # type: ignore[union-attr]
        session.add(LogLine(build_id=build_id, text=f"{VALUE} and https://u:{PAYLOAD_TOKEN}@h/x"))
    text = api_answers(client, build_id)
    assert VALUE not in text and PAYLOAD_TOKEN not in text
    assert "failed with ***" in text and "*** and https://u:***@h/x" in text


def test_a_status_is_masked_where_the_notify_job_sends_it(
        make_ctx, github_forge: Callable[[str], GitHubForge]) -> None:  # type: ignore[no-untyped-def]
    forge = github_forge("status-token-for-tests")
    make_ctx(api_url=forge.url)
    notify.send_status({"project": "shop", "sha": "a" * 40, "context": "conveyor/build",
                        "state": "failed", "description": f"Build failed: {VALUE}",
                        "target_url": f"https://u:{PAYLOAD_TOKEN}@deploy.example/builds/1",
                        "seq": 1})
    assert [(s["description"], s["target_url"]) for s in forge.statuses] == [
        ("Build failed: ***", "https://u:***@deploy.example/builds/1")]
