"""A `${VAR}` of conveyor.yml used in a build command, in hooks and in a health check is
masked everywhere Conveyor writes (SPEC §7): the build and deployment logs, every API answer,
`conveyor deploy --plan` and the commit statuses the forge receives. Real gunicorn, RQ
workers, sshd hosts and git; a local stand-in for GitHub's status API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests

from tests.support import conveyor
from tests.support.forge import GitHubForge
from tests.support.gitrepo import GitRepo
from tests.support.processes import conveyor_processes, read_logs
from tests.support.sshd import SshFleet

SECRET = "s3cr3t-value-from-the-environment"
# Under 6 characters a value is not masked: `main`, `3` or `true` would be starred in every
# line that says them, hiding what the line says and protecting nothing.
SHORT = "abc12"
GITHUB_TOKEN = "ghp_test_token_for_the_stand_in"
PIPELINE = """\
server: {{public_url: "https://deploy.example.com"}}
ssh: {{key: {key}, known_hosts: {known_hosts}, connect_timeout: 10s, command_timeout: 2m}}
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    status: {{api_url: "{api_url}", token: "${{GITHUB_TOKEN}}"}}
    build:
      commands:
        - echo "building with ${{MY_SECRET_VAR}} and ${{SHORT_VAR}}"
        - "grep -q good app.txt # a bad commit fails here, naming ${{MY_SECRET_VAR}}"
        - mkdir -p dist && cp app.txt dist/
      artifact: dist
    environments:
      staging:
        branches: [main]
        hosts: [{hosts}]
        path: {path}
        hooks:
          before_activate: ["echo before ${{MY_SECRET_VAR}}"]
          after_activate: ["echo after ${{MY_SECRET_VAR}}"]
        healthcheck: {{command: "test ${{MY_SECRET_VAR}} = healthy", retries: 1}}
"""


@pytest.mark.timeout(180)
def test_a_var_of_conveyor_yml_shows_nowhere(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        ssh_fleet: Callable[[int], SshFleet], git_repo: GitRepo,
        github_forge: Callable[[str], GitHubForge],
        fixture_json: Callable[[str], dict]) -> None:
    fleet = ssh_fleet(1)
    forge = github_forge(GITHUB_TOKEN)
    before = git_repo.sha("main")
    after = git_repo.commit({"app.txt": "good\n"})
    text = PIPELINE.format(key=fleet.client_key, known_hosts=fleet.known_hosts,
                           clone_url=git_repo.url, api_url=forge.url,
                           hosts=", ".join(h.spec for h in fleet.hosts), path=fleet.deploy_path)
    _settings, env = conveyor.settings(tmp_path, database_url, redis_url, text, {
        "GITHUB_TOKEN": GITHUB_TOKEN, "MY_SECRET_VAR": SECRET, "SHORT_VAR": SHORT})
    logs = tmp_path / "logs"

    with conveyor_processes(env, logs) as web:
        # A good commit is built and deployed (its health check fails); a bad one's build
        # fails on a command naming the variable, which the build's status quotes.
        build_id, deployment_id = push(web, fixture_json, before, after, "secrets-1")
        wait_for_failure(forge, logs, after, "conveyor/deploy/staging")
        bad = git_repo.commit({"app.txt": "bad\n"})
        push(web, fixture_json, after, bad, "secrets-2")
        statuses = wait_for_failure(forge, logs, bad, "conveyor/build")
        answers = {path: api(web, path) for path in (
            "/api/deliveries", "/api/deployments", f"/api/deployments/{deployment_id}",
            f"/api/deployments/{deployment_id}/log", f"/api/builds/{build_id}",
            f"/api/builds/{build_id}/log")}
    plan = subprocess.run([sys.executable, "-m", "app.cli", "deploy", "shop", "staging",
                           "--plan"], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60, check=False)

    build_log = answers[f"/api/builds/{build_id}/log"]
    deployment_log = answers[f"/api/deployments/{deployment_id}/log"]
    shown = {**answers, "plan": plan.stdout + plan.stderr,
             "statuses": "\n".join(f"{s['description']} {s['target_url']}" for s in statuses)}
    assert [where for where, text in shown.items() if SECRET in text] == []
    # The lines are there, the value starred; a short value is left as it is.
    assert f"building with *** and {SHORT}" in build_log
    assert "before ***" in deployment_log and "after ***" in deployment_log
    assert "test *** = healthy" in deployment_log
    assert "before_activate: echo before ***" in plan.stdout, plan.stderr
    assert "health check: test *** = healthy" in plan.stdout
    build_failed = [s["description"] for s in statuses
                    if s["state"] == "failure" and s["context"] == "conveyor/build"]
    assert build_failed == ["Build failed: exit status 1 from: grep -q good app.txt # a bad"
                            " commit fails here, naming ***"]


def wait_for_failure(forge: GitHubForge, logs: Path, sha: str, context: str) -> list[dict]:
    """Every status received once `context` failed for commit `sha`."""
    try:
        return forge.wait_for(lambda found: any(
            (s["sha"], s["context"], s["state"]) == (sha, context, "failure") for s in found),
            timeout=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{read_logs(logs)}") from None


def push(web: str, fixture_json: Callable[[str], dict], before: str, after: str,
         delivery: str) -> tuple[int, int]:
    """Deliver GitHub's push of `after` on main; (build id, deployment id)."""
    body = conveyor.push_payload(fixture_json("github/push-branch-updated.json"),
                                 repo="acme/shop", clone_url="https://github.com/acme/shop.git",
                                 ref="refs/heads/main", before=before, after=after)
    answer = requests.post(f"{web}/hooks/github", data=body, timeout=10,
                           headers=conveyor.signed_headers(body, "push", delivery))
    assert answer.status_code == 202, answer.text
    return answer.json()["builds"][0], answer.json()["deployments"][0]


def api(web: str, path: str) -> str:
    """One API answer's text."""
    answer = requests.get(f"{web}{path}", timeout=10,
                          headers={"Authorization": f"Bearer {conveyor.API_TOKEN}"})
    assert answer.status_code == 200, (path, answer.text)
    return answer.text
