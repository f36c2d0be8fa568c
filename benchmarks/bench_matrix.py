"""Every operator × {forward, backward} × dtype × layout, beside PyTorch on 1 and on all threads.

Run: python benchmarks/bench_matrix.py [--shape 4,32,64,64] [--repeat 5] [--only max,avg]
One row per cell: poolcli's best time on 1 thread and on all cores; its 1-thread time per element against
float32 in C order (the same operator and direction: how much a dtype or layout costs); torch's best time
on 1 thread and on all threads where torch has the operator, and poolcli's ratios to them (1 thread to 1
thread, all to all); for max and avg, the 1-thread ratio to the memory-bandwidth bound (the bytes the pass
must read and write, at one core's copy speed). Layouts: C order, Fortran order, channels-last (an
(N, H, W, C) array with --channels-last; for kmax, whose axes are the array's own, the (N, C, H, W) array held
channels-last in memory).
"""

from __future__ import annotations

import argparse

import numpy as np
from benchlib import bandwidth, interleaved, machine, one_core, optional_torch, table_header

import poolcli
from poolcli.engine import OPERATORS
from poolcli.engine.blocks import default_threads

OPTIONS = {"upsample": {"scale": 2}, "lrn": {"size": 5}, "kmax": {"k": 2}, "unpool": {"kernel": 2},
           "fractional": {"ratio": 0.7}, "deconv": {"stride": 2}}
DTYPES = ("float16", "float32", "float64", "uint8")
LAYOUTS = ("C", "Fortran", "channels-last")


def make(shape: tuple[int, ...], dtype: str, layout: str, rng: np.random.Generator, spatial: bool = True
         ) -> tuple[np.ndarray, dict]:
    """The input in a dtype and layout, and the layout's options. For an operator whose axes are the array's own
    (``spatial``: False, kmax), channels-last is the same (N, C, H, W) array held as (N, H, W, C) in memory."""
    x = rng.normal(size=shape) * 50 + 100
    x = x.astype(dtype) if dtype != "uint8" else np.clip(x, 0, 255).astype(np.uint8)
    if layout == "Fortran":
        return np.asfortranarray(x), {}
    if layout == "channels-last":
        lying = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        return (lying, {"channels_last": True}) if spatial else (np.moveaxis(lying, -1, 1), {})
    return x, {}


def run(op: str, direction: str, x: np.ndarray, options: dict, threads: int | None = 1):
    """A callable doing the pooling once on ``threads`` threads, or None when the operator has no such direction."""
    options = {**OPTIONS.get(op, {}), **options, "threads": threads}
    if op == "unpool":  # unpool takes the output of a max pooling and its indices
        y, idx = poolcli.forward(x, "max", kernel=2, return_indices=True,
                                 **{k: v for k, v in options.items() if k in ("channels_last", "threads")})
        x, options = y, {**options, "indices": idx}
    if op == "deconv":  # C channels to C, a 2×2 kernel
        channels = x.shape[-1] if options.get("channels_last") else x.shape[1]
        options["weights"] = np.full((channels, channels, 2, 2), 1 / channels)
    if op == "stochastic":  # probabilities a/Σa: non-negative values
        x = np.abs(x)
    if direction == "forward":
        return lambda: poolcli.forward(x, op, **options)
    if not poolcli.OPS[op].differentiable:
        return None
    return lambda: poolcli.backward(x, op=op, **options)


def torch_run(torch, op: str, direction: str, x: np.ndarray):
    """torch's nearest operator on an NCHW float array (forward, or forward + backward), or None."""
    if x.dtype.kind != "f" or x.dtype == np.float16:
        return None
    F = torch.nn.functional
    t = torch.from_numpy(np.ascontiguousarray(x))
    forward = {
        "max": lambda a: F.max_pool2d(a, 2), "min": lambda a: -F.max_pool2d(-a, 2),
        "avg": lambda a: F.avg_pool2d(a, 2), "lp": lambda a: F.lp_pool2d(a, 2.0, 2),
        "mixed": lambda a: 0.5 * F.max_pool2d(a, 2) + 0.5 * F.avg_pool2d(a, 2),
        "kmax": lambda a: torch.topk(a, 2, dim=-1, sorted=False).values,
        "upsample": lambda a: F.interpolate(a, scale_factor=2, mode="nearest"),
        "lrn": lambda a: F.local_response_norm(a, 5),
        "bilinear": lambda a: torch.einsum("nchw,ndhw->ncd", a, a) / (a.shape[-1] * a.shape[-2]),
        "deconv": lambda a: F.conv_transpose2d(a, torch.full((a.shape[1], a.shape[1], 2, 2), 1 / a.shape[1],
                                                              dtype=a.dtype), stride=2),
        "avgmax": lambda a: F.max_pool2d(a, 2) + F.avg_pool2d(a, 2),
    }.get(op)
    if forward is None:
        return None
    if direction == "forward":
        return lambda: forward(t)

    def both():
        a = t.clone().requires_grad_(True)
        out = forward(a)
        out.backward(torch.ones_like(out))

    return both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4,32,64,64")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))
    torch = optional_torch()
    print(machine(torch, f", {default_threads()} cores"))
    speed = bandwidth()
    print(f"shape {shape}; copy speed {speed / 1e9:.1f} GB/s\n")
    table_header("op", "pass", "dtype", "layout", "poolcli 1 thread ms", "poolcli all ms",
                 "per element vs float32 C", "torch 1 thread ms", "torch all ms", "ratio to torch 1",
                 "ratio all to all", "ratio to bandwidth bound")
    rng = np.random.default_rng(0)
    for op in (o.name for o in OPERATORS):
        if args.only and op not in args.only.split(","):
            continue
        for direction in ("forward", "backward"):
            cells = [(d, lay) for d in DTYPES for lay in LAYOUTS]
            cells.sort(key=lambda cell: cell != ("float32", "C"))  # the reference cell first
            rows = []
            for dtype, layout in cells:
                x, options = make(shape, dtype, layout, rng, poolcli.OPS[op].spatial_layout)
                try:
                    fn = run(op, direction, x, options)
                except poolcli.PoolcliError as e:
                    print(f"| {op} | {direction} | {dtype} | {layout} | refused: {e} | | | | | | | |")
                    continue
                if fn is None:
                    continue
                tfn = torch_run(torch, op, direction, x) if torch is not None and layout == "C" else None
                rows.append((dtype, layout, x, fn, run(op, direction, x, options, None), tfn))
            if not rows:
                continue
            # every cell of this operator and pass timed in turns: the per-element ratios share their moments
            if torch is not None:
                torch.set_num_threads(1)
            with one_core():
                one = interleaved([r[3] for r in rows] + [r[5] for r in rows], args.repeat)
            if torch is not None:
                torch.set_num_threads(default_threads())
            every = interleaved([r[4] for r in rows] + [r[5] for r in rows], args.repeat)
            n = len(rows)
            base = one[0] if rows[0][:2] == ("float32", "C") else None
            for i, (dtype, layout, x, *_fns, tfn) in enumerate(rows):
                ours, all_ours, t1, t_all = one[i], every[i], one[n + i], every[n + i]
                per = f"{ours / base:.2f}" if base else ""
                torch_cells = [""] * 4
                if tfn is not None:
                    torch_cells = [f"{t1 * 1e3:.2f}", f"{t_all * 1e3:.2f}", f"{ours / t1:.2f}",
                                   f"{all_ours / t_all:.2f}"]
                bound = ""
                if op in ("max", "avg") and layout == "C":
                    moved = x.nbytes * (2 if direction == "forward" else 3)  # read x (and g), write y or dx
                    bound = f"{ours / (moved / speed):.1f}"
                print(f"| {op} | {direction} | {dtype} | {layout} | {ours * 1e3:.2f} | {all_ours * 1e3:.2f} | {per} "
                      f"| {' | '.join(torch_cells)} | {bound} |")


if __name__ == "__main__":
    main()
