"""What a developer sees on the forge for a staging -> production pipeline with approval, per
forge: the commit statuses, GitHub's deployments and GitLab's environments. Real builds (git
mirror) and deployments to `local` hosts; every job run in this process as RQ workers would;
the forges are stand-ins that check each request against their documented schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from app import pipeline
from app.context import Context
from app.events import Push
from app.models import Deployment
from app.pipeline.builds import find_or_create_build
from app.pipeline.deployments import find_or_create_deployment
from app.report import ReportError
from tests.support.forge import GitHubForge, GitLabForge
from tests.support.gitrepo import GitRepo
from tests.support.jobs import run_jobs

TOKEN = "forge-token-0123456789abcdef"
HOOK_SECRET = "hook-secret-value-42"
PIPELINE = """\
server: {{public_url: "https://deploy.example.com"}}
projects:
  shop:
    provider: {provider}
    repo: {repo}
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    status: {{api_url: "{api_url}", token: "${{FORGE_TOKEN}}"{records}}}
    build: {{commands: ["mkdir -p dist && cp app.txt dist/"], artifact: dist, timeout: 1m}}
    environments:
      staging:
        branches: [main]
        hosts: [local]
        path: {path}/staging
        url: https://staging.shop.example
        hooks: {{after_activate: ["echo secret=${{HOOK_SECRET}}"]}}
        healthcheck: {{command: "test \\"$(cat dist/app.txt)\\" != sick", retries: 1, \
interval: 1s, timeout: 10s}}
      production:
        promote_from: staging
        approval: manual
        hosts: [local]
        path: {path}/production
        url: https://shop.example
"""
# Per forge: (repository, what records deployments on the forge).
FORGES = {
    "github": ("acme/shop", ", deployments: true"),
    "gitlab": ("acme/platform/shop", ", environments: true"),
    "gitea": ("acme/shop", ""),
}
Forge = GitHubForge | GitLabForge


@pytest.fixture
def shop(worker_context: Callable[..., Context], database_url: str, git_repo: GitRepo,
         tmp_path: Path) -> Callable[[str], tuple[Context, Forge]]:
    """Factory: shop(provider) configures the pipeline against that forge's stand-in."""
    forges: list[Forge] = []

    def make(provider: str) -> tuple[Context, Forge]:
        forge = GitLabForge(TOKEN) if provider == "gitlab" else GitHubForge(TOKEN)
        forges.append(forge)
        repo, records = FORGES[provider]
        text = PIPELINE.format(provider=provider, repo=repo, clone_url=git_repo.url,
                               api_url=forge.url, records=records, path=tmp_path / "srv")
        env = {"FORGE_TOKEN": TOKEN, "HOOK_SECRET": HOOK_SECRET}
        return worker_context(text, database_url, env), forge

    yield make
    for forge in forges:
        forge.stop()


def push(ctx: Context, repo: GitRepo, content: str) -> str:
    """Commit app.txt = content on main and deliver the push as intake does: the build and
    the staging deployment recorded, their pending statuses and the build queued."""
    before = repo.sha("HEAD")
    sha = repo.commit({"app.txt": content})
    project = ctx.config.projects["shop"]
    event = Push(repository=project.repo, ref="refs/heads/main", before=before, after=sha,
                 clone_url=repo.url)
    build, _ = find_or_create_build(ctx, project, sha=sha, ref=event.ref,
                                    repository=project.repo, clone_url=repo.url)
    deployment, _ = find_or_create_deployment(ctx, project, project.environments["staging"],
                                              build, event)
    pipeline.dispatch(ctx, build.id, [deployment.id])
    return sha


def deployment_of(ctx: Context, environment: str, sha: str) -> Deployment:
    with ctx.db.session() as session:
        found = session.query(Deployment).filter_by(environment=environment, sha=sha).one()
        return found


def sequence(forge: Forge, context: str) -> list[tuple[str, str]]:
    """(state, description) of each commit status of `context`, in arrival order."""
    return [(s["state"], s["description"]) for s in forge.statuses if s["context"] == context]


def states(forge: Forge, context: str) -> list[str]:
    return [state for state, _ in sequence(forge, context)]


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_the_statuses_of_a_pipeline_with_approval(
        provider: str, shop: Callable[[str], tuple[Context, Forge]], git_repo: GitRepo,
        redis_db: redis.Redis) -> None:
    ctx, forge = shop(provider)
    sha = push(ctx, git_repo, "one")
    assert run_jobs(redis_db) == []
    production = deployment_of(ctx, "production", sha)
    assert production.state == "awaiting_approval"
    waiting = sequence(forge, "conveyor/deploy/production")
    assert waiting == [("pending", "Waiting for approval to deploy to production")]

    pipeline.approve(ctx, production.id, by="alice")
    assert run_jobs(redis_db) == []
    assert deployment_of(ctx, "production", sha).state == "succeeded"
    running = "running" if provider == "gitlab" else "pending"
    assert states(forge, "conveyor/build") == _unrepeated(provider, [
        "pending", running, "success"])
    assert states(forge, "conveyor/deploy/staging") == _unrepeated(provider, [
        "pending", running, "success"])
    assert states(forge, "conveyor/deploy/production") == _unrepeated(provider, [
        "pending", "pending", running, "success"])
    live = sequence(forge, "conveyor/deploy/production")[-1][1]
    assert live.startswith("Live on 1 host in ")
    assert all(s["sha"] == sha for s in forge.statuses)
    assert {s["target_url"].rsplit("/", 2)[-2] for s in forge.statuses} == {
        "builds", "deployments"}
    assert forge.violations == []
    assert HOOK_SECRET not in json.dumps(forge.statuses + forge.deployments)


def _unrepeated(provider: str, expected: list[str]) -> list[str]:
    """GitLab is never sent the state a status has already."""
    if provider != "gitlab":
        return expected
    return [s for i, s in enumerate(expected) if i == 0 or s != expected[i - 1]]


def test_github_deployments_of_a_pipeline_and_the_one_replaced_set_inactive(
        shop: Callable[[str], tuple[Context, Forge]], git_repo: GitRepo,
        redis_db: redis.Redis) -> None:
    ctx, forge = shop("github")
    first = push(ctx, git_repo, "one")
    assert run_jobs(redis_db) == []
    second = push(ctx, git_repo, "two")
    assert run_jobs(redis_db) == []
    pipeline.approve(ctx, deployment_of(ctx, "production", second).id, by="alice")
    assert run_jobs(redis_db) == []

    assert forge.violations == []
    by_id = {d["id"]: d for d in forge.deployments}
    assert [(d["ref"], d["environment"]) for d in forge.deployments] == [
        (first, "staging"), (first, "production"), (second, "staging"),
        (second, "production")]
    for deployment in forge.deployments:
        assert deployment["auto_merge"] is False and deployment["required_contexts"] == []
        assert deployment["transient_environment"] is False
        assert deployment["production_environment"] is (deployment["environment"]
                                                         == "production")
    history = [(by_id[s["deployment"]]["ref"], by_id[s["deployment"]]["environment"],
                s["state"]) for s in forge.deployment_statuses]
    staging = [(ref, state) for ref, env, state in history if env == "staging"]
    assert staging == [(first, "queued"), (first, "in_progress"), (first, "success"),
                       (second, "queued"), (second, "in_progress"), (second, "success"),
                       (first, "inactive")]
    production = [(ref, state) for ref, env, state in history if env == "production"]
    # The first was never approved: superseded by the second once it waited for approval
    # too, so never live (inactive). The second: waiting for approval, approved, live.
    assert production == [(first, "queued"), (second, "queued"), (first, "inactive"),
                          (second, "queued"), (second, "in_progress"), (second, "success")]
    success = next(s for s in forge.deployment_statuses if s["state"] == "success")
    assert success["environment_url"] == "https://staging.shop.example"
    assert success["log_url"].startswith("https://deploy.example.com/deployments/")
    assert success["description"].startswith("Live on 1 host in ")


def test_gitlab_environments_get_a_deployment_from_the_moment_it_runs(
        shop: Callable[[str], tuple[Context, Forge]], git_repo: GitRepo,
        redis_db: redis.Redis) -> None:
    ctx, forge = shop("gitlab")
    sha = push(ctx, git_repo, "one")
    assert run_jobs(redis_db) == []
    assert [d["environment"] for d in forge.deployments] == ["staging"]  # production waits
    pipeline.approve(ctx, deployment_of(ctx, "production", sha).id, by="alice")
    assert run_jobs(redis_db) == []
    assert forge.violations == []
    assert [(d["repo"], d["environment"], d["sha"], d["ref"], d["tag"])
            for d in forge.deployments] == [
        ("acme%2Fplatform%2Fshop", env, sha, "main", False)
        for env in ("staging", "production")]
    assert [(s["deployment"], s["state"]) for s in forge.deployment_statuses] == [
        (1, "running"), (1, "success"), (2, "running"), (2, "success")]


def test_a_forge_outage_neither_slows_nor_reorders(
        shop: Callable[[str], tuple[Context, Forge]], git_repo: GitRepo,
        redis_db: redis.Redis) -> None:
    """The status API answers 500 three times, then 429 with Retry-After: 2. The deployment
    goes live meanwhile; the statuses come after the 2 s, in order."""
    ctx, forge = shop("github")
    forge.fail_next(3, 500)
    forge.fail_next(1, 429, {"Retry-After": "2"})
    live_while_held: list[str] = []

    def held() -> None:  # only jobs scheduled for later are left: the held-back statuses
        if not live_while_held:
            live_while_held.append(deployment_of(ctx, "staging", sha).state)

    sha = push(ctx, git_repo, "one")
    errors = run_jobs(redis_db, expected=ReportError, before_wait=held)
    assert len(errors) == 3 and all("500" in e for e in errors)
    assert live_while_held == ["succeeded"]  # live before the forge took a single status
    told = next(r["at"] for r in forge.requests if r["code"] == 429)
    sent = [r for r in forge.requests if r["code"] == 201]
    assert sent and all(r["at"] >= told + 2 for r in sent)
    assert states(forge, "conveyor/deploy/staging")[-1] == "success"
    assert states(forge, "conveyor/build")[-1] == "success"
    staging = [s["state"] for s in forge.deployment_statuses if s["deployment"] == 1]
    assert staging == ["success"]  # the older states, held back, were overtaken
    assert forge.violations == []


def test_a_rolled_back_deployment_says_so_on_the_commit_and_the_forge(
        shop: Callable[[str], tuple[Context, Forge]], git_repo: GitRepo,
        redis_db: redis.Redis) -> None:
    """The health check fails after the switch: the host is put back on the release it ran,
    the commit status says which check failed where, and GitHub's deployment fails."""
    ctx, forge = shop("github")
    push(ctx, git_repo, "one")
    assert run_jobs(redis_db) == []
    sick = push(ctx, git_repo, "sick")
    assert run_jobs(redis_db) == []
    assert deployment_of(ctx, "staging", sick).state == "failed"
    state, description = sequence(forge, "conveyor/deploy/staging")[-1]
    assert state == "failure"
    assert description.startswith("The health check failed 1 time(s)")
    assert description.endswith("on local; every switched host put back")
    assert len(description) <= 140
    by_id = {d["id"]: d for d in forge.deployments}
    sick_states = [s["state"] for s in forge.deployment_statuses
                   if by_id[s["deployment"]]["ref"] == sick]
    assert sick_states == ["queued", "in_progress", "failure"]
    # The release that was live stays the environment's live one on the forge too.
    assert "inactive" not in [s["state"] for s in forge.deployment_statuses]
    assert forge.violations == []
