"""What runs on a host, as data: one :class:`Step` per deploy script invocation.

The builders here are pure: they validate their arguments and return a
:class:`Step`; :mod:`workers.transport` decides how a step reaches a host. A step
is sent as a fixed command line, ``sh -s -- ARGS``, whose arguments are validated
values only (paths, sha256s, release ids, numbers). Anything else, such as a
ref or a commit message, travels in :attr:`Step.env`, which :func:`stdin_text`
turns into ``export NAME='value'`` lines on the script's standard input: it
never enters a command line, and the host's shell never parses it as code.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import deploy_scripts

__all__ = [
    "EXIT_CORRUPT",
    "EXIT_FOREIGN_LAYOUT",
    "EXIT_RELEASE_EXISTS",
    "EXIT_UNSAFE_ARTIFACT",
    "EXIT_USAGE",
    "InvalidStepError",
    "ProbeResult",
    "Step",
    "activate",
    "artifact_path",
    "check_path",
    "discard",
    "parse_fields",
    "parse_probe",
    "prepare",
    "probe",
    "prune",
    "rollback",
    "stdin_text",
]

# Exit codes of the deploy scripts (see deploy_scripts/common.sh).
EXIT_USAGE = 2
EXIT_CORRUPT = 3  # a release or artifact is missing, or the sha256 does not match
EXIT_UNSAFE_ARTIFACT = 4
EXIT_RELEASE_EXISTS = 5
EXIT_FOREIGN_LAYOUT = 6  # `current` is not Conveyor's link, or discard was asked for the live one

_RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7,40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# The same characters deploy_scripts/common.sh accepts in a deploy path.
_PATH = re.compile(r"/[A-Za-z0-9._/@+-]*")
# Names whose value would change how the scripts themselves run.
_RESERVED_ENV = frozenset({"IFS", "LC_ALL", "CDPATH", "ENV", "PATH"})


class InvalidStepError(ValueError):
    """A step was asked for with a value that must not reach a host."""


@dataclass(frozen=True)
class Step:
    """One script to run on a host: its text, its arguments and its environment."""

    name: str
    script: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for arg in self.args:
            _check_plain(arg, "an argument")
        for name, value in self.env.items():
            _check_env(name, value)
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    def describe(self) -> str:
        """One line for a log: the step's name and arguments (never its env values)."""
        return " ".join([self.name, *map(shlex.quote, self.args)])


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe` found on a host."""

    current: str | None  # the live release id; None when nothing is live
    has_artifact: bool  # the artifact is there and its sha256 matches


def probe(path: str, sha256: str) -> Step:
    """Find the live release and whether the artifact is already on the host."""
    return _step("probe", check_path(path), _sha256(sha256))


def prepare(path: str, sha256: str, release_id: str, env: Mapping[str, str]) -> Step:
    """Verify the uploaded artifact and unpack it into ``releases/<release_id>``."""
    args = (check_path(path), _sha256(sha256), _release_id(release_id))
    return _step("prepare", *args, env=env)


def activate(path: str, release_id: str, env: Mapping[str, str]) -> Step:
    """Point ``current`` at ``releases/<release_id>`` in one rename."""
    return _step("activate", check_path(path), _release_id(release_id), env=env)


def rollback(path: str, previous_release_id: str | None, env: Mapping[str, str]) -> Step:
    """Point ``current`` back at the previous release, or remove it when there was none."""
    previous = "" if previous_release_id is None else _release_id(previous_release_id)
    return _step("rollback", check_path(path), previous, env=env)


def discard(path: str, release_id: str) -> Step:
    """Remove a prepared release that will not go live (never the live one)."""
    return _step("discard", check_path(path), _release_id(release_id))


def prune(path: str, keep: int, protect: Iterable[str] = ()) -> Step:
    """Remove releases beyond the newest ``keep`` (never live, previous or ``protect``)."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise InvalidStepError(f"keep_releases must be a whole number, at least 1, not {keep!r}")
    protected = tuple(_release_id(release) for release in protect)
    return _step("prune", check_path(path), str(keep), *protected)


def artifact_path(path: str, sha256: str) -> str:
    """Where the artifact with this sha256 lives on a host deployed to ``path``."""
    return f"{check_path(path)}/.conveyor/artifacts/{_sha256(sha256)}.tar.gz"


def check_path(path: str) -> str:
    """Return ``path`` if it is a safe absolute path on a host, else raise InvalidStepError."""
    normalised = _PATH.fullmatch(path) and posixpath.normpath(path) == path and "//" not in path
    if not normalised or path == "/":
        raise InvalidStepError(
            "a path on a host must be absolute and normalised, of letters, digits and ._/@+-,"
            f" and not '/'; got {path!r}"
        )
    return path


def stdin_text(step: Step) -> str:
    """The text fed to ``sh -s``: the env exports, then the script, in one brace group.

    The brace group makes the shell read the whole text before running any of it,
    so a text cut short in transit runs nothing (a syntax error), and commands of
    the script cannot read the rest of the script: their standard input is
    ``/dev/null``.
    """
    exports = "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in sorted(step.env.items())
    )
    return f"{{\n{exports}{step.script.rstrip()}\n}} </dev/null\n"


def parse_fields(stdout: str) -> dict[str, str]:
    """Read the ``name=value`` lines a deploy script prints (other lines are ignored)."""
    fields: dict[str, str] = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.isidentifier():
            fields[name] = value
    return fields


def parse_probe(stdout: str) -> ProbeResult:
    """Read the output of :func:`probe`."""
    fields = parse_fields(stdout)
    if "current" not in fields or fields.get("artifact") not in ("yes", "no"):
        raise ValueError(f"probe printed something unexpected: {stdout!r}")
    return ProbeResult(current=fields["current"] or None, has_artifact=fields["artifact"] == "yes")


def _step(name: str, *args: str, env: Mapping[str, str] | None = None) -> Step:
    """A step running ``deploy_scripts/<name>.sh`` after ``common.sh``."""
    text = deploy_scripts.script("common") + "\n" + deploy_scripts.script(name)
    return Step(name=name, script=text, args=args, env=env or {})


def _sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise InvalidStepError(f"a sha256 is 64 lowercase hexadecimal digits, got {value!r}")
    return value


def _release_id(value: str) -> str:
    if not _RELEASE_ID.fullmatch(value):
        raise InvalidStepError(f"a release id looks like 20261128T221500Z-abc1234, got {value!r}")
    return value


def _check_plain(value: str, what: str) -> None:
    if not isinstance(value, str) or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise InvalidStepError(f"{what} must be text without control characters, got {value!r}")


def _check_env(name: str, value: str) -> None:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise InvalidStepError(
            f"an environment variable name is uppercase letters, digits and _, got {name!r}"
        )
    if name in _RESERVED_ENV:
        raise InvalidStepError(f"the environment variable {name} is reserved for the scripts")
    if not isinstance(value, str) or "\0" in value:
        raise InvalidStepError(f"the value of {name} must be text without NUL characters")
