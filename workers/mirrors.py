"""The project's bare git mirror on this machine: made and fetched by the build job, and by
any job that reads commits from it on a machine that built nothing (workers on several
machines share no disk): the deploy job (which commits descend from which, for
forward-only deployments) and chat (a commit's words, the commits a deployment adds).

Refs and shas never reach a shell: git runs with argument lists, shas are validated and
`--end-of-options` stands before anything that came from a payload. One process changes a
mirror at a time (a file lock beside it, which `workers.changes` takes too).
"""

from __future__ import annotations

import fcntl
import logging
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from app import pipeline
from app.config import Ssh
from app.context import Context
from app.settings import mirror_path
from workers.git import GitError, git_env, read

log = logging.getLogger(__name__)
_SHA = re.compile(r"^[0-9a-f]{40}$")

# Branches and tags, and the heads of pull requests (GitHub, Gitea) and merge requests
# (GitLab), so that a fork's commit is found where the forge refuses fetching by commit id.
MIRROR_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*",
                   "+refs/pull/*/head:refs/pull/*/head",
                   "+refs/merge-requests/*/head:refs/merge-requests/*/head")


def update(data_dir: Path, project: str, clone_url: str, say: Callable[[str], None], *,
           shas: Iterable[str] = (), ssh: Ssh | None = None, allow_file: bool = False) -> Path:
    """The project's bare mirror, holding `shas` (or every branch and tag when none is
    given). Only what is missing is fetched: each commit by id where the server allows it,
    else everything; from a path only when `allow_file` (the pipeline file's clone_url is
    one). Raises GitError."""
    mirror = mirror_path(data_dir, project)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    env = git_env(ssh, origin=clone_url, allow_file=allow_file)
    shown = pipeline.without_credentials(clone_url)
    wanted = list(shas)
    with lock(mirror):
        if not (mirror / "HEAD").exists():
            shutil.rmtree(mirror, ignore_errors=True)
            read(None, "init", "--quiet", "--bare", str(mirror), env=git_env(allow_file=True))
            read(mirror, "config", "remote.origin.url", shown)
            for refspec in MIRROR_REFSPECS:
                read(mirror, "config", "--add", "remote.origin.fetch", refspec)
        missing = [sha for sha in wanted if not has_commit(mirror, sha)]
        if wanted and not missing:
            return mirror
        say(f"fetching from {shown}")
        if missing and all(_SHA.match(sha) for sha in missing):
            try:  # just those commits and their history, where the server allows it
                read(mirror, "fetch", "--quiet", "--no-tags", "origin", "--end-of-options",
                     *missing, env=env)
                return mirror
            except GitError:
                pass
        read(mirror, "fetch", "--quiet", "--prune", "origin", env=env)
    return mirror


def holding(ctx: Context, project: str, shas: Iterable[str]) -> Path:
    """This machine's mirror of the project, fetched first when it lacks one of `shas`
    (a worker that built nothing has none). Never raises: when the repository cannot be
    reached, the mirror knows what it knows, and its readers say less."""
    mirror = mirror_path(ctx.settings.data_dir, project)
    wanted = sorted({sha for sha in shas if sha and _SHA.match(sha)})
    if not wanted or all(has_commit(mirror, sha) for sha in wanted):
        return mirror
    found = ctx.config.projects.get(project)
    if found is None:
        return mirror
    clone_url, refusal = pipeline.clone_source(found.clone_url,
                                               pipeline.known_clone_url(ctx, found) or "")
    if not clone_url or refusal is not None:
        return mirror
    try:
        return update(ctx.settings.data_dir, project, clone_url, lambda _line: None,
                      shas=wanted, ssh=ctx.config.ssh,
                      allow_file=pipeline.is_local_url(found.clone_url))
    except GitError as exc:
        log.warning("the mirror of %s could not be fetched: %s", project,
                    pipeline.mask(str(exc), ctx.secrets()))
        return mirror


def has_commit(mirror: Path, sha: str) -> bool:
    """Whether the mirror holds commit `sha`."""
    if not _SHA.match(sha) or not (mirror / "HEAD").exists():
        return False
    try:
        read(mirror, "cat-file", "-e", f"{sha}^{{commit}}")
    except GitError:
        return False
    return True


@contextmanager
def lock(mirror: Path) -> Iterator[None]:
    """Hold the mirror's lock: one process changes it at a time."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(mirror.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
