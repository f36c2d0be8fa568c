"""Time the engine on the reference workloads, beside PyTorch's CPU pooling when torch is installed.

Run: python benchmarks/bench_engine.py [--repeat 5] [--only W1,W4]
Prints one row per workload: poolcli's best time, torch's best time on 1 and 2 threads,
the ratio to torch on 1 thread, and the extra peak memory of poolcli's run.
"""

from __future__ import annotations

import argparse
import tracemalloc

import numpy as np
from benchlib import best_of, machine, optional_torch

import poolcli

WORKLOADS = {
    "W1": dict(shape=(8, 64, 256, 256), op="max", kernel=2, stride=2, padding=0),
    "W2": dict(shape=(8, 64, 256, 256), op="max", kernel=3, stride=2, padding=1),
    "W3": dict(shape=(8, 64, 256, 256), op="avg", kernel=2, stride=2, padding=0),
    "W4": dict(shape=(1, 16, 512, 512), op="max", kernel=15, stride=1, padding=7),
    "W5a": dict(shape=(8, 64, 256, 256), op="max", kernel=2, stride=2, padding=0, backward=True),
    "W5b": dict(shape=(8, 64, 256, 256), op="max", kernel=3, stride=2, padding=1, backward=True),
    "W6": dict(shape=(32, 128, 4096), op="max", kernel=4, stride=4, padding=0, dims=1),
}
TARGETS = {"W1": 0.5, "W2": 0.5, "W3": 0.5, "W4": 0.1, "W5a": 1.5, "W5b": 3.0, "W6": 2.5}


def run_poolcli(w: dict, x: np.ndarray, grad: np.ndarray | None):
    options = {k: w[k] for k in ("kernel", "stride", "padding") if k in w}
    options["dims"] = w.get("dims", 2)
    if w.get("backward"):
        return lambda: poolcli.backward(x, grad, w["op"], **options)
    return lambda: poolcli.forward(x, w["op"], **options)


def run_torch(torch, w: dict, x: np.ndarray, grad: np.ndarray | None):
    F = torch.nn.functional
    t = torch.from_numpy(x)
    k, s, p = w["kernel"], w["stride"], w["padding"]
    if w.get("dims", 2) == 1:
        return lambda: F.max_pool1d(t, k, s, p)
    if w["op"] == "avg":
        return lambda: F.avg_pool2d(t, k, s, p)
    if not w.get("backward"):
        return lambda: F.max_pool2d(t, k, s, p)
    tg = torch.from_numpy(grad)

    def fwd_bwd():
        leaf = t.clone().requires_grad_(True)
        F.max_pool2d(leaf, k, s, p).backward(tg)

    return fwd_bwd


def peak_extra(fn) -> float:
    """Peak bytes numpy allocated during fn (tracemalloc sees numpy's buffers)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    torch = optional_torch()
    print(machine(torch))
    rng = np.random.default_rng(0)
    header = f"{'load':5} {'poolcli':>9} {'torch1':>9} {'torch2':>9} {'ratio':>6} {'target':>6} {'peak/in':>7}"
    print(header)
    for name, w in WORKLOADS.items():
        if args.only and name not in args.only.split(","):
            continue
        x = rng.standard_normal(w["shape"], dtype=np.float32)
        g = poolcli.geometry(x.shape, **{k: w[k] for k in ("kernel", "stride", "padding")}, dims=w.get("dims", 2))
        grad = rng.standard_normal(g.out_shape, dtype=np.float32) if w.get("backward") else None
        ours = run_poolcli(w, x, grad)
        mine = best_of(ours, args.repeat)
        peak = peak_extra(ours) / x.nbytes
        t1 = t2 = float("nan")
        if torch is not None:
            theirs = run_torch(torch, w, x, grad)
            torch.set_num_threads(1)
            t1 = best_of(theirs, args.repeat)
            torch.set_num_threads(2)
            t2 = best_of(theirs, args.repeat)
        ratio = mine / t1
        times = f"{mine * 1e3:8.1f}ms {t1 * 1e3:8.1f}ms {t2 * 1e3:8.1f}ms"
        print(f"{name:5} {times} {ratio:6.2f} {TARGETS[name]:6.2f} {peak:7.2f}")


if __name__ == "__main__":
    main()
