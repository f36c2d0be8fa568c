"""Time the engine on the reference workloads, on 1 thread and on every core, beside PyTorch's CPU pooling.

Run: python benchmarks/bench_engine.py [--repeat 5] [--only W1,W4]
One row per workload: poolcli's best time on 1 thread and on all cores, and the speed-up between them;
torch's best time on 1 thread and on all cores (its default), and the ratios poolcli/torch for each; the
distance from the memory-bandwidth bound (the bytes the pass must read and write, at one core's copy
speed) on 1 thread; and the extra peak memory of poolcli's run, per input byte. Targets: on 1 thread
(ratio1) W5a 0.3, W5b 0.5; on all cores (ratio*) W1-W3 0.15, W4 0.02, W5 0.6, W6 1.0; speed-up 1.7 for
W1-W3 and W5.
"""

from __future__ import annotations

import argparse
import os
import tracemalloc

import numpy as np
from benchlib import bandwidth, best_of, machine, one_core, optional_torch, table_header, torch_best

import poolcli
from poolcli.engine.blocks import default_threads

WORKLOADS = {
    "W1": dict(shape=(8, 64, 256, 256), op="max", kernel=2, stride=2, padding=0),
    "W2": dict(shape=(8, 64, 256, 256), op="max", kernel=3, stride=2, padding=1),
    "W3": dict(shape=(8, 64, 256, 256), op="avg", kernel=2, stride=2, padding=0),
    "W4": dict(shape=(1, 16, 512, 512), op="max", kernel=15, stride=1, padding=7),
    "W5a": dict(shape=(8, 64, 256, 256), op="max", kernel=2, stride=2, padding=0, backward=True),
    "W5b": dict(shape=(8, 64, 256, 256), op="max", kernel=3, stride=2, padding=1, backward=True),
    "W6": dict(shape=(32, 128, 4096), op="max", kernel=4, stride=4, padding=0, dims=1),
}
ONE_THREAD = {"W5a": 0.3, "W5b": 0.5}  # poolcli / torch, both on 1 thread
ALL_CORES = {"W1": 0.15, "W2": 0.15, "W3": 0.15, "W4": 0.02, "W5a": 0.6, "W5b": 0.6, "W6": 1.0}
SPEED_UP = {"W1": 1.7, "W2": 1.7, "W3": 1.7, "W5a": 1.7, "W5b": 1.7}


def run_poolcli(w: dict, x: np.ndarray, grad: np.ndarray | None, threads: int):
    options = {k: w[k] for k in ("kernel", "stride", "padding") if k in w}
    options["dims"] = w.get("dims", 2)
    if w.get("backward"):
        return lambda: poolcli.backward(x, grad, w["op"], threads=threads, **options)
    return lambda: poolcli.forward(x, w["op"], threads=threads, **options)


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


def target(table: dict, name: str) -> str:
    return f"({table[name]:g})" if name in table else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    torch = optional_torch()
    cores = default_threads()
    print(machine(torch, f", {cores} cores ({os.cpu_count()} in the machine)"))
    speed = bandwidth()
    print(f"copy speed {speed / 1e9:.1f} GB/s on one core; (targets) in brackets\n")
    table_header("load", "poolcli 1 thread ms", "poolcli all ms", "speed-up", "torch 1 thread ms", "torch all ms",
                 "ratio1", "ratio all", "bandwidth bound ×", "peak/in")
    rng = np.random.default_rng(0)
    for name, w in WORKLOADS.items():
        if args.only and name not in args.only.split(","):
            continue
        x = rng.standard_normal(w["shape"], dtype=np.float32)
        g = poolcli.geometry(x.shape, **{k: w[k] for k in ("kernel", "stride", "padding")}, dims=w.get("dims", 2))
        grad = rng.standard_normal(g.out_shape, dtype=np.float32) if w.get("backward") else None
        one, every = (run_poolcli(w, x, grad, n) for n in (1, cores))
        with one_core():
            mine1 = best_of(one, args.repeat)
        mine = best_of(every, args.repeat)
        peak = peak_extra(every) / x.nbytes
        t1 = t_all = float("nan")
        if torch is not None:
            t1, t_all = torch_best(torch, run_torch(torch, w, x, grad), args.repeat)
        moved = x.nbytes + int(np.prod(g.out_shape)) * 4 + (x.nbytes if w.get("backward") else 0)
        bound = mine1 / (moved / speed)
        print(f"| {name} | {mine1 * 1e3:.1f} | {mine * 1e3:.1f} | {mine1 / mine:.2f} {target(SPEED_UP, name)} "
              f"| {t1 * 1e3:.1f} | {t_all * 1e3:.1f} | {mine1 / t1:.2f} {target(ONE_THREAD, name)} "
              f"| {mine / t_all:.2f} {target(ALL_CORES, name)} | {bound:.1f} | {peak:.2f} |")


if __name__ == "__main__":
    main()
