"""Commit statuses for builds and deployments, and deployments recorded on the forge, queued
on `notify` (never in the way)."""

from __future__ import annotations

import time
from typing import Any

from app import config as cfg
from app.context import Context
from app.models import Build, Deployment
from app.pipeline.rules import build_description, deployment_description

BUILD_CONTEXT = "conveyor/build"
STATUS_JOB = "workers.notify.send_status"
DEPLOYMENT_JOB = "workers.notify.send_deployment"
NOTIFY_RETRY_INTERVALS = [2, 10, 30, 120, 600]


def report_build(ctx: Context, build: Build) -> None:
    """Queue the commit status `conveyor/build` for the build's current state."""
    _report(ctx, build.project, build.sha, BUILD_CONTEXT, build.state, build_description(build),
            f"/builds/{build.id}", f"build-{build.id}-{build.attempt}")


def report_deployment(ctx: Context, deployment: Deployment) -> None:
    """Queue the commit status `conveyor/deploy/<environment>` for the deployment's state,
    and the deployment's status on the forge where the project records deployments there."""
    description = deployment_description(deployment, _hosts(ctx, deployment))
    _report(ctx, deployment.project, deployment.sha, f"conveyor/deploy/{deployment.environment}",
            deployment.state, description, f"/deployments/{deployment.id}",
            f"deploy-{deployment.id}")
    project = ctx.config.projects.get(deployment.project)
    env = ctx.config.environment(deployment.project, deployment.environment)
    if (project is None or env is None or project.status is None
            or not project.status.records_deployments or deployment.state == "skipped"):
        return
    # `context` names the forge's deployment for the newest-wins sequence of its statuses.
    record = {"job": DEPLOYMENT_JOB, "project": deployment.project, "sha": deployment.sha,
              "ref": deployment.ref, "deployment": deployment.id,
              "context": f"forge-deployment/{deployment.id}",
              "environment": deployment.environment, "state": deployment.state,
              "description": description,
              "log_url": f"{ctx.config.public_url}/deployments/{deployment.id}",
              "environment_url": env.url,
              "production": list(project.environments)[-1] == env.name,
              "seq": time.time_ns()}
    _send(ctx, record, f"forge-deployment-{deployment.id}-{deployment.state}")


def _hosts(ctx: Context, deployment: Deployment) -> int | None:
    """How many hosts the deployment works on (a retry's, or its environment's)."""
    if deployment.hosts_only:
        return len(deployment.hosts_only)
    env = ctx.config.environment(deployment.project, deployment.environment)
    return len(env.hosts) if env else None


def _report(ctx: Context, project_name: str, sha: str, context: str, state: str,
            description: str, link: str, subject: str) -> None:
    project = ctx.config.projects.get(project_name)
    if project is None or project.status is None:
        return
    # `seq` orders the statuses of one (sha, context): a retried older one never overwrites
    # a newer one that went out meanwhile. The notify job masks it and cuts the description
    # to the forge's limit (masked first: a cut secret would show its first characters).
    status = {"job": STATUS_JOB, "project": project_name, "sha": sha, "context": context,
              "state": state, "description": description,
              "target_url": f"{ctx.config.public_url}{link}", "seq": time.time_ns()}
    _send(ctx, status, f"status-{subject}-{state}")


def remember_forge_project(ctx: Context, project: str, forge_project: str) -> None:
    """Remember the forge's id of `project`'s repository (from its latest delivery)."""
    ctx.jobs.redis.set(_forge_project_key(project), forge_project)


def forge_project(ctx: Context, project: cfg.Project) -> str:
    """How the forge's API addresses the project: GitLab by its numeric id once a delivery
    has told it (SPEC §4), else (and on GitHub and Gitea) by its path."""
    if project.provider == "gitlab":
        found = ctx.jobs.redis.get(_forge_project_key(project.name))
        if found:
            return found.decode() if isinstance(found, bytes) else str(found)
    return project.repo


def _forge_project_key(project: str) -> str:
    return f"conveyor:forge-project:{project}"


def send_status_later(ctx: Context, status: dict[str, Any], delay: float) -> None:
    """Queue a status (a commit's or a forge deployment's) again, `delay` seconds from now
    (the forge asked to be left alone)."""
    _send(ctx, status, f"status-{status['seq']}-at-{time.time_ns()}", delay=delay)


def _send(ctx: Context, status: dict[str, Any], job_id: str, delay: float = 0) -> None:
    from rq import Retry

    ctx.jobs.enqueue("notify", status.get("job", STATUS_JOB), status, job_id=job_id,
                     timeout=120, delay=delay,
                     retry=Retry(max=len(NOTIFY_RETRY_INTERVALS),
                                 interval=NOTIFY_RETRY_INTERVALS))
