"""A `conveyor worker` process told to stop (SIGTERM, as Docker, systemd and `conveyor up`
do) ends at once when it has no job: RQ 3.0 with redis-py 8 used to take a minute about
every other time, waiting for its pub/sub thread to wake, and was killed by then."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from app.context import Context
from tests.support.intake import CONFIG
from tests.support.processes import start
from tests.support.stage import wait_for

TRIES = 4  # each try used to hang with a chance of one half


def test_an_idle_worker_ends_on_sigterm_each_time(
        worker_context: Callable[..., Context], tmp_path: Path) -> None:
    # The environment a worker reads and a migrated database (which one does not matter here).
    worker_context(CONFIG, f"sqlite:///{tmp_path / 'conveyor.db'}")
    for attempt in range(TRIES):
        start_and_stop(tmp_path / f"try-{attempt}")


def start_and_stop(logs: Path) -> None:
    """Start a worker, wait until it listens, SIGTERM it: it must end, with status 0."""
    worker = start("worker", [sys.executable, "-m", "app.cli", "rq-worker", "notify"], {}, logs)
    log = logs / "worker.log"
    try:
        wait_for(lambda: "Listening on" in log.read_text(errors="replace"), timeout=60,
                 what=lambda: log.read_text(errors="replace"))
        worker.send_signal(signal.SIGTERM)
        # Far below RQ's 60 s wake-up, far above what stopping takes on a loaded machine.
        assert worker.wait(timeout=20) == 0, log.read_text(errors="replace")
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker did not stop within 20 s of SIGTERM: "
                             + log.read_text(errors="replace")) from None
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
