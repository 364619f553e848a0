"""Deployments: created once per push and environment, started, tracked per host, finished."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from app import config as cfg
from app.context import Context
from app.hooks.events import Push
from app.models import Build, Deployment, DeploymentHost, utcnow
from app.pipeline.common import insert_once
from app.pipeline.report import report_deployment
from app.pipeline.rules import mask, next_release_id


@dataclass(frozen=True)
class Artifact:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DeploymentOrder:
    """What a deploy job needs to put one artifact live on one environment."""

    deployment_id: int
    project: cfg.Project
    environment: cfg.Environment
    sha: str
    ref: str
    release_id: str
    artifact: Artifact


def find_or_create_deployment(ctx: Context, project: cfg.Project, env: cfg.Environment,
                               build: Build, push: Push) -> tuple[Deployment, bool]:
    key = {"project": project.name, "environment": env.name,
           "trigger": f"push:{push.ref}:{push.after}"}
    new = Deployment(**key, build_id=build.id, sha=push.after, ref=push.ref)
    return insert_once(ctx, new, select(Deployment).filter_by(**key))


def enqueue_deployment(ctx: Context, deployment: Deployment) -> None:
    ctx.jobs.enqueue("deploys", "workers.deploy.run", deployment.id,
                     job_id=f"deploy-{deployment.id}", timeout=24 * 3600)


def deployment_target(ctx: Context, deployment_id: int) -> tuple[str, str] | None:
    """(project, environment) of a deployment that is still to run, else None."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None or deployment.state != "queued":
            return None
        return deployment.project, deployment.environment


def start_deployment(ctx: Context, deployment_id: int) -> DeploymentOrder | None:
    """Mark a queued deployment running and say what to do; None when it is not queued."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id, with_for_update=True)
        if deployment is None or deployment.state != "queued":
            return None
        project = ctx.config.projects.get(deployment.project)
        env = project.environments.get(deployment.environment) if project else None
        build = deployment.build
        order = None
        if project is None or env is None or build.state != "succeeded":
            deployment.state, deployment.finished_at = "error", utcnow()
            deployment.error = "the environment is no longer configured or has no artifact"
        else:
            deployment.state, deployment.started_at = "running", utcnow()
            latest = session.scalar(select(func.max(Deployment.release_id)).where(
                Deployment.project == deployment.project,
                Deployment.environment == deployment.environment))
            deployment.release_id = next_release_id(deployment.started_at, deployment.sha, latest)
            for host in env.hosts:
                session.add(DeploymentHost(deployment_id=deployment.id, host=host.spec))
            order = DeploymentOrder(
                deployment.id, project, env, deployment.sha, deployment.ref,
                deployment.release_id,
                Artifact(build.artifact_path or "", build.artifact_sha256 or "",
                         build.artifact_size or 0))
    report_deployment(ctx, deployment)
    return order


def update_host(ctx: Context, deployment_id: int, host: str, **fields: Any) -> None:
    """Record progress on one host: `state`, `step`, `previous_release`, `release`, `error`..."""
    with ctx.db.session() as session:
        row = session.scalar(select(DeploymentHost).where(
            DeploymentHost.deployment_id == deployment_id, DeploymentHost.host == host))
        if row is None:
            return
        if fields.get("error"):
            fields["error"] = mask(fields["error"], ctx.secrets())
        if row.started_at is None:
            row.started_at = utcnow()
        if fields.get("state") in ("succeeded", "failed", "rolled_back", "error"):
            row.finished_at = utcnow()
        for name, value in fields.items():
            setattr(row, name, value)


def finish_deployment(ctx: Context, deployment_id: int, state: str,
                      error: str | None = None) -> None:
    """Record the end of a running deployment (`succeeded`, `failed` or `error`)."""
    with ctx.db.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None or deployment.state != "running":
            return
        deployment.state, deployment.finished_at = state, utcnow()
        deployment.error = mask(error, ctx.secrets()) if error else None
    report_deployment(ctx, deployment)
