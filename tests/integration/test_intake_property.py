"""Property: whatever arrives at the hooks (bodies, headers, content types), the answer is
never a 5xx while Redis and the database are up, and no work is queued without the right
signature or token."""

from __future__ import annotations

import json
from typing import Any

import redis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.context import Context
from app.models import Build
from tests.support import conveyor, deliveries
from tests.support.intake import (  # noqa: F401 - fixtures are found by name
    client_fixture,
    ctx_fixture,
    empty_history,
    usual_event,
)

PAYLOADS = {
    "github": ["github/push-branch-created.json", "github/push-tag-created-docs.json",
               "github/pull_request-synchronize.json", "github/ping-repo.json",
               "github/ping-organization.json"],
    "gitlab": ["gitlab/push-hook-docs.json", "gitlab/merge_request-hook-open-docs.json"],
    "gitea": ["gitea/push-branch-created.json", "gitea/pull-request-fork.json"],
}
EVENTS = ["push", "pull_request", "ping", "Push Hook", "Tag Push Hook", "Merge Request Hook",
          "issues", ""]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain", "",
                 "application/json; charset=utf-8", "multipart/form-data; boundary=x"]

# Header values as they reach the app: Latin-1, control characters and all, some long.
header_text = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"),
                      max_size=40) | st.sampled_from(["d" * 10_000, "d\x00", "d\x7f"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50)
    | st.sampled_from(["0" * 40, "a" * 40, "refs/heads/main", "refs/tags/v1", "main"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=3),
    max_leaves=8)


# Text a forge's JSON encoder never writes, put where a field's value goes.
odd_literals = st.sampled_from(["NaN", "Infinity", '"\\ud800"', '"\\udfff x"', "9" * 5000,
                                "1e999", '"\\u0000"', "[" * 70 + "]" * 70])


@st.composite
def odd_bodies(draw: st.DrawFn, text: bytes) -> bytes:
    """The payload's JSON made into something no forge sends: nested too deep, a literal
    Python's reader takes but a forge never writes, a key given twice, bytes not UTF-8."""
    kind = draw(st.sampled_from(["deep", "literal", "duplicate", "bytes", "bom"]))
    if kind == "deep":
        depth = draw(st.sampled_from([63, 64, 65, 1000, 100_000]))
        return text[:-1] + b', "extra": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "literal":
        return text[:-1] + b', "extra": ' + draw(odd_literals).encode() + b"}"
    if kind == "duplicate":
        key = draw(st.sampled_from(["ref", "after", "repository", "project", "pull_request"]))
        value = json.dumps(draw(json_values)).encode()
        return text[:-1] + b', "' + key.encode() + b'": ' + value + b"}"
    if kind == "bytes":
        at = draw(st.integers(0, len(text)))
        odd = draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3", b"\x00"]))
        return text[:at] + odd + text[at:]
    return b"\xef\xbb\xbf" + text


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str], bool]:
    """(provider, body, headers, whether the credentials are right for the body sent).

    Most parts are what the forge sends, some drawn at random, so that requests reach every
    step of the flow: body format, project, credentials, headers, payload fields.
    """
    def sometimes(strategy: st.SearchStrategy[Any], usual: Any) -> Any:
        return draw(strategy) if draw(st.sampled_from([False, False, False, True])) else usual

    provider = draw(st.sampled_from(sorted(PAYLOADS)))
    name = draw(st.sampled_from(PAYLOADS[provider]))
    payload: Any = deliveries.fixture(name)
    for _ in range(draw(st.integers(0, 2))):  # mutate a field somewhere in the payload
        target = payload
        for key in draw(st.lists(st.sampled_from(["repository", "pull_request", "head",
                                                  "project", "object_attributes"]),
                                 max_size=2)):
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict) and target:
            target[draw(st.sampled_from(sorted(target)))] = draw(json_values)
    text = json.dumps(payload).encode()
    body = sometimes(st.one_of(st.just(deliveries.form(text)), st.binary(max_size=300),
                               json_values.map(lambda v: json.dumps(v).encode()),
                               odd_bodies(text), odd_bodies(text).map(deliveries.form_bytes)),
                     text)
    event_name = sometimes(st.sampled_from(EVENTS) | header_text, usual_event(name))
    delivery = sometimes(header_text, f"d-{draw(st.integers(0, 10**9))}")
    signer = sometimes(st.sampled_from(["wrong secret", "other body", "none", "garbage"]),
                       "right")
    secret = {"right": conveyor.SECRET, "other body": conveyor.SECRET}.get(signer, "nope")
    signed_body = body + b"x" if signer == "other body" else body
    headers = deliveries.signed(provider, signed_body, event_name, delivery,
                                None if signer == "none" else secret)
    if signer == "garbage":
        for header in ("X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature"):
            if header in headers:
                headers[header] = draw(st.text(max_size=80))
    headers["Content-Type"] = sometimes(st.sampled_from(CONTENT_TYPES), headers["Content-Type"])
    headers = {k: v for k, v in headers.items() if _header_safe(v)}
    # GitLab's token is the secret itself, not a signature of the body.
    right = signer == "right" or (signer == "other body" and provider == "gitlab")
    return provider, body, headers, right


def _header_safe(value: str) -> bool:
    """What an HTTP header can carry: Latin-1 (as WSGI reads it), no line breaks."""
    return all(ord(c) < 256 for c in value) and not any(c in value for c in "\r\n")


def work(ctx: Context, queues: redis.Redis) -> tuple[int, int]:
    with ctx.db.session() as session:
        builds = session.scalar(select(func.count()).select_from(Build)) or 0
    return builds, len(queues.keys("rq:job:*"))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests())
def test_no_5xx_and_no_work_without_the_right_credentials(
        client: FlaskClient, ctx: Context, redis_db: redis.Redis, redis_url: str,
        request: tuple[str, bytes, dict[str, str], bool]) -> None:
    provider, body, headers, right = request
    empty_history(ctx, redis_url)  # each example starts from an empty history and queue
    before = work(ctx, redis_db)
    answer = client.post(f"/hooks/{provider}", data=body, headers=headers)
    assert answer.status_code < 500, answer.get_data(as_text=True)
    assert answer.is_json and isinstance(answer.json, dict)
    if not right:
        assert answer.status_code in (400, 401, 404, 415), answer.json
        assert work(ctx, redis_db) == before
    if answer.status_code == 202:
        assert right and answer.json["builds"]
    event(f"answer {answer.status_code}")
