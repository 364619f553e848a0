"""The `conveyor` command (SPEC §8). Exit 0 on success, 1 on a failed operation, 2 on usage
or configuration errors; errors go to stderr as one clear sentence each."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app import config as cfg
from app.settings import Settings, SettingsError

if TYPE_CHECKING:
    from app.context import Context
    from app.db import Database
    from workers.hosts import Scan

QUEUE_ORDER = ("deploys", "builds", "notify")
_COMMIT = re.compile(r"[0-9a-f]{7,40}")
_GLOB = re.compile(r"[*?\[]")


class CommandError(Exception):
    """An operation that cannot be done: one sentence for stderr, and the exit status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        return args.func(args, settings)
    except cfg.ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except CommandError as exc:
        from app.pipeline.rules import mask

        print(mask(str(exc), ()), file=sys.stderr)  # a git error may quote a URL's token
        return exc.status
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conveyor", description=" ".join(__doc__.split()))
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate conveyor.yml and print the plan")
    check.set_defaults(func=check_command)

    deploy = commands.add_parser(
        "deploy", help="queue a deployment by hand (default: head of the first branch)")
    deploy.add_argument("project")
    deploy.add_argument("environment")
    which = deploy.add_mutually_exclusive_group()
    which.add_argument("--ref", help="branch, tag or full ref (refs/heads/main)")
    which.add_argument("--sha", help="commit id (7 to 40 hexadecimal digits)")
    deploy.add_argument("--plan", action="store_true",
                        help="print what the deployment would do, change nothing")
    deploy.set_defaults(func=deploy_command)

    hosts = commands.add_parser("hosts", help="check hosts, trust their keys")
    host_commands = hosts.add_subparsers(dest="hosts_command", required=True)
    hosts_check = host_commands.add_parser(
        "check", help="connect to each host, verify its key and the tools deployments need")
    hosts_check.add_argument("project")
    hosts_check.add_argument("environment", nargs="?")
    hosts_check.set_defaults(func=hosts_check_command)
    hosts_trust = host_commands.add_parser(
        "trust", help="show each host's key fingerprint, record it in ssh.known_hosts")
    hosts_trust.add_argument("project")
    hosts_trust.add_argument("environment", nargs="?")
    hosts_trust.add_argument("--yes", action="store_true",
                             help="record unknown keys without asking")
    hosts_trust.add_argument("--replace", action="store_true",
                             help="also replace a key that changed (check it on the host first)")
    hosts_trust.set_defaults(func=hosts_trust_command)

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

    _add_internal_rq_worker(commands)
    return parser


def _add_internal_rq_worker(commands: argparse._SubParsersAction) -> None:
    """`rq-worker`, which `conveyor worker` starts: callable, but never shown in the help."""
    # argparse lists a sub-command given help=SUPPRESS as "==SUPPRESS==": give it no help
    # at all, and name only the public commands in the usage.
    commands.metavar = "{" + ",".join(commands.choices) + "}"
    rq_worker = commands.add_parser("rq-worker")
    rq_worker.add_argument("queues", nargs="+")
    rq_worker.add_argument("--with-scheduler", action="store_true")
    rq_worker.set_defaults(func=rq_worker_command)


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the pipeline file and print what each push would do."""
    config = cfg.load(settings.config_path)
    say = _printer(config.secrets())
    say(f"{config.path}: valid")
    for project in config.projects.values():
        say(f"project {project.name}: {project.provider} {project.repo}")
        say(f"  build: {len(project.build.commands)} command(s), artifact "
              f"{', '.join(project.build.artifact)}, timeout {project.build.timeout}s")
        say(f"  statuses: {'to ' + project.status.api_url if project.status else 'off'}")
        if project.notify:
            chosen = {event for target in project.notify for event in target.events}
            events = ", ".join(e for e in cfg.CHAT_EVENTS if e in chosen)
            say(f"  chat: {len(project.notify)} webhook(s) on {events}")
        for env in project.environments.values():
            say(f"  environment {env.name}: branches {', '.join(env.branches)} -> "
                  f"{len(env.hosts)} host(s) at {env.path}, keep {env.keep_releases} releases")
            for host in env.hosts:
                pinned = " (key pinned)" if host.host_key else ""
                say(f"    {host.spec}{pinned}")
    return 0


def deploy_command(args: argparse.Namespace, settings: Settings) -> int:
    """Queue a deployment of a commit (or print its plan with --plan)."""
    from app import pipeline

    _environment(cfg.load(settings.config_path), args.project, args.environment)
    ctx = _context(settings)
    project, env = _environment(ctx.config, args.project, args.environment)
    sha, ref = _commit(ctx, project, env, ref=args.ref, sha=args.sha)
    say = _printer(ctx.secrets())
    if args.plan:
        return _plan(ctx, project, env, sha, ref, say)
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    clone_url = pipeline.known_clone_url(ctx, project) or ""
    try:
        build, deployment = pipeline.deploy_by_hand(
            ctx, project, env, sha=sha, ref=ref, repository=project.repo, clone_url=clone_url,
            by=pipeline.CLI)
    except (RedisError, SQLAlchemyError) as exc:
        raise CommandError(1, f"cannot queue the deployment: {exc}") from exc
    say(f"deployment {deployment.id} of {project.name} to {env.name} queued: commit"
          f" {sha[:12]}{f' ({ref})' if ref else ''}, build {build.id} ({build.state})")
    return 0


def hosts_check_command(args: argparse.Namespace, settings: Settings) -> int:
    """Connect to each host (key verified) and report what a deployment would lack."""
    from workers import hosts

    config = cfg.load(settings.config_path)
    say = _printer(config.secrets())
    failed = 0
    for env in _environments(config, args.project, args.environment):
        for found in hosts.check(config.ssh, env):
            if found.problems:
                failed += 1
                say(f"{found.host} ({env.name}): FAILED: {'; '.join(found.problems)}")
            else:
                say(f"{found.host} ({env.name}): ok: {'; '.join(found.notes)}")
    if failed:
        raise CommandError(1, f"{failed} host(s) cannot take deployments yet (see above)")
    return 0


def hosts_trust_command(args: argparse.Namespace, settings: Settings) -> int:
    """Show each SSH host's key fingerprint; record unknown ones when confirmed (or --yes)."""
    from workers import hosts

    config = cfg.load(settings.config_path)
    known_hosts = config.ssh.known_hosts
    if known_hosts is None:
        raise CommandError(2, "ssh.known_hosts is not set in the pipeline file: it is where"
                              " Conveyor keeps the host keys it trusts")
    every = [h for env in _environments(config, args.project, args.environment)
             for h in env.hosts]
    unique = list({h.spec: h for h in every}.values())
    say = _printer(config.secrets())
    untrusted = sum(not _trust_one(known_hosts, found, args, say)
                    for found in hosts.scan(config.ssh, unique))
    if untrusted:
        raise CommandError(1, f"{untrusted} host key(s) are not trusted (see above)")
    return 0


def _trust_one(known_hosts: Path, found: Scan, args: argparse.Namespace,
               say: Callable[[str], None]) -> bool:
    """Report one host's key; record it when allowed. True when the key is trusted now."""
    from workers import hosts

    name, offered = str(found.host), found.fingerprint
    if found.status == "unreachable":
        say(f"{name}: cannot be reached: {found.error}")
        return False
    if found.status in ("trusted", "pinned"):
        how = "matches its pinned host_key" if found.status == "pinned" else "already trusted"
        say(f"{name}: {offered} ({how})")
        return True
    if found.status == "changed":
        say(f"{name}: the host key has CHANGED: expected {', '.join(found.expected)},"
              f" the host offers {offered}")
        if found.host.host_key:
            say(f"{name}: its host_key is pinned in the pipeline file: change it there")
            return False
        if not args.replace:
            say(f"{name}: not recorded; check the key on the host, then run again with"
                  " --replace")
            return False
    else:
        say(f"{name}: unknown host key {offered}")
    if not (args.yes or _confirm(f"Trust {offered} for {name}? [y/N] ")):
        say(f"{name}: not recorded")
        return False
    hosts.trust(known_hosts, found)
    say(f"{name}: recorded in {known_hosts}")
    return True


def _printer(secrets: Sequence[str]) -> Callable[[str], None]:
    """`print` for what a command shows: every line with its secrets masked (SPEC §7), as
    the deployment log and the API mask them."""
    from app.pipeline.rules import mask

    def say(text: str) -> None:
        print(mask(text, secrets))
    return say


def _confirm(question: str) -> bool:
    """Ask on the terminal; no terminal means no."""
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _context(settings: Settings) -> Context:
    """The context of a command that reads history or queues work; schema brought up to date."""
    from app import context as app_context

    ctx = app_context.load(settings)
    _migrate(ctx.db)
    return ctx


def _migrate(database: Database) -> None:
    """Bring the schema up to date, or say in one sentence why it cannot be (exit 1)."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import SchemaTooNew

    try:
        database.migrate()
    except SchemaTooNew as exc:
        raise CommandError(1, str(exc)) from exc
    except SQLAlchemyError as exc:
        url = database.engine.url.render_as_string(hide_password=True)
        raise CommandError(1, f"cannot use the database {url}: {exc}") from exc


def _environment(config: cfg.Config, project_name: str,
                 env_name: str) -> tuple[cfg.Project, cfg.Environment]:
    project = config.projects.get(project_name)
    if project is None:
        raise CommandError(2, f"there is no project {project_name!r} in {config.path}")
    env = project.environments.get(env_name)
    if env is None:
        names = ", ".join(project.environments) or "none"
        raise CommandError(2, f"project {project_name} has no environment {env_name!r}"
                              f" (it has: {names})")
    return project, env


def _environments(config: cfg.Config, project_name: str,
                  env_name: str | None) -> list[cfg.Environment]:
    if env_name is not None:
        return [_environment(config, project_name, env_name)[1]]
    project = config.projects.get(project_name)
    if project is None:
        raise CommandError(2, f"there is no project {project_name!r} in {config.path}")
    return list(project.environments.values())


def _commit(ctx: Context, project: cfg.Project, env: cfg.Environment, *, ref: str | None,
            sha: str | None) -> tuple[str, str]:
    """(full sha, full ref) to deploy. A ref (default: the environment's first branch) is
    resolved on the project's mirror; a sha is taken as given when it was built already."""
    from app import pipeline

    if sha is not None:
        if not _COMMIT.fullmatch(sha):
            raise CommandError(2, f"--sha takes a commit id of 7 to 40 lowercase hexadecimal"
                                  f" digits, not {sha!r}")
        built = pipeline.find_build(ctx, project, sha) if len(sha) == 40 else None
        if built is not None and built.state == "succeeded":
            return sha, built.ref
        full = _resolve(_mirror(ctx, project, sha if len(sha) == 40 else None), sha)
        built = pipeline.find_build(ctx, project, full)
        return full, built.ref if built else ""
    name = ref if ref is not None else _default_branch(env)
    if not name or name.startswith("-") or any(ord(c) < 32 for c in name):
        raise CommandError(2, f"{name!r} is not a branch, tag or ref")
    mirror = _mirror(ctx, project, None)
    candidates = [name] if name.startswith("refs/") else [f"refs/heads/{name}", f"refs/tags/{name}"]
    for candidate in candidates:
        try:
            return _resolve(mirror, candidate), candidate
        except CommandError:
            continue
    raise CommandError(1, f"there is no branch or tag {name!r} in {project.repo}")


def _default_branch(env: cfg.Environment) -> str:
    branch = env.branches[0] if env.branches else ""
    if not branch or _GLOB.search(branch):
        raise CommandError(2, f"environment {env.name} has no plain first branch to deploy"
                              " by default: say which with --ref or --sha")
    return branch


def _mirror(ctx: Context, project: cfg.Project, sha: str | None) -> Path:
    """The project's git mirror, fetched (for `sha` only, when given)."""
    from app import pipeline
    from workers import build

    clone_url, refusal = pipeline.clone_source(project.clone_url,
                                               pipeline.known_clone_url(ctx, project) or "")
    if not clone_url:
        raise CommandError(2, f"Conveyor does not know where the repository of {project.name}"
                              f" is: set projects.{project.name}.clone_url, or push once")
    if refusal is not None:
        raise CommandError(2, refusal)
    try:
        return build.update_mirror(ctx.settings.data_dir, project.name, clone_url,
                                   lambda _line: None, sha=sha, ssh=ctx.config.ssh,
                                   allow_file=pipeline.is_local_url(project.clone_url))
    except build.BuildError as exc:
        raise CommandError(1, f"cannot fetch the repository of {project.name}: {exc}") from exc


def _resolve(mirror: Path, revision: str) -> str:
    from workers import build

    try:
        out = build.git("rev-parse", "--verify", "--quiet", "--end-of-options",
                        f"{revision}^{{commit}}", cwd=mirror)
    except build.BuildError:
        raise CommandError(1, f"there is no commit {revision} in the repository") from None
    return out.strip()


def _plan(ctx: Context, project: cfg.Project, env: cfg.Environment, sha: str, ref: str,
          say: Callable[[str], None]) -> int:
    """Print what the deployment would do, looking at the hosts (changing nothing)."""
    from app import pipeline
    from workers import deployer, hosts

    build = pipeline.find_build(ctx, project, sha)
    artifact = None
    if build is not None and build.state == "succeeded" and build.artifact_path:
        artifact = pipeline.Artifact(build.artifact_path, build.artifact_sha256 or "",
                                     build.artifact_size or 0)
    about = f"build {build.id} ({build.state})" if build is not None else "a new build"
    looks = hosts.look(ctx.config.ssh, env, artifact.sha256 if artifact else "0" * 64,
                       artifact.size if artifact else 0)
    lines = deployer.plan(env, project=project.name, sha=sha, ref=ref, artifact=artifact,
                        build=about, hosts=looks)
    say("\n".join(lines))
    say("this is a plan: nothing was changed")
    unusable = [look.host for look in looks if look.error]
    if unusable:
        raise CommandError(1, f"{len(unusable)} host(s) cannot be used, so the deployment"
                              f" would fail: {', '.join(unusable)}")
    return 0


def _prepare(settings: Settings) -> None:
    """Check the pipeline file and bring the database schema up to date."""
    cfg.load(settings.config_path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _check_schema(settings)


def _check_schema(settings: Settings) -> None:
    """Migrate or check the schema on a connection of our own, closed before any fork."""
    from app.db import Database

    database = Database(settings.database_url)
    try:
        _migrate(database)
    finally:
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
    """`count` workers for deploys and builds, and one for notify, so that statuses go out
    while builds and deploys run. Each runs RQ's scheduler (one at a time is active per
    queue): status retries wait on it, and so do deployments waiting for their environment."""
    base = [sys.executable, "-m", "app.cli", "rq-worker"]
    general = [[*base, *QUEUE_ORDER, "--with-scheduler"] for _ in range(max(1, count))]
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
    from rq.serializers import JSONSerializer

    # Also reads the migration scripts once here, so that each job's fork need not.
    _check_schema(settings)
    from workers import recovery
    from workers.rq_worker import Worker

    connection = Redis.from_url(settings.redis_url)
    worker = Worker(args.queues, connection=connection, serializer=JSONSerializer)
    # RQ alone notices a dead worker's job late, or never: every worker process looks.
    recovery.start_scanning(settings)
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
