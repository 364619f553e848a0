"""The deployment decisions in `app.pipeline.rules`, with plain values."""

from __future__ import annotations

import pytest

from app import config as cfg
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


def _environment(hosts: int, **settings: object) -> cfg.Environment:
    return cfg.Environment(name="staging", branches=("main",), path="/srv/shop",
                           hosts=tuple(cfg.Host(spec=f"deploy@10.0.0.{n}") for n in range(hosts)),
                           **settings)  # type: ignore[arg-type]


def test_a_deployments_deadline_covers_every_step_at_its_own_deadline_plus_the_undo() -> None:
    ssh = cfg.Ssh(connect_timeout=10, command_timeout=600)
    one = rules.deployment_deadline(_environment(1), ssh)
    # prepare (connect + prepare, upload, prepare), activate (switch + after_activate),
    # prune, then the undo and RQ's own margin.
    assert one == (10 + 3 * 600) + (2 * 600) + 600 + rules.UNDO_SECONDS + 60
    check = cfg.Healthcheck(command="true", retries=3, interval=2, timeout=10)
    assert rules.deployment_deadline(_environment(1, healthcheck=check), ssh) == \
        one + check.longest
    # Hosts beyond `parallel` add prepare rounds; each batch adds an activation.
    assert rules.deployment_deadline(_environment(4, parallel=2, batch=1), ssh) > \
        rules.deployment_deadline(_environment(4), ssh)


def test_a_health_checks_longest_is_every_attempt_timed_out_and_the_waits() -> None:
    check = cfg.Healthcheck(command="true", retries=3, interval=2, timeout=10)
    assert check.longest == 3 * (10 + cfg.Healthcheck.KILL_AFTER) + 2 * 2


def test_one_lock_retry_per_deployment_and_interval() -> None:
    seconds = rules.LOCK_RETRY_SECONDS
    assert rules.lock_retry_job_id(7, 100 * seconds) == rules.lock_retry_job_id(7, 100.9 * seconds)
    assert rules.lock_retry_job_id(7, 100 * seconds) != rules.lock_retry_job_id(7, 101 * seconds)
    assert rules.lock_retry_job_id(7, 0) != rules.lock_retry_job_id(8, 0)


def test_the_watch_checks_every_interval_until_its_end_and_bounds_its_own_time() -> None:
    check = cfg.Healthcheck(command="true", retries=3, interval=2, timeout=10, watch=7)
    assert check.watch_rounds == (2, 4, 6)
    assert check.once.retries == 1 and check.once.longest == 10 + cfg.Healthcheck.KILL_AFTER
    assert check.watch_longest(600) == 7 + 3 * check.once.longest + 600
    short = cfg.Healthcheck(command="true", interval=5, watch=3)
    assert short.watch_rounds == (3,)  # a watch shorter than an interval still checks once
    none = cfg.Healthcheck(command="true")
    assert (none.watch, none.watch_rounds, none.watch_longest(600)) == (0, (), 0)


@pytest.mark.parametrize(("facts", "state"), [
    ({}, "succeeded"),
    ({"failed_unreachable": [False]}, "failed"),
    ({"failed_unreachable": [True, True]}, "error"),
    ({"failed_unreachable": [True, False]}, "failed"),
    ({"stopped": "canceled"}, "canceled"),
    ({"stopped": "lock lost"}, "error"),
    ({"stopped": "artifact gone"}, "error"),
    ({"stopped": "canceled", "stuck": True}, "error"),  # a host may still run the new release
    ({"failed_unreachable": [False], "stuck": True}, "error"),
])
def test_the_end_of_a_deployment_follows_from_what_its_job_saw(facts: dict, state: str) -> None:
    assert rules.deployment_outcome(**facts) == state
