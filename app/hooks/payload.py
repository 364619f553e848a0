"""Reading forge payloads: body formats, and fields checked before they go any further."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import parse_qs

from app.events import Push
from app.hooks import HookError

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# Both are matched whole (fullmatch): `^...$` would let a final newline through.
_SHA = re.compile(r"[0-9a-f]{40}")
# What fits the history's columns and can be shown and logged as it is.
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")
MAX_REF = 400
MAX_NAME = 400
MAX_DELIVERY_ID = 200
MAX_EVENT = 100
MAX_URL = 2000
MAX_NUMBER = 2**31 - 1  # the forges' pull request numbers are 32-bit
MAX_DEPTH = 64  # no forge's payload nests deeper (SPEC §4)
# Where json.loads can make a lone surrogate: a \uD800-\uDFFF escape (pairs are joined).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def mimetype(content_type: str | None) -> str:
    """`application/json` out of `application/json; charset=utf-8`."""
    return (content_type or "").split(";")[0].strip().lower()


def read(content_type: str | None, body: bytes, allowed: tuple[str, ...],
         forge: str) -> dict[str, Any]:
    """The JSON object of a JSON body, or of a form body's `payload=` field."""
    kind = mimetype(content_type)
    if kind not in allowed:
        sent = f"{kind!r}" if kind else "no content type"
        raise HookError(415, f"{forge} sends {' or '.join(allowed)}, not {sent}")
    text = _utf8(body)
    payload = _json(_form_payload(text) if kind == FORM else text)
    if not isinstance(payload, dict):
        raise HookError(400, "the payload must be a JSON object")
    if not _nested_within(payload, MAX_DEPTH):
        raise HookError(400, f"the payload is nested deeper than {MAX_DEPTH} levels")
    return payload


def _utf8(body: bytes) -> str:
    # Strictly: json.loads would take UTF-16 and UTF-8-encoded surrogates, which forges never
    # send and which could not be stored or logged later.
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HookError(400, "the body is not valid UTF-8") from None


def _json(text: str) -> Any:
    """The JSON value of `text`; 400 for anything a forge's JSON encoder never writes."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # the C reader's own depth limit, far past MAX_DEPTH
        raise HookError(400, f"the payload is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # also an integer past Python's digit limit
        raise HookError(400, "the body is not valid JSON") from None
    if _SURROGATE_ESCAPE.search(text) and not _encodable(value):
        raise HookError(400, "the payload has text with a lone UTF-16 surrogate (\\ud800)")
    return value


def _no_constant(literal: str) -> Any:
    raise ValueError(f"{literal} is not JSON")


def _encodable(value: Any) -> bool:
    """Whether every string in `value` can be written as UTF-8 (no lone surrogates), which
    the database, the log and Redis need; checked whole, in C, only when an escape hints."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _nested_within(value: Any, limit: int) -> bool:
    """Whether no path into `value` goes through more than `limit` arrays and objects;
    level by level, without recursion, so that any depth can be measured."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _depth in range(limit):
        if not level:
            return True
        below: list[Any] = []
        for container in level:
            items = container.values() if isinstance(container, dict) else container
            below.extend(item for item in items if isinstance(item, (dict, list)))
        level = below
    return not level


def _form_payload(body: str) -> str:
    try:
        values = parse_qs(body, strict_parsing=False).get("payload")
    except ValueError:
        values = None
    if not values:
        raise HookError(400, "a form-encoded delivery must carry a payload= field")
    return values[0]


def hmac_sha256(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the raw body, keyed with the webhook secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def same(expected: str, offered: str | None) -> bool:
    """Constant-time comparison of a secret value with what the request offered."""
    if offered is None:
        return False
    return hmac.compare_digest(expected.encode(), offered.encode("utf-8", "replace"))


def field(data: Any, *path: str) -> Any:
    """`data[path[0]][path[1]]...`, or None where the payload has no such object."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def objects(data: Any, *path: str) -> list[dict[str, Any]]:
    """The objects of a list field (commits), or [] when it is missing or not a list."""
    value = field(data, *path)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def obj(data: Any, *path: str) -> dict[str, Any]:
    """An object field (head_commit), or {} when it is missing or not an object."""
    value = field(data, *path)
    return value if isinstance(value, dict) else {}


def text(data: Any, *path: str) -> str:
    """A text field, or "" when it is missing or not text (for messages, names)."""
    value = field(data, *path)
    return value if isinstance(value, str) else ""


def name(data: Any, *path: str, what: str) -> str:
    """A required name (repository, branch): printable text of sensible length."""
    value = field(data, *path)
    if not isinstance(value, str) or not value:
        raise HookError(400, f"the payload has no {what} ({'.'.join(path)})")
    return _usable(value, what, MAX_NAME)


def optional_name(data: Any, *path: str, what: str, size: int = MAX_NAME) -> str:
    """A name or URL the forge may leave out (clone URL, default branch): "" when it is
    missing or not text; text that is there is stored and handed to git, so it is checked
    like a required name."""
    value = field(data, *path)
    if not isinstance(value, str) or not value:
        return ""
    return _usable(value, what, size)


def _usable(value: str, what: str, size: int) -> str:
    if len(value) > size or not _PRINTABLE.fullmatch(value):
        raise HookError(400, f"the payload's {what} is not a name Conveyor can use")
    return value


def sha(data: Any, *path: str, what: str) -> str:
    """A required commit id: 40 lowercase hexadecimal characters."""
    value = field(data, *path)
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise HookError(400, f"{what} ({'.'.join(path)}) must be a 40-character commit id")
    return value


def ref(data: Any, *path: str) -> str:
    """A required full ref (`refs/heads/...`, `refs/tags/...`)."""
    value = name(data, *path, what="ref")
    if not value.startswith("refs/") or len(value) > MAX_REF:
        raise HookError(400, f"the ref {value[:100]!r} is not a full ref (refs/...)")
    return value


def number(data: Any, *path: str, what: str) -> int:
    """A required positive whole number (a pull request's number)."""
    value = field(data, *path)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_NUMBER:
        raise HookError(400, f"the payload has no {what} ({'.'.join(path)})")
    return value


def header(value: str | None, what: str, size: int) -> str:
    """A required header naming the delivery or its event: printable, of sensible length."""
    if not value:
        raise HookError(400, f"the {what} header is missing")
    if len(value) > size or not _PRINTABLE.fullmatch(value):
        raise HookError(400, f"the {what} header is not one a forge sends")
    return value


def push(repo: str, data: dict[str, Any]) -> Push:
    """A push in the shape GitHub, Gitea and Forgejo share (`ref`, `before`, `after`,
    `head_commit`, `commits`, `repository`)."""
    ref_name = ref(data, "ref")
    after = sha(data, "after", what="after")
    head = obj(data, "head_commit") or (objects(data, "commits") or [{}])[-1]
    if ref_name.startswith("refs/tags/") and head.get("id"):
        after = sha(head, "id", what="the tag's commit")  # an annotated tag's object is not it
    return Push(
        repository=repo, ref=ref_name, before=sha(data, "before", what="before"), after=after,
        clone_url=clone_url(data, "repository", "clone_url"),
        message=text(head, "message"), author=text(head, "author", "name"),
        default_branch=default_branch(data, "repository", "default_branch")
        or default_branch(data, "repository", "master_branch") or None,
    )


def clone_url(data: Any, *path: str) -> str:
    """The repository's clone URL, "" when the payload has none."""
    return optional_name(data, *path, what="clone URL", size=MAX_URL)


def default_branch(data: Any, *path: str) -> str:
    """The repository's default branch, "" when the payload has none."""
    return optional_name(data, *path, what="default branch")
