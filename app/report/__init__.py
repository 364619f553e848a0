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


class ReportError(Exception):
    """A status could not be delivered; `retry` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry
