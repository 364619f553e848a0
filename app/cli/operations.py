"""The verbs that act, through the API so that they work from a laptop (SPEC §8): `deploy`,
`approve`, `cancel`, `retry`, `rollback`, each with `--wait` (follow the deployment until
it ends) and `--json`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from app.cli import local, output
from app.cli.client import Client
from app.cli.output import CommandError, pick

# Deployment states that end it (app.pipeline.states.FINISHED), and which of them a
# `--wait` counts as success (exit 0).
FINISHED = frozenset({"succeeded", "failed", "canceled", "superseded", "skipped", "error"})
SUCCEEDED = frozenset({"succeeded", "skipped"})
RECONNECT_SECONDS = 1.0
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
Say = Callable[[str], None]


def deploy(client: Client, project: str, environment: str, *, ref: str | None,
           sha: str | None, wait: bool, json: bool) -> int:
    """Ask for a deployment of a commit by hand (default: the head of the environment's
    first branch, when the pipeline file is at hand)."""
    body = local.commit_to_deploy(local.settings(), project, environment, ref=ref, sha=sha)
    if body is None:
        body = _as_given(ref, sha)
    answer = client.post(f"/projects/{_part(project)}/environments/{_part(environment)}"
                         "/deploy", body)
    return finish(client, answer, wait=wait, json=json)


def act(client: Client, action: str, deployment_id: int, *, wait: bool, json: bool) -> int:
    """Approve, cancel or retry a deployment (a retry is followed as the deployment it
    starts). A canceled deployment is what `cancel --wait` waits for."""
    answer = client.post(f"/deployments/{deployment_id}/{action}")
    ends_well = SUCCEEDED | {"canceled"} if action == "cancel" else SUCCEEDED
    return finish(client, answer, wait=wait, json=json, ends_well=ends_well)


def rollback(client: Client, project: str, environment: str, *, release: str | None,
             wait: bool, json: bool) -> int:
    """Put the environment back on its previous good release (or on `release`)."""
    body = {"release": release} if release else {}
    answer = client.post(f"/projects/{_part(project)}/environments/{_part(environment)}"
                         "/rollback", body)
    return finish(client, answer, wait=wait, json=json)


def finish(client: Client, answer: Any, *, wait: bool, json: bool,
           ends_well: frozenset[str] = SUCCEEDED, say: Say | None = None) -> int:
    """Show what the API answered; with `wait`, follow the deployment (its log on stdout,
    unless `json`) and exit 0 only if it ended in one of `ends_well`."""
    say = say or output.printer()
    deployment_id = pick(answer, "id")
    if not wait or not isinstance(deployment_id, int):
        say(output.as_json(answer) if json else about(answer))
        return 0
    if not json:
        say(about(answer))
        if pick(answer, "state") == "awaiting_approval":
            say(f"waiting for a person to approve it: conveyor approve {deployment_id}")
    final = follow(client, deployment_id, None if json else say)
    say(output.as_json(final) if json else about(final))
    return 0 if pick(final, "state") in ends_well else 1


def follow(client: Client, deployment_id: int, say: Say | None) -> Any:
    """Follow the deployment's log until the deployment ends (each line to `say`, when
    given), reconnecting after the last line seen if the stream breaks; its final answer."""
    after = 0
    while True:
        for event in client.events(f"/deployments/{deployment_id}/log", after=after,
                                   missing=f"there is no deployment {deployment_id}"):
            if event.name == "line":
                line_id, text = pick(event.data, "id"), pick(event.data, "text")
                after = line_id if isinstance(line_id, int) else after
                if say is not None and isinstance(text, str):
                    say(text)
            elif event.name == "end":
                break
        found = client.get(f"/deployments/{deployment_id}",
                           missing=f"there is no deployment {deployment_id}")
        if pick(found, "state") in FINISHED:
            return found
        time.sleep(RECONNECT_SECONDS)  # a proxy cut the stream: not at once, not in a loop


def about(deployment: Any) -> str:
    """One line about a deployment the API answered with."""
    state = pick(deployment, "state") or "in an unknown state"
    head = (f"deployment {output.cell(pick(deployment, 'id'))} of"
            f" {output.cell(pick(deployment, 'project'))} to"
            f" {output.cell(pick(deployment, 'environment'))} {state}")
    parts = [f"commit {output.cell(output.short_sha(pick(deployment, 'sha')))}"
             + (f" ({pick(deployment, 'ref')})" if pick(deployment, "ref") else "")]
    if pick(deployment, "build") is not None:
        parts.append(f"build {pick(deployment, 'build')}")
    if pick(deployment, "release"):
        parts.append(f"release {pick(deployment, 'release')}")
    if pick(deployment, "error"):
        parts.append(str(pick(deployment, "error")))
    return output.sentence(f"{head}: {', '.join(parts)}")


def _as_given(ref: str | None, sha: str | None) -> dict[str, str]:
    """The body of a manual deploy resolved by the server (no pipeline file here)."""
    if sha is not None:
        if not _FULL_SHA.fullmatch(sha):
            raise CommandError(2, f"--sha takes a full commit id of 40 lowercase hexadecimal"
                                  f" digits here, not {sha!r} (without the pipeline file"
                                  " there is no mirror to find a short one in)")
        return {"sha": sha}
    if ref is None:
        raise CommandError(2, "say what to deploy with --ref or --sha: without the pipeline"
                              " file (CONVEYOR_CONFIG) the environment's first branch is"
                              " not known here")
    return {"ref": ref}


def _part(name: str) -> str:
    """A project's or environment's name as one segment of a URL path."""
    return quote(name, safe="")
