"""Git repositories made with real git: a bare origin and a working clone that commits to it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Identity and settings come from here only: the user's global and system config are ignored.
_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Conveyor Tests",
    "GIT_AUTHOR_EMAIL": "tests@conveyor.invalid",
    "GIT_COMMITTER_NAME": "Conveyor Tests",
    "GIT_COMMITTER_EMAIL": "tests@conveyor.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}
_SETTINGS = ("init.defaultBranch=main", "commit.gpgsign=false", "tag.gpgsign=false")
_OPTIONS = [arg for setting in _SETTINGS for arg in ("-c", setting)]


def git(*args: str, cwd: Path) -> str:
    """Run git in `cwd` with the harness's fixed identity; return stdout without the newline."""
    result = subprocess.run(
        ["git", *_OPTIONS, *args],
        cwd=cwd, env={**os.environ, **_ENV}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout.rstrip("\n")


class GitRepo:
    """A bare `origin` (usable as clone_url) and a `work` clone whose commits are pushed to it."""

    def __init__(self, origin: Path, work: Path) -> None:
        self.origin = origin
        self.work = work

    @property
    def url(self) -> str:
        """The origin as a file:// URL."""
        return self.origin.as_uri()

    def commit(
        self, files: dict[str, str | bytes], message: str = "change", branch: str = "main"
    ) -> str:
        """Write `files` (path -> content) on `branch`, commit, push; return the new sha.

        A branch that does not exist yet starts from the commit checked out now.
        """
        self._checkout(branch)
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        git("add", "--all", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return self.sha("HEAD")

    def tag(self, name: str, ref: str = "HEAD") -> str:
        """Create an annotated tag `name` at `ref`, push it; return the commit's sha."""
        git("tag", "-a", "-m", name, name, ref, cwd=self.work)
        git("push", "-q", "origin", f"refs/tags/{name}", cwd=self.work)
        return self.sha(name)

    def sha(self, ref: str) -> str:
        """The 40-hex commit sha that `ref` names in the working clone."""
        return git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=self.work)

    def _checkout(self, branch: str) -> None:
        if git("symbolic-ref", "--short", "HEAD", cwd=self.work) == branch:
            return
        if git("branch", "--list", branch, cwd=self.work):
            git("checkout", "-q", branch, cwd=self.work)
        else:
            git("checkout", "-q", "-b", branch, cwd=self.work)


def make_repo(base: Path, name: str = "app") -> GitRepo:
    """A new repository with one commit (README.md) on `main`, pushed to its bare origin."""
    base.mkdir(parents=True, exist_ok=True)
    origin, work = base / f"{name}.git", base / name
    git("init", "-q", "--bare", str(origin), cwd=base)
    git("clone", "-q", str(origin), str(work), cwd=base)
    repo = GitRepo(origin, work)
    repo.commit({"README.md": f"# {name}\n"}, message="Initial commit")
    return repo
