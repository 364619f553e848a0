"""The worker's side of an incremental deployment: tars of changed files read from a real
artifact, through the index the build wrote beside it or, without it, by reading it all."""

from __future__ import annotations

import hashlib
import os
import random
import tarfile
from pathlib import Path

from workers import build
from workers.delta import DeltaSource, index_path


def _artifact(tmp_path: Path) -> Path:
    rng = random.Random(11)
    workspace = tmp_path / "ws"
    for n in range(40):  # about 3 MB: several gzip members, files across their edges
        path = workspace / "dist" / f"d{n % 3}" / f"f{n}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1000, 150_000)))
    (workspace / "dist/run.sh").write_text("#!/bin/sh\n")
    os.chmod(workspace / "dist/run.sh", 0o755)  # noqa: S103 - an executable file
    return Path(build.pack(workspace, ("dist",), tmp_path / "out", {"time": 5}).path)


def _members(path: Path) -> list[tuple[str, int, int, str]]:
    with tarfile.open(path) as tar:
        return [(m.name, m.mode, m.mtime, hashlib.sha256(tar.extractfile(m).read()).hexdigest())  # type: ignore[union-attr]
                for m in tar.getmembers()]


def test_the_index_and_a_whole_read_give_the_same_tar(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    assert index_path(artifact).is_file()
    wanted = frozenset({"dist/d0/f3.bin", "dist/d2/f38.bin", "dist/run.sh"})
    indexed = DeltaSource.of(artifact)
    assert indexed is not None and indexed.index is not None
    index_path(artifact).unlink()
    whole = DeltaSource.of(artifact)
    assert whole is not None and whole.index is None
    try:
        got, read_all = _members(indexed.tar(wanted)), _members(whole.tar(wanted))
        assert got == read_all
        assert [name for name, *_ in got] == [*sorted(wanted), ".conveyor-release.json"]
        assert {name: digest for name, _, _, digest in got} == {
            name: indexed.hashes[name] for name in wanted | {".conveyor-release.json"}}
        assert dict((name, mode) for name, mode, _, _ in got)["dist/run.sh"] == 0o755
    finally:
        indexed.close()
        whole.close()


def test_an_index_that_does_not_fit_is_not_trusted(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    index = index_path(artifact)
    index.write_text(index.read_text().replace('"dist/d1/f4.bin":[', '"dist/d1/f4.bin":[1'))
    source = DeltaSource.of(artifact)
    assert source is not None
    try:
        got = _members(source.tar(frozenset({"dist/d1/f4.bin"})))
        assert dict((name, digest) for name, _, _, digest in got)["dist/d1/f4.bin"] == \
            source.hashes["dist/d1/f4.bin"]
    finally:
        source.close()
