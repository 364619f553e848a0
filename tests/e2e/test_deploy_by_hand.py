"""A deployment asked for by hand, end to end: `conveyor deploy --wait --json` (a real
process) resolves the branch head and asks the API, real RQ workers build it once and roll
it out to every host in batches behind a health check while the command follows; a release
whose health check fails is rolled back, and the command exits 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support import conveyor
from tests.support.gitrepo import GitRepo
from tests.support.processes import conveyor_processes, read_logs
from tests.support.sshd import SshFleet

PIPELINE = """\
ssh: {{key: {key}, known_hosts: {known_hosts}, connect_timeout: 10s, command_timeout: 2m}}
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    build:
      commands: ["mkdir -p dist && cp app.txt dist/app.txt"]
      artifact: dist
    environments:
      staging:
        branches: [main]
        hosts: [{hosts}]
        path: {path}
        batch: 1
        healthcheck: {{command: 'grep -q healthy dist/app.txt', retries: 2, interval: 1s}}
"""


@pytest.mark.timeout(360)
def test_conveyor_deploy_builds_rolls_out_and_rolls_back_a_failing_release(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        ssh_fleet: Callable[[int], SshFleet], git_repo: GitRepo) -> None:
    fleet = ssh_fleet(2)
    good = git_repo.commit({"app.txt": "healthy\n"}, message="Good")
    text = PIPELINE.format(key=fleet.client_key, known_hosts=fleet.known_hosts,
                           clone_url=git_repo.url, hosts=", ".join(h.spec for h in fleet.hosts),
                           path=fleet.deploy_path)
    _settings, env = conveyor.settings(tmp_path, database_url, redis_url, text)
    logs = tmp_path / "logs"

    with conveyor_processes(env, logs) as web:
        first = deploy_by_hand(env, web, status=0)
        assert first["state"] == "succeeded", (first, read_logs(logs))
        assert first["sha"] == good
        release = first["release"]
        for host in fleet.hosts:
            assert os.readlink(host.root / "current") == f"releases/{release}"

        bad = git_repo.commit({"app.txt": "broken\n"}, message="Bad")
        second = deploy_by_hand(env, web, status=1)
        assert (second["state"], second["sha"]) == ("failed", bad), second
        assert "health check failed" in second["error"]
        assert [(h["state"], h["release"]) for h in second["hosts"]] == [
            ("failed", release), ("canceled", release)]  # batch 1: the second never switched

    for host in fleet.hosts:
        assert os.readlink(host.root / "current") == f"releases/{release}"
        assert (host.root / "current/dist/app.txt").read_text() == "healthy\n"


def deploy_by_hand(env: dict[str, str], web: str, *, status: int) -> dict:
    """Run `conveyor deploy shop staging --wait --json`: it exits once the deployment has
    ended, with `status`, and prints the deployment as the API has it."""
    done = subprocess.run([sys.executable, "-m", "app.cli", "deploy", "shop", "staging",
                           "--wait", "--json"], env={**os.environ, **env, "CONVEYOR_URL": web},
                          capture_output=True, text=True, timeout=150, check=False)
    assert (done.returncode, done.stderr) == (status, ""), done
    return json.loads(done.stdout)
