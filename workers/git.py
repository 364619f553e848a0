"""How Conveyor runs git on a worker: the environment every git command gets, and where the
project mirrors live. Shared by the build job, the `paths:` check and the deploy job."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from app.config import Ssh

GIT_TIMEOUT = 600


def git_env(ssh: Ssh | None = None, origin: str | None = None, *,
            allow_file: bool = False) -> dict[str, str]:
    """An environment for git that never prompts and allows only ordinary transports.

    Over SSH git uses the pipeline file's key and known_hosts (host keys verified). An
    `origin` URL holding a token is handed over here, not on the command line (where `ps`
    shows it) nor in the mirror's config (where it would stay on disk). Reading a path on
    this machine (`file`) is allowed only when the pipeline file's clone_url is one
    (`allow_file`): a URL a payload names must not read the worker's files.
    """
    ssh_command = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if ssh and ssh.key:
        ssh_command += ["-i", str(ssh.key), "-o", "IdentitiesOnly=yes"]
    if ssh and ssh.known_hosts:
        ssh_command += ["-o", f"UserKnownHostsFile={ssh.known_hosts}"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
           "LANG": "C.UTF-8", "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh" if allow_file else "git:http:https:ssh",
           "GIT_SSH_COMMAND": shlex.join(ssh_command)}
    if origin is not None:
        env |= {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "remote.origin.url",
                "GIT_CONFIG_VALUE_0": origin}
    return env


class GitError(Exception):
    """git could not run, or exited non-zero; the message is git's own last line."""


def read(cwd: Path | None, *args: str, env: dict[str, str] | None = None,
         timeout: float = GIT_TIMEOUT) -> str:
    """git's output for an argument list run in `cwd` (by default with `git_env()`: no
    remote, no prompt); GitError when it cannot run, times out or fails."""
    try:
        result = subprocess.run(["git", *args], cwd=cwd, env=env or git_env(),
                                capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]}: {type(exc).__name__}") from None
    if result.returncode != 0:
        message = (result.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
        raise GitError(f"git {args[0]} failed: {message or f'exit status {result.returncode}'}")
    return result.stdout.decode("utf-8", "surrogateescape")
