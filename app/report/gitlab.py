"""GitLab over HTTP: commit statuses, and deployments of its environments."""

from __future__ import annotations

from urllib.parse import quote

import requests

from app.report import GITLAB_DEPLOYMENT_STATES, GITLAB_STATES, ReportError, send

LIMIT = 255  # GitLab's documented limit for description and target_url


def status_body(state: str, context: str, description: str, target_url: str) -> dict[str, str]:
    """The request body for a Conveyor state (SPEC §5), within GitLab's limits."""
    return {"state": GITLAB_STATES[state], "name": context,
            "description": description[:LIMIT], "target_url": target_url[:LIMIT]}


def post_status(http: requests.Session, api_url: str, token: str, project: str, sha: str,
                body: dict[str, str]) -> None:
    """Send one commit status to `project` (its numeric id, or its path, URL-encoded as GitLab
    allows); raise ReportError saying whether a retry may help."""
    try:
        send(http, "POST", f"{_project(api_url, project)}/statuses/{sha}", forge="GitLab",
             what=f"the status for {project}@{sha[:7]}", headers=_headers(token), body=body)
    except ReportError as exc:
        if "Cannot transition status" not in str(exc):
            raise
        # GitLab refuses to set the state a status already has: nothing to do.


def create_deployment(http: requests.Session, api_url: str, token: str, project: str, *,
                      environment: str, sha: str, ref: str, state: str) -> int:
    """Create a deployment of `environment` (GitLab creates the environment with its first
    one); its id on GitLab."""
    tag = ref.startswith("refs/tags/")
    body = {"environment": environment, "sha": sha, "tag": tag,
            "ref": ref.removeprefix("refs/tags/" if tag else "refs/heads/") or sha,
            "status": GITLAB_DEPLOYMENT_STATES[state]}
    response = send(http, "POST", f"{_project(api_url, project)}/deployments", forge="GitLab",
                    what=f"the deployment of {project}@{sha[:7]}", headers=_headers(token),
                    body=body)
    return int(response.json()["id"])


def update_deployment(http: requests.Session, api_url: str, token: str, project: str,
                      deployment: int, state: str) -> None:
    """Set the status of GitLab deployment `deployment`."""
    send(http, "PUT", f"{_project(api_url, project)}/deployments/{deployment}",
         forge="GitLab", what=f"deployment {deployment} of {project}", headers=_headers(token),
         body={"status": GITLAB_DEPLOYMENT_STATES[state]})


def _project(api_url: str, project: str) -> str:
    return f"{api_url}/projects/{quote(project, safe='')}"


def _headers(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}
