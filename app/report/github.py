"""GitHub (and Gitea) over HTTP: commit statuses, deployments and their statuses."""

from __future__ import annotations

from typing import Any

import requests

from app.report import GITHUB_DEPLOYMENT_STATES, GITHUB_STATES, send

LIMIT = 140  # GitHub's description limit (statuses and deployment statuses)


def status_body(state: str, context: str, description: str, target_url: str) -> dict[str, str]:
    """The request body for a Conveyor state (SPEC §5), description cut to GitHub's 140."""
    return {"state": GITHUB_STATES[state], "context": context,
            "description": description[:LIMIT], "target_url": target_url}


def post_status(http: requests.Session, api_url: str, token: str, repo: str, sha: str,
                body: dict[str, str], *, scheme: str = "Bearer") -> None:
    """Send one commit status; raise ReportError saying whether a retry may help.

    Gitea and Forgejo take the same request under `/api/v1` (`scheme="token"`).
    """
    send(http, "POST", f"{api_url}/repos/{repo}/statuses/{sha}", forge="GitHub",
         what=f"the status for {repo}@{sha[:7]}", headers=_headers(token, scheme), body=body)


def deployment_body(sha: str, environment: str, *, production: bool,
                    description: str) -> dict[str, Any]:
    """A deployment of exactly `sha`: never auto-merged, no status checks asked for (Conveyor
    decided already), a lasting environment."""
    return {"ref": sha, "task": "deploy", "environment": environment, "auto_merge": False,
            "required_contexts": [], "transient_environment": False,
            "production_environment": production, "description": description[:LIMIT]}


def create_deployment(http: requests.Session, api_url: str, token: str, repo: str,
                      body: dict[str, Any]) -> int:
    """Create a deployment; its id on GitHub."""
    response = send(http, "POST", f"{api_url}/repos/{repo}/deployments", forge="GitHub",
                    what=f"the deployment of {repo}@{body['ref'][:7]}",
                    headers=_headers(token), body=body)
    return int(response.json()["id"])


def deployment_status_body(state: str, description: str, log_url: str,
                           environment_url: str | None) -> dict[str, Any]:
    """A deployment status for a Conveyor state (or `inactive`, for one no longer live)."""
    body = {"state": GITHUB_DEPLOYMENT_STATES.get(state, state),
            "description": description[:LIMIT], "log_url": log_url,
            # Conveyor says itself which deployment is no longer live.
            "auto_inactive": False}
    if environment_url:
        body["environment_url"] = environment_url
    return body


def post_deployment_status(http: requests.Session, api_url: str, token: str, repo: str,
                           deployment: int, body: dict[str, Any]) -> None:
    """Add a status to GitHub deployment `deployment`."""
    send(http, "POST", f"{api_url}/repos/{repo}/deployments/{deployment}/statuses",
         forge="GitHub", what=f"the status of deployment {deployment} of {repo}",
         headers=_headers(token), body=body)


def _headers(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28"}
