"""The test harness itself works: sshd hosts, git repos, the forge stand-in, Redis, PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import paramiko
import pytest
import redis
import requests
import sqlalchemy as sa

from tests.support.fixtures import (  # noqa: F401  (pytest fixtures)
    git_repo_fixture,
    github_forge_fixture,
    postgres_url_fixture,
    redis_url_fixture,
    ssh_fleet_fixture,
)
from tests.support.forge import GitHubForge
from tests.support.gitrepo import GitRepo, git
from tests.support.sshd import SshFleet, SshHost, ssh_run

SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
TOKEN = "forge-token"


def connect(fleet: SshFleet, host: SshHost) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.load_host_keys(str(fleet.known_hosts))
    client.connect(
        "127.0.0.1", host.port, "root", key_filename=str(fleet.client_key),
        allow_agent=False, look_for_keys=False, timeout=10,
    )  # fmt: skip
    return client


def run(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, _ = client.exec_command(command, timeout=10)
    return stdout.read().decode()


def test_openssh_client_reaches_every_host_with_verified_keys(
    ssh_fleet: Callable[[int], SshFleet],
) -> None:
    fleet = ssh_fleet(2)
    for host in fleet.hosts:
        assert host.spec == f"root@127.0.0.1:{host.port}"
        assert list(host.root.iterdir()) == []
        result = ssh_run(fleet, host, "echo", "ok", host.name)
        assert (result.returncode, result.stdout) == (0, f"ok {host.name}\n"), result.stderr
    # root's ~/.bashrc (pyenv, ~115 ms a command) is not sourced for commands sent over SSH
    assert ".pyenv" not in ssh_run(fleet, fleet.hosts[0], "sh", "-c", "echo $PATH").stdout


def test_paramiko_verifies_host_keys_and_sees_hosts_go_away(
    ssh_fleet: Callable[[int], SshFleet],
) -> None:
    fleet = ssh_fleet(2)
    host, other = fleet.hosts
    client = connect(fleet, host)
    assert run(client, "echo ok") == "ok\n"

    host.regenerate_host_key()
    with pytest.raises(paramiko.BadHostKeyException):
        connect(fleet, host)
    assert run(connect(fleet, other), "echo ok") == "ok\n"

    host.stop()
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):
        connect(fleet, host)
    with pytest.raises(paramiko.SSHException):  # sessions opened before died with the host
        run(client, "echo ok")
    host.stop()  # idempotent
    host.start()
    assert host.host_key_line() not in fleet.known_hosts.read_text()
    with pytest.raises(paramiko.BadHostKeyException):
        connect(fleet, host)


def test_git_repo_commits_reach_origin(git_repo: GitRepo) -> None:
    first = git_repo.sha("main")
    sha = git_repo.commit({"app.py": "print('hi')\n", "bin/data": b"\x00\x01"}, message="Add app")
    assert sha != first
    assert git("rev-parse", "refs/heads/main", cwd=git_repo.origin) == sha
    assert git("show", f"{sha}:app.py", cwd=git_repo.origin) == "print('hi')"
    assert git("log", "-1", "--format=%P %s", "main", cwd=git_repo.origin) == f"{first} Add app"


def post_status(forge: GitHubForge, body: object, token: str = TOKEN) -> requests.Response:
    url = f"{forge.url}/repos/acme/shop/statuses/{SHA}"
    return requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_forge_accepts_valid_statuses_and_records_them(
    github_forge: Callable[[str], GitHubForge],
) -> None:
    forge = github_forge(TOKEN)
    status = {"state": "pending", "context": "conveyor/build", "description": "x" * 140,
              "target_url": "https://deploy.example.com/builds/1"}  # fmt: skip
    answer = post_status(forge, status)
    assert answer.status_code == 201, answer.text
    assert answer.headers["Location"] == f"{forge.url}/repos/acme/shop/statuses/{SHA}"
    assert answer.json()["state"] == "pending"
    assert post_status(forge, {"state": "success", "description": None}).status_code == 201

    recorded = forge.wait_for(lambda statuses: len(statuses) == 2, timeout=5)
    assert recorded == [
        {"repo": "acme/shop", "sha": SHA, **status},
        {"repo": "acme/shop", "sha": SHA, "state": "success", "context": "default",
         "description": None, "target_url": None},
    ]  # fmt: skip
    assert forge.violations == []


def test_forge_refuses_what_github_refuses(github_forge: Callable[[str], GitHubForge]) -> None:
    forge = github_forge(TOKEN)
    answer = post_status(forge, {"state": "pending"}, token="wrong")
    assert (answer.status_code, answer.json()["message"]) == (401, "Bad credentials")
    assert forge.violations == []

    answer = post_status(forge, {"state": "running"})
    assert (answer.status_code, answer.json()["message"]) == (422, "Validation Failed")
    answer = post_status(forge, {"state": "failure", "description": "x" * 141})
    assert answer.status_code == 422
    assert "maximum is 140 characters" in answer.json()["errors"][0]["message"]
    assert len(forge.violations) == 2
    assert forge.statuses == []

    forge.fail_next(1, 429, {"Retry-After": "1"})
    answer = post_status(forge, {"state": "pending"})
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "1")
    assert [r["code"] for r in forge.requests] == [401, 422, 422, 429]


def test_redis_and_postgres_urls_are_usable(redis_url: str, postgres_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        assert client.set("smoke", "1")
        assert client.get("smoke") == b"1"
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select current_database()")).scalar() in postgres_url
    finally:
        engine.dispose()


def test_each_host_sees_its_own_root_at_the_fleet_deploy_path(
    ssh_fleet: Callable[[int], SshFleet],
) -> None:
    fleet = ssh_fleet(2)
    for host in fleet.hosts:
        (host.root / "who").write_text(host.name)
    for host in fleet.hosts:
        result = ssh_run(fleet, host, "cat", str(fleet.deploy_path / "who"))
        assert (result.returncode, result.stdout) == (0, host.name)
    assert list(fleet.deploy_path.iterdir()) == []  # untouched outside the hosts' namespaces
