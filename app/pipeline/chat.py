"""Chat messages (SPEC §5): which event a state change is, the message jobs it queues on
`notify` (one per webhook that chose the event), and the facts a message tells.

The job gets the webhook's index in the project's `notify:` list, never its URL: the URL is
a secret and RQ's jobs are kept in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.context import Context
from app.models import Build, Deployment, DeploymentHost, Release
from app.pipeline.rules import took_between

CHAT_RETRY_INTERVALS = [2, 10, 30, 120, 600]
_DEPLOYMENT_EVENTS = {"running": ("started",), "succeeded": ("succeeded",),
                      "failed": ("failed",), "awaiting_approval": ("awaiting_approval",)}


def chat_events(state: str, *, build: bool = False, kind: str = "deploy",
                put_back: bool = False) -> tuple[str, ...]:
    """The chat events a build or deployment now in `state` is, the one it is called first.

    A deployment whose hosts were put back (`put_back`) after it failed is `rolled_back`,
    and a `failed` one too: a webhook that chose only `failed` still hears of it.
    """
    if build:
        return ("build_failed",) if state == "failed" else ()
    if kind == "rollback" and state == "succeeded":
        return ("rolled_back",)
    if state == "failed" and put_back:
        return ("rolled_back", "failed")
    return _DEPLOYMENT_EVENTS.get(state, ())


def chosen_webhooks(events: tuple[str, ...],
                    webhook_events: list[tuple[str, ...]]) -> list[int]:
    """The indexes of the webhooks that chose any of `events`."""
    return [index for index, chosen in enumerate(webhook_events)
            if any(event in chosen for event in events)]


def report_chat(ctx: Context, row: Build | Deployment) -> None:
    """Queue a chat message for each webhook of the project that chose this change's event."""
    project = ctx.config.projects.get(row.project)
    if project is None or not project.notify:
        return
    events = _events_of(ctx, row)
    targets = chosen_webhooks(events, [target.events for target in project.notify])
    if not targets:
        return
    subject = (f"build-{row.id}-{row.attempt}" if isinstance(row, Build)
               else f"deployment-{row.id}")
    for index in targets:
        queue_chat(ctx, {"project": row.project, "event": events[0], "webhook": index,
                         "id": f"chat-{subject}-{events[0]}-{index}", "waits": 0,
                         **({"build": row.id} if isinstance(row, Build)
                            else {"deployment": row.id})})


def queue_chat(ctx: Context, message: dict[str, Any], delay: float = 0) -> None:
    """Queue one chat message job on `notify`, retried on 5xx and network errors; a message
    sent again later (its webhook's turn, a 429) counts its `waits` in its job id."""
    from rq import Retry

    job_id = message["id"] + (f"-wait-{message['waits']}" if message.get("waits") else "")
    ctx.jobs.enqueue("notify", "workers.chat.send", message, job_id=job_id, timeout=120,
                     retry=Retry(max=len(CHAT_RETRY_INTERVALS), interval=CHAT_RETRY_INTERVALS),
                     delay=delay)


def _events_of(ctx: Context, row: Build | Deployment) -> tuple[str, ...]:
    if isinstance(row, Build):
        return chat_events(row.state, build=True)
    put_back = row.state == "failed" and _hosts_put_back(ctx, row.id)
    return chat_events(row.state, kind=row.kind, put_back=put_back)


def _hosts_put_back(ctx: Context, deployment_id: int) -> bool:
    # A host put back is `rolled_back`, or `failed` with the time its rollback step took
    # (the host that failed the health check is put back too, and keeps its error).
    with ctx.db.session() as session:
        rows = session.execute(select(DeploymentHost.state, DeploymentHost.timings).where(
            DeploymentHost.deployment_id == deployment_id))
        return any(state == "rolled_back" or "rollback" in (timings or {})
                   for state, timings in rows)


@dataclass(frozen=True)
class ChatFacts:
    """What a chat message tells, from the history; the commit's words come from git."""

    project: str
    event: str
    sha: str
    link: str
    environment: str | None = None
    duration: str | None = None
    error: str | None = None
    # The commit live before this deployment, for the commits it adds (None: unknown).
    live_sha: str | None = None
    # Who asked for it, in words: "approved by alice", "deployed by hand by ci".
    by: str | None = None


def chat_facts(ctx: Context, message: dict[str, Any]) -> ChatFacts | None:
    """The facts of a queued chat message, or None when its row is gone."""
    with ctx.db.session() as session:
        if "build" in message:
            build = session.get(Build, message["build"])
            if build is None:
                return None
            return ChatFacts(build.project, message["event"], build.sha,
                             f"{ctx.config.public_url}/builds/{build.id}",
                             duration=_took(build), error=build.error)
        deployment = session.get(Deployment, message["deployment"])
        if deployment is None:
            return None
        return ChatFacts(deployment.project, message["event"], deployment.sha,
                         f"{ctx.config.public_url}/deployments/{deployment.id}",
                         environment=deployment.environment, duration=_took(deployment),
                         error=deployment.error, live_sha=_live_before(session, deployment),
                         by=who_acted(deployment.kind, deployment.requested_by,
                                      deployment.approved_by))


def who_acted(kind: str, requested_by: str | None, approved_by: str | None) -> str | None:
    """Who a person asked a deployment of, as a message says it (the audit log's names)."""
    if approved_by:
        return f"approved by {approved_by}"
    if not requested_by:
        return None
    return {"rollback": f"rolled back by {requested_by}", "retry": f"retried by {requested_by}"
            }.get(kind, f"deployed by hand by {requested_by}")


def _took(row: Build | Deployment) -> str | None:
    if row.started_at is None or row.finished_at is None:
        return None
    return took_between(row.started_at, row.finished_at)


def _live_before(session: Any, deployment: Deployment) -> str | None:
    previous = {host.previous_release for host in deployment.hosts} - {None}
    if not previous:
        return None
    return session.scalar(select(Release.sha).where(
        Release.project == deployment.project, Release.environment == deployment.environment,
        Release.release_id.in_(previous)).order_by(Release.release_id).limit(1))
