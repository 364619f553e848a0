"""The deploy scripts, run by a real sh through LocalTransport against a temporary folder."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import deploy_scripts
from app import pipeline
from workers import build, remote
from workers.remote import Step
from workers.transport import DeadlineExceeded, LocalTransport, Result

TIMEOUT = 30
ENV = {"CONVEYOR_REF": "refs/heads/main", "CONVEYOR_PROJECT": "shop"}


@pytest.fixture(name="host")
def host_fixture() -> Iterator[LocalTransport]:
    with LocalTransport() as host:
        yield host


@pytest.fixture(name="root")
def root_fixture(tmp_path: Path) -> Path:
    """The deploy path; tmp_path/outside stays empty unless something escapes."""
    (tmp_path / "outside").mkdir()
    return tmp_path / "srv" / "shop"


def release(n: int, sha: str = "abc1234") -> str:
    return pipeline.release_id(datetime(2026, 11, 28, 22, 15, n, tzinfo=UTC), sha)


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x") -> tuple:
    return (name, kind, link, data)


def make_tarball(members: list[tuple], mode: int = 0o644) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, kind, link, data in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.mtime = kind, link, mode, 1_700_000_000
            if kind == tarfile.DIRTYPE:
                info.mode = 0o755
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


APP = [
    member("dist", tarfile.DIRTYPE),
    member("dist/app.txt", data=b"hello\n"),
    member("dist/run.sh", data=b"#!/bin/sh\necho run\n"),
    member("dist/latest", tarfile.SYMTYPE, "app.txt"),
    member("dist/same", tarfile.LNKTYPE, "dist/app.txt"),
]


def upload(host: LocalTransport, root: Path, tmp_path: Path, content: bytes) -> str:
    """Probe, then put the artifact where prepare expects it; return its sha256."""
    sha256 = hashlib.sha256(content).hexdigest()
    probe = remote.probe(str(root), sha256, len(content))
    assert ok(host.run(probe, timeout=TIMEOUT)).endswith("artifact=no\n")
    local = tmp_path / f"{sha256}.tar.gz"
    local.write_bytes(content)
    host.put(local, remote.artifact_path(str(root), sha256), timeout=TIMEOUT)
    return sha256


def ok(result: Result) -> str:
    assert result.exit_status == 0, result.stderr
    return result.stdout


def deploy(host: LocalTransport, root: Path, tmp_path: Path, n: int, content: bytes) -> str:
    """Upload, prepare and activate release n; return its id."""
    sha256 = upload(host, root, tmp_path, content)
    release_id = release(n)
    ok(host.run(remote.prepare(str(root), sha256, release_id, ENV), timeout=TIMEOUT))
    ok(host.run(remote.activate(str(root), release_id, ENV), timeout=TIMEOUT))
    return release_id


def tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def live(root: Path) -> str:
    return os.readlink(root / "current")


def script_step(name: str, *args: str) -> Step:
    return Step(name, deploy_scripts.script("common") + "\n" + deploy_scripts.script(name), args)


# --- probe, prepare, activate -------------------------------------------------------------


def test_probe_on_a_new_host_makes_the_artifacts_folder(host: LocalTransport, root: Path) -> None:
    result = host.run(remote.probe(str(root), "0" * 64, 10), timeout=TIMEOUT)
    assert remote.parse_probe(ok(result)) == remote.ProbeResult(current=None, has_artifact=False)
    assert (root / ".conveyor" / "artifacts").is_dir()


def test_probe_for_a_plan_changes_nothing(host: LocalTransport, root: Path) -> None:
    result = host.run(remote.probe(str(root), "0" * 64, 10, look=True), timeout=TIMEOUT)
    assert remote.parse_probe(ok(result)) == remote.ProbeResult(current=None, has_artifact=False)
    assert not root.exists()


def test_a_first_deployment(host: LocalTransport, root: Path, tmp_path: Path) -> None:
    content = make_tarball(APP)
    sha256 = upload(host, root, tmp_path, content)
    probe = host.run(remote.probe(str(root), sha256, len(content)), timeout=TIMEOUT)
    assert remote.parse_probe(ok(probe)) == remote.ProbeResult(current=None, has_artifact=True)

    release_id = release(1)
    prepared = ok(host.run(remote.prepare(str(root), sha256, release_id, ENV), timeout=TIMEOUT))
    assert prepared == f"previous=\nrelease={release_id}\n"
    folder = root / "releases" / release_id
    assert (folder / "dist" / "app.txt").read_bytes() == b"hello\n"
    assert os.readlink(folder / "dist" / "latest") == "app.txt"
    assert (folder / "dist" / "same").stat().st_ino == (folder / "dist" / "app.txt").stat().st_ino
    assert sorted(p.name for p in (root / "releases").iterdir()) == [release_id]
    assert not (root / "current").exists()

    activated = ok(host.run(remote.activate(str(root), release_id, ENV), timeout=TIMEOUT))
    assert remote.parse_fields(activated) == {"previous": ""}
    assert live(root) == f"releases/{release_id}"
    assert (root / "current" / "dist" / "app.txt").read_bytes() == b"hello\n"
    probe = host.run(remote.probe(str(root), sha256, len(content)), timeout=TIMEOUT)
    assert remote.parse_probe(ok(probe)).current == release_id


def test_a_second_deployment_reports_and_logs_the_previous_one(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    first = deploy(host, root, tmp_path, 1, make_tarball(APP))
    sha256 = upload(host, root, tmp_path, make_tarball([member("v2.txt")]))
    second = release(2)
    ok(host.run(remote.prepare(str(root), sha256, second, ENV), timeout=TIMEOUT))
    activated = ok(host.run(remote.activate(str(root), second, ENV), timeout=TIMEOUT))
    assert remote.parse_fields(activated) == {"previous": first}
    assert live(root) == f"releases/{second}"
    log = (root / ".conveyor" / "revisions.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in log] == [
        f"activate {first} previous=",
        f"activate {second} previous={first}",
    ]
    assert all(datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%SZ") for line in log)


def test_a_prepared_release_keeps_executable_bits_without_owners(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    content = make_tarball([member("bin/tool", data=b"#!/bin/sh\n")], mode=0o755)
    release_id = deploy(host, root, tmp_path, 1, content)
    tool = root / "releases" / release_id / "bin" / "tool"
    assert tool.stat().st_mode & 0o777 == 0o755
    assert tool.stat().st_uid == os.getuid()


def test_preparing_an_existing_release_again_is_refused(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    content = make_tarball(APP)
    release_id = deploy(host, root, tmp_path, 1, content)
    sha256 = hashlib.sha256(content).hexdigest()
    result = host.run(remote.prepare(str(root), sha256, release_id, ENV), timeout=TIMEOUT)
    assert result.exit_status == remote.EXIT_RELEASE_EXISTS
    assert "already exists" in result.stderr


# --- refused artifacts --------------------------------------------------------------------


def unsafe_artifacts(outside: str) -> dict[str, list[tuple]]:
    return {
        "dot-dot": [member("../x")],
        "dot-dot-inside": [member("dist", tarfile.DIRTYPE), member("dist/../../x")],
        "absolute": [member(f"{outside}/x")],
        "etc": [member("/etc/conveyor-test-x")],
        "symlink-absolute": [member("out", tarfile.SYMTYPE, outside), member("out/x")],
        "symlink-etc": [member("etc", tarfile.SYMTYPE, "/etc")],
        "symlink-up": [member("up", tarfile.SYMTYPE, "../../x")],
        "hardlink-absolute": [member("pw", tarfile.LNKTYPE, "/etc/passwd")],
        "hardlink-up": [member("pw", tarfile.LNKTYPE, "../../etc/passwd")],
        "device": [member("null", tarfile.CHRTYPE)],
        "fifo": [member("pipe", tarfile.FIFOTYPE)],
    }


@pytest.mark.parametrize("kind", list(unsafe_artifacts("/x")))
def test_an_unsafe_artifact_is_refused_whole(
    host: LocalTransport, root: Path, tmp_path: Path, kind: str
) -> None:
    outside = tmp_path / "outside"
    content = make_tarball([*APP, *unsafe_artifacts(str(outside))[kind]])
    sha256 = upload(host, root, tmp_path, content)
    before = tree(tmp_path)

    result = host.run(remote.prepare(str(root), sha256, release(1), ENV), timeout=TIMEOUT)

    assert result.exit_status == remote.EXIT_UNSAFE_ARTIFACT, result.stderr
    assert "is refused, nothing was unpacked" in result.stderr
    assert tree(tmp_path) == before
    assert list(outside.iterdir()) == []
    assert not Path("/etc/conveyor-test-x").exists()


def test_a_set_user_id_file_is_refused(host: LocalTransport, root: Path, tmp_path: Path) -> None:
    sha256 = upload(host, root, tmp_path, make_tarball([member("bin/su")], mode=0o4755))
    result = host.run(remote.prepare(str(root), sha256, release(1), ENV), timeout=TIMEOUT)
    assert result.exit_status == remote.EXIT_UNSAFE_ARTIFACT
    assert "bin/su: is set-user-id" in result.stderr


def test_a_corrupted_artifact_is_refused(host: LocalTransport, root: Path, tmp_path: Path) -> None:
    content = make_tarball(APP)
    sha256 = upload(host, root, tmp_path, content)
    corrupted = content[:-10] + b"0123456789"
    Path(remote.artifact_path(str(root), sha256)).write_bytes(corrupted)
    # The probe looks at the size only: prepare verifies the sha256, once per deployment.
    probe = host.run(remote.probe(str(root), sha256, len(content)), timeout=TIMEOUT)
    assert remote.parse_probe(ok(probe)).has_artifact
    shorter = host.run(remote.probe(str(root), sha256, len(content) + 1), timeout=TIMEOUT)
    assert not remote.parse_probe(ok(shorter)).has_artifact
    before = tree(tmp_path)

    result = host.run(remote.prepare(str(root), sha256, release(1), ENV), timeout=TIMEOUT)

    assert result.exit_status == remote.EXIT_CORRUPT
    actual = hashlib.sha256(corrupted).hexdigest()
    assert f"is corrupt: its sha256 is {actual}, expected {sha256}" in result.stderr
    assert tree(tmp_path) == before


def test_an_artifact_tar_cannot_read_leaves_nothing(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    content = make_tarball(APP)[:-40]  # a truncated gzip stream, uploaded as it is
    sha256 = upload(host, root, tmp_path, content)
    result = host.run(remote.prepare(str(root), sha256, release(1), ENV), timeout=TIMEOUT)
    assert result.exit_status == remote.EXIT_CORRUPT
    assert "cannot be listed" in result.stderr
    assert not (root / "releases").exists()


def test_a_missing_artifact_is_reported_and_room_made_for_it(
    host: LocalTransport, root: Path
) -> None:
    result = host.run(remote.prepare(str(root), "b" * 64, release(1), ENV), timeout=TIMEOUT)
    assert result.exit_status == remote.EXIT_NO_ARTIFACT
    assert "is missing; upload it first" in result.stderr
    assert remote.parse_prepare(result.stdout) == remote.Prepared(previous=None, release=None)
    assert list((root / ".conveyor").iterdir()) == [root / ".conveyor" / "artifacts"]
    assert list((root / ".conveyor" / "artifacts").iterdir()) == []


# --- activate, rollback -------------------------------------------------------------------


def test_activate_switches_current_atomically(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    first = deploy(host, root, tmp_path, 1, make_tarball(APP))
    second = deploy(host, root, tmp_path, 2, make_tarball([member("v2.txt")]))
    valid = {f"releases/{first}", f"releases/{second}"}
    seen: set[str] = set()
    done = threading.Event()

    def read_current() -> None:
        while not done.is_set():
            seen.add(os.readlink(root / "current"))  # raises if current is ever missing

    reader = threading.Thread(target=read_current)
    reader.start()
    try:
        for n in range(20):
            step = remote.activate(str(root), (first, second)[n % 2], ENV)
            ok(host.run(step, timeout=TIMEOUT))
    finally:
        done.set()
        reader.join()
    assert seen == valid
    assert not list(root.glob(".current-*"))


def test_activate_refuses_a_missing_release(host: LocalTransport, root: Path) -> None:
    result = host.run(remote.activate(str(root), release(9), ENV), timeout=TIMEOUT)
    assert result.exit_status == remote.EXIT_CORRUPT
    assert "is missing; prepare it first" in result.stderr
    assert not (root / "current").exists()


def test_rollback_puts_the_previous_release_back(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    first = deploy(host, root, tmp_path, 1, make_tarball(APP))
    second = deploy(host, root, tmp_path, 2, make_tarball([member("v2.txt")]))
    rolled = ok(host.run(remote.rollback(str(root), first, ENV), timeout=TIMEOUT))
    assert remote.parse_fields(rolled) == {"previous": second}
    assert live(root) == f"releases/{first}"
    last = (root / ".conveyor" / "revisions.log").read_text().splitlines()[-1]
    assert last.split(" ", 1)[1] == f"rollback {first} previous={second}"


def test_rolling_back_a_first_deployment_removes_current(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    first = deploy(host, root, tmp_path, 1, make_tarball(APP))
    rolled = ok(host.run(remote.rollback(str(root), None, ENV), timeout=TIMEOUT))
    assert remote.parse_fields(rolled) == {"previous": first}
    assert not (root / "current").exists()
    assert not (root / "current").is_symlink()
    last = (root / ".conveyor" / "revisions.log").read_text().splitlines()[-1]
    assert last.split(" ", 1)[1] == f"rollback - previous={first}"


def test_a_current_that_is_not_conveyors_is_left_alone(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    release_id = deploy(host, root, tmp_path, 1, make_tarball(APP))
    (root / "current").unlink()
    (root / "current").mkdir()
    for step in (
        remote.probe(str(root), "0" * 64, 0),
        remote.activate(str(root), release_id, ENV),
        remote.rollback(str(root), None, ENV),
    ):
        result = host.run(step, timeout=TIMEOUT)
        assert result.exit_status == remote.EXIT_FOREIGN_LAYOUT, step.name
        assert "is not a symbolic link" in result.stderr
    assert (root / "current").is_dir()


# --- discard ------------------------------------------------------------------------------


def test_discard_removes_a_prepared_release_once(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    live_id = deploy(host, root, tmp_path, 1, make_tarball(APP))
    sha256 = upload(host, root, tmp_path, make_tarball([member("v2.txt")]))
    prepared = release(2)
    ok(host.run(remote.prepare(str(root), sha256, prepared, ENV), timeout=TIMEOUT))

    assert ok(host.run(remote.discard(str(root), prepared), timeout=TIMEOUT)) == (
        f"discarded={prepared}\n"
    )
    assert ok(host.run(remote.discard(str(root), prepared), timeout=TIMEOUT)) == ""
    assert [p.name for p in (root / "releases").iterdir()] == [live_id]
    assert [p.name for p in (root / ".conveyor" / "releases").iterdir()] == [live_id]
    assert live(root) == f"releases/{live_id}"


def test_discard_never_removes_the_live_release(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    live_id = deploy(host, root, tmp_path, 1, make_tarball(APP))
    result = host.run(remote.discard(str(root), live_id), timeout=TIMEOUT)
    assert result.exit_status == remote.EXIT_FOREIGN_LAYOUT
    assert "is live on this host" in result.stderr
    assert (root / "current" / "dist" / "app.txt").exists()


# --- prune --------------------------------------------------------------------------------


def make_releases(root: Path, count: int) -> list[str]:
    ids = [release(n) for n in range(1, count + 1)]
    for release_id in ids:
        (root / "releases" / release_id).mkdir(parents=True)
    return ids


def test_prune_keeps_the_newest_the_live_and_the_previous(host: LocalTransport, root: Path) -> None:
    ids = make_releases(root, 6)
    (root / "releases" / f".tmp-{release(7)}").mkdir()
    ok(host.run(remote.activate(str(root), ids[2], ENV), timeout=TIMEOUT))

    pruned = ok(host.run(remote.prune(str(root), 2), timeout=TIMEOUT))

    assert sorted(p.name for p in (root / "releases").iterdir()) == [ids[1], ids[2], ids[4], ids[5]]
    assert pruned.splitlines() == [f"removed={ids[0]}", f"removed={ids[3]}"]
    assert live(root) == f"releases/{ids[2]}"


def test_prune_keeps_releases_it_is_asked_to_protect(host: LocalTransport, root: Path) -> None:
    ids = make_releases(root, 5)
    ok(host.run(remote.activate(str(root), ids[4], ENV), timeout=TIMEOUT))
    ok(host.run(remote.prune(str(root), 1, protect=[ids[0]]), timeout=TIMEOUT))
    assert sorted(p.name for p in (root / "releases").iterdir()) == [ids[0], ids[3], ids[4]]


def test_prune_without_a_live_release_keeps_the_newest(host: LocalTransport, root: Path) -> None:
    ids = make_releases(root, 3)
    ok(host.run(remote.prune(str(root), 1), timeout=TIMEOUT))
    assert [p.name for p in (root / "releases").iterdir()] == [ids[2]]


def test_prune_keeps_the_artifacts_of_remaining_releases_untouched(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    versions = [make_tarball([member("v", data=f"{n}".encode())]) for n in range(3)]
    ids = [deploy(host, root, tmp_path, n + 1, content) for n, content in enumerate(versions)]
    artifacts = root / ".conveyor" / "artifacts"
    names = [f"{hashlib.sha256(content).hexdigest()}.tar.gz" for content in versions]
    kept_before = {name: (artifacts / name).stat() for name in names[1:]}
    plain = [name.removesuffix(".gz") for name in names]  # inflated once, kept beside
    assert all((artifacts / name).is_file() for name in plain)
    stray = f"{'1' * 64}.tar.gz"  # uploaded, but its release was discarded
    (artifacts / stray).write_bytes(b"x")
    (artifacts / f"{'e' * 64}.tar.gz.part").write_bytes(b"partial")
    (artifacts / f"{'f' * 64}.tar.part").write_bytes(b"partial")
    (artifacts / "notes.txt").write_bytes(b"not ours")

    pruned = ok(host.run(remote.prune(str(root), 2), timeout=TIMEOUT))

    kept = [*names[1:], *plain[1:], "notes.txt"]
    assert sorted(p.name for p in artifacts.iterdir()) == sorted(kept)
    assert sorted(pruned.splitlines()) == sorted([
        f"removed={ids[0]}", f"removed_artifact={names[0]}", f"removed_artifact={plain[0]}",
        f"removed_artifact={stray}",
    ])
    for name, stat in kept_before.items():
        now = (artifacts / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert live(root) == f"releases/{ids[2]}"


# --- the scripts' own checks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("probe", ("relative/path", "0" * 64, "1"), "must be absolute"),
        ("probe", ("/srv/../etc", "0" * 64, "1"), "normalised"),
        ("probe", ("/srv/shop", "0" * 63, "1"), "64 lowercase hexadecimal"),
        ("probe", ("/srv/shop", "0" * 64), "usage: probe.sh PATH SHA256 SIZE"),
        ("probe", ("/srv/shop", "0" * 64, "1k"), "SIZE must be a number"),
        ("probe", ("/srv/shop", "0" * 64, "1", "write"), "can only be 'look'"),
        ("prepare", ("/srv/shop", "0" * 64, "latest"), "a release id looks like"),
        ("activate", ("/srv/shop", "20261128T221500Z-abc"), "a release id looks like"),
        ("rollback", ("/srv/shop", "../x"), "a release id looks like"),
        ("discard", ("/srv/shop", "20261128T221500Z-ABC1234"), "a release id looks like"),
        ("prune", ("/srv/shop", "0"), "KEEP must be a whole number"),
        ("prune", ("/srv/shop", "2", "x"), "a release id looks like"),
    ],
)
def test_scripts_check_their_arguments(
    host: LocalTransport, name: str, args: tuple[str, ...], message: str
) -> None:
    result = host.run(script_step(name, *args), timeout=TIMEOUT)
    assert result.exit_status == remote.EXIT_USAGE
    assert result.stderr.startswith("conveyor: ")
    assert message in result.stderr


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = "/usr/bin/shellcheck"  # installed by scripts/test
    folder = Path(deploy_scripts.__file__).parent
    scripts = sorted(str(p) for p in folder.glob("*.sh"))
    result = subprocess.run(
        [shellcheck, "-s", "sh", *scripts], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


# --- LocalTransport itself ----------------------------------------------------------------


def test_local_run_stops_a_step_at_its_deadline_with_everything_it_started(
    host: LocalTransport,
) -> None:
    marker = f"{600 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    step = Step("sleepy", f"echo started; sleep {marker} & sleep {marker}")
    with pytest.raises(DeadlineExceeded, match="sleepy on local did not end within 1 s") as caught:
        host.run(step, timeout=1)
    assert caught.value.stdout == "started\n"
    assert pgrep(f"sleep {marker}") == ""


def test_local_steps_do_not_see_conveyors_environment(
    host: LocalTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_API_TOKEN", "secret-token")
    step = Step("env", 'printf "%s|%s" "${CONVEYOR_API_TOKEN-unset}" "$CONVEYOR_REF"', env=ENV)
    assert ok(host.run(step, timeout=TIMEOUT)) == "unset|refs/heads/main"


def test_local_put_leaves_no_part_file(host: LocalTransport, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(100_000))
    target = tmp_path / "target" / "a.bin"
    target.parent.mkdir()
    host.put(source, str(target), timeout=TIMEOUT)
    assert target.read_bytes() == source.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]


def pgrep(pattern: str) -> str:
    result = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return result.stdout


# --- incremental prepare (lacks.sh, prepare.sh FROM FILES_SHA256) --------------------------


def _listed_artifact(tmp_path: Path, content: str, time: int) -> tuple[bytes, bytes]:
    """An artifact packed by the build (with its list of files) and that list."""
    workspace = tmp_path / f"ws-{time}"
    (workspace / "dist/sub").mkdir(parents=True, exist_ok=True)
    (workspace / "dist/app.txt").write_text(content)
    (workspace / "dist/sub/same.txt").write_text("unchanged\n")
    os.symlink("app.txt", workspace / "dist/latest")
    made = build.pack(workspace, ("dist",), tmp_path / "out", {"time": time})
    with tarfile.open(made.path) as tar:
        listed = tar.extractfile(".conveyor-files").read()  # type: ignore[union-attr]
    return Path(made.path).read_bytes(), listed


def _send_list(host: LocalTransport, root: Path, tmp_path: Path, sha256: str,
               listed: bytes) -> None:
    (tmp_path / "files").write_bytes(listed)
    host.put(tmp_path / "files", remote.files_path(str(root), sha256), timeout=TIMEOUT)


def _send_delta(host: LocalTransport, root: Path, tmp_path: Path, sha256: str,
                members: dict[str, bytes]) -> None:
    with tarfile.open(tmp_path / "delta.tar", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    host.put(tmp_path / "delta.tar", remote.delta_path(str(root), sha256), timeout=TIMEOUT)


def test_lacks_names_the_changed_files_and_prepare_assembles_from_links(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    first, _ = _listed_artifact(tmp_path, "one\n", 1)
    old = deploy(host, root, tmp_path, 1, first)
    second, listed = _listed_artifact(tmp_path, "two\n", 2)
    sha256 = hashlib.sha256(second).hexdigest()
    _send_list(host, root, tmp_path, sha256, listed)
    said = remote.parse_lacks(ok(host.run(remote.lacks(str(root), sha256), timeout=TIMEOUT)))
    assert (said.previous, said.usable) == (old, True)
    assert set(said.names) == {"dist/app.txt", ".conveyor-release.json"}
    with tarfile.open(fileobj=io.BytesIO(second)) as tar:
        received = {name: tar.extractfile(name).read()  # type: ignore[union-attr]
                    for name in said.names}
    _send_delta(host, root, tmp_path, sha256, received)
    new = release(2)
    step = remote.prepare(str(root), sha256, new, ENV,
                          assemble_from=(old, hashlib.sha256(listed).hexdigest()))
    assert ok(host.run(step, timeout=TIMEOUT)).endswith(f"release={new}\n")
    made = root / "releases" / new
    assert (made / "dist/app.txt").read_text() == "two\n"
    assert os.readlink(made / "dist/latest") == "app.txt"
    assert (made / "dist/sub/same.txt").stat().st_ino == \
        (root / "releases" / old / "dist/sub/same.txt").stat().st_ino  # a hard link
    assert (root / "releases" / old / "dist/app.txt").read_text() == "one\n"
    assert (made / ".conveyor-files").read_bytes() == listed
    assert not list((root / ".conveyor/artifacts").glob(f"{sha256}.*"))


@pytest.mark.parametrize("damage", ["content", "unsafe", "extra"])
def test_an_assembled_release_that_does_not_match_its_list_is_refused(
    host: LocalTransport, root: Path, tmp_path: Path, damage: str
) -> None:
    first, _ = _listed_artifact(tmp_path, "one\n", 1)
    old = deploy(host, root, tmp_path, 1, first)
    second, listed = _listed_artifact(tmp_path, "two\n", 2)
    sha256 = hashlib.sha256(second).hexdigest()
    _send_list(host, root, tmp_path, sha256, listed)
    with tarfile.open(fileobj=io.BytesIO(second)) as tar:
        release_json = tar.extractfile(".conveyor-release.json").read()  # type: ignore[union-attr]
    members = {".conveyor-release.json": release_json,
               "dist/app.txt": b"twX\n" if damage == "content" else b"two\n"}
    if damage == "unsafe":
        members["../../outside/evil"] = b"x"
    if damage == "extra":
        members["dist/extra.txt"] = b"not listed"
    _send_delta(host, root, tmp_path, sha256, members)
    new = release(2)
    result = host.run(remote.prepare(str(root), sha256, new, ENV,
                                     assemble_from=(old, hashlib.sha256(listed).hexdigest())),
                      timeout=TIMEOUT)
    assert result.exit_status == (remote.EXIT_UNSAFE_ARTIFACT if damage == "unsafe"
                                  else remote.EXIT_CORRUPT), result.stderr
    assert not (root / "releases" / new).exists()
    assert sorted(p.name for p in (root / "releases").iterdir()) == [old]
    assert list((tmp_path / "outside").iterdir()) == []
    assert (root / "releases" / old / "dist/app.txt").read_text() == "one\n"


def test_a_live_release_holding_a_name_that_is_not_plain_is_not_built_on(
    host: LocalTransport, root: Path, tmp_path: Path
) -> None:
    first, _ = _listed_artifact(tmp_path, "one\n", 1)
    old = deploy(host, root, tmp_path, 1, first)
    (root / "releases" / old / "dist/made by a hook.txt").write_text("x")
    second, listed = _listed_artifact(tmp_path, "two\n", 2)
    sha256 = hashlib.sha256(second).hexdigest()
    _send_list(host, root, tmp_path, sha256, listed)
    said = remote.parse_lacks(ok(host.run(remote.lacks(str(root), sha256), timeout=TIMEOUT)))
    assert (said.previous, said.usable, said.names) == (old, False, ())
