"""`conveyor demo`: a sample repository, its pipeline, Redis, the web and a worker, then the
push GitHub would send, followed state by state until production is live."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from app.demo import sample
from app.demo.processes import (
    DemoError,
    Processes,
    answers,
    free_port,
    redis_url,
    wait_until,
)
from app.demo.progress import MARK, Item, Progress, awaiting_approval, outcome

ROOT = Path(__file__).parents[2]  # where `app` and `workers` import from, for the children
LAST = "production"
STALL = 300.0  # seconds without a state change before --exit gives up
POLL = 0.2  # seconds between two looks at the API
_OURS = ("REDIS_URL", "DATABASE_URL")  # with every CONVEYOR_*: the demo sets its own


def run(exit_when_live: bool) -> int:
    """Run the demo; with `exit_when_live`, approve production and return 0 once it is live
    (1 if anything failed), else run until Ctrl-C. 2: something to install first."""
    try:
        folder, chosen = _folder()
    except DemoError as exc:
        print(f"conveyor demo: {exc}", file=sys.stderr, flush=True)
        return exc.status
    processes = Processes(folder / "logs")
    status = 1
    previous = _handle_signals(_interrupt, signal.default_int_handler)
    try:
        status = Demo(folder, processes, exit_when_live).run()
    except DemoError as exc:
        print(f"conveyor demo: {exc}", file=sys.stderr, flush=True)
        status = exc.status
    except requests.RequestException as exc:
        print(f"conveyor demo: the web process stopped answering: {exc}", file=sys.stderr,
              flush=True)
    except KeyboardInterrupt:
        print("\nStopping the demo...", flush=True)
        status = 0
    finally:
        _handle_signals(signal.SIG_IGN, signal.SIG_IGN)  # a second Ctrl-C must not stop this
        processes.stop_all()
        _stop_apps(folder)
        if status != 1 and not chosen:  # 1: what failed is worth a look
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"The demo's files (repository, conveyor.yml, releases, logs) stay in {folder}",
                  flush=True)
        _handle_signals(*previous)
    return status


def _handle_signals(term: Any, interrupt: Any) -> tuple[Any, Any]:
    """Set the SIGTERM and SIGINT handlers (SIGINT too: started in the background of a
    script, it comes ignored, and Ctrl-C must stop the demo); the previous ones."""
    try:
        # getsignal's None (a handler not set from Python) is put back as the default.
        return (signal.signal(signal.SIGTERM, term or signal.SIG_DFL),
                signal.signal(signal.SIGINT, interrupt or signal.SIG_DFL))
    except ValueError:  # not the main thread: handlers stay as they are
        return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _folder() -> tuple[Path, bool]:
    """The demo's folder: CONVEYOR_DEMO_DIR (kept), else a new temporary one; and whether
    it was chosen."""
    chosen = os.environ.get("CONVEYOR_DEMO_DIR")
    if not chosen:
        return Path(tempfile.mkdtemp(prefix="conveyor-demo-")).resolve(), False
    folder = Path(chosen).resolve()
    if folder.exists() and any(folder.iterdir()):
        raise DemoError(2, f"CONVEYOR_DEMO_DIR ({folder}) is not empty: name a new or"
                           " empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder, True


def _stop_apps(folder: Path) -> None:
    """Stop the sample app each environment runs (its after_activate hook started it)."""
    for pidfile in folder.glob("hosts/*/hello.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            if _runs_the_app(pid):
                os.kill(pid, signal.SIGTERM)


def _runs_the_app(pid: int) -> bool:
    """Whether `pid` is still the sample app (an app that died may have left its pid to
    another process); without /proc, the pid file is trusted."""
    try:
        return b"hello.app" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc/self").exists()


class Demo:
    """One run of the demo in `folder`."""

    def __init__(self, folder: Path, processes: Processes, exit_when_live: bool) -> None:
        self.folder = folder
        self.processes = processes
        self.exit_when_live = exit_when_live
        self.token = secrets.token_urlsafe(24)
        self.secret = secrets.token_hex(20)
        self.layout = sample.Layout(folder, sys.executable, free_port(),
                                    {"staging": free_port(), LAST: free_port()})
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {self.token}"

    def run(self) -> int:
        say(f"Conveyor demo: everything lives in {self.folder}")
        given = os.environ.get("REDIS_URL")
        redis = redis_url(given, self.processes, self.folder)
        say("Redis: REDIS_URL" if redis == given
            else f"Redis: a redis-server of the demo's own at {redis}")
        if shutil.which("git") is None:
            raise DemoError(2, "the demo needs git: install it (Debian, Ubuntu: apt-get"
                               " install git)")
        before, after = self.make_repository()
        self.write_pipeline()
        env = self.environment(redis)
        self.migrate(env["DATABASE_URL"])
        self.start(env)
        say(f"API token for this run: {self.token}")
        answer = self.push(before, after)
        say(f"{MARK} push of {sample.BRANCH} ({after[:7]}) delivered: HTTP 202, build"
            f" {', '.join(map(str, answer['builds']))}, deployment"
            f" {', '.join(map(str, answer['deployments']))} queued")
        return self.follow(answer["builds"])

    # -- setting up ------------------------------------------------------------------------

    def make_repository(self) -> tuple[str, str]:
        """The sample repository with one commit on main: (before, after) of its push."""
        repo = self.layout.repository
        for path, text in sample.files().items():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(text)
        name, email = sample.AUTHOR
        # The user's git settings must not sign, or run hooks on, the demo's commit.
        identity = ["-c", f"user.name={name}", "-c", f"user.email={email}",
                    "-c", "commit.gpgsign=false", "-c", f"core.hooksPath={os.devnull}"]
        git("init", "-q", cwd=repo)
        git("symbolic-ref", "HEAD", f"refs/heads/{sample.BRANCH}", cwd=repo)
        git("add", "-A", cwd=repo)
        git(*identity, "commit", "-q", "-m", "Say hello", cwd=repo)
        after = git("rev-parse", "HEAD", cwd=repo)
        say(f"Sample repository: {repo} ({sample.BRANCH} at {after[:7]}, a hello app and its"
            " tests)")
        return "0" * 40, after

    def write_pipeline(self) -> None:
        from app import config

        text = sample.pipeline(self.layout)
        try:
            config.parse(text, self.layout.config, {sample.WEBHOOK_VARIABLE: self.secret})
        except config.ConfigError as exc:  # a bug of the demo's, said plainly
            raise DemoError(1, f"the demo's own pipeline file is invalid: {exc}") from exc
        self.layout.config.write_text(text)
        say(f"Pipeline: {self.layout.config} (staging on every push to main; production"
            " after approval)")

    def environment(self, redis: str) -> dict[str, str]:
        """The web's and the worker's environment: the user's, minus any Conveyor settings
        (the demo must not touch a real Conveyor's database or queues), plus the demo's."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CONVEYOR_") and k not in _OURS}
        data = self.layout.data_dir
        data.mkdir(parents=True, exist_ok=True)
        env.update({
            "CONVEYOR_CONFIG": str(self.layout.config),
            "CONVEYOR_DATA_DIR": str(data),
            "DATABASE_URL": f"sqlite:///{data / 'conveyor.db'}",
            "REDIS_URL": redis,
            "CONVEYOR_API_TOKEN": self.token,
            sample.WEBHOOK_VARIABLE: self.secret,
        })
        return env

    def migrate(self, database_url: str) -> None:
        """Create the database's tables once, before two processes start on it."""
        from sqlalchemy.exc import SQLAlchemyError

        from app.db import Database

        database = Database(database_url)
        try:
            database.migrate()
        except SQLAlchemyError as exc:
            raise DemoError(1, f"cannot create the demo's database: {exc}") from exc
        finally:
            database.dispose()

    def start(self, env: dict[str, str]) -> None:
        """The web (gunicorn) and one worker on every queue, with RQ's scheduler."""
        web = self.layout.web_url
        self.processes.start("web", [
            sys.executable, "-m", "gunicorn", "--bind", web.removeprefix("http://"),
            "--workers", "1", "--worker-class", "gthread", "--threads", "4",
            "app:create_app()"], env, ROOT)
        self.processes.start("worker", [
            sys.executable, "-m", "app.cli", "rq-worker", "deploys", "builds", "notify",
            "--with-scheduler"], env, ROOT)
        wait_until(lambda: answers(f"{web}/readyz"), 60, f"the web process at {web}",
                   self.processes)
        say(f"Web: {web} (logs in {self.processes.logs}); worker started")

    def push(self, before: str, after: str) -> dict[str, Any]:
        """Send the push GitHub would send, signed with the project's webhook secret."""
        timestamp = git("log", "-1", "--format=%cI", cwd=self.layout.repository)
        body = json.dumps(sample.push_payload(before=before, after=after, message="Say hello",
                                              timestamp=timestamp)).encode()
        answer = requests.post(f"{self.layout.web_url}/hooks/github", data=body, timeout=30,
                               headers=signed_headers(body, self.secret))
        if answer.status_code != 202:
            raise DemoError(1, f"the webhook was answered HTTP {answer.status_code}:"
                               f" {answer.text.strip()}")
        return answer.json()

    # -- following -------------------------------------------------------------------------

    def follow(self, builds: list[int]) -> int:
        """Say each state change; approve production (with --exit) or say how to. With
        --exit: 0 once production is live, 1 once anything failed; else until Ctrl-C."""
        progress = Progress({name: self.layout.app_url(name) for name in self.layout.app_ports})
        seen: set[tuple[str, int]] = set()  # waiting for approval or failed: told
        moved = time.monotonic()
        while True:
            self.processes.check_alive()
            items = self.look(builds)
            lines = progress.update(items)
            for line in lines:
                say(line)
            moved = time.monotonic() if lines else moved
            result = outcome(items, LAST)
            if self.exit_when_live and result is not None:
                if result == "failed":
                    self.explain([i for i in items if i.failed])
                    return 1
                self.summary()
                return 0
            news = [i for i in items if (i.failed or i.state == "awaiting_approval")
                    and (i.kind, i.id) not in seen]
            self.tell(news, first=not seen)
            seen |= {(i.kind, i.id) for i in news}
            if self.exit_when_live and time.monotonic() - moved > STALL:
                raise DemoError(1, f"nothing moved for {STALL:g} s; see the logs in"
                                   f" {self.processes.logs}")
            time.sleep(POLL)

    def tell(self, news: list[Item], *, first: bool) -> None:
        """Approve what waits for approval (--exit), or say where to look and how to."""
        if not news:
            return
        if self.exit_when_live:
            for item in awaiting_approval(news):
                self.approve(item)
            return
        if first:
            self.summary()
        self.explain([i for i in news if i.failed])
        for item in awaiting_approval(news):
            self.approve(item)
        say("Press Ctrl-C to stop the demo (its processes stop, its folder is removed).")

    def look(self, builds: list[int]) -> list[Item]:
        """The project's deployments and their builds, as the API shows them now."""
        deployments = self.get(f"/deployments?project={sample.PROJECT}&limit=100")[
            "deployments"]
        ids = sorted(set(builds) | {d["build"] for d in deployments if d.get("build")})
        return ([Item.of_build(self.get(f"/builds/{i}")) for i in ids]
                + [Item.of_deployment(d) for d in deployments])

    def approve(self, item: Item) -> None:
        """Approve `item` through the API (--exit), or say how to."""
        url = f"{self.layout.web_url}/api/deployments/{item.id}/approve"
        if not self.exit_when_live:
            say(f"Approve {item.environment} in the dashboard, or:\n  CONVEYOR_URL="
                f"{self.layout.web_url} CONVEYOR_API_TOKEN={self.token} conveyor approve"
                f" {item.id}")
            return
        answer = self.api.post(url, timeout=30)
        if answer.status_code != 202:
            raise DemoError(1, f"approving deployment {item.id} was answered HTTP"
                               f" {answer.status_code}: {answer.text.strip()}")
        say(f"{MARK} {item.environment}: deployment {item.id} approved by"
            f" {answer.json().get('approved_by')} (--exit approves it itself)")

    def explain(self, failed: list[Item]) -> None:
        """Say on stderr what failed, with the end of its log."""
        for item in failed:
            kind = "builds" if item.kind == "build" else "deployments"
            where = f" ({item.environment})" if item.environment else ""
            lines = self.get(f"/{kind}/{item.id}/log")["lines"][-15:]
            print(f"conveyor demo: {item.kind} {item.id}{where} {item.state}:"
                  f" {item.error or 'see its log'}; its log ends:\n"
                  + "\n".join(f"    {line['text']}" for line in lines),
                  file=sys.stderr, flush=True)
        if failed:
            print(f"The processes' logs are in {self.processes.logs}", file=sys.stderr,
                  flush=True)

    def summary(self) -> None:
        """Where to look: the dashboard, the token, the API and each environment's app."""
        web = self.layout.web_url
        rows = [("Dashboard:", f"{web}/ (sign in with the API token)"),
                ("API token:", self.token),
                ("API:", f"curl -H 'Authorization: Bearer {self.token}' {web}/api/deployments"),
                *((f"{name.capitalize()}:", self.layout.app_url(name))
                  for name in self.layout.app_ports)]
        say("\n" + "\n".join(f"{label:<12}{value}" for label, value in rows))

    def get(self, path: str) -> Any:
        try:
            answer = self.api.get(f"{self.layout.web_url}/api{path}", timeout=30)
        except requests.RequestException as exc:
            raise DemoError(1, f"the web process does not answer: {exc}") from exc
        if answer.status_code != 200:
            raise DemoError(1, f"GET /api{path} was answered HTTP {answer.status_code}:"
                               f" {answer.text.strip()}")
        return answer.json()


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    """The headers of a GitHub push delivery, signed with `secret` (X-Hub-Signature-256)."""
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": f"sha256={signature}",
            "User-Agent": "GitHub-Hookshot/conveyor-demo"}


def git(*args: str, cwd: Path) -> str:
    """Run git in `cwd`; its output, stripped. DemoError with git's words when it fails."""
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DemoError(1, f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def say(line: str) -> None:
    print(line, flush=True)
