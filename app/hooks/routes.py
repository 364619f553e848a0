"""The webhook routes: `POST /hooks/github`, `/hooks/gitlab`, `/hooks/gitea` (SPEC §4).

All three run one flow; each forge's module says how it signs, names and shapes things:
read the body (413) and its format (415, 400), find the project by repository (404),
verify the signature or token before anything else (401), read the delivery's id and event
(400), then hand the event to the pipeline, which queues its work once and records it.
Every answer is recorded, refused ones too.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from app import config as cfg
from app import metrics, pipeline
from app.context import Context
from app.events import Ignored
from app.hooks import Forge, HookError, gitea, github, gitlab
from app.hooks import payload as p
from app.web import context

blueprint = Blueprint("hooks", __name__)
FORGES: dict[str, Forge] = {forge.PROVIDER: forge  # type: ignore[misc]
                            for forge in (github, gitlab, gitea)}


@blueprint.post("/hooks/<any(github, gitlab, gitea):provider>")
def hook(provider: str):  # type: ignore[no-untyped-def]
    received = pipeline.Received(provider=provider, started=time.monotonic())
    ctx = context()
    try:
        answer = _receive(ctx, FORGES[provider], received)
    except HookError as exc:
        answer = pipeline.refuse(ctx, received, exc.status, exc.message)
    except RedisError:
        # Recorded (not as done) so the outage shows in the history; the app answers 503.
        pipeline.record_attempt(ctx, received, pipeline.Answer(503, {"error": "Redis is down"}))
        raise
    return jsonify(answer.body), answer.status


@blueprint.after_request
def _count(response: Response) -> Response:
    """Every answer to a delivery counts, the app's own 503s too (they pass through here)."""
    provider = (request.view_args or {}).get("provider")
    if provider is not None:
        metrics.delivery(provider, response.status_code)
    return response


def _receive(ctx: Context, forge: Forge, received: pipeline.Received) -> pipeline.Answer:
    delivery_id, event_name = forge.delivery_id(request.headers), forge.event_name(request.headers)
    received.delivery_id, received.event = delivery_id or "", event_name or ""
    body = _body()
    payload = forge.read_payload(request.content_type, body)
    received.repository = forge.repository(payload)
    project = _project(ctx, forge, received.repository)
    received.project = project.name if project else None
    _verify(ctx, forge, project, body)
    received.delivery_id = p.header(delivery_id, "delivery id", p.MAX_DELIVERY_ID)
    received.event = p.header(event_name, "event", p.MAX_EVENT)
    event = forge.event(received.event, payload)
    if project is None and not isinstance(event, Ignored):
        raise HookError(400, "the payload names no repository")
    return pipeline.receive(ctx, received, project, event)


def _body() -> bytes:
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise HookError(413, "the body is over 25 MiB; forges send no larger payloads") from None


def _project(ctx: Context, forge: Forge, repo: str | None) -> cfg.Project | None:
    """The project of the payload's repository; None for a hook-level ping (an
    organization's hook), which names none."""
    if repo is None:
        return None
    project = ctx.config.find_project(forge.PROVIDER, repo)
    if project is None:
        raise HookError(404, f"no project is configured for {forge.PROVIDER} repository {repo!r}")
    return project


def _verify(ctx: Context, forge: Forge, project: cfg.Project | None, body: bytes) -> None:
    """Refuse (401) unless the signature or token was made with the project's secret; a
    hook-level ping may be signed with any of the forge's projects' secrets."""
    projects = [project] if project else [
        p for p in ctx.config.projects.values() if p.provider == forge.PROVIDER]
    if not any(forge.authentic(p.webhook_secret, body, request.headers) for p in projects):
        raise HookError(401, forge.CREDENTIALS)
