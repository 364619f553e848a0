"""The `conveyor` verbs that talk to the API, run as a user runs them (a process, from a
folder without the pipeline file, as on a laptop) against the real `conveyor web` and
`conveyor worker` over sshd hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import conveyor
from tests.support.forge import GitHubForge
from tests.support.gitrepo import GitRepo
from tests.support.pipeline_run import GITHUB_TOKEN, PipelineRun, pipeline_run
from tests.support.processes import ROOT
from tests.support.services import postgres_database
from tests.support.sshd import SshFleet

pytestmark = pytest.mark.timeout(300)
# staging's health check fails a release whose app.txt says "broken".
STAGING = "healthcheck: {command: '! grep -q broken dist/app.txt', retries: 1}"


@pytest.fixture
def database_url() -> Iterator[str]:
    """The processes a user runs, on PostgreSQL (the verbs' pure parts run without one)."""
    with postgres_database() as url:
        yield url


@pytest.fixture
def run(tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        ssh_fleet: Callable[[int], SshFleet], git_repo: GitRepo,
        github_forge: Callable[[str], GitHubForge]) -> Iterator[PipelineRun]:
    """Web and workers over staging (one host) → production (one host, approval: manual)."""
    with pipeline_run(tmp_path, database_url, redis_url, git_repo, ssh_fleet(2),
                      github_forge(GITHUB_TOKEN), staging=STAGING) as started:
        yield started


def conveyor_cli(web: str, cwd: Path, *argv: str,
                 token: str = conveyor.API_TOKEN) -> subprocess.CompletedProcess[str]:
    """`conveyor ARGV` with only the API's address and token, in a folder without a
    pipeline file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "DATABASE"))}
    env.update(CONVEYOR_URL=web, CONVEYOR_API_TOKEN=token, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert (done.returncode, done.stderr) == (0, ""), done
    return json.loads(done.stdout)


def refused(done: subprocess.CompletedProcess[str], status: int) -> str:
    """The one sentence a refusal wrote on stderr (nothing on stdout)."""
    assert (done.returncode, done.stdout) == (status, ""), done
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    return done.stderr.strip()


def test_approve_wait_logs_rollback_retry_deploy_and_deliveries(
        run: PipelineRun, tmp_path: Path) -> None:
    laptop = tmp_path / "laptop"
    laptop.mkdir()

    def cli_run(*argv: str, **kwargs: str) -> subprocess.CompletedProcess[str]:
        return conveyor_cli(run.web, laptop, *argv, **kwargs)

    first, _body = run.push("v1\n")
    parked = run.deployment_of("production", first, "awaiting_approval")["id"]
    approved = cli_run("approve", str(parked), "--wait")
    assert approved.returncode == 0, approved
    out = approved.stdout.splitlines()
    assert out[0].startswith(f"deployment {parked} of shop to production queued: commit"
                             f" {first[:12]} (refs/heads/main)")
    final = run.get(f"/deployments/{parked}")
    assert out[-1] == (f"deployment {parked} of shop to production succeeded: commit"
                       f" {first[:12]} (refs/heads/main), build {final['build']},"
                       f" release {final['release']}")
    logged = [line["text"] for line in run.get(f"/deployments/{parked}/log")["lines"]]
    assert logged and out[1:-1] == logged  # the log followed live, in order, each line once
    assert run.served(run.production) == ["v1\n"]

    assert refused(cli_run("approve", str(parked)), 1) == \
        f"deployment {parked} is succeeded, not awaiting approval"
    assert refused(cli_run("retry", str(parked)), 1).startswith(f"deployment {parked} is"
                                                                " succeeded")
    shown = cli_run("logs", str(parked))
    assert (shown.returncode, shown.stdout.splitlines()) == (0, logged)
    followed = cli_run("logs", str(parked), "--follow")
    assert (followed.returncode, followed.stdout.splitlines()) == (0, logged)
    built = cli_run("logs", str(final["build"]), "--build")
    assert built.returncode == 0 and "mkdir -p dist && cp app.txt dist/app.txt" in built.stdout

    second, _body = run.push("v2\n")
    parked = run.deployment_of("production", second, "awaiting_approval")["id"]
    done = ok_json(cli_run("approve", str(parked), "--wait", "--json"))
    assert (done["id"], done["state"], done["approved_by"]) == (parked, "succeeded", "admin")
    assert run.served(run.production) == ["v2\n"]

    back = ok_json(cli_run("rollback", "shop", "production", "--wait", "--json"))
    assert (back["kind"], back["state"], back["release"]) == \
        ("rollback", "succeeded", final["release"])
    assert run.served(run.production) == ["v1\n"]
    shown = ok_json(cli_run("status", "shop", "--dora", "--json"))
    envs = {e["name"]: e for e in shown["projects"][0]["environments"]}
    assert [h["release"] for h in envs["production"]["hosts"]] == [final["release"]]
    assert shown["deployments"][0]["id"] == back["id"]
    assert {m["environment"] for m in shown["dora"]} == {"staging", "production"}
    status = cli_run("status", "shop", "--dora")
    assert status.returncode == 0, status
    live, recent, dora = status.stdout.rstrip("\n").split("\n\n")
    assert [row.split()[:4] for row in live.splitlines()[1:]] == [
        ["shop", "staging", run.staging[0].spec, envs["staging"]["hosts"][0]["release"]],
        ["shop", "production", run.production[0].spec, final["release"]]]
    assert recent.splitlines()[1].split()[:4] == [str(back["id"]), "shop", "production",
                                                  "succeeded"]
    assert [row.split()[1] for row in dora.splitlines()[1:]] == ["staging", "production"]
    assert refused(cli_run("status", "bike"), 1) == "Conveyor has no project 'bike'"
    assert refused(cli_run("rollback", "shop", "production", "--to", "20200101T000000Z-nope"),
                   1) == "production has no release 20200101T000000Z-nope to roll back to"

    broken, _body = run.push("broken\n")
    run.deployment_of("staging", broken, "failed")
    again = cli_run("deploy", "shop", "staging", "--sha", broken, "--wait")
    assert again.returncode == 1, again
    assert f" of shop to staging failed: commit {broken[:12]}" in again.stdout.splitlines()[-1]
    assert "health check" in again.stdout.splitlines()[-1]
    assert run.served(run.staging) == ["v2\n"]  # put back

    queued = ok_json(cli_run("deploy", "shop", "staging", "--ref", "main", "--json"))
    assert (queued["sha"], queued["ref"], queued["requested_by"]) == \
        (broken, "refs/heads/main", "admin")  # the server's last push of main
    run.wait(lambda: run.get(f"/deployments/{queued['id']}")["state"] == "failed")

    third, _body = run.push("v3\n")
    parked = run.deployment_of("production", third, "awaiting_approval")["id"]
    canceled = ok_json(cli_run("cancel", str(parked), "--wait", "--json"))
    assert (canceled["id"], canceled["state"]) == (parked, "canceled")

    listed = ok_json(cli_run("deliveries", "--project", "shop", "--limit", "2", "--json"))
    assert [(d["event"], d["status_code"]) for d in listed["deliveries"]] == \
        [("push", 202), ("push", 202)]
    table = cli_run("deliveries").stdout.splitlines()
    assert table[0].split() == ["ID", "RECEIVED", "PROVIDER", "EVENT", "PROJECT", "REF",
                                "COMMIT", "ANSWER", "REASON"]
    assert len(table) == 5 and all(row.split()[3:5] == ["github", "push"] for row in table[1:])


def test_refusals_are_one_sentence_with_the_right_status(run: PipelineRun,
                                                         tmp_path: Path) -> None:
    tmp_path = tmp_path / "laptop"  # beside the pipeline file the server reads, not in it
    tmp_path.mkdir()
    assert refused(conveyor_cli(run.web, tmp_path, "logs", "9999"), 1) == \
        "there is no deployment 9999"
    assert refused(conveyor_cli(run.web, tmp_path, "approve", "9999"), 1) == \
        "there is no deployment 9999"
    assert refused(conveyor_cli(run.web, tmp_path, "deliveries", token="wrong"), 2) == \
        f"Conveyor at {run.web} refused the token: CONVEYOR_API_TOKEN is not one of its API" \
        " tokens"
    assert refused(conveyor_cli(run.web, tmp_path, "deploy", "shop", "staging"), 2) \
        .startswith("say what to deploy with --ref or --sha")
    assert refused(conveyor_cli(run.web, tmp_path, "deploy", "shop", "staging", "--ref",
                                "nope"), 1) == \
        "no push of 'nope' has reached Conveyor; give the commit's sha"
    assert refused(conveyor_cli(run.web, tmp_path, "rollback", "shop", "qa"), 1) == \
        "there is no environment 'qa' in project 'shop'"
    gone = conveyor_cli("http://127.0.0.1:9", tmp_path, "deliveries")
    assert refused(gone, 1) == ("cannot reach Conveyor at http://127.0.0.1:9 (is the web"
                                " process running? CONVEYOR_URL says where it is)")
