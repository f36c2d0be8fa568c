"""Start-up cost: `poolcli shape 1,3,224,224 -k 2` against `python -c 'import numpy'` (best of N runs).

Run: python benchmarks/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from benchlib import USER_ENV, best_of


def best(command: list[str], runs: int) -> float:
    return best_of(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=USER_ENV), runs)


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
