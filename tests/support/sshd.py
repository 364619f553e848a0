"""Real OpenSSH sshd processes on loopback, used as deploy targets."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.services import free_port

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 10.0
_SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server")

# bash sources ~/.bashrc for a command sent by sshd only when its shell level is below 2;
# SHLVL=1 in the session's environment makes that level 2, so root's pyenv-loading .bashrc
# (about 115 ms per command) is skipped, as on a host whose .bashrc stays quiet.
_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowAgentForwarding no
PrintMotd no
SetEnv SHLVL=1
Subsystem sftp {sftp}
LogLevel ERROR
"""


@dataclass
class SshHost:
    """One sshd listening on 127.0.0.1, with its own host key and an empty deploy root."""

    name: str
    port: int
    spec: str
    root: Path
    dir: Path
    authorized_keys: Path
    mount: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    def host_key_line(self) -> str:
        """The public host key as "ssh-ed25519 AAAA..." (no comment)."""
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{kind} {blob}"

    def start(self) -> None:
        """Start sshd on this host's port; no-op if it runs already."""
        if self.process is not None and self.process.poll() is None:
            return
        sftp = next((p for p in _SFTP_SERVERS if os.access(p, os.X_OK)), "internal-sftp")
        config = self.dir / "sshd_config"
        config.write_text(
            _CONFIG.format(
                port=self.port,
                host_key=self.host_key,
                pid_file=self.dir / "sshd.pid",
                authorized_keys=self.authorized_keys,
                sftp=sftp,
            )
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        log = self.dir / "sshd.log"
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                self._argv([SSHD, "-D", "-e", "-f", str(config)]),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _banner_read(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SshdStartError(
                    f"sshd for {self.name} on port {self.port} did not start: "
                    f"{log.read_text(errors='replace').strip()}"
                )
            time.sleep(0.02)

    def _argv(self, sshd: list[str]) -> list[str]:
        """sshd's command; with `mount`, in a mount namespace of its own where `root` is
        bind-mounted at `mount`, so every host of a fleet has its own deploy path."""
        if self.mount is None:
            return sshd
        bind = 'mount --bind -- "$1" "$2" && shift 2 && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", bind, "sh", str(self.root), str(self.mount), *sshd]

    def stop(self) -> None:
        """Kill sshd and every session it runs (a host gone away); idempotent."""
        if self.process is None:
            return
        for pid in _descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def drop_connections(self) -> None:
        """Kill every session (and what it runs) but keep listening: connections dropped as
        by a network blip; the next connection is accepted."""
        if self.process is None:
            return
        for pid in _descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def regenerate_host_key(self) -> None:
        """Give the host a new host key and restart it: a changed key, as after a reinstall."""
        self.stop()
        self.host_key.unlink()
        self.host_key.with_suffix(".pub").unlink()
        _keygen(self.host_key)
        self.start()


class SshdStartError(RuntimeError):
    """sshd exited or did not answer with an SSH banner in time."""


@dataclass
class SshFleet:
    """Hosts sharing one client key; known_hosts lists every host's key as first started."""

    hosts: list[SshHost]
    client_key: Path
    known_hosts: Path
    deploy_path: Path  # the same path on every host, each host seeing its own `root` there

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()


def start_fleet(base: Path, count: int) -> SshFleet:
    """Start `count` sshd hosts (host1, host2, ...) with their files under `base`."""
    base.mkdir(parents=True, exist_ok=True)
    client_key = base / "client_ed25519"
    _keygen(client_key)
    authorized_keys = base / "authorized_keys"
    authorized_keys.write_text(client_key.with_suffix(".pub").read_text())
    deploy_path = base / "deploy"
    deploy_path.mkdir()
    fleet = SshFleet(hosts=[], client_key=client_key, known_hosts=base / "known_hosts",
                     deploy_path=deploy_path)
    try:
        for n in range(1, count + 1):
            fleet.hosts.append(_start_host(base, f"host{n}", authorized_keys, deploy_path))
    except BaseException:
        fleet.stop()
        raise
    fleet.known_hosts.write_text(
        "".join(f"[127.0.0.1]:{h.port} {h.host_key_line()}\n" for h in fleet.hosts)
    )
    return fleet


def ssh_run(
    fleet: SshFleet, host: SshHost, *argv: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run argv on `host` with the OpenSSH client, host key verified; each arg is shell-quoted.

    For a shell snippet pass it explicitly: ssh_run(fleet, host, "sh", "-c", "a && b").
    """
    command = [
        "ssh", "-F", "/dev/null", "-i", str(fleet.client_key), "-p", str(host.port),
        "-o", f"UserKnownHostsFile={fleet.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
        "-o", "LogLevel=ERROR", "root@127.0.0.1", "--", shlex.join(argv),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def _start_host(base: Path, name: str, authorized_keys: Path, mount: Path) -> SshHost:
    root = base / name / "root"
    root.mkdir(parents=True)
    sshd_dir = base / name / "sshd"
    sshd_dir.mkdir()
    _keygen(sshd_dir / "ssh_host_ed25519_key")
    for _attempt in range(5):  # the free port may be taken before sshd binds it
        port = free_port()
        host = SshHost(name, port, f"root@127.0.0.1:{port}", root, sshd_dir, authorized_keys,
                       mount)
        try:
            host.start()
            return host
        except SshdStartError as error:
            if "Address already in use" not in str(error):
                raise
    raise SshdStartError(f"no free port found for {name}")


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip


def _banner_read(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            return conn.recv(256).startswith(b"SSH-2.0-")
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (sshd puts each connection in its own session)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found
