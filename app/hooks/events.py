"""What a forge's webhook means, in Conveyor's words, whatever forge sent it."""

from __future__ import annotations

from dataclasses import dataclass

ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class Push:
    """Commits pushed to a branch or tag."""

    repository: str
    ref: str          # full ref: refs/heads/main, refs/tags/v1.2
    before: str
    after: str
    clone_url: str
    message: str = ""
    author: str = ""

    @property
    def deleted(self) -> bool:
        return self.after == ZERO_SHA

    @property
    def branch(self) -> str | None:
        prefix = "refs/heads/"
        return self.ref[len(prefix):] if self.ref.startswith(prefix) else None


@dataclass(frozen=True)
class Ignored:
    """A valid delivery that asks for nothing: a ping, an event Conveyor does not handle."""

    repository: str
    reason: str
