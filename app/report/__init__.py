"""Reporting back where people look: commit statuses per forge (chat comes later)."""

from __future__ import annotations

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


def classify(forge: str, status_code: int, text: str, what: str) -> None:
    """Raise ReportError for a refused request: retry on 429 and 5xx, give up on other 4xx."""
    if status_code == 429 or status_code >= 500:
        raise ReportError(f"{forge} answered {status_code}; will retry", retry=True)
    if status_code >= 400:
        raise ReportError(f"{forge} refused {what} ({status_code}): {text[:300]}", retry=False)


class ReportError(Exception):
    """A status could not be delivered; `retry` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry
