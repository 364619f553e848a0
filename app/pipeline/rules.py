"""The pipeline's decisions, without I/O: plain values in, plain values out."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app import config as cfg
from app.events import PullRequest, Push
from app.models import Build, Deployment, aware

# `paths:` (issue 3): a push that changes nothing under them is not built, nor deployed.
UNCHANGED = "the push changes nothing under paths"


def environments_for(project: cfg.Project, push: Push) -> list[cfg.Environment] | str:
    """The environments a push deploys to (by `branches` or `tags` globs), or the reason it
    deploys nowhere."""
    if push.deleted:
        return f"{push.ref} was deleted"
    if push.branch is not None:
        kind, name = "branch", push.branch
        matching = [env for env in project.environments.values()
                    if any(fnmatch.fnmatchcase(name, pattern) for pattern in env.branches)]
    elif push.tag is not None:
        kind, name = "tag", push.tag
        matching = [env for env in project.environments.values()
                    if any(fnmatch.fnmatchcase(name, pattern) for pattern in env.tags)]
    else:
        return f"{push.ref} is neither a branch nor a tag"
    return matching or f"no environment deploys {kind} {name!r}"


def pull_request_refusal(project: cfg.Project, pr: PullRequest) -> str | None:
    """Why a pull request's head is not built (`pull_requests:` off, or from a fork), or None."""
    if project.pull_requests == "off":
        return "pull requests are not built (pull_requests: off)"
    if pr.from_fork and project.pull_requests != "build_forks":
        return (f"pull request #{pr.number} comes from a fork "
                "(pull_requests: build_forks builds those)")
    return None


def changes_question(project: cfg.Project, ref: str, before: str,
                     base: str | None) -> tuple[str, str] | None:
    """What the `paths:` check of a build for this ref compares: (since, base branch); None
    when the build is wanted whatever changed (no `paths:`, or a tag: a release is explicit)."""
    if not project.paths or ref.startswith("refs/tags/"):
        return None
    return before, base or ""


def touches(files: Iterable[str], patterns: Iterable[str]) -> bool:
    """Whether any changed file lies under `paths:` globs.

    Patterns are anchored at the repository root: `*` and `?` stay within one path segment,
    `**` spans any number of them, and a pattern naming a folder covers everything below it.
    """
    compiled = [_path_pattern(pattern) for pattern in patterns]
    return any(pattern.match(prefix) for path in files for prefix in _prefixes(path)
               for pattern in compiled)


def _prefixes(path: str) -> Iterator[str]:
    """`a/b/c`, then its folders `a/b` and `a`."""
    parts = path.strip("/").split("/")
    for end in range(len(parts), 0, -1):
        yield "/".join(parts[:end])


@cache
def _path_pattern(pattern: str) -> re.Pattern[str]:
    regex, rest = [], pattern.strip("/")
    while rest:
        if rest.startswith("**/"):
            regex.append("(?:[^/]+/)*")
            rest = rest[3:]
        elif rest == "**" or rest.startswith("/**"):
            regex.append(".*" if rest == "**" else "(?:/.*)?")
            rest = "" if rest == "**" else rest[3:]
        elif rest[0] == "*":
            regex.append("[^/]*")
            rest = rest[1:]
        elif rest[0] == "?":
            regex.append("[^/]")
            rest = rest[1:]
        else:
            regex.append(re.escape(rest[0]))
            rest = rest[1:]
    return re.compile("".join(regex) + r"\Z")


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
    """`text` with every secret value replaced by `***`, and the token of any URL in it
    (`https://user:TOKEN@host` -> `https://user:***@host`), configured or not."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return _URL_USERINFO.sub(_masked_userinfo, text)


def mask_all(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (JSON-like: dicts, lists, strings) with `mask` applied to every string in it."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {key: mask_all(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_all(item, secrets) for item in value]
    return value


# scheme://user[:password]@ ; the user part stops at what cannot be in it, so that
# `ssh://git@host` is matched and `a@b` outside a URL is not.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/@:?#]*)"
                           r"(?::(?P<password>[^\s/@?#]*))?@")
# A user name alone is a token over HTTP (`https://TOKEN@github.com`), a login over SSH.
_TOKEN_AS_USER = ("http://", "https://")


def _masked_userinfo(match: re.Match[str]) -> str:
    scheme, user = match.group("scheme"), match.group("user")
    if match.group("password") is not None:
        return f"{scheme}{user}:***@"
    if user and scheme.lower() in _TOKEN_AS_USER and user != "***":
        return f"{scheme}***@"
    return match.group(0)


def without_credentials(url: str) -> str:
    """`url` without the user and token it may carry: what may be stored and shown."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask(url, ())
    if not parts.username and not parts.password:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def is_local_url(url: str | None) -> bool:
    """Whether git would read `url` from this machine: a path, `file://`, or a remote
    helper (`ext::...`, which runs a command here)."""
    if not url:
        return False
    if url.startswith("file:") or "::" in url.split("/", 1)[0]:
        return True
    if "://" in url:
        return False
    head = url.split("/", 1)[0]
    return ":" not in head  # `host:path` is scp-like SSH; anything else is a path


LOCAL_PAYLOAD_URL = ("the payload's clone URL is a local path; set clone_url in conveyor.yml"
                     " to build from a path")


def stored_clone_url(configured: str | None, payload: str) -> str:
    """What a build row keeps of where the repository is: never a credential."""
    return without_credentials(configured or payload)


def clone_source(configured: str | None, stored: str) -> tuple[str, str | None]:
    """Where a build fetches from, and why it must not (or None): the pipeline file's
    `clone_url` when set (credentials and all), else the push's URL, which may never name
    a path on the worker (anyone holding a signed payload would choose what is read)."""
    if configured:
        return configured, None
    return stored, LOCAL_PAYLOAD_URL if is_local_url(stored) else None


def lock_name(project: str, environment: str) -> str:
    """The Redis key that allows one deployment per (project, environment) at a time."""
    return f"conveyor:lock:deploy:{project}:{environment}"


# A deployment that finds its environment's lock taken goes back to the queue for this long
# (RQ's scheduler) instead of holding a worker while it waits.
LOCK_RETRY_SECONDS = 5
# Undoing an interrupted activation (reconnect, put back, record) must fit in what RQ allows
# after a job's timeout before it kills the work horse (60 s).
UNDO_SECONDS = 45


def lock_retry_job_id(deployment_id: int, now: float) -> str:
    """The job id of a deployment's next try for the lock: one per deployment and retry
    interval, so workers that find the lock taken at once schedule one retry, not many."""
    return f"deploy-{deployment_id}-wait-{int(now // LOCK_RETRY_SECONDS)}"


def deployment_deadline(env: cfg.Environment, ssh: cfg.Ssh) -> int:
    """The seconds a deployment to `env` may take before RQ stops its job: every step on every
    host at its own deadline (prepare rounds of `parallel` hosts: connect, prepare, upload,
    prepare again; activation batches: switch, after_activate with its health check; prune),
    plus the time to undo. A backstop that no healthy deployment meets."""
    hosts, command = len(env.hosts), ssh.command_timeout
    rounds = -(-hosts // max(env.parallel, 1))
    prepare = rounds * (ssh.connect_timeout + 3 * command)
    health = env.healthcheck.longest if env.healthcheck is not None else 0
    activate = len(activation_batches(hosts, env.batch)) * (2 * command + health)
    watch = env.healthcheck.watch_longest(command) if env.healthcheck is not None else 0
    return prepare + activate + watch + rounds * command + UNDO_SECONDS + 60


def failure_state(hosts_unreachable: list[bool]) -> str:
    """The state of a deployment some hosts failed: `error` when every failed host was
    unreachable (Conveyor could not finish; the release is not to blame), else `failed`."""
    return "error" if all(hosts_unreachable) else "failed"


#: How a deployment that stopped before its end, though no host failed, ends.
STOPPED = {"canceled": "canceled", "lock lost": "error", "artifact gone": "error"}


def deployment_outcome(*, failed_unreachable: Iterable[bool] = (), stopped: str | None = None,
                       stuck: bool = False) -> str:
    """The state a deployment ends in, from what its job saw: a host that could not be put
    back (`stuck`) means Conveyor could not finish (`error`); hosts that failed (each
    unreachable or not) decide by `failure_state`; a stop (`STOPPED`) ends it so; else it
    `succeeded`."""
    failed = list(failed_unreachable)
    if stuck:
        return "error"
    if failed:
        return failure_state(failed)
    if stopped is not None:
        return STOPPED[stopped]
    return "succeeded"


def activation_batches(host_count: int, batch: int) -> list[range]:
    """The hosts (by index) switched together, batch after batch; `batch` 0 = all at once."""
    size = max(host_count, 1) if batch <= 0 else batch
    return [range(start, min(start + size, host_count)) for start in range(0, host_count, size)]


def marks_release_bad(state: str) -> bool:
    """Whether a deployment ending in `state` marks its release bad: `failed` means the release
    itself failed (a hook, the health check, the artifact) and was removed or rolled back;
    `error` means Conveyor could not finish (a host unreachable), which says nothing of it."""
    return state == "failed"


def rollback_target(releases: Iterable[tuple[str, bool, bool]], live: str | None) -> str | None:
    """The release a rollback from `live` takes: the newest one before it that went live and
    was never marked bad. `releases` holds (release id, went live, bad)."""
    good = [release for release, went_live, bad in releases
            if went_live and not bad and (live is None or release < live)]
    return max(good, default=None)


def build_description(build: Build) -> str:
    if build.state == "succeeded" and build.started_at and build.finished_at:
        return f"Built in {took_between(build.started_at, build.finished_at)}"
    return {"queued": "Build queued", "running": "Building",
            "failed": f"Build failed: {build.error or 'see the log'}",
            "skipped": f"Not built: {UNCHANGED}"}.get(build.state, build.state)


def deployment_description(deployment: Deployment, hosts: int | None = None) -> str:
    """What a commit status says of a deployment, in words read at a glance (at most 140
    characters: "Live on 3 hosts in 41s", "Superseded by 1a2b3c4"); `hosts` is how many
    hosts it works on."""
    env, error = deployment.environment, deployment.error or ""
    on = f" on {_hosts(hosts)}" if hosts else ""
    if deployment.state == "succeeded" and deployment.started_at and deployment.finished_at:
        took = took_between(deployment.started_at, deployment.finished_at)
        if deployment.kind == "rollback":
            return _cut(f"Rolled back to {deployment.release_id}{on} in {took}")
        return _cut(f"Live{on} in {took}")
    if deployment.state == "superseded":
        newer = _SUPERSEDED_BY.search(error)
        return _cut(f"Superseded by {newer.group(1)}" if newer else
                    f"Not deployed: {deployment.sha[:7]} is live on {env} already, or behind it")
    if deployment.state == "failed":
        return _cut(_failure(error) or f"Deploy to {env} failed: see the log")
    return _cut({
        "queued": f"Waiting to deploy to {env}",
        "awaiting_approval": f"Waiting for approval to deploy to {env}",
        "running": f"Deploying to {env}" + (f" ({_hosts(hosts)})" if hosts else ""),
        "error": f"Could not finish: {_failure(error) or error or 'see the log'}",
        "skipped": f"Not deployed to {env}: {UNCHANGED}",
        "canceled": (error[:1].upper() + error[1:]) if error else f"Deploy to {env} canceled",
    }.get(deployment.state, deployment.state))


# "activate failed, every switched host put back: deploy@web-2: after_activate failed: ..."
_FAILURE = re.compile(r"^(?P<phase>[\w ]+?) failed(?: after \d+ s)?, (?P<outcome>[^:]+): "
                      r"(?:[\w.-]+@)?(?P<host>[\w.\[\]:-]+?)(?::\d+)?: (?:\w+ failed: )?"
                      r"(?P<reason>.+)$", re.S)
_SUPERSEDED_BY = re.compile(r"superseded by deployment \d+ of ([0-9a-f]{7})")


def _failure(error: str) -> str | None:
    """ "the health check failed 2 time(s) on web-2; every switched host put back" out of the
    deploy job's error, or None when it is not of that shape."""
    found = _FAILURE.match(error)
    if found is None:
        return None
    reason = found["reason"].split("; then ")[0].strip()
    outcome = found["outcome"].replace("no host changed", "no host was changed")
    return f"{reason[0].upper()}{reason[1:]} on {found['host']}; {outcome}"


def _hosts(count: int) -> str:
    return f"{count} host{'s' if count != 1 else ''}"


def _cut(text: str) -> str:
    """At most 140 characters (GitHub's limit), cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= 140 else text[:139] + "…"


def took_between(start: datetime, end: datetime) -> str:
    """How long from `start` to `end`, as statuses and chat say it: "41 s", "1 min 15 s"."""
    seconds = max(0, round((aware(end) - aware(start)).total_seconds()))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


# -- the pipeline's order (SPEC §7) -------------------------------------------------------------

#: What a deployment was made by: a push and a promotion move an environment forward on their
#: own; a manual deploy, a rollback and a retry are explicit and may go back.
AUTOMATIC_KINDS = frozenset({"deploy:push", "promotion"})


def promotion_targets(project: cfg.Project, source: str) -> list[cfg.Environment]:
    """The environments that take what succeeds on `source` (their `promote_from`)."""
    return [env for env in project.environments.values() if env.promote_from == source]


def gate(env: cfg.Environment, *, source_succeeded: bool, approved: bool) -> str:
    """Where a deployment whose build succeeded stands: `wait` for its source environment
    (`promote_from`) to succeed with the same build, `awaiting_approval` (`approval: manual`),
    or `go`."""
    if env.promote_from is not None and not source_succeeded:
        return "wait"
    if env.approval == "manual" and not approved:
        return "awaiting_approval"
    return "go"


@dataclass(frozen=True)
class Candidate:
    """A deployment ready to run on an environment: id, commit, and whether a push or a
    promotion made it (it only moves forward) or a person (it may go back)."""

    id: int
    sha: str
    automatic: bool


def choose(candidates: list[Candidate], live_sha: str | None,
           ancestors: set[tuple[str, str]]) -> tuple[int | None, list[int]]:
    """Which waiting deployment runs next, and which are superseded. Forward only: an
    automatic one whose commit is live, or an ancestor of what is live, is superseded. Of the
    rest the newest runs, except that an automatic one gives way to an automatic one whose
    commit descends from its own (a late, out-of-order delivery). `ancestors` holds
    (a, b) where commit a is an ancestor of commit b."""
    behind = {c.id for c in candidates if c.automatic and live_sha is not None
              and (c.sha == live_sha or (c.sha, live_sha) in ancestors)}
    left = sorted((c for c in candidates if c.id not in behind), key=lambda c: -c.id)
    if not left:
        return None, sorted(behind)
    winner = left[0]
    moved = True
    while moved and winner.automatic:
        moved = False
        for other in left:
            if other.automatic and other is not winner and (winner.sha, other.sha) in ancestors:
                winner, moved = other, True
                break
    return winner.id, sorted(c.id for c in candidates if c.id != winner.id)


def deployment_kind(kind: str, trigger: str) -> str:
    """`deploy:push` or `deploy:manual` for a deployment of kind `deploy`, else the kind."""
    if kind != "deploy":
        return kind
    return "deploy:push" if trigger.startswith("push:") else "deploy:manual"
