"""The build job: mirror the repository, check out one commit, run the commands, pack the artifact.

Refs and shas never reach a shell: git is run with argument lists, shas are validated and
`--end-of-options` stands before anything that came from a payload. The build commands come
from the pipeline file (the operator's own text) and run with a scrubbed environment.
"""

from __future__ import annotations

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
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from app import pipeline
from app.config import Ssh
from app.context import Context
from workers import artifacts, context, mirrors
from workers import manifest as files_list
from workers.delta import index_path
from workers.git import GitError, git_env, read
from workers.pgzip import BLOCK, ParallelGzipWriter
from workers.recovery import alive

_SHA = re.compile(r"^[0-9a-f]{40}$")
MANIFEST = ".conveyor-release.json"


class BuildError(Exception):
    """A build step failed; the message is shown on the commit and in the log."""


def run(build_id: int) -> None:
    """RQ job on the `builds` queue: build one commit once."""
    ctx = context()
    # Kept alive from before the build is marked running until after its end is recorded:
    # a running build without it lost its worker (workers.recovery).
    with alive(ctx.jobs.redis, pipeline.build_liveness_key(build_id)):
        _build(ctx, build_id)


def _build(ctx: Context, build_id: int) -> None:
    order = pipeline.start_build(ctx, build_id)
    if order is None:
        return
    workspace = ctx.settings.data_dir / "workspaces" / f"build-{build_id}"
    build_log = BuildLog(ctx, build_id)
    say = build_log.add
    failed = True
    try:
        mirror = update_mirror(ctx.settings.data_dir, order.project.name, order.clone_url, say,
                               sha=order.sha, ssh=ctx.config.ssh, allow_file=order.allow_file)
        # -- issue 3 (intake), `paths:`: a push that changes nothing under them ends here. --
        from workers.changes import skip_unchanged
        if skip_unchanged(ctx, build_id, mirror, order.clone_url, say,
                          allow_file=order.allow_file):
            failed = False
            return
        # -- end of issue 3's block -----------------------------------------------------------
        checkout(mirror, order.sha, workspace)
        run_commands(order.project.build.commands, workspace,
                     build_env(order, workspace), order.project.build.timeout, say)
        committed = commit_time(mirror, order.sha)
        artifact = pack(workspace, order.project.build.artifact,
                        ctx.settings.data_dir / "artifacts" / order.project.name,
                        manifest(order, committed))
        artifact = stored(ctx, order.project.name, artifact, say)
        failed = False
    except BuildError as exc:
        say(f"build failed: {exc}")
        build_log.close()
        pipeline.finish_build(ctx, build_id, error=str(exc))
        return
    except Exception as exc:
        build_log.close()
        pipeline.finish_build(ctx, build_id, error=f"internal error: {type(exc).__name__}")
        raise
    finally:
        build_log.close()
        if failed and order.project.build.keep_failed_workspace:
            say(f"the workspace is kept at {workspace}")
        else:
            shutil.rmtree(workspace, ignore_errors=True)
    say(f"artifact {artifact.sha256} ({artifact.size} bytes)")
    build_log.close()
    pipeline.finish_build(ctx, build_id, artifact=artifact,
                          committed_at=datetime.fromtimestamp(committed, UTC))
    prune_artifacts(ctx, order.project.name)


def stored(ctx: Context, project: str, artifact: pipeline.Artifact,
           say: Callable[[str], None]) -> pipeline.Artifact:
    """The packed artifact put where `artifacts.store` says (s3: uploaded, and recorded by
    its URL); a failed upload fails the build and leaves no file behind."""
    try:
        return artifacts.keep(ctx, project, artifact, say)
    except artifacts.StoreError as exc:
        Path(artifact.path).unlink(missing_ok=True)
        raise BuildError(str(exc)) from None


def prune_artifacts(ctx: Context, project: str) -> None:
    """Delete the artifacts the pipeline no longer keeps (it forgets them first): files
    here (with their index), objects in the bucket."""
    artifacts.forget(ctx, pipeline.release_artifacts(ctx, project))


class BuildLog:
    """A build's log: lines are stored as they come, in batches (one transaction per
    batch, at most FLUSH_SECONDS late), so a chatty build is not slowed down by its log."""

    FLUSH_SECONDS = 0.2

    def __init__(self, ctx: Context, build_id: int) -> None:
        self._ctx, self._build_id = ctx, build_id
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="build-log",
                                         daemon=True)
        self._flusher.start()

    def add(self, text: str) -> None:
        """Queue one line (stored within FLUSH_SECONDS; at once after close)."""
        with self._lock:
            self._lines.append(text)
        if self._closed.is_set():
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
            if lines:
                pipeline.log_many(self._ctx, lines, build_id=self._build_id)

    def close(self) -> None:
        """Store what is queued and stop the background flushes (idempotent)."""
        self._closed.set()
        if self._flusher.is_alive():
            self._flusher.join()
        self.flush()

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.FLUSH_SECONDS):
            self.flush()


# -- git --------------------------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run git with an argument list; raise BuildError with git's own message on failure.

    Without `env`, git reads only Conveyor's own mirrors and workspaces (paths), never a
    remote: a fetch from the project's repository passes `git_env(origin=...)`."""
    try:
        return read(cwd, *args, env=env or git_env(allow_file=True))
    except GitError as exc:
        raise BuildError(str(exc)) from None


def update_mirror(data_dir: Path, project: str, clone_url: str,
                  say: Callable[[str], None], *, sha: str | None = None,
                  ssh: Ssh | None = None, allow_file: bool = False) -> Path:
    """The project's bare mirror, holding `sha` (or every branch and tag when no sha is
    given); one build at a time touches it. Only what is missing is fetched; from a path
    only when `allow_file` (the pipeline file's clone_url is one). See `workers.mirrors`."""
    try:
        return mirrors.update(data_dir, project, clone_url, say,
                              shas=() if sha is None else (sha,), ssh=ssh,
                              allow_file=allow_file)
    except GitError as exc:
        raise BuildError(str(exc)) from None


def _has_commit(mirror: Path, sha: str) -> bool:
    try:
        git("cat-file", "-e", f"{sha}^{{commit}}", cwd=mirror)
    except BuildError:
        return False
    return True


def checkout(mirror: Path, sha: str, workspace: Path) -> None:
    """A fresh workspace holding exactly commit `sha`."""
    if not _SHA.match(sha):
        raise BuildError(f"{sha!r} is not a commit id")
    if not _has_commit(mirror, sha):
        raise BuildError(f"commit {sha} is not in the repository")
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "--quiet", "--no-checkout", "--", str(mirror), str(workspace))
    git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", sha,
        cwd=workspace)


def commit_time(mirror: Path, sha: str) -> int:
    """The commit's timestamp: the fixed mtime of every artifact entry."""
    return int(git("show", "-s", "--format=%ct", "--end-of-options", sha, cwd=mirror).strip())


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
    """A reproducible `.tar.gz` of `paths` (sorted, owners and mtimes fixed), named by sha256.

    Its first member is the list of files (`.conveyor-files`, `workers.manifest`) when
    every name is plain; it is gzipped in blocks on every core (`workers.pgzip`)."""
    mtime = int(release_manifest["time"])  # type: ignore[call-overload]
    entries = sorted({entry for item in paths for entry in _walk(workspace, item)})
    data = json.dumps(release_manifest, sort_keys=True, indent=2).encode() + b"\n"
    listed = _list_files(workspace, entries, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".partial-{os.getpid()}-{threading.get_ident()}.tar.gz"
    digest = hashlib.sha256()
    spans: dict[str, tuple[int, int]] = {}
    with open(partial, "wb") as raw, _HashingWriter(raw, digest) as hashed, \
            ParallelGzipWriter(hashed) as zipped, \
            tarfile.open(fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if listed is not None:
            _add_bytes(tar, files_list.NAME, listed, mtime)
        for name in entries:
            start = tar.offset
            _add(tar, workspace, name, mtime)
            spans[name] = (start, tar.offset)
        start = tar.offset
        _add_bytes(tar, MANIFEST, data, mtime)
        spans[MANIFEST] = (start, tar.offset)
    sha256 = digest.hexdigest()
    final = out_dir / f"{sha256}.tar.gz"
    os.replace(partial, final)
    if listed is not None:
        index = {"block": BLOCK, "members": zipped.sizes, "files": spans}
        index_path(final).write_text(json.dumps(index, separators=(",", ":")))
    return pipeline.Artifact(path=str(final), sha256=sha256, size=final.stat().st_size)



def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = _info(name, mtime, 0o644)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _list_files(workspace: Path, names: list[str], release: bytes) -> bytes | None:
    """The list of files of the artifact (hashed on every core), or None when a name is
    not plain or an entry is not a file, folder or link (packing then says why)."""
    if not all(files_list.plain(name) for name in names):
        return None
    paths = [workspace / name for name in names]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        found = list(pool.map(_list_one, names, paths))
    if any(entry is None for entry in found):
        return None
    release_entry = files_list.file(MANIFEST, 0o644, len(release),
                                    hashlib.sha256(release).hexdigest())
    listed = [entry for entry in found if entry is not None] + [release_entry]
    return files_list.render(listed) if files_list.listable(listed) else None


def _list_one(name: str, path: Path) -> files_list.Entry | None:
    if path.is_symlink():
        return files_list.link(name, os.readlink(path))
    if path.is_dir():
        return files_list.folder(name)
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
    return files_list.file(name, mode, path.stat().st_size, sha256)


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
