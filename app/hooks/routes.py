"""The webhook routes: `POST /hooks/<provider>` (SPEC §4)."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request

from app import pipeline
from app.hooks import HookError, github
from app.web import context

blueprint = Blueprint("hooks", __name__)


@blueprint.errorhandler(HookError)
def hook_error(exc: HookError):  # type: ignore[no-untyped-def]
    return jsonify(error=exc.message), exc.status


@blueprint.post("/hooks/github")
def github_hook():  # type: ignore[no-untyped-def]
    started = time.monotonic()
    ctx = context()
    body = request.get_data(cache=False)
    payload = github.read_payload(request.content_type, body)
    repo = github.repository(payload)
    project = ctx.config.find_project(github.PROVIDER, repo)
    if project is None:
        raise HookError(404, f"no project is configured for GitHub repository {repo!r}")
    if not github.signature_valid(project.webhook_secret, body,
                                  request.headers.get("X-Hub-Signature-256")):
        raise HookError(401, "the X-Hub-Signature-256 signature is missing or wrong")
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    event_name = request.headers.get("X-GitHub-Event", "")
    if not delivery_id or not event_name:
        raise HookError(400, "X-GitHub-Delivery and X-GitHub-Event are required")
    event = github.event(event_name, payload)
    answer = pipeline.receive(ctx, provider=github.PROVIDER, delivery_id=delivery_id,
                              event_name=event_name, project=project, event=event,
                              started=started)
    return jsonify(answer.body), answer.status
