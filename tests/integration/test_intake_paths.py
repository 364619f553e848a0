"""`paths:` (monorepos): what a push changed, from real git, decides whether it is built."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from rq.job import Job
from rq.serializers import JSONSerializer

from app import create_app
from app.context import Context
from app.events import ZERO_SHA
from app.models import Build, Deployment, LogLine
from tests.support import deliveries
from tests.support.gitrepo import GitRepo, git
from workers import build
from workers.changes import ChangesUnknown, changed_files

PIPELINE = """\
projects:
  shop:
    provider: github
    repo: acme/monorepo
    webhook_secret: ${WEBHOOK_SECRET}
    clone_url: CLONE_URL
    status: {api_url: "https://api.github.invalid", token: "status-token"}
    paths: ["services/shop/**", "libs/**"]
    pull_requests: build
    build: {commands: ["mkdir -p dist && cp README.md dist/"], artifact: dist, timeout: 1m}
    environments:
      staging: {branches: [main], hosts: [local], path: /srv/shop}
      preview: {branches: ["feature/*"], hosts: [local], path: /srv/preview}
      production: {tags: ["v*"], hosts: [local], path: /srv/shop}
"""


def mirror_of(tmp_path: Path, repo: GitRepo) -> Path:
    return build.update_mirror(tmp_path / "data", "shop", repo.url, lambda _text: None,
                              allow_file=True)


# -- what changed -----------------------------------------------------------------------------


def test_changed_files_between_before_and_after(tmp_path: Path, git_repo: GitRepo) -> None:
    before = git_repo.commit({"services/shop/app.py": "1", "docs/a.md": "a"})
    git_repo.commit({"docs/a.md": "b"})
    git(*["mv", "services/shop/app.py", "services/shop/main.py"], cwd=git_repo.work)
    after = git_repo.commit({"libs/x.py": "x"})
    files = changed_files(mirror_of(tmp_path, git_repo), before, after, "main")
    # Every commit of the push counts, not only the last; a move counts under both names.
    assert sorted(files) == ["docs/a.md", "libs/x.py", "services/shop/app.py",
                             "services/shop/main.py"]


def test_a_new_branch_is_compared_with_the_default_branch(
        tmp_path: Path, git_repo: GitRepo) -> None:
    git_repo.commit({"services/shop/app.py": "1"})
    git_repo.commit({"docs/guide.md": "1"}, branch="feature/docs")
    tip = git_repo.commit({"docs/more.md": "2"}, branch="feature/docs")
    git_repo.commit({"services/shop/app.py": "2"}, branch="main")  # main moved on meanwhile
    mirror = build.update_mirror(tmp_path / "data", "shop", git_repo.url, lambda _text: None,
                                 allow_file=True)
    assert sorted(changed_files(mirror, ZERO_SHA, tip, "main")) == [
        "docs/guide.md", "docs/more.md"]
    # No default branch known, or one the mirror lacks: every file of the commit counts.
    everything = ["README.md", "docs/guide.md", "docs/more.md", "services/shop/app.py"]
    assert sorted(changed_files(mirror, ZERO_SHA, tip, None)) == everything
    assert sorted(changed_files(mirror, ZERO_SHA, tip, "trunk")) == everything
    # A before the mirror lacks (history rewritten by a force push) falls back the same way.
    assert sorted(changed_files(mirror, "e" * 40, tip, "main")) == [
        "docs/guide.md", "docs/more.md"]


def test_payload_values_never_become_git_options(tmp_path: Path, git_repo: GitRepo) -> None:
    mirror = mirror_of(tmp_path, git_repo)
    sha = git_repo.sha("main")
    for after in ("--output=/tmp/x", "HEAD", "f" * 40):
        with pytest.raises(ChangesUnknown):
            changed_files(mirror, ZERO_SHA, after, "main")
    for branch in ("--upload-pack=touch /tmp/pwned", "main:refs/heads/x", "-x"):
        assert changed_files(mirror, ZERO_SHA, sha, branch) == ["README.md"]
    assert not Path("/tmp/pwned").exists()


# -- the build job decides ----------------------------------------------------------------------


@pytest.fixture
def ctx(worker_context: Callable[..., Context], database_url: str, git_repo: GitRepo) -> Context:
    return worker_context(PIPELINE.replace("CLONE_URL", git_repo.url), database_url)


@pytest.fixture
def client(ctx: Context) -> FlaskClient:
    return create_app(context=ctx).test_client()


@pytest.fixture
def deliver(client: FlaskClient, git_repo: GitRepo) -> Callable[..., dict]:
    """POST GitHub's push for `before..after` on `ref`; the answer's JSON."""
    counter = iter(range(1, 1000))

    def post(ref: str, before: str, after: str) -> dict:
        payload = deliveries.fixture("github/push-branch-updated.json")
        payload.update(ref=ref, before=before, after=after)
        payload["repository"].update(full_name="acme/monorepo", clone_url=git_repo.url,
                                     default_branch="main")
        payload["head_commit"]["id"] = after
        body = json.dumps(payload).encode()
        answer = client.post("/hooks/github", data=body,
                             headers=deliveries.github(body, "push", f"d-{next(counter)}"))
        assert answer.status_code == 202, answer.json
        return answer.json
    return post


def states(ctx: Context, answer: dict) -> tuple[str, list[str]]:
    with ctx.db.session() as session:
        found = session.get(Build, answer["builds"][0])
        assert found is not None
        return found.state, [session.get(Deployment, d).state for d in answer["deployments"]]


def status_states(redis_db: redis.Redis) -> dict[str, str]:
    """context -> the last state queued for it, from the notify queue's status jobs."""
    jobs = [Job.fetch(key.decode().removeprefix("rq:job:"), connection=redis_db,
                      serializer=JSONSerializer) for key in redis_db.keys("rq:job:status-*")]
    ordered = sorted(jobs, key=lambda job: job.created_at)
    return {job.args[0]["context"]: (job.args[0]["state"], job.args[0]["description"])
            for job in ordered}


def test_a_push_changing_nothing_under_paths_is_neither_built_nor_deployed(
        ctx: Context, deliver: Callable[..., dict], git_repo: GitRepo,
        redis_db: redis.Redis) -> None:
    before = git_repo.commit({"services/shop/app.py": "1"})
    after = git_repo.commit({"docs/readme.md": "docs only"})
    answer = deliver("refs/heads/main", before, after)
    build.run(answer["builds"][0])
    assert states(ctx, answer) == ("skipped", ["skipped"])
    assert redis_db.llen("rq:queue:deploys") == 0
    statuses = status_states(redis_db)
    assert statuses["conveyor/build"] == (
        "skipped", "Not built: the push changes nothing under paths")
    assert statuses["conveyor/deploy/staging"][0] == "skipped"
    with ctx.db.session() as session:
        lines = [line.text for line in session.query(LogLine).filter_by(
            build_id=answer["builds"][0])]
    assert any("1 changed file(s), none under services/shop/**, libs/**" in t for t in lines)
    assert not (ctx.settings.data_dir / "workspaces").exists() or not any(
        (ctx.settings.data_dir / "workspaces").iterdir())


def test_a_push_touching_paths_is_built_and_its_deployment_queued(
        ctx: Context, deliver: Callable[..., dict], git_repo: GitRepo,
        redis_db: redis.Redis) -> None:
    before = git_repo.commit({"docs/readme.md": "1"})
    git_repo.commit({"libs/util.py": "u"})
    after = git_repo.commit({"docs/readme.md": "2"})  # the last commit alone touches nothing
    answer = deliver("refs/heads/main", before, after)
    build.run(answer["builds"][0])
    assert states(ctx, answer) == ("succeeded", ["queued"])
    assert redis_db.lrange("rq:queue:deploys", 0, -1) == [
        f"deploy-{answer['deployments'][0]}".encode()]


def test_a_tag_is_built_whatever_it_changes(
        ctx: Context, deliver: Callable[..., dict], git_repo: GitRepo) -> None:
    sha = git_repo.commit({"docs/readme.md": "release notes"})
    git_repo.tag("v1.0")
    answer = deliver("refs/tags/v1.0", ZERO_SHA, sha)
    build.run(answer["builds"][0])
    assert states(ctx, answer)[0] == "succeeded"


def test_a_skipped_commit_pushed_again_is_asked_again_with_the_new_push(
        ctx: Context, deliver: Callable[..., dict], git_repo: GitRepo,
        redis_db: redis.Redis) -> None:
    base = git_repo.sha("main")
    git_repo.commit({"services/shop/app.py": "feature"}, branch="feature/x")
    first = git_repo.sha("feature/x")
    tip = git_repo.commit({"docs/notes.md": "docs"}, branch="feature/x")
    on_feature = deliver("refs/heads/feature/x", first, tip)  # docs only since `first`
    build.run(on_feature["builds"][0])
    assert states(ctx, on_feature) == ("skipped", ["skipped"])
    # Fast-forward main to the same commit: from main's point of view the shop changed.
    git(*["push", "-q", "origin", f"{tip}:refs/heads/main"], cwd=git_repo.work)
    on_main = deliver("refs/heads/main", base, tip)
    assert on_main["builds"] == on_feature["builds"]
    with ctx.db.session() as session:
        revived = session.get(Build, on_main["builds"][0])
        assert (revived.state, revived.attempt, revived.changes_since) == ("queued", 2, base)
    build_id = on_main["builds"][0]
    assert f"build-{build_id}-2".encode() in redis_db.lrange("rq:queue:builds", 0, -1)
    build.run(build_id)
    assert states(ctx, on_main) == ("succeeded", ["queued"])
    assert states(ctx, on_feature)[1] == ["skipped"]  # that push still changed nothing


def test_two_pushes_of_one_commit_before_it_is_decided_build_it(
        ctx: Context, deliver: Callable[..., dict], git_repo: GitRepo) -> None:
    base = git_repo.sha("main")
    git_repo.commit({"services/shop/app.py": "x"}, branch="feature/y")
    middle = git_repo.sha("feature/y")
    tip = git_repo.commit({"docs/y.md": "y"}, branch="feature/y")
    git(*["push", "-q", "origin", f"{tip}:refs/heads/main"], cwd=git_repo.work)
    on_feature = deliver("refs/heads/feature/y", middle, tip)
    on_main = deliver("refs/heads/main", base, tip)  # another question: build whatever changed
    with ctx.db.session() as session:
        assert session.get(Build, on_main["builds"][0]).changes_since == ""
    build.run(on_main["builds"][0])
    assert states(ctx, on_main) == ("succeeded", ["queued"])
    assert states(ctx, on_feature) == ("succeeded", ["queued"])


def test_a_pull_request_is_compared_with_its_base_branch(
        ctx: Context, client: FlaskClient, git_repo: GitRepo) -> None:
    git_repo.commit({"services/shop/app.py": "1"})
    head = git_repo.commit({"docs/pr.md": "pr"}, branch="topic")
    payload = deliveries.fixture("github/pull_request-opened.json")
    payload["repository"].update(full_name="acme/monorepo", clone_url=git_repo.url)
    for side in ("head", "base"):
        payload["pull_request"][side]["repo"]["full_name"] = "acme/monorepo"
    payload["pull_request"]["head"].update(sha=head, ref="topic")
    payload["pull_request"]["base"]["ref"] = "main"
    body = json.dumps(payload).encode()
    answer = client.post("/hooks/github", data=body,
                         headers=deliveries.github(body, "pull_request", "pr-1")).json
    build.run(answer["builds"][0])
    assert states(ctx, answer) == ("skipped", [])
