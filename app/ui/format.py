"""How the dashboard words things: durations, moments, triggers, states. Pure functions of
plain values, so that each is tested without a database or a browser."""

from __future__ import annotations

from datetime import UTC, datetime

# The colour class of each state (a badge); a state not listed is plain.
STATE_CLASS = {
    "succeeded": "good", "skipped": "good",
    "failed": "bad", "error": "bad",
    "running": "busy", "queued": "wait", "awaiting_approval": "wait",
    "canceled": "off", "superseded": "off", "rolled_back": "off",
}


def duration(seconds: float | None) -> str:
    """`41 s`, `3 min 5 s`, `2 h 4 min`; an em dash when unknown."""
    if seconds is None or seconds < 0:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def took(started: datetime | None, finished: datetime | None,
         now: datetime | None = None) -> str:
    """How long a build or deployment took, or has run so far (`running 12 s`)."""
    if started is None:
        return "—"
    if finished is None:
        now = _utc(now or datetime.now(UTC))
        return f"running {duration((now - _utc(started)).total_seconds())}"
    return duration((_utc(finished) - _utc(started)).total_seconds())


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """`just now`, `5 min ago`, `3 h ago`, `2 days ago`."""
    if moment is None:
        return "—"
    seconds = (_utc(now or datetime.now(UTC)) - _utc(moment)).total_seconds()
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day ago" if days == 1 else f"{days} days ago"


def moment(at: datetime | None) -> str:
    """An absolute UTC time, `2026-12-05 17:13:16 UTC` (a title beside `ago`)."""
    return _utc(at).strftime("%Y-%m-%d %H:%M:%S UTC") if at else ""


def short_sha(sha: str | None) -> str:
    """The first 7 characters of a commit id."""
    return (sha or "")[:7]


def branch(ref: str | None) -> str:
    """`main` for `refs/heads/main`, `v1.2` for `refs/tags/v1.2`, else the ref as given."""
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref and ref.startswith(prefix):
            return ref[len(prefix):]
    return ref or ""


def trigger(kind: str, ref: str | None, requested_by: str | None,
            source_id: int | None = None) -> str:
    """What started a deployment, in words: `push to main`, `promotion of #3`,
    `by hand by alice`, `rollback by alice`, `retry of #7 by alice`."""
    who = f" by {requested_by}" if requested_by else ""
    if kind == "promotion":
        return f"promotion of #{source_id}" if source_id else "promotion"
    if kind == "rollback":
        return f"rollback{who}"
    if kind == "retry":
        return f"retry of #{source_id}{who}" if source_id else f"retry{who}"
    if requested_by:
        return f"by hand by {requested_by}"
    name = branch(ref)
    return f"push to {name}" if name else "push"


def state_class(state: str | None) -> str:
    """The CSS class of a state's badge."""
    return STATE_CLASS.get(state or "", "plain")


def state_words(state: str | None) -> str:
    """A state as people read it: `awaiting approval` for `awaiting_approval`."""
    return (state or "unknown").replace("_", " ")


def _utc(at: datetime) -> datetime:
    # SQLite gives datetimes back without their zone; they were stored as UTC.
    return at if at.tzinfo else at.replace(tzinfo=UTC)
