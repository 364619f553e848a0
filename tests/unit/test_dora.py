"""DORA's four keys from plain deployment facts (app/dora.py), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.dora import DeploymentFacts, failed_changes, figures, lead_time, restore_times

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def row(id: int, state: str = "succeeded", *, kind: str = "deploy", release: str | None = None,
        hours: float = 0, committed: float | None = None,
        replaces: str | None = None) -> DeploymentFacts:
    return DeploymentFacts(id=id, kind=kind, state=state, release=release or f"r-{id}",
                           finished_at=at(hours),
                           committed_at=at(committed) if committed is not None else None,
                           replaces_release=replaces)


def test_nothing_deployed_is_no_figure_rather_than_zero() -> None:
    result = figures([], 30)
    assert (result.deployments, result.deployment_frequency) == (0, 0.0)
    assert result.lead_time_seconds is None
    assert result.change_failure_rate is None and result.time_to_restore_seconds is None


def test_frequency_counts_changes_that_succeeded_not_rollbacks_or_failures() -> None:
    rows = [row(1, hours=1), row(2, hours=2), row(3, "failed", hours=3),
            row(4, kind="rollback", release="r-1", replaces="r-2", hours=4),
            row(5, kind="promotion", hours=5), row(6, kind="retry", hours=6)]
    result = figures(rows, 2)
    assert result.deployments == 4
    assert result.deployment_frequency == 2.0


def test_lead_time_is_the_median_from_commit_to_live() -> None:
    rows = [row(1, hours=10, committed=9), row(2, hours=20, committed=17),
            row(3, hours=30, committed=20), row(4, "failed", hours=40, committed=0),
            row(5, hours=50), row(6, kind="rollback", hours=60, committed=0)]
    # 1 h, 3 h, 10 h: failures, unknown commit times and rollbacks are not changes put live
    assert lead_time(rows) == 3 * 3600


def test_change_failure_counts_failed_and_rolled_back_changes_over_all_that_ended() -> None:
    rows = [row(1, hours=1), row(2, hours=2), row(3, "failed", hours=3),
            row(4, "error", hours=4), row(5, "canceled", hours=5),
            row(6, "superseded", hours=6),
            row(7, kind="rollback", release="r-1", replaces="r-2", hours=7)]
    assert [r.id for r in failed_changes(rows)] == [2, 3]
    result = figures(rows, 30)
    assert (result.changes, result.failed_changes) == (3, 2)
    assert result.change_failure_rate == round(2 / 3, 4)


def test_a_rollback_that_failed_does_not_blame_the_release() -> None:
    rows = [row(1, hours=1), row(2, hours=2),
            row(3, "failed", kind="rollback", release="r-1", replaces="r-2", hours=3)]
    assert failed_changes(rows) == []


def test_time_to_restore_runs_from_a_failure_to_the_next_success() -> None:
    rows = [row(1, hours=0), row(2, hours=1),  # r-2 is rolled back at 1.5 h
            row(3, kind="rollback", release="r-1", replaces="r-2", hours=1.5),
            row(4, "failed", hours=5), row(5, "failed", hours=6), row(6, hours=9),
            row(7, "failed", hours=12)]  # not restored (yet): not counted
    assert restore_times(rows) == [0.5 * 3600, 4 * 3600, 3 * 3600]
    result = figures(rows, 30)
    assert result.restores == 3
    assert result.time_to_restore_seconds == 3 * 3600


def test_rows_in_any_order_give_the_same_figures() -> None:
    rows = [row(1, hours=0, committed=-1), row(2, "failed", hours=1),
            row(3, hours=2, committed=1)]
    assert figures(rows, 7) == figures(list(reversed(rows)), 7)
