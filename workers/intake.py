"""Intake's job: queue a delivery's new work and its pending statuses, off the request path."""

from __future__ import annotations

from app import pipeline
from workers import context


def dispatch(build_id: int, deployment_ids: list[int], forge_project: str = "") -> None:
    """RQ job on `notify`: queue the build (or the deployments of a commit built before) and
    the pending commit statuses of the work a delivery asked for."""
    pipeline.dispatch(context(), build_id, deployment_ids, forge_project)
