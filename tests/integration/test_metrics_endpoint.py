"""`/metrics` on real Redis and a real database: deliveries counted by forge and answer,
queue depths read from Redis at the scrape, the optional token; and multiprocess files kept
per worker, not per job, across RQ-style forks."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import redis
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from tests.support import conveyor
from tests.support.processes import ROOT

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


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(client: FlaskClient, **headers: str) -> dict:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.content_type.startswith("text/plain")
    return samples(answer.text)


def delivered(found: dict, code: str) -> float:
    return found.get(("conveyor_deliveries_total", (("code", code), ("provider", "github"))), 0)


def test_deliveries_by_answer_and_queue_depths_from_redis(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        fixture_json: Callable[[str], dict]) -> None:
    client = create_app(context=conveyor.context(tmp_path, database_url, redis_url,
                                                 CONFIG)).test_client()
    before = scrape(client)
    body = conveyor.push_payload(fixture_json("github/push-branch-updated.json"),
                                 repo="acme/shop", clone_url="https://example.invalid/s.git",
                                 ref="refs/heads/main", before="1" * 40, after="2" * 40)
    assert client.post("/hooks/github", data=body,
                       headers=conveyor.signed_headers(body, "push", "m-1")).status_code == 202
    assert client.post("/hooks/github", data=body,  # its redelivery
                       headers=conveyor.signed_headers(body, "push", "m-1")).status_code == 200
    assert client.post("/hooks/github", data=body, headers=conveyor.signed_headers(
        body, "push", "m-2", secret="wrong")).status_code == 401

    after = scrape(client)
    for code in ("202", "200", "401"):
        assert delivered(after, code) - delivered(before, code) == 1, code
    # The delivery queued one job on notify (it queues the build); nothing waits elsewhere.
    assert after[("conveyor_queue_depth", (("queue", "notify"),))] == 1
    assert after[("conveyor_queue_depth", (("queue", "builds"),))] == 0
    assert after[("conveyor_queue_scheduled", (("queue", "deploys"),))] == 0


def test_metrics_answer_while_redis_is_down_without_queue_depths(
        tmp_path: Path, database_url: str) -> None:
    from tests.support.services import free_port

    down = f"redis://127.0.0.1:{free_port()}/0"
    client = create_app(context=conveyor.context(tmp_path, database_url, down,
                                                 CONFIG)).test_client()
    found = scrape(client)  # still 200: the process's own figures are worth having
    assert not [key for key in found if key[0] == "conveyor_queue_depth"]


def test_the_metrics_token_is_asked_for_when_set(
        tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis) -> None:
    ctx = conveyor.context(tmp_path, database_url, redis_url, CONFIG)
    ctx.settings = dataclasses.replace(ctx.settings, metrics_token="scrape-token")
    client = create_app(context=ctx).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={
        "Authorization": f"Bearer {conveyor.API_TOKEN}"}).status_code == 401  # not the API's
    found = scrape(client, Authorization="Bearer scrape-token")
    assert ("conveyor_queue_depth", (("queue", "builds"),)) in found


# Run in a process of its own: multiprocess mode is chosen when prometheus-client is imported.
FORKS = """
import os, sys
from app import metrics
metrics.share_files_across_forks()
metrics.finished("build", "succeeded", 3.0)          # the worker itself (its recovery scan)
for n in range(4):                                     # four jobs, one work horse each
    pid = os.fork()
    if pid == 0:
        metrics.finished("deployment", "succeeded", 1.5)
        metrics.lock_wait(2.0)
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
sys.stdout.write(metrics.exposition(lambda: {"builds": (2, 1)})[0].decode())
"""


def test_work_horses_of_one_worker_share_one_set_of_files_and_every_count_is_summed(
        tmp_path: Path) -> None:
    files = tmp_path / "metrics"
    files.mkdir()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(FORKS)], cwd=ROOT,
                          env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(files)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    found = samples(done.stdout)
    assert found[("conveyor_deployments_total", (("result", "succeeded"),))] == 4
    assert found[("conveyor_builds_total", (("result", "succeeded"),))] == 1
    assert found[("conveyor_deployment_duration_seconds_sum", (("result", "succeeded"),))] == 6
    assert found[("conveyor_lock_wait_seconds_count", ())] == 4
    assert found[("conveyor_queue_depth", (("queue", "builds"),))] == 2
    assert found[("conveyor_queue_scheduled", (("queue", "builds"),))] == 1
    names = sorted(path.name for path in files.iterdir())
    worker = names[0].split("_")[1].split(".")[0].removesuffix("-jobs")
    assert names == [f"counter_{worker}-jobs.db", f"counter_{worker}.db",
                     f"histogram_{worker}-jobs.db", f"histogram_{worker}.db"]
