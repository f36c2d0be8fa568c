"""What the benchmark scripts share: best-of timing, the optional torch, the machine line, a user's environment."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from poolcli.engine.blocks import default_threads

# As on a user's machine, Python may cache compiled modules (some sandboxes switch that off).
USER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The shortest of ``repeat`` timed calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def interleaved(fns: list[Callable[[], object] | None], repeat: int) -> list[float]:
    """The shortest of ``repeat`` timed calls of each callable (None: nan), called in turns, one timed call of
    each per round, so that all of them meet the same moments of a machine whose speed drifts: their ratios
    are then steadier than those of one best-of run after another. Each timed call follows an untimed one of
    the same callable, so it finds its data in cache as a best-of run does."""
    best = [float("inf") if fn is not None else float("nan") for fn in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            if fn is not None:
                fn()
                t = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - t)
    return best


def torch_best(torch: Any, fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """torch's best time for ``fn`` on 1 thread and on every core (its default), in seconds."""
    torch.set_num_threads(1)
    one = best_of(fn, repeat)
    torch.set_num_threads(default_threads())
    return one, best_of(fn, repeat)


def optional_torch() -> Any:
    """torch if installed (the oracle the ratios are taken against), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def machine(torch: Any, note: str = "") -> str:
    """One line naming the machine and the library versions the figures come from."""
    versions = f", torch {torch.__version__}{note}" if torch is not None else ", torch not installed"
    blas = ("BLAS held to 1 thread for poolcli's 1-thread times" if _limits() is not None else
            "BLAS NOT held to 1 thread (pip install threadpoolctl): poolcli's 1-thread products may use every core")
    return f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}{versions}; {blas}"


def _limits() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """numpy's BLAS (OpenBLAS) on one thread while poolcli is timed on one: its products (bilinear pooling,
    global sums) otherwise run on every core whatever poolcli's own ``threads``. Needs threadpoolctl; without
    it nothing is limited (and ``machine`` says so)."""
    limits = _limits()
    if limits is None:
        yield
        return
    with limits(limits=1, user_api="blas"):
        yield


def bandwidth() -> float:
    """Bytes per second one core copies (read + write), from a 256 MiB copy."""
    a = np.ones(1 << 25)
    b = np.empty_like(a)
    return 2 * a.nbytes / best_of(lambda: np.copyto(b, a), 5)


def table_header(*columns: str) -> None:
    """Print the head of a Markdown table: the column names and the rule under them."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
