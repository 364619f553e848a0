"""DORA's four keys from Conveyor's own history (SPEC §4), per project and environment.

Pure functions from deployment facts to figures (`figures`), and one thin query
(`dora`) that reads the facts of a window of days. Definitions (the README states them):

- deployment frequency: changes that succeeded per day (rollbacks are not counted: they
  put an older release back, they ship nothing);
- lead time for changes: median seconds from the commit's committer time to the end of the
  deployment that put it live on that environment;
- change failure rate: the changes (deployments other than rollbacks that ran to an end:
  succeeded or failed) that failed, or that succeeded and were later rolled back, over all
  of them. An `error` (a host unreachable, a worker lost) ran to no end and blames no
  release, so it is not counted either way;
- time to restore: median seconds from the end of a failed deployment, or of one that was
  rolled back, to the end of the next deployment that succeeded on that environment.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.context import Context
from app.models import Build, Deployment, aware

DEFAULT_DAYS = 30
MAX_DAYS = 366
ROLLBACK = "rollback"


@dataclass(frozen=True)
class DeploymentFacts:
    """What DORA needs of one finished deployment of one environment."""

    id: int
    kind: str  # deploy, promotion, retry, rollback
    state: str
    release: str | None
    finished_at: datetime
    committed_at: datetime | None = None
    replaces_release: str | None = None  # a rollback's: the release it rolled away from


@dataclass(frozen=True)
class Figures:
    """The four keys of one environment over `days` (None where nothing was measured)."""

    days: int
    deployments: int
    deployment_frequency: float
    lead_time_seconds: float | None
    changes: int
    failed_changes: int
    change_failure_rate: float | None
    restores: int
    time_to_restore_seconds: float | None


def figures(rows: Sequence[DeploymentFacts], days: int) -> Figures:
    """The four keys of one environment's deployments that ended within `days`."""
    ordered = sorted(rows, key=lambda row: (row.finished_at, row.id))
    succeeded = [row for row in ordered if row.state == "succeeded" and row.kind != ROLLBACK]
    changes = [row for row in ordered if row.kind != ROLLBACK
               and row.state in ("succeeded", "failed")]
    failures = failed_changes(ordered)
    restored = restore_times(ordered)
    return Figures(
        days=days, deployments=len(succeeded),
        deployment_frequency=round(len(succeeded) / days, 4) if days > 0 else 0.0,
        lead_time_seconds=lead_time(ordered), changes=len(changes),
        failed_changes=len(failures),
        change_failure_rate=round(len(failures) / len(changes), 4) if changes else None,
        restores=len(restored),
        time_to_restore_seconds=statistics.median(restored) if restored else None)


def lead_time(rows: Sequence[DeploymentFacts]) -> float | None:
    """Median seconds from commit to live, over the changes that succeeded."""
    spans = [(row.finished_at - row.committed_at).total_seconds() for row in rows
             if row.state == "succeeded" and row.kind != ROLLBACK
             and row.committed_at is not None]
    return statistics.median(spans) if spans else None


def failed_changes(rows: Sequence[DeploymentFacts]) -> list[DeploymentFacts]:
    """The changes that failed, or succeeded and were rolled back by a later rollback."""
    rolled_back = {row.replaces_release for row in rows
                   if row.kind == ROLLBACK and row.state == "succeeded" and row.replaces_release}
    return [row for row in rows if row.kind != ROLLBACK and (
        row.state == "failed" or (row.state == "succeeded" and row.release in rolled_back))]


def restore_times(rows: Sequence[DeploymentFacts]) -> list[float]:
    """For each failure that was restored: seconds from its end to the end of the next
    deployment that succeeded (a rollback counts: it restores service)."""
    ordered = sorted(rows, key=lambda row: (row.finished_at, row.id))
    spans = []
    for failure in failed_changes(ordered):
        after = next((row for row in ordered if row.state == "succeeded"
                      and row.id != failure.id and row.finished_at > failure.finished_at),
                     None)
        if after is not None:
            spans.append((after.finished_at - failure.finished_at).total_seconds())
    return spans


def dora(ctx: Context, *, project: str | None = None, environment: str | None = None,
         days: int = DEFAULT_DAYS, now: datetime | None = None) -> dict[str, Any]:
    """The four keys of every configured environment (of `project`, or the one named),
    from the deployments that ended in the last `days`."""
    until = now or datetime.now(UTC)
    since = until - timedelta(days=days)
    answer = []
    for configured in ctx.config.projects.values():
        if project and configured.name != project:
            continue
        for env in configured.environments.values():
            if environment and env.name != environment:
                continue
            rows = facts(ctx, configured.name, env.name, since, until)
            answer.append({"project": configured.name, "environment": env.name,
                           **asdict(figures(rows, days))})
    return {"days": days, "since": since.isoformat(), "until": until.isoformat(),
            "environments": answer}


def facts(ctx: Context, project: str, environment: str, since: datetime,
          until: datetime) -> list[DeploymentFacts]:
    """The facts of the environment's deployments that ended between `since` and `until`."""
    query = (select(Deployment.id, Deployment.kind, Deployment.state, Deployment.release_id,
                    Deployment.finished_at, Build.committed_at, Deployment.replaces_release)
             .join(Build, Build.id == Deployment.build_id)
             .where(Deployment.project == project, Deployment.environment == environment,
                    Deployment.finished_at.is_not(None), Deployment.finished_at >= since,
                    Deployment.finished_at <= until))
    with ctx.db.session() as session:
        return [DeploymentFacts(row.id, row.kind, row.state, row.release_id,
                                aware(row.finished_at),
                                aware(row.committed_at) if row.committed_at else None,
                                row.replaces_release)
                for row in session.execute(query)]
