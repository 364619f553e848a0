"""Webhook intake under load: Conveyor's `/hooks/github` against a minimal intake.

Both are served by gunicorn the way the Procfile does (`conveyor web`: gthread, 2 workers x 4
threads, access log on), on PostgreSQL and a Redis server of the benchmark's own. `wrk`
(Debian's package) drives signed GitHub pushes at 32 connections; every request Conveyor gets
is new work (its own delivery id and after-sha), so each one makes a build and a deployment,
queues the job that queues them and their statuses, and records the delivery. The baseline
(bench/minimal_intake.py) checks the HMAC, parses the JSON and enqueues one RQ job. Both run
in turns, in the same process group; the medians, their ratio and the target (ratio >= 0.5,
p99 <= 50 ms) are printed. The machine is shared: compare only figures of one run.
Not part of the test run:

    python bench/intake.py [--seconds 10] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from app.cli.processes import gunicorn_argv as _gunicorn_argv  # noqa: E402
from tests.support.services import free_port, postgres_database, wait_for_http  # noqa: E402

SECRET = "bench-webhook-secret"
THREADS = 2  # wrk threads: the load generator shares the machine's two cores
PIPELINE = """\
server: {public_url: "https://deploy.example.com"}
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${WEBHOOK_SECRET}
    status: {api_url: "https://api.github.invalid", token: "bench-status-token"}
    build: {commands: ["make"], artifact: dist}
    environments:
      staging: {branches: [main], hosts: [deploy@10.0.0.11], path: /srv/shop}
"""
# Each wrk thread reads its own file of ready-made requests: "<delivery> <length>\n<body>".
LUA = """\
local counter = 0
local threads = {}
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end
function init(args)
  file = io.open(args[1] .. "-" .. id .. ".req", "rb")
  wrapped = 0
end
function request()
  local line = file:read("*l")
  if line == nil then
    file:seek("set", 0)
    wrapped = wrapped + 1
    line = file:read("*l")
  end
  local delivery, signature, length = line:match("(%S+) (%S+) (%d+)")
  local body = file:read(tonumber(length))
  file:read(1)
  local headers = {["Content-Type"] = "application/json", ["X-GitHub-Event"] = "push",
                   ["X-GitHub-Delivery"] = delivery, ["User-Agent"] = "GitHub-Hookshot/bench",
                   ["X-Hub-Signature-256"] = "sha256=" .. signature}
  return wrk.format("POST", "/hooks/github", headers, body)
end
function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(threads) do wraps = wraps + (thread:get("wrapped") or 0) end
  io.write(string.format("RESULT %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    wraps))
end
"""


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int
    wrapped: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    base = Path(tempfile.mkdtemp(prefix="conveyor-bench-intake-", dir="/dev/shm"))
    template = (ROOT / "tests/fixtures/github/push-branch-updated.json").read_text()
    try:
        with redis_server(base) as redis_url, postgres_database() as database_url:
            env = environment(base, redis_url, database_url)
            (base / "wrk.lua").write_text(LUA)
            baseline_files = write_requests(base / "baseline", template, "b", 30_000)
            with serve(base, "conveyor", conveyor_argv, env) as conveyor_url, \
                    serve(base, "baseline", baseline_argv, env) as baseline_url:
                measure(base, baseline_url, baseline_files, 2)  # warm up both
                measure(base, conveyor_url, write_requests(base / "warm", template, "w", 3000), 2)
                conveyor, baseline = [], []
                for n in range(args.rounds):
                    files = write_requests(base / f"conveyor{n}", template, f"r{n}", 60_000)
                    conveyor.append(measure(base, conveyor_url, files, args.seconds,
                                            args.connections))
                    baseline.append(measure(base, baseline_url, baseline_files, args.seconds,
                                            args.connections))
                done = count_done(database_url)
        report(conveyor, baseline, done, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def environment(base: Path, redis_url: str, database_url: str) -> dict[str, str]:
    (base / "conveyor.yml").write_text(PIPELINE)
    return {**os.environ, "CONVEYOR_CONFIG": str(base / "conveyor.yml"),
            "CONVEYOR_DATA_DIR": str(base / "data"), "DATABASE_URL": database_url,
            "REDIS_URL": redis_url, "WEBHOOK_SECRET": SECRET, "PYTHONPATH": str(ROOT)}


def conveyor_argv(bind: str) -> list[str]:
    """`conveyor web` as the Procfile runs it (migrations first, then gunicorn)."""
    return [sys.executable, "-m", "app.cli", "web", "--bind", bind]


def baseline_argv(bind: str) -> list[str]:
    argv = _gunicorn_argv(bind, 2)
    return [*argv[:-1], "bench.minimal_intake:create_app()"]


@contextmanager
def serve(base: Path, name: str, argv, env: dict[str, str]) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Run one of the two servers on a free port until the block ends."""
    port = free_port()
    with open(base / f"{name}.log", "wb") as log:
        process = subprocess.Popen(argv(f"127.0.0.1:{port}"), env=env, cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@contextmanager
def redis_server(base: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(base)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if "Ready to accept connections" in line:
            break
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=30)


def write_requests(prefix: Path, template: str, tag: str, count: int) -> Path:
    """`count` signed pushes, each a new delivery of a new commit, split over wrk's threads."""
    payload = json.loads(template)
    payload.update(ref="refs/heads/main", before="1" * 40, after="@AFTER@")
    payload["repository"].update(full_name="acme/shop", name="shop",
                                 clone_url="https://example.invalid/shop.git")
    payload["head_commit"]["id"] = "@AFTER@"
    head, tail = json.dumps(payload).encode().split(b"@AFTER@", 1)
    middle, end = tail.split(b"@AFTER@", 1)
    key = SECRET.encode()
    for thread in range(1, THREADS + 1):
        with open(f"{prefix}-{thread}.req", "wb") as out:
            for n in range(thread - 1, count, THREADS):
                after = hashlib.sha256(f"{tag}-{n}".encode()).hexdigest()[:40].encode()
                body = head + after + middle + after + end
                signature = hmac.new(key, body, hashlib.sha256).hexdigest()
                out.write(f"{tag}-{n} {signature} {len(body)}\n".encode() + body + b"\n")
    return prefix


def measure(base: Path, url: str, files: Path, seconds: int, connections: int = 32) -> Result:
    output = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(base / "wrk.lua"), f"{url}/hooks/github", "--", str(files)],
        capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    requests, duration_us, p50, p99, status_errors, socket_errors, wrapped = map(
        int, line.split()[1:])
    return Result(rps=requests / (duration_us / 1e6), p50_ms=p50 / 1000, p99_ms=p99 / 1000,
                  requests=requests, bad=status_errors + socket_errors, wrapped=wrapped)


def count_done(database_url: str) -> dict[int, int]:
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status_code, count(*) FROM deliveries GROUP BY 1").fetchall()
    return dict(rows)


def report(conveyor: list[Result], baseline: list[Result], done: dict[int, int],
           args: argparse.Namespace) -> None:
    def line(name: str, results: list[Result]) -> str:
        runs = ", ".join(f"{r.rps:.0f}" for r in results)
        return (f"{name:<22} {statistics.median(r.rps for r in results):7.0f} req/s   "
                f"p50 {statistics.median(r.p50_ms for r in results):5.1f} ms   "
                f"p99 {statistics.median(r.p99_ms for r in results):5.1f} ms   (runs: {runs})")

    print(f"wrk -t{THREADS} -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, "
          "signed GitHub pushes of 8.5 KB; gunicorn gthread 2 workers x 4 threads; PostgreSQL")
    print(line("(a) conveyor", conveyor))
    print(line("(b) minimal intake", baseline))
    ratio = statistics.median(r.rps for r in conveyor) / statistics.median(r.rps for r in baseline)
    p99 = statistics.median(r.p99_ms for r in conveyor)
    print(f"ratio a/b: {ratio:.2f} (target >= 0.5); conveyor p99 {p99:.1f} ms (target <= 50 ms)"
          f": {'met' if ratio >= 0.5 and p99 <= 50 else 'MISSED'}")
    bad = sum(r.bad for r in conveyor + baseline)
    wrapped = sum(r.wrapped for r in conveyor)
    print(f"answers recorded by conveyor: {done}; non-2xx or socket errors: {bad}"
          + (f"; WARNING: conveyor's request files wrapped {wrapped} times" if wrapped else ""))


if __name__ == "__main__":
    main()
