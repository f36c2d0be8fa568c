"""Peak memory of poolcli commands on large but legal inputs, as peak resident anonymous memory.

Run: python benchmarks/bench_memory.py [--megapixels 100] [--only rgba-png,shape]
Each case runs the real ``poolcli`` command in a child process and samples ``RssAnon`` in
``/proc/PID/status`` every few milliseconds (Linux only). A row gives the peak, the sizes of the
decoded input and of the output, and what is left over: the working memory of the command. Averaging
an RGBA image works in strips of rows, so its working memory stays bounded whatever the image's size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from benchlib import USER_ENV

MIB = 1 << 20


def peak_rss_anon(args: list[str], every: float = 0.002) -> tuple[int, int]:
    """Run ``poolcli ARGS``; return its exit status and its peak RssAnon in bytes, sampled."""
    proc = subprocess.Popen([sys.executable, "-m", "poolcli", *args], env=USER_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, ValueError):
            pass
        time.sleep(every)
    if proc.returncode:
        print(proc.stderr.read().decode().strip(), file=sys.stderr)
    return proc.returncode, peak


def rgba_png(path: Path, megapixels: int) -> int:
    """A smooth RGBA image of about ``megapixels`` Mpx with varying alpha (so averaging premultiplies)."""
    from PIL import Image

    side = int((megapixels * 1e6) ** 0.5)
    ramp = (np.arange(side) * 255 // max(side - 1, 1)).astype(np.uint8)
    image = np.empty((side, side, 4), dtype=np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    image[..., 2] = 128
    image[..., 3] = ramp[::-1][None, :]
    Image.fromarray(image, "RGBA").save(path, compress_level=1)
    return image.nbytes


def cases(tmp: Path, megapixels: int) -> dict[str, Callable[[], tuple[list[str], int, int]]]:
    """name -> (a function making the input and returning the command, decoded input bytes, output bytes)."""

    def rgba(suffix: str) -> Callable[[], tuple[list[str], int, int]]:
        def make() -> tuple[list[str], int, int]:
            source = tmp / "big.png"
            if not source.exists():
                rgba_png(source, megapixels)
            side = int((megapixels * 1e6) ** 0.5)
            return (["forward", str(source), "--op", "avg", "-k", "2", "-o", str(tmp / f"small{suffix}")],
                    side * side * 4, (side // 2) ** 2 * 4)
        return make

    def signal_1d() -> tuple[list[str], int, int]:
        np.save(tmp / "sig.npy", np.random.default_rng(0).random(100_000).astype(np.float32))
        return (["forward", str(tmp / "sig.npy"), "-k", "1001", "-s", "1", "--op", "avg", "-o", str(tmp / "y.npy")],
                400_000, 99_000 * 4)

    def lying_npz() -> tuple[list[str], int, int]:
        import io
        import zipfile

        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (1 << 28,)})
        with zipfile.ZipFile(tmp / "lie.npz", "w") as z:
            z.writestr("a.npy", header.getvalue() + b"\0" * 64)
        return ["forward", str(tmp / "lie.npz"), "-o", str(tmp / "y.npy")], 0, 0

    return {
        "rgba-png": rgba(".png"),
        "rgba-npy": rgba(".npy"),
        "shape": lambda: (["shape", "1000000", "-k", "1001", "-s", "1"], 0, 0),
        "signal-k1001": signal_1d,
        "lying-npz": lying_npz,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=int, default=100, help="size of the RGBA image (default 100)")
    parser.add_argument("--only", default="", help="comma-separated case names")
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        sys.exit("bench_memory needs Linux's /proc to sample memory")
    import os
    import platform

    import PIL

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}, Pillow {PIL.__version__}")
    baseline = peak_rss_anon(["--version"])[1]
    print(f"interpreter and imports alone: {baseline / MIB:.0f} MiB")
    print(f"{'case':14} {'exit':>4} {'peak MiB':>9} {'input MiB':>10} {'output MiB':>11} {'working MiB':>12}")
    with tempfile.TemporaryDirectory() as folder:
        for name, make in cases(Path(folder), args.megapixels).items():
            if args.only and name not in args.only.split(","):
                continue
            command, decoded, written = make()
            code, peak = peak_rss_anon(command)
            working = peak - decoded - written
            print(f"{name:14} {code:>4} {peak / MIB:>9.0f} {decoded / MIB:>10.0f} {written / MIB:>11.0f} "
                  f"{working / MIB:>12.0f}")


if __name__ == "__main__":
    main()
