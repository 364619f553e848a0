"""The processes `conveyor` runs (SPEC §2): `web` (gunicorn), `worker` (RQ workers), `up`
(both, for one machine), and the hidden `rq-worker` that `worker` starts."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from app.cli import local
from app.cli.output import CommandError
from app.settings import Settings

QUEUE_ORDER = ("deploys", "builds", "notify")


def web(settings: Settings, bind: str, workers: int) -> int:
    """Bring the schema up to date, then become gunicorn serving `app:create_app()`."""
    local.prepare(settings)
    metrics_dir(settings)
    os.execv(sys.executable, gunicorn_argv(bind, workers))  # noqa: S606
    return 1  # pragma: no cover - execv does not return


def gunicorn_argv(bind: str, workers: int) -> list[str]:
    """The web process's command line."""
    # The heartbeat file lives in memory: on a disk-backed /tmp it can block workers.
    heartbeat_dir = "/dev/shm"  # noqa: S108
    return [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers),
            "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-",
            "--worker-tmp-dir", heartbeat_dir, "--config", "python:app.gunicorn_conf",
            "app:create_app()"]


def worker(settings: Settings, queues: Sequence[str], count: int) -> int:
    """Run RQ workers (see `worker_argvs`) until told to stop."""
    unknown = [queue for queue in queues if queue not in QUEUE_ORDER]
    if unknown:
        raise CommandError(2, f"there is no queue {unknown[0]!r}; the queues are"
                              f" {', '.join(QUEUE_ORDER)}")
    local.prepare(settings)
    metrics_dir(settings)
    serve_metrics(settings)
    return supervise(worker_argvs(count, queues))


def metrics_dir(settings: Settings) -> None:
    """Where this machine's processes keep their metric files (for them and their children):
    PROMETHEUS_MULTIPROC_DIR when given, else the data directory's `metrics`."""
    from app.metrics import MULTIPROC_ENV

    directory = os.environ.get(MULTIPROC_ENV) or str(settings.data_dir / "metrics")
    Path(directory).mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = directory


def serve_metrics(settings: Settings) -> None:
    """On a machine without the web process: this machine's metrics at CONVEYOR_METRICS_PORT
    (`9100`, on 127.0.0.1, or `ADDRESS:9100`), when it is set. It has no token: bind it
    where only Prometheus reaches."""
    given = os.environ.get("CONVEYOR_METRICS_PORT")
    if not given:
        return
    address, _, port = given.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(2, f"CONVEYOR_METRICS_PORT: {given[:40]!r} is not a port "
                              "(9100, or ADDRESS:9100)")
    from prometheus_client import start_http_server

    from app.metrics import scrape
    from app.queue import Jobs, connect

    jobs = Jobs(connect(settings.redis_url))
    start_http_server(int(port), addr=address.strip("[]") or "127.0.0.1",
                      registry=scrape(jobs.depths))


def worker_argvs(count: int, queues: Sequence[str] = ()) -> list[list[str]]:
    """`count` workers for the queues (by default all), and one more for notify alone when
    it is among others, so that statuses go out while builds and deploys run. Each runs
    RQ's scheduler (one at a time is active per queue): status retries wait on it, and so
    do deployments waiting for their environment."""
    base = [sys.executable, "-m", "app.cli", "rq-worker"]
    chosen = [queue for queue in QUEUE_ORDER if queue in (queues or QUEUE_ORDER)]
    general = [[*base, *chosen, "--with-scheduler"] for _ in range(max(1, count))]
    if "notify" not in chosen or chosen == ["notify"]:
        return general
    return [*general, [*base, "notify", "--with-scheduler"]]


def up(settings: Settings, bind: str, count: int) -> int:
    """Web and workers together, with an API token made for this run if none is set."""
    env = dict(os.environ)
    if not settings.api_token:
        env["CONVEYOR_API_TOKEN"] = secrets.token_urlsafe(24)
        print(f"API token for this run: {env['CONVEYOR_API_TOKEN']}", flush=True)
    local.prepare(settings)
    metrics_dir(settings)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", os.environ["PROMETHEUS_MULTIPROC_DIR"])
    print(f"Conveyor is listening on http://{bind}", flush=True)
    return supervise([gunicorn_argv(bind, 2), *worker_argvs(count)], env)


def rq_worker(settings: Settings, queues: Sequence[str], with_scheduler: bool) -> int:
    """One RQ worker on `queues` (JSON serializer), scanning for dead workers' jobs."""
    from redis import Redis
    from rq.serializers import JSONSerializer

    from app import metrics

    metrics_dir(settings)
    metrics.share_files_across_forks()  # before anything is recorded in this process
    # Also reads the migration scripts once here, so that each job's fork need not.
    local.check_schema(settings)
    from workers import recovery
    from workers.rq_worker import Worker

    connection = Redis.from_url(settings.redis_url)
    rq = Worker(list(queues), connection=connection, serializer=JSONSerializer)
    # RQ alone notices a dead worker's job late, or never: every worker process looks.
    recovery.start_scanning(settings)
    rq.work(with_scheduler=with_scheduler)
    return 0


def supervise(argvs: list[list[str]], env: dict[str, str] | None = None) -> int:
    """Run the processes together; when one ends or we are told to stop, stop them all."""
    children = [subprocess.Popen(argv, env=env) for argv in argvs]

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    try:
        _pid, wait_status = os.wait()
        status = os.waitstatus_to_exitcode(wait_status)
    except ChildProcessError:
        pass
    stop(signal.SIGTERM, None)
    for child in children:
        child.wait()
    return 0 if status in (0, -signal.SIGTERM) else 1
