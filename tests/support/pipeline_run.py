"""A whole pipeline run for end-to-end tests: a git repository, a staging and a production
fleet of sshd hosts, the GitHub stand-in, the real `conveyor web` and `conveyor worker`
processes, and the API and webhooks a user and a forge would use."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support import conveyor
from tests.support.deliveries import fixture
from tests.support.forge import GitHubForge
from tests.support.gitrepo import GitRepo
from tests.support.processes import conveyor_processes, read_logs
from tests.support.sshd import SshFleet, SshHost

GITHUB_TOKEN = "ghp_test_token_for_the_pipeline"
PIPELINE = """\
server:
  public_url: https://deploy.example.com
ssh:
  key: {key}
  known_hosts: {known_hosts}
  connect_timeout: 10s
  command_timeout: 1m
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    status:
      api_url: {api_url}
      token: ${{GITHUB_TOKEN}}
    build:
      commands: ["mkdir -p dist && cp app.txt dist/app.txt"]
      artifact: dist
      timeout: 1m
    environments:
      staging:
        branches: [main]
        hosts: [{staging}]
        path: {staging_path}
        keep_releases: 5
{staging_settings}
      production:
        promote_from: staging
        hosts: [{production}]
        path: {production_path}
{production_settings}
"""


def _indent(settings: str) -> str:
    return "".join(f"        {line}\n" for line in settings.strip().splitlines())


@dataclass
class PipelineRun:
    """The processes of one test and what it can do with them."""

    web: str
    repo: GitRepo
    staging: list[SshHost]
    production: list[SshHost]
    forge: GitHubForge
    logs: Path
    pushed: list[str] = field(default_factory=list)

    # -- the forge's side --------------------------------------------------------------------

    def push(self, content: str, *, deliver: bool = True) -> tuple[str, bytes]:
        """Commit `content` as app.txt on main and (unless told not to) deliver the push;
        (the commit's sha, the delivery's body, to deliver later)."""
        before = self.repo.sha("main")
        after = self.repo.commit({"app.txt": content}, message=f"Ship {content}")
        body = conveyor.push_payload(fixture("github/push-branch-updated.json"),
                                     repo="acme/shop", clone_url=self.repo.url,
                                     ref="refs/heads/main", before=before, after=after)
        if deliver:
            self.deliver(body)
        return after, body

    def deliver(self, body: bytes) -> dict[str, Any]:
        answer = requests.post(f"{self.web}/hooks/github", data=body, timeout=10,
                               headers=conveyor.signed_headers(body, "push", str(uuid.uuid4())))
        assert answer.status_code in (200, 202), answer.text
        return answer.json()

    # -- the API -----------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        answer = requests.get(f"{self.web}/api{path}", timeout=10, headers=_auth())
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, path: str, body: dict[str, Any] | None = None,
             expect: int = 202) -> dict[str, Any]:
        answer = requests.post(f"{self.web}/api{path}", json=body or {}, timeout=10,
                               headers=_auth())
        assert answer.status_code == expect, answer.text
        return answer.json()

    def deployments(self, environment: str) -> list[dict[str, Any]]:
        """The environment's deployments, oldest first."""
        return self.get(f"/deployments?project=shop&environment={environment}")[
            "deployments"][::-1]

    def wait(self, condition: Callable[[], Any], timeout: float = 90, what: str = "") -> Any:
        """Poll the API until `condition()` gives something true; return it."""
        deadline = time.monotonic() + timeout
        while True:
            found = condition()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}\n{read_logs(self.logs)}")
            time.sleep(0.1)

    def deployment_of(self, environment: str, sha: str, *states: str) -> dict[str, Any]:
        """Wait for the deployment of `sha` to `environment` to be in one of `states`."""
        def found() -> dict[str, Any] | None:
            return next((d for d in self.deployments(environment)
                         if d["sha"] == sha and d["state"] in states), None)
        return self.wait(found, what=f"{environment} deployment of {sha[:7]} in {states}")

    # -- the hosts ---------------------------------------------------------------------------

    @staticmethod
    def live(hosts: list[SshHost]) -> list[str | None]:
        """The release each host's `current` points at."""
        return [os.readlink(h.root / "current") if (h.root / "current").is_symlink() else None
                for h in hosts]

    @staticmethod
    def served(hosts: list[SshHost]) -> list[str]:
        return [(h.root / "current/dist/app.txt").read_text() for h in hosts]

    @staticmethod
    def artifact_of(hosts: list[SshHost], release: str) -> set[str]:
        """The sha256 of the artifact each host unpacked `release` from."""
        return {(h.root / ".conveyor/releases" / release).read_text().strip() for h in hosts}


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {conveyor.API_TOKEN}"}


@contextmanager
def pipeline_run(tmp_path: Path, database_url: str, redis_url: str, repo: GitRepo,
                 fleet: SshFleet, forge: GitHubForge, *, staging: str = "",
                 production: str = "approval: manual",
                 workers: int = 2) -> Iterator[PipelineRun]:
    """Start web and workers over a staging → production pipeline (the first half of the
    fleet's hosts are staging, the rest production); stop them after."""
    half = len(fleet.hosts) // 2
    stage, prod = fleet.hosts[:half], fleet.hosts[half:]
    text = PIPELINE.format(
        key=fleet.client_key, known_hosts=fleet.known_hosts, clone_url=repo.url,
        api_url=forge.url, staging=", ".join(h.spec for h in stage),
        staging_path=fleet.deploy_path, staging_settings=_indent(staging),
        production=", ".join(h.spec for h in prod), production_path=fleet.deploy_path,
        production_settings=_indent(production))
    _settings, env = conveyor.settings(tmp_path, database_url, redis_url, text,
                                       {"GITHUB_TOKEN": GITHUB_TOKEN})
    logs = tmp_path / "logs"
    with conveyor_processes(env, logs, workers=workers) as web:
        yield PipelineRun(web, repo, list(stage), list(prod), forge, logs)
