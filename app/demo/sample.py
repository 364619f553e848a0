"""What the demo ships: a tiny web app in a git repository, its pipeline file and the push
GitHub would send for it. Pure text, no I/O, so each piece is tested on its own."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = "hello"
REPO = "demo/hello"
BRANCH = "main"
WEBHOOK_VARIABLE = "DEMO_WEBHOOK_SECRET"
AUTHOR = ("Conveyor Demo", "demo@conveyor.invalid")

# The app: stdlib only. `serve` answers `/` and `/health`; `restart` (the after_activate
# hook) replaces the running server with this release's and waits until it answers; `check`
# (the health check) asks `/health` whether the release that answers is this one.
APP = '''\
"""Hello, world over HTTP: the app Conveyor's demo builds, tests and deploys."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def about():
    """What this process runs: the variables Conveyor sets for hooks (SPEC section 6)."""
    return {"environment": os.environ.get("CONVEYOR_ENVIRONMENT", "dev"),
            "release": os.environ.get("CONVEYOR_RELEASE_ID", "dev"),
            "sha": os.environ.get("CONVEYOR_SHA", "")}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        info = about()
        if self.path == "/health":
            self.answer("application/json", json.dumps({"status": "ok", **info}))
        elif self.path == "/":
            self.answer("text/plain; charset=utf-8",
                        f"Hello from {info['environment']}: release {info['release']}\\n")
        else:
            self.send_error(404)

    def answer(self, content_type, text):
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        sys.stderr.write(f"{self.address_string()} {format % args}\\n")


def make_server(port):
    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def health(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
        return json.load(response)


def restart(port):
    """Stop the server the environment runs (its pid in <path>/hello.pid), start this one."""
    home = Path.cwd().parent.parent  # hooks run in <path>/releases/<release-id>
    pidfile = home / "hello.pid"
    stop(pidfile)
    with open(home / "hello.log", "ab") as log:
        server = subprocess.Popen([sys.executable, "-m", "hello.app", "serve", str(port)],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  start_new_session=True)
    pidfile.write_text(f"{server.pid}\\n")
    for _ in range(100):
        try:
            return print(f"serving release {health(port)['release']} on port {port}")
        except OSError:
            if server.poll() is not None:
                sys.exit(f"the server stopped at once (exit {server.returncode}): see hello.log")
            time.sleep(0.1)
    sys.exit(f"nothing answers on port {port} after 10 s")


def stop(pidfile):
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)


def check(port):
    """The health check: this release answers, and says it is healthy."""
    found = health(port)
    wanted = about()["release"]
    if found.get("status") != "ok" or found.get("release") != wanted:
        sys.exit(f"port {port} answers {found}, not release {wanted}")
    print(f"release {wanted} answers on port {port}: ok")


if __name__ == "__main__":
    command, port = sys.argv[1], int(sys.argv[2])
    if command == "serve":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        make_server(port).serve_forever()
    elif command == "restart":
        restart(port)
    elif command == "check":
        check(port)
'''

TEST = '''\
"""The build runs these: a release that cannot say hello is never shipped."""

import json
import threading
import unittest
import urllib.request

from hello.app import make_server


class HelloTest(unittest.TestCase):
    def setUp(self):
        self.server = make_server(0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def test_says_hello(self):
        with urllib.request.urlopen(self.base + "/") as response:
            self.assertTrue(response.read().decode().startswith("Hello from "))

    def test_health_is_ok(self):
        with urllib.request.urlopen(self.base + "/health") as response:
            self.assertEqual(json.load(response)["status"], "ok")


if __name__ == "__main__":
    unittest.main()
'''

README = """\
# hello

The app of Conveyor's demo: `python -m hello.app serve 8080` says hello on port 8080.
`python -m unittest discover -s tests -t . -v` runs its tests (Conveyor's build does).
"""


def files() -> dict[str, str]:
    """The sample repository's files, by path."""
    return {"README.md": README, "hello/__init__.py": "", "hello/app.py": APP,
            "tests/__init__.py": "", "tests/test_app.py": TEST}


@dataclass(frozen=True)
class Layout:
    """Where the demo's pieces live and answer; all under one folder of its own."""

    root: Path
    python: str  # the interpreter that runs the build, the hooks and the app
    web_port: int
    app_ports: dict[str, int]  # environment -> port of the app it runs

    @property
    def repository(self) -> Path:
        return self.root / "hello"

    @property
    def config(self) -> Path:
        return self.root / "conveyor.yml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def path(self, environment: str) -> Path:
        """The environment's deploy path (its `releases/`, `current`)."""
        return self.root / "hosts" / environment

    def app_url(self, environment: str) -> str:
        return f"http://127.0.0.1:{self.app_ports[environment]}/"


def pipeline(layout: Layout) -> str:
    """The demo's conveyor.yml: staging on every push to main, then production once approved,
    both on this machine (`local` hosts), each checked by asking its app for its release."""
    python = shlex.quote(layout.python)

    def q(value: object) -> str:  # a JSON string is a YAML double-quoted scalar
        return json.dumps(str(value))

    def environment(name: str, first: list[str]) -> list[str]:
        port = layout.app_ports[name]
        return [
            f"      {name}:",
            *first,
            "        hosts: [local]",
            f"        path: {q(layout.path(name))}",
            f"        url: {q(layout.app_url(name))}",
            "        keep_releases: 3",
            f"        hooks: {{after_activate: [{q(f'{python} -m hello.app restart {port}')}]}}",
            "        healthcheck:",
            f"          command: {q(f'{python} -m hello.app check {port}')}",
            "          retries: 5",
            "          interval: 1s",
            "          timeout: 10s",
        ]

    lines = [
        "# Conveyor's demo (conveyor demo): a push to main of demo/hello is built once,",
        "# deployed to staging, then to production once someone approves it.",
        "server:",
        f"  public_url: {q(layout.web_url)}",
        "projects:",
        f"  {PROJECT}:",
        "    provider: github",
        f"    repo: {REPO}",
        f"    webhook_secret: ${{{WEBHOOK_VARIABLE}}}",
        f"    clone_url: {q(layout.repository)}",
        "    build:",
        "      commands:",
        f"        - {q(f'{python} -m unittest discover -s tests -t . -v')}",
        "      artifact: hello",
        "      timeout: 5m",
        "    environments:",
        *environment("staging", [f"        branches: [{BRANCH}]"]),
        *environment("production", ["        promote_from: staging",
                                     "        approval: manual"]),
    ]
    return "\n".join(lines) + "\n"


def push_payload(*, before: str, after: str, message: str, timestamp: str) -> dict[str, Any]:
    """The body GitHub sends for a push of `after` to main of demo/hello (its documented
    `push` event, with the fields Conveyor and most receivers read)."""
    name, email = AUTHOR
    person = {"name": name, "email": email, "username": "conveyor-demo"}
    commit = {"id": after, "tree_id": "", "distinct": True, "message": message,
              "timestamp": timestamp, "url": f"https://github.com/{REPO}/commit/{after}",
              "author": person, "committer": person,
              "added": sorted(files()), "removed": [], "modified": []}
    owner = {"login": REPO.split("/")[0], "type": "Organization"}
    return {
        "ref": f"refs/heads/{BRANCH}", "before": before, "after": after,
        "created": before == "0" * 40, "deleted": False, "forced": False, "base_ref": None,
        "compare": f"https://github.com/{REPO}/compare/{before[:12]}...{after[:12]}",
        "commits": [commit], "head_commit": commit,
        "repository": {"name": REPO.split("/")[1], "full_name": REPO, "private": False,
                       "owner": owner, "html_url": f"https://github.com/{REPO}",
                       "clone_url": f"https://github.com/{REPO}.git",
                       "default_branch": BRANCH, "master_branch": BRANCH},
        "pusher": {"name": person["username"], "email": email},
        "sender": {"login": person["username"], "type": "User"},
    }
