"""The POSIX ``sh`` scripts that do a deployment's work on a target host.

They are sent over the SSH channel (or to a local ``sh``) and never installed on
the host. ``common.sh`` holds the helpers every script uses and is sent in front
of each one; :mod:`workers.remote` builds the steps that carry them.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["SCRIPT_NAMES", "script"]

#: The scripts that can be run, without the ``.sh`` suffix (``common`` is a library).
SCRIPT_NAMES = (
    "probe", "prepare", "activate", "after_activate", "rollback", "discard", "prune", "inspect",
    "lacks",
)


def script(name: str) -> str:
    """Return the text of ``<name>.sh`` from this package (``common`` included)."""
    if name != "common" and name not in SCRIPT_NAMES:
        raise ValueError(f"there is no deploy script named {name!r}")
    return resources.files(__name__).joinpath(f"{name}.sh").read_text(encoding="utf-8")
