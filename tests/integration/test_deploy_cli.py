"""`conveyor deploy` (by hand through the API, and --plan) and `conveyor hosts check|trust`,
over real sshd hosts, a real git repository, Redis, the history database and the app served
by a real HTTP server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import select

from app import cli, create_app, pipeline
from app.context import Context
from app.models import Build, Deployment
from tests.support.api_server import serving
from tests.support.gitrepo import GitRepo
from tests.support.sshd import SshFleet
from workers import build, deploy

PIPELINE = """\
ssh: {{key: {key}, known_hosts: {known_hosts}, connect_timeout: 5s, command_timeout: 1m}}
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    build: {{commands: ["mkdir -p dist && cp app.txt dist/"], artifact: dist}}
    environments:
      staging:
        branches: [main]
        hosts: [{hosts}]
        path: {path}
        shared: [.env]
        hooks: {{before_activate: ['echo ready']}}
        healthcheck: {{command: 'test -f dist/app.txt', retries: 3, interval: 1s}}
      qa:
        branches: ["release/*"]
        hosts: [{first}]
        path: {path}/qa
"""


@dataclass
class Setup:
    ctx: Context
    fleet: SshFleet
    repo: GitRepo
    known_hosts: Path

    def tree(self) -> list[list[str]]:
        return [sorted(str(p.relative_to(h.root)) for p in h.root.rglob("*"))
                for h in self.fleet.hosts]


@pytest.fixture
def setup(tmp_path: Path, database_url: str, ssh_fleet: Callable[[int], SshFleet],
          git_repo: GitRepo, worker_context: Callable[..., Context],
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    fleet = ssh_fleet(2)
    git_repo.commit({"app.txt": "from git\n"}, message="Add the app")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(fleet.known_hosts.read_text())
    text = PIPELINE.format(key=fleet.client_key, known_hosts=known_hosts, clone_url=git_repo.url,
                           hosts=", ".join(h.spec for h in fleet.hosts),
                           first=fleet.hosts[0].spec, path=fleet.deploy_path)
    ctx = worker_context(text, database_url)
    for host in fleet.hosts:
        (host.root / "shared").mkdir()
        (host.root / "shared/.env").write_text("A=1\n")
    with serving(create_app(context=ctx)) as url:  # the API that `deploy` asks
        monkeypatch.setenv("CONVEYOR_URL", url)
        yield Setup(ctx, fleet, git_repo, known_hosts)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def queued(ctx: Context, name: str) -> list[str]:
    return Queue(name, connection=ctx.jobs.redis, serializer=JSONSerializer).job_ids


def test_deploy_by_hand_builds_the_branch_head_once_and_deploys_it(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    head = setup.repo.sha("main")
    status, out, err = run(capsys, "deploy", "shop", "staging")
    assert (status, err) == (0, "")
    with setup.ctx.db.session() as session:
        made = session.scalars(select(Deployment)).one()
        built = session.scalars(select(Build)).one()
    assert (made.sha, made.ref, made.state, made.trigger[:7]) == \
        (head, "refs/heads/main", "queued", "manual:")
    assert (built.sha, built.state) == (head, "queued")
    assert (made.requested_by, made.approved_by) == ("admin", None)  # the API's token
    assert out.strip() == (f"deployment {made.id} of shop to staging queued: commit"
                           f" {head[:12]} (refs/heads/main), build {built.id}")
    assert queued(setup.ctx, "builds") == [f"build-{built.id}-{built.attempt}"]

    build.run(built.id)  # the jobs RQ would run, in turn
    assert queued(setup.ctx, "deploys") == [f"deploy-{made.id}"]
    deploy.run(made.id)
    with setup.ctx.db.session() as session:
        done = session.get(Deployment, made.id)
        assert done is not None and done.state == "succeeded", done and done.error
    for host in setup.fleet.hosts:
        assert (host.root / "current/dist/app.txt").read_text() == "from git\n"

    again, _out, _err = run(capsys, "deploy", "shop", "staging", "--sha", head)
    assert again == 0
    with setup.ctx.db.session() as session:  # the same build, a second deployment
        assert session.scalars(select(Build)).one().id == built.id
        assert len(session.scalars(select(Deployment)).all()) == 2
    assert queued(setup.ctx, "deploys")[-1] == f"deploy-{made.id + 1}"


def test_deploy_plan_shows_hosts_steps_and_who_holds_the_artifact_and_changes_nothing(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    head = setup.repo.sha("main")
    assert run(capsys, "deploy", "shop", "staging")[0] == 0
    with setup.ctx.db.session() as session:
        build_id, deployment_id = session.scalars(select(Build.id)).one(), \
            session.scalars(select(Deployment.id)).one()
    build.run(build_id)
    deploy.run(deployment_id)
    live = pipeline.last_good_release(setup.ctx, "shop", "staging")
    second = setup.fleet.hosts[1]
    for stale in (second.root / ".conveyor/artifacts").iterdir():
        stale.unlink()
    before, jobs = setup.tree(), queued(setup.ctx, "deploys")

    status, out, err = run(capsys, "deploy", "shop", "staging", "--plan")

    assert (status, err) == (0, "")
    first = setup.fleet.hosts[0]
    assert f"deploy shop to staging: commit {head[:12]} (refs/heads/main)" in out
    assert f"build {build_id} (succeeded)" in out
    assert f"  {first.spec}: live {live}, holds the artifact" in out
    assert f"  {second.spec}: live {live}, lacks the artifact" in out
    assert "send the artifact to 1 host(s) that lack it" in out
    assert f"  link from {setup.fleet.deploy_path}/shared: .env" in out
    assert "  before_activate: echo ready" in out
    assert "  health check: test -f dist/app.txt (3 attempt(s), 1s apart, 30s each)" in out
    assert "activate, all hosts together" in out
    assert out.rstrip().endswith("this is a plan: nothing was changed")
    assert setup.tree() == before
    with setup.ctx.db.session() as session:
        assert len(session.scalars(select(Deployment)).all()) == 1
    assert queued(setup.ctx, "deploys") == jobs


def test_deploy_plan_of_a_commit_not_built_yet(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    head = setup.repo.sha("main")
    status, out, _err = run(capsys, "deploy", "shop", "staging", "--sha", head[:9], "--plan")
    assert status == 0
    assert f"commit {head[:12]}" in out
    assert "artifact: not built yet; a new build builds it first" in out
    assert f"  {setup.fleet.hosts[0].spec}: live nothing" in out
    assert not (setup.fleet.hosts[0].root / ".conveyor").exists()


@pytest.mark.parametrize(("argv", "status", "message"), [
    (("deploy", "shoe", "staging"), 2, "there is no project 'shoe'"),
    (("deploy", "shop", "prod"), 2, "project shop has no environment 'prod' (it has: staging, qa)"),
    (("deploy", "shop", "qa"), 2, "environment qa has no plain first branch"),
    (("deploy", "shop", "staging", "--sha", "HEAD"), 2, "--sha takes a commit id"),
    (("deploy", "shop", "staging", "--ref", "nope"), 1, "there is no branch or tag 'nope'"),
    (("deploy", "shop", "staging", "--ref=-x"), 2, "'-x' is not a branch, tag or ref"),
])
def test_deploy_refuses_with_one_sentence(setup: Setup, capsys: pytest.CaptureFixture[str],
                                          argv: tuple[str, ...], status: int,
                                          message: str) -> None:
    got, out, err = run(capsys, *argv)
    assert (got, out) == (status, "")
    assert message in err and err.count("\n") == 1


def test_hosts_check_reports_each_host(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "hosts", "check", "shop", "staging")
    assert (status, err) == (0, "")
    for host in setup.fleet.hosts:
        assert f"{host.spec} (staging): ok: {setup.fleet.deploy_path} is writable" in out

    setup.fleet.hosts[1].stop()
    status, out, err = run(capsys, "hosts", "check", "shop")
    assert status == 1
    assert f"{setup.fleet.hosts[0].spec} (qa): ok: {setup.fleet.deploy_path}/qa can be created" \
        in out
    assert f"{setup.fleet.hosts[1].spec} (staging): FAILED: cannot reach" in out
    assert err == "1 host(s) cannot take deployments yet (see above)\n"


def test_hosts_trust_records_unknown_keys_only_when_told_and_changed_ones_only_on_replace(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.known_hosts.write_text("")
    status, out, err = run(capsys, "hosts", "trust", "shop")  # no terminal, no --yes
    assert status == 1
    assert out.count("unknown host key ssh-ed25519 SHA256:") == 2
    assert out.count(": not recorded") == 2
    assert setup.known_hosts.read_text() == ""

    status, out, err = run(capsys, "hosts", "trust", "shop", "--yes")
    assert (status, err) == (0, "")
    assert out.count(f"recorded in {setup.known_hosts}") == 2
    assert run(capsys, "hosts", "check", "shop", "staging")[0] == 0  # the keys now verify
    assert run(capsys, "hosts", "trust", "shop")[1].count("(already trusted)") == 2

    setup.fleet.hosts[0].regenerate_host_key()
    recorded = setup.known_hosts.read_text()
    status, out, err = run(capsys, "hosts", "trust", "shop", "staging", "--yes")
    assert status == 1
    assert f"{setup.fleet.hosts[0].spec}: the host key has CHANGED: expected ssh-ed25519" \
        " SHA256:" in out
    assert ", the host offers ssh-ed25519 SHA256:" in out
    assert "run again with --replace" in out
    assert setup.known_hosts.read_text() == recorded

    status, out, err = run(capsys, "hosts", "trust", "shop", "staging", "--yes", "--replace")
    assert (status, err) == (0, "")
    assert len(setup.known_hosts.read_text().splitlines()) == 2
    assert run(capsys, "hosts", "check", "shop", "staging")[0] == 0


def test_hosts_trust_needs_a_known_hosts_file(setup: Setup, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = Path(setup.ctx.settings.config_path)
    config.write_text(config.read_text().replace(f"known_hosts: {setup.known_hosts}, ", ""))
    status, out, err = run(capsys, "hosts", "trust", "shop")
    assert (status, out) == (2, "")
    assert err.startswith("ssh.known_hosts is not set in the pipeline file")
