"""The verbs of the `conveyor` command (SPEC §8) as click commands: options, help and an
example each; the work is done in `local`, `operations`, `reading` and `processes`."""

from __future__ import annotations

import os

import click

from app.cli import local, operations, processes, reading
from app.cli.client import Client

EXIT_CODES = ("\b\nExit status: 0 on success, 1 on a failed operation, 2 on usage or"
              " configuration errors;\nerrors go to stderr as one clear sentence.")
API = ("It talks to the API at CONVEYOR_URL (default http://127.0.0.1:8000) with"
       " CONVEYOR_API_TOKEN, so it works from a laptop as well as on the server.")
WAIT = "follow the deployment until it ends: exit 0 if it succeeded, 1 if not"
JSON = "print the API's JSON answer, for scripts"
SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _example(*lines: str) -> str:
    """A help epilog of examples, kept as written (\b stops click rewrapping it)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@click.group(context_settings=SETTINGS, epilog=EXIT_CODES)
def cli() -> None:
    """Conveyor: a git push becomes one build, deployed over SSH to every host."""


@cli.command(epilog=_example("conveyor check", "CONVEYOR_CONFIG=ci/conveyor.yml conveyor check"))
def check() -> int:
    """Validate conveyor.yml and print the plan."""
    return local.check(local.settings())


@cli.command(epilog=_example("conveyor status", "conveyor status shop --dora",
                             "conveyor status --json | jq '.projects[].name'"))
@click.argument("project", required=False)
@click.option("--dora", is_flag=True, help="also the four DORA measures per environment")
@click.option("--json", "as_json", is_flag=True, help=JSON)
def status(project: str | None, dora: bool, as_json: bool) -> int:
    """Environments, the release live on each host, and the last deployments.

    Read from the API (CONVEYOR_URL, CONVEYOR_API_TOKEN)."""
    return reading.status(Client.from_env(), project, dora=dora, json=as_json)


@cli.command(epilog=_example("conveyor logs 42", "conveyor logs 42 --follow",
                             "conveyor logs 7 --build"))
@click.argument("deployment", type=int, metavar="DEPLOYMENT")
@click.option("--follow", "-f", is_flag=True, help="keep printing lines until it ends")
@click.option("--build", is_flag=True, help="the number is a build's: print the build's log")
def logs(deployment: int, follow: bool, build: bool) -> int:
    """Print a deployment's log (or a build's, with --build)."""
    return reading.logs(Client.from_env(), deployment, build=build, follow=follow)


@cli.command(epilog=_example("conveyor deploy shop staging",
                             "conveyor deploy shop production --ref v1.4.0 --wait",
                             "conveyor deploy shop staging --sha 3f2a9c1 --plan"))
@click.argument("project")
@click.argument("environment")
@click.option("--ref", help="branch, tag or full ref (refs/heads/main)")
@click.option("--sha", help="commit id (7 to 40 hexadecimal digits; 40 without the pipeline"
                            " file)")
@click.option("--plan", is_flag=True, help="print what the deployment would do, change nothing"
                                           " (runs here, reading the pipeline file and hosts)")
@click.option("--wait", is_flag=True, help=WAIT)
@click.option("--json", "as_json", is_flag=True, help=JSON)
def deploy(project: str, environment: str, ref: str | None, sha: str | None, plan: bool,
           wait: bool, as_json: bool) -> int:
    """Deploy a commit by hand (default: head of the environment's first branch).

    With the pipeline file at hand the ref is resolved in the project's mirror, as a push
    would be; without it the server deploys the commit last pushed to --ref."""
    if ref is not None and sha is not None:
        raise click.UsageError("give --ref or --sha, not both")
    if plan:
        return local.plan(local.settings(), project, environment, ref=ref, sha=sha)
    return operations.deploy(Client.from_env(), project, environment, ref=ref, sha=sha,
                             wait=wait, json=as_json)


def _acting(action: str, summary: str, example: str) -> click.Command:
    @click.argument("deployment", type=int)
    @click.option("--wait", is_flag=True, help=WAIT)
    @click.option("--json", "as_json", is_flag=True, help=JSON)
    def command(deployment: int, wait: bool, as_json: bool) -> int:
        return operations.act(Client.from_env(), action, deployment, wait=wait, json=as_json)

    command.__doc__ = f"{summary}\n\n{API}"
    return cli.command(action, epilog=_example(example, f"conveyor {action} 42 --wait"))(command)


_acting("approve", "Approve a deployment awaiting approval.", "conveyor approve 42")
_acting("cancel", "Cancel a queued or running deployment (with --wait, exit 0 once it is"
                  " canceled).", "conveyor cancel 42")
_acting("retry", "Run a failed deployment again, for the hosts that did not reach its"
                 " release.", "conveyor retry 42")


@cli.command(epilog=_example("conveyor rollback shop production",
                             "conveyor rollback shop production --to 20261205T204107Z-3f2a9c1e"))
@click.argument("project")
@click.argument("environment")
@click.option("--to", "release", metavar="RELEASE", help="this release instead of the previous"
                                                         " good one")
@click.option("--wait", is_flag=True, help=WAIT)
@click.option("--json", "as_json", is_flag=True, help=JSON)
def rollback(project: str, environment: str, release: str | None, wait: bool,
             as_json: bool) -> int:
    """Put an environment back on its previous good release.

    Through the API (CONVEYOR_URL, CONVEYOR_API_TOKEN)."""
    return operations.rollback(Client.from_env(), project, environment, release=release,
                               wait=wait, json=as_json)


@cli.command(epilog=_example("conveyor deliveries", "conveyor deliveries --project shop"
                                                    " --limit 5 --json"))
@click.option("--project", help="only this project's")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help=JSON)
def deliveries(project: str | None, limit: int, as_json: bool) -> int:
    """Every webhook delivery received, newest first, with its answer."""
    return reading.deliveries(Client.from_env(), project=project, limit=limit, json=as_json)


@cli.group(epilog=_example("conveyor hosts check shop", "conveyor hosts trust shop staging"))
def hosts() -> None:
    """Check hosts, trust their keys (from this machine)."""


@hosts.command("check", epilog=_example("conveyor hosts check shop production"))
@click.argument("project")
@click.argument("environment", required=False)
def hosts_check(project: str, environment: str | None) -> int:
    """Connect to each host, verify its key and the tools deployments need."""
    return local.hosts_check(local.settings(), project, environment)


@hosts.command("trust", epilog=_example("conveyor hosts trust shop",
                                        "conveyor hosts trust shop staging --yes"))
@click.argument("project")
@click.argument("environment", required=False)
@click.option("--yes", is_flag=True, help="record unknown keys without asking")
@click.option("--replace", is_flag=True,
              help="also replace a key that changed (check it on the host first)")
def hosts_trust(project: str, environment: str | None, yes: bool, replace: bool) -> int:
    """Show each host's key fingerprint, record it in ssh.known_hosts."""
    return local.hosts_trust(local.settings(), project, environment, yes=yes, replace=replace)


def _bind() -> str:
    return os.environ.get("CONVEYOR_BIND", "127.0.0.1:8000")


@cli.command(epilog=_example("conveyor web --bind 0.0.0.0:8000 --workers 4"))
@click.option("--bind", default=_bind, show_default="CONVEYOR_BIND or 127.0.0.1:8000")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
def web(bind: str, workers: int) -> int:
    """Run the web process (gunicorn)."""
    return processes.web(local.settings(), bind, workers)


@cli.command(epilog=_example("conveyor worker", "conveyor worker deploys --count 4"))
@click.argument("queues", nargs=-1, metavar="[QUEUE]...")
@click.option("--count", type=click.IntRange(min=1), default=2, show_default=True,
              help="workers (without QUEUE, one more serves notify alone)")
def worker(queues: tuple[str, ...], count: int) -> int:
    """Run RQ workers (default queues: builds deploys notify)."""
    return processes.worker(local.settings(), queues, count)


@cli.command(epilog=_example("conveyor up", "conveyor up --bind 0.0.0.0:8000"))
@click.option("--bind", default=_bind, show_default="CONVEYOR_BIND or 127.0.0.1:8000")
@click.option("--count", type=click.IntRange(min=1), default=2, show_default=True)
def up(bind: str, count: int) -> int:
    """Web and workers together, for one machine."""
    return processes.up(local.settings(), bind, count)


@cli.command(epilog=_example("conveyor demo", "conveyor demo --exit"))
@click.option("--exit", "exit_when_live", is_flag=True,
              help="approve production itself and exit 0 once it is live (1 if anything"
                   " failed)")
def demo(exit_when_live: bool) -> int:
    """A complete local demo: a sample repository pushed, built, deployed to staging,
    then to production once approved."""
    from app.demo import run

    return run(exit_when_live=exit_when_live)


@cli.command("rq-worker", hidden=True)
@click.argument("queues", nargs=-1, required=True)
@click.option("--with-scheduler", is_flag=True)
def rq_worker(queues: tuple[str, ...], with_scheduler: bool) -> int:
    """One RQ worker, as `conveyor worker` starts it."""
    return processes.rq_worker(local.settings(), queues, with_scheduler)
