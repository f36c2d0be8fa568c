"""Make the small sample inputs in this folder: python samples/make_samples.py

- feature_map.npy: (1, 3, 8, 8) float32; cell (c, i, j) holds 100*c + 10*i + j plus a small
  deterministic ripple, so a wrong window shows up as a wrong number;
- ties.txt: a 4x4 matrix whose 2x2 windows hold tied maxima (for backward --ties);
- sequence.npy: (2, 4, 16) float32 features for 1-D pooling (--dims 1, --op kmax).
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


if __name__ == "__main__":
    main()
