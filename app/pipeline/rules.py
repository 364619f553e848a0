"""The pipeline's decisions, without I/O: plain values in, plain values out."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from app import config as cfg
from app.hooks.events import Push
from app.models import Build, Deployment, aware


def environments_for(project: cfg.Project, push: Push) -> list[cfg.Environment] | str:
    """The environments a push deploys to, or the reason it deploys nowhere."""
    if push.deleted:
        return f"{push.ref} was deleted"
    branch = push.branch
    if branch is None:
        return f"{push.ref} is not a branch"
    matching = [env for env in project.environments.values()
                if any(fnmatch.fnmatchcase(branch, pattern) for pattern in env.branches)]
    return matching or f"no environment deploys branch {branch!r}"


def settings_hash(build: cfg.Build) -> str:
    """A digest of the build settings: a build is done once per (project, sha, this)."""
    data = {"commands": build.commands, "artifact": build.artifact, "env": dict(build.env)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def needs_rebuild(state: str, artifact_path: str | None) -> bool:
    """Whether a build asked for again must run again: it failed, or its artifact is gone."""
    return state in ("failed", "canceled") or (state == "succeeded" and not artifact_path)


def artifacts_to_drop(newest_first: list[tuple[int, str]], in_use: set[int],
                      keep: int) -> list[int]:
    """Builds (id, artifact path; newest first) whose artifact can go: beyond the newest
    `keep`, run or awaited by no environment, and sharing no file with a build that stays."""
    drop = [build_id for n, (build_id, _path) in enumerate(newest_first)
            if n >= keep and build_id not in in_use]
    kept_paths = {path for build_id, path in newest_first if build_id not in drop}
    return [build_id for build_id, path in newest_first
            if build_id in drop and path not in kept_paths]


def release_id(now: datetime, sha: str) -> str:
    """`<UTC yyyymmddTHHMMSSZ>-<short sha>`: one per deployment, the same on every host."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{sha[:7]}"


def next_release_id(now: datetime, sha: str, latest: str | None) -> str:
    """A release id later than `latest` (the environment's newest), so that two deployments in
    one second never share a release folder and ids keep sorting by time."""
    if latest:
        after_latest = datetime.strptime(latest.split("-")[0], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=UTC) + timedelta(seconds=1)
        now = max(now.astimezone(UTC), after_latest)
    return release_id(now, sha)


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***`."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def lock_name(project: str, environment: str) -> str:
    """The Redis key that allows one deployment per (project, environment) at a time."""
    return f"conveyor:lock:deploy:{project}:{environment}"


def build_description(build: Build) -> str:
    if build.state == "succeeded" and build.started_at and build.finished_at:
        return f"Built in {_duration(build.started_at, build.finished_at)}"
    return {"queued": "Build queued", "running": "Building",
            "failed": f"Build failed: {build.error or 'see the log'}"}.get(build.state, build.state)


def deployment_description(deployment: Deployment) -> str:
    env = deployment.environment
    if deployment.state == "succeeded" and deployment.started_at and deployment.finished_at:
        took = _duration(deployment.started_at, deployment.finished_at)
        return f"Deployed {deployment.release_id} to {env} in {took}"
    return {"queued": f"Waiting to deploy to {env}", "running": f"Deploying to {env}",
            "failed": f"Deploy to {env} failed: {deployment.error or 'see the log'}",
            "error": f"Deploy to {env} could not finish: {deployment.error or 'see the log'}",
            }.get(deployment.state, f"{deployment.state}")


def _duration(start: datetime, end: datetime) -> str:
    seconds = max(0, round((aware(end) - aware(start)).total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
