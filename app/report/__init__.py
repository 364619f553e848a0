"""Reporting back where people look: commit statuses and deployments per forge, chat."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

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
# SPEC §5: a deployment's state as a GitHub deployment status. A superseded deployment never
# went live: `inactive`, not a failure on the pull request. A skipped one records nothing.
GITHUB_DEPLOYMENT_STATES = {
    "queued": "queued", "awaiting_approval": "queued", "running": "in_progress",
    "succeeded": "success", "failed": "failure", "error": "error", "canceled": "error",
    "superseded": "inactive",
}
# A deployment's state as the status of a GitLab deployment, which exists once it runs.
GITLAB_DEPLOYMENT_STATES = {
    "running": "running", "succeeded": "success", "failed": "failed", "error": "failed",
    "canceled": "canceled", "superseded": "canceled",
}
TIMEOUT = (5, 20)
# SPEC §5: how a Conveyor state shows on GitLab.
GITLAB_STATES = {
    "queued": "pending", "awaiting_approval": "pending", "running": "running",
    "succeeded": "success", "failed": "failed", "error": "failed",
    "canceled": "canceled", "superseded": "canceled", "skipped": "skipped",
}


def send(http: requests.Session, method: str, url: str, *, forge: str, what: str,
         headers: Mapping[str, str], body: Mapping[str, Any]) -> requests.Response:
    """One request to a forge's API; ReportError (saying whether a retry may help) unless
    it succeeded."""
    try:
        response = http.request(method, url, json=body, headers={**headers,
                                "User-Agent": "conveyor"}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ReportError(f"{forge} could not be reached: {type(exc).__name__}",
                          retry=True) from None
    classify(forge, response.status_code, response.text, what, response.headers)
    return response


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
