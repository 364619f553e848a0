"""GitLab commit statuses: one HTTP call, `POST /projects/:id/statuses/:sha`."""

from __future__ import annotations

from urllib.parse import quote

import requests

from app.report import GITLAB_STATES, ReportError, classify

TIMEOUT = (5, 20)
LIMIT = 255  # GitLab's documented limit for description and target_url


def status_body(state: str, context: str, description: str, target_url: str) -> dict[str, str]:
    """The request body for a Conveyor state (SPEC §5), within GitLab's limits."""
    return {"state": GITLAB_STATES[state], "name": context,
            "description": description[:LIMIT], "target_url": target_url[:LIMIT]}


def post_status(http: requests.Session, api_url: str, token: str, repo: str, sha: str,
                body: dict[str, str]) -> None:
    """Send one commit status to the project at path `repo` (URL-encoded, as GitLab allows
    in place of the numeric id); raise ReportError saying whether a retry may help."""
    url = f"{api_url}/projects/{quote(repo, safe='')}/statuses/{sha}"
    headers = {"PRIVATE-TOKEN": token, "User-Agent": "conveyor"}
    try:
        response = http.post(url, json=body, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise ReportError(f"GitLab could not be reached: {reason}", retry=True) from None
    if response.status_code == 400 and "Cannot transition status" in response.text:
        return  # GitLab refuses to set the state a status already has: nothing to do
    classify("GitLab", response.status_code, response.text, f"the status for {repo}@{sha[:7]}",
             response.headers)
