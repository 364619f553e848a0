"""The processes a user runs (`conveyor web`, `conveyor worker`, a plain gunicorn), started
for real by tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
    environ = {**os.environ, **env}
    logs.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name, argv in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                started.append(subprocess.Popen(argv, env=environ, cwd=ROOT, stdout=log,
                                                stderr=subprocess.STDOUT,
                                                start_new_session=True))
        yield
    finally:
        _stop(started)


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
