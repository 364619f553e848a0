"""The build job: mirror the repository, check out one commit, run the commands, pack the artifact.

Refs and shas never reach a shell: git is run with argument lists, shas are validated and
`--end-of-options` stands before anything that came from a payload. The build commands come
from the pipeline file (the operator's own text) and run with a scrubbed environment.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath

from app import pipeline
from app.context import Context
from workers import context

_SHA = re.compile(r"^[0-9a-f]{40}$")
MANIFEST = ".conveyor-release.json"
GIT_TIMEOUT = 600


class BuildError(Exception):
    """A build step failed; the message is shown on the commit and in the log."""


def run(build_id: int) -> None:
    """RQ job on the `builds` queue: build one commit once."""
    ctx = context()
    order = pipeline.start_build(ctx, build_id)
    if order is None:
        return
    workspace = ctx.settings.data_dir / "workspaces" / f"build-{build_id}"
    say = _logger(ctx, build_id)
    try:
        mirror = update_mirror(ctx.settings.data_dir, order.project.name, order.clone_url, say)
        checkout(mirror, order.sha, workspace)
        run_commands(order.project.build.commands, workspace,
                     build_env(order, workspace), order.project.build.timeout, say)
        artifact = pack(workspace, order.project.build.artifact,
                        ctx.settings.data_dir / "artifacts" / order.project.name,
                        manifest(order, commit_time(mirror, order.sha)))
    except BuildError as exc:
        say(f"build failed: {exc}")
        pipeline.finish_build(ctx, build_id, error=str(exc))
        return
    except Exception as exc:
        pipeline.finish_build(ctx, build_id, error=f"internal error: {type(exc).__name__}")
        raise
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    say(f"artifact {artifact.sha256} ({artifact.size} bytes)")
    pipeline.finish_build(ctx, build_id, artifact=artifact)


def _logger(ctx: Context, build_id: int) -> Callable[[str], None]:
    return lambda text: pipeline.log(ctx, text, build_id=build_id)


# -- git --------------------------------------------------------------------------------------


def git_env() -> dict[str, str]:
    """An environment for git that never prompts and allows only ordinary transports."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
            "LANG": "C.UTF-8", "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git with an argument list; raise BuildError with git's own message on failure."""
    result = subprocess.run(["git", *args], cwd=cwd, env=git_env(), capture_output=True,
                            text=True, timeout=GIT_TIMEOUT, check=False)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise BuildError(f"git {args[0]} failed: {message}")
    return result.stdout


def update_mirror(data_dir: Path, project: str, clone_url: str,
                  say: Callable[[str], None]) -> Path:
    """Create or fetch the project's bare mirror; one build at a time touches it."""
    mirror = data_dir / "mirrors" / f"{project}.git"
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(mirror.with_suffix(".lock")):
        if not (mirror / "HEAD").exists():
            say("cloning the repository")
            shutil.rmtree(mirror, ignore_errors=True)
            git("clone", "--quiet", "--mirror", "--", clone_url, str(mirror))
        else:
            say("fetching the repository")
            git("remote", "set-url", "origin", "--", clone_url, cwd=mirror)
            git("fetch", "--quiet", "--prune", "origin", cwd=mirror)
    return mirror


def checkout(mirror: Path, sha: str, workspace: Path) -> None:
    """A fresh workspace holding exactly commit `sha`."""
    if not _SHA.match(sha):
        raise BuildError(f"{sha!r} is not a commit id")
    try:
        git("cat-file", "-e", f"{sha}^{{commit}}", cwd=mirror)
    except BuildError:
        raise BuildError(f"commit {sha} is not in the repository") from None
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "--quiet", "--no-checkout", "--", str(mirror), str(workspace))
    git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", sha,
        cwd=workspace)


def commit_time(mirror: Path, sha: str) -> int:
    """The commit's timestamp: the fixed mtime of every artifact entry."""
    return int(git("show", "-s", "--format=%ct", "--end-of-options", sha, cwd=mirror).strip())


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# -- commands -------------------------------------------------------------------------------


def build_env(order: pipeline.BuildOrder, workspace: Path) -> dict[str, str]:
    """The scrubbed environment of build commands: never Conveyor's own secrets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(workspace),
        "LANG": "C.UTF-8",
        **order.project.build.env,
        "CONVEYOR_PROJECT": order.project.name,
        "CONVEYOR_SHA": order.sha,
        "CONVEYOR_REF": order.ref,
        "CONVEYOR_BUILD_ID": str(order.build_id),
    }


def run_commands(commands: tuple[str, ...], workspace: Path, env: dict[str, str],
                 timeout: float, say: Callable[[str], None]) -> None:
    """Run each command in turn under one deadline for them all; stop at the first failure."""
    deadline = time.monotonic() + timeout
    for command in commands:
        say(f"$ {command}")
        status = _run_one(command, workspace, env, deadline, say)
        if status is None:
            raise BuildError(f"timed out after {int(timeout)}s in: {command}")
        if status != 0:
            raise BuildError(f"exit status {status} from: {command}")


def _run_one(command: str, workspace: Path, env: dict[str, str], deadline: float,
             say: Callable[[str], None]) -> int | None:
    """Exit status of `command`, or None when the deadline ended its whole process group."""
    process = subprocess.Popen(["sh", "-c", command], cwd=workspace, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    reader = threading.Thread(target=_forward, args=(process.stdout, say), daemon=True)
    reader.start()
    try:
        status = process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        status = None
    finally:
        _kill_group(process)
        reader.join(timeout=10)
    return status


def _forward(stream: io.BufferedReader | None, say: Callable[[str], None]) -> None:
    for raw in iter(stream.readline, b"") if stream else ():
        say(raw.decode("utf-8", "replace"))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """End what the command left behind: its whole process group, not just the shell."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# -- artifact -------------------------------------------------------------------------------


def manifest(order: pipeline.BuildOrder, committed_at: int) -> dict[str, object]:
    """What the release says about itself; no wall-clock time, so rebuilds match byte for byte."""
    return {"project": order.project.name, "sha": order.sha, "ref": order.ref,
            "build_id": order.build_id, "time": committed_at}


def pack(workspace: Path, paths: tuple[str, ...], out_dir: Path,
         release_manifest: dict[str, object]) -> pipeline.Artifact:
    """A reproducible `.tar.gz` of `paths` (sorted, owners and mtimes fixed), named by sha256."""
    mtime = int(release_manifest["time"])  # type: ignore[call-overload]
    entries = sorted({entry for item in paths for entry in _walk(workspace, item)})
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".partial-{os.getpid()}-{threading.get_ident()}.tar.gz"
    digest = hashlib.sha256()
    with open(partial, "wb") as raw, _HashingWriter(raw, digest) as hashed, \
            gzip.GzipFile(fileobj=hashed, mode="wb", mtime=0, filename="",
                          compresslevel=6) as zipped, \
            tarfile.open(fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in entries:
            _add(tar, workspace, name, mtime)
        data = json.dumps(release_manifest, sort_keys=True, indent=2).encode() + b"\n"
        info = _info(MANIFEST, mtime, 0o644)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    sha256 = digest.hexdigest()
    final = out_dir / f"{sha256}.tar.gz"
    os.replace(partial, final)
    return pipeline.Artifact(path=str(final), sha256=sha256, size=final.stat().st_size)


def _walk(workspace: Path, item: str) -> Iterator[str]:
    """Every entry under `item`, as a relative POSIX name; refuses what leads outside."""
    relative = PurePosixPath(item.strip("/") if not item.startswith("/") else item)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise BuildError(f"artifact path {item!r} must stay inside the checkout")
    top = workspace / relative
    if not top.exists() and not top.is_symlink():
        raise BuildError(f"artifact path {item!r} does not exist after the build")
    for parent in reversed(relative.parents[:-1]):
        yield str(parent)
    yield str(relative)
    if top.is_dir() and not top.is_symlink():
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                yield str((Path(root) / name).relative_to(workspace).as_posix())


def _add(tar: tarfile.TarFile, workspace: Path, name: str, mtime: int) -> None:
    path = workspace / name
    stat = path.lstat()
    if path.is_symlink():
        target = os.readlink(path)
        resolved = PurePosixPath(os.path.normpath(PurePosixPath(name).parent / target))
        if target.startswith("/") or resolved.parts[:1] == ("..",):
            raise BuildError(f"artifact link {name} -> {target} leads outside the release")
        info = _info(name, mtime, 0o777, tarfile.SYMTYPE)
        info.linkname = target
        tar.addfile(info)
    elif path.is_dir():
        tar.addfile(_info(name, mtime, 0o755, tarfile.DIRTYPE))
    elif path.is_file():
        info = _info(name, mtime, 0o755 if stat.st_mode & 0o111 else 0o644)
        info.size = stat.st_size
        with open(path, "rb") as handle:
            tar.addfile(info, handle)
    else:
        raise BuildError(f"artifact entry {name} is not a file, folder or link")


def _info(name: str, mtime: int, mode: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _HashingWriter(io.RawIOBase):
    """Passes writes through to a file while hashing them, so the artifact is read once."""

    def __init__(self, target: io.BufferedWriter, digest: hashlib._Hash) -> None:
        self._target, self._digest = target, digest

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._digest.update(data)
        return self._target.write(data)
