"""An incremental deployment against a full one: 200 MB in 7,500 files, one file changed,
10 sshd hosts on loopback.

In one run, in turns, `--runs` times each (medians printed):
  (full)         a Conveyor deployment of the first artifact to 10 hosts that hold nothing
                 (`workers.deploy.run`, the RQ job's own code: the whole artifact to each);
  (incremental)  then of the second artifact (one file changed) to the same hosts: each
                 says which files it lacks, gets those and assembles the release from the
                 previous one.
Then once, on one more host reached through a counting proxy, the bytes each kind sends
(everything on the wire: SSH, scripts, the list of files, the files).
Targets: incremental / full <= 0.15; <= 2 MB sent per host. Not part of the test run:

    python bench/incremental.py [--runs 3] [--size-mb 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import workers
from app import pipeline
from app.context import Context
from app.models import Build, Deployment
from tests.support.proxy import TcpProxy
from tests.support.services import redis_url_for_run, release_redis
from tests.support.sshd import SshFleet, start_fleet
from workers import build, deploy

SHAS = ("1" * 40, "2" * 40)
PIPELINE = """\
ssh: {{key: {key}, known_hosts: {known_hosts}, connect_timeout: 10s, command_timeout: 5m}}
projects:
  bench:
    provider: github
    repo: acme/bench
    webhook_secret: not-used-here
    build: {{commands: ["true"], artifact: dist}}
    environments:
      ten:
        branches: [main]
        hosts: [{ten}]
        path: {path}
        keep_releases: 3
        parallel: 10
      counted:
        branches: [main]
        hosts: [{counted}]
        path: {path}
        keep_releases: 3
"""


def _bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).parent /
                                                  f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="conveyor-bench-incremental-", dir="/dev/shm"))
    redis_url = redis_url_for_run()
    fleet = start_fleet(base / "fleet", 11)
    proxy = TcpProxy(("127.0.0.1", fleet.hosts[10].port))
    proxy.start()
    try:
        artifacts, files = make_artifacts(base, args.size_mb)
        ctx = make_context(base, fleet, redis_url, proxy)
        builds = [register_build(ctx, sha, artifact) for sha, artifact in zip(SHAS, artifacts,
                                                                               strict=True)]
        size = artifacts[0].size
        print(f"artifact: {args.size_mb} MB in {files} files, {size / 1e6:.1f} MB packed;"
              f" one file changed; 10 hosts: sshd on 127.0.0.1, files on tmpfs;"
              f" {args.runs} run(s) each, medians")
        times: dict[str, list[float]] = {"full": [], "incremental": []}
        for _ in range(args.runs):
            clean(fleet)
            times["full"].append(timed(lambda: run(ctx, "ten", builds[0])))
            times["incremental"].append(timed(lambda: run(ctx, "ten", builds[1])))
        clean(fleet)
        sent = []
        for build_id in builds:
            before = proxy.sent
            run(ctx, "counted", build_id)
            sent.append((proxy.sent - before) / 1e6)
        full, incremental = (statistics.median(times[k]) for k in ("full", "incremental"))
        for name, label in (("full", "(b)  full deployment, 10 hosts"),
                            ("incremental", "(a)  incremental deployment, 10 hosts")):
            runs = ", ".join(f"{t:.2f}" for t in times[name])
            print(f"{label:<44} {statistics.median(times[name]):6.2f} s   (runs {runs})")
        print(f"sent to one host: full {sent[0]:.1f} MB, incremental {sent[1]:.2f} MB"
              f"  (target <= 2 MB)")
        print(f"a/b = {incremental / full:.3f}  (target <= 0.15)")
    finally:
        proxy.cut()
        fleet.stop()
        release_redis(redis_url)
        shutil.rmtree(base, ignore_errors=True)


def make_artifacts(base: Path, size_mb: int) -> tuple[list[pipeline.Artifact], int]:
    """Two artifacts of the same tree (bench/build.py's), the second with one file changed."""
    workspace = base / "checkout"
    _bench_module("build").make_tree(workspace / "dist", size_mb)
    files = sum(1 for p in (workspace / "dist").rglob("*") if p.is_file())
    first = build.pack(workspace, ("dist",), base / "artifacts", {"time": 1})
    changed = next(p for p in sorted((workspace / "dist").rglob("*.dat")))
    changed.write_bytes(changed.read_bytes() + b"\none more line\n")
    second = build.pack(workspace, ("dist",), base / "artifacts", {"time": 2})
    shutil.rmtree(workspace)
    return [first, second], files


def make_context(base: Path, fleet: SshFleet, redis_url: str, proxy: TcpProxy) -> Context:
    with fleet.known_hosts.open("a") as known:
        known.write(f"[127.0.0.1]:{proxy.port} {fleet.hosts[10].host_key_line()}\n")
    config = base / "conveyor.yml"
    config.write_text(PIPELINE.format(
        key=fleet.client_key, known_hosts=fleet.known_hosts, path=fleet.deploy_path,
        ten=", ".join(h.spec for h in fleet.hosts[:10]), counted=f"root@127.0.0.1:{proxy.port}"))
    os.environ.update({"CONVEYOR_CONFIG": str(config), "CONVEYOR_DATA_DIR": str(base / "data"),
                       "DATABASE_URL": f"sqlite:///{base / 'data' / 'conveyor.db'}",
                       "REDIS_URL": redis_url})
    workers.context.cache_clear()
    ctx = workers.context()  # the job's own context, as an RQ worker makes it
    ctx.db.migrate()
    return ctx


def register_build(ctx: Context, sha: str, artifact: pipeline.Artifact) -> int:
    """A succeeded build of `sha` holding `artifact` (as the build job leaves one)."""
    with ctx.db.session() as session:
        row = Build(project="bench", sha=sha, ref="refs/heads/main", repository="acme/bench",
                    clone_url="", settings_hash=sha, state="succeeded",
                    artifact_path=artifact.path, artifact_sha256=artifact.sha256,
                    artifact_size=artifact.size)
        session.add(row)
        session.flush()
        return row.id


def run(ctx: Context, environment: str, build_id: int) -> None:
    """Deploy the build to the environment by hand, as `workers.deploy.run` does for RQ."""
    project = ctx.config.projects["bench"]
    with ctx.db.session() as session:
        row = session.get(Build, build_id)
    deployment = pipeline.create_manual_deployment(ctx, project, project.environments[environment],
                                                   row, sha=row.sha, ref="refs/heads/main")
    deploy.run(deployment.id)
    with ctx.db.session() as session:
        done = session.get(Deployment, deployment.id)
        assert done is not None and done.state == "succeeded", done and done.error
        if os.environ.get("BENCH_PROFILE"):
            timings = [h.timings or {} for h in done.hosts]
            steps = sorted({step for timing in timings for step in timing})
            print(f"  {environment} {build_id}: " + ", ".join(
                f"{step} {statistics.median(t.get(step, 0) for t in timings):.3f}"
                for step in steps))


def clean(fleet: SshFleet) -> None:
    for host in fleet.hosts:
        for entry in host.root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
