"""gunicorn's settings for `conveyor web` and `conveyor up` (`--config python:app.gunicorn_conf`).

A plain `gunicorn 'app:create_app()'` runs without them; what they add is the metrics'
bookkeeping: a gunicorn worker that exits has its live gauges dropped (prometheus-client's
multiprocess mode), while its counters and histograms still count.
"""

from __future__ import annotations

import os
from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's hook, in the arbiter, when a worker has exited."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
