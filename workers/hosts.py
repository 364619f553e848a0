"""What `conveyor hosts check|trust` and `conveyor deploy --plan` learn from hosts.

The same transports and scripts as the deploy job, used to look and never to change:
`look` (the live release and whether the artifact is there), `check` (the tools a
deployment needs, write access to the path) and `scan` (the host key offered, compared
with the one expected). Recording a key (`trust`) writes only Conveyor's known_hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import paramiko

from app import config as cfg
from workers import remote, transport

T = TypeVar("T")

#: Step deadline for looking at a host: these scripts only read.
LOOK_TIMEOUT = 60.0
_TOOL_NAMES = {"tar": "GNU tar", "coreutils": "GNU coreutils (mv -T, readlink)"}


@dataclass(frozen=True)
class Look:
    """What a host has, for a plan: its live release and whether it holds the artifact."""

    host: str
    current: str | None = None
    has_artifact: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Check:
    """Whether a host can take deployments to `path`: `problems` is empty when it can."""

    host: str
    path: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scan:
    """The key a host offered and how it compares with what Conveyor expects.

    `status`: `trusted` (matches known_hosts), `pinned` (matches its pinned host_key),
    `unknown` (no entry), `changed` (an entry or pin, but another key), `unreachable`.
    """

    host: transport.HostSpec
    status: str
    offered: paramiko.PKey | None = None
    expected: tuple[str, ...] = field(default=())
    error: str | None = None

    @property
    def fingerprint(self) -> str:
        """The offered key's type and SHA256 fingerprint, as OpenSSH shows it."""
        if self.offered is None:
            return ""
        return f"{self.offered.get_name()} {transport.fingerprint(self.offered.asbytes())}"


def look(ssh: cfg.Ssh, env: cfg.Environment, sha256: str, size: int) -> list[Look]:
    """Probe every host of `env`, `parallel` at once, changing nothing."""
    def one(host: cfg.Host) -> Look:
        try:
            with connect(ssh, host) as link:
                step = remote.probe(env.path, sha256, size, look=True)
                result = link.run(step, timeout=LOOK_TIMEOUT)
        except transport.TransportError as exc:
            return Look(host.spec, error=str(exc))
        if result.exit_status != 0:
            return Look(host.spec, error=_reason(result))
        probed = remote.parse_probe(result.stdout)
        return Look(host.spec, current=probed.current, has_artifact=probed.has_artifact)

    return _each(one, env.hosts, env.parallel)


def check(ssh: cfg.Ssh, env: cfg.Environment) -> list[Check]:
    """Connect to every host of `env` (key verified), and report what a deployment lacks."""
    def one(host: cfg.Host) -> Check:
        try:
            with connect(ssh, host) as link:
                result = link.run(remote.inspect(env.path), timeout=LOOK_TIMEOUT)
        except transport.TransportError as exc:
            return Check(host.spec, env.path, problems=(str(exc),))
        if result.exit_status != 0:
            missing = "timeout" in result.stderr and result.exit_status == 127
            reason = "GNU coreutils' timeout is missing" if missing else _reason(result)
            return Check(host.spec, env.path, problems=(reason,))
        return _judge(host.spec, env.path, remote.parse_fields(result.stdout))

    return _each(one, env.hosts, env.parallel)


def scan(ssh: cfg.Ssh, hosts: Iterable[cfg.Host]) -> list[Scan]:
    """The key each SSH host offers, compared with its pin or known_hosts entries."""
    specs = [transport.HostSpec.parse(h.spec, h.host_key) for h in hosts if not h.is_local]

    def one(spec: transport.HostSpec) -> Scan:
        try:
            expected = transport.known_host_keys(spec, ssh.known_hosts)
            offered = transport.scan_host_key(spec, known_hosts=ssh.known_hosts,
                                              connect_timeout=float(ssh.connect_timeout))
        except transport.TransportError as exc:
            return Scan(spec, "unreachable", error=str(exc))
        prints = tuple(f"{k.get_name()} {transport.fingerprint(k.asbytes())}" for k in expected)
        if any(key.asbytes() == offered.asbytes() for key in expected):
            return Scan(spec, "pinned" if spec.host_key else "trusted", offered, prints)
        return Scan(spec, "changed" if expected else "unknown", offered, prints)

    return _each(one, specs, 10)


def trust(known_hosts: Path, found: Scan) -> None:
    """Record the key `found` offered in `known_hosts` (replacing the host's old entries
    when its key changed)."""
    assert found.offered is not None
    transport.record_host_key(known_hosts, found.host, found.offered,
                              replace=found.status == "changed")


def _judge(host: str, path: str, facts: dict[str, str]) -> Check:
    problems = [f"{_TOOL_NAMES.get(tool, tool)} is missing"
                for tool in remote.REQUIRED_TOOLS if facts.get(tool) != "yes"]
    where = facts.get("path", "")
    if where.startswith("readonly:"):
        problems.append(f"{where.removeprefix('readonly:')} cannot be written: {path} needs it")
    notes = [f"{path} is writable" if where == "writable" else f"{path} can be created"]
    if facts.get("openssl") == "yes":
        notes.append("openssl present (faster sha256)")
    return Check(host, path, tuple(problems), tuple(notes) if not problems else ())


def connect(ssh: cfg.Ssh, host: cfg.Host) -> transport.Transport:
    """The one connection to a configured host, with the pipeline file's key, known_hosts and
    connect timeout (the deploy job and the `hosts` commands alike)."""
    return transport.connect(transport.HostSpec.parse(host.spec, host.host_key),
                             key_path=ssh.key, known_hosts=ssh.known_hosts,
                             connect_timeout=float(ssh.connect_timeout))


def _reason(result: transport.Result) -> str:
    lines = result.stderr.strip().splitlines() or [f"exit status {result.exit_status}"]
    return lines[-1].removeprefix("conveyor: ")


def _each(func: Callable[[T], object], items: Iterable[T], workers: int) -> list:  # type: ignore[type-arg]
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        return list(pool.map(func, items))
