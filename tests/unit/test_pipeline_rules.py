"""The pipeline's decisions, with plain values and no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from app import pipeline
from app.config import Build, Environment, Host, Project
from app.events import ZERO_SHA, Push


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
    took = {"started_at": start, "finished_at": start + timedelta(seconds=41)}

    def said(hosts: int | None = 3, **fields: object) -> str:
        text = pipeline.deployment_description(
            Deployment(environment="production", kind=fields.pop("kind", "deploy"),
                       sha="1a2b3c4" + "0" * 33, **fields), hosts)
        assert len(text) <= 140
        return text

    assert said(state="succeeded", release_id="r1", **took) == "Live on 3 hosts in 41 s"
    assert said(1, state="succeeded", release_id="r1", started_at=start,
                finished_at=start + timedelta(seconds=75)) == "Live on 1 host in 1 min 15 s"
    assert said(state="succeeded", kind="rollback", release_id="20261201T101500Z-1a2b3c4",
                **took) == "Rolled back to 20261201T101500Z-1a2b3c4 on 3 hosts in 41 s"
    assert said(state="awaiting_approval") == "Waiting for approval to deploy to production"
    assert said(state="superseded", error="superseded by deployment 42 of 9f8e7d6") == \
        "Superseded by 9f8e7d6"
    assert said(state="superseded", error="1a2b3c4 is live there already, or behind what is live"
                ) == "Not deployed: 1a2b3c4 is live on production already, or behind it"
    assert said(state="failed", error=(
        "activate failed, every switched host put back: deploy@web-2:22: after_activate"
        " failed: the health check failed 2 time(s) (exit 1): curl: (7) refused")) == (
        "The health check failed 2 time(s) (exit 1): curl: (7) refused on web-2; every"
        " switched host put back")
    assert said(state="failed", error=(
        "watch failed after 42 s, every host put back: deploy@web-1: healthcheck failed:"
        " down")) == "Down on web-1; every host put back"
    assert said(state="canceled", error="canceled by admin; every switched host put back") == \
        "Canceled by admin; every switched host put back"
    long = said(state="error", error="x" * 300)
    assert long.startswith("Could not finish: xxx") and long.endswith("…")


def test_the_token_of_any_url_is_masked_even_when_it_is_no_configured_secret() -> None:
    text = ("fetching https://x-access-token:ghs_1@github.com/a.git, https://ghp_2@github.com/b,"
            " ssh://git@github.com/c.git and git@github.com:d.git; mail a@b.example")
    assert pipeline.mask(text, ()) == (
        "fetching https://x-access-token:***@github.com/a.git, https://***@github.com/b,"
        " ssh://git@github.com/c.git and git@github.com:d.git; mail a@b.example")
    assert pipeline.mask_all({"a": ["x secret", {"b": "secret"}], "n": 3}, ["secret"]) == \
        {"a": ["x ***", {"b": "***"}], "n": 3}


def test_a_stored_clone_url_holds_no_credential() -> None:
    assert pipeline.without_credentials("https://u:tok@h.example:8443/a.git") == \
        "https://h.example:8443/a.git"
    assert pipeline.without_credentials("https://tok@[::1]/a.git") == "https://[::1]/a.git"
    assert pipeline.without_credentials("git@github.com:a/b.git") == "git@github.com:a/b.git"


def test_which_clone_urls_read_the_worker_itself() -> None:
    local = ["/srv/git/shop.git", "./shop", "shop.git", "file:///srv/shop.git",
             "ext::sh -c touch% /tmp/x"]
    remote = ["https://github.com/a/b.git", "ssh://git@h/a.git", "git@github.com:a/b.git",
              "git://h/a.git"]
    assert [pipeline.is_local_url(url) for url in local] == [True] * len(local)
    assert [pipeline.is_local_url(url) for url in remote] == [False] * len(remote)


def test_a_build_fetches_from_the_configured_clone_url_and_never_a_payloads_path() -> None:
    configured = "https://u:tok@h/a.git"
    assert pipeline.clone_source(configured, "/etc") == (configured, None)
    assert pipeline.clone_source("/srv/a.git", "https://h/x.git") == ("/srv/a.git", None)
    assert pipeline.clone_source(None, "https://h/a.git") == ("https://h/a.git", None)
    _url, refusal = pipeline.clone_source(None, "/home/conveyor/.ssh")
    assert refusal is not None and "set clone_url in conveyor.yml" in refusal


def test_a_push_whose_changes_cannot_be_told_is_built() -> None:
    from app.pipeline import ChangesCheck, settle_changes

    said: list[str] = []
    check = ChangesCheck(1, "a" * 40, "b" * 40, None, ("services/shop/**",))
    # No database is touched: only skipping writes.
    assert settle_changes(None, check, "git diff failed: bad object", said.append) is False  # type: ignore[arg-type]
    assert said == ["paths: cannot tell what the push changed (git diff failed: bad object);"
                    " building"]
