"""The web process as a systemd unit or a PaaS runs it: a plain `gunicorn 'app:create_app()'`
with only environment variables, no worker, on a new database; and what it says when the
database is newer than the code, or Redis or the database cannot be reached."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import requests

from tests.support import conveyor, deliveries
from tests.support.processes import conveyor_argv, gunicorn_argv, read_logs, running
from tests.support.schema import FUTURE, NEWER, heads, revisions, stamp_newer
from tests.support.services import free_port, wait_for_http

CONFIG = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${WEBHOOK_SECRET}
    build: {commands: ["true"], artifact: dist}
    environments:
      staging: {branches: [main], hosts: [local], path: /srv/shop}
"""
Push = Callable[[str], requests.Response]


@pytest.fixture
def environment(tmp_path: Path, redis_url: str,
                redis_db: redis.Redis) -> Callable[..., dict[str, str]]:
    """Factory: the environment variables of the web process, for a database and a Redis."""
    def make(database_url: str, redis: str = redis_url) -> dict[str, str]:
        return conveyor.settings(tmp_path, database_url, redis, CONFIG)[1]
    return make


def push_to(base: str, after: str = "a" * 40) -> requests.Response:
    """Post GitHub's real push payload, signed, for a new commit `after` on main."""
    body = conveyor.push_payload(deliveries.fixture("github/push-branch-updated.json"),
                                 repo="acme/shop", clone_url="https://example.invalid/shop.git",
                                 ref="refs/heads/main", before="1" * 40, after=after)
    return requests.post(f"{base}/hooks/github", data=body, timeout=30,
                         headers=deliveries.github(body, "push", f"delivery-{after[:8]}"))


def readyz(base: str) -> requests.Response:
    return requests.get(f"{base}/readyz", timeout=30)


@contextmanager
def serve(tmp_path: Path, env: dict[str, str], count: int = 1,
          conveyor_web: bool = False) -> Iterator[list[str]]:
    """Start `count` plain gunicorns (and a `conveyor web` too) at once; yield their URLs
    once each answers /healthz."""
    ports = [free_port() for _ in range(count + conveyor_web)]
    commands = {f"gunicorn-{n}": gunicorn_argv(port) for n, port in enumerate(ports[:count])}
    if conveyor_web:
        commands["conveyor-web"] = conveyor_argv("web", "--bind", f"127.0.0.1:{ports[-1]}")
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    with running(commands, env, tmp_path / "logs"):
        for url in urls:
            try:
                wait_for_http(f"{url}/healthz", timeout=90)
            except TimeoutError as exc:
                raise AssertionError(read_logs(tmp_path / "logs")) from exc
        yield urls


@pytest.mark.timeout(180)
def test_plain_gunicorn_on_a_new_database_takes_a_push_with_no_worker(
        tmp_path: Path, database_url: str, environment: Callable[..., dict[str, str]],
        redis_db: redis.Redis) -> None:
    with serve(tmp_path, environment(database_url)) as [web]:
        answer = push_to(web)
        assert answer.status_code == 202, (answer.text, read_logs(tmp_path / "logs"))
        assert readyz(web).json() == {"ready": True,
                                      "checks": {"redis": "ok", "database": "ok"}}
    assert redis_db.llen("rq:queue:notify") == 1  # the delivery's dispatch job, for a worker


@pytest.mark.timeout(240)
@pytest.mark.parametrize("with_conveyor_web", [False, True],
                         ids=["two-gunicorns", "gunicorn-and-conveyor-web"])
def test_web_processes_started_at_once_on_one_new_database_all_come_up(
        tmp_path: Path, database_url: str, environment: Callable[..., dict[str, str]],
        with_conveyor_web: bool) -> None:
    count = 1 if with_conveyor_web else 2
    with serve(tmp_path, environment(database_url), count, with_conveyor_web) as webs:
        for n, web in enumerate(webs):
            answer = push_to(web, after="ab"[n] * 40)
            assert answer.status_code == 202, (answer.text, read_logs(tmp_path / "logs"))
            assert readyz(web).status_code == 200
        repeated = push_to(webs[1], after="a" * 40)  # the same delivery again: done already
        assert repeated.status_code == 200, repeated.text


@pytest.mark.timeout(180)
def test_a_database_newer_than_the_code_is_named_by_readyz_webhooks_and_the_worker(
        tmp_path: Path, database_url: str, environment: Callable[..., dict[str, str]]) -> None:
    stamp_newer(database_url)
    env = environment(database_url)
    with serve(tmp_path, env) as [web]:
        ready = readyz(web)
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"redis": "ok", "database": NEWER}
        answer = push_to(web)
        assert (answer.status_code, answer.json()) == (
            503, {"error": "service unavailable", "detail": NEWER})
    worker = subprocess.run(conveyor_argv("worker"), env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert (worker.returncode, worker.stderr) == (1, NEWER + "\n")
    assert revisions(database_url) == {*heads(), FUTURE}  # nobody migrated it


@pytest.mark.timeout(180)
def test_redis_down_readyz_says_redis_and_a_webhook_503_says_redis(
        tmp_path: Path, database_url: str, environment: Callable[..., dict[str, str]]) -> None:
    env = environment(database_url, redis=f"redis://127.0.0.1:{free_port()}/0")
    with serve(tmp_path, env) as [web]:
        checks = readyz(web).json()["checks"]
        assert checks["redis"].startswith("unreachable") and checks["database"] == "ok"
        answer = push_to(web)
        assert (answer.status_code, answer.json()["detail"]) == (
            503, "Redis cannot be reached; redeliver later")


@pytest.mark.timeout(180)
def test_database_unreachable_at_start_the_web_still_starts_and_says_so(
        tmp_path: Path, environment: Callable[..., dict[str, str]]) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/conveyor"
    with serve(tmp_path, environment(closed)) as [web]:
        ready = readyz(web)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unreachable: OperationalError"
        assert ready.json()["checks"]["redis"] == "ok"
        answer = push_to(web)
        assert (answer.status_code, answer.json()["detail"]) == (
            503, "the database cannot be reached; redeliver later")


@pytest.mark.timeout(180)
def test_a_database_that_becomes_reachable_is_migrated_on_a_later_request(
        tmp_path: Path, environment: Callable[..., dict[str, str]]) -> None:
    # SQLite cannot open a folder; once the folder is gone it creates the file.
    blocked = tmp_path / "history.db"
    blocked.mkdir()
    with serve(tmp_path, environment(f"sqlite:///{blocked}")) as [web]:
        assert readyz(web).json()["checks"]["database"] == "unreachable: OperationalError"
        blocked.rmdir()
        answer = push_to(web)
        assert answer.status_code == 202, (answer.text, read_logs(tmp_path / "logs"))
        assert readyz(web).status_code == 200
