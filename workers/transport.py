"""Where and how a :class:`~workers.remote.Step` runs: over SSH (paramiko) or locally.

Both transports send a step the same way: the fixed command line
``sh -s -- ARGS`` (validated arguments only, each quoted) and, on its standard
input, :func:`workers.remote.stdin_text` (the env exports and the script). Over
SSH the command is wrapped in the host's ``timeout`` so that a step that overruns
is stopped on the host itself, whatever happens to the connection.

One :class:`SshTransport` is one SSH connection, made by :func:`connect` inside
the job that uses it and reused for every step and upload to that host.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import paramiko
from paramiko.hostkeys import InvalidHostKey

from workers.remote import Step, check_path, stdin_text

__all__ = [
    "KILL_AFTER",
    "DeadlineExceeded",
    "HostKeyError",
    "HostSpec",
    "LocalTransport",
    "Result",
    "SshTransport",
    "Transport",
    "TransportError",
    "connect",
    "fingerprint",
    "known_host_keys",
    "record_host_key",
    "scan_host_key",
]

#: Seconds between the TERM and the KILL sent to a step that overran its timeout.
KILL_AFTER = 5
# Extra seconds our own clock waits, past a step's timeout and KILL_AFTER, for the
# host's `timeout` to report back before the channel is given up.
_REPORT_GRACE = 5.0
# Seconds to wait for the end of a step's output once its exit status is in.
_OUTPUT_LINGER = 2.0
_READ_SIZE = 65536
_UPLOAD_CHUNK = 256 * 1024
# What may be in flight on a channel (sent, its window not yet given back by the host):
# this much, or what `_FLIGHT_RATE` bytes a second fill in one round trip when that is more.
# sshd offers a 2 MiB window; a sender that fills it (as paramiko does, from a thread that
# waits for the GIL) makes sshd buffer megabytes per channel, and on loopback with ten
# uploads that buffering cost sshd 3x the CPU of the upload itself (bench/deploy.py).
# OpenSSH 6.9+ gives window back every 3 packets (96 KiB), so this never stalls it.
_FLIGHT_MIN = 256 * 1024
_FLIGHT_RATE = 256 * 1024 * 1024  # above what one SSH stream carries, so never a rate cap
# A host that gives no window back for this long (a loaded host may pause for a second),
# with less than its window in flight, gives it back late (at half the window, as old
# servers do): the allowance is dropped for the connection.
_FLIGHT_STALL = 2.0
# Run by `sh -c` on the host for an upload, with $1 = the path, $2 = the size: the
# part file is renamed only when every byte arrived.
_RECEIVE = (
    'cat >"$1.part"; size=$(wc -c <"$1.part"); '
    'if [ "$size" -ne "$2" ]; then echo "conveyor: received $size of $2 bytes" >&2; exit 1; fi; '
    'mv -f "$1.part" "$1"'
)
_PREFERRED_CIPHERS = ("aes128-gcm@openssh.com",)
# How a command stopped by the host's `timeout` ends: 124 after TERM; after KILL,
# `timeout` is killed with its process group, so sshd reports a signal, which
# paramiko shows as -1 (and a shell as 137).
_TIMED_OUT = (124, 137, -1)
_LOCAL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_CTYPE", "TZ", "TMPDIR")


@dataclass(frozen=True)
class Result:
    """How a step ended: its exit status, its output and how long it took.

    ``exit_status`` is -1 when the host reported none (the process died by a
    signal); a local process killed by signal N reports 128 + N, as a shell does.
    """

    exit_status: int
    stdout: str
    stderr: str
    seconds: float


class TransportError(Exception):
    """A host could not be reached or used; the message is a sentence naming the host."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


class HostKeyError(TransportError):
    """The host's key is unknown or is not the expected one.

    ``expected`` holds the fingerprints it should have had (empty when unknown),
    ``offered`` the fingerprint of the key it showed and ``offered_key`` that key as
    an ``"ssh-ed25519 AAAA..."`` line, ready to be trusted once checked.
    """

    def __init__(
        self, host: str, message: str, *, expected: tuple[str, ...], offered: str, offered_key: str
    ) -> None:
        super().__init__(host, message)
        self.expected = expected
        self.offered = offered
        self.offered_key = offered_key


class DeadlineExceeded(TransportError):
    """A step or an upload did not end in time; it was stopped. Holds the output so far."""

    def __init__(self, host: str, message: str, *, stdout: str = "", stderr: str = "") -> None:
        super().__init__(host, message)
        self.stdout = stdout
        self.stderr = stderr


class Transport(Protocol):
    """Runs steps on one host and uploads files to it."""

    host: str  # display name, as configured: "deploy@10.0.0.11:2222" or "local"

    def run(self, step: Step, *, timeout: float) -> Result:
        """Run ``step``; stop it and raise DeadlineExceeded after ``timeout`` seconds."""
        ...

    def put(self, local: Path, remote: str, *, timeout: float) -> None:
        """Copy ``local`` to the absolute path ``remote``, via ``remote + ".part"``."""
        ...

    def close(self) -> None:
        """Release the connection; the transport is unusable afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


_USER = r"[A-Za-z0-9_.][A-Za-z0-9_.-]*"
_HOSTNAME = r"[A-Za-z0-9_.][A-Za-z0-9_.-]*"
_IPV6 = r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
_HOST_SPEC = re.compile(
    rf"(?P<user>{_USER})@(?:\[(?P<ipv6>{_IPV6})\]|(?P<name>{_HOSTNAME}))(?::(?P<port>[0-9]{{1,5}}))?"
)


@dataclass(frozen=True)
class HostSpec:
    """One target host: ``user@hostname[:port]``, optionally with a pinned host key.

    ``host_key`` is a public key line (``"ssh-ed25519 AAAA..."``); when set, it is
    the only key accepted and known_hosts is not read for this host. The host
    ``local`` (see :meth:`parse`) is the machine Conveyor runs on.
    """

    user: str
    hostname: str
    port: int = 22
    host_key: str | None = None

    def __post_init__(self) -> None:
        if self.is_local:
            return
        if not re.fullmatch(_USER, self.user):
            raise ValueError(f"{self.user!r} is not a valid user name for {self.hostname}")
        if not re.fullmatch(f"{_HOSTNAME}|{_IPV6}", self.hostname):
            raise ValueError(f"{self.hostname!r} is not a valid host name or address")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} of {self.user}@{self.hostname} is not 1 to 65535")
        if self.host_key is not None:
            _parse_key_line(self.host_key)

    @classmethod
    def parse(cls, text: str, host_key: str | None = None) -> HostSpec:
        """Read ``"user@host"``, ``"user@host:port"``, ``"user@[::1]:port"`` or ``"local"``."""
        if text == "local":
            if host_key is not None:
                raise ValueError("the host local takes no host_key")
            return cls(user="", hostname="local", port=0)
        match = _HOST_SPEC.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} is not a host: write user@host, user@host:port or local")
        return cls(
            user=match["user"],
            hostname=match["ipv6"] or match["name"],
            port=int(match["port"] or 22),
            host_key=host_key,
        )

    @property
    def is_local(self) -> bool:
        """True for the host ``local``: steps run in a subprocess, not over SSH."""
        return self.user == "" and self.hostname == "local"

    @property
    def known_hosts_name(self) -> str:
        """The name of this host in a known_hosts file (``[host]:port`` off port 22)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        if self.is_local:
            return "local"
        hostname = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        port = "" if self.port == 22 else f":{self.port}"
        return f"{self.user}@{hostname}{port}"


def connect(
    host: HostSpec, *, key_path: Path | None, known_hosts: Path | None, connect_timeout: float
) -> Transport:
    """Open the one connection to ``host`` that its steps share, its host key verified.

    The host key must match the pinned ``host.host_key`` or, without one, an entry
    of ``known_hosts``; otherwise HostKeyError (which carries the key offered, for
    a "trust" command). Authentication uses ``key_path`` only: no agent, no
    ``~/.ssh`` keys. Raises TransportError when the host cannot be reached or used.
    """
    if host.is_local:
        return LocalTransport()
    name = str(host)
    expected = _expected_keys(host, known_hosts)
    key = _load_key(name, key_path)
    ssh = paramiko.Transport(_open_socket(host, connect_timeout))
    try:
        _prefer_algorithms(ssh, expected)
        ssh.banner_timeout = ssh.handshake_timeout = ssh.auth_timeout = connect_timeout
        _handshake(name, ssh, connect_timeout)
        _verify_host_key(host, ssh.get_remote_server_key(), expected, known_hosts)
        _authenticate(name, ssh, host.user, key, key_path)
    except BaseException:
        ssh.close()
        raise
    ssh.set_keepalive(30)
    return SshTransport(name, ssh)


def scan_host_key(host: HostSpec, *, known_hosts: Path | None,
                  connect_timeout: float) -> paramiko.PKey:
    """The host key ``host`` offers, from the handshake alone: no login, nothing trusted.
    Key types already expected for the host are preferred, so like is compared with like."""
    name = str(host)
    expected = _expected_keys(host, known_hosts)
    ssh = paramiko.Transport(_open_socket(host, connect_timeout))
    try:
        _prefer_algorithms(ssh, expected)
        ssh.banner_timeout = ssh.handshake_timeout = connect_timeout
        _handshake(name, ssh, connect_timeout)
        return ssh.get_remote_server_key()
    finally:
        ssh.close()


def known_host_keys(host: HostSpec, known_hosts: Path | None) -> list[paramiko.PKey]:
    """The keys ``host`` may show: its pinned one, or its entries in ``known_hosts``."""
    return _expected_keys(host, known_hosts)


def record_host_key(known_hosts: Path, host: HostSpec, key: paramiko.PKey, *,
                    replace: bool = False) -> None:
    """Add ``key`` for ``host`` to ``known_hosts`` (made if missing); with ``replace``, first
    drop the host's other entries (hashed ones too). The file is replaced in one rename."""
    name = host.known_hosts_name
    try:
        lines = known_hosts.read_text().splitlines() if known_hosts.exists() else []
    except OSError as exc:
        raise TransportError(str(host), f"cannot read {known_hosts}: {exc.strerror}") from exc
    if replace:
        lines = [line for line in lines if not _names_host(line, name)]
    lines.append(f"{name} {key.get_name()} {key.get_base64()}")
    part = known_hosts.with_name(f".{known_hosts.name}.part")
    try:
        part.write_text("".join(f"{line}\n" for line in lines))
        part.chmod(0o644)
        os.replace(part, known_hosts)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        raise TransportError(str(host), f"cannot write {known_hosts}: {exc.strerror}") from exc


def _names_host(line: str, name: str) -> bool:
    """Whether a known_hosts line is an entry for ``name`` (plain or hashed)."""
    fields = line.split()
    if len(fields) < 3 or line.startswith("#"):
        return False
    for pattern in fields[0].split(","):
        if pattern.startswith("|1|"):
            salt = pattern.split("|")[2]
            if paramiko.HostKeys.hash_host(name, salt) == pattern:
                return True
        elif pattern == name:
            return True
    return False


def fingerprint(key_blob: bytes) -> str:
    """The SHA256 fingerprint of a public key, as OpenSSH shows it: ``SHA256:base64``."""
    digest = base64.b64encode(hashlib.sha256(key_blob).digest()).decode("ascii")
    return f"SHA256:{digest.rstrip('=')}"


class _Closing:
    """`with transport:` closes it at the end."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SshTransport(_Closing):
    """Steps and uploads over one authenticated paramiko connection.

    Each step or upload is one exec channel on the shared connection, wrapped in
    the host's ``timeout``: after ``timeout`` seconds it sends TERM to the
    command's process group, KILL :data:`KILL_AFTER` seconds later, and
    DeadlineExceeded is raised once the host reports the command stopped. Our
    own clock gives up on a host that does not report back by ``timeout +
    KILL_AFTER`` plus a grace: the channel is closed and DeadlineExceeded raised.
    """

    def __init__(self, host: str, ssh: paramiko.Transport) -> None:
        self.host = host
        self._ssh = ssh
        self._paced = True  # False once the host was seen to give window back late

    def run(self, step: Step, *, timeout: float) -> Result:
        """Run ``step`` as ``timeout ... sh -s -- ARGS`` with :func:`stdin_text` on stdin."""
        argv = ["sh", "-s", "--", *step.args]
        return self._exec(step.name, argv, [stdin_text(step).encode()], timeout)

    def put(self, local: Path, remote: str, *, timeout: float) -> None:
        """Stream ``local`` into ``cat`` on the host, to ``remote + ".part"``, then rename it.

        The host renames the part only once it holds as many bytes as were meant
        to be sent, so a partial upload never sits at ``remote``; an interrupted
        one leaves ``remote + ".part"``, overwritten by the next upload and removed
        by prune. (Streaming measured faster than pipelined SFTP and than scp.)
        """
        check_path(remote)
        try:
            size = local.stat().st_size
            source = local.open("rb")
        except OSError as exc:
            raise TransportError(self.host, f"cannot read {local}: {exc.strerror}") from exc
        argv = ["sh", "-c", _RECEIVE, "sh", remote, str(size)]
        with source:
            chunks = iter(functools.partial(source.read, _UPLOAD_CHUNK), b"")
            result = self._exec(f"the upload of {local.name}", argv, chunks, timeout)
        if result.exit_status != 0:
            reason = result.stderr.strip() or f"exit status {result.exit_status}"
            message = f"uploading {local.name} to {remote} on {self.host} failed: {reason}"
            raise TransportError(self.host, message)

    def close(self) -> None:
        """Close the SSH connection."""
        self._ssh.close()

    def _exec(self, what: str, argv: list[str], stdin: Iterable[bytes], timeout: float) -> Result:
        """Run ``argv`` under the host's ``timeout``, feeding it ``stdin``."""
        seconds = _whole_seconds(timeout)
        started = time.monotonic()
        allowed = seconds + KILL_AFTER + _REPORT_GRACE
        deadline = started + allowed
        timed = ["exec", "timeout", "-s", "TERM", "-k", str(KILL_AFTER), str(seconds), *argv]
        channel = self._open_channel(timeout)
        try:
            channel.settimeout(allowed)
            channel.exec_command(shlex.join(timed))
            readers = _start_readers(channel)
            flight = _allowance(self._ssh.sock) if self._paced else None
            self._paced = _send_input(channel, stdin, deadline, flight) and self._paced
            finished = channel.status_event.wait(max(deadline - time.monotonic(), 0))
            stdout, stderr = _finish_readers(channel, readers, _OUTPUT_LINGER if finished else 0)
        except (paramiko.SSHException, OSError) as exc:
            raise self._lost(what, exc) from exc
        finally:
            channel.close()
        elapsed = time.monotonic() - started
        reported = channel.exit_status if finished else None
        status = self._exit_status(what, reported, elapsed >= seconds, stdout, stderr, seconds)
        return Result(status, _text(stdout), _text(stderr), elapsed)

    def _open_channel(self, timeout: float) -> paramiko.Channel:
        try:
            return self._ssh.open_session(timeout=timeout)
        except (paramiko.SSHException, OSError) as exc:
            message = f"the SSH connection to {self.host} cannot open a session: {exc}"
            raise TransportError(self.host, message) from exc

    def _lost(self, what: str, exc: BaseException | None) -> TransportError:
        reason = f": {exc}" if exc else ""
        return TransportError(
            self.host, f"the SSH connection to {self.host} was lost during {what}{reason}"
        )

    def _exit_status(
        self, what: str, status: int | None, late: bool, stdout: bytes, stderr: bytes, seconds: int
    ) -> int:
        """The status of a command that ended by itself, else raise: ``status`` is None
        when the host never reported an end, ``late`` when the timeout had passed."""
        if status == -1 and not self._ssh.is_active():
            raise self._lost(what, None)
        if status is None:
            message = (
                f"{what} on {self.host} did not end within {seconds} s and the host did not"
                " report stopping it; the channel was closed"
            )
        elif status in _TIMED_OUT and late:
            message = f"{what} on {self.host} did not end within {seconds} s and was stopped"
        else:
            return status
        raise DeadlineExceeded(self.host, message, stdout=_text(stdout), stderr=_text(stderr))


class LocalTransport(_Closing):
    """Steps as ``sh`` subprocesses and uploads as file copies, on this machine.

    The subprocess gets a scrubbed environment (:data:`_LOCAL_ENV` only), as a
    fresh SSH session would: Conveyor's own secrets do not reach scripts or hooks.
    """

    host = "local"

    def run(self, step: Step, *, timeout: float) -> Result:
        """Run ``step`` as ``sh -s -- ARGS`` in its own session; kill that group on timeout."""
        if timeout <= 0:
            raise ValueError(f"a timeout must be positive, not {timeout!r}")
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                ["sh", "-s", "--", *step.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env={name: os.environ[name] for name in _LOCAL_ENV if name in os.environ},
                cwd="/",
            )
        except OSError as exc:
            raise TransportError(self.host, f"cannot start sh for {step.name}: {exc}") from exc
        try:
            stdout, stderr = process.communicate(stdin_text(step).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            stdout, stderr = _stop_group(process)
            message = f"{step.name} on local did not end within {timeout:g} s and was stopped"
            raise DeadlineExceeded(
                self.host, message, stdout=_text(stdout), stderr=_text(stderr)
            ) from None
        status = process.returncode if process.returncode >= 0 else 128 - process.returncode
        return Result(status, _text(stdout), _text(stderr), time.monotonic() - started)

    def put(self, local: Path, remote: str, *, timeout: float) -> None:
        """Copy ``local`` to ``remote + ".part"``, then rename it to ``remote``.

        A local copy is not interrupted: ``timeout`` is accepted for the interface.
        """
        part = check_path(remote) + ".part"
        try:
            shutil.copyfile(local, part)
            os.replace(part, remote)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise TransportError(self.host, f"copying {local} to {remote} failed: {exc}") from exc

    def close(self) -> None:
        """Nothing to release."""


# --- connecting -------------------------------------------------------------------------


def _expected_keys(host: HostSpec, known_hosts: Path | None) -> list[paramiko.PKey]:
    """The keys the host may show: the pinned one, or its known_hosts entries."""
    if host.host_key is not None:
        return [_parse_key_line(host.host_key)]
    if known_hosts is None:
        return []
    try:
        entries = paramiko.HostKeys(str(known_hosts)).lookup(host.known_hosts_name)
    except (OSError, paramiko.SSHException, InvalidHostKey) as exc:
        message = f"cannot read the known_hosts file {known_hosts} for {host}: {exc}"
        raise TransportError(str(host), message) from exc
    return list(entries.values()) if entries else []


def _parse_key_line(line: str) -> paramiko.PKey:
    """A public key from ``"type base64 [comment]"``; ValueError when it is not one."""
    fields = line.split()
    try:
        if len(fields) < 2:
            raise ValueError("expected 'type base64'")
        return paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1], validate=True))
    except (ValueError, binascii.Error, paramiko.SSHException) as exc:
        raise ValueError(f"{line!r} is not a public key line like 'ssh-ed25519 AAAA...'") from exc


def _load_key(host: str, key_path: Path | None) -> paramiko.PKey:
    if key_path is None:
        raise TransportError(host, f"no SSH key is configured to log in to {host}")
    try:
        return paramiko.PKey.from_path(key_path)
    except (OSError, ValueError, paramiko.SSHException) as exc:
        raise TransportError(host, f"cannot use the SSH key {key_path}: {exc}") from exc


def _open_socket(host: HostSpec, connect_timeout: float) -> socket.socket:
    """A TCP connection with TCP_NODELAY: without it each step waits ~40 ms on Nagle."""
    try:
        sock = socket.create_connection((host.hostname, host.port), timeout=connect_timeout)
    except TimeoutError as exc:
        message = f"cannot reach {host}: no answer within {connect_timeout:g} s"
        raise TransportError(str(host), message) from exc
    except OSError as exc:
        raise TransportError(str(host), f"cannot reach {host}: {exc.strerror or exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _prefer_algorithms(ssh: paramiko.Transport, expected: list[paramiko.PKey]) -> None:
    """Prefer AES-GCM (cheaper on CPU), and the host key types we can check."""
    options = ssh.get_security_options()
    options.ciphers = _put_first(options.ciphers, _PREFERRED_CIPHERS)
    known_types: list[str] = []
    for key in expected:
        name = key.get_name()
        known_types += ["rsa-sha2-512", "rsa-sha2-256"] if name == "ssh-rsa" else [name]
    options.key_types = _put_first(options.key_types, tuple(known_types))


def _put_first(available: tuple[str, ...], preferred: tuple[str, ...]) -> tuple[str, ...]:
    first = tuple(name for name in preferred if name in available)
    return first + tuple(name for name in available if name not in first)


def _handshake(host: str, ssh: paramiko.Transport, connect_timeout: float) -> None:
    try:
        ssh.start_client(timeout=connect_timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise TransportError(host, f"the SSH handshake with {host} failed: {exc}") from exc


def _verify_host_key(
    host: HostSpec, offered: paramiko.PKey, expected: list[paramiko.PKey], known_hosts: Path | None
) -> None:
    """Accept the offered key only if it is one of the expected keys."""
    if any(key.asbytes() == offered.asbytes() for key in expected):
        return
    offered_fp = fingerprint(offered.asbytes())
    offered_key = f"{offered.get_name()} {offered.get_base64()}"
    expected_fps = tuple(fingerprint(key.asbytes()) for key in expected)
    source = "its pinned host_key" if host.host_key else f"known_hosts file {known_hosts}"
    if expected:
        pairs = zip(expected, expected_fps, strict=True)
        wanted = ", ".join(f"{key.get_name()} {fp}" for key, fp in pairs)
        message = (
            f"the host key of {host} has changed: expected {wanted} (from {source}), but the"
            f" host offered {offered.get_name()} {offered_fp}. This is either a reinstalled"
            " host or someone in the middle: check the key on the host before trusting it"
        )
    else:
        where = f"in the known_hosts file {known_hosts}" if known_hosts else "in any known_hosts"
        message = (
            f"the host key of {host} is unknown: there is no entry for {host.known_hosts_name}"
            f" {where} and no pinned host_key; the host offered {offered.get_name()}"
            f" {offered_fp}. Check that fingerprint on the host before trusting it"
        )
    raise HostKeyError(
        str(host), message, expected=expected_fps, offered=offered_fp, offered_key=offered_key
    )


def _authenticate(
    host: str, ssh: paramiko.Transport, user: str, key: paramiko.PKey, key_path: Path | None
) -> None:
    try:
        ssh.auth_publickey(user, key)
    except paramiko.AuthenticationException as exc:
        message = f"{host} refused the SSH key {key_path} for the user {user}"
        raise TransportError(host, message) from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise TransportError(host, f"logging in to {host} failed: {exc}") from exc
    if not ssh.is_authenticated():
        message = f"{host} asks for more than the SSH key {key_path} to log in as {user}"
        raise TransportError(host, message)


# --- running ----------------------------------------------------------------------------


def _whole_seconds(timeout: float) -> int:
    """The step timeout as the host's `timeout` takes it: whole seconds, at least 1."""
    if timeout <= 0:
        raise ValueError(f"a timeout must be positive, not {timeout!r}")
    return max(1, math.ceil(timeout))


def _send_input(channel: paramiko.Channel, chunks: Iterable[bytes], deadline: float,
                flight: int | None) -> bool:
    """Send a command's stdin, then EOF, with at most ``flight`` bytes in flight (None: as
    much as the host's window takes). Stops early, silently, when the command has gone
    (its exit status tells why) or ``deadline`` passes (the caller sees it). False when
    the host gave no window back in time: do not pace this connection again."""
    window = channel.out_window_size  # the host's whole window: nothing sent yet
    # One SSH packet's worth at a time (paramiko's most per packet): a piece that does not
    # fill its last packet would send a runt.
    size = max(channel.out_max_packet_size - 64, 1024)
    try:
        for chunk in chunks:
            for start in range(0, len(chunk), size):
                piece = chunk[start:start + size]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                if flight is not None and not _room(channel, window, flight - len(piece),
                                                    min(remaining, _FLIGHT_STALL)):
                    flight = None
                # Never shortens the readers' waits below the deadline: see _StreamReader.
                channel.settimeout(remaining)
                channel.sendall(piece)
        channel.shutdown_write()
    except OSError:
        pass
    return flight is not None


def _room(channel: paramiko.Channel, window: int, limit: int, patience: float) -> bool:
    """Wait until no more than ``limit`` bytes are in flight on ``channel`` (``window``
    minus what is left of it); False when the host gave none back for ``patience`` s.
    paramiko raises the channel's window and notifies this condition under its lock."""
    with channel.out_buffer_cv:
        while window - channel.out_window_size > limit and not channel.closed:
            if not channel.out_buffer_cv.wait(patience):
                return window - channel.out_window_size <= limit
    return True


def _allowance(sock: object) -> int:
    """What may be in flight on a channel of the connection over ``sock``: the larger of
    _FLIGHT_MIN and what _FLIGHT_RATE fills in the path's round trip (Linux tells it)."""
    rtt = _round_trip(sock)
    return max(_FLIGHT_MIN, int(rtt * _FLIGHT_RATE)) if rtt is not None else _FLIGHT_MIN


def _round_trip(sock: object) -> float | None:
    """The least round-trip time the kernel saw on a TCP socket, in seconds: the path's
    own, without the queueing a loaded host adds (``tcpi_min_rtt`` of Linux's ``struct
    tcp_info``, at byte 148; else its smoothed ``tcpi_rtt``, at byte 68); None elsewhere."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
    offset = 148 if len(info) >= 152 else 68
    if len(info) < offset + 4:
        return None
    return int.from_bytes(info[offset:offset + 4], sys.byteorder) / 1e6


class _StreamReader(threading.Thread):
    """Reads one output stream of a channel until it ends, times out or is closed.

    The channel's timeout, which its reads use, always points at the step's
    deadline or past it; once it passes, the channel is closed and reading ends.

    Both streams are read at once: paramiko reopens the channel's window only as
    data is read, so a full stderr left unread would stall stdout, and the reverse.
    """

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        super().__init__(daemon=True)
        self._recv = recv
        self.data = bytearray()

    def run(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            while chunk := self._recv(_READ_SIZE):
                self.data += chunk


def _start_readers(channel: paramiko.Channel) -> tuple[_StreamReader, _StreamReader]:
    readers = (_StreamReader(channel.recv), _StreamReader(channel.recv_stderr))
    for reader in readers:
        reader.start()
    return readers


def _finish_readers(
    channel: paramiko.Channel, readers: tuple[_StreamReader, _StreamReader], linger: float
) -> tuple[bytes, bytes]:
    """Give both streams ``linger`` seconds to end, then close the channel so they do
    (a process a step left in the background may hold its output open for ever)."""
    end = time.monotonic() + linger
    for reader in readers:
        reader.join(max(end - time.monotonic(), 0))
    if any(reader.is_alive() for reader in readers):
        channel.close()
        for reader in readers:
            reader.join()
    return bytes(readers[0].data), bytes(readers[1].data)


def _stop_group(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """TERM the process group of a local step, KILL it after KILL_AFTER s; its output."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_AFTER)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        return process.communicate(timeout=_REPORT_GRACE)
    except subprocess.TimeoutExpired:  # a process that left the group holds the output open
        process.kill()
        return b"", b""


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
