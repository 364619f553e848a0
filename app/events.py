"""What a forge's webhook means, in Conveyor's words, whatever forge sent it."""

from __future__ import annotations

from dataclasses import dataclass

ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class Push:
    """Commits pushed to a branch or tag.

    `after` is the commit the ref now points at (a pushed tag is peeled to its commit);
    `default_branch` is the repository's, which a new branch's changes are compared with.
    """

    repository: str
    ref: str          # full ref: refs/heads/main, refs/tags/v1.2
    before: str
    after: str
    clone_url: str
    message: str = ""
    author: str = ""
    default_branch: str | None = None
    forge_project: str = ""  # the forge's own id of the repository (GitLab's project id)

    @property
    def deleted(self) -> bool:
        return self.after == ZERO_SHA

    @property
    def created(self) -> bool:
        return self.before == ZERO_SHA

    @property
    def branch(self) -> str | None:
        return _strip(self.ref, "refs/heads/")

    @property
    def tag(self) -> str | None:
        return _strip(self.ref, "refs/tags/")


@dataclass(frozen=True)
class PullRequest:
    """A pull (merge) request opened, reopened or given new commits: its head is built.

    `ref` is the forge's own ref of the head (`refs/pull/<n>/head`,
    `refs/merge-requests/<n>/head`), present in the base repository even for a fork, so the
    head commit is fetched from `clone_url`, the base repository's.
    """

    repository: str
    number: int
    head_sha: str
    head_ref: str     # the source branch's name
    base_ref: str     # the target branch's name
    from_fork: bool
    clone_url: str
    action: str
    ref: str
    title: str = ""
    author: str = ""
    forge_project: str = ""  # the forge's own id of the repository (GitLab's project id)


@dataclass(frozen=True)
class Ignored:
    """A valid delivery that asks for nothing: a ping, an event Conveyor does not handle."""

    repository: str
    reason: str


Event = Push | PullRequest | Ignored


def _strip(ref: str, prefix: str) -> str | None:
    return ref[len(prefix):] if ref.startswith(prefix) else None
