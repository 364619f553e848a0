"""GitHub commit statuses: one HTTP call, `POST /repos/{owner}/{repo}/statuses/{sha}`."""

from __future__ import annotations

import requests

from app.report import GITHUB_STATES, ReportError, classify

TIMEOUT = (5, 20)


def status_body(state: str, context: str, description: str, target_url: str) -> dict[str, str]:
    """The request body for a Conveyor state (SPEC §5), description cut to GitHub's 140."""
    return {"state": GITHUB_STATES[state], "context": context,
            "description": description[:140], "target_url": target_url}


def post_status(http: requests.Session, api_url: str, token: str, repo: str, sha: str,
                body: dict[str, str], *, scheme: str = "Bearer") -> None:
    """Send one commit status; raise ReportError saying whether a retry may help.

    Gitea and Forgejo take the same request under `/api/v1` (`scheme="token"`).
    """
    url = f"{api_url}/repos/{repo}/statuses/{sha}"
    headers = {"Authorization": f"{scheme} {token}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "conveyor"}
    try:
        response = http.post(url, json=body, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise ReportError(f"GitHub could not be reached: {reason}", retry=True) from None
    classify("GitHub", response.status_code, response.text, f"the status for {repo}@{sha[:7]}",
             response.headers)
