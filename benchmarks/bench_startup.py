"""Start-up cost: `poolcli shape 1,3,224,224 -k 2` against `python -c 'import numpy'` (best of N runs).

Run: python benchmarks/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

# As on a user's machine, Python may cache compiled modules (some sandboxes switch that off).
USER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def best(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=USER_ENV)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    numpy = best([sys.executable, "-c", "import numpy"], runs)
    shape = best([sys.executable, "-m", "poolcli", "shape", "1,3,224,224", "-k", "2"], runs)
    print(f"import numpy {numpy * 1e3:.0f} ms, poolcli shape {shape * 1e3:.0f} ms, "
          f"difference {(shape - numpy) * 1e3:.0f} ms (target: 100 ms or less)")


if __name__ == "__main__":
    main()
