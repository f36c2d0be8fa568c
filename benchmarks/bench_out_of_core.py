"""Pooling an array larger than memory: peak resident anonymous memory and time per GiB, file to file.

Run: python benchmarks/bench_out_of_core.py [--gib 6] [--in-memory-gib 1] [--block-mb 2]
Makes a float32 .npy of ``--gib`` GiB as a sparse file (``open_memmap``: no disk written for it), then runs
the real ``poolcli forward`` (max, -k 2) and ``poolcli backward`` on it to .npy outputs, sampling ``RssAnon``
in ``/proc/PID/status`` (the memory the process holds itself; the mapped input and output pages belong to
the page cache). For the time per GiB it runs the same commands on an input of ``--in-memory-gib`` GiB
read whole into memory (a .npz member, which poolcli reads into memory rather than mapping).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_memory import MIB, peak_rss_anon
from benchlib import table_header

GIB = 1 << 30


def sparse_npy(path: Path, gib: float) -> tuple[int, ...]:
    """A float32 (N, 64, 256, 256) .npy of about ``gib`` GiB, sparse: every value 0, no disk used."""
    n = max(1, int(gib * GIB) // (64 * 256 * 256 * 4))
    shape = (n, 64, 256, 256)
    a = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    a.flush()
    del a
    return shape


def timed(args: list[str]) -> tuple[int, int, float]:
    """Exit status, peak RssAnon and wall seconds of ``poolcli ARGS``."""
    start = time.perf_counter()
    code, peak = peak_rss_anon(args)
    return code, peak, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=6.0)
    parser.add_argument("--in-memory-gib", type=float, default=1.0)
    parser.add_argument("--block-mb", type=int, default=2)
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        sys.exit("bench_out_of_core needs Linux's /proc to sample memory")
    import platform

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    baseline = peak_rss_anon(["--version"])[1]
    print(f"interpreter and imports alone: {baseline / MIB:.0f} MiB; blocks of {args.block_mb} MiB\n")
    table_header("case", "input GiB", "exit", "peak RssAnon MiB", "wall s", "s per GiB")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        tmp = Path(folder)
        big, small = tmp / "big.npy", tmp / "small.npz"
        shape = sparse_npy(big, args.gib)
        n = max(1, int(args.in_memory_gib * GIB) // (64 * 256 * 256 * 4))
        np.savez(small, x=np.zeros((n, *shape[1:]), dtype=np.float32))
        sizes = {big: int(np.prod(shape)) * 4 / GIB, small: n * 64 * 256 * 256 * 4 / GIB}
        block = ["--block-mb", str(args.block_mb), "--max-bytes", str(1 << 40)]
        runs = [
            ("forward, mapped", big, ["forward", str(big), "-k", "2", "-o", str(tmp / "y.npy"), *block]),
            ("backward, mapped", big, ["backward", str(big), "-k", "2", "-o", str(tmp / "dx.npy"), *block]),
            ("forward, in memory", small, ["forward", str(small), "-k", "2", "-o", str(tmp / "y2.npy"), *block]),
            ("backward, in memory", small, ["backward", str(small), "-k", "2", "-o", str(tmp / "dx2.npy"), *block]),
        ]
        for name, source, command in runs:
            code, peak, wall = timed(command)
            print(f"| {name} | {sizes[source]:.2f} | {code} | {peak / MIB:.0f} | {wall:.1f} | "
                  f"{wall / sizes[source]:.2f} |")
            for out in tmp.glob("*.npy"):
                if out != big:
                    out.unlink()


if __name__ == "__main__":
    main()
