"""What a state change tells the metrics: a build or deployment that ended, its result and
how long it ran. Decided here without I/O; recorded by `app.metrics`."""

from __future__ import annotations

from datetime import UTC, datetime

from app import metrics
from app.models import Build, Deployment

BUILD_ENDS = frozenset({"succeeded", "failed", "canceled", "skipped"})
DEPLOYMENT_ENDS = frozenset({"succeeded", "failed", "canceled", "superseded", "skipped",
                             "error"})


def ended(row: Build | Deployment) -> tuple[str, str, float | None] | None:
    """(kind, result, seconds it ran or None) of a row that has just ended; None otherwise."""
    kind = "build" if isinstance(row, Build) else "deployment"
    if row.state not in (BUILD_ENDS if kind == "build" else DEPLOYMENT_ENDS):
        return None
    ran = None
    if row.started_at is not None and row.finished_at is not None:
        ran = (_utc(row.finished_at) - _utc(row.started_at)).total_seconds()
    return kind, row.state, ran


def measure(row: Build | Deployment) -> None:
    """Record a committed state change in the metrics, when it ended a build or deployment."""
    fact = ended(row)
    if fact is not None:
        metrics.finished(*fact)


def _utc(moment: datetime) -> datetime:
    """SQLite gives back times without their zone; they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
