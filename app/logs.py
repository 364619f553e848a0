"""Reading a build's or a deployment's log, whole or followed live (SPEC §4: `Accept:
text/event-stream`). The API and the dashboard both follow a log through here.

Lines are stored with secrets already masked (`pipeline.log_rows`); `sse` masks again, since
a Server-Sent Events stream is written outside the app's JSON provider.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from app.context import Context
from app.models import Build, Deployment, LogLine, aware
from app.pipeline.rules import mask_all
from app.pipeline.states import FINISHED

Kind = Literal["build", "deployment"]
POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
PAGE = 1000


@dataclass(frozen=True)
class Line:
    """One stored log line; `id` orders lines and is the stream's event id."""

    id: int
    at: datetime
    text: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": aware(self.at).isoformat(), "text": self.text}


@dataclass(frozen=True)
class End:
    """The row is finished and every line has been sent: its final state."""

    state: str


def lines(ctx: Context, kind: Kind, row_id: int, *, after: int = 0,
          limit: int = PAGE) -> list[Line]:
    """Up to `limit` lines of the build or deployment after line id `after`, in order."""
    column = LogLine.build_id if kind == "build" else LogLine.deployment_id
    query = (select(LogLine.id, LogLine.at, LogLine.text)
             .where(column == row_id, LogLine.id > after).order_by(LogLine.id).limit(limit))
    with ctx.db.session() as session:
        return [Line(id=r.id, at=r.at, text=r.text) for r in session.execute(query)]


def state(ctx: Context, kind: Kind, row_id: int) -> str | None:
    """The row's state, or None when there is no such build or deployment."""
    model = Build if kind == "build" else Deployment
    with ctx.db.session() as session:
        return session.scalar(select(model.state).where(model.id == row_id))


def follow(ctx: Context, kind: Kind, row_id: int, *, after: int = 0,
           poll: float = POLL_SECONDS, heartbeat: float = HEARTBEAT_SECONDS,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Line | End | None]:
    """Yield each line after `after` as it is stored, None when `heartbeat` seconds pass
    without one (so that a proxy keeps the connection), and `End` once the row is finished
    and its last line sent. The state is read before the lines, so a line stored just
    before the row finished is never lost."""
    quiet_since = clock()
    while True:
        current = state(ctx, kind, row_id)
        found = lines(ctx, kind, row_id, after=after)
        yield from found
        if found:
            after, quiet_since = found[-1].id, clock()
            if len(found) == PAGE:
                continue
        if current is None or current in FINISHED:
            yield End(state=current or "gone")
            return
        if clock() - quiet_since >= heartbeat:
            quiet_since = clock()
            yield None
        sleep(poll)


def sse(item: Line | End | None, secrets: Sequence[str]) -> str:
    """One Server-Sent Events message: `line` (with its id, for Last-Event-ID), `end`, or a
    comment line as heartbeat."""
    if item is None:
        return ": still here\n\n"
    if isinstance(item, End):
        return f"event: end\ndata: {json.dumps({'state': item.state})}\n\n"
    data = json.dumps(mask_all(item.as_json(), secrets))
    return f"id: {item.id}\nevent: line\ndata: {data}\n\n"


def last_event_id(header: str | None, query: str | None) -> int:
    """Where a reconnecting stream resumes: the `Last-Event-ID` header, else `?after=`."""
    for value in (header, query):
        if value and value.strip().isdigit():
            return int(value.strip())
    return 0
