"""Incremental deployments over real sshd hosts: a host holding the previous release gets
only the files that changed (bytes counted by a proxy in front of its sshd), a host without
it gets the whole artifact, and the release on disk is the same either way."""

from __future__ import annotations

import os
import random
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from app import pipeline
from app.context import Context
from tests.support.proxy import TcpProxy, tcp_proxy
from tests.support.sshd import SshFleet
from tests.support.stage import PIPELINE, Stage, live
from workers import build, deploy

FILES = 120
FILE_SIZE = 8_000


@pytest.fixture(name="proxied")
def proxied_fixture(tmp_path: Path, database_url: str, ssh_fleet: Callable[[int], SshFleet],
                    worker_context: Callable[..., Context]
                    ) -> Iterator[Callable[[int], tuple[Stage, list[TcpProxy]]]]:
    """Factory: `count` sshd hosts, each reached through a proxy that counts what it is
    sent, as the environment `staging`."""
    with ExitStack() as stack:
        def make(count: int) -> tuple[Stage, list[TcpProxy]]:
            fleet = ssh_fleet(count)
            proxies = [stack.enter_context(tcp_proxy("127.0.0.1", h.port)) for h in fleet.hosts]
            with fleet.known_hosts.open("a") as known:
                for host, proxy in zip(fleet.hosts, proxies, strict=True):
                    known.write(f"[127.0.0.1]:{proxy.port} {host.host_key_line()}\n")
            specs = ", ".join(f"root@127.0.0.1:{p.port}" for p in proxies)
            text = PIPELINE.format(key=fleet.client_key, known_hosts=fleet.known_hosts,
                                   hosts=specs, path=fleet.deploy_path, timeout="1m",
                                   settings="")
            return Stage(worker_context(text, database_url), fleet, tmp_path), proxies

        yield make


def make_tree(workspace: Path, changed: str = "") -> None:
    """Files of random bytes (they do not compress), an executable, a link and nested
    folders; `changed` rewrites one file."""
    rng = random.Random(3)
    for n in range(FILES):
        path = workspace / "dist" / f"pkg{n % 6}" / f"sub{n % 4}" / f"file{n}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(FILE_SIZE))
    (workspace / "dist/run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(workspace / "dist/run.sh", 0o755)  # noqa: S103 - an executable file
    os.symlink("pkg0/sub0/file0.bin", workspace / "dist/first")
    (workspace / "dist/empty").mkdir()
    if changed:
        (workspace / "dist/pkg1/sub1/file1.bin").write_text(changed)


def ship(s: Stage, changed: str, time: int) -> pipeline.Artifact:
    workspace = s.tmp_path / f"ws-{uuid.uuid4().hex}"
    make_tree(workspace, changed)
    return build.pack(workspace, ("dist",), s.tmp_path / "artifacts", {"time": time})


def deploy_artifact(s: Stage, artifact: pipeline.Artifact) -> tuple[str, str, list[str]]:
    deployment_id = s.deployment(artifact=artifact)
    deploy.run(deployment_id)
    done = s.state(deployment_id)
    return done.state, done.release_id or "", s.log(deployment_id)


def tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under `root`: kind, permission bits and content (or link target)."""
    found: dict[str, tuple[str, int, bytes]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                found[key] = ("link", 0, os.readlink(path).encode())
            elif stat.S_ISDIR(info.st_mode):
                found[key] = ("dir", stat.S_IMODE(info.st_mode), b"")
            else:
                found[key] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return found


def test_a_one_file_change_sends_only_that_file_and_a_new_host_gets_everything(
        proxied: Callable[[int], tuple[Stage, list[TcpProxy]]]) -> None:
    s, proxies = proxied(2)
    state, first, _ = deploy_artifact(s, ship(s, "", 1))
    assert state == "succeeded"
    full_sent = [p.sent for p in proxies]
    artifact = ship(s, "one changed file", 2)
    # The second host loses what it had: it is a new host now.
    new_host = s.fleet.hosts[1].root
    for name in ("current", "releases", ".conveyor"):
        target = new_host / name
        os.system(f"rm -rf {target}")  # noqa: S605 - a path of the test's own
    before = [p.sent for p in proxies]

    state, second, log = deploy_artifact(s, artifact)
    assert state == "succeeded", log
    sent = [p.sent - b for p, b in zip(proxies, before, strict=True)]
    assert live(s.fleet) == [f"releases/{second}"] * 2
    # The host with the previous release got the changed file (and .conveyor-release.json)
    # and the list of files: a fraction of what the whole artifact took.
    assert any("sent 2 changed file(s)" in line and first in line for line in log), log
    assert artifact.size > FILES * FILE_SIZE * 0.9
    assert sent[0] < artifact.size / 5, (sent, artifact.size)
    assert sent[1] > artifact.size, (sent, artifact.size)
    assert full_sent[0] > artifact.size
    assert not (s.fleet.hosts[0].root / f".conveyor/artifacts/{artifact.sha256}.tar.gz").exists()
    # Byte for byte the same release, built from the previous one or unpacked whole.
    assembled = tree(s.fleet.hosts[0].root / "releases" / second)
    unpacked = tree(new_host / "releases" / second)
    assert assembled == unpacked
    assert assembled["dist/pkg1/sub1/file1.bin"][2] == b"one changed file"
    assert assembled["dist/run.sh"][1] == 0o755 and assembled["dist/first"][0] == "link"
    # The previous release is untouched: its files are linked, never written.
    old = tree(s.fleet.hosts[0].root / "releases" / first)
    assert old["dist/pkg1/sub1/file1.bin"][2] != b"one changed file"
    assert old["dist/pkg0/sub0/file0.bin"] == assembled["dist/pkg0/sub0/file0.bin"]
    assert not list((s.fleet.hosts[0].root / ".conveyor/artifacts").glob("*.files"))
    assert not list((s.fleet.hosts[0].root / ".conveyor/artifacts").glob("*.delta.tar"))


def test_a_damaged_previous_release_is_mended_or_replaced_whole(
        proxied: Callable[[int], tuple[Stage, list[TcpProxy]]]) -> None:
    s, proxies = proxied(2)
    state, first, _ = deploy_artifact(s, ship(s, "", 1))
    assert state == "succeeded"
    # Host 1: a file of the live release was changed in place (its size differs).
    damaged = s.fleet.hosts[0].root / "releases" / first / "dist/pkg2/sub2/file2.bin"
    damaged.write_bytes(b"damaged")
    # Host 2: the live release's list of files is garbled.
    garbled = s.fleet.hosts[1].root / "releases" / first / ".conveyor-files"
    garbled.write_text("not a list\n")
    artifact = ship(s, "one changed file", 2)
    before = [p.sent for p in proxies]

    state, second, log = deploy_artifact(s, artifact)
    assert state == "succeeded", log
    sent = [p.sent - b for p, b in zip(proxies, before, strict=True)]
    # The damaged file is lacking, so it is sent again with the changed one.
    assert any("sent 3 changed file(s)" in line for line in log), log
    assert sent[0] < artifact.size / 5
    # Without a readable list, every file is lacking: the whole artifact goes.
    assert any("changed: sending the whole artifact" in line for line in log), log
    assert sent[1] > artifact.size
    releases = [tree(h.root / "releases" / second) for h in s.fleet.hosts]
    assert releases[0] == releases[1]
    assert releases[0]["dist/pkg2/sub2/file2.bin"][2] != b"damaged"


def test_an_artifact_without_a_list_of_files_is_sent_whole(
        proxied: Callable[[int], tuple[Stage, list[TcpProxy]]]) -> None:
    s, proxies = proxied(1)
    workspace = s.tmp_path / "odd"
    (workspace / "dist").mkdir(parents=True)
    (workspace / "dist/a name with spaces.txt").write_bytes(os.urandom(50_000))
    first = build.pack(workspace, ("dist",), s.tmp_path / "artifacts", {"time": 1})
    assert deploy_artifact(s, first)[0] == "succeeded"
    (workspace / "dist/other.txt").write_text("x")
    second = build.pack(workspace, ("dist",), s.tmp_path / "artifacts", {"time": 2})
    before = proxies[0].sent
    state, release, log = deploy_artifact(s, second)
    assert state == "succeeded", log
    assert proxies[0].sent - before > second.size
    assert (s.fleet.hosts[0].root / "releases" / release / "dist/other.txt").read_text() == "x"
