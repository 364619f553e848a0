"""The dashboard's wording: durations, moments, triggers, states, and the session's key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.settings import Settings
from app.ui import format as fmt
from app.ui.signin import secret_key

NOW = datetime(2026, 12, 5, 17, 0, 0, tzinfo=UTC)


def test_durations_read_as_people_say_them() -> None:
    assert [fmt.duration(s) for s in (None, -1, 0, 4.4, 59.6, 60, 185, 3600, 7440)] == [
        "—", "—", "0 s", "4 s", "1 min", "1 min", "3 min 5 s", "1 h", "2 h 4 min"]


def test_took_counts_a_running_one_so_far_and_reads_naive_times_as_utc() -> None:
    started = NOW - timedelta(seconds=41)
    assert fmt.took(started, NOW) == "41 s"
    assert fmt.took(started.replace(tzinfo=None), NOW.replace(tzinfo=None)) == "41 s"
    assert fmt.took(started, None, now=NOW) == "running 41 s"
    assert fmt.took(None, None) == "—"


def test_ago() -> None:
    ages = (3, 30, 300, 7200, 86400, 3 * 86400)
    assert [fmt.ago(NOW - timedelta(seconds=s), now=NOW) for s in ages] == [
        "just now", "30 s ago", "5 min ago", "2 h ago", "1 day ago", "3 days ago"]
    assert fmt.ago(None) == "—"
    assert fmt.moment(NOW) == "2026-12-05 17:00:00 UTC"


def test_triggers_say_what_started_a_deployment_and_who_asked() -> None:
    assert fmt.trigger("deploy", "refs/heads/main", None) == "push to main"
    assert fmt.trigger("deploy", "refs/tags/v1.2", None) == "push to v1.2"
    assert fmt.trigger("deploy", "refs/heads/main", "alice") == "by hand by alice"
    assert fmt.trigger("promotion", "refs/heads/main", None, 3) == "promotion of #3"
    assert fmt.trigger("rollback", "refs/heads/main", "bob") == "rollback by bob"
    assert fmt.trigger("retry", "refs/heads/main", "ci", 7) == "retry of #7 by ci"


def test_states_and_shas() -> None:
    assert fmt.state_words("awaiting_approval") == "awaiting approval"
    assert [fmt.state_class(s) for s in ("succeeded", "failed", "running", "superseded",
                                         "nonsense")] == ["good", "bad", "busy", "off", "plain"]
    assert fmt.short_sha("1a2b3c4d5e") == "1a2b3c4" and fmt.branch("main") == "main"


def settings(**kw: object) -> Settings:
    base = {"config_path": Path("c.yml"), "redis_url": "", "database_url": "",
            "data_dir": Path("."), "api_token": None, "secret_key": None, "api_tokens": ()}
    return Settings(**{**base, **kw})  # type: ignore[arg-type]


def test_the_session_key_is_the_setting_else_derived_from_every_token() -> None:
    assert secret_key(settings(secret_key="set-by-hand")) == "set-by-hand"
    tokens = (("admin", "t1"), ("alice", "t2"))
    derived = secret_key(settings(api_tokens=tokens))
    assert derived == secret_key(settings(api_tokens=tokens[::-1]))  # every worker agrees
    assert derived not in ("t1", "t2") and len(derived) == 64
    assert derived != secret_key(settings(api_tokens=(("admin", "t1"), ("alice", "t3"))))
    assert secret_key(settings()) != secret_key(settings())  # no token: random
