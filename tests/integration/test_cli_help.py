"""`conveyor --help` as a user reads it: the public commands only, each with its own help and
an example; usage errors as one sentence and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

PUBLIC = ("approve", "cancel", "check", "deliveries", "demo", "deploy", "hosts", "logs",
          "retry", "rollback", "status", "up", "web", "worker")


def conveyor(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_help_lists_the_public_commands_and_hides_the_internal_one() -> None:
    result = conveyor("--help")
    assert result.returncode == 0, result.stderr
    assert "rq-worker" not in result.stdout
    listed = result.stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    names = [line.split()[0] for line in listed.splitlines() if not line.startswith("   ")]
    assert names == sorted(PUBLIC)
    assert "2 on usage or configuration errors" in " ".join(result.stdout.split())


@pytest.mark.parametrize("verb", [*PUBLIC, "hosts check", "hosts trust"])
def test_each_verb_has_help_with_an_example(verb: str) -> None:
    result = conveyor(*verb.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: conveyor {verb} ")
    assert f"    conveyor {verb}" in result.stdout.split("Examples:\n", 1)[1]


def test_the_hidden_rq_worker_command_still_parses() -> None:
    result = conveyor("rq-worker", "--help")
    assert result.returncode == 0, result.stderr
    assert "--with-scheduler" in result.stdout


@pytest.mark.parametrize(("argv", "message"), [
    (("bogus",), "No such command 'bogus'"),
    (("approve", "x"), "'x' is not a valid integer"),
    (("deploy", "shop", "staging", "--ref", "main", "--sha", "a" * 40),
     "give --ref or --sha, not both"),
    (("worker", "slow"), "there is no queue 'slow'; the queues are deploys, builds, notify"),
])
def test_usage_errors_are_one_sentence_and_exit_2(argv: tuple[str, ...], message: str) -> None:
    result = conveyor(*argv)
    assert (result.returncode, result.stdout) == (2, "")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
