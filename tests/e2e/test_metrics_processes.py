"""`/metrics` of the real processes: after a real push is built and deployed by real RQ
workers, the web's scrape shows what the web counted (the delivery) and what the workers'
work horses counted (the build, the deployment, the lock wait), and each worker keeps one
set of files, however many jobs it ran."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import conveyor
from tests.support.forge import GitHubForge
from tests.support.gitrepo import GitRepo
from tests.support.pipeline_run import GITHUB_TOKEN, PipelineRun, pipeline_run
from tests.support.processes import ROOT, conveyor_argv, read_logs, running
from tests.support.services import free_port, wait_for_http
from tests.support.sshd import SshFleet

CONFIG = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${WEBHOOK_SECRET}
    build: {artifact: dist}
    environments:
      staging: {branches: [main], hosts: [local], path: /srv/shop}
"""
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SUCCEEDED = (("result", "succeeded"),)


def scrape(run: PipelineRun) -> Samples:
    answer = requests.get(f"{run.web}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def counted(found: Samples) -> Samples | None:
    """The samples, once they count the deployment that succeeded."""
    return found if found.get(("conveyor_deployments_total", SUCCEEDED)) else None


@pytest.mark.timeout(240)
def test_the_web_scrape_shows_the_web_and_the_workers_counts_after_a_push_went_live(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        ssh_fleet: Callable[[int], SshFleet], git_repo: GitRepo,
        github_forge: Callable[[str], GitHubForge]) -> None:
    with pipeline_run(tmp_path, database_url, redis_url, git_repo, ssh_fleet(2),
                      github_forge(GITHUB_TOKEN)) as run:
        sha, _body = run.push("v1\n")
        run.deployment_of("staging", sha, "succeeded")
        # The worker records the end once its transaction has committed: await it.
        found = run.wait(lambda: counted(scrape(run)), what="the deployment in /metrics")

    # Counted in a gunicorn worker of the web:
    assert found[("conveyor_deliveries_total", (("code", "202"), ("provider", "github")))] == 1
    # Counted in RQ work horses (the build job, the deploy job):
    assert found[("conveyor_builds_total", SUCCEEDED)] == 1
    assert found[("conveyor_build_duration_seconds_count", SUCCEEDED)] == 1
    assert found[("conveyor_deployments_total", SUCCEEDED)] == 1
    assert found[("conveyor_deployment_duration_seconds_count", SUCCEEDED)] == 1
    assert found[("conveyor_deployment_duration_seconds_sum", SUCCEEDED)] > 0
    assert found[("conveyor_lock_wait_seconds_count", ())] >= 1
    # Read from Redis at the scrape; production waits for approval, not on a queue.
    assert found[("conveyor_queue_depth", (("queue", "deploys"),))] == 0

    files = [path.name for path in (tmp_path / "data/metrics").iterdir()]
    owners = {re.fullmatch(r"(counter|histogram)_(\d+(-jobs)?)\.db", name).group(2)  # type: ignore[union-attr]
              for name in files}
    horses = {owner for owner in owners if owner.endswith("-jobs")}
    # Three RQ workers (two general, one notify) ran a dozen jobs between them (dispatch,
    # build, deploy, statuses): one set of files for the jobs of each worker that ran any.
    assert 1 <= len(horses) <= 3, files
    assert len(owners - horses) <= 2 + 3, files  # gunicorn's workers, RQ's workers


@pytest.mark.timeout(120)
def test_a_worker_machine_serves_its_own_metrics_on_conveyor_metrics_port(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> None:
    port = free_port()
    _settings, env = conveyor.settings(tmp_path, database_url, redis_url, CONFIG,
                                       {"CONVEYOR_METRICS_PORT": str(port)})
    redis_db.rpush("rq:queue:builds", "a-job-id")  # a job waits: the scrape reads Redis
    with running({"worker": conveyor_argv("worker", "--count", "1")}, env, tmp_path / "logs"):
        try:
            wait_for_http(f"http://127.0.0.1:{port}/metrics", timeout=60)
        except TimeoutError as exc:
            raise AssertionError(read_logs(tmp_path / "logs")) from exc
        answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for family in text_string_to_metric_families(answer.text) for s in family.samples}
    assert found[("conveyor_queue_depth", (("queue", "builds"),))] == 1


def test_a_worker_refuses_a_metrics_port_that_is_not_one(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    _settings, env = conveyor.settings(tmp_path, database_url, redis_url, CONFIG,
                                       {"CONVEYOR_METRICS_PORT": "nine"})
    done = subprocess.run(conveyor_argv("worker"), env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "CONVEYOR_METRICS_PORT: 'nine' is not a port" in done.stderr
