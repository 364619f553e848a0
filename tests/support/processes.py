"""The processes a user runs (`conveyor web`, `conveyor worker`), started for real by tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.services import free_port, wait_for_http


@contextmanager
def conveyor_processes(env: dict[str, str], logs: Path, workers: int = 1) -> Iterator[str]:
    """Run `conveyor web` and `conveyor worker`; yield the web's base URL; stop both after."""
    port = free_port()
    environ = {**os.environ, **env}
    logs.mkdir(parents=True, exist_ok=True)
    commands = {
        "web": [sys.executable, "-m", "app.cli", "web", "--bind", f"127.0.0.1:{port}"],
        "worker": [sys.executable, "-m", "app.cli", "worker", "--count", str(workers)],
    }
    running: list[subprocess.Popen[bytes]] = []
    try:
        for name, argv in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                running.append(subprocess.Popen(argv, env=environ, stdout=log,
                                                stderr=subprocess.STDOUT,
                                                start_new_session=True))
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        for process in running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def read_logs(logs: Path) -> str:
    """Everything the processes printed, for a failing test's message."""
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}"
                     for p in sorted(logs.glob("*.log")))
