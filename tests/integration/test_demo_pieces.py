"""The demo's pieces against the real thing: the sample app's own tests, its restart and
health check as the hooks run them, and the Redis the demo starts when it has none."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.demo import processes as demo
from app.demo import sample
from app.demo.processes import DemoError, Processes, reachable
from tests.support.services import free_port


def _write_sample(root: Path) -> Path:
    for path, text in sample.files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def _unittest(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", "tests",
                           "-t", ".", "-v"], cwd=repo, capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_sample_s_tests_pass_and_catch_an_app_that_says_nothing(tmp_path: Path) -> None:
    repo = _write_sample(tmp_path / "hello")
    passed = _unittest(repo)
    assert passed.returncode == 0, passed.stderr
    assert "Ran 2 tests" in passed.stderr

    app = repo / "hello/app.py"
    app.write_text(app.read_text().replace('f"Hello from ', 'f"Bye from '))
    broken = _unittest(repo)
    assert broken.returncode == 1 and "test_says_hello" in broken.stderr


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[Path]:
    """An environment's deploy path; its app stopped after the test."""
    path = tmp_path / "staging"
    yield path
    pidfile = path / "hello.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text()), 15)


def _release(environment: Path, release_id: str) -> Path:
    release = environment / "releases" / release_id
    release.mkdir(parents=True)
    shutil.copytree(_write_sample(environment.parent / f"src-{release_id}") / "hello",
                    release / "hello")
    return release


def _hook(release: Path, command: str, port: int,
          release_id: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m hello.app <command> <port>` as a hook runs: in the release folder,
    with CONVEYOR_RELEASE_ID set."""
    env = {"PATH": os.environ["PATH"], "CONVEYOR_ENVIRONMENT": "staging",
           "CONVEYOR_RELEASE_ID": release_id}
    return subprocess.run([sys.executable, "-m", "hello.app", command, str(port)],
                          cwd=release, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def _served(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return response.read().decode()


def test_restart_serves_the_release_and_the_check_asks_it_which_one_it_is(
        environment: Path) -> None:
    port = free_port()
    first = _release(environment, "r1")

    started = _hook(first, "restart", port, "r1")
    assert started.returncode == 0, started.stderr
    assert _served(port) == "Hello from staging: release r1\n"
    assert _hook(first, "check", port, "r1").returncode == 0
    wrong = _hook(first, "check", port, "r2")
    assert wrong.returncode == 1 and "not release r2" in wrong.stderr

    pid = (environment / "hello.pid").read_text()
    second = _release(environment, "r2")
    assert _hook(second, "restart", port, "r2").returncode == 0
    assert _served(port) == "Hello from staging: release r2\n"  # the old server made way
    assert (environment / "hello.pid").read_text() != pid
    assert _hook(second, "check", port, "r2").returncode == 0


def test_redis_url_that_answers_is_used_as_it_is(tmp_path: Path, redis_url: str) -> None:
    processes = Processes(tmp_path / "logs")
    assert demo.redis_url(redis_url, processes, tmp_path) == redis_url
    assert processes.started == {}


def test_without_redis_the_demo_starts_a_redis_server_of_its_own(tmp_path: Path) -> None:
    processes = Processes(tmp_path / "logs")
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    try:
        url = demo.redis_url(unreachable, processes, tmp_path)
        assert url != unreachable and reachable(url)
        assert list(processes.started) == ["redis"]
    finally:
        processes.stop_all()
    assert not reachable(url)


def test_without_redis_or_redis_server_it_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DemoError) as raised:
        demo.redis_url(None, Processes(tmp_path / "logs"), tmp_path)
    assert raised.value.status == 2
    assert str(raised.value) == (
        "the demo needs Redis: set REDIS_URL to a Redis server, or install redis-server"
        " (Debian, Ubuntu: apt-get install redis-server; macOS: brew install redis)")
