"""Parallel gzip: members readable by plain `gzip -d` and `tar xzf`, the same bytes always."""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import tarfile
from pathlib import Path

from workers.pgzip import ParallelGzipWriter


def _compress(data: bytes, **options: int) -> bytes:
    out = io.BytesIO()
    with ParallelGzipWriter(out, **options) as writer:
        for start in range(0, len(data), 7919):  # writes of an odd size, across blocks
            writer.write(data[start:start + 7919])
    return out.getvalue()


def _sample(size: int) -> bytes:
    rng = random.Random(7)
    return b"".join(rng.choice([b"hello ", b"world ", rng.randbytes(5)]) for _ in range(size // 5))


def test_plain_gzip_reads_back_every_member(tmp_path: Path) -> None:
    data = _sample(300_000)
    packed = _compress(data, block=65536, threads=3)
    assert packed.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff") >= 4  # several members
    (tmp_path / "x.gz").write_bytes(packed)
    out = subprocess.run(["gzip", "-dc", str(tmp_path / "x.gz")], check=True,
                         capture_output=True).stdout
    assert out == data
    assert subprocess.run(["gzip", "-t", str(tmp_path / "x.gz")]).returncode == 0


def test_the_same_input_gives_the_same_bytes_whatever_the_threads() -> None:
    data = _sample(200_000)
    assert _compress(data, block=50_000, threads=1) == _compress(data, block=50_000, threads=4)
    assert gzip.decompress(_compress(data, block=50_000, threads=2)) == data


def test_empty_input_is_one_valid_member() -> None:
    packed = _compress(b"")
    assert gzip.decompress(packed) == b""


def test_a_tar_written_through_it_unpacks_with_tar_xzf(tmp_path: Path) -> None:
    files = {f"d/f{n}.txt": _sample(20_000 + n) for n in range(20)}
    with open(tmp_path / "a.tar.gz", "wb") as raw, \
            ParallelGzipWriter(raw, block=32768) as zipped, \
            tarfile.open(fileobj=zipped, mode="w|") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    (tmp_path / "out").mkdir()
    subprocess.run(["tar", "xzf", str(tmp_path / "a.tar.gz"), "-C", str(tmp_path / "out")],
                   check=True)
    assert {name: (tmp_path / "out" / name).read_bytes() for name in files} == files


def test_a_block_that_does_not_compress_is_stored_and_reads_back() -> None:
    noise = random.Random(5).randbytes(200_000)
    packed = _compress(noise, block=100_000)
    assert gzip.decompress(packed) == noise
    assert len(packed) < len(noise) + 200  # stored: a few bytes of framing per block
