"""What the `conveyor` command shows: aligned tables, JSON for scripts, and the one sentence an
error is on stderr. Pure text: nothing here talks to the network or the database."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

MISSING = "-"


class CommandError(Exception):
    """An operation that cannot be done: one sentence for stderr, and the exit status
    (1 a failed operation, 2 a usage or configuration error)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sentence(message: str) -> str:
    """`message` as one line: whatever it quotes (a server's answer, git's stderr) may hold
    newlines, and an error is one sentence on one line."""
    return " ".join(str(message).split())


def cell(value: Any) -> str:
    """One table cell: `-` for what is missing, the text of anything else."""
    if value is None or value == "" or value == [] or value == {}:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return " ".join(str(value).split())


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows under their headers in left-aligned columns, two spaces apart, no trailing
    spaces; every cell through `cell`."""
    texts = [[cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in texts if i < len(r))])
              for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *texts]:
        padded = [text.ljust(widths[i]) for i, text in enumerate(row[:len(widths)])]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def pick(data: Any, *path: str | int) -> Any:
    """`data[path[0]][path[1]]...`, or None where any step is missing or of another shape:
    an answer read leniently, so that a missing key shows as `-`, never as a traceback."""
    for key in path:
        if isinstance(key, int) and isinstance(data, list) and -len(data) <= key < len(data):
            data = data[key]
        elif isinstance(key, str) and isinstance(data, Mapping):
            data = data.get(key)
        else:
            return None
    return data


def short_sha(sha: Any) -> str | None:
    """The first 12 digits of a commit id (or None)."""
    return sha[:12] if isinstance(sha, str) and sha else None


def when(moment: Any) -> str | None:
    """An ISO 8601 moment from the API as `2026-12-05 20:41:07Z` (UTC), else as given."""
    if not isinstance(moment, str) or not moment:
        return None
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%SZ")


def duration(seconds: Any) -> str | None:
    """Seconds as `45s`, `12m 5s`, `3h 2m` or `2d 4h` (None when not a number)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def percent(ratio: Any) -> str | None:
    """A ratio between 0 and 1 as `12.5%` (None when not a number)."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        return None
    return f"{ratio * 100:.1f}%"


def as_json(data: Any) -> str:
    """JSON for scripts: indented, keys in the API's order."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def printer(secrets: Sequence[str] = ()) -> Callable[[str], None]:
    """`print` for what a command shows: every line with its secrets masked (SPEC §7), as
    the deployment log and the API mask them."""
    from app.pipeline.rules import mask

    def say(text: str) -> None:
        print(mask(text, secrets), flush=True)
    return say


def error(message: str, secrets: Sequence[str] = ()) -> None:
    """Write `message` to stderr as one masked sentence (a git error may quote a URL's
    token)."""
    from app.pipeline.rules import mask

    print(sentence(mask(message, secrets)), file=sys.stderr, flush=True)
