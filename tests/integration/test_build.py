"""The build job's mechanics with real git and real processes."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from app import pipeline
from app.config import Build, Project
from tests.support.gitrepo import GitRepo
from workers import build
from workers import manifest as files_list


def order(repo: GitRepo, sha: str, **build_settings: object) -> pipeline.BuildOrder:
    settings = {"commands": ("true",), "artifact": ("dist",), **build_settings}
    project = Project(name="shop", provider="github", repo="acme/shop", webhook_secret="s",
                      build=Build(**settings), environments={})  # type: ignore[arg-type]
    return pipeline.BuildOrder(7, project, sha, "refs/heads/main", repo.url)


def checkout(tmp_path: Path, repo: GitRepo, sha: str) -> Path:
    mirror = build.update_mirror(tmp_path / "data", "shop", repo.url, lambda _text: None,
                                 allow_file=True)
    workspace = tmp_path / "ws" / sha
    build.checkout(mirror, sha, workspace)
    return workspace


def test_checkout_holds_exactly_the_pushed_commit(tmp_path: Path, git_repo: GitRepo) -> None:
    first = git_repo.commit({"dist/app.txt": "one"})
    second = git_repo.commit({"dist/app.txt": "two"})
    assert (checkout(tmp_path, git_repo, first) / "dist/app.txt").read_text() == "one"
    assert (checkout(tmp_path, git_repo, second) / "dist/app.txt").read_text() == "two"
    with pytest.raises(build.BuildError, match="not in the repository"):
        checkout(tmp_path, git_repo, "f" * 40)
    with pytest.raises(build.BuildError, match="is not a commit id"):
        checkout(tmp_path, git_repo, "--upload-pack=touch /tmp/x")


def test_the_same_commit_packs_to_the_same_bytes(tmp_path: Path, git_repo: GitRepo) -> None:
    sha = git_repo.commit({"dist/b.txt": "b", "dist/a/x.sh": "#!/bin/sh\n", "other": "no"})
    mirror = build.update_mirror(tmp_path / "data", "shop", git_repo.url, lambda _text: None,
                                 allow_file=True)
    artifacts = []
    for attempt in ("one", "two"):
        workspace = tmp_path / attempt
        build.checkout(mirror, sha, workspace)
        os.chmod(workspace / "dist/a/x.sh", 0o755)  # noqa: S103 - an executable file
        os.utime(workspace / "dist/b.txt", (1, 1))  # mtimes differ between checkouts
        manifest = build.manifest(order(git_repo, sha), build.commit_time(mirror, sha))
        artifacts.append(build.pack(workspace, ("dist",), tmp_path / "out", manifest))
    assert artifacts[0].sha256 == artifacts[1].sha256
    assert Path(artifacts[0].path).name == f"{artifacts[0].sha256}.tar.gz"
    with tarfile.open(artifacts[0].path) as tar:
        members = tar.getmembers()
        listed = files_list.parse(tar.extractfile(".conveyor-files").read())  # type: ignore[union-attr]
        release = tar.extractfile(".conveyor-release.json").read()  # type: ignore[union-attr]
    assert [m.name for m in members] == [
        ".conveyor-files", "dist", "dist/a", "dist/a/x.sh", "dist/b.txt",
        ".conveyor-release.json"]
    assert {(m.uid, m.gid, m.uname, m.mtime) for m in members} == {
        (0, 0, "", build.commit_time(mirror, sha))}
    assert members[3].mode == 0o755 and members[4].mode == 0o644
    # The list names every entry but itself, each file with its mode, size and sha256.
    assert listed == [
        files_list.file(".conveyor-release.json", 0o644, len(release),
                        hashlib.sha256(release).hexdigest()),
        files_list.folder("dist"), files_list.folder("dist/a"),
        files_list.file("dist/a/x.sh", 0o755, 10, hashlib.sha256(b"#!/bin/sh\n").hexdigest()),
        files_list.file("dist/b.txt", 0o644, 1, hashlib.sha256(b"b").hexdigest())]


def test_an_artifact_with_a_name_that_is_not_plain_has_no_list(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "dist").mkdir(parents=True)
    (workspace / "dist/a b.txt").write_text("x")
    os.symlink("a b.txt", workspace / "dist/link")
    artifact = build.pack(workspace, ("dist",), tmp_path / "out", {"time": 0})
    with tarfile.open(artifact.path) as tar:
        assert tar.getnames() == ["dist", "dist/a b.txt", "dist/link", ".conveyor-release.json"]


def test_an_artifact_link_leading_outside_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "dist").mkdir(parents=True)
    (workspace / "dist/ok").symlink_to("b.txt")
    (workspace / "dist/b.txt").write_text("b")
    manifest = {"time": 0}
    build.pack(workspace, ("dist",), tmp_path / "out", manifest)
    (workspace / "dist/escape").symlink_to("../../etc/passwd")
    with pytest.raises(build.BuildError, match="leads outside the release"):
        build.pack(workspace, ("dist",), tmp_path / "out", manifest)
    with pytest.raises(build.BuildError, match="must stay inside the checkout"):
        build.pack(workspace, ("../ws",), tmp_path / "out", manifest)


def test_commands_see_a_scrubbed_environment(tmp_path: Path, git_repo: GitRepo,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_API_TOKEN", "do-not-leak")
    sha = git_repo.commit({"dist/x": "x"})
    workspace = checkout(tmp_path, git_repo, sha)
    the_order = order(git_repo, sha, env={"EXTRA": "yes"})
    lines: list[str] = []
    build.run_commands(("env | sort",), workspace, build.build_env(the_order, workspace), 30,
                       lines.append)
    seen = dict(line.rstrip("\n").split("=", 1) for line in lines[1:] if "=" in line)
    assert "CONVEYOR_API_TOKEN" not in seen
    assert seen["CONVEYOR_SHA"] == sha and seen["EXTRA"] == "yes"
    assert seen["CONVEYOR_REF"] == "refs/heads/main" and seen["CONVEYOR_BUILD_ID"] == "7"


def test_a_failing_or_overlong_command_fails_the_build_and_leaves_no_process(
        tmp_path: Path) -> None:
    lines: list[str] = []
    with pytest.raises(build.BuildError, match="exit status 3 from: exit 3"):
        build.run_commands(("echo before", "exit 3", "echo never"), tmp_path, {"PATH": "/bin"},
                           30, lines.append)
    assert lines == ["$ echo before", "before\n", "$ exit 3"]
    marker = tmp_path / "grandchild.pid"
    command = f"(sleep 300 & echo $! > {marker}; wait) & wait"
    with pytest.raises(build.BuildError, match="timed out after 3s"):
        build.run_commands((command,), tmp_path, {"PATH": "/usr/bin:/bin"}, 3, lines.append)
    assert not alive(int(marker.read_text()))


def alive(pid: int) -> bool:
    """Whether `pid` runs; a killed process whose parent is gone may linger as a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
