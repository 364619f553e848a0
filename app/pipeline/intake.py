"""Intake: act on one verified delivery, queue its work once, record it, answer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import config as cfg
from app.context import Context
from app.hooks.events import Ignored, Push
from app.models import Build, Delivery, Deployment
from app.pipeline.builds import enqueue_build, find_or_create_build
from app.pipeline.deployments import enqueue_deployment, find_or_create_deployment
from app.pipeline.report import report_build, report_deployment
from app.pipeline.rules import environments_for


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to a delivery."""

    status: int
    body: dict[str, Any]


def receive(ctx: Context, *, provider: str, delivery_id: str, event_name: str,
            project: cfg.Project, event: Push | Ignored, started: float) -> Answer:
    """Act on one verified delivery: queue its work once, record it, and answer."""
    seen = _recorded_answer(ctx, provider, delivery_id)
    if seen is not None:
        return seen
    if isinstance(event, Ignored):
        answer = Answer(200, {"delivery": delivery_id, "ignored": event.reason})
    else:
        answer = _receive_push(ctx, delivery_id, project, event)
    return _record(ctx, provider, delivery_id, event_name, project.name, event, answer, started)


def _recorded_answer(ctx: Context, provider: str, delivery_id: str) -> Answer | None:
    with ctx.db.session() as session:
        delivery = session.scalar(select(Delivery).where(
            Delivery.provider == provider, Delivery.delivery_id == delivery_id))
        if delivery is None:
            return None
        return Answer(200, {**delivery.answer, "duplicate": True})


def _receive_push(ctx: Context, delivery_id: str, project: cfg.Project, push: Push) -> Answer:
    targets = environments_for(project, push)
    if isinstance(targets, str):
        return Answer(200, {"delivery": delivery_id, "ignored": targets})
    build, created_build = find_or_create_build(
        ctx, project, sha=push.after, ref=push.ref, repository=push.repository,
        clone_url=push.clone_url)
    deployments, created = [], False
    for env in targets:
        deployment, new = find_or_create_deployment(ctx, project, env, build, push)
        deployments.append(deployment)
        created = created or new
    _dispatch(ctx, build, deployments, announce_build=created_build)
    body: dict[str, Any] = {"delivery": delivery_id, "builds": [build.id],
                            "deployments": [d.id for d in deployments]}
    if not (created or created_build):
        return Answer(200, {**body, "duplicate": True})
    return Answer(202, body)


def _dispatch(ctx: Context, build: Build, deployments: list[Deployment], *,
              announce_build: bool) -> None:
    """Queue whatever is waiting: the build, or the deployments of a build that is done."""
    if build.state == "queued":
        if announce_build:
            report_build(ctx, build)
        enqueue_build(ctx, build)
    for deployment in deployments:
        if deployment.state == "queued":
            report_deployment(ctx, deployment)
            if build.state == "succeeded":
                enqueue_deployment(ctx, deployment)


def _record(ctx: Context, provider: str, delivery_id: str, event_name: str, project: str,
            event: Push | Ignored, answer: Answer, started: float) -> Answer:
    """Record the delivery as done; a concurrent twin that got there first wins."""
    push = event if isinstance(event, Push) else None
    row = Delivery(
        provider=provider, delivery_id=delivery_id, event=event_name, project=project,
        repository=event.repository, ref=push.ref if push else None,
        sha=push.after if push else None, status_code=answer.status,
        reason=answer.body.get("ignored"), answer=answer.body,
        duration_ms=round((time.monotonic() - started) * 1000))
    try:
        with ctx.db.session() as session:
            session.add(row)
    except IntegrityError:
        return _recorded_answer(ctx, provider, delivery_id) or answer
    return answer
