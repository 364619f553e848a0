"""The state machine of builds and deployments (SPEC §5): every state change goes through
`Changes.move`, inside one transaction, and is reported (commit status, chat) once that
transaction has committed — never for a change that was rolled back.

    with changes(ctx) as change:
        deployment = change.session.get(Deployment, deployment_id)
        change.move(deployment, "running")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.context import Context
from app.models import Build, Deployment, utcnow
from app.pipeline.chat import report_chat
from app.pipeline.measure import measure
from app.pipeline.report import report_build, report_deployment
from app.pipeline.rules import mask

BUILD_MOVES: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "skipped", "failed", "canceled"}),
    "running": frozenset({"succeeded", "failed", "canceled"}),
    # A failed build, or one whose artifact was pruned, is built again as a new attempt.
    "failed": frozenset({"queued"}),
    "succeeded": frozenset({"queued"}),
    "skipped": frozenset({"queued"}),
    "canceled": frozenset({"queued"}),
}
DEPLOYMENT_MOVES: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "awaiting_approval", "superseded", "canceled", "failed",
                         "skipped", "error"}),
    "awaiting_approval": frozenset({"queued", "superseded", "canceled", "failed"}),
    "running": frozenset({"succeeded", "failed", "canceled", "error"}),
}
FINISHED = frozenset({"succeeded", "failed", "canceled", "superseded", "skipped", "error"})


class IllegalMove(Exception):
    """A state change the state machine does not allow (a bug, never a user's doing)."""


@dataclass
class Changes:
    """The state changes of one transaction, reported after it commits."""

    ctx: Context
    session: Session
    moved: list[Build | Deployment] = field(default_factory=list)

    def move(self, row: Build | Deployment, state: str, *, error: str | None = None) -> None:
        """Move a build or deployment to `state` (its times and error with it)."""
        allowed = (BUILD_MOVES if isinstance(row, Build) else DEPLOYMENT_MOVES).get(row.state)
        if allowed is None or state not in allowed:
            kind = type(row).__name__.lower()
            raise IllegalMove(f"{kind} {row.id}: {row.state} -> {state} is not allowed")
        row.state = state
        if state == "running":
            row.started_at = utcnow()
        if state in FINISHED:
            row.finished_at = utcnow()
        if state in ("queued", "running", "awaiting_approval"):
            row.error = None
        if error is not None:
            row.error = mask(error, self.ctx.secrets())
        if row not in self.moved:
            self.moved.append(row)

    def report(self) -> None:
        for row in self.moved:
            measure(row)
            if isinstance(row, Build):
                report_build(self.ctx, row)
            else:
                report_deployment(self.ctx, row)
            report_chat(self.ctx, row)


@contextmanager
def changes(ctx: Context) -> Iterator[Changes]:
    """A transaction whose state changes are reported once it has committed."""
    with ctx.db.session() as session:
        change = Changes(ctx, session)
        yield change
    change.report()
