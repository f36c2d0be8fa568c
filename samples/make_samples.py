"""Make the small sample inputs in this folder: python samples/make_samples.py

- feature_map.npy: (1, 3, 8, 8) float32; cell (c, i, j) holds 100*c + 10*i + j plus a small
  deterministic ripple, so a wrong window shows up as a wrong number;
- ties.txt: a 4x4 matrix whose 2x2 windows hold tied maxima (for backward --ties);
- sequence.npy: (2, 4, 16) float32 features for 1-D pooling (--dims 1, --op kmax);
- photo.png: a 96x64 RGB picture with fine stripes, for image pooling and --linear.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def main() -> None:
    c, i, j = np.indices((3, 8, 8))
    ripple = np.round(np.sin(i * 1.7 + j * 0.9 + c) * 4)
    np.save(HERE / "feature_map.npy", (100 * c + 10 * i + j + ripple).astype(np.float32)[None])
    ties = np.array([[1, 3, 2, 2], [3, 0, 2, 2], [5, 5, 0, 7], [1, 5, 7, 7]])
    np.savetxt(HERE / "ties.txt", ties, fmt="%d")
    t = np.arange(16)
    seq = np.stack([np.sin(t * (k + 1) * 0.4 + n) for n in range(2) for k in range(4)]).reshape(2, 4, 16)
    np.save(HERE / "sequence.npy", np.round(seq, 3).astype(np.float32))
    binomial = np.outer([1, 2, 1], [1, 2, 1]) / 16  # a 3×3 blur for avg --weights, one per channel
    np.save(HERE / "weights.npy", np.stack([binomial] * 3))
    # a 2×2 transposed-convolution kernel, 3 channels in, 2 out: corner and centre detectors
    np.save(HERE / "deconv.npy", np.stack([np.stack([np.eye(2), np.ones((2, 2)) / 4])] * 3))
    from PIL import Image

    y, x = np.mgrid[0:64, 0:96]
    sky = np.stack([60 + y, 120 + y, 200 + 0 * y], -1)
    stripes = np.where((x // 1) % 2 == 0, 255, 0)[..., None] * np.ones(3)
    picture = np.where((y > 40)[..., None], stripes, sky)
    Image.fromarray(picture.clip(0, 255).astype(np.uint8)).save(HERE / "photo.png")


if __name__ == "__main__":
    main()
