"""The walking skeleton, end to end: a signed GitHub push is built once, deployed over SSH to
every host, and reported back — real gunicorn, real RQ workers, real sshd hosts, real git."""

from __future__ import annotations

import os
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

GITHUB_TOKEN = "ghp_test_token_for_the_stand_in"
PIPELINE = """\
server:
  public_url: https://deploy.example.com
ssh:
  key: {key}
  known_hosts: {known_hosts}
  connect_timeout: 10s
  command_timeout: 2m
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    status:
      api_url: {api_url}
      token: ${{GITHUB_TOKEN}}
    build:
      commands:
        - mkdir -p dist && cp app.txt dist/app.txt
        - echo "built $CONVEYOR_SHA" > dist/BUILT
      artifact: dist
      timeout: 2m
    environments:
      staging:
        branches: [main]
        hosts: [{hosts}]
        path: {path}
        keep_releases: 3
"""


@pytest.mark.timeout(180)
def test_a_signed_push_is_built_once_deployed_to_every_host_and_reported(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        ssh_fleet: Callable[[int], SshFleet], git_repo: GitRepo,
        github_forge: Callable[[str], GitHubForge],
        fixture_json: Callable[[str], dict]) -> None:
    fleet = ssh_fleet(2)
    forge = github_forge(GITHUB_TOKEN)
    before = git_repo.sha("main")
    after = git_repo.commit({"app.txt": "hello from the push\n"}, message="Ship it")
    pipeline_text = PIPELINE.format(
        key=fleet.client_key, known_hosts=fleet.known_hosts, api_url=forge.url,
        hosts=", ".join(h.spec for h in fleet.hosts), path=fleet.deploy_path,
        clone_url=git_repo.url)
    _settings, env = conveyor.settings(tmp_path, database_url, redis_url, pipeline_text,
                                       {"GITHUB_TOKEN": GITHUB_TOKEN})
    body = conveyor.push_payload(fixture_json("github/push-branch-updated.json"),
                                 repo="acme/shop", clone_url=git_repo.url,
                                 ref="refs/heads/main", before=before, after=after)
    logs = tmp_path / "logs"

    with conveyor_processes(env, logs) as web:
        answer = requests.post(f"{web}/hooks/github", data=body, timeout=10,
                               headers=conveyor.signed_headers(body, "push", "e2e-1"))
        assert answer.status_code == 202, answer.text
        deployment_id = answer.json()["deployments"][0]

        def finished(statuses: list[dict]) -> bool:
            return any(s["context"] == "conveyor/deploy/staging" and s["state"] != "pending"
                       for s in statuses)

        try:
            statuses = forge.wait_for(finished, timeout=120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{read_logs(logs)}") from None
        api = requests.get(f"{web}/api/deployments/{deployment_id}", timeout=10,
                           headers={"Authorization": f"Bearer {conveyor.API_TOKEN}"}).json()

    assert forge.violations == []
    by_context: dict[str, list[str]] = {}
    for status in statuses:
        assert status["sha"] == after and status["repo"] == "acme/shop"
        by_context.setdefault(status["context"], []).append(status["state"])
    assert by_context["conveyor/build"][0] == "pending"
    assert by_context["conveyor/build"][-1] == "success"
    assert by_context["conveyor/deploy/staging"][0] == "pending"
    assert by_context["conveyor/deploy/staging"][-1] == "success", read_logs(logs)
    deploy_status = [s for s in statuses if s["context"] == "conveyor/deploy/staging"][-1]
    assert deploy_status["target_url"] == \
        f"https://deploy.example.com/deployments/{deployment_id}"

    assert api["state"] == "succeeded", api
    release = api["release"]
    assert release.endswith(f"-{after[:7]}")
    assert [(h["host"], h["state"], h["release"]) for h in api["hosts"]] == [
        (h.spec, "succeeded", release) for h in fleet.hosts]
    for host in fleet.hosts:
        current = host.root / "current"
        assert os.readlink(current) == f"releases/{release}"
        assert (current / "dist/app.txt").read_text() == "hello from the push\n"
        assert (current / "dist/BUILT").read_text() == f"built {after}\n"
    assert list(fleet.deploy_path.iterdir()) == []  # nothing written outside the hosts
