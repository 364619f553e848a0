"""The demo's pure pieces: the sample repository, its pipeline file, the push it sends and
the progress lines it prints."""

from __future__ import annotations

import json
from pathlib import Path

from app import config
from app.demo import sample
from app.demo.progress import Item, Progress, awaiting_approval, describe, outcome
from app.demo.runner import signed_headers
from app.events import Push
from app.hooks import github

FIXTURES = Path(__file__).parents[1] / "fixtures"
SHA = "0123456789abcdef0123456789abcdef01234567"
LAYOUT = sample.Layout(Path("/tmp/conveyor demo"), "/usr/bin/python3", 8000,
                       {"staging": 8101, "production": 8102})
URLS = {"staging": "http://127.0.0.1:8101/", "production": "http://127.0.0.1:8102/"}


def test_the_sample_is_an_app_with_its_tests() -> None:
    files = sample.files()
    assert set(files) == {"README.md", "hello/__init__.py", "hello/app.py",
                          "tests/__init__.py", "tests/test_app.py"}
    for path in ("hello/app.py", "tests/test_app.py"):
        compile(files[path], path, "exec")  # each is Python that runs
    assert "from hello.app import make_server" in files["tests/test_app.py"]


def test_the_pipeline_is_staging_then_production_after_approval_on_local_hosts() -> None:
    text = sample.pipeline(LAYOUT)
    parsed = config.parse(text, LAYOUT.config, {sample.WEBHOOK_VARIABLE: "s3cret-for-demo"})

    project = parsed.projects["hello"]
    assert (project.provider, project.repo, project.webhook_secret) == \
        ("github", "demo/hello", "s3cret-for-demo")
    assert project.clone_url == "/tmp/conveyor demo/hello"
    assert project.build.commands == ("/usr/bin/python3 -m unittest discover -s tests -t . -v",)
    staging, production = project.environments["staging"], project.environments["production"]
    assert staging.branches == ("main",) and staging.approval == "auto"
    assert (production.promote_from, production.approval, production.branches) == \
        ("staging", "manual", ())
    for env, port in ((staging, 8101), (production, 8102)):
        assert [h.spec for h in env.hosts] == ["local"]
        assert env.path == f"/tmp/conveyor demo/hosts/{env.name}"
        assert env.after_activate == (f"/usr/bin/python3 -m hello.app restart {port}",)
        assert env.url == f"http://127.0.0.1:{port}/"
        assert env.healthcheck is not None
        assert env.healthcheck.command == f"/usr/bin/python3 -m hello.app check {port}"
    assert parsed.public_url == "http://127.0.0.1:8000"
    assert "s3cret" not in text  # the secret comes from the environment, never the file


def test_an_interpreter_path_with_spaces_is_quoted_for_the_shell() -> None:
    layout = sample.Layout(Path("/srv/demo"), "/opt/my python/bin/python", 1, {
        "staging": 2, "production": 3})
    parsed = config.parse(sample.pipeline(layout), layout.config,
                          {sample.WEBHOOK_VARIABLE: "secret-value"})
    assert parsed.projects["hello"].build.commands[0].startswith(
        "'/opt/my python/bin/python' -m unittest")


def test_the_push_reads_as_github_s_push_of_main() -> None:
    payload = sample.push_payload(before="0" * 40, after=SHA, message="Say hello",
                                  timestamp="2026-12-05T17:00:00+00:00")

    event = github.event("push", payload)

    assert event == Push(repository="demo/hello", ref="refs/heads/main", before="0" * 40,
                         after=SHA, clone_url="https://github.com/demo/hello.git",
                         message="Say hello", author="Conveyor Demo", default_branch="main")
    assert payload["created"] is True


def test_the_push_has_the_shape_of_github_s_own() -> None:
    real = json.loads((FIXTURES / "github/push-branch-created.json").read_text())
    payload = sample.push_payload(before="0" * 40, after=SHA, message="m", timestamp="t")
    assert set(payload) <= set(real)
    assert set(payload["head_commit"]) <= set(real["head_commit"])
    assert set(payload["repository"]) <= set(real["repository"])


def test_the_delivery_is_signed_as_github_signs_it() -> None:
    body = b'{"zen": "Keep it logically awesome."}'
    headers = signed_headers(body, "the-secret")
    assert github.authentic("the-secret", body, headers)
    assert not github.authentic("another-secret", body, headers)
    assert headers["X-GitHub-Event"] == "push" and headers["X-GitHub-Delivery"]


def _build(state: str, error: str | None = None) -> Item:
    return Item.of_build({"id": 1, "state": state, "sha": SHA, "error": error})


def _deployment(id_: int, environment: str, state: str, **more: str | None) -> Item:
    return Item.of_deployment({"id": id_, "environment": environment, "state": state,
                               "sha": SHA, **more})


def test_progress_says_each_state_once_builds_first_then_deployments() -> None:
    progress = Progress(URLS)
    assert progress.update([_deployment(1, "staging", "queued"), _build("running")]) == [
        "==> build 1 of 0123456 running the tests",
        "==> staging: deployment 1 of 0123456 queued"]
    assert progress.update([_build("running"), _deployment(1, "staging", "queued")]) == []
    assert progress.update([
        _build("succeeded"),
        _deployment(2, "production", "awaiting_approval"),
        _deployment(1, "staging", "succeeded", release="20261205T170000Z-0123456"),
    ]) == [
        "==> build 1 of 0123456 succeeded: tests passed, artifact stored",
        "==> staging: deployment 1 of 0123456 succeeded: release 20261205T170000Z-0123456"
        " is live at http://127.0.0.1:8101/",
        "==> production: deployment 2 of 0123456 awaiting approval"]


def test_a_failure_says_why() -> None:
    assert describe(_build("failed", "the command exited 1: python -m unittest"), URLS) == \
        "==> build 1 of 0123456 failed: the command exited 1: python -m unittest"
    assert describe(_deployment(3, "staging", "error", error="host unreachable"), URLS) == \
        "==> staging: deployment 3 of 0123456 error: host unreachable"


def test_outcome_is_live_once_production_succeeded_and_failed_once_anything_failed() -> None:
    staged = _deployment(1, "staging", "succeeded")
    parked = _deployment(2, "production", "awaiting_approval")
    assert outcome([_build("succeeded"), staged, parked], "production") is None
    assert awaiting_approval([_build("succeeded"), staged, parked]) == [parked]
    assert outcome([staged, _deployment(2, "production", "succeeded")], "production") == "live"
    assert outcome([_build("failed"), _deployment(1, "staging", "failed")],
                   "production") == "failed"
    assert outcome([staged, _deployment(2, "production", "canceled")], "production") == \
        "failed"
