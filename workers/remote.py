"""What runs on a host, as data: one :class:`Step` per deploy script invocation.

The builders here are pure: they validate their arguments and return a
:class:`Step`; :mod:`workers.transport` decides how a step reaches a host. A step
is sent as a fixed command line, ``sh -s -- ARGS``, whose arguments are validated
values only (paths, sha256s, release ids, numbers). Anything else, such as a
ref or a commit message, travels in :attr:`Step.env`, which :func:`stdin_text`
turns into ``export NAME='value'`` lines on the script's standard input: it
never enters a command line, and the host's shell never parses it as code.
The operator's own text for the script (hook commands, shared entries, the
health check) travels the same way in :attr:`Step.params`, as shell variables
the script reads but does not export, so hooks do not see them.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import deploy_scripts
from app.config import Healthcheck

__all__ = [
    "EXIT_CORRUPT",
    "EXIT_FOREIGN_LAYOUT",
    "EXIT_HEALTHCHECK",
    "EXIT_HOOK",
    "EXIT_NO_ARTIFACT",
    "EXIT_RELEASE_EXISTS",
    "EXIT_UNSAFE_ARTIFACT",
    "EXIT_USAGE",
    "REQUIRED_TOOLS",
    "InvalidStepError",
    "Lacks",
    "Prepared",
    "ProbeResult",
    "Step",
    "activate",
    "after_activate",
    "artifact_path",
    "check_path",
    "check_shared",
    "delta_path",
    "discard",
    "files_path",
    "healthcheck",
    "healthcheck_seconds",
    "inspect",
    "lacks",
    "parse_fields",
    "parse_lacks",
    "parse_prepare",
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
EXIT_HOOK = 7  # a hook failed, or a shared entry is missing
EXIT_HEALTHCHECK = 8
EXIT_NO_ARTIFACT = 9  # prepare: the artifact is not on the host; upload it and prepare again

#: What :func:`inspect` reports on, in order; `openssl` is optional (a faster sha256).
REQUIRED_TOOLS = ("sh", "awk", "tar", "gzip", "sha256sum", "timeout", "coreutils")

_RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7,40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# A shared entry: relative, normalised, plain characters; a trailing / asks for a folder.
_SHARED = re.compile(r"(?!\.{1,2}(/|$))[A-Za-z0-9._@+-]+(/(?!\.{1,2}(/|$))[A-Za-z0-9._@+-]+)*/?")
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
    params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for arg in self.args:
            _check_plain(arg, "an argument")
        for name, value in self.env.items():
            _check_env(name, value)
        for name, value in self.params.items():
            _check_param(name, value)
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def describe(self) -> str:
        """One line for a log: the step's name and arguments (never its env values)."""
        return " ".join([self.name, *map(shlex.quote, self.args)])


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` printed: the release live before, and the release prepared."""

    previous: str | None  # None when nothing was live
    release: str | None  # None when the release was not prepared (see the exit status)


@dataclass(frozen=True)
class Lacks:
    """What :func:`lacks` printed: the live release, whether the host can assemble the new
    release from it, and the files it lacks then."""

    previous: str | None
    usable: bool
    names: tuple[str, ...]


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe` found on a host."""

    current: str | None  # the live release id; None when nothing is live
    has_artifact: bool  # the artifact is there and its sha256 matches


def probe(path: str, sha256: str, size: int, *, look: bool = False) -> Step:
    """Find the live release and whether the artifact (``size`` bytes) is already on the
    host; with ``look``, change nothing (not even the artifacts folder), for a plan."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidStepError(f"an artifact size is a number of bytes, not {size!r}")
    mode = ("look",) if look else ()
    return _step("probe", check_path(path), _sha256(sha256), str(size), *mode)


def prepare(path: str, sha256: str, release_id: str, env: Mapping[str, str], *,
            shared: Iterable[str] = (), hooks: Iterable[str] = (),
            assemble_from: tuple[str, str] | None = None) -> Step:
    """Verify the uploaded artifact, unpack it into ``releases/<release_id>``, link the
    ``shared`` entries from ``<path>/shared`` and run the before_activate ``hooks`` there.
    Exits :data:`EXIT_NO_ARTIFACT` or :data:`EXIT_CORRUPT` when the artifact is missing or
    corrupt (upload it, then prepare again);
    sets ``CONVEYOR_PREVIOUS_RELEASE_PATH`` itself, from what is live.
    With ``assemble_from`` (a release id and the sha256 of the artifact's list of files),
    the release is assembled from that release and the changed files sent to
    :func:`delta_path`, and checked against the list sent to :func:`files_path`; it exits
    :data:`EXIT_CORRUPT` when the result does not match (send the whole artifact then)."""
    args: tuple[str, ...] = (check_path(path), _sha256(sha256), _release_id(release_id))
    if assemble_from is not None:
        args += (_release_id(assemble_from[0]), _sha256(assemble_from[1]))
    entries = [check_shared(entry) for entry in shared]
    params = {**_list("shared", entries), **_list("before_activate", hooks)}
    return _step("prepare", *args, env=env, params=params)


def lacks(path: str, sha256: str) -> Step:
    """Say which files of the artifact the host lacks given its live release, from the
    artifact's list of files sent to :func:`files_path` first; changes nothing."""
    return _step("lacks", check_path(path), _sha256(sha256))


def activate(path: str, release_id: str, env: Mapping[str, str]) -> Step:
    """Point ``current`` at ``releases/<release_id>`` in one rename."""
    return _step("activate", check_path(path), _release_id(release_id), env=env)


def after_activate(path: str, release_id: str, env: Mapping[str, str], *,
                   hooks: Iterable[str] = (), healthcheck: Healthcheck | None = None) -> Step:
    """Run the after_activate ``hooks``, then the ``healthcheck``, in the live release."""
    params = _list("after_activate", hooks)
    if healthcheck is not None:
        params.update(health_command=healthcheck.command,
                      health_retries=str(healthcheck.retries),
                      health_interval=str(healthcheck.interval),
                      health_timeout=str(healthcheck.timeout))
    args = (check_path(path), _release_id(release_id))
    return _step("after_activate", *args, env=env, params=params)


def healthcheck(path: str, release_id: str, env: Mapping[str, str],
                check: Healthcheck) -> Step:
    """One attempt of the health ``check`` in the live release, no hooks: a round of the
    watch after the switch. It is after_activate.sh with one attempt, named for the log."""
    step = after_activate(path, release_id, env, healthcheck=check.once)
    return replace(step, name="healthcheck")


def rollback(path: str, previous_release_id: str | None, env: Mapping[str, str], *,
             hooks: Iterable[str] = ()) -> Step:
    """Point ``current`` back at the previous release (and run the after_activate ``hooks``
    there), or remove it when there was none."""
    previous = "" if previous_release_id is None else _release_id(previous_release_id)
    return _step("rollback", check_path(path), previous, env=env,
                 params=_list("after_activate", hooks))


def discard(path: str, release_id: str) -> Step:
    """Remove a prepared release that will not go live (never the live one)."""
    return _step("discard", check_path(path), _release_id(release_id))


def prune(path: str, keep: int, protect: Iterable[str] = ()) -> Step:
    """Remove releases beyond the newest ``keep`` (never live, previous or ``protect``)."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise InvalidStepError(f"keep_releases must be a whole number, at least 1, not {keep!r}")
    protected = tuple(_release_id(release) for release in protect)
    return _step("prune", check_path(path), str(keep), *protected)


def inspect(path: str) -> Step:
    """Report the tools a deployment needs and whether ``path`` can be written; no change."""
    return _step("inspect", check_path(path))


def healthcheck_seconds(healthcheck: Healthcheck | None) -> int:
    """The longest a health check can take on a host (0 without one)."""
    return 0 if healthcheck is None else healthcheck.longest


def artifact_path(path: str, sha256: str) -> str:
    """Where the artifact with this sha256 lives on a host deployed to ``path``."""
    return f"{check_path(path)}/.conveyor/artifacts/{_sha256(sha256)}.tar.gz"


def files_path(path: str, sha256: str) -> str:
    """Where the artifact's list of files is sent for :func:`lacks` and :func:`prepare`."""
    return f"{check_path(path)}/.conveyor/artifacts/{_sha256(sha256)}.files"


def delta_path(path: str, sha256: str) -> str:
    """Where the changed files (a plain tar) are sent for an incremental :func:`prepare`."""
    return f"{check_path(path)}/.conveyor/artifacts/{_sha256(sha256)}.delta.tar"


def check_path(path: str) -> str:
    """Return ``path`` if it is a safe absolute path on a host, else raise InvalidStepError."""
    normalised = _PATH.fullmatch(path) and posixpath.normpath(path) == path and "//" not in path
    if not normalised or path == "/":
        raise InvalidStepError(
            "a path on a host must be absolute and normalised, of letters, digits and ._/@+-,"
            f" and not '/'; got {path!r}"
        )
    return path


def check_shared(entry: str) -> str:
    """Return ``entry`` if it is a safe shared entry (relative, normalised, plain
    characters, optionally ending in ``/``), else raise InvalidStepError."""
    if not _SHARED.fullmatch(entry) or "//" in entry:
        raise InvalidStepError(
            "a shared entry must be a relative path of letters, digits and ._@+- without"
            f" '.' or '..' parts (a trailing / asks for a folder); got {entry!r}"
        )
    return entry


def stdin_text(step: Step) -> str:
    """The text fed to ``sh -s``: the params, the env exports, then the script, in one
    brace group.

    The brace group makes the shell read the whole text before running any of it,
    so a text cut short in transit runs nothing (a syntax error), and commands of
    the script cannot read the rest of the script: their standard input is
    ``/dev/null``.
    """
    params = "".join(
        f"{name}={shlex.quote(value)}\n" for name, value in sorted(step.params.items())
    )
    exports = "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in sorted(step.env.items())
    )
    return f"{{\n{params}{exports}{step.script.rstrip()}\n}} </dev/null\n"


def parse_fields(stdout: str) -> dict[str, str]:
    """Read the ``name=value`` lines a deploy script prints (other lines are ignored)."""
    fields: dict[str, str] = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.isidentifier():
            fields[name] = value
    return fields


def parse_prepare(stdout: str) -> Prepared:
    """Read the output of :func:`prepare` (also of one that failed)."""
    fields = parse_fields(stdout)
    return Prepared(previous=fields.get("previous") or None, release=fields.get("release") or None)


def parse_lacks(stdout: str) -> Lacks:
    """Read the output of :func:`lacks`."""
    fields = parse_fields(stdout)
    if "previous" not in fields or fields.get("usable") not in ("yes", "no"):
        raise ValueError(f"lacks printed something unexpected: {stdout[:200]!r}")
    names = tuple(line[len("lacks="):] for line in stdout.splitlines()
                  if line.startswith("lacks="))
    return Lacks(previous=fields["previous"] or None, usable=fields["usable"] == "yes",
                 names=names)


def parse_probe(stdout: str) -> ProbeResult:
    """Read the output of :func:`probe`."""
    fields = parse_fields(stdout)
    if "current" not in fields or fields.get("artifact") not in ("yes", "no"):
        raise ValueError(f"probe printed something unexpected: {stdout!r}")
    return ProbeResult(current=fields["current"] or None, has_artifact=fields["artifact"] == "yes")


def _step(name: str, *args: str, env: Mapping[str, str] | None = None,
          params: Mapping[str, str] | None = None) -> Step:
    """A step running ``deploy_scripts/<name>.sh`` after ``common.sh``."""
    text = deploy_scripts.script("common") + "\n" + deploy_scripts.script(name)
    return Step(name=name, script=text, args=args, env=env or {}, params=params or {})


def _list(name: str, items: Iterable[str]) -> dict[str, str]:
    """A list as the scripts read it: ``<name>_count`` and ``<name>_1`` .. ``<name>_N``."""
    values = list(items)
    return {f"{name}_count": str(len(values)),
            **{f"{name}_{n}": value for n, value in enumerate(values, 1)}}


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


def _check_param(name: str, value: str) -> None:
    if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
        raise InvalidStepError(
            f"a script parameter name is lowercase letters, digits and _, got {name!r}"
        )
    if not isinstance(value, str) or "\0" in value:
        raise InvalidStepError(f"the value of {name} must be text without NUL characters")


def _check_env(name: str, value: str) -> None:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise InvalidStepError(
            f"an environment variable name is uppercase letters, digits and _, got {name!r}"
        )
    if name in _RESERVED_ENV:
        raise InvalidStepError(f"the environment variable {name} is reserved for the scripts")
    if not isinstance(value, str) or "\0" in value:
        raise InvalidStepError(f"the value of {name} must be text without NUL characters")
