"""Pack a 200 MB folder of mixed files into Conveyor's artifact and compare with `tar -czf`.

Both run in this process group on the same folder, in turns, three times each; the medians
and their ratio are printed (target: Conveyor at most 0.5 times tar -czf, its gzip members
compressed in parallel). Not part of the test run:

    python bench/build.py [--size-mb 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers import build

WORDS = [f"w{n:x}" for n in range(4096)]


def make_tree(root: Path, size_mb: int) -> None:
    """Many small text files, some medium ones, a few large: source-like and binary content."""
    rng = random.Random(42)
    budget = size_mb * 1024 * 1024
    written = 0
    n = 0
    while written < budget:
        n += 1
        kind = rng.random()
        if kind < 0.979:
            size = rng.randint(200, 16_000)           # source files
        elif kind < 0.999:
            size = rng.randint(50_000, 600_000)       # bundles, images
        else:
            size = rng.randint(5_000_000, 20_000_000)  # archives, wheels
        path = root / f"pkg{n % 40}" / f"mod{n % 300}" / f"file{n}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        if rng.random() < 0.7:
            text = " ".join(rng.choices(WORDS, k=size // 5 + 1)).encode()[:size]
            path.write_bytes(text)
        else:
            path.write_bytes(rng.randbytes(size))
        written += size


def timed(func) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="conveyor-bench-build-", dir="/dev/shm"))
    try:
        work = base / "checkout"
        make_tree(work / "dist", args.size_mb)
        files = sum(1 for p in (work / "dist").rglob("*") if p.is_file())
        out = base / "out"
        conveyor, tar = [], []
        for _ in range(args.runs):
            tar.append(timed(lambda: subprocess.run(
                ["tar", "-czf", str(base / "tar.tar.gz"), "-C", str(work), "dist"], check=True)))
            conveyor.append(timed(lambda: build.pack(work, ("dist",), out, {"time": 0})))
        a, b = statistics.median(conveyor), statistics.median(tar)
        sizes = (next(out.glob("*.tar.gz")).stat().st_size, (base / "tar.tar.gz").stat().st_size)
        print(f"folder: {args.size_mb} MB in {files} files (tmpfs)")
        print(f"conveyor pack: {a:.2f} s  (runs {', '.join(f'{t:.2f}' for t in conveyor)}), "
              f"{sizes[0] / 1e6:.1f} MB")
        print(f"tar -czf:      {b:.2f} s  (runs {', '.join(f'{t:.2f}' for t in tar)}), "
              f"{sizes[1] / 1e6:.1f} MB")
        print(f"ratio conveyor / tar -czf: {a / b:.2f}  (target <= 0.5)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
