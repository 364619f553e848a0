"""What a push changed, and which commits descend from which, from the git mirror: for
`paths:` (app/pipeline/paths.py decides) and for forward-only deployments (rules.choose).

The payload's commit list is no answer (GitHub cuts it at 2048 commits, GitLab at 20): the
diff between the push's before and after in the mirror is. Git runs with argument lists,
shas are validated and `--end-of-options` stands before anything that came from a payload.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from app import pipeline
from app.config import Ssh
from app.context import Context
from app.events import ZERO_SHA
from workers.git import GitError, git_env, read

_SHA = re.compile(r"^[0-9a-f]{40}$")


class ChangesUnknown(Exception):
    """What the push changed cannot be told (the mirror lacks the commit, git failed)."""


def skip_unchanged(ctx: Context, build_id: int, mirror: Path, clone_url: str,
                   say: Callable[[str], None], *, allow_file: bool = False) -> bool:
    """The build job's `paths:` step: True when the build was skipped (nothing to build)."""
    check = pipeline.changes_check(ctx, build_id)
    if check is None:
        return False
    fetch_for_changes(mirror, clone_url, ctx.config.ssh, check.since, check.base,
                      allow_file=allow_file)
    try:
        files: list[str] | str = changed_files(mirror, check.since, check.sha, check.base)
    except ChangesUnknown as exc:
        files = str(exc)  # the pipeline decides what an unknown answer means
    return pipeline.settle_changes(ctx, check, files, say)


def changed_files(mirror: Path, before: str, after: str,
                  default_branch: str | None) -> list[str]:
    """Files that differ between `before` and `after`; for a new branch (before all zeros, or
    a before the mirror lacks) since it left `default_branch`; every file when neither is
    known. Deleted, added and renamed files count under both their old and new names."""
    if not _SHA.match(after) or not _is_commit(mirror, after):
        raise ChangesUnknown(f"commit {after[:40]!r} is not in the repository")
    base = before if before != ZERO_SHA and _is_commit(mirror, before) else None
    if base is None and default_branch:
        base = _merge_base(mirror, default_branch, after)
    if base is None:
        return _split(_git(mirror, "ls-tree", "-r", "-z", "--name-only", "--end-of-options",
                           after))
    return _split(_git(mirror, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff",
                       "--end-of-options", base, after, "--"))


def fetch_for_changes(mirror: Path, clone_url: str, ssh: Ssh | None, before: str,
                      default_branch: str | None, *, allow_file: bool = False) -> None:
    """Fetch what the comparison needs and the build's own fetch left out: the before
    commit, or the default branch's tip for a new branch. Failures only widen the answer."""
    env = git_env(ssh, origin=clone_url, allow_file=allow_file)
    wanted = []
    if before != ZERO_SHA and _SHA.match(before) and not _is_commit(mirror, before):
        wanted.append(before)
    if (before == ZERO_SHA or wanted) and default_branch and _branch_name(mirror, default_branch):
        wanted.append(f"+refs/heads/{default_branch}:refs/heads/{default_branch}")
    with _mirror_lock(mirror):
        for refspec in wanted:
            try:
                _git(mirror, "fetch", "--quiet", "--no-tags", "origin", "--end-of-options",
                     refspec, env=env)
            except ChangesUnknown:
                continue


@contextmanager
def _mirror_lock(mirror: Path) -> Iterator[None]:
    """The lock `workers.mirrors.lock` takes: one process changes the mirror at once."""
    with open(mirror.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ancestry(mirror: Path, shas: list[str]) -> set[tuple[str, str]]:
    """Which of these commits descend from which, as far as the mirror knows: the pairs
    (a, b) where a is an ancestor of b. A commit the mirror lacks is in no pair."""
    known = [sha for sha in shas if (mirror / "HEAD").exists() and _is_commit(mirror, sha)]
    pairs = set()
    for a in known:
        for b in known:
            if a != b and _is_ancestor(mirror, a, b):
                pairs.add((a, b))
    return pairs


def _is_ancestor(mirror: Path, a: str, b: str) -> bool:
    try:
        read(mirror, "merge-base", "--is-ancestor", "--end-of-options", a, b)
    except GitError:
        return False
    return True


def _is_commit(mirror: Path, sha: str) -> bool:
    if not _SHA.match(sha):
        return False
    try:
        _git(mirror, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{sha}^{{commit}}")
    except ChangesUnknown:
        return False
    return True


def _branch_name(mirror: Path, branch: str) -> bool:
    """Whether `branch` (from a payload) is a valid branch name, so a ref may be made of it."""
    try:
        _git(mirror, "check-ref-format", f"refs/heads/{branch}")
    except ChangesUnknown:
        return False
    return not branch.startswith("-")


def _merge_base(mirror: Path, branch: str, after: str) -> str | None:
    """Where `after` left `branch`, or None when the mirror has no such branch."""
    if not _branch_name(mirror, branch):
        return None
    ref = f"refs/heads/{branch}"
    try:
        tip = _git(mirror, "rev-parse", "--verify", "--quiet", "--end-of-options",
                   f"{ref}^{{commit}}").strip()
        found = _git(mirror, "merge-base", "--end-of-options", tip, after).strip()
    except ChangesUnknown:
        return None
    return found if _SHA.match(found) else None


def _git(mirror: Path, *args: str, env: dict[str, str] | None = None) -> str:
    try:
        return read(mirror, *args, env=env)
    except GitError as exc:
        raise ChangesUnknown(str(exc)) from None


def _split(output: str) -> list[str]:
    return [name for name in output.split("\0") if name]
