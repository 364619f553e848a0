"""The processes the demo runs (Redis when it must, the web, a worker) and how it waits for
them: each in a session of its own, output in a log file, all stopped at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
import requests

INSTALL_REDIS = ("install redis-server (Debian, Ubuntu: apt-get install redis-server;"
                 " macOS: brew install redis)")


class DemoError(Exception):
    """The demo cannot go on: one sentence for stderr, and the exit status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Processes:
    """The demo's child processes, by name, with their logs under `logs`."""

    logs: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        """Start `argv`; its output goes to logs/<name>.log. A session of its own keeps the
        terminal's Ctrl-C for the demo, which stops the children in order."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.log(name), "wb") as log:
            self.started[name] = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def check_alive(self) -> None:
        """Raise DemoError when a child has ended: the demo cannot work without it."""
        for name, process in self.started.items():
            if process.poll() is not None:
                raise DemoError(1, f"the {name} process stopped (exit {process.returncode});"
                                   f" its last lines:\n{tail(self.log(name))}")

    def stop_all(self) -> None:
        """Stop every child, the last started first (Redis outlives the worker using it)."""
        for process in reversed(list(self.started.values())):
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM its session, then again (RQ's cold shutdown: a job under way ends too), then
    SIGKILL whatever is left."""
    for signum, grace in ((signal.SIGTERM, 5.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, indented."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable(url: str) -> bool:
    """Whether a Redis server answers at `url`."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            return bool(client.ping())
    except (redis.RedisError, ValueError, OSError):
        return False


def redis_url(given: str | None, processes: Processes, folder: Path) -> str:
    """REDIS_URL when it answers; else a redis-server of the demo's own on a free port."""
    if given and reachable(given):
        return given
    server = shutil.which("redis-server")
    if server is None:
        if given:
            raise DemoError(2, f"REDIS_URL ({_without_password(given)}) cannot be reached"
                               f" and redis-server is not installed: start that Redis, or"
                               f" {INSTALL_REDIS}")
        raise DemoError(2, f"the demo needs Redis: set REDIS_URL to a Redis server, or"
                           f" {INSTALL_REDIS}")
    port = free_port()
    (folder / "redis").mkdir(parents=True, exist_ok=True)
    # No snapshots, no append-only file: the demo's queues need not outlive it.
    processes.start("redis", [server, "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no",
                              "--dir", str(folder / "redis")], dict(os.environ), folder)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: reachable(url), 20, f"redis-server on port {port}", processes)
    return url


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def answers(url: str) -> bool:
    """Whether `url` answers 200."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               processes: Processes) -> None:
    """Poll `condition` until it holds; DemoError when a child ends or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        processes.check_alive()
        if time.monotonic() > deadline:
            raise DemoError(1, f"{what} was not ready within {timeout:g} s")
        time.sleep(0.1)
