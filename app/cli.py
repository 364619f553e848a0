"""The `conveyor` command (SPEC §8). Exit 0 on success, 1 on a failed operation, 2 on usage
or configuration errors; errors go to stderr as one clear sentence each."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence

from app import config as cfg
from app.settings import Settings

QUEUE_ORDER = ("deploys", "builds", "notify")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        return args.func(args, settings)
    except cfg.ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate conveyor.yml and print the plan")
    check.set_defaults(func=check_command)

    web = commands.add_parser("web", help="run the web process (gunicorn)")
    web.add_argument("--bind", default=os.environ.get("CONVEYOR_BIND", "127.0.0.1:8000"))
    web.add_argument("--workers", type=int, default=2)
    web.set_defaults(func=web_command)

    worker = commands.add_parser("worker", help="run RQ workers on builds, deploys and notify")
    worker.add_argument("--count", type=int, default=2,
                        help="workers for builds and deploys (one more serves notify)")
    worker.set_defaults(func=worker_command)

    up = commands.add_parser("up", help="web and workers together, for one machine")
    up.add_argument("--bind", default=os.environ.get("CONVEYOR_BIND", "127.0.0.1:8000"))
    up.add_argument("--count", type=int, default=2)
    up.set_defaults(func=up_command)

    rq_worker = commands.add_parser("rq-worker", help=argparse.SUPPRESS)
    rq_worker.add_argument("queues", nargs="+")
    rq_worker.add_argument("--with-scheduler", action="store_true")
    rq_worker.set_defaults(func=rq_worker_command)
    return parser


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the pipeline file and print what each push would do."""
    config = cfg.load(settings.config_path)
    print(f"{config.path}: valid")
    for project in config.projects.values():
        print(f"project {project.name}: {project.provider} {project.repo}")
        print(f"  build: {len(project.build.commands)} command(s), artifact "
              f"{', '.join(project.build.artifact)}, timeout {project.build.timeout}s")
        print(f"  statuses: {'to ' + project.status.api_url if project.status else 'off'}")
        for env in project.environments.values():
            print(f"  environment {env.name}: branches {', '.join(env.branches)} -> "
                  f"{len(env.hosts)} host(s) at {env.path}, keep {env.keep_releases} releases")
            for host in env.hosts:
                pinned = " (key pinned)" if host.host_key else ""
                print(f"    {host.spec}{pinned}")
    return 0


def _prepare(settings: Settings) -> None:
    """Check the pipeline file and bring the database schema up to date."""
    from app.db import Database

    cfg.load(settings.config_path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.database_url)
    database.migrate()
    database.dispose()


def web_command(args: argparse.Namespace, settings: Settings) -> int:
    _prepare(settings)
    os.execv(sys.executable, _gunicorn_argv(args.bind, args.workers))  # noqa: S606
    return 1  # pragma: no cover - execv does not return


def _gunicorn_argv(bind: str, workers: int) -> list[str]:
    # The heartbeat file lives in memory: on a disk-backed /tmp it can block workers.
    heartbeat_dir = "/dev/shm"  # noqa: S108
    return [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers),
            "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-",
            "--worker-tmp-dir", heartbeat_dir, "app:create_app()"]


def worker_command(args: argparse.Namespace, settings: Settings) -> int:
    _prepare(settings)
    return _supervise(_worker_argvs(args.count))


def _worker_argvs(count: int) -> list[list[str]]:
    """`count` workers for deploys and builds, and one for notify that also runs the scheduler,
    so that statuses go out while builds and deploys run."""
    base = [sys.executable, "-m", "app.cli", "rq-worker"]
    general = [[*base, *QUEUE_ORDER] for _ in range(max(1, count))]
    return [*general, [*base, "notify", "--with-scheduler"]]


def up_command(args: argparse.Namespace, settings: Settings) -> int:
    env = dict(os.environ)
    if not settings.api_token:
        env["CONVEYOR_API_TOKEN"] = secrets.token_urlsafe(24)
        print(f"API token for this run: {env['CONVEYOR_API_TOKEN']}", flush=True)
    _prepare(settings)
    print(f"Conveyor is listening on http://{args.bind}", flush=True)
    return _supervise([_gunicorn_argv(args.bind, 2), *_worker_argvs(args.count)], env)


def rq_worker_command(args: argparse.Namespace, settings: Settings) -> int:
    from redis import Redis
    from rq import Worker
    from rq.serializers import JSONSerializer

    connection = Redis.from_url(settings.redis_url)
    worker = Worker(args.queues, connection=connection, serializer=JSONSerializer)
    worker.work(with_scheduler=args.with_scheduler)
    return 0


def _supervise(argvs: list[list[str]], env: dict[str, str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
