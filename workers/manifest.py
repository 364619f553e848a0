"""The artifact's list of files (`.conveyor-files`, its first member), as pure data.

One line per entry, sorted by path, fields separated by a tab:
`f <mode> <size> <sha256> <path>` for a file, `d 755 - - <path>` for a folder,
`l 777 - <target> <path>` for a symbolic link, after a first line `conveyor-files 1`.
The list does not name itself. A host compares it with the list of the release it runs to
say which files it lacks (`deploy_scripts/lacks.sh`) and checks a release assembled from
the previous one against it (`deploy_scripts/prepare.sh`). Those scripts read names with
`awk` and `tar` listings, so the list is only written when every name and link target is
plain (letters, digits and `._@+,=:~%-`, parts joined by `/`); an artifact with another
name has no list and is always sent whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

NAME = ".conveyor-files"
HEADER = "conveyor-files 1"
_PART = r"(?!\.{1,2}(/|$))[A-Za-z0-9._@+,=:~%-]+"
_PLAIN = re.compile(rf"{_PART}(/{_PART})*")
_TARGET_PART = re.compile(r"[A-Za-z0-9._@+,=:~%-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """A list of files that cannot be read, or an entry that cannot be written."""


@dataclass(frozen=True)
class Entry:
    """One entry of the list: a file (`f`), folder (`d`) or symbolic link (`l`)."""

    kind: str
    path: str
    mode: int = 0o644
    size: int = 0
    sha256: str = ""
    target: str = ""

    def line(self) -> str:
        """The entry's line in the list (without the newline)."""
        if self.kind == "f":
            return f"f\t{self.mode:o}\t{self.size}\t{self.sha256}\t{self.path}"
        if self.kind == "d":
            return f"d\t755\t-\t-\t{self.path}"
        return f"l\t777\t-\t{self.target}\t{self.path}"


def file(path: str, mode: int, size: int, sha256: str) -> Entry:
    """A regular file's entry (mode 644 or 755, as the artifact holds it)."""
    return Entry("f", path, mode=mode, size=size, sha256=sha256)


def folder(path: str) -> Entry:
    """A folder's entry."""
    return Entry("d", path, mode=0o755)


def link(path: str, target: str) -> Entry:
    """A symbolic link's entry."""
    return Entry("l", path, mode=0o777, target=target)


def plain(path: str) -> bool:
    """Whether a name can be listed: relative, normalised, of plain characters only."""
    return bool(_PLAIN.fullmatch(path))


def plain_target(target: str) -> bool:
    """Whether a link target can be listed: relative parts (`..` allowed) of plain characters."""
    parts = target.split("/")
    return bool(target) and all(part == ".." or (_TARGET_PART.fullmatch(part) and part != ".")
                                for part in parts)


def listable(entries: Iterable[Entry]) -> bool:
    """Whether every entry's name (and link target) can be written in a list."""
    return all(plain(e.path) and (e.kind != "l" or plain_target(e.target)) for e in entries)


def render(entries: Iterable[Entry]) -> bytes:
    """The list's bytes: the header, then one line per entry sorted by path."""
    ordered = sorted(entries, key=lambda entry: entry.path)
    if not listable(ordered):
        raise ManifestError("an entry's name or link target is not plain")
    return ("\n".join([HEADER, *(entry.line() for entry in ordered)]) + "\n").encode()


def parse(data: bytes) -> list[Entry]:
    """The entries of a list written by :func:`render`; ManifestError when it is not one."""
    lines = data.decode("utf-8", "strict").split("\n")
    if lines[:1] != [HEADER] or lines[-1] != "":
        raise ManifestError("not a list of files (no header, or cut short)")
    entries = [_entry(line, number) for number, line in enumerate(lines[1:-1], 2)]
    if [e.path for e in entries] != sorted({e.path for e in entries}):
        raise ManifestError("the entries are not sorted by path, or one is listed twice")
    return entries


def total_size(entries: Iterable[Entry]) -> int:
    """The bytes of all files listed."""
    return sum(entry.size for entry in entries if entry.kind == "f")


def changed(new: Iterable[Entry], old: Iterable[Entry]) -> list[Entry]:
    """The files of `new` that `old` does not hold as they are (content, size and mode)."""
    held = {e.path: e for e in old if e.kind == "f"}
    return [e for e in new if e.kind == "f" and held.get(e.path) != e]


def _entry(line: str, number: int) -> Entry:
    fields = line.split("\t")
    if len(fields) != 5 or not plain(fields[4]):
        raise ManifestError(f"line {number} is not an entry: {line!r}")
    kind, mode, size, value, path = fields
    if kind == "f" and mode in ("644", "755") and size.isdigit() and _SHA256.fullmatch(value):
        return file(path, int(mode, 8), int(size), value)
    if kind == "d" and (mode, size, value) == ("755", "-", "-"):
        return folder(path)
    if kind == "l" and (mode, size) == ("777", "-") and plain_target(value):
        return link(path, value)
    raise ManifestError(f"line {number} is not an entry: {line!r}")
