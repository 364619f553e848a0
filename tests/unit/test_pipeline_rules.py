"""The pipeline's decisions, with plain values and no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from app import pipeline
from app.config import Build, Environment, Host, Project
from app.hooks.events import ZERO_SHA, Push


def project() -> Project:
    def env(name: str, *branches: str) -> Environment:
        return Environment(name=name, branches=branches, hosts=(Host("local"),), path="/srv")
    return Project(name="shop", provider="github", repo="acme/shop", webhook_secret="s",
                   build=Build(commands=("make",), artifact=("dist",)),
                   environments={"staging": env("staging", "main", "release/*"),
                                 "preview": env("preview", "feature/*")})


def push(ref: str, after: str = "a" * 40) -> Push:
    return Push(repository="acme/shop", ref=ref, before="b" * 40, after=after, clone_url="")


def test_branch_globs_choose_the_environments() -> None:
    names = lambda result: [e.name for e in result]  # noqa: E731
    assert names(pipeline.environments_for(project(), push("refs/heads/main"))) == ["staging"]
    assert names(pipeline.environments_for(project(), push("refs/heads/release/2.1"))) == \
        ["staging"]
    assert names(pipeline.environments_for(project(), push("refs/heads/feature/x"))) == \
        ["preview"]


def test_pushes_that_deploy_nowhere_say_why() -> None:
    assert pipeline.environments_for(project(), push("refs/heads/mainline")) == \
        "no environment deploys branch 'mainline'"
    assert pipeline.environments_for(project(), push("refs/heads/main", ZERO_SHA)) == \
        "refs/heads/main was deleted"
    assert pipeline.environments_for(project(), push("refs/tags/v1")) == \
        "no environment deploys tag 'v1'"
    assert pipeline.environments_for(project(), push("refs/notes/commits")) == \
        "refs/notes/commits is neither a branch nor a tag"


def test_settings_hash_changes_with_the_build_settings_only() -> None:
    one = Build(commands=("make",), artifact=("dist",), timeout=60)
    assert pipeline.settings_hash(one) == pipeline.settings_hash(
        Build(commands=("make",), artifact=("dist",), timeout=900))
    assert pipeline.settings_hash(one) != pipeline.settings_hash(
        Build(commands=("make all",), artifact=("dist",)))


def test_release_ids_are_utc_time_and_short_sha() -> None:
    moment = datetime(2026, 11, 28, 23, 30, 5, tzinfo=timezone(timedelta(hours=1)))
    assert pipeline.release_id(moment, "0123456789abcdef" * 2 + "01234567") == \
        "20261128T223005Z-0123456"


def test_release_ids_never_repeat_within_an_environment() -> None:
    now = datetime(2026, 11, 28, 22, 30, 5, tzinfo=UTC)
    assert pipeline.next_release_id(now, "b" * 40, None) == "20261128T223005Z-bbbbbbb"
    assert pipeline.next_release_id(now, "b" * 40, "20261128T223005Z-aaaaaaa") == \
        "20261128T223006Z-bbbbbbb"
    assert pipeline.next_release_id(now, "b" * 40, "20261128T223010Z-aaaaaaa") == \
        "20261128T223011Z-bbbbbbb"
    assert pipeline.next_release_id(now, "b" * 40, "20261128T223001Z-aaaaaaa") == \
        "20261128T223005Z-bbbbbbb"


def test_secrets_are_masked_longest_first() -> None:
    assert pipeline.mask("token abc and abcdef", ["abc", "abcdef", ""]) == \
        "token *** and ***"


def test_descriptions_fit_githubs_limit_and_say_what_happened() -> None:
    from app.models import Deployment

    start = datetime(2026, 1, 1, tzinfo=UTC)
    done = Deployment(environment="staging", state="succeeded", release_id="r1",
                      started_at=start, finished_at=start + timedelta(seconds=75))
    assert pipeline.deployment_description(done) == "Deployed r1 to staging in 1m15s"
    failed = Deployment(environment="staging", state="failed", error="x" * 300)
    assert pipeline.deployment_description(failed).startswith("Deploy to staging failed: x")
