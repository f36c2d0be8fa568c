"""Batch image downsampling: poolcli (2 workers) vs a plain Pillow Image.reduce(2) loop vs ImageMagick.

Run: python benchmarks/bench_images.py [--count 200] [--jobs 2] [--repeat 3]
Generates COUNT photo-like 1920x1080 JPEGs in a temporary folder, then times 2x average
downsampling of all of them by each tool, in images per second. ImageMagick's `mogrify` is
timed when installed (apt-get install imagemagick; for this benchmark only).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from benchlib import USER_ENV, best_of
from PIL import Image


def make_photos(folder: Path, count: int) -> None:
    """Smooth gradients plus texture and noise, so the JPEGs compress like photos."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1080, 0:1920].astype(np.float32)
    for i in range(count):
        phase = rng.random(3) * 6
        base = np.stack([np.sin(x / (200 + 40 * c) + phase[c]) * np.cos(y / (150 + 30 * c)) for c in range(3)], -1)
        img = (base * 90 + 128 + rng.normal(0, 12, size=(1080, 1920, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"photo{i:03}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = root / "photos"
        photos.mkdir()
        make_photos(photos, args.count)
        files = sorted(photos.glob("*.jpg"))

        # Every tool runs as a command from the shell, as a user runs it: interpreter start-up and
        # imports count for the Pillow loop as they do for poolcli.
        code = ("import sys; from pathlib import Path; from PIL import Image\n"
                "for f in sys.argv[2:]:\n"
                "    with Image.open(f) as img: img.reduce(2).save(Path(sys.argv[1]) / Path(f).name, quality=90)")

        def pillow_loop(parts: int, out: Path) -> None:
            procs = [subprocess.Popen([sys.executable, "-c", code, str(out), *map(str, files[i::parts])], env=USER_ENV)
                     for i in range(parts)]
            if any(p.wait() for p in procs):
                raise SystemExit("the Pillow loop failed")

        def pillow_one():
            pillow_loop(1, fresh(root / "pillow"))

        def pillow_processes():  # the same loop in JOBS processes: what this machine's cores scale to
            pillow_loop(args.jobs, fresh(root / "pillow-jobs"))

        def poolcli_batch():
            subprocess.run([sys.executable, "-m", "poolcli", "forward", str(photos), "--op", "avg", "-k", "2",
                            "--out-dir", str(fresh(root / "poolcli")), "--jobs", str(args.jobs)], check=True,
                           stderr=subprocess.DEVNULL, env=USER_ENV)

        def magick():
            out = fresh(root / "magick")
            subprocess.run(["mogrify", "-path", str(out), "-scale", "50%", *map(str, files)], check=True)

        tools = [("pillow reduce(2), 1 process", pillow_one, 1),
                 (f"pillow reduce(2), {args.jobs} processes", pillow_processes, args.jobs),
                 (f"poolcli --jobs {args.jobs}", poolcli_batch, args.jobs)]
        if shutil.which("mogrify"):
            tools.append(("ImageMagick mogrify -scale 50%", magick, 1))
        else:
            print("ImageMagick not installed: apt-get install imagemagick to compare")
        best = {name: float("inf") for name, _, _ in tools}
        for _ in range(args.repeat):  # interleaved, best of each: a shared machine's noise hits all alike
            for name, fn, _ in tools:
                best[name] = min(best[name], best_of(fn, 1))
        print(f"{args.count} JPEGs, 1920x1080, 2x average downsampling, best of {args.repeat}")
        for name, _, cores in tools:
            rate = args.count / best[name]
            print(f"{name:34} {best[name]:7.2f} s {rate:7.1f} images/s {rate / cores:7.1f} per core")
        ratio = (args.count / best[tools[0][0]]) / (args.count / best[tools[2][0]] / args.jobs)
        print(f"pillow loop per core / poolcli per core: {ratio:.2f} (target 1.3 or less)")


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


if __name__ == "__main__":
    main()
