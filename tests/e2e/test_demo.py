"""`python -m app.demo` (what `conveyor demo` runs), as a user runs it: a sample repository
pushed, built, deployed to staging, approved and live on production, with real Redis, git,
gunicorn and an RQ worker; and the one sentence a machine without Redis gets."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
import requests

from tests.support.processes import ROOT
from tests.support.services import free_port

pytestmark = pytest.mark.timeout(240)
DEMO = [sys.executable, "-m", "app.demo"]


def _env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONVEYOR_") and k != "REDIS_URL"}
    return {**env, **more}


def _in_order(text: str, patterns: list[str]) -> list[re.Match[str]]:
    """Each pattern matched by a line after the previous one's; the matches."""
    found, at = [], 0
    for pattern in patterns:
        match = re.compile(pattern, re.MULTILINE).search(text, at)
        assert match, f"no line like {pattern!r} after position {at} in:\n{text}"
        found.append(match)
        at = match.end()
    return found


PROGRESS = [
    r"^==> push of main \(([0-9a-f]{7})\) delivered: HTTP 202, build 1, deployment 1 queued$",
    r"^==> build 1 of ([0-9a-f]{7}) succeeded: tests passed, artifact stored$",
    r"^==> staging: deployment 1 of ([0-9a-f]{7}) succeeded: release (\S+) is live at"
    r" http://127\.0\.0\.1:\d+/$",
    r"^==> production: deployment 2 of ([0-9a-f]{7}) awaiting approval$",
]


def test_demo_exit_approves_production_and_exits_0_once_it_is_live(
        tmp_path: Path, redis_url: str, redis_db: redis.Redis) -> None:
    folder = tmp_path / "demo"
    done = subprocess.run([*DEMO, "--exit"], cwd=ROOT, capture_output=True, text=True,
                          timeout=200, check=False,
                          env=_env(REDIS_URL=redis_url, CONVEYOR_DEMO_DIR=str(folder)))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Redis: REDIS_URL" in done.stdout  # the one it was given, reachable
    pushed, built, staged, parked, _approved, live, dashboard, token = _in_order(done.stdout, [
        *PROGRESS,
        r"^==> production: deployment 2 approved by admin \(--exit approves it itself\)$",
        r"^==> production: deployment 2 of ([0-9a-f]{7}) succeeded: release (\S+) is live at"
        r" (http://127\.0\.0\.1:\d+/)$",
        r"^Dashboard: +(http://127\.0\.0\.1:\d+)/ \(sign in with the API token\)$",
        r"^API token: +(\S{20,})$",
    ])
    sha = pushed[1]
    assert built[1] == staged[1] == parked[1] == live[1] == sha  # one commit, built once
    assert "Traceback" not in done.stdout + done.stderr

    # Production runs the release on disk, from the same artifact as staging's.
    staging, production = folder / "hosts/staging", folder / "hosts/production"
    release = live[2]
    assert release.endswith(f"-{sha}")
    assert os.readlink(production / "current") == f"releases/{release}"
    assert (production / "current/hello/app.py").is_file()
    shipped = (production / ".conveyor/releases" / release).read_text()
    assert shipped == (staging / ".conveyor/releases" / staged[2]).read_text()
    assert token[1] in done.stdout.split("API token for this run: ")[1]

    # Everything it started is stopped: the web, and the app each environment ran.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{dashboard[1]}/healthz", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(live[3], timeout=5)
    assert (folder / "conveyor.yml").is_file()  # CONVEYOR_DEMO_DIR is kept


def test_without_redis_or_redis_server_the_demo_says_what_to_install_and_exits_2(
        tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "tmp").mkdir()
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run([*DEMO, "--exit"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False,
                          env=_env(PATH=str(tmp_path / "bin"), REDIS_URL=unreachable,
                                   TMPDIR=str(tmp_path / "tmp")))

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"conveyor demo: REDIS_URL ({unreachable}) cannot be reached and redis-server is not"
        " installed: start that Redis, or install redis-server (Debian, Ubuntu: apt-get"
        " install redis-server; macOS: brew install redis)\n")
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing left behind


def _path_without(tmp_path: Path, tool: str) -> str:
    """A PATH with every program of this one but `tool`."""
    bin_dir = tmp_path / f"without-{tool}"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for program in Path(folder).glob("*") if Path(folder).is_dir() else ():
            if program.name != tool and not (bin_dir / program.name).exists():
                (bin_dir / program.name).symlink_to(program)
    return str(bin_dir)


def test_a_failed_deployment_is_printed_and_exits_1_with_the_files_kept(
        tmp_path: Path, redis_url: str, redis_db: redis.Redis) -> None:
    """A host without gzip (a `local` host here: this machine) cannot unpack the artifact."""
    (tmp_path / "tmp").mkdir()
    done = subprocess.run([*DEMO, "--exit"], cwd=ROOT, capture_output=True, text=True,
                          timeout=200, check=False,
                          env=_env(REDIS_URL=redis_url, TMPDIR=str(tmp_path / "tmp"),
                                   PATH=_path_without(tmp_path, "gzip")))

    assert done.returncode == 1, done.stdout + done.stderr
    failed = _in_order(done.stdout, [
        r"^==> build 1 of \w+ succeeded: tests passed, artifact stored$",
        r"^==> staging: deployment 1 of \w+ failed: (prepare failed, no host changed: .*)$",
    ])[1]
    assert "gzip" in failed[1]
    assert "production" not in done.stdout.split(failed[0])[1]  # nothing promoted
    assert done.stderr.startswith(
        f"conveyor demo: deployment 1 (staging) failed: {failed[1]}; its log ends:\n")
    assert "gzip: not found" in done.stderr
    folder = Path(re.search(r"stay in (\S+)$", done.stdout, re.MULTILINE)[1])  # type: ignore[index]
    assert folder.parent == tmp_path / "tmp" and (folder / "logs/worker.log").is_file()
    assert not (folder / "hosts/staging/current").exists()  # no host changed


class Lines:
    """A running process's output, line by line, as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        """Wait for a line matching `pattern`."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line like {pattern!r}:\n"
                                     + "\n".join(self.seen)) from None
            if line is None:
                raise AssertionError(f"ended before {pattern!r}:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match


def test_demo_waits_for_a_person_to_approve_and_ctrl_c_stops_everything(
        tmp_path: Path, redis_url: str, redis_db: redis.Redis) -> None:
    (tmp_path / "tmp").mkdir()
    process = subprocess.Popen(DEMO, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env=_env(REDIS_URL=redis_url, TMPDIR=str(tmp_path / "tmp")))
    try:
        out = Lines(process)
        folder = Path(out.expect(r"^Conveyor demo: everything lives in (\S+)$")[1])
        out.expect(r"^==> production: deployment 2 of \w+ awaiting approval$")
        token = out.expect(r"^API token: +(\S+)$")[1]
        production = out.expect(r"^Production: +(http://\S+)$")[1]
        url, given, deployment = out.expect(
            r"CONVEYOR_URL=(\S+) CONVEYOR_API_TOKEN=(\S+) conveyor approve (\d+)$").groups()
        assert given == token
        out.expect(r"^Press Ctrl-C to stop the demo")

        # The command the demo printed, as the operator would paste it.
        approved = subprocess.run(
            [sys.executable, "-m", "app.cli", "approve", deployment], capture_output=True,
            text=True, timeout=60, env=_env(CONVEYOR_URL=url, CONVEYOR_API_TOKEN=given))
        assert approved.returncode == 0, approved.stderr
        out.expect(r"^==> production: deployment 2 of \w+ succeeded: release (\S+) is live")
        assert requests.get(production, timeout=5).text.startswith(
            "Hello from production: release ")

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:  # a failed test: let the demo stop what it started
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    with pytest.raises(requests.ConnectionError):
        requests.get(production, timeout=5)
    assert not folder.exists()
    assert list((tmp_path / "tmp").iterdir()) == []
