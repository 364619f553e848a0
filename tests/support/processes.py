"""The processes a user runs (`conveyor web`, `conveyor worker`, a plain gunicorn), started
for real by tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.support.services import free_port, wait_for_http

ROOT = Path(__file__).parents[2]  # `app` and `workers` import from here, as a user's checkout


def gunicorn_argv(port: int, workers: int = 2) -> list[str]:
    """`gunicorn 'app:create_app()'` as a systemd unit or a PaaS runs it, nothing more."""
    return [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "app:create_app()"]


def conveyor_argv(*args: str) -> list[str]:
    """The `conveyor` command with `args`."""
    return [sys.executable, "-m", "app.cli", *args]


@contextmanager
def running(commands: dict[str, list[str]], env: dict[str, str], logs: Path) -> Iterator[None]:
    """Start every command at once (output in logs/<name>.log); stop them all after."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name, argv in commands.items():
            started.append(start(name, argv, env, logs))
        yield
    finally:
        _stop(started)


def start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """Start one command in a process group of its own, output in logs/<name>.log."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "wb") as log:
        return subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """kill -9 a process and every process it started, as a lost machine would, and reap
    it. Its process group is not enough: RQ puts each work horse in a group of its own."""
    stopped: set[int] = set()
    pending = {process.pid}
    while pending:  # stopped first, so that none starts another one meanwhile
        for pid in pending:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= pending
        pending = set(_descendants(process.pid)) - stopped
    for pid in stopped:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            # The command name may hold spaces and parentheses: fields follow the last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _stop(started: list[subprocess.Popen[bytes]]) -> None:
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def conveyor_processes(env: dict[str, str], logs: Path, workers: int = 1) -> Iterator[str]:
    """Run `conveyor web` and `conveyor worker`; yield the web's base URL; stop both after."""
    port = free_port()
    commands = {"web": conveyor_argv("web", "--bind", f"127.0.0.1:{port}"),
                "worker": conveyor_argv("worker", "--count", str(workers))}
    with running(commands, env, logs):
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        yield f"http://127.0.0.1:{port}"


def read_logs(logs: Path) -> str:
    """Everything the processes printed, for a failing test's message."""
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}"
                     for p in sorted(logs.glob("*.log")))
