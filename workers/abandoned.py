"""Putting back what a dead worker left: the deployments of an environment still `running`
while their environment's lock is free. Each host is looked at; a host whose `current` is
the abandoned release is put back on its previous release (the deploy job's own rollback),
the release is removed everywhere, and the deployment ends `error` saying what was done.
Run by whoever holds the environment's lock: the recovery job, or the next deployment."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from app import pipeline
from app.context import Context
from workers import hosts, remote, transport
from workers.deployer import Deployer, HostRun

# A probe needs an artifact's sha256; looking at `current` needs none.
NO_ARTIFACT = "0" * 64


def recover_environment(ctx: Context, project: str, environment: str) -> list[int]:
    """Put back and end every deployment of the environment still `running`; the caller
    holds the environment's lock, so each of them lost its worker. Their ids."""
    ended = []
    for abandoned in pipeline.abandoned_in(ctx, project, environment):
        pipeline.log(ctx, f"recovery: {pipeline.WORKER_STOPPED}; putting its hosts back",
                     deployment_id=abandoned.deployment_id)
        undone = put_back(ctx, abandoned)
        pipeline.end_abandoned_deployment(ctx, abandoned.deployment_id, undone)
        ended.append(abandoned.deployment_id)
    return ended


def put_back(ctx: Context, abandoned: pipeline.Abandoned) -> str:
    """Look at each host of an abandoned deployment, put back those on the new release,
    remove it everywhere; say what was done."""
    order = abandoned.order
    if order is None:
        return "its environment is no longer configured: its hosts were not checked"
    deployer = Deployer(ctx, order, threading.Event())
    look = partial(_look, ctx, order, abandoned.hosts)
    with ThreadPoolExecutor(max_workers=max(1, min(order.environment.parallel,
                                                   len(deployer.runs)))) as pool:
        list(pool.map(look, deployer.runs))
    unchecked = [r.host.spec for r in deployer.runs if r.link is None and not r.switched]
    deployer.commits = pipeline.release_commits(
        ctx, order.project.name, order.environment.name,
        {r.previous for r in deployer.runs if r.previous})
    switched = any(r.switched for r in deployer.runs)
    stuck = deployer.put_back()
    done = stuck or ("every switched host put back" if switched else "no host was switched")
    if unchecked:
        done += f"; not reached, so not checked: {', '.join(unchecked)}"
    return done


def _look(ctx: Context, order: pipeline.DeploymentOrder,
          progress: dict[str, pipeline.HostProgress], host_run: HostRun) -> None:
    """Connect to a host and see whether `current` is the new release; a host that cannot
    be looked at counts as switched when its row says it was (it is then tried again)."""
    row = progress.get(host_run.host.spec)
    recorded = (row.previous_release or "") if row else ""
    try:
        host_run.link = hosts.connect(ctx.config.ssh, host_run.host)
        current = _current(host_run.link, order, float(ctx.config.ssh.command_timeout))
    except (transport.TransportError, ValueError) as exc:
        host_run.error, host_run.cut = str(exc), True
        host_run.switched = pipeline.may_have_switched(row, order.release_id)
        host_run.previous = recorded
        return
    host_run.switched = current == order.release_id
    host_run.previous = recorded if host_run.switched else (current or "")


def _current(link: transport.Transport, order: pipeline.DeploymentOrder,
             timeout: float) -> str | None:
    """The release `current` points at on a host (None: nothing live)."""
    env = order.environment
    step = remote.probe(env.path, order.artifact.sha256 or NO_ARTIFACT, order.artifact.size,
                        look=True)
    result = link.run(step, timeout=timeout)
    if result.exit_status != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit {result.exit_status}"]
        raise ValueError(f"probe failed: {reason[0]}")
    return remote.parse_probe(result.stdout).current


