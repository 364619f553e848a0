"""What the demo prints as the pipeline moves: one line per state a build or deployment
reaches, read from the API's answers. Pure: the runner feeds it what it polled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FAILED = frozenset({"failed", "error", "canceled"})
# Every line the demo prints about the pipeline starts with this, so it stands out from
# the lines about processes.
MARK = "==>"


@dataclass(frozen=True)
class Item:
    """A build or a deployment as the API shows it, reduced to what the demo says."""

    kind: str  # "build" | "deployment"
    id: int
    state: str
    sha: str
    environment: str = ""
    release: str | None = None
    error: str | None = None

    @classmethod
    def of_build(cls, answer: dict[str, Any]) -> Item:
        return cls("build", answer["id"], answer["state"], answer["sha"],
                   error=answer.get("error"))

    @classmethod
    def of_deployment(cls, answer: dict[str, Any]) -> Item:
        return cls("deployment", answer["id"], answer["state"], answer["sha"],
                   environment=answer["environment"], release=answer.get("release"),
                   error=answer.get("error"))

    @property
    def failed(self) -> bool:
        return self.state in FAILED


def describe(item: Item, app_urls: dict[str, str]) -> str:
    """One line saying where `item` is now."""
    if item.kind == "build":
        what = {"queued": "queued", "running": "running the tests",
                "succeeded": "succeeded: tests passed, artifact stored"}.get(item.state,
                                                                             item.state)
        subject = f"build {item.id} of {item.sha[:7]}"
    else:
        what = {"queued": "queued", "running": "running",
                "awaiting_approval": "awaiting approval",
                "succeeded": f"succeeded: release {item.release} is live"
                             + (f" at {app_urls[item.environment]}"
                                if item.environment in app_urls else "")
                }.get(item.state, item.state)
        subject = f"{item.environment}: deployment {item.id} of {item.sha[:7]}"
    if item.failed and item.error:
        what = f"{what}: {item.error}"
    return f"{MARK} {subject} {what}"


@dataclass
class Progress:
    """Remembers the state last told of each build and deployment; says only what changed."""

    app_urls: dict[str, str]
    told: dict[tuple[str, int], str] = field(default_factory=dict)

    def update(self, items: list[Item]) -> list[str]:
        """The lines for what changed since the last call: builds first, then deployments,
        oldest first (the order the pipeline runs them in)."""
        lines = []
        for item in sorted(items, key=lambda i: (i.kind != "build", i.id)):
            key = (item.kind, item.id)
            if self.told.get(key) != item.state:
                self.told[key] = item.state
                lines.append(describe(item, self.app_urls))
        return lines


def outcome(items: list[Item], last_environment: str) -> str | None:
    """"failed" once anything failed, "live" once `last_environment` succeeded, else None
    (still on its way)."""
    if any(item.failed for item in items):
        return "failed"
    if any(item.kind == "deployment" and item.environment == last_environment
           and item.state == "succeeded" for item in items):
        return "live"
    return None


def awaiting_approval(items: list[Item]) -> list[Item]:
    """The deployments that wait for someone to approve them."""
    return [item for item in items if item.state == "awaiting_approval"]
