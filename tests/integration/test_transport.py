"""SSH and local transports against real OpenSSH sshd hosts on loopback."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest

from tests.support.sshd import SshFleet, SshHost
from workers import remote
from workers.remote import Step
from workers.transport import (
    KILL_AFTER,
    DeadlineExceeded,
    HostKeyError,
    HostSpec,
    SshTransport,
    Transport,
    TransportError,
    connect,
)

CONNECT_TIMEOUT = 10.0
TIMEOUT = 30.0
EVIL = "refs/heads/$(touch /tmp/pwned)`id`;'single' \"double\" \\ $HOME\nline two"


@pytest.fixture(name="fleet")
def fleet_fixture(ssh_fleet: Callable[[int], SshFleet]) -> SshFleet:
    return ssh_fleet(1)


@pytest.fixture(name="transport")
def transport_fixture(fleet: SshFleet) -> Iterator[Transport]:
    transport = open_transport(fleet, fleet.hosts[0])
    yield transport
    transport.close()


def open_transport(
    fleet: SshFleet, host: SshHost, *, known_hosts: Path | None = None, host_key: str | None = None
) -> Transport:
    return connect(
        HostSpec.parse(host.spec, host_key=host_key),
        key_path=fleet.client_key,
        known_hosts=known_hosts if known_hosts or host_key else fleet.known_hosts,
        connect_timeout=CONNECT_TIMEOUT,
    )


def openssh_fingerprint(host: SshHost) -> str:
    """The host key's fingerprint as OpenSSH itself computes it."""
    public = host.host_key.with_suffix(".pub")
    output = subprocess.run(["ssh-keygen", "-lf", str(public)], capture_output=True, text=True)
    return output.stdout.split()[1]


def unique_sleep() -> str:
    """A sleep whose command line no other process has (GNU sleep takes fractions)."""
    return f"sleep {600 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"


def pids_of(command_line: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", f"^{command_line}$"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


# --- running steps ------------------------------------------------------------------------


def test_a_step_returns_exit_status_stdout_and_stderr(transport: Transport) -> None:
    step = Step("mixed", 'echo "out $1"; echo "err $2" >&2; exit 3', ("one", "two words"))
    result = transport.run(step, timeout=TIMEOUT)
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out one\n", "err two words\n")
    assert 0 < result.seconds < TIMEOUT


def test_env_values_arrive_verbatim(transport: Transport) -> None:
    step = Step("env", 'printf "%s" "$CONVEYOR_REF"', env={"CONVEYOR_REF": EVIL})
    result = transport.run(step, timeout=TIMEOUT)
    assert (result.exit_status, result.stdout, result.stderr) == (0, EVIL, "")
    assert not Path("/tmp/pwned").exists()


def test_large_output_on_both_streams_does_not_block(transport: Transport) -> None:
    script = """i=0
    while [ $i -lt 40 ]; do
        head -c 100000 /dev/zero
        head -c 100000 /dev/zero >&2
        i=$((i + 1))
    done"""
    result = transport.run(Step("noisy", script), timeout=TIMEOUT)
    assert (result.exit_status, len(result.stdout), len(result.stderr)) == (0, 4_000_000, 4_000_000)


def test_deploy_scripts_run_over_ssh(transport: Transport, fleet: SshFleet) -> None:
    root = str(fleet.hosts[0].root / "shop")
    result = transport.run(remote.probe(root, "0" * 64, 0), timeout=TIMEOUT)
    assert result.exit_status == 0, result.stderr
    assert remote.parse_probe(result.stdout) == remote.ProbeResult(None, has_artifact=False)


def test_a_deployment_over_ssh(transport: Transport, fleet: SshFleet, tmp_path: Path) -> None:
    root = str(fleet.deploy_path / "shop")  # the host sees its own folder there
    seen_here = fleet.hosts[0].root / "shop"
    (tmp_path / "build" / "dist").mkdir(parents=True)
    (tmp_path / "build" / "dist" / "app.txt").write_text("hello\n")
    local = tmp_path / "artifact.tar.gz"
    subprocess.run(["tar", "-czf", str(local), "-C", str(tmp_path / "build"), "dist"], check=True)
    sha256 = hashlib.sha256(local.read_bytes()).hexdigest()
    release_id = "20261128T221500Z-abc1234"
    env = {"CONVEYOR_REF": EVIL}

    probe = transport.run(remote.probe(root, sha256, local.stat().st_size), timeout=TIMEOUT)
    assert not remote.parse_probe(probe.stdout).has_artifact
    transport.put(local, remote.artifact_path(root, sha256), timeout=TIMEOUT)
    prepare = remote.prepare(root, sha256, release_id, env)
    for step in (prepare, remote.activate(root, release_id, env)):
        result = transport.run(step, timeout=TIMEOUT)
        assert result.exit_status == 0, result.stderr

    assert os.readlink(seen_here / "current") == f"releases/{release_id}"
    assert (seen_here / "current" / "dist" / "app.txt").read_text() == "hello\n"
    probe = transport.run(remote.probe(root, sha256, local.stat().st_size), timeout=TIMEOUT)
    assert remote.parse_probe(probe.stdout) == remote.ProbeResult(release_id, has_artifact=True)


def test_many_steps_share_one_fast_connection(transport: Transport) -> None:
    assert isinstance(transport, SshTransport)
    ssh = transport._ssh  # the connection's settings are the point of this test
    assert ssh.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert (ssh.local_cipher, ssh.remote_cipher) == ("aes128-gcm@openssh.com",) * 2
    results = [transport.run(Step("n", f"echo {n}"), timeout=TIMEOUT) for n in range(20)]
    assert [r.stdout for r in results] == [f"{n}\n" for n in range(20)]
    assert ssh.is_active()


def test_a_step_that_overruns_is_stopped_on_the_host(transport: Transport) -> None:
    sleep = unique_sleep()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="did not end within 2 s and was stopped") as caught:
        transport.run(Step("sleepy", f"echo started; {sleep}"), timeout=2)
    assert 2 <= time.monotonic() - started < 2 + KILL_AFTER
    assert caught.value.stdout == "started\n"
    assert caught.value.host == transport.host
    assert pids_of(sleep) == []


def test_a_step_that_ignores_term_is_killed(transport: Transport) -> None:
    sleep = unique_sleep()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        transport.run(Step("stubborn", f"trap '' TERM; {sleep}; {sleep}"), timeout=1)
    assert 1 + KILL_AFTER <= time.monotonic() - started < 1 + 2 * KILL_AFTER
    assert pids_of(sleep) == []


def test_a_step_leaving_a_process_behind_still_ends(transport: Transport) -> None:
    sleep = unique_sleep()
    try:
        result = transport.run(Step("daemon", f"{sleep} & echo started"), timeout=TIMEOUT)
        assert (result.exit_status, result.stdout) == (0, "started\n")
        assert result.seconds < 10
    finally:
        for pid in pids_of(sleep):
            os.kill(pid, signal.SIGKILL)


# --- uploading ----------------------------------------------------------------------------


def test_put_uploads_intact_and_leaves_no_part(
    transport: Transport, fleet: SshFleet, tmp_path: Path
) -> None:
    data = os.urandom(5 * 1024 * 1024)
    local = tmp_path / "artifact.tar.gz"
    local.write_bytes(data)
    folder = fleet.hosts[0].root / "artifacts"
    folder.mkdir()
    target = folder / f"{hashlib.sha256(data).hexdigest()}.tar.gz"
    transport.put(local, str(target), timeout=TIMEOUT)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert [p.name for p in folder.iterdir()] == [target.name]


def test_put_overwrites_a_stale_part_and_target(
    transport: Transport, fleet: SshFleet, tmp_path: Path
) -> None:
    local = tmp_path / "a.bin"
    local.write_bytes(b"new content")
    target = fleet.hosts[0].root / "a.bin"
    target.write_bytes(b"old")
    target.with_name("a.bin.part").write_bytes(b"stale partial upload, longer than the rest")
    transport.put(local, str(target), timeout=TIMEOUT)
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in fleet.hosts[0].root.iterdir()) == ["a.bin"]


def test_put_into_a_missing_folder_fails_and_names_the_host(
    transport: Transport, fleet: SshFleet, tmp_path: Path
) -> None:
    local = tmp_path / "a.bin"
    local.write_bytes(b"x")
    target = fleet.hosts[0].root / "missing" / "a.bin"
    with pytest.raises(TransportError, match=f"uploading a.bin to {target} on {transport.host}"):
        transport.put(local, str(target), timeout=TIMEOUT)
    assert not target.exists()


class InFlight:
    """Records, before each paramiko ``Channel.sendall``, how many bytes the channel has in
    flight: sent, and not yet given back by the host as window."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[int] = []
        windows: dict[int, int] = {}
        sendall = paramiko.Channel.sendall

        def recording(channel: paramiko.Channel, data: bytes) -> None:
            window = windows.setdefault(id(channel), channel.out_window_size)
            self.seen.append(window - channel.out_window_size)
            sendall(channel, data)

        monkeypatch.setattr(paramiko.Channel, "sendall", recording)


def test_put_keeps_little_in_flight(
    transport: Transport, fleet: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sshd offers a 2 MiB window; filling it makes sshd buffer megabytes per channel. On
    loopback, an upload keeps no more than the allowance (256 KiB) unacknowledged."""
    in_flight = InFlight(monkeypatch)
    data = os.urandom(8 * 1024 * 1024)
    local = tmp_path / "a.bin"
    local.write_bytes(data)
    target = fleet.hosts[0].root / "a.bin"
    transport.put(local, str(target), timeout=TIMEOUT)
    assert target.read_bytes() == data
    assert len(in_flight.seen) > 100  # one packet at a time
    assert max(in_flight.seen) <= 256 * 1024


def test_a_host_that_gives_window_back_late_is_no_longer_paced(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that stops reading its input holds the host's window: after two seconds
    without window back, the input goes on unpaced, up to the whole window, and the
    connection is not paced again (an old server that gives window back only at half of
    it would otherwise stall every upload)."""
    assert isinstance(transport, SshTransport)
    in_flight = InFlight(monkeypatch)
    chunks = [os.urandom(256 * 1024) for _ in range(6)]
    argv = ["sh", "-c", "sleep 3; wc -c"]  # steps and uploads read at once: no public way
    result = transport._exec("a slow reader", argv, chunks, TIMEOUT)
    assert (result.exit_status, result.stdout.strip()) == (0, str(6 * 256 * 1024))
    assert max(in_flight.seen) > 256 * 1024
    assert not transport._paced


# --- host keys ----------------------------------------------------------------------------


def test_an_unknown_host_is_refused_with_its_fingerprint(fleet: SshFleet, tmp_path: Path) -> None:
    host = fleet.hosts[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError) as caught:
        open_transport(fleet, host, known_hosts=empty)
    error = caught.value
    assert error.host == host.spec
    assert error.expected == ()
    assert error.offered == openssh_fingerprint(host)
    assert error.offered_key == host.host_key_line()
    assert host.spec in str(error) and "is unknown" in str(error)
    assert openssh_fingerprint(host) in str(error)


def test_a_changed_host_key_is_refused_with_both_fingerprints(fleet: SshFleet) -> None:
    host = fleet.hosts[0]
    old = openssh_fingerprint(host)
    host.regenerate_host_key()
    new = openssh_fingerprint(host)
    with pytest.raises(HostKeyError) as caught:
        open_transport(fleet, host)
    error = caught.value
    assert (error.expected, error.offered) == ((old,), new)
    assert f"the host key of {host.spec} has changed" in str(error)
    assert old in str(error) and new in str(error)


def test_a_pinned_host_key_is_enough(fleet: SshFleet, tmp_path: Path) -> None:
    host = fleet.hosts[0]
    with open_transport(fleet, host, host_key=host.host_key_line()) as transport:
        assert transport.run(Step("t", "echo pinned"), timeout=TIMEOUT).stdout == "pinned\n"


def test_a_pinned_host_key_wins_over_known_hosts(fleet: SshFleet) -> None:
    host = fleet.hosts[0]
    pinned = host.host_key_line()
    host.regenerate_host_key()
    with pytest.raises(HostKeyError, match="from its pinned host_key") as caught:
        open_transport(fleet, host, known_hosts=fleet.known_hosts, host_key=pinned)
    assert caught.value.offered == openssh_fingerprint(host)


def test_hashed_known_hosts_entries_are_matched(fleet: SshFleet, tmp_path: Path) -> None:
    hashed = tmp_path / "known_hosts"
    hashed.write_text(fleet.known_hosts.read_text())
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert "127.0.0.1" not in hashed.read_text()
    with open_transport(fleet, fleet.hosts[0], known_hosts=hashed) as transport:
        assert transport.run(Step("t", "echo hashed"), timeout=TIMEOUT).stdout == "hashed\n"


def test_a_missing_known_hosts_file_is_reported(fleet: SshFleet, tmp_path: Path) -> None:
    missing = tmp_path / "missing_known_hosts"
    with pytest.raises(TransportError, match=f"cannot read the known_hosts file {missing}"):
        open_transport(fleet, fleet.hosts[0], known_hosts=missing)


# --- failures -----------------------------------------------------------------------------


def test_a_stopped_host_fails_fast(fleet: SshFleet) -> None:
    host = fleet.hosts[0]
    host.stop()
    started = time.monotonic()
    with pytest.raises(TransportError, match=f"cannot reach {host.spec}"):
        open_transport(fleet, host)
    assert time.monotonic() - started < 2


def test_a_host_that_goes_away_fails_the_next_step(fleet: SshFleet) -> None:
    host = fleet.hosts[0]
    with open_transport(fleet, host) as transport:
        assert transport.run(Step("t", "true"), timeout=TIMEOUT).exit_status == 0
        host.stop()
        with pytest.raises(TransportError, match=host.spec):
            transport.run(Step("t", "true"), timeout=TIMEOUT)


def test_a_key_the_host_does_not_know_is_refused(fleet: SshFleet, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    host = fleet.hosts[0]
    with pytest.raises(TransportError, match=f"{host.spec} refused the SSH key {other}"):
        connect(
            HostSpec.parse(host.spec),
            key_path=other,
            known_hosts=fleet.known_hosts,
            connect_timeout=CONNECT_TIMEOUT,
        )


def test_a_missing_key_file_is_reported_before_connecting(fleet: SshFleet, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="cannot use the SSH key"):
        connect(
            HostSpec.parse(fleet.hosts[0].spec),
            key_path=tmp_path / "nope",
            known_hosts=fleet.known_hosts,
            connect_timeout=CONNECT_TIMEOUT,
        )


# --- HostSpec -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "user", "hostname", "port", "shown"),
    [
        ("deploy@10.0.0.11", "deploy", "10.0.0.11", 22, "deploy@10.0.0.11"),
        ("deploy@web-1.example.com:2222", "deploy", "web-1.example.com", 2222, None),
        ("root@[::1]:2200", "root", "::1", 2200, None),
        ("root@127.0.0.1:22", "root", "127.0.0.1", 22, "root@127.0.0.1"),
    ],
)
def test_host_spec_parse(text: str, user: str, hostname: str, port: int, shown: str | None) -> None:
    spec = HostSpec.parse(text)
    assert (spec.user, spec.hostname, spec.port, spec.is_local) == (user, hostname, port, False)
    assert str(spec) == (shown or text)


def test_host_spec_local() -> None:
    assert HostSpec.parse("local").is_local
    assert str(HostSpec.parse("local")) == "local"
    with connect(
        HostSpec.parse("local"), key_path=None, known_hosts=None, connect_timeout=1
    ) as transport:
        assert transport.host == "local"
        assert transport.run(Step("t", "echo here"), timeout=TIMEOUT).stdout == "here\n"


def test_host_spec_known_hosts_name() -> None:
    assert HostSpec.parse("a@h").known_hosts_name == "h"
    assert HostSpec.parse("a@h:2222").known_hosts_name == "[h]:2222"


@pytest.mark.parametrize(
    "text", ["10.0.0.11", "deploy@", "@host", "-oProxyCommand=x@h", "u@-h", "u@h:0", "u@h:99999"]
)
def test_host_spec_rejects_what_is_not_a_host(text: str) -> None:
    with pytest.raises(ValueError, match=r"host|port"):
        HostSpec.parse(text)


def test_host_spec_rejects_a_malformed_host_key() -> None:
    with pytest.raises(ValueError, match="public key line"):
        HostSpec.parse("u@h", host_key="ssh-ed25519 not-base64!")
