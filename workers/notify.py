"""The notify jobs: send commit statuses; never fail or delay a deployment."""

from __future__ import annotations

import logging

import requests

from app.report import ReportError, github
from workers import context

log = logging.getLogger(__name__)


def send_status(status: dict[str, str]) -> None:
    """RQ job on `notify`: post one commit status; raise (RQ retries) only when that helps."""
    project = context().config.projects.get(status["project"])
    if project is None or project.status is None:
        return
    body = github.status_body(status["state"], status["context"], status["description"],
                              status["target_url"])
    with requests.Session() as http:
        try:
            github.post_status(http, project.status.api_url, project.status.token, project.repo,
                               status["sha"], body)
        except ReportError as exc:
            if exc.retry:
                raise
            log.warning("status not sent: %s", exc)
