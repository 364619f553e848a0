"""`paths:` (monorepos): a push that changes nothing under them is neither built nor deployed.

A build is made once per commit, but "what did it change?" is a push's question. The build
row carries the question of the push that made it (`changes_since`: its before sha, all
zeros for a new branch; `changes_base`: the branch a new branch is compared with). The build
job answers it from its git mirror (workers/changes.py) and `settle` skips the build when
nothing under `paths:` changed. A second push with another question widens it to "build
whatever changed" while the build waits; one that finds the commit skipped asks again.

A skipped build and the deployments waiting for it end in the state `skipped`; their
commit statuses become `success` ("Not built: ...") so a required check never blocks a merge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from app import config as cfg
from app.context import Context
from app.models import Build, Deployment, utcnow
from app.pipeline.common import log
from app.pipeline.measure import measure
from app.pipeline.report import report_build, report_deployment
from app.pipeline.rules import UNCHANGED, touches

WHATEVER = ""  # `changes_since` of a build wanted whatever changed
WAITING = ("queued", "awaiting_approval")


@dataclass(frozen=True)
class ChangesCheck:
    """What the build job compares in its mirror before building."""

    build_id: int
    sha: str
    since: str
    base: str | None
    patterns: tuple[str, ...]


def ask(ctx: Context, project: cfg.Project, build: Build, *, created: bool,
        question: tuple[str, str] | None) -> tuple[Build, bool]:
    """Put a push's question on its build; (the build now, whether it was queued again)."""
    if not project.paths:
        return build, False
    since, base = question or (WHATEVER, "")
    if created:
        _set_question(ctx, build.id, since, base)
        return build, False
    if build.state == "skipped":
        return _revive(ctx, build, since, base)
    asked = (build.changes_since, build.changes_base or "")
    if asked[0] == WHATEVER or asked == (since, base):
        return build, False
    if build.state in ("queued", "running") and _widen(ctx, build.id):
        return build, False
    with ctx.db.session() as session:
        current = session.get(Build, build.id)
    if current is not None and current.state == "skipped":
        return _revive(ctx, current, since, base)
    return current or build, False


def changes_check(ctx: Context, build_id: int) -> ChangesCheck | None:
    """What to compare before building, or None when the build is wanted whatever changed."""
    with ctx.db.session() as session:
        build = session.get(Build, build_id)
        if build is None or build.state != "running" or not build.changes_since:
            return None
        project = ctx.config.projects.get(build.project)
        if project is None or not project.paths:
            return None
        return ChangesCheck(build.id, build.sha, build.changes_since, build.changes_base or None,
                            project.paths)


def settle(ctx: Context, check: ChangesCheck, files: list[str] | str,
           say: Callable[[str], None]) -> bool:
    """Skip the build when no changed file lies under `paths:`; True when it was skipped.
    `files` is what changed, or why that cannot be told: then it is built (a build too many
    costs minutes; a deployment missed costs a release)."""
    if isinstance(files, str):
        say(f"paths: cannot tell what the push changed ({files}); building")
        return False
    patterns = ", ".join(check.patterns)
    if touches(files, check.patterns):
        say(f"paths: the push changes files under {patterns}; building")
        return False
    reason = f"paths: {len(files)} changed file(s), none under {patterns}; {UNCHANGED}"
    return skip_build(ctx, check.build_id, reason, since=check.since)


def skip_build(ctx: Context, build_id: int, reason: str, *, since: str | None = None) -> bool:
    """End a running build, and the deployments waiting for it, as `skipped`.

    With `since`, only while the build still asks that question: a push that widened it
    meanwhile wants it built. True when the build was skipped.
    """
    with ctx.db.session() as session:
        # The update comes first: on SQLite it takes the write lock before anything is read.
        stmt = update(Build).where(Build.id == build_id, Build.state == "running")
        if since is not None:
            stmt = stmt.where(Build.changes_since == since)
        done = session.execute(stmt.values(state="skipped", finished_at=utcnow()),
                               execution_options={"synchronize_session": False})
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return False
        build = session.get(Build, build_id)
        skipped = _skip_deployments(session, select(Deployment).where(
            Deployment.build_id == build_id, Deployment.state.in_(WAITING)))
    log(ctx, reason, build_id=build_id)
    if build is not None:
        measure(build)
        report_build(ctx, build)
    for deployment in skipped:
        measure(deployment)
        report_deployment(ctx, deployment)
    return True


def _skip_deployments(session, query) -> list[Deployment]:  # type: ignore[no-untyped-def]
    deployments = list(session.scalars(query.with_for_update()))
    for deployment in deployments:
        deployment.state, deployment.finished_at = "skipped", utcnow()
    return deployments


def _set_question(ctx: Context, build_id: int, since: str, base: str) -> None:
    """The creating push's question, unless another push already widened it."""
    with ctx.db.session() as session:
        session.execute(
            update(Build).where(Build.id == build_id, Build.changes_since.is_(None))
            .values(changes_since=since, changes_base=base or None),
            execution_options={"synchronize_session": False})


def _widen(ctx: Context, build_id: int) -> bool:
    """Two pushes want this commit before it is decided: build it whatever changed."""
    with ctx.db.session() as session:
        done = session.execute(
            update(Build).where(Build.id == build_id, Build.state.in_(("queued", "running")))
            .values(changes_since=WHATEVER, changes_base=None),
            execution_options={"synchronize_session": False})
        return done.rowcount == 1  # type: ignore[attr-defined]


def _revive(ctx: Context, build: Build, since: str, base: str) -> tuple[Build, bool]:
    """Queue a skipped build again (a new attempt) with this push's question."""
    with ctx.db.session() as session:
        done = session.execute(
            update(Build).where(Build.id == build.id, Build.state == "skipped")
            .values(state="queued", attempt=Build.attempt + 1, changes_since=since,
                    changes_base=base or None, started_at=None, finished_at=None),
            execution_options={"synchronize_session": False})
        current = session.get(Build, build.id, populate_existing=True)
    return current or build, done.rowcount == 1  # type: ignore[attr-defined]
