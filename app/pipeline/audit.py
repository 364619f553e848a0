"""The audit log (SPEC §4): who approved, canceled, retried, rolled back or deployed by hand,
when, and what. Each entry is added to the session of the operation it records, so that it
commits with it or not at all."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.orm import Session

from app.models import AuditEntry, Deployment

# Who acts when an operation is not asked through the API (the command line on the server).
CLI = "cli"
Action = Literal["deploy", "approve", "cancel", "retry", "rollback"]
ACTIONS: tuple[Action, ...] = ("deploy", "approve", "cancel", "retry", "rollback")


def record(session: Session, action: Action, deployment: Deployment, *, by: str,
           detail: str | None = None) -> AuditEntry:
    """Add an entry for `action` on `deployment` to `session` (flushed, so it has its id)."""
    if deployment.id is None:
        session.flush()
    entry = AuditEntry(by=by, action=action, project=deployment.project,
                       environment=deployment.environment, deployment_id=deployment.id,
                       detail=detail)
    session.add(entry)
    session.flush()
    return entry
