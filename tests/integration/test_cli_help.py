"""`conveyor --help` as a user reads it: the public commands only."""

from __future__ import annotations

import subprocess
import sys

PUBLIC = ("check", "deploy", "hosts", "web", "worker", "up")


def conveyor(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_help_lists_the_public_commands_and_hides_the_internal_one() -> None:
    result = conveyor("--help")
    assert result.returncode == 0, result.stderr
    assert "SUPPRESS" not in result.stdout
    assert "rq-worker" not in result.stdout
    assert "{" + ",".join(PUBLIC) + "}" in result.stdout
    for name in PUBLIC:
        assert f"\n    {name} " in result.stdout, name
    assert "2 on usage or configuration errors" in result.stdout


def test_the_hidden_rq_worker_command_still_parses() -> None:
    result = conveyor("rq-worker", "--help")
    assert result.returncode == 0, result.stderr
    assert "--with-scheduler" in result.stdout
