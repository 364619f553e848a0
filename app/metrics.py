"""Prometheus metrics: what the webhook routes, the pipeline and the deploy job record, and the
text `/metrics` serves.

Every process records into prometheus-client's multiprocess files when
`PROMETHEUS_MULTIPROC_DIR` is set (`conveyor web`, `worker` and `up` set it to
`$CONVEYOR_DATA_DIR/metrics` unless it is given), and `/metrics` sums the files of every
process on the machine: gunicorn's workers and RQ's workers and their work horses. A plain
`gunicorn 'app:create_app()'` without it serves each process's own figures.
Queue depths are read from Redis when scraped. Recording never fails the caller: a metric
that cannot be written is logged and dropped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUILD_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
DEPLOYMENT_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
LOCK_WAIT_BUCKETS = (0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class _Metrics:
    deliveries: Any
    builds: Any
    deployments: Any
    build_seconds: Any
    deployment_seconds: Any
    lock_wait_seconds: Any


def multiprocess_dir() -> str | None:
    """The directory of this machine's metric files, when in multiprocess mode."""
    return os.environ.get(MULTIPROC_ENV) or None


def delivery(provider: str, code: int) -> None:
    """A webhook delivery was answered with `code`."""
    _safely(lambda m: m.deliveries.labels(provider=provider, code=str(code)).inc())


def finished(kind: str, result: str, seconds: float | None) -> None:
    """A build or deployment (`kind`) ended in `result`; `seconds` it ran, if it ran."""
    def record(m: _Metrics) -> None:
        counter, histogram = ((m.builds, m.build_seconds) if kind == "build"
                              else (m.deployments, m.deployment_seconds))
        counter.labels(result=result).inc()
        if seconds is not None:
            histogram.labels(result=result).observe(max(0.0, seconds))
    _safely(record)


def lock_wait(seconds: float) -> None:
    """A deploy job got its environment's lock after waiting `seconds` (0: it was free)."""
    _safely(lambda m: m.lock_wait_seconds.observe(max(0.0, seconds)))


def exposition(queue_depths: Callable[[], dict[str, tuple[int, int]]]) -> tuple[bytes, str]:
    """The text of /metrics and its content type: every process's metrics, and each queue's
    jobs waiting and scheduled as `queue_depths()` reads them now."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(scrape(queue_depths)), CONTENT_TYPE_LATEST  # type: ignore[arg-type]


def scrape(queue_depths: Callable[[], dict[str, tuple[int, int]]]) -> Any:
    """A registry-like object (`collect()`) of what one scrape shows, for prometheus-client's
    own HTTP server (`CONVEYOR_METRICS_PORT`) as for /metrics."""
    return _Scrape(queue_depths)


def share_files_across_forks() -> None:
    """Set up an RQ worker process (before anything is recorded in it). RQ forks a work horse
    per job; by default each horse would leave its own files behind, one set per job. The
    horses of one worker run one at a time, so they share one set (`<pid>-jobs`), the worker
    keeps its own, and each horse starts with fresh metric objects (no lock held by the
    worker's threads at the fork is inherited)."""
    if not multiprocess_dir():
        return
    from prometheus_client import values

    worker = os.getpid()

    def identity() -> str:
        pid = os.getpid()
        if pid != worker and os.getppid() == worker:  # a horse; anything it forks is not
            return f"{worker}-jobs"
        return str(pid)

    def fresh() -> None:
        values.ValueClass = values.MultiProcessValue(identity)
        _metrics.cache_clear()

    fresh()
    os.register_at_fork(after_in_child=fresh)


# -- inside -------------------------------------------------------------------------------------


@cache
def _process_registry() -> Any:
    """Where a process not in multiprocess mode keeps its metrics."""
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


@cache
def _metrics() -> _Metrics:
    from prometheus_client import Counter, Histogram

    # In multiprocess mode the files are the registry; the scrape reads them.
    registry = None if multiprocess_dir() else _process_registry()
    return _Metrics(
        deliveries=Counter("conveyor_deliveries", "Webhook deliveries by forge and answer code",
                           ["provider", "code"], registry=registry),
        builds=Counter("conveyor_builds", "Builds ended, by result", ["result"],
                       registry=registry),
        deployments=Counter("conveyor_deployments", "Deployments ended, by result", ["result"],
                            registry=registry),
        build_seconds=Histogram("conveyor_build_duration_seconds",
                                "How long builds ran, by result", ["result"],
                                buckets=BUILD_BUCKETS, registry=registry),
        deployment_seconds=Histogram("conveyor_deployment_duration_seconds",
                                     "How long deployments ran, by result", ["result"],
                                     buckets=DEPLOYMENT_BUCKETS, registry=registry),
        lock_wait_seconds=Histogram("conveyor_lock_wait_seconds",
                                    "How long deploy jobs waited for their environment's lock",
                                    buckets=LOCK_WAIT_BUCKETS, registry=registry),
    )


def _safely(record: Callable[[_Metrics], None]) -> None:
    try:
        record(_metrics())
    except Exception as exc:  # a metric is never worth a failed delivery or deployment
        log.warning("a metric was not recorded: %s: %s", type(exc).__name__, exc)


class _Scrape:
    """What one scrape collects: the metrics of every process, then the queues."""

    def __init__(self, queue_depths: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self._queue_depths = queue_depths

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.multiprocess import MultiProcessCollector

        directory = multiprocess_dir()
        if directory and os.path.isdir(directory):
            yield from MultiProcessCollector(None, directory).collect()
        else:
            _metrics()  # the names appear, at zero, before anything happened
            yield from _process_registry().collect()
        try:
            depths = self._queue_depths()
        except RedisError as exc:
            log.warning("queue depths not read: %s", type(exc).__name__)
            depths = {}
        waiting = GaugeMetricFamily("conveyor_queue_depth", "Jobs waiting on each queue",
                                    labels=["queue"])
        scheduled = GaugeMetricFamily("conveyor_queue_scheduled",
                                      "Jobs scheduled for later on each queue (retries, "
                                      "deployments waiting for their environment)",
                                      labels=["queue"])
        for queue, (queued, later) in sorted(depths.items()):
            waiting.add_metric([queue], queued)
            scheduled.add_metric([queue], later)
        yield waiting
        yield scheduled
