"""Deploy a 20 MB artifact to sshd hosts on loopback with Conveyor and with OpenSSH by hand.

In one run, in turns, `--runs` times each (medians printed):
  (a)  a Conveyor deployment to 10 hosts: `workers.deploy.run`, the RQ job's own code, with a
       real context (SQLite on tmpfs, this run's Redis), from job start to return (all
       hosts live, old releases pruned); also to 1 and to 20 hosts, and again to 10 hosts
       that already hold the artifact (a redeploy);
  (b)  the best hand-written OpenSSH baseline: one `ssh host 'cat > a && tar -xzf a -C r &&
       ln -sfn ...' < artifact` per host, all in parallel;
  (c)  a sequential bash loop of `scp` + `ssh` per host;
and a 200 MB upload to one host: `SshTransport.put` against `scp` of the same file.
Targets: a/b <= 1.2; upload >= 1.1 x scp; 20 hosts <= 2.2 x 1 host; redeploy <= 0.3 x (a).
(b) runs on 1 and 20 hosts as well: on loopback every host shares this machine's cores, so
the 20/1 ratio of the hand-written baseline shows what the machine itself allows.
Hosts are real sshd processes (tests/support/sshd.py), their files on tmpfs. Not part of
the test run:

    python bench/deploy.py [--runs 3] [--artifact-mb 20] [--upload-mb 200] [--profile] [--unpaced]

`--unpaced` also times (a) with the transport's pacing off (a channel's input fills the
host's whole window, as before it was paced), in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import workers
from app import pipeline
from app.context import Context
from app.models import Deployment
from tests.support.services import redis_url_for_run, release_redis
from tests.support.sshd import SshFleet, SshHost, start_fleet
from workers import build, deploy, transport

SHA = "5eed" + "0" * 36
CIPHER = "aes128-gcm@openssh.com"
ENVIRONMENTS = {"one": 1, "ten": 10, "twenty": 20}
PIPELINE = """\
ssh: {{key: {key}, known_hosts: {known_hosts}, connect_timeout: 10s, command_timeout: 5m}}
projects:
  bench:
    provider: github
    repo: acme/bench
    webhook_secret: not-used-here
    build: {{commands: ["true"], artifact: dist}}
    environments:
{environments}
"""
ENVIRONMENT = """\
      {name}:
        branches: [main]
        hosts: [{hosts}]
        path: {path}
        keep_releases: 3
        parallel: 20
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--artifact-mb", type=int, default=20)
    parser.add_argument("--upload-mb", type=int, default=200)
    parser.add_argument("--unpaced", action="store_true",
                        help="also time (a) with the transport's pacing off")
    parser.add_argument("--profile", action="store_true",
                        help="print each step's median time per host in (a)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="conveyor-bench-deploy-", dir="/dev/shm"))
    redis_url = redis_url_for_run()
    fleet = start_fleet(base / "fleet", max(ENVIRONMENTS.values()))
    try:
        Bench(base, fleet, redis_url, args).run()
    finally:
        fleet.stop()
        release_redis(redis_url)
        shutil.rmtree(base, ignore_errors=True)


class Bench:
    def __init__(self, base: Path, fleet: SshFleet, redis_url: str,
                 args: argparse.Namespace) -> None:
        self.base, self.fleet, self.args = base, fleet, args
        self.artifact = make_artifact(base, args.artifact_mb)
        self.ctx = make_context(base, fleet, redis_url)
        self.build_id = register_build(self.ctx, self.artifact)
        self.times: dict[str, list[float]] = {}
        self.timings: list[dict[str, float]] = []

    def run(self) -> None:
        size = Path(self.artifact.path).stat().st_size
        print(f"artifact: {size / 1e6:.1f} MB; hosts: sshd on 127.0.0.1, files on tmpfs; "
              f"{self.args.runs} run(s) each, medians")
        ten = self.fleet.hosts[:10]
        for _ in range(self.args.runs):
            self.clean()
            self.measure("b", lambda: openssh_parallel(self.fleet, ten, Path(self.artifact.path)))
            self.clean()
            self.measure("c", lambda: openssh_loop(self.fleet, ten, Path(self.artifact.path)))
            self.clean()
            self.measure("a", lambda: self.conveyor("ten", profile=True))
            self.measure("a redeploy", lambda: self.conveyor("ten"))
            if self.args.unpaced:
                self.clean()
                self.measure("a unpaced", lambda: unpaced(lambda: self.conveyor("ten")))
            self.clean()
            self.measure("a 1 host", lambda: self.conveyor("one"))
            self.clean()
            self.measure("a 20 hosts", lambda: self.conveyor("twenty"))
            self.clean()
            self.measure("b 1 host", lambda: openssh_parallel(self.fleet, self.fleet.hosts[:1],
                                                              Path(self.artifact.path)))
            self.clean()
            self.measure("b 20 hosts", lambda: openssh_parallel(self.fleet, self.fleet.hosts,
                                                                Path(self.artifact.path)))
        self.clean()
        self.upload()
        self.report()

    def measure(self, name: str, action: Callable[[], None]) -> None:
        started = time.perf_counter()
        action()
        self.times.setdefault(name, []).append(time.perf_counter() - started)

    def conveyor(self, environment: str, profile: bool = False) -> None:
        deployment = pipeline.create_manual_deployment(
            self.ctx, self.ctx.config.projects["bench"],
            self.ctx.config.projects["bench"].environments[environment],
            build_of(self.ctx, self.build_id), sha=SHA, ref="refs/heads/main")
        deploy.run(deployment.id)
        with self.ctx.db.session() as session:
            done = session.get(Deployment, deployment.id)
            assert done is not None and done.state == "succeeded", done and done.error
            if profile:
                self.timings += [dict(h.timings or {}) for h in done.hosts]

    def clean(self) -> None:
        for host in self.fleet.hosts:
            for entry in host.root.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def upload(self) -> None:
        big = self.base / "big.bin"
        with big.open("wb") as out:
            for _ in range(self.args.upload_mb):
                out.write(random.randbytes(1024 * 1024))
        host = self.fleet.hosts[0]
        for _ in range(self.args.runs):
            self.measure("scp", lambda: scp(self.fleet, host, big, f"{host.root}/scp.bin"))
            self.measure("scp gcm", lambda: scp(self.fleet, host, big, f"{host.root}/gcm.bin",
                                                "-c", CIPHER))
            self.measure("put", lambda: put(self.fleet, host, big, f"{host.root}/put.bin"))
            self.clean()
        big.unlink()

    def report(self) -> None:
        med = {name: statistics.median(values) for name, values in self.times.items()}

        def line(name: str, label: str) -> None:
            runs = ", ".join(f"{t:.2f}" for t in self.times[name])
            print(f"{label:<52} {med[name]:6.2f} s   (runs {runs})")

        line("a", "(a)  Conveyor, 10 hosts")
        if self.args.unpaced:
            line("a unpaced", "(a)  Conveyor, 10 hosts, pacing off")
        line("b", "(b)  OpenSSH, one ssh per host, in parallel")
        line("c", "(c)  OpenSSH, sequential bash loop of scp + ssh")
        line("a 1 host", "(a)  Conveyor, 1 host")
        line("a 20 hosts", "(a)  Conveyor, 20 hosts")
        line("a redeploy", "(a)  Conveyor, 10 hosts that hold the artifact")
        line("b 1 host", "(b)  OpenSSH, 1 host")
        line("b 20 hosts", "(b)  OpenSSH, 20 hosts in parallel")
        megabytes = self.args.upload_mb * 1024 * 1024 / 1e6
        for name, label in (("put", "upload, SshTransport.put"), ("scp", "upload, scp"),
                            ("scp gcm", f"upload, scp -c {CIPHER}")):
            line(name, f"{label} ({megabytes / med[name]:.0f} MB/s)")
        print(f"a/b = {med['a'] / med['b']:.2f}  (target <= 1.2)")
        if self.args.unpaced:
            print(f"a unpaced/b = {med['a unpaced'] / med['b']:.2f}")
        print(f"a/c = {med['a'] / med['c']:.2f}")
        print(f"20 hosts / 1 host = {med['a 20 hosts'] / med['a 1 host']:.2f}  (target <= 2.2;"
              f" OpenSSH by hand: {med['b 20 hosts'] / med['b 1 host']:.2f})")
        print(f"redeploy / first = {med['a redeploy'] / med['a']:.2f}  (target <= 0.3)")
        print(f"upload put / scp = {med['scp'] / med['put']:.2f} x the speed  (target >= 1.1); "
              f"against scp -c {CIPHER}: {med['scp gcm'] / med['put']:.2f}")
        if self.args.profile:
            steps = sorted({step for timing in self.timings for step in timing})
            print("(a) per host, median seconds: " + ", ".join(
                f"{step} {statistics.median(t.get(step, 0) for t in self.timings):.3f}"
                for step in steps))


# --- the artifact and Conveyor's side ----------------------------------------------------------


def make_artifact(base: Path, megabytes: int) -> pipeline.Artifact:
    """A release like a Python service's: wheels (compressed already) and source text,
    packed by the build job's own `pack`, about `megabytes` MB once compressed."""
    rng = random.Random(7)
    workspace = base / "workspace"
    dist = workspace / "dist"
    (dist / "wheels").mkdir(parents=True)
    words = [f"name{n}" for n in range(3000)] + ["def", "return", "self", "import", "(", ")"]
    binary = int(megabytes * 0.8 * 1e6)
    for n in range(8):
        (dist / "wheels" / f"package{n}-1.0-py3-none-any.whl").write_bytes(
            rng.randbytes(binary // 8))
    for n in range(200):  # ~3.5 MB compressed from ~11 MB of text
        folder = dist / "app" / f"module{n % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        text = " ".join(rng.choices(words, k=8000))
        (folder / f"file{n}.py").write_text(text)
    return build.pack(workspace, ("dist",), base / "artifacts", {"time": 0})


def make_context(base: Path, fleet: SshFleet, redis_url: str,
                 environments: str | None = None) -> Context:
    """The deploy job's own context on a pipeline file of the bench project, whose
    `environments` (YAML text) default to one, ten and twenty of the fleet's hosts."""
    environments = environments or "".join(
        ENVIRONMENT.format(name=name, path=fleet.deploy_path,
                           hosts=", ".join(h.spec for h in fleet.hosts[:count]))
        for name, count in ENVIRONMENTS.items())
    config = base / "conveyor.yml"
    config.write_text(PIPELINE.format(key=fleet.client_key, known_hosts=fleet.known_hosts,
                                      environments=environments))
    os.environ.update({"CONVEYOR_CONFIG": str(config), "CONVEYOR_DATA_DIR": str(base / "data"),
                       "DATABASE_URL": f"sqlite:///{base / 'data' / 'conveyor.db'}",
                       "REDIS_URL": redis_url})
    workers.context.cache_clear()
    ctx = workers.context()  # the job's own context, as an RQ worker makes it
    ctx.db.migrate()
    return ctx


def register_build(ctx: Context, artifact: pipeline.Artifact, sha: str = SHA) -> int:
    """A succeeded build of `sha` whose artifact is `artifact`; its id."""
    project = ctx.config.projects["bench"]
    from app.pipeline.builds import find_or_create_build

    found, _new = find_or_create_build(ctx, project, sha=sha, ref="refs/heads/main",
                                       repository="acme/bench",
                                       clone_url="https://github.com/acme/bench.git")
    pipeline.start_build(ctx, found.id)
    pipeline.finish_build(ctx, found.id, artifact=artifact)
    return found.id


def build_of(ctx: Context, build_id: int):  # type: ignore[no-untyped-def]
    from app.models import Build

    with ctx.db.session() as session:
        return session.get(Build, build_id)


# --- OpenSSH by hand ---------------------------------------------------------------------------


def ssh_argv(fleet: SshFleet, host: SshHost, command: str) -> list[str]:
    return ["ssh", *ssh_options(fleet), "-p", str(host.port), "root@127.0.0.1", command]


def ssh_options(fleet: SshFleet) -> list[str]:
    return ["-F", "/dev/null", "-i", str(fleet.client_key), "-c", CIPHER,
            "-o", f"UserKnownHostsFile={fleet.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]


def unpack_command(path: Path, archive: str) -> str:
    """Unpack `archive` into releases/r1 under `path` and point `current` at it."""
    release = f"{path}/releases/r1"
    return (f"mkdir -p {release} && tar -xzf {archive} -C {release}"
            f" && ln -sfn releases/r1 {path}/current")


def openssh_parallel(fleet: SshFleet, hosts: list[SshHost], artifact: Path) -> None:
    path = fleet.deploy_path
    command = f"cat > {path}/a.tar.gz && " + unpack_command(path, f"{path}/a.tar.gz")
    processes = []
    for host in hosts:
        with artifact.open("rb") as source:
            processes.append(subprocess.Popen(ssh_argv(fleet, host, command), stdin=source))
    for process in processes:
        assert process.wait() == 0


def openssh_loop(fleet: SshFleet, hosts: list[SshHost], artifact: Path) -> None:
    path = fleet.deploy_path
    options = " ".join(map(shlex.quote, ssh_options(fleet)))
    ports = " ".join(str(h.port) for h in hosts)
    unpack = shlex.quote(unpack_command(path, f"{path}/a.tar.gz"))
    script = (f"set -e; for port in {ports}; do"
              f" scp -q {options} -P $port {shlex.quote(str(artifact))}"
              f" root@127.0.0.1:{path}/a.tar.gz;"
              f" ssh {options} -p $port root@127.0.0.1 {unpack}; done")
    subprocess.run(["bash", "-c", script], check=True)


def unpaced(action: Callable[[], None]) -> None:
    """Run `action` with the transport's allowance in flight raised past any window."""
    allowance = transport._allowance
    transport._allowance = lambda sock: 1 << 40
    try:
        action()
    finally:
        transport._allowance = allowance


def scp(fleet: SshFleet, host: SshHost, local: Path, remote: str, *extra: str) -> None:
    options = [o for o in ssh_options(fleet) if o not in ("-c", CIPHER)]
    subprocess.run(["scp", "-q", *options, *extra, "-P", str(host.port), str(local),
                    f"root@127.0.0.1:{remote}"], check=True)


def put(fleet: SshFleet, host: SshHost, local: Path, remote: str) -> None:
    with transport.connect(transport.HostSpec.parse(host.spec), key_path=fleet.client_key,
                           known_hosts=fleet.known_hosts, connect_timeout=10) as link:
        link.put(local, remote, timeout=300)


if __name__ == "__main__":
    main()
