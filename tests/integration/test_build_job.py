"""The build job end to end in-process: real git, real processes, real Redis and database."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from app import pipeline
from app.context import Context
from app.models import Build, Deployment, LogLine, aware
from app.pipeline.builds import find_or_create_build
from tests.support.gitrepo import GitRepo
from workers import build

STATUS_TOKEN = "ghs_status_token_never_shown"
PIPELINE = """\
server: {{public_url: "https://deploy.example.com"}}
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    status: {{api_url: "https://api.github.invalid", token: "${{STATUS_TOKEN}}"}}
    build:
      commands: {commands}
      artifact: dist
      timeout: 1m
      keep_artifacts: {keep}
      keep_failed_workspace: {keep_failed}
    environments:
      staging: {{branches: [main], hosts: [local], path: /srv/shop}}
"""
DEFAULT_COMMANDS = ["mkdir -p dist && cp app.txt dist/"]


@pytest.fixture
def make_ctx(worker_context: Callable[..., Context], database_url: str,
             git_repo: GitRepo) -> Callable[..., Context]:
    def make(commands: list[str] = DEFAULT_COMMANDS, keep: int = 10,
             keep_failed: bool = False) -> Context:
        text = PIPELINE.format(commands=json.dumps(commands), keep=keep,
                               keep_failed=str(keep_failed).lower(), clone_url=git_repo.url)
        return worker_context(text, database_url, {"STATUS_TOKEN": STATUS_TOKEN})
    return make


def queue_build(ctx: Context, repo: GitRepo, sha: str) -> int:
    found, _new = find_or_create_build(ctx, ctx.config.projects["shop"], sha=sha,
                                       ref="refs/heads/main", repository="acme/shop",
                                       clone_url=repo.url)
    return found.id


def row(ctx: Context, build_id: int) -> Build:
    with ctx.db.session() as session:
        found = session.get(Build, build_id)
        assert found is not None
        return found


def log_text(ctx: Context, build_id: int) -> str:
    with ctx.db.session() as session:
        return "\n".join(line.text for line in session.query(LogLine).filter_by(
            build_id=build_id).order_by(LogLine.id))


def status_jobs(redis_db: redis.Redis) -> dict[str, dict]:
    """The commit statuses queued for the notify worker, by job id."""
    ids = [key.decode().removeprefix("rq:job:") for key in redis_db.keys("rq:job:status-*")]
    return {job_id: Job.fetch(job_id, connection=redis_db, serializer=JSONSerializer).args[0]
            for job_id in ids}


def test_a_build_makes_an_artifact_and_a_rebuild_reuses_the_mirror(
        make_ctx, git_repo: GitRepo, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    sha = git_repo.commit({"app.txt": "v1"})
    build_id = queue_build(ctx, git_repo, sha)
    build.run(build_id)
    done = row(ctx, build_id)
    assert done.state == "succeeded", done.error
    assert Path(done.artifact_path or "").name == f"{done.artifact_sha256}.tar.gz"
    committed = int(build.git("show", "-s", "--format=%ct", sha, cwd=git_repo.work).strip())
    assert done.committed_at is not None  # DORA's lead time starts at the commit's time
    assert aware(done.committed_at) == datetime.fromtimestamp(committed, UTC)
    assert "fetching from" in log_text(ctx, build_id)
    mirror = ctx.settings.data_dir / "mirrors" / "shop.git"
    # Only what the build needed came over: the commit, not every branch.
    assert build.git("for-each-ref", cwd=mirror) == ""
    assert build.git("config", "remote.origin.url", cwd=mirror).strip() == git_repo.url
    assert not (ctx.settings.data_dir / "workspaces" / f"build-{build_id}").exists()
    statuses = status_jobs(redis_db)
    assert statuses[f"status-build-{build_id}-1-succeeded"]["state"] == "succeeded"
    assert statuses[f"status-build-{build_id}-1-succeeded"]["description"].startswith("Built in")


def test_secrets_are_masked_in_the_log_and_invisible_to_commands(
        make_ctx, git_repo: GitRepo) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(["echo token=${STATUS_TOKEN:-unset}", f"echo leaked {STATUS_TOKEN}",
                    "env > env.txt; grep -c CONVEYOR_API_TOKEN env.txt || true",
                    "mkdir -p dist && cp app.txt dist/"])
    build_id = queue_build(ctx, git_repo, git_repo.commit({"app.txt": "v1"}))
    build.run(build_id)
    assert row(ctx, build_id).state == "succeeded"
    text = log_text(ctx, build_id)
    assert "token=unset" in text               # not in the command's environment
    assert "leaked ***" in text                # printed anyway: masked before storage
    assert STATUS_TOKEN not in text
    assert "\n0\n" in f"\n{text}\n"            # no CONVEYOR_API_TOKEN in the environment


def test_a_failing_command_fails_the_build_its_deployments_and_reports_the_command(
        make_ctx, git_repo: GitRepo, redis_db: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(["echo compiling", "exit 7"], keep_failed=True)
    sha = git_repo.commit({"app.txt": "v1"})
    build_id = queue_build(ctx, git_repo, sha)
    with ctx.db.session() as session:
        session.add(Deployment(project="shop", environment="staging", trigger="t",
                               build_id=build_id, sha=sha, ref="refs/heads/main"))
    build.run(build_id)
    failed = row(ctx, build_id)
    assert (failed.state, failed.error) == ("failed", "exit status 7 from: exit 7")
    description = status_jobs(redis_db)[f"status-build-{build_id}-1-failed"]["description"]
    assert description == "Build failed: exit status 7 from: exit 7"
    with ctx.db.session() as session:
        assert [d.state for d in session.query(Deployment)] == ["failed"]
    assert (ctx.settings.data_dir / "workspaces" / f"build-{build_id}" / "app.txt").exists()

    # Asked for again (a new push of the same commit), the failed build runs again.
    again = queue_build(ctx, git_repo, sha)
    assert again == build_id
    assert (row(ctx, build_id).state, row(ctx, build_id).attempt) == ("queued", 2)


def test_two_builds_of_one_project_run_at_once(
        make_ctx, git_repo: GitRepo) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    ids = [queue_build(ctx, git_repo, git_repo.commit({"app.txt": f"v{n}"})) for n in (1, 2)]
    threads = [threading.Thread(target=build.run, args=(build_id,)) for build_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [row(ctx, build_id).state for build_id in ids] == ["succeeded", "succeeded"]
    assert len({row(ctx, build_id).artifact_sha256 for build_id in ids}) == 2


def test_old_artifacts_go_unless_an_environment_needs_them(
        make_ctx, git_repo: GitRepo) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(keep=1)
    first_sha = git_repo.commit({"app.txt": "v1"})
    first = queue_build(ctx, git_repo, first_sha)
    build.run(first)
    with ctx.db.session() as session:  # staging waits for the first artifact
        session.add(Deployment(project="shop", environment="staging", trigger="t1",
                               build_id=first, sha=first_sha, ref="refs/heads/main",
                               state="queued"))
    second = queue_build(ctx, git_repo, git_repo.commit({"app.txt": "v2"}))
    build.run(second)
    assert Path(row(ctx, first).artifact_path or "").exists()
    with ctx.db.session() as session:
        session.query(Deployment).update({"state": "canceled"})
    third = queue_build(ctx, git_repo, git_repo.commit({"app.txt": "v3"}))
    first_path, first_sha256 = row(ctx, first).artifact_path, row(ctx, first).artifact_sha256
    build.run(third)
    assert row(ctx, first).artifact_path is None
    assert not Path(first_path or "").exists()
    assert row(ctx, second).artifact_path is None
    assert Path(row(ctx, third).artifact_path or "").exists()
    # A deployment of a pruned build builds it again.
    _build, new = find_or_create_build(ctx, ctx.config.projects["shop"], sha=first_sha,
                                       ref="refs/heads/main", repository="acme/shop",
                                       clone_url=git_repo.url)
    assert new and row(ctx, first).state == "queued"
    build.run(first)
    rebuilt = row(ctx, first)
    assert (rebuilt.state, rebuilt.attempt) == ("succeeded", 2)
    assert rebuilt.artifact_sha256 == first_sha256  # the same commit, the same bytes


def test_a_token_in_the_clone_url_is_neither_stored_nor_shown(
        make_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    url = f"https://x-access-token:{STATUS_TOKEN}@127.0.0.1:9/acme/shop.git"
    lines: list[str] = []
    with pytest.raises(build.BuildError) as failure:
        build.update_mirror(tmp_path / "data", "private", url, lines.append, sha="a" * 40)
    mirror = tmp_path / "data" / "mirrors" / "private.git"
    assert build.git("config", "remote.origin.url", cwd=mirror).strip() == \
        "https://127.0.0.1:9/acme/shop.git"
    assert STATUS_TOKEN not in pipeline.mask(str(failure.value), ctx.secrets())
    assert lines == ["fetching from https://127.0.0.1:9/acme/shop.git"]
