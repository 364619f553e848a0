"""Conveyor, Capistrano 3 and a hand-written OpenSSH fan-out deploying one app to the same hosts.

The app is the one of ../shared/peers (see bench/peers/PROVENANCE.md): 18 MB of random bytes,
400 stdlib `.py` files and a README, committed to a local git repository. Per host count
(1, 10, 20 by default), after warm-ups, `--rounds` rounds, the order of the three turning
each round; every round first makes a new (empty) commit, and each deploys it:
  capistrano  `cap bench deploy`, stock Capistrano 3 (Debian's `capistrano` package) with its
              git strategy: every host keeps a mirror of the repository, fetches, and
              `git archive | tar -x` into a new release; the whole `cap` process is timed;
  conveyor    a deployment of the commit's build (its artifact packed by the build job's own
              `pack`, untimed) by `workers.deploy.run`, the RQ job's code, to hosts that hold
              the previous release, from job start to return (as bench/deploy.py);
  openssh     one `ssh host 'mkdir -p R && cat > a.tgz && tar -xzf a.tgz -C R && ln -sfn ...'
              < app.tgz` per host, all in parallel (aes128-gcm, as bench/deploy.py's (b)).
Hosts are real sshd processes on loopback (tests/support/sshd.py), each seeing its own tmpfs
folder at one deploy path, as separate machines would. Medians and the ratio lines are
printed. Not part of the test run; needs `apt-get install capistrano` (Ruby, net-ssh, sshkit):

    python bench/peers.py [--rounds 5] [--hosts 1 10 20] [--nodelay]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.context import Context
from app.models import Deployment
from tests.support.services import redis_url_for_run, release_redis
from tests.support.sshd import SshFleet, start_fleet
from workers import build, deploy, mirrors

HERE = Path(__file__).resolve().parent
KEEP_RELEASES = 3
ENVIRONMENT = """\
      h{count}:
        branches: [main]
        hosts: [{hosts}]
        path: {path}/conveyor
        keep_releases: {keep}
        parallel: 20
"""
GIT_ID = ["-c", "user.name=peers", "-c", "user.email=peers@localhost"]


def _load_deploy_bench():  # type: ignore[no-untyped-def]
    """bench/deploy.py, whose context, build and OpenSSH helpers this bench shares."""
    spec = importlib.util.spec_from_file_location("bench_deploy", HERE / "deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_deploy = _load_deploy_bench()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--profile", action="store_true",
                        help="print each step's median time per host of Conveyor's deployments")
    parser.add_argument("--nodelay", action="store_true",
                        help="also time Capistrano with TCP_NODELAY on net-ssh's socket"
                             " (not stock)")
    args = parser.parse_args()
    if shutil.which("cap") is None:
        sys.exit("peers: Capistrano is missing: apt-get install capistrano")
    base = Path(tempfile.mkdtemp(prefix="conveyor-bench-peers-", dir="/dev/shm"))
    redis_url = redis_url_for_run()
    fleet = start_fleet(base / "fleet", max(args.hosts))
    try:
        Peers(base, fleet, redis_url, args).run()
    finally:
        fleet.stop()
        release_redis(redis_url)
        shutil.rmtree(base, ignore_errors=True)


class Peers:
    def __init__(self, base: Path, fleet: SshFleet, redis_url: str,
                 args: argparse.Namespace) -> None:
        self.base, self.fleet, self.args = base, fleet, args
        self.tree = make_tree(base / "tree")
        self.origin = make_origin(base / "origin.git", self.tree)
        self.tgz = base / "app.tgz"
        with self.tgz.open("wb") as out:
            archive = subprocess.Popen(["git", "--git-dir", str(self.origin), "archive",
                                        "--format=tar", "master"], stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-6"], stdin=archive.stdout, stdout=out, check=True)
            assert archive.wait() == 0
        self.files = sum(1 for p in self.tree.rglob("*") if p.is_file())
        self.cap = base / "cap"
        shutil.copytree(HERE / "peers" / "cap", self.cap)
        environments = "".join(
            ENVIRONMENT.format(count=n, path=fleet.deploy_path, keep=KEEP_RELEASES,
                               hosts=", ".join(h.spec for h in fleet.hosts[:n]))
            for n in args.hosts)
        self.ctx: Context = bench_deploy.make_context(base, fleet, redis_url, environments)
        self.times: dict[tuple[str, int], list[float]] = {}
        self.timings: dict[int, list[dict[str, float]]] = {}
        self.sha = ""
        self.build_id = 0

    def run(self) -> None:
        print(f"app: {self.files} files, {self.tgz.stat().st_size / 1e6:.1f} MB as .tar.gz;"
              f" hosts: sshd on 127.0.0.1, files on tmpfs; {self.args.rounds} round(s),"
              f" medians; load at start {_load()}")
        print(f"{_version(['cap', '--version'])}; {_version(['ruby', '--version'])}")
        for count in self.args.hosts:
            contenders = self.contenders(count)
            self.commit()  # warm-up: Capistrano's first deploy clones a mirror on every host
            for _name, action in contenders:
                action()
            self.commit()
            self.capistrano(count)
            for round_number in range(self.args.rounds):
                self.commit()
                turn = round_number % len(contenders)
                for name, action in contenders[turn:] + contenders[:turn]:
                    started = time.perf_counter()
                    action()
                    self.times.setdefault((name, count), []).append(
                        time.perf_counter() - started)
                    self.check(name, count)
            print(f"{count} host(s) done; load {_load()}", flush=True)
        self.report()

    def contenders(self, count: int) -> list[tuple[str, Callable[[], None]]]:
        found: list[tuple[str, Callable[[], None]]] = [
            ("capistrano", lambda: self.capistrano(count)),
            ("conveyor", lambda: self.conveyor(count)),
            ("openssh", lambda: self.openssh(count)),
        ]
        if self.args.nodelay:
            found.append(("capistrano nodelay", lambda: self.capistrano(count, nodelay=True)))
        return found

    # -- a new commit, and each contender deploying it --------------------------------------

    def commit(self) -> None:
        """A new empty commit on master, and Conveyor's build of it."""
        git = ["git", "--git-dir", str(self.origin)]
        tree = _out([*git, "rev-parse", "master^{tree}"])
        parent = _out([*git, "rev-parse", "master"])
        self.sha = _out([*git, *GIT_ID, "commit-tree", tree, "-p", parent, "-m", "round"])
        _out([*git, "update-ref", "refs/heads/master", self.sha, parent])
        # The commit's build, untimed: its artifact (the manifest names the commit, so each
        # differs), packed by the build job's own code. Older ones go: the hosts hold theirs.
        for old in (self.base / "artifacts").glob("*.tar.gz"):
            old.unlink()
        artifact = build.pack(self.tree, ("app", "README"), self.base / "artifacts",
                              {"time": 0, "sha": self.sha})
        self.build_id = bench_deploy.register_build(self.ctx, artifact, self.sha)
        # The build job fetches its commit into this machine's mirror, where the deploy job
        # reads which commit descends from which.
        mirrors.update(self.ctx.settings.data_dir, "bench", str(self.origin), lambda _line: None,
                       shas=[self.sha], allow_file=True)
        time.sleep(1.0)  # Capistrano names its releases by the second

    def capistrano(self, count: int, nodelay: bool = False) -> None:
        hosts = self.fleet.hosts[:count]
        env = {**os.environ, "PEERS_REPO_URL": f"file://{self.origin}",
               "PEERS_DEPLOY_TO": f"{self.fleet.deploy_path}/cap",
               "PEERS_CLIENT_KEY": str(self.fleet.client_key),
               "PEERS_KNOWN_HOSTS": str(self.fleet.known_hosts),
               "PEERS_PORTS": " ".join(str(h.port) for h in hosts),
               "PEERS_KEEP_RELEASES": str(KEEP_RELEASES),
               "PEERS_NODELAY": "1" if nodelay else "0"}
        done = subprocess.run(["cap", "bench", "deploy"], cwd=self.cap, env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"cap bench deploy failed:\n{done.stdout[-3000:]}"
                             f"{done.stderr[-3000:]}")

    def conveyor(self, count: int) -> None:
        project = self.ctx.config.projects["bench"]
        from app import pipeline

        deployment = pipeline.create_manual_deployment(
            self.ctx, project, project.environments[f"h{count}"],
            bench_deploy.build_of(self.ctx, self.build_id), sha=self.sha, ref="refs/heads/main")
        deploy.run(deployment.id)
        with self.ctx.db.session() as session:
            done = session.get(Deployment, deployment.id)
            assert done is not None and done.state == "succeeded", done and done.error
            self.timings.setdefault(count, []).extend(dict(h.timings or {}) for h in done.hosts)

    def openssh(self, count: int) -> None:
        path = f"{self.fleet.deploy_path}/openssh"
        release = f"{path}/releases/{self.sha[:12]}"
        command = (f"mkdir -p {release} && cat > {path}/a.tgz && tar -xzf {path}/a.tgz"
                   f" -C {release} && ln -sfn releases/{self.sha[:12]} {path}/current")
        processes = []
        for host in self.fleet.hosts[:count]:
            with self.tgz.open("rb") as source:
                processes.append(subprocess.Popen(
                    bench_deploy.ssh_argv(self.fleet, host, command), stdin=source))
        for process in processes:
            assert process.wait() == 0

    def check(self, name: str, count: int) -> None:
        """Every host runs the new commit: `current` of the contender holds all the files."""
        folder = {"conveyor": "conveyor", "openssh": "openssh"}.get(name, "cap")
        for host in self.fleet.hosts[:count]:
            link = host.root / folder / "current"
            target = Path(os.readlink(link))  # as the host sees it: map it to host.root
            if target.is_absolute():
                target = host.root / target.relative_to(self.fleet.deploy_path)
            release = link.parent / target
            files = sum(1 for p in release.rglob("*") if p.is_file())
            assert files >= self.files, f"{name} on {host.name}: {files} files in {release}"
            if folder == "cap":
                assert (release / "REVISION").read_text().strip() == self.sha
            if folder == "openssh":  # older releases go, untimed (the others prune themselves)
                for old in (host.root / "openssh" / "releases").iterdir():
                    if old.name != self.sha[:12]:
                        shutil.rmtree(old)

    def report(self) -> None:
        med = {key: statistics.median(values) for key, values in self.times.items()}
        names = sorted({name for name, _count in med}, key=["conveyor", "capistrano",
                                                             "openssh",
                                                             "capistrano nodelay"].index)
        for count in self.args.hosts:
            for name in names:
                runs = ", ".join(f"{t:.2f}" for t in self.times[(name, count)])
                print(f"{count:>2} host(s), {name:<20} {med[(name, count)]:6.2f} s   (runs {runs})")
        targets = {1: 0.3}
        for count in self.args.hosts:
            conveyor = med[("conveyor", count)]
            target = targets.get(count, 0.75)
            print(f"ratio conveyor / capistrano: {conveyor / med[('capistrano', count)]:.2f}"
                  f" at {count} host(s)  (target <= {target})")
            print(f"ratio conveyor / openssh: {conveyor / med[('openssh', count)]:.2f}"
                  f" at {count} host(s)")
            print(f"ratio capistrano / openssh: "
                  f"{med[('capistrano', count)] / med[('openssh', count)]:.2f} at {count} host(s)")
        if self.args.profile:
            for count, timings in self.timings.items():
                steps = sorted({step for timing in timings for step in timing})
                print(f"conveyor, {count} host(s), per host, median seconds: " + ", ".join(
                    f"{step} {statistics.median(t.get(step, 0) for t in timings):.3f}"
                    for step in steps))
        print(f"load at end {_load()}")


def make_tree(tree: Path) -> Path:
    """The app of ../shared/peers: 18 MB of random bytes, 400 stdlib .py files, a README."""
    (tree / "app" / "assets").mkdir(parents=True)
    (tree / "app" / "assets" / "payload.bin").write_bytes(random.Random(7).randbytes(18_000_000))
    stdlib = Path(os.__file__).parent
    sources = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size < 40_000)
    sources += sorted(p for p in stdlib.glob("*/*.py") if p.stat().st_size < 40_000)
    for source in sources[:400]:
        target = tree / "app" / "src" / source.relative_to(stdlib)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    (tree / "README").write_text("peers app\n")
    return tree


def make_origin(origin: Path, tree: Path) -> Path:
    """A bare repository whose master holds `tree`, in one commit."""
    git = ["git", "--git-dir", str(origin)]
    _out(["git", "init", "-q", "--bare", "-b", "master", str(origin)])
    env = {**os.environ, "GIT_INDEX_FILE": str(origin / "peers.index")}
    subprocess.run([*git, "--work-tree", str(tree), "add", "-A"], env=env, check=True)
    subprocess.run([*git, *GIT_ID, "--work-tree", str(tree), "commit", "-q", "-m", "app"],
                   env=env, check=True)
    return origin


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def _version(argv: list[str]) -> str:
    return _out(argv).splitlines()[0]


def _load() -> str:
    return " ".join(f"{n:.1f}" for n in os.getloadavg())


if __name__ == "__main__":
    main()
