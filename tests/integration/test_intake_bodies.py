"""Bodies and headers no forge sends, at each of the three hooks: each is answered 4xx
(never 5xx), before or after its signature is checked, and recorded; the JSON a forge does
send (64 levels deep, duplicate keys, surrogate pairs, 20 MiB) is still taken."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import select

from app.context import Context
from app.models import Delivery
from tests.support import conveyor, deliveries
from tests.support.intake import (  # noqa: F401 - fixtures are found by name
    client_fixture,
    ctx_fixture,
    empty_history,
    usual_event,
)

PUSHES = {"github": "github/push-branch-created.json", "gitlab": "gitlab/push-hook-docs.json",
          "gitea": "gitea/push-branch-created.json"}
FORMS = ("github", "gitea")  # GitLab sends JSON only


def nested(levels: int) -> Any:
    """`levels` arrays, one in another."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def with_literal(payload: dict[str, Any], literal: str) -> str:
    """The payload's JSON with one more field, `extra`, written as `literal` is."""
    return json.dumps(payload)[:-1] + f', "extra": {literal}}}'


def bad_texts(payload: dict[str, Any]) -> dict[str, str]:
    """JSON texts a forge's encoder never writes, each around the real payload."""
    return {
        "200,000 [": "[" * 200_000,
        "100,000 {": '{"a": ' * 100_000,
        "65 levels": json.dumps({**payload, "extra": nested(64)}),
        "5,000-digit integer": with_literal(payload, "9" * 5000),
        "NaN": with_literal(payload, "NaN"),
        "Infinity": with_literal(payload, "-Infinity"),
        "lone high surrogate": with_literal(payload, '"\\ud800"'),
        "lone low surrogate key": json.dumps(payload)[:-1] + ', "\\uDC00x": 1}',
        "truncated": json.dumps(payload)[:-2],
        "not an object": json.dumps([payload]),
    }


def bad_bodies(payload: dict[str, Any]) -> dict[str, bytes]:
    """Bodies that are not UTF-8 JSON text, as well as the bad texts, UTF-8 encoded."""
    text = json.dumps(payload)
    return {**{name: value.encode() for name, value in bad_texts(payload).items()},
            "invalid UTF-8": text[:-1].encode() + b', "extra": "\xff\xfe"}',
            "UTF-8-encoded surrogate": text[:-1].encode() + b', "extra": "\xed\xa0\x80"}',
            "byte order mark": b"\xef\xbb\xbf" + text.encode(),
            "UTF-16": text.encode("utf-16")}


def bad_forms(payload: dict[str, Any]) -> dict[str, bytes]:
    """Form bodies carrying no JSON object a forge would send in `payload=`."""
    text = json.dumps(payload)
    return {**{f"form, {name}": deliveries.form(value.encode())
               for name, value in bad_texts(payload).items()},
            "form, broken percent-encoding": b"payload=%7B%ZZ%" + text.encode()[2:],
            "form, percent-encoded invalid UTF-8": b"payload=%FF%FE",
            "form, invalid UTF-8": b"payload=" + text.encode()[:-1] + b"\xff}",
            "form, no payload": b"other=" + text.encode(),
            "form, payload a number": b"payload=1",
            "form, empty": b""}


def recorded(ctx: Context) -> list[int]:
    """The status codes of the deliveries recorded."""
    with ctx.db.session() as session:
        return list(session.scalars(select(Delivery.status_code).order_by(Delivery.id)))


def post(client: FlaskClient, provider: str, body: bytes, *, secret: str | None,
         content_type: str = "application/json", delivery: str = "d-1",
         event: str | None = None, **headers: str) -> Any:
    sent = deliveries.signed(provider, body,
                             usual_event(PUSHES[provider]) if event is None else event,
                             delivery, secret)
    return client.post(f"/hooks/{provider}", data=body,
                       headers={**sent, "Content-Type": content_type, **headers})


@pytest.mark.parametrize("provider", sorted(PUSHES))
def test_a_body_no_forge_sends_is_a_400_signed_or_not(
        client: FlaskClient, ctx: Context, provider: str) -> None:
    payload = deliveries.fixture(PUSHES[provider])
    bodies = [(name, body, "application/json") for name, body in bad_bodies(payload).items()]
    if provider in FORMS:
        bodies += [(name, body, deliveries.FORM_TYPE) for name, body in bad_forms(payload).items()]
    wrong = []
    for name, body, content_type in bodies:
        for secret in (conveyor.SECRET, None, "not the secret"):
            answer = post(client, provider, body, secret=secret, content_type=content_type)
            if answer.status_code != 400 or not answer.json.get("error"):
                wrong.append(f"{name}, secret {secret!r}: {answer.status_code} "
                             f"{answer.get_data(as_text=True)[:200]}")
    assert not wrong, "\n".join(wrong)
    assert recorded(ctx) == [400] * 3 * len(bodies)


def test_past_64_levels_the_answer_says_so(client: FlaskClient) -> None:
    for provider in sorted(PUSHES):
        body = json.dumps({**deliveries.fixture(PUSHES[provider]),
                           "extra": nested(64)}).encode()
        answer = post(client, provider, body, secret=conveyor.SECRET)
        assert answer.json == {"error": "the payload is nested deeper than 64 levels"}
        answer = post(client, provider, b"[" * 200_000, secret=None)
        assert answer.json == {"error": "the payload is nested deeper than 64 levels"}


def good_texts(payload: dict[str, Any]) -> dict[str, str]:
    """JSON a forge may send: 64 levels deep, a key twice (the last counts), a surrogate
    pair, a float and a large integer (but within Python's digit limit)."""
    return {"64 levels": json.dumps({**payload, "extra": nested(63)}),
            "duplicate key": with_literal(payload, '1, "extra": {"a": 1, "a": [2]}'),
            "surrogate pair": with_literal(payload, '"\\ud83d\\ude80 \\u00e9"'),
            "numbers": with_literal(payload, f"[1.5e300, -0.0, {'9' * 4000}]")}


@pytest.mark.parametrize("provider", sorted(PUSHES))
def test_json_a_forge_may_send_is_taken(
        client: FlaskClient, redis_url: str, ctx: Context, provider: str) -> None:
    for name, text in good_texts(deliveries.fixture(PUSHES[provider])).items():
        empty_history(ctx, redis_url)
        answer = post(client, provider, text.encode(), secret=conveyor.SECRET)
        assert answer.status_code == 202, (name, answer.json)
        if provider in FORMS:
            empty_history(ctx, redis_url)
            answer = post(client, provider, deliveries.form(text.encode()),
                          secret=conveyor.SECRET, content_type=deliveries.FORM_TYPE)
            assert answer.status_code == 202, (name, "form", answer.json)


def test_a_20_mib_push_is_taken(client: FlaskClient) -> None:
    payload = deliveries.fixture(PUSHES["github"])
    commit = payload["commits"][-1]
    payload["commits"] = [commit] * (20 * 2**20 // len(json.dumps(commit)))
    body = json.dumps(payload).encode()
    assert 20 * 2**20 <= len(body) <= 25 * 2**20
    answer = post(client, "github", body, secret=conveyor.SECRET)
    assert answer.status_code == 202, answer.json


ODD_HEADERS = {"control character": "d\x01\x1b[2J", "DEL": "d\x7f", "Latin-1": "dé\xa0\xff",
               "tab": "d\tx", "100,000 characters": "d" * 100_000, "empty": ""}


@pytest.mark.parametrize("provider", sorted(PUSHES))
def test_an_odd_delivery_id_or_event_header_is_never_a_5xx(
        client: FlaskClient, ctx: Context, provider: str) -> None:
    body = deliveries.fixture_bytes(PUSHES[provider])
    for header, value in ODD_HEADERS.items():
        for secret in (conveyor.SECRET, None):
            for answer in (post(client, provider, body, secret=secret, delivery=value),
                           post(client, provider, body, secret=secret, event=value,
                                delivery=f"d-{header}")):
                # Latin-1 is printable: taken as an id or an (unhandled) event's name.
                taken = (200, 202, 400) if secret else (401,)
                assert answer.status_code in taken, (header, answer.json)
    statuses = recorded(ctx)
    assert len(statuses) == 4 * len(ODD_HEADERS) and max(statuses) < 500, statuses


CONTENT_TYPES = {"application/json; charset=latin-1": 202, "APPLICATION/JSON ;;; x=\"y\"": 202,
                 "application/json; boundary=\x7f": 202, "application/jsonx": 415,
                 "application/json\x00": 415, "application/" + "j" * 100_000: 415,
                 "; charset=utf-8": 415, "text/plain; charset=utf-8": 415}


@pytest.mark.parametrize("provider", sorted(PUSHES))
def test_an_odd_content_type_is_read_by_its_media_type(
        client: FlaskClient, redis_db: redis.Redis, provider: str) -> None:
    body = deliveries.fixture_bytes(PUSHES[provider])
    for number, (content_type, status) in enumerate(CONTENT_TYPES.items()):
        answer = post(client, provider, body, secret=conveyor.SECRET,
                      content_type=content_type, delivery=f"d-{number}")
        taken = (202, 200) if status == 202 else (status,)  # 200: the same push again
        assert answer.status_code in taken, (content_type, answer.json)
