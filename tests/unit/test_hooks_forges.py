"""Each forge's module on the forges' own payloads: what a delivery means, what is refused."""

from __future__ import annotations

import json

import pytest
from werkzeug.datastructures import Headers

from app.events import ZERO_SHA, Ignored, PullRequest, Push
from app.hooks import HookError, gitea, github, gitlab
from app.hooks import payload as p
from tests.support import deliveries
from tests.support.deliveries import fixture, fixture_bytes

SECRET = "It's a Secret to Everybody"


# -- GitHub -----------------------------------------------------------------------------------


def test_github_push_to_a_branch() -> None:
    payload = fixture("github/push-branch-updated.json")
    push = github.event("push", payload)
    assert push == Push(
        repository="binkkatal/sample_app", ref="refs/heads/master",
        before="737d38c599c1b2991664dfc6155d6bf516fcce36", after=payload["after"],
        clone_url="https://github.com/binkkatal/sample_app.git",
        message=payload["head_commit"]["message"],
        author=payload["head_commit"]["author"]["name"], default_branch="master")
    assert push.message and push.author
    assert push.branch == "master" and not push.deleted and not push.created


def test_github_branch_creation_tag_creation_and_deletion() -> None:
    created = github.event("push", fixture("github/push-branch-created.json"))
    assert isinstance(created, Push) and created.created and created.branch == "master"
    for name in ("push-tag-created-docs.json", "push-tag-created-ghes35.json"):
        tag = github.event("push", fixture(f"github/{name}"))
        assert isinstance(tag, Push) and tag.tag == "simple-tag" and tag.branch is None
        assert tag.after == fixture(f"github/{name}")["head_commit"]["id"]
    for name in ("push-tag-deleted.json", "push-tag-deleted-with-organization.json",
                 "push-tag-deleted-with-installation.json"):
        deleted = github.event("push", fixture(f"github/{name}"))
        assert isinstance(deleted, Push) and deleted.deleted and deleted.after == ZERO_SHA


def test_github_an_annotated_tag_is_peeled_to_its_commit() -> None:
    payload = fixture("github/push-tag-created-docs.json")
    payload["after"] = "1" * 40  # the tag object, as GitHub sends for an annotated tag
    tag = github.event("push", payload)
    assert isinstance(tag, Push) and tag.after == payload["head_commit"]["id"]


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_github_pull_requests_that_bring_a_new_head(action: str) -> None:
    payload = fixture(f"github/pull_request-{action}.json")
    pr = github.event("pull_request", payload)
    assert pr == PullRequest(
        repository="Codertocat/Hello-World", number=2, action=action,
        head_sha=payload["pull_request"]["head"]["sha"], head_ref="changes", base_ref="master",
        from_fork=False, clone_url="https://github.com/Codertocat/Hello-World.git",
        ref="refs/pull/2/head", title=payload["pull_request"]["title"], author="Codertocat")


def test_github_pull_request_from_a_fork_and_closed_ones() -> None:
    payload = fixture("github/pull_request-opened.json")
    payload["pull_request"]["head"]["repo"]["full_name"] = "someone/Hello-World"
    assert github.event("pull_request", payload).from_fork  # type: ignore[union-attr]
    payload["pull_request"]["head"]["repo"] = None  # the fork was deleted
    assert github.event("pull_request", payload).from_fork  # type: ignore[union-attr]
    closed = github.event("pull_request", fixture("github/pull_request-closed.json"))
    assert closed == Ignored("Codertocat/Hello-World",
                             "pull request action 'closed' starts no build")


def test_github_pings_and_other_events_are_ignored() -> None:
    assert github.event("ping", fixture("github/ping-repo.json")) == \
        Ignored("Octocoders/Hello-World", "ping")
    organization = fixture("github/ping-organization.json")
    assert github.repository(organization) is None  # a hook-level ping names no repository
    assert github.event("ping", organization) == Ignored("", "ping")
    for name, file in (("create", "create-tag"), ("delete", "delete-tag"),
                       ("deployment", "deployment-created"), ("status", "status-default")):
        assert github.event(name, fixture(f"github/{file}.json")) == \
            Ignored("Codertocat/Hello-World", f"event {name!r} is not handled")


def test_github_bodies_as_json_or_form() -> None:
    body = fixture_bytes("github/ping-repo.json")
    assert github.read_payload("application/json; charset=utf-8", body) == json.loads(body)
    assert github.read_payload("application/x-www-form-urlencoded",
                               deliveries.form(body)) == json.loads(body)
    for content_type in ("text/plain", None, "application/xml"):
        with pytest.raises(HookError) as refused:
            github.read_payload(content_type, body)
        assert refused.value.status == 415
    for content_type, bad in (("application/json", b"{nope"), ("application/json", b"[1]"),
                              ("application/json", b"\xff\xfe"),
                              ("application/x-www-form-urlencoded", b"other=1"),
                              ("application/x-www-form-urlencoded", b"payload=%7Bnope")):
        with pytest.raises(HookError) as refused:
            github.read_payload(content_type, bad)
        assert refused.value.status == 400


def test_github_push_fields_are_checked() -> None:
    for key, value in (("ref", "main"), ("ref", None), ("after", "abc"), ("before", 7),
                       ("ref", "refs/heads/" + "x" * 400), ("ref", "refs/heads/a\x00b")):
        payload = fixture("github/push-branch-updated.json")
        payload[key] = value
        with pytest.raises(HookError) as refused:
            github.event("push", payload)
        assert refused.value.status == 400
    payload = fixture("github/push-branch-updated.json")
    del payload["repository"]
    with pytest.raises(HookError):
        github.repository(payload)


# -- GitLab -----------------------------------------------------------------------------------


def test_gitlab_push_hook() -> None:
    payload = fixture("gitlab/push-hook-docs.json")
    push = gitlab.event("Push Hook", payload)
    assert push == Push(
        repository="mike/diaspora", ref="refs/heads/master", before=payload["before"],
        after=payload["checkout_sha"], clone_url="http://example.com/mike/diaspora.git",
        message=payload["commits"][-1]["message"], author="GitLab dev user",
        default_branch="master", forge_project="15")
    payload["project"]["id"] = "15; rm -rf /"  # not a number: the path addresses it
    assert gitlab.event("Push Hook", payload).forge_project == ""  # type: ignore[union-attr]


def test_gitlab_tag_push_hook_and_branch_deletion() -> None:
    payload = fixture("gitlab/tag_push-hook-created-docs.json")
    payload["after"] = "2" * 40  # an annotated tag's object; checkout_sha is its commit
    tag = gitlab.event("Tag Push Hook", payload)
    assert isinstance(tag, Push) and tag.tag == "v1.0.0" and tag.created
    assert tag.after == payload["checkout_sha"]
    deletion = fixture("gitlab/push-hook-docs.json")
    deletion.update(after=ZERO_SHA, checkout_sha=None, commits=[], total_commits_count=0)
    deleted = gitlab.event("Push Hook", deletion)
    assert isinstance(deleted, Push) and deleted.deleted


@pytest.mark.parametrize("name", ["merge_request-hook-open-docs.json",
                                  "merge_request-hook-go-playground.json"])
def test_gitlab_merge_request_opened(name: str) -> None:
    payload = fixture(f"gitlab/{name}")
    pr = gitlab.event("Merge Request Hook", payload)
    assert pr == PullRequest(
        repository="gitlabhq/gitlab-test", number=1, action="open",
        head_sha=payload["object_attributes"]["last_commit"]["id"], head_ref="ms-viewport",
        base_ref="master", from_fork=False,
        clone_url="http://example.com/gitlabhq/gitlab-test.git",
        ref="refs/merge-requests/1/head", title="MS-Viewport", author="root",
        forge_project="1")


def test_gitlab_merge_request_updates_build_only_with_new_commits() -> None:
    payload = fixture("gitlab/merge_request-hook-open-docs.json")
    attributes = payload["object_attributes"]
    attributes["action"] = "update"
    assert gitlab.event("Merge Request Hook", payload) == Ignored(
        "gitlabhq/gitlab-test", "merge request update without new commits")
    attributes["oldrev"] = "3" * 40
    assert isinstance(gitlab.event("Merge Request Hook", payload), PullRequest)
    attributes["source_project_id"] = 99
    assert gitlab.event("Merge Request Hook", payload).from_fork  # type: ignore[union-attr]
    for action in ("close", "merge", "approved"):
        attributes["action"] = action
        assert isinstance(gitlab.event("Merge Request Hook", payload), Ignored)
    assert gitlab.event("Deployment Hook", fixture("gitlab/deployment-hook-docs.json")) == \
        Ignored("root/test-deployment-webhooks", "event 'Deployment Hook' is not handled")


def test_gitlab_token_delivery_id_and_body() -> None:
    body = fixture_bytes("gitlab/push-hook-docs.json")
    headers = Headers(deliveries.gitlab("Push Hook", "key-1", token=SECRET))
    assert gitlab.authentic(SECRET, body, headers)
    assert not gitlab.authentic(SECRET + "x", body, headers)
    assert not gitlab.authentic(SECRET, body, Headers(deliveries.gitlab("Push Hook", "k", None)))
    assert gitlab.delivery_id(headers) == "key-1"  # Idempotency-Key: the same on every retry
    assert gitlab.delivery_id(Headers(deliveries.gitlab("Push Hook", "u-1", uuid_only=True))) \
        == "u-1"
    with pytest.raises(HookError) as refused:
        gitlab.read_payload("application/x-www-form-urlencoded", deliveries.form(body))
    assert refused.value.status == 415


# -- Gitea / Forgejo --------------------------------------------------------------------------


def test_gitea_pushes() -> None:
    docs = gitea.event("push", fixture("gitea/push-docs.json"))
    assert isinstance(docs, Push) and docs.ref == "refs/heads/develop" and not docs.created
    assert docs.message == fixture("gitea/push-docs.json")["commits"][-1]["message"]
    created = gitea.event("push", fixture("gitea/push-branch-created.json"))
    assert isinstance(created, Push) and created.created and created.default_branch == "master"
    assert created.clone_url == "http://localhost:3000/example/example.git"
    for name in ("create", "delete"):
        file = "create-branch" if name == "create" else "delete-branch"
        assert gitea.event(name, fixture(f"gitea/{file}.json")) == \
            Ignored("example/example", f"event {name!r} is not handled")


def test_gitea_pull_request_from_a_fork() -> None:
    pr = gitea.event("pull_request", fixture("gitea/pull-request-fork.json"))
    assert pr == PullRequest(
        repository="example/example", number=2, action="opened",
        head_sha="48e773f892a831faa47c0a160d1b7f0cd369ae2a", head_ref="master",
        base_ref="master", from_fork=True, clone_url="http://localhost:3000/example/example.git",
        ref="refs/pull/2/head", title="update", author="example2")
    payload = fixture("gitea/pull-request-fork.json")
    payload["action"] = "synchronized"  # Gitea's spelling of new commits
    payload["pull_request"]["head"]["repo_id"] = 1
    assert not gitea.event("pull_request", payload).from_fork  # type: ignore[union-attr]
    payload["action"] = "closed"
    assert isinstance(gitea.event("pull_request", payload), Ignored)


def test_gitea_and_forgejo_signatures_are_hex_without_prefix() -> None:
    body = fixture_bytes("gitea/push-docs.json")
    for forgejo in (False, True):
        headers = Headers(deliveries.gitea(body, "push", "d", SECRET, forgejo=forgejo))
        assert gitea.authentic(SECRET, body, headers)
        assert not gitea.authentic("another", body, headers)
        assert not gitea.authentic(SECRET, body + b" ", headers)
        assert gitea.delivery_id(headers) == "d" and gitea.event_name(headers) == "push"
    unsigned = Headers(deliveries.gitea(body, "push", "d", None))  # empty signature headers
    assert not gitea.authentic(SECRET, body, unsigned)
    prefixed = Headers({"X-Gitea-Signature": "sha256=" + deliveries.hmac_hex(SECRET, body)})
    assert not gitea.authentic(SECRET, body, prefixed)


# -- shared checks ----------------------------------------------------------------------------


def test_headers_naming_the_delivery_are_checked() -> None:
    assert p.header("72d3162e-cc78-11e3-81ab-4c9367dc0958", "delivery id", 200)
    for value in (None, "", "x" * 201, "a\x01b"):
        with pytest.raises(HookError) as refused:
            p.header(value, "delivery id", 200)
        assert refused.value.status == 400
