"""Which chat event a state change is, who gets it, and how a message lists commits."""

from __future__ import annotations

from app.pipeline.chat import chat_events, chosen_webhooks, who_acted
from app.report.chat import Commit, commit_lines, message_body


def test_each_state_change_is_its_event() -> None:
    assert chat_events("running") == ("started",)
    assert chat_events("succeeded") == ("succeeded",)
    assert chat_events("failed") == ("failed",)
    assert chat_events("awaiting_approval") == ("awaiting_approval",)
    assert chat_events("queued") == ()
    assert chat_events("superseded") == ()
    assert chat_events("failed", build=True) == ("build_failed",)
    assert chat_events("succeeded", build=True) == ()


def test_a_deployment_put_back_is_rolled_back_and_still_a_failure() -> None:
    assert chat_events("failed", put_back=True) == ("rolled_back", "failed")
    assert chat_events("succeeded", kind="rollback") == ("rolled_back",)
    assert chosen_webhooks(("rolled_back", "failed"),
                           [("succeeded",), ("failed",), ("rolled_back",)]) == [1, 2]


def test_at_most_ten_commits_then_how_many_more() -> None:
    added = [Commit(f"{n:040x}", f"subject {n}") for n in range(10)]
    lines = commit_lines(added, 2)
    assert lines[0] == "Commits:" and len(lines) == 12
    assert lines[-1] == "and 2 more"
    assert commit_lines(added[:2], 0) == ["Commits:", f"• {'0' * 7} subject 0",
                                          f"• {'0' * 7} subject 1"]
    assert commit_lines([], 0) == []


def test_an_approval_request_links_to_the_deployment() -> None:
    link = "https://deploy.example.com/deployments/7"
    body = message_body("awaiting_approval", "shop", "production",
                        Commit("a" * 40, "Fix", "Ada"), link)
    assert f"<{link}>" in body["text"]
    attachment = body["attachments"][0]  # type: ignore[index]
    assert attachment["title_link"] == link
    assert attachment["title"] == "Awaiting approval: shop to production (aaaaaaa)"


def test_a_message_says_who_asked_for_the_deployment() -> None:
    assert who_acted("promotion", None, "alice") == "approved by alice"
    assert who_acted("deploy", "ci", None) == "deployed by hand by ci"
    assert who_acted("rollback", "bob", None) == "rolled back by bob"
    assert who_acted("retry", "admin", None) == "retried by admin"
    assert who_acted("deploy", None, None) is None  # a push: nobody asked
    body = message_body("succeeded", "shop", "production", Commit("a" * 40, "Fix", "Ada"),
                        "https://deploy.example.com/deployments/7", by="approved by alice")
    assert body["attachments"][0]["text"].splitlines()[0] == \
        f"{'a' * 7} Fix · by Ada · approved by alice"
