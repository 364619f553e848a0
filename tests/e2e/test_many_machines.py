"""Workers on several machines: a build worker (`conveyor worker builds`) and a deploy worker
(`conveyor worker deploys notify`), each with a data dir of its own and nothing shared but
Redis, PostgreSQL and the artifacts' bucket (moto's S3 server), the web a real gunicorn. A
signed push is built on one "machine" and goes live on sshd hosts from the other, which
fetches the artifact into its cache and makes its own git mirror for what it reads there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import create_engine, select

from app.models import Build
from tests.support import conveyor
from tests.support.chat import (
    ChatWebhook,
    chat_webhook_fixture,  # noqa: F401 - found by name
)
from tests.support.deliveries import fixture
from tests.support.gitrepo import GitRepo
from tests.support.processes import ROOT, conveyor_argv, read_logs, start
from tests.support.s3 import (  # noqa: F401 - fixtures are found by name
    SECRET_KEY,
    S3Server,
    s3_fixture,
    s3_process_fixture,
)
from tests.support.services import free_port, postgres_database, wait_for_http
from tests.support.sshd import SshFleet

PIPELINE = """\
server:
  public_url: https://deploy.example.com
ssh:
  key: {key}
  known_hosts: {known_hosts}
  connect_timeout: 10s
  command_timeout: 2m
{artifacts}projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    build:
      commands: ["mkdir -p dist && cp app.txt dist/app.txt"]
      artifact: dist
      timeout: 1m
    environments:
      staging:
        branches: [main]
        hosts: [{hosts}]
        path: {path}
        keep_releases: 3
    notify:
      - slack: {chat}
        events: [succeeded, failed]
"""


@contextmanager
def machines(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The web, a build worker and a deploy worker, each with its own data dir (as on three
    machines); the web's URL. Stopped after."""
    port = free_port()
    commands = {"web": conveyor_argv("web", "--bind", f"127.0.0.1:{port}"),
                "builder": conveyor_argv("worker", "--count", "1", "builds"),
                "deployer": conveyor_argv("worker", "--count", "1", "deploys", "notify")}
    started = []
    try:
        for name, argv in commands.items():
            own = {**env, "CONVEYOR_DATA_DIR": str(tmp_path / f"machine-{name}")}
            started.append(start(name, argv, own, tmp_path / "logs"))
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            process.wait(timeout=60)


def push(web: str, repo: GitRepo, content: str) -> tuple[str, int]:
    """Commit and deliver a signed push; (the commit's sha, its staging deployment's id)."""
    before = repo.sha("main")
    after = repo.commit({"app.txt": content}, message=f"Ship {content}")
    body = conveyor.push_payload(fixture("github/push-branch-updated.json"), repo="acme/shop",
                                 clone_url=repo.url, ref="refs/heads/main", before=before,
                                 after=after)
    answer = requests.post(f"{web}/hooks/github", data=body, timeout=10,
                           headers=conveyor.signed_headers(body, "push", str(uuid.uuid4())))
    assert answer.status_code == 202, answer.text
    return after, answer.json()["deployments"][0]


def stored_builds(database_url: str) -> list[tuple[str, str]]:
    """(artifact path, sha256) of every build in the history, oldest first."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Build.artifact_path, Build.artifact_sha256)
                                      .order_by(Build.id)).all()
    finally:
        engine.dispose()
    return [(str(path), str(sha256)) for path, sha256 in rows]


def api(web: str, path: str) -> Any:
    answer = requests.get(f"{web}/api{path}", timeout=10,
                          headers={"Authorization": f"Bearer {conveyor.API_TOKEN}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def ended(web: str, deployment_id: int, logs: Path, timeout: float = 150) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = api(web, f"/deployments/{deployment_id}")
        if found["state"] in ("succeeded", "failed", "error", "canceled", "superseded"):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"deployment {deployment_id} still {found['state']}\n"
                                 f"{read_logs(logs)}")
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_a_push_built_on_one_machine_goes_live_from_another(
        tmp_path: Path, redis_url: str, redis_db: redis.Redis, s3: S3Server,
        ssh_fleet: Callable[[int], SshFleet], git_repo: GitRepo,
        chat_webhook: ChatWebhook) -> None:
    fleet = ssh_fleet(2)
    text = PIPELINE.format(key=fleet.client_key, known_hosts=fleet.known_hosts,
                           artifacts=s3.settings(), clone_url=git_repo.url,
                           hosts=", ".join(h.spec for h in fleet.hosts), path=fleet.deploy_path,
                           chat=chat_webhook.url)
    logs = tmp_path / "logs"
    with postgres_database() as database_url:
        _settings, env = conveyor.settings(tmp_path, database_url, redis_url, text, s3.env)
        with machines(env, tmp_path) as web:
            first_sha, first_id = push(web, git_repo, "v1")
            first = ended(web, first_id, logs)
            assert first["state"] == "succeeded", (first, read_logs(logs))
            second_sha, second_id = push(web, git_repo, "v2")
            second = ended(web, second_id, logs)
            assert second["state"] == "succeeded", (second, read_logs(logs))
            builds = stored_builds(database_url)
            log = api(web, f"/deployments/{second_id}/log")
            deadline = time.monotonic() + 60
            while len(chat_webhook.messages) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)

    for host in fleet.hosts:
        assert os.readlink(host.root / "current") == f"releases/{second['release']}"
        assert (host.root / "current/dist/app.txt").read_text() == "v2"
    # Built on the build machine, kept in the bucket, never on the deploy machine's disk
    # but in its cache.
    builder, deployer = tmp_path / "machine-builder", tmp_path / "machine-deployer"
    assert [path for path, _sha256 in builds] == [
        f"s3://{s3.bucket}/shop/shop/{sha256}.tar.gz" for _path, sha256 in builds]
    assert len(builds) == 2 and len(s3.objects()) == 6  # each: artifact, sha256, index
    assert not list(builder.rglob("*.tar.gz")) and not list(builder.rglob("*.index.json"))
    cached = sorted(p.name for p in (deployer / "cache/artifacts/shop").glob("*.tar.gz"))
    assert cached == sorted(f"{sha256}.tar.gz" for _path, sha256 in builds)
    assert not (deployer / "workspaces").exists()
    text_of_log = json.dumps(log)
    assert "fetched the artifact from s3://" in text_of_log and "sha256 verified" in text_of_log
    # The deploy machine made its own mirror to order the two commits (forward only) and
    # to tell chat what the second deployment added.
    assert (deployer / "mirrors/shop.git/HEAD").exists()
    assert len(chat_webhook.messages) == 2, chat_webhook.messages
    assert chat_webhook.violations == []
    assert "Ship v2" in json.dumps(chat_webhook.messages[1])
    # The AWS secret went nowhere: not in any process's output, nor in the history.
    assert SECRET_KEY not in read_logs(logs) and SECRET_KEY not in text_of_log
    assert (first_sha, second_sha) == (first["sha"], second["sha"])


def test_an_unknown_queue_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "app.cli", "worker", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "there is no queue 'nope'; the queues are deploys, builds, notify" in done.stderr
