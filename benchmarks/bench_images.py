"""Batch image downsampling: poolcli (2 workers) vs a plain Pillow Image.reduce(2) loop vs ImageMagick.

Run: python benchmarks/bench_images.py [--count 200] [--jobs 2]
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
import time
from pathlib import Path

import numpy as np
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


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = root / "photos"
        photos.mkdir()
        make_photos(photos, args.count)
        files = sorted(photos.glob("*.jpg"))

        def pillow_loop():
            out = root / "pillow"
            out.mkdir()
            for f in files:
                with Image.open(f) as img:
                    img.reduce(2).save(out / f.name, quality=90)

        def poolcli_batch():
            subprocess.run([sys.executable, "-m", "poolcli", "forward", str(photos), "--op", "avg", "-k", "2",
                            "--out-dir", str(root / "poolcli"), "--jobs", str(args.jobs)], check=True)

        rows = [("pillow reduce(2), 1 process", timed(pillow_loop), 1),
                (f"poolcli --jobs {args.jobs}", timed(poolcli_batch), args.jobs)]
        if shutil.which("mogrify"):
            def magick():
                out = root / "magick"
                out.mkdir()
                subprocess.run(["mogrify", "-path", str(out), "-scale", "50%", *map(str, files)], check=True)

            rows.append(("ImageMagick mogrify -scale 50%", timed(magick), 1))
        else:
            print("ImageMagick not installed: apt-get install imagemagick to compare")
        print(f"{args.count} JPEGs, 1920x1080, 2x average downsampling")
        for name, seconds, cores in rows:
            rate = args.count / seconds
            print(f"{name:32} {seconds:7.2f} s {rate:7.1f} images/s {rate / cores:7.1f} per core")


if __name__ == "__main__":
    main()
