"""The worker's side of an incremental deployment: the artifact's list of files and the
tars of changed files, read from the local artifact once per deployment.

An artifact whose first member is its list of files (`workers.manifest`) can be sent in
part: each host says which files it lacks (`deploy_scripts/lacks.sh`) and gets a plain tar
of just those, made here once for all the hosts that lack the same files.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path

from workers import manifest

# `.conveyor-release.json` differs in every build: every host lacks it.
ALWAYS = frozenset({".conveyor-release.json"})


class DeltaSource:
    """The list of files of one local artifact, and tars of its members, in a temporary
    folder removed by :meth:`close`. Safe to use from the threads of every host."""

    def __init__(self, artifact: Path, listed: bytes) -> None:
        self.artifact = artifact
        self.entries = manifest.parse(listed)
        self.sizes = {e.path: e.size for e in self.entries if e.kind == "f"}
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
            return cls(artifact, listed)
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

    def _extract(self, wanted: frozenset[str], out: Path) -> None:
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
