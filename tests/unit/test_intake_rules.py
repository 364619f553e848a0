"""Intake's decisions with plain values: tags, pull requests, and `paths:`."""

from __future__ import annotations

import pytest

from app import pipeline
from app.config import Build, Environment, Host, Project
from app.events import ZERO_SHA, PullRequest, Push
from app.pipeline.rules import changes_question, pull_request_refusal, touches


def project(**settings: object) -> Project:
    def env(name: str, branches: tuple[str, ...], tags: tuple[str, ...] = ()) -> Environment:
        return Environment(name=name, branches=branches, tags=tags, hosts=(Host("local"),),
                           path="/srv")
    return Project(name="shop", provider="github", repo="acme/shop", webhook_secret="s",
                   build=Build(commands=("make",), artifact=("dist",)),
                   environments={"staging": env("staging", ("main",)),
                                 "production": env("production", (), ("v*",)),
                                 "demo": env("demo", ("demo",), ("v*-demo",))},
                   **settings)  # type: ignore[arg-type]


def push(ref: str, after: str = "a" * 40) -> Push:
    return Push(repository="acme/shop", ref=ref, before="b" * 40, after=after, clone_url="")


def pull_request(from_fork: bool = False) -> PullRequest:
    return PullRequest(repository="acme/shop", number=7, head_sha="c" * 40, head_ref="topic",
                       base_ref="main", from_fork=from_fork, clone_url="", action="opened",
                       ref="refs/pull/7/head")


def test_tag_globs_choose_the_environments_and_branch_globs_ignore_tags() -> None:
    names = lambda result: [e.name for e in result]  # noqa: E731
    assert names(pipeline.environments_for(project(), push("refs/tags/v1.2"))) == ["production"]
    assert names(pipeline.environments_for(project(), push("refs/tags/v1.2-demo"))) == \
        ["production", "demo"]
    assert names(pipeline.environments_for(project(), push("refs/heads/demo"))) == ["demo"]
    assert pipeline.environments_for(project(), push("refs/tags/main")) == \
        "no environment deploys tag 'main'"
    assert pipeline.environments_for(project(), push("refs/tags/v1", ZERO_SHA)) == \
        "refs/tags/v1 was deleted"


def test_pull_requests_follow_the_pull_requests_setting() -> None:
    assert pull_request_refusal(project(), pull_request()) == \
        "pull requests are not built (pull_requests: off)"
    assert pull_request_refusal(project(pull_requests="build"), pull_request()) is None
    assert "comes from a fork" in str(pull_request_refusal(project(pull_requests="build"),
                                                           pull_request(from_fork=True)))
    assert pull_request_refusal(project(pull_requests="build_forks"),
                                pull_request(from_fork=True)) is None


def test_changes_are_asked_for_branches_and_pull_requests_only_with_paths() -> None:
    plain, mono = project(), project(paths=("services/shop/**",))
    assert changes_question(plain, "refs/heads/main", "b" * 40, "main") is None
    assert changes_question(mono, "refs/heads/main", "b" * 40, "main") == ("b" * 40, "main")
    assert changes_question(mono, "refs/heads/new", ZERO_SHA, None) == (ZERO_SHA, "")
    assert changes_question(mono, "refs/pull/7/head", ZERO_SHA, "main") == (ZERO_SHA, "main")
    assert changes_question(mono, "refs/tags/v1", ZERO_SHA, "main") is None  # a release


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("services/shop/**", "services/shop/app/main.py", True),
    ("services/shop/**", "services/shop", True),
    ("services/shop/**", "services/shopping/app.py", False),
    ("services/shop", "services/shop/app/main.py", True),  # a folder covers what is below
    ("libs/*.py", "libs/a.py", True),
    ("libs/*.py", "libs/sub/a.py", False),  # * stays within one folder
    ("libs/**/a.py", "libs/a.py", True),
    ("libs/**/a.py", "libs/x/y/a.py", True),
    ("**/*.md", "docs/guide/intro.md", True),
    ("*.md", "docs/intro.md", False),  # anchored at the repository root
    ("v?.txt", "v1.txt", True),
    ("a.c", "abc", False),  # no regex leaks through
    ("Dockerfile", "services/Dockerfile", False),
])
def test_paths_globs(pattern: str, path: str, expected: bool) -> None:
    assert touches([path], [pattern]) is expected


def test_touches_any_file_under_any_pattern() -> None:
    files = ["README.md", "libs/util/x.py"]
    assert touches(files, ["services/**", "libs/**"])
    assert not touches(files, ["services/**"])
    assert not touches([], ["**"])
