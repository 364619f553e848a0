"""The deployment decisions in `app.pipeline.rules`, with plain values."""

from __future__ import annotations

import pytest

from app.pipeline import rules

R1, R2, R3, R4 = (f"20261128T22150{n}Z-abc1234" for n in range(1, 5))


@pytest.mark.parametrize(("count", "batch", "expected"), [
    (5, 0, [[0, 1, 2, 3, 4]]),
    (5, 2, [[0, 1], [2, 3], [4]]),
    (5, 5, [[0, 1, 2, 3, 4]]),
    (5, 9, [[0, 1, 2, 3, 4]]),
    (1, 1, [[0]]),
    (0, 0, []),
])
def test_activation_batches(count: int, batch: int, expected: list[list[int]]) -> None:
    assert [list(b) for b in rules.activation_batches(count, batch)] == expected


@pytest.mark.parametrize(("state", "bad"), [
    ("failed", True), ("error", False), ("succeeded", False), ("canceled", False),
])
def test_only_a_failed_deployment_marks_its_release_bad(state: str, bad: bool) -> None:
    assert rules.marks_release_bad(state) is bad


def test_the_rollback_target_is_the_newest_good_release_before_the_live_one() -> None:
    releases = [(R1, True, False), (R2, True, True), (R3, False, False), (R4, True, False)]
    assert rules.rollback_target(releases, live=R4) == R1  # R2 bad, R3 never went live
    assert rules.rollback_target(releases, live=None) == R4
    assert rules.rollback_target(releases, live=R1) is None
    assert rules.rollback_target([], live=R1) is None


def test_a_deployment_is_an_error_only_when_every_failed_host_was_unreachable() -> None:
    assert rules.failure_state([True, True]) == "error"
    assert rules.failure_state([True, False]) == "failed"
    assert rules.failure_state([False]) == "failed"
