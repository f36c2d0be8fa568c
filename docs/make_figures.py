"""Make the pictures in README.md: python docs/make_figures.py

- linear.png: samples/photo.png shrunk 4x by plain (sRGB) averaging and by --linear;
- visualize.png: `poolcli visualize samples/feature_map.npy -k 3 -s 2 -p 1 -o docs/visualize.png`;
- visualize-dilated.png: a 16×16 plane, `-k 3 -s 2 -d 2 --backward` (taps outlined, not boxes);
- visualize-adaptive.png: the same plane, `--op avg --output-size 7 --backward` (overlapping windows,
  a colour scale for the gradient).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image

from poolcli.cli import main as poolcli
from poolcli.render.figure import Canvas

HERE = Path(__file__).parent
SAMPLES = HERE.parent / "samples"


def linear_figure() -> None:
    photo = SAMPLES / "photo.png"
    with tempfile.TemporaryDirectory() as tmp:
        plain, linear = Path(tmp) / "plain.png", Path(tmp) / "linear.png"
        assert poolcli(["forward", str(photo), "--op", "avg", "-k", "4", "-o", str(plain)]) == 0
        assert poolcli(["forward", str(photo), "--op", "avg", "-k", "4", "--linear", "-o", str(linear)]) == 0
        zoom = 4
        original = Image.open(photo).convert("RGB")
        size = (original.width * zoom, original.height * zoom)
        canvas = Canvas("Shrinking 1-pixel black and white stripes 4x")

        def enlarged(image: Image.Image) -> Image.Image:
            return image.convert("RGB").resize(size, Image.Resampling.NEAREST)

        canvas.add("original (enlarged x4)", enlarged(original), "half the light of white: step back to see it")
        canvas.add("--op avg -k 4 (sRGB values)", enlarged(Image.open(plain)), "sRGB 128: darker than the stripes look")
        canvas.add("--op avg -k 4 --linear", enlarged(Image.open(linear)), "sRGB 188: the stripes' brightness")
        canvas.render().save(HERE / "linear.png", optimize=True)


def main() -> None:
    linear_figure()
    assert poolcli(["visualize", str(SAMPLES / "feature_map.npy"), "-k", "3", "-s", "2", "-p", "1",
                    "-o", str(HERE / "visualize.png")]) == 0
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        plane = Path(tmp) / "plane.npy"
        np.save(plane, np.random.default_rng(0).normal(size=(16, 16)))
        assert poolcli(["visualize", str(plane), "-k", "3", "-s", "2", "-d", "2", "--backward",
                        "-o", str(HERE / "visualize-dilated.png")]) == 0
        assert poolcli(["visualize", str(plane), "--op", "avg", "--output-size", "7", "--backward",
                        "-o", str(HERE / "visualize-adaptive.png")]) == 0


if __name__ == "__main__":
    main()
