"""The verbs that work on this machine's pipeline file, database and hosts: `check`,
`hosts check|trust`, and `deploy --plan` with the ref resolution `deploy` uses when the
pipeline file is at hand (SPEC §8)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app import config as cfg
from app.cli.output import CommandError, printer
from app.settings import Settings, SettingsError

if TYPE_CHECKING:
    from app.context import Context
    from app.db import Database
    from workers.hosts import Scan

_COMMIT = re.compile(r"[0-9a-f]{7,40}")
_GLOB = re.compile(r"[*?\[]")


def settings() -> Settings:
    """This process's settings (SPEC §2); exit 2 when an environment variable is unusable."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise CommandError(2, str(exc)) from exc


def load(settings: Settings) -> cfg.Config:
    """The pipeline file, validated; exit 2 with its error when it is not valid."""
    try:
        return cfg.load(settings.config_path)
    except cfg.ConfigError as exc:
        raise CommandError(2, str(exc)) from exc


def check(settings: Settings) -> int:
    """Validate the pipeline file and print what each push would do."""
    config = load(settings)
    say = printer(config.secrets())
    say(f"{config.path}: valid")
    say(f"artifacts: {_store(config.artifacts)}")
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


def _store(artifacts: cfg.Artifacts) -> str:
    """Where artifacts live between build and deploy, in a few words."""
    if artifacts.store != "s3":
        return "local (the build worker's data dir: workers on one machine)"
    s3 = artifacts.s3
    where = f" at {s3['endpoint_url']}" if s3.get("endpoint_url") else ""
    return f"s3://{s3['bucket']}/{s3.get('prefix', '')}{where} (credentials from AWS_*)"


def plan(settings: Settings, project_name: str, env_name: str, *, ref: str | None,
         sha: str | None) -> int:
    """Print what a deployment of the commit would do, looking at the hosts, changing
    nothing (`deploy --plan`)."""
    _environment(load(settings), project_name, env_name)
    ctx = _context(settings)
    project, env = _environment(ctx.config, project_name, env_name)
    full, full_ref = _commit(ctx, project, env, ref=ref, sha=sha)
    return _plan(ctx, project, env, full, full_ref, printer(ctx.secrets()))


def commit_to_deploy(settings: Settings, project_name: str, env_name: str, *,
                     ref: str | None, sha: str | None) -> dict[str, str] | None:
    """The body of a manual deploy with the commit resolved here, as `deploy` always did:
    a ref (default: the environment's first branch) or a short sha looked up in the
    project's mirror. None when the pipeline file is not at hand (a laptop): the server
    then takes `--ref` as the commit last pushed to it, or a full `--sha`."""
    if not settings.config_path.is_file():
        return None
    _environment(load(settings), project_name, env_name)
    ctx = _context(settings)
    project, env = _environment(ctx.config, project_name, env_name)
    full, full_ref = _commit(ctx, project, env, ref=ref, sha=sha)
    return {"sha": full, "ref": full_ref} if full_ref else {"sha": full}


def hosts_check(settings: Settings, project_name: str, env_name: str | None) -> int:
    """Connect to each host (key verified) and report what a deployment would lack."""
    from workers import hosts

    config = load(settings)
    say = printer(config.secrets())
    failed = 0
    for env in _environments(config, project_name, env_name):
        for found in hosts.check(config.ssh, env):
            if found.problems:
                failed += 1
                say(f"{found.host} ({env.name}): FAILED: {'; '.join(found.problems)}")
            else:
                say(f"{found.host} ({env.name}): ok: {'; '.join(found.notes)}")
    if failed:
        raise CommandError(1, f"{failed} host(s) cannot take deployments yet (see above)")
    return 0


def hosts_trust(settings: Settings, project_name: str, env_name: str | None, *, yes: bool,
                replace: bool) -> int:
    """Show each SSH host's key fingerprint; record unknown ones when confirmed (or --yes)."""
    from workers import hosts

    config = load(settings)
    known_hosts = config.ssh.known_hosts
    if known_hosts is None:
        raise CommandError(2, "ssh.known_hosts is not set in the pipeline file: it is where"
                              " Conveyor keeps the host keys it trusts")
    every = [h for env in _environments(config, project_name, env_name) for h in env.hosts]
    unique = list({h.spec: h for h in every}.values())
    say = printer(config.secrets())
    untrusted = sum(not _trust_one(known_hosts, found, yes, replace, say)
                    for found in hosts.scan(config.ssh, unique))
    if untrusted:
        raise CommandError(1, f"{untrusted} host key(s) are not trusted (see above)")
    return 0


def _trust_one(known_hosts: Path, found: Scan, yes: bool, replace: bool,
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
        if not replace:
            say(f"{name}: not recorded; check the key on the host, then run again with"
                " --replace")
            return False
    else:
        say(f"{name}: unknown host key {offered}")
    if not (yes or _confirm(f"Trust {offered} for {name}? [y/N] ")):
        say(f"{name}: not recorded")
        return False
    hosts.trust(known_hosts, found)
    say(f"{name}: recorded in {known_hosts}")
    return True


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


def prepare(settings: Settings) -> None:
    """Check the pipeline file and bring the database schema up to date."""
    load(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    check_schema(settings)


def check_schema(settings: Settings) -> None:
    """Migrate or check the schema on a connection of our own, closed before any fork."""
    from app.db import Database

    database = Database(settings.database_url)
    try:
        _migrate(database)
    finally:
        database.dispose()


