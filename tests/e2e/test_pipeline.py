"""The deployment pipeline end to end (issue 9, SPEC §5 and §7), with the real web and worker
processes, real sshd hosts and real git: staging then production with the same bytes,
approval, order (supersede, forward only), rollback, cancel and retry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.forge import GitHubForge
from tests.support.gitrepo import GitRepo
from tests.support.pipeline_run import GITHUB_TOKEN, PipelineRun, pipeline_run
from tests.support.services import postgres_database
from tests.support.sshd import SshFleet

pytestmark = pytest.mark.timeout(240)

# Blocks a hook in the release whose app.txt says "hold", until `go` exists beside the deploy
# path (the hook runs in releases/<id>), after saying it got there.
HOLD = ("if grep -qx hold dist/app.txt; then touch ../../held;"
        " while [ ! -e ../../go ]; do sleep 0.05; done; fi")


@pytest.fixture
def database_url() -> Iterator[str]:
    """These tests run the processes a user runs on PostgreSQL (the pipeline's rules run on
    SQLite too in the integration tests)."""
    with postgres_database() as url:
        yield url


@pytest.fixture
def run(tmp_path: Path, database_url: str, redis_url: str, redis_db: redis.Redis,
        ssh_fleet: Callable[[int], SshFleet], git_repo: GitRepo,
        github_forge: Callable[[str], GitHubForge]) -> Callable[..., PipelineRun]:
    """Factory: run(staging="...", production="...", hosts=4) starts the processes (half
    the hosts staging, half production; production waits for approval unless told)."""
    stack: list = []

    def start(staging: str = "", production: str = "approval: manual",
              hosts: int = 4) -> PipelineRun:
        manager = pipeline_run(tmp_path, database_url, redis_url, git_repo, ssh_fleet(hosts),
                               github_forge(GITHUB_TOKEN), staging=staging,
                               production=production)
        stack.append(manager)
        return manager.__enter__()

    yield start  # type: ignore[misc]
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


def test_staging_then_production_after_approval_with_the_same_bytes(
        run: Callable[..., PipelineRun]) -> None:
    r = run(production="approval: manual")
    sha, _body = r.push("v1\n")

    staged = r.deployment_of("staging", sha, "succeeded")
    parked = r.deployment_of("production", sha, "awaiting_approval")
    assert parked["kind"] == "promotion" and parked["source"] == staged["id"]
    assert r.live(r.production) == [None, None]  # nothing goes live before approval
    statuses = r.forge.wait_for(lambda found: any(
        s["context"] == "conveyor/deploy/production" for s in found))
    awaiting = [s for s in statuses if s["context"] == "conveyor/deploy/production"][-1]
    assert awaiting["state"] == "pending"
    assert awaiting["description"] == "Waiting for approval to deploy to production"
    assert awaiting["target_url"] == f"https://deploy.example.com/deployments/{parked['id']}"

    approved = r.post(f"/deployments/{parked['id']}/approve")
    assert approved["approved_by"] == "admin"
    live = r.deployment_of("production", sha, "succeeded")

    assert r.served(r.production) == ["v1\n", "v1\n"]
    assert r.live(r.production) == [f"releases/{live['release']}"] * 2
    shipped = r.artifact_of(r.staging, staged["release"])
    assert len(shipped) == 1 and r.artifact_of(r.production, live["release"]) == shipped
    assert r.post(f"/deployments/{parked['id']}/approve", expect=409)["detail"] == \
        f"deployment {parked['id']} is succeeded, not awaiting approval"
    audit = r.get("/audit?project=shop")["audit"]
    assert [(e["by"], e["action"], e["deployment"]) for e in audit] == [
        ("admin", "approve", parked["id"])]
    built = r.get(f"/builds/{staged['build']}")
    assert built["committed_at"] is not None  # the build read the commit's time from git
    production = r.get("/dora?project=shop&environment=production&days=1")["environments"][0]
    assert (production["deployments"], production["changes"]) == (1, 1)
    assert production["lead_time_seconds"] is not None
    assert r.forge.violations == []


def test_approval_auto_is_continuous_deployment(run: Callable[..., PipelineRun]) -> None:
    r = run(production="approval: auto")
    sha, _body = r.push("v1\n")
    r.deployment_of("production", sha, "succeeded")
    assert r.served(r.staging + r.production) == ["v1\n"] * 4


def test_five_rapid_pushes_while_one_deploys_leave_the_newest_live(
        run: Callable[..., PipelineRun]) -> None:
    r = run(staging=f"hooks: {{before_activate: ['{HOLD}']}}", hosts=2)
    held, _body = r.push("hold\n")
    r.wait(lambda: (r.staging[0].root / "held").exists(), what="the first deployment held")
    newer = [r.push(f"v{n}\n")[0] for n in range(2, 7)]
    r.wait(lambda: len([b for b in r.deployments("staging") if b["sha"] in newer]) == 5
           and all(r.get(f"/builds/{d['build']}")["state"] == "succeeded"
                   for d in r.deployments("staging") if d["sha"] in newer),
           what="the five newer pushes built")

    (r.staging[0].root / "go").touch()

    last = r.deployment_of("staging", newer[-1], "succeeded")
    states = {d["sha"]: d["state"] for d in r.deployments("staging")}
    assert states[held] == "succeeded"  # the running one was never interrupted
    assert [states[sha] for sha in newer[:-1]] == ["superseded"] * 4
    assert r.served(r.staging) == ["v6\n"]
    assert r.live(r.staging) == [f"releases/{last['release']}"]
    superseded = [d for d in r.deployments("staging") if d["state"] == "superseded"]
    assert all(d["error"] == f"superseded by deployment {last['id']} of {newer[-1][:7]}"
               for d in superseded)


def test_an_older_push_delivered_after_a_newer_one_is_live_is_superseded(
        run: Callable[..., PipelineRun]) -> None:
    r = run(hosts=2)
    older, late_body = r.push("old\n", deliver=False)
    newer, _body = r.push("new\n")
    r.deployment_of("staging", newer, "succeeded")

    r.deliver(late_body)  # a late, out-of-order delivery of the older push

    late = r.deployment_of("staging", older, "superseded")
    assert "behind what is live" in late["error"]
    assert r.served(r.staging) == ["new\n"]
    assert late["release"] is None  # never started: no host touched


def test_rollback_then_rollback_again_never_picks_the_rolled_back_release(
        run: Callable[..., PipelineRun]) -> None:
    r = run(hosts=2)
    releases = []
    for n in (1, 2, 3):
        sha, _body = r.push(f"v{n}\n")
        releases.append(r.deployment_of("staging", sha, "succeeded")["release"])
    r1, r2, r3 = releases

    first = r.post("/projects/shop/environments/staging/rollback")
    assert (first["kind"], first["release"], first["requested_by"]) == ("rollback", r2, "admin")
    r.wait(lambda: r.get(f"/deployments/{first['id']}")["state"] == "succeeded",
           what="the first rollback")
    assert r.live(r.staging) == [f"releases/{r2}"] and r.served(r.staging) == ["v2\n"]

    second = r.post("/projects/shop/environments/staging/rollback")
    assert second["release"] == r1  # not r3: rolled back from, so marked bad
    r.wait(lambda: r.get(f"/deployments/{second['id']}")["state"] == "succeeded",
           what="the second rollback")
    assert r.served(r.staging) == ["v1\n"]
    refused = r.post("/projects/shop/environments/staging/rollback", {"release": r3},
                     expect=409)
    assert refused["detail"].startswith(f"release {r3} is marked bad")
    host = r.staging[0].root
    assert (host / "releases" / r3).is_dir()  # rolling back removes no release


def test_cancel_of_a_running_deployment_between_batches_puts_switched_hosts_back(
        run: Callable[..., PipelineRun]) -> None:
    r = run(staging=f"batch: 1\nhooks: {{after_activate: ['{HOLD}']}}", hosts=4)
    first, _body = r.push("v1\n")
    before = r.deployment_of("staging", first, "succeeded")["release"]
    sha, _body = r.push("hold\n")
    r.wait(lambda: (r.staging[0].root / "held").exists(), what="batch 1 switched and held")
    running = r.deployment_of("staging", sha, "running")

    r.post(f"/deployments/{running['id']}/cancel")
    (r.staging[0].root / "go").touch()

    done = r.deployment_of("staging", sha, "canceled")
    assert done["error"] == "canceled by admin; every switched host put back"
    assert r.live(r.staging) == [f"releases/{before}"] * 2
    hosts = {h["host"]: h["state"] for h in r.get(f"/deployments/{done['id']}")["hosts"]}
    assert hosts == {r.staging[0].spec: "rolled_back", r.staging[1].spec: "canceled"}


def test_retry_after_one_host_failed_does_only_what_that_host_lacks(
        run: Callable[..., PipelineRun]) -> None:
    counter = "echo ran >> ../../before_activate.log"
    r = run(staging=f"hooks: {{before_activate: ['{counter}']}}", hosts=6)
    down = r.staging[1]
    down.stop()
    sha, _body = r.push("v1\n")
    failed = r.deployment_of("staging", sha, "error")
    assert r.live(r.staging) == [None, None, None]

    down.start()
    again = r.post(f"/deployments/{failed['id']}/retry")
    assert (again["kind"], again["release"]) == ("retry", failed["release"])
    r.wait(lambda: r.get(f"/deployments/{again['id']}")["state"] == "succeeded",
           what="the retry")

    done = r.get(f"/deployments/{again['id']}")
    assert r.live(r.staging) == [f"releases/{failed['release']}"] * 3
    uploaded = {h["host"]: h["uploaded"] for h in done["hosts"]}
    assert uploaded == {r.staging[0].spec: False, down.spec: True, r.staging[2].spec: False}
    runs = [(h.root / "before_activate.log").read_text().count("ran") for h in r.staging]
    assert runs == [1, 1, 1]  # what was prepared was kept, not done again
