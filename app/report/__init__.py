"""Reporting back where people look: commit statuses per forge (chat comes later)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A forge asking for more than an hour of quiet is honoured for an hour at a time.
MAX_RETRY_AFTER = 3600

# SPEC §5: how a Conveyor state shows on GitHub and Gitea.
GITHUB_STATES = {
    "queued": "pending", "awaiting_approval": "pending", "running": "pending",
    "succeeded": "success", "failed": "failure", "error": "error",
    "canceled": "error", "superseded": "error",
    # `paths:` skipped it: nothing failed, and a required check must not block the merge.
    "skipped": "success",
}
# SPEC §5: how a Conveyor state shows on GitLab.
GITLAB_STATES = {
    "queued": "pending", "awaiting_approval": "pending", "running": "running",
    "succeeded": "success", "failed": "failed", "error": "failed",
    "canceled": "canceled", "superseded": "canceled", "skipped": "skipped",
}


def classify(forge: str, status_code: int, text: str, what: str,
             headers: Mapping[str, str] | None = None) -> None:
    """Raise ReportError for a refused request: retry on 429 and 5xx (after the forge's
    `Retry-After`, when it says one), give up on other 4xx."""
    wait = retry_after((headers or {}).get("Retry-After"))
    if status_code == 429 or status_code >= 500 or (status_code == 403 and wait is not None):
        raise ReportError(f"{forge} answered {status_code}; will retry", retry=True,
                          retry_after=wait)
    if status_code >= 400:
        raise ReportError(f"{forge} refused {what} ({status_code}): {text[:300]}", retry=False)


def retry_after(value: str | None) -> float | None:
    """Seconds of a `Retry-After` header (seconds, or an HTTP date); None without one."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), MAX_RETRY_AFTER))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, min((moment - datetime.now(UTC)).total_seconds(), MAX_RETRY_AFTER))


class ReportError(Exception):
    """A status could not be delivered; `retry` says whether trying again may help, and
    `retry_after` how long the forge asked to be left alone."""

    def __init__(self, message: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry, self.retry_after = retry, retry_after
