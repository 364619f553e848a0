"""The verbs that read, through the API (SPEC §8): `status [PROJECT] [--dora]`, `logs`,
`deliveries`. Answers are read leniently: a key the server does not send shows as `-`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.cli import output
from app.cli.client import Client
from app.cli.output import CommandError, cell, pick, table

RECENT = 10


def status(client: Client, project: str | None, *, dora: bool, json: bool) -> int:
    """Environments with the release live on each host, and the last deployments (and, with
    `dora`, the four DORA measures per environment)."""
    projects = _list(client.get("/projects", missing=_older(client, "/api/projects")),
                     "projects")
    if project is not None:
        projects = [p for p in projects if pick(p, "name") == project]
        if not projects:
            raise CommandError(1, f"Conveyor has no project {project!r}")
    recent = _list(client.get("/deployments", {"project": project, "limit": RECENT}),
                   "deployments")
    measures = _list(client.get("/dora", {"project": project},
                                missing=_older(client, "/api/dora")), "environments") \
        if dora else None
    say = output.printer()
    if json:
        data: dict[str, Any] = {"projects": projects, "deployments": recent}
        if measures is not None:
            data["dora"] = measures
        say(output.as_json(data))
        return 0
    say(table(("PROJECT", "ENVIRONMENT", "HOST", "RELEASE", "SINCE", "LAST DEPLOYMENT"),
              live_rows(projects, recent)))
    say("")
    say(table(DEPLOYMENT_HEADERS, [deployment_row(d) for d in recent]) if recent
        else "no deployments yet")
    if measures is not None:
        say("")
        say(table(DORA_HEADERS, [dora_row(m) for m in measures]) if measures
            else "no DORA measures yet")
    return 0


def live_rows(projects: list[Any], recent: Sequence[Any] = ()) -> list[list[Any]]:
    """One row per host of each environment (one for an environment with none). An
    environment's last deployment is the server's, else the newest of `recent` for it."""
    rows = []
    for found in projects:
        for env in _list(found, "environments"):
            last = pick(env, "last_deployment") if isinstance(env, dict) and \
                "last_deployment" in env else _newest(recent, pick(found, "name"),
                                                      pick(env, "name"))
            summary = (f"#{cell(pick(last, 'id'))} {cell(pick(last, 'state'))}"
                       f" {cell(output.when(pick(last, 'created_at')))}") \
                if isinstance(last, dict) else None
            hosts = _list(env, "hosts") or [{}]
            for i, host in enumerate(hosts):
                rows.append([pick(found, "name"), pick(env, "name"), pick(host, "host"),
                             pick(host, "release"), output.when(pick(host, "since")),
                             summary if i == 0 else None])
    return rows


def _newest(recent: Sequence[Any], project: Any, environment: Any) -> Any:
    """The first (newest) deployment of `recent` to that project's environment, or None."""
    return next((d for d in recent if pick(d, "project") == project
                 and pick(d, "environment") == environment), None)


DEPLOYMENT_HEADERS = ("ID", "PROJECT", "ENVIRONMENT", "STATE", "COMMIT", "REF", "BY",
                      "CREATED")


def deployment_row(d: Any) -> list[Any]:
    """A deployment of the API as a row under DEPLOYMENT_HEADERS."""
    return [pick(d, "id"), pick(d, "project"), pick(d, "environment"), pick(d, "state"),
            output.short_sha(pick(d, "sha")), pick(d, "ref"), pick(d, "requested_by"),
            output.when(pick(d, "created_at"))]


DORA_HEADERS = ("PROJECT", "ENVIRONMENT", "DAYS", "DEPLOYS/DAY", "LEAD TIME",
                "CHANGE FAILURE", "TIME TO RESTORE")


def dora_row(m: Any) -> list[Any]:
    """One environment's DORA measures as a row under DORA_HEADERS."""
    return [pick(m, "project"), pick(m, "environment"), pick(m, "days"),
            pick(m, "deployment_frequency"), output.duration(pick(m, "lead_time_seconds")),
            output.percent(pick(m, "change_failure_rate")),
            output.duration(pick(m, "time_to_restore_seconds"))]


def logs(client: Client, row_id: int, *, build: bool, follow: bool) -> int:
    """Print a deployment's (or a build's) log; with `follow`, until it ends."""
    kind = "builds" if build else "deployments"
    missing = f"there is no {'build' if build else 'deployment'} {row_id}"
    say = output.printer()
    if follow:
        for event in client.events(f"/{kind}/{row_id}/log", missing=missing):
            text = pick(event.data, "text")
            if event.name == "line" and isinstance(text, str):
                say(text)
            elif event.name == "end":
                break
        return 0
    after = 0
    while True:
        lines = _list(client.get(f"/{kind}/{row_id}/log", {"after": after or None},
                                 missing=missing), "lines")
        for line in lines:
            if isinstance(pick(line, "text"), str):
                say(pick(line, "text"))
        ids = [pick(line, "id") for line in lines if isinstance(pick(line, "id"), int)]
        if not ids or max(ids) <= after:
            return 0
        after = max(ids)


DELIVERY_HEADERS = ("ID", "RECEIVED", "PROVIDER", "EVENT", "PROJECT", "REF", "COMMIT",
                    "ANSWER", "REASON")


def deliveries(client: Client, *, project: str | None, limit: int, json: bool) -> int:
    """Every delivery received, newest first, with its answer code and reason."""
    found = _list(client.get("/deliveries", {"project": project, "limit": limit}),
                  "deliveries")
    say = output.printer()
    if json:
        say(output.as_json({"deliveries": found}))
        return 0
    rows = [[pick(d, "id"), output.when(pick(d, "received_at")), pick(d, "provider"),
             pick(d, "event"), pick(d, "project"), pick(d, "ref"),
             output.short_sha(pick(d, "sha")), pick(d, "status_code"), pick(d, "reason")]
            for d in found]
    say(table(DELIVERY_HEADERS, rows) if rows else "no deliveries yet")
    return 0


def _older(client: Client, route: str) -> str:
    return f"Conveyor at {client.url} has no {route} yet: it is older than this command"


def _list(data: Any, key: str) -> list[Any]:
    """`data[key]` when it is a list, else an empty one."""
    found = pick(data, key)
    return found if isinstance(found, list) else []
