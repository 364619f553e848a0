"""Chat messages in Slack's incoming-webhook format, which Slack, Mattermost and Discord's
`/slack` endpoint all render: `text` plus one attachment with a colored bar (no blocks:
Mattermost and Discord do not render them). Pure formatting apart from one HTTP call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import requests

from app.report import ReportError, classify

TIMEOUT = (5, 20)
MAX_COMMITS = 10
COLORS = {"started": "#439fe0", "succeeded": "good", "failed": "danger",
          "rolled_back": "warning", "awaiting_approval": "#439fe0", "build_failed": "danger"}
HEADLINES = {"started": "Deploying", "succeeded": "Deployed", "failed": "Deploy failed",
             "rolled_back": "Rolled back", "awaiting_approval": "Awaiting approval",
             "build_failed": "Build failed"}


@dataclass(frozen=True)
class Commit:
    """One commit as a message shows it."""

    sha: str
    subject: str
    author: str = ""


class RateLimited(ReportError):
    """The webhook answered 429: try again after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the chat webhook answered 429; retry after {retry_after:g} s",
                         retry=True)
        self.retry_after = retry_after


def message_body(event: str, project: str, environment: str | None, head: Commit, link: str,
                 *, duration: str | None = None, error: str | None = None,
                 added: Sequence[Commit] = (), more: int = 0,
                 by: str | None = None) -> dict[str, object]:
    """The webhook body for one event: what happened, the commit, and the commits it adds."""
    where = f"{project} to {environment}" if environment else project
    title = f"{HEADLINES[event]}: {where} ({head.sha[:7]})"
    details = [f"{head.sha[:7]} {head.subject}".rstrip()]
    if head.author:
        details.append(f"by {head.author}")
    if duration:
        details.append(f"took {duration}")
    if by:  # who asked: "approved by alice"
        details.append(by)
    if error and event in ("failed", "rolled_back", "build_failed"):
        details.append(f"error: {error}")
    lines = [" · ".join(details), *commit_lines(added, more), f"<{link}|Details>"]
    return {"text": f"{title} <{link}>",
            "attachments": [{"color": COLORS[event], "fallback": title, "title": title,
                             "title_link": link, "text": "\n".join(lines)}]}


def commit_lines(added: Sequence[Commit], more: int) -> list[str]:
    """The commits a deployment adds, at most MAX_COMMITS, then `and N more`."""
    if not added:
        return []
    lines = ["Commits:", *(f"• {c.sha[:7]} {c.subject}" for c in added[:MAX_COMMITS])]
    hidden = more + max(0, len(added) - MAX_COMMITS)
    if hidden:
        lines.append(f"and {hidden} more")
    return lines


def post_message(http: requests.Session, url: str, body: dict[str, object]) -> None:
    """Send one message; raise ReportError (RateLimited on 429) saying whether to retry."""
    try:
        response = http.post(url, json=body, timeout=TIMEOUT,
                             headers={"User-Agent": "conveyor"})
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise ReportError(f"the chat webhook could not be reached: {reason}",
                          retry=True) from None
    if response.status_code == 429:
        raise RateLimited(_seconds(response.headers.get("Retry-After")))
    classify("The chat webhook", response.status_code, response.text, "the message")


def _seconds(value: str | None) -> float:
    # Slack sends whole seconds; anything else waits a little rather than hammering.
    try:
        return min(max(float(value or 1), 1.0), 3600.0)
    except ValueError:
        return 1.0
