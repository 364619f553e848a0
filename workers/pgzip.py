"""gzip compressed on every core: a stream cut into blocks, each one a gzip member.

A file of several members is a valid gzip file (RFC 1952 §2.2): plain `gzip -d` and
`tar xzf` read it as one stream. The blocks are cut at fixed offsets and each member's
header is fixed (no name, mtime 0), so the same input gives the same bytes whatever the
number of threads. zlib releases the GIL while it deflates, so threads are enough.
(Python's own `tarfile` mode "r|gz" reads only the first member: read with "r:gz", which
goes through `gzip.GzipFile`.)
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

BLOCK = 1 << 20  # 1 MiB per member: a ratio within 0.1 % of one stream's
LEVEL = 6  # gzip's default, as `tar -czf`
_PROBE = 1 << 14
# ID1 ID2 CM FLG, MTIME 0, XFL 0, OS 255 (unknown): the same bytes on every machine.
_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"


def member(data: bytes, level: int = LEVEL) -> bytes:
    """One whole gzip member holding `data`; a block that does not compress (images,
    archives: see `_incompressible`) is stored, which is smaller than deflating it and
    dozens of times faster."""
    if level and _incompressible(data):
        level = 0
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return _HEADER + body + trailer


def _incompressible(data: bytes) -> bool:
    """Whether every one of four 16 KiB samples shrinks by less than 3 % at level 1 (a block
    that mixes noise and text is deflated, as it would be whole)."""
    if len(data) < 4 * _PROBE:
        return False
    step = len(data) // 4
    samples = (data[n * step:n * step + _PROBE] for n in range(4))
    return all(len(zlib.compress(sample, 1)) > 0.97 * _PROBE for sample in samples)


def read_block(source: BinaryIO, offset: int, size: int) -> bytes:
    """What the member of `size` bytes at `offset` of a file `source` holds."""
    source.seek(offset)
    return zlib.decompress(source.read(size), 16 + zlib.MAX_WBITS)


class ParallelGzipWriter(io.RawIOBase):
    """A writable stream that gzips what it is given into `target`, blocks in parallel.

    Closing it writes what is left (an empty input still makes one valid member); it
    does not close `target`. `sizes` then gives each member's compressed length: member
    k holds bytes k * block to (k + 1) * block of the input, so a reader can inflate
    just the members a range of the input lies in (`read_block`).
    """

    def __init__(self, target: BinaryIO, *, level: int = LEVEL, block: int = BLOCK,
                 threads: int | None = None) -> None:
        self._target, self._level, self._block = target, level, block
        self._threads = threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="pgzip")
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self._members = 0
        self.sizes: list[int] = []  # each member's compressed length, in order

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        """Take `data`; full blocks go to the threads, finished members to the target."""
        self._buffer += data
        while len(self._buffer) >= self._block:
            self._submit(bytes(self._buffer[:self._block]))
            del self._buffer[:self._block]
        return len(data)

    def close(self) -> None:
        """Compress what is left, write every member in order, stop the threads."""
        if self.closed:
            return
        try:
            if self._buffer or not self._members:
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            self._drain(0)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            super().close()

    def _submit(self, data: bytes) -> None:
        self._pending.append(self._pool.submit(member, data, self._level))
        self._members += 1
        self._drain(2 * self._threads)  # bounded memory: at most a few blocks in flight

    def _drain(self, keep: int) -> None:
        while len(self._pending) > keep or (self._pending and self._pending[0].done()):
            written = self._pending.popleft().result()
            self._target.write(written)
            self.sizes.append(len(written))
