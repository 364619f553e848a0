"""The commits a promotion adds to what is live, read from the project's git mirror when it
is on the web machine (one machine runs both), else what the database knows (their shas).

The web process never imports `workers`; the mirror's place is `app.settings.mirror_path`,
which the workers use too, and git runs here with no remote, no prompt and no configuration
of the user's."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

MAX_COMMITS = 50
GIT_TIMEOUT = 10
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_FIELD = "\x1f"


@dataclass(frozen=True)
class Commit:
    """One commit being promoted; `subject` and `author` are empty when unknown."""

    sha: str
    subject: str = ""
    author: str = ""


def from_mirror(mirror: Path, live: str | None, sha: str,
                limit: int = MAX_COMMITS) -> list[Commit] | None:
    """The commits of `live..sha` (all of `sha`'s history up to `limit` when nothing is
    live), newest first; None when the mirror is not here or cannot tell."""
    if not mirror.is_dir() or not _SHA.fullmatch(sha) or (live and not _SHA.fullmatch(live)):
        return None
    span = f"{live}..{sha}" if live else sha
    out = _git(mirror, "log", f"-{limit}", "--format=%H%x1f%s%x1f%an", "--end-of-options",
               span)
    if out is None:
        return None
    commits = []
    for line in out.splitlines():
        parts = line.split(_FIELD)
        if len(parts) == 3:
            commits.append(Commit(*parts))
    return commits


def _git(mirror: Path, *args: str) -> str | None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
           "LANG": "C.UTF-8", "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null"}
    try:
        result = subprocess.run(["git", "--git-dir", str(mirror), *args], env=env,
                                capture_output=True, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", "replace")
