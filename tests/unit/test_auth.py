"""Named API tokens (SPEC §2): parsing CONVEYOR_API_TOKENS and telling who a token is."""

from __future__ import annotations

import pytest

from app import auth
from app.settings import Settings, SettingsError


def settings(**env: str) -> Settings:
    return Settings.from_env({"CONVEYOR_DATA_DIR": "/tmp/x", **env})


def test_the_single_token_is_admin_and_named_tokens_follow() -> None:
    found = settings(CONVEYOR_API_TOKEN="root-token-1",
                     CONVEYOR_API_TOKENS=" alice:alice-token , ci:ci:token-with-colon,")
    assert found.api_tokens == (("admin", "root-token-1"), ("alice", "alice-token"),
                                ("ci", "ci:token-with-colon"))
    assert auth.identify(found, "alice-token") == "alice"
    assert auth.identify(found, "root-token-1") == "admin"
    assert auth.identify(found, "ci:token-with-colon") == "ci"
    assert auth.identify(found, "alice-token ") is None
    assert auth.identify(found, "") is None
    assert auth.identify(found, None) is None
    assert auth.enabled(found)


def test_named_tokens_alone_enable_the_api() -> None:
    found = settings(CONVEYOR_API_TOKENS="alice:alice-token")
    assert auth.enabled(found) and auth.identify(found, "alice-token") == "alice"
    assert not auth.enabled(settings())


@pytest.mark.parametrize(("listed", "says"), [
    ("alice", "has no token"),
    ("alice:", "has no token"),
    ("al ice:tok", "is not a token name"),
    ("alice:a,alice:b", "given twice"),
    ("admin:other", "CONVEYOR_API_TOKEN's"),
])
def test_a_wrong_entry_is_named(listed: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        settings(CONVEYOR_API_TOKEN="root-token-1", CONVEYOR_API_TOKENS=listed)


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None),
    ("", None), (None, None), ("abc", None)])
def test_bearer(header: str | None, token: str | None) -> None:
    assert auth.bearer(header) == token
