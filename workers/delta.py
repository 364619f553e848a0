"""The worker's side of an incremental deployment: the artifact's list of files and the
tars of changed files, read from the local artifact once per deployment.

An artifact whose first member is its list of files (`workers.manifest`) can be sent in
part: each host says which files it lacks (`deploy_scripts/lacks.sh`) and gets a plain tar
of just those, made here once for all the hosts that lack the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import threading
import zlib
from pathlib import Path

from workers import manifest
from workers.pgzip import read_block

# `.conveyor-release.json` differs in every build: every host lacks it.
ALWAYS = frozenset({".conveyor-release.json"})


class DeltaSource:
    """The list of files of one local artifact, and tars of its members, in a temporary
    folder removed by :meth:`close`. Safe to use from the threads of every host."""

    def __init__(self, artifact: Path, listed: bytes, index: dict[str, object] | None = None
                 ) -> None:
        self.artifact = artifact
        self.entries = manifest.parse(listed)
        self.sizes = {e.path: e.size for e in self.entries if e.kind == "f"}
        self.hashes = {e.path: e.sha256 for e in self.entries if e.kind == "f"}
        self.index = index
        self.total = manifest.total_size(self.entries)
        self.sha256 = hashlib.sha256(listed).hexdigest()
        self._dir = Path(tempfile.mkdtemp(prefix="conveyor-delta-"))
        self.files = self._dir / "files"
        self.files.write_bytes(listed)
        self._lock = threading.Lock()
        self._tars: dict[frozenset[str], Path] = {}

    @classmethod
    def of(cls, artifact: Path) -> DeltaSource | None:
        """The source for `artifact`, or None when it has no (readable) list of files."""
        try:
            with tarfile.open(artifact, "r:gz") as tar:
                first = tar.next()
                if first is None or first.name != manifest.NAME or not first.isfile():
                    return None
                handle = tar.extractfile(first)
                listed = handle.read() if handle is not None else b""
            return cls(artifact, listed, _index_of(artifact))
        except (OSError, tarfile.TarError, EOFError, ValueError):
            return None

    def size_of(self, names: frozenset[str]) -> int:
        """The bytes of the files named (0 for a name that is not a file of the list)."""
        return sum(self.sizes.get(name, 0) for name in names)

    def tar(self, names: frozenset[str]) -> Path:
        """A plain tar of the named files (and `.conveyor-release.json`), members as the
        artifact holds them; made once per set of names. ValueError for a name that is not
        a file of the list."""
        wanted = frozenset(names) | ALWAYS
        unknown = sorted(name for name in wanted if name not in self.sizes)
        if unknown:
            raise ValueError(f"the host asked for files the artifact does not list: {unknown[:3]}")
        with self._lock:
            made = self._tars.get(wanted)
            if made is None:
                made = self._dir / f"delta-{len(self._tars)}.tar"
                self._extract(wanted, made)
                self._tars[wanted] = made
            return made

    def close(self) -> None:
        """Remove the temporary folder."""
        shutil.rmtree(self._dir, ignore_errors=True)

    def _extract_indexed(self, wanted: frozenset[str], out: Path) -> bool:
        """Read just the gzip members the wanted files lie in (the index the build wrote
        beside the artifact); False when the index does not fit the artifact."""
        index = self.index
        assert index is not None
        block, sizes, spans = index["block"], index["members"], index["files"]
        assert isinstance(block, int) and isinstance(sizes, list) and isinstance(spans, dict)
        if sum(sizes) != self.artifact.stat().st_size:
            return False
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        blocks: dict[int, bytes] = {}
        with open(self.artifact, "rb") as source, \
                tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as target:
            for name in sorted(wanted, key=lambda name: spans[name][0]):  # the artifact's order
                start, end = spans[name]
                first, last = start // block, (end - 1) // block
                for k in range(first, last + 1):
                    if k not in blocks:
                        blocks[k] = read_block(source, offsets[k], sizes[k])
                data = b"".join(blocks[k] for k in range(first, last + 1))
                piece = data[start - first * block:end - first * block]
                with tarfile.open(fileobj=io.BytesIO(piece), mode="r:") as tar:
                    member = tar.next()
                    handle = tar.extractfile(member) if member is not None else None
                    if member is None or member.name != name or handle is None:
                        return False
                    body = handle.read()
                if hashlib.sha256(body).hexdigest() != self.hashes[name]:
                    return False
                target.addfile(member, io.BytesIO(body))
        return True

    def _extract(self, wanted: frozenset[str], out: Path) -> None:
        if self.index is not None:
            try:
                if self._extract_indexed(wanted, out):
                    return
            except (OSError, tarfile.TarError, EOFError, ValueError, LookupError, TypeError,
                    zlib.error):
                pass  # read it all, below
        found: set[str] = set()
        with tarfile.open(self.artifact, "r:gz") as source, \
                tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as target:
            for member in source:
                if member.name in wanted and member.isfile():
                    target.addfile(member, source.extractfile(member))
                    found.add(member.name)
                    if found == wanted:
                        break
        if found != wanted:
            missing = sorted(wanted - found)[:3]
            raise ValueError(f"the artifact lacks files its list names: {missing}")


def index_path(artifact: Path) -> Path:
    """Where the artifact's index lies beside it on the machine that built it: each gzip
    member's length and each entry's place in the tar, so that a few files are read
    without inflating the whole; never sent to hosts."""
    return artifact.with_name(artifact.name.removesuffix(".tar.gz") + ".index.json")


def _index_of(artifact: Path) -> dict[str, object] | None:
    """The index the build wrote beside the artifact, if any."""
    try:
        found = json.loads(index_path(artifact).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None
