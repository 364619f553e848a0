"""What a state change tells the metrics (`app/pipeline/measure.py`), from plain rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.models import Build, Deployment
from app.pipeline.measure import ended

START = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)


def test_a_build_that_ran_gives_its_result_and_how_long() -> None:
    build = Build(state="succeeded", started_at=START, finished_at=START + timedelta(seconds=42))
    assert ended(build) == ("build", "succeeded", 42.0)


def test_a_deployment_never_started_ends_without_a_duration() -> None:
    assert ended(Deployment(state="superseded", finished_at=START)) == (
        "deployment", "superseded", None)


def test_times_without_a_zone_are_utc() -> None:  # as SQLite gives them back
    deployment = Deployment(state="failed", started_at=START.replace(tzinfo=None),
                            finished_at=START + timedelta(seconds=3))
    assert ended(deployment) == ("deployment", "failed", 3.0)


@pytest.mark.parametrize("row", [Build(state="running"), Build(state="queued"),
                                 Deployment(state="awaiting_approval"),
                                 Deployment(state="running")])
def test_a_row_still_going_is_not_counted(row: Build | Deployment) -> None:
    assert ended(row) is None
