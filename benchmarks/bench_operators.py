"""Time the operators beyond max/avg pooling, forward and backward, beside PyTorch on 1 thread.

Run: python benchmarks/bench_operators.py [--repeat 5] [--only kmax,lrn]
Each row: poolcli's best time, the reference's best time, and the ratio. The reference is torch (1 thread)
where it has the operator (target 1.5 or less: fractional_max_pool2d with the same samples, avg_pool2d's
divisor_override, every interpolate mode) or the nearest thing it has (target 2: topk + sort + gather for
kmax, max_unpool2d, local_response_norm, an einsum for bilinear pooling, the formulas of gem and softpool,
adaptive pools concatenated for spp, max + avg for avgmax, a grouped convolution for avg --weights, an
avg_pool of squares for lrn within, conv_transpose2d for deconv); backward is autograd. Stochastic pooling,
no-data averaging and quantile pooling have no torch form: their reference is a plain NumPy formulation
(reshaped 2×2 tiles: cumulative sums, nanmean, quantile), forward only.
"""

from __future__ import annotations

import argparse

import numpy as np
from benchlib import best_of, machine, one_core, optional_torch

import poolcli

TARGET = 2.0


def cases(rng: np.random.Generator):
    """(name, poolcli forward, poolcli backward, torch function of a tensor, input)."""
    planes = rng.standard_normal((8, 64, 128, 128), dtype=np.float32)  # global and adaptive pooling (target 1)
    for reduce in ("max", "avg"):
        yield f"{reduce} --global", planes, dict(op=reduce, global_pool=True), \
            lambda torch, t, reduce=reduce: getattr(torch.nn.functional, f"adaptive_{reduce}_pool2d")(t, 1)
        yield f"{reduce} --output-size 7", planes, dict(op=reduce, output_size=7), \
            lambda torch, t, reduce=reduce: getattr(torch.nn.functional, f"adaptive_{reduce}_pool2d")(t, 7)
    x = rng.standard_normal((32, 128, 1024), dtype=np.float32)
    yield "kmax k=64 of 1024", x, dict(op="kmax", k=64), lambda torch, t: torch.gather(
        t, -1, torch.topk(t, 64, dim=-1).indices.sort(dim=-1).values)

    big = rng.standard_normal((8, 64, 128, 128), dtype=np.float32)
    values, idx = poolcli.forward(big, kernel=2, return_indices=True)
    yield "unpool 2x2 to 128x128", values, dict(op="unpool", indices=idx, kernel=2), None  # torch side built below

    x = rng.standard_normal((8, 64, 128, 128), dtype=np.float32)
    yield "upsample nearest x2", x, dict(op="upsample", scale=2), lambda torch, t: torch.nn.functional.interpolate(
        t, scale_factor=2, mode="nearest")
    yield "upsample bilinear x2", x, dict(op="upsample", scale=2, mode="bilinear"), \
        lambda torch, t: torch.nn.functional.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

    x = rng.standard_normal((8, 64, 64, 64), dtype=np.float32)
    yield "lrn size 5", x, dict(op="lrn"), lambda torch, t: torch.nn.functional.local_response_norm(t, 5)

    x = rng.standard_normal((32, 256, 28, 28), dtype=np.float32)
    yield "bilinear 256 ch, 28x28", x, dict(op="bilinear"), lambda torch, t: torch.einsum(
        "ncl,ndl->ncd", t.flatten(2), t.flatten(2)) / 784

    x = rng.standard_normal((8, 64, 128, 128), dtype=np.float32)
    samples = rng.random((8, 64, 2)).astype(np.float32)
    yield "fractional 2x2 ratio 0.7", x, dict(op="fractional", kernel=2, ratio=0.7, samples=samples), \
        lambda torch, t: torch.nn.functional.fractional_max_pool2d(t, 2, output_ratio=(0.7, 0.7),
                                                                    _random_samples=torch.from_numpy(samples))
    yield "avg 3x3 s2 p1 divisor 5", x, dict(op="avg", kernel=3, stride=2, padding=1, divisor=5), \
        lambda torch, t: torch.nn.functional.avg_pool2d(t, 3, 2, 1, divisor_override=5)
    for mode, scale, extra in [("nearest-exact", 2, {}), ("bicubic", 2, {}), ("area", 0.5, {}),
                               ("bilinear", 0.5, {"antialias": True})]:
        yield f"upsample {mode}{' aa' if extra else ''} x{scale}", x, dict(op="upsample", scale=scale, mode=mode,
                                                                            **extra), \
            lambda torch, t, mode=mode, scale=scale, extra=extra: torch.nn.functional.interpolate(
                t, scale_factor=scale, mode=mode, **extra)
    yield "gem 2x2 p=3", x, dict(op="gem", kernel=2), lambda torch, t: torch.nn.functional.avg_pool2d(
        t.clamp(min=1e-6).pow(3), 2).pow(1 / 3)
    yield "softpool 2x2", x, dict(op="softpool", kernel=2), lambda torch, t: torch.nn.functional.avg_pool2d(
        t.exp() * t, 2) / torch.nn.functional.avg_pool2d(t.exp(), 2)
    yield "spp levels 1,2,4", x, dict(op="spp"), lambda torch, t: torch.cat(
        [torch.nn.functional.adaptive_max_pool2d(t, n).flatten(1) for n in (1, 2, 4)], dim=1)
    positive = np.abs(x)
    yield "stochastic 2x2 (vs NumPy)", positive, dict(op="stochastic", kernel=2), _numpy_stochastic

    # the last rows of the textbook and of ONNX
    yield "avgmax 3x3 s2 p1", x, dict(op="avgmax", kernel=3, stride=2, padding=1), \
        lambda torch, t: torch.nn.functional.max_pool2d(t, 3, 2, 1) + torch.nn.functional.avg_pool2d(t, 3, 2, 1)
    w = rng.random((64, 3, 3)) + 0.1
    yield "avg --weights 3x3 s2", x, dict(op="avg", kernel=3, stride=2, weights=w), \
        lambda torch, t: _weighted_torch(torch, t, w)
    yield "lrn within 5x5", x, dict(op="lrn", region="within", size=5), \
        lambda torch, t: t / (1 + 1e-4 * torch.nn.functional.avg_pool2d(t * t, 5, 1, 2, count_include_pad=True)) ** 0.75
    kernel = rng.standard_normal((64, 32, 2, 2)).astype(np.float32)
    yield "deconv 64->32 2x2 s2", x, dict(op="deconv", weights=kernel, stride=2), \
        lambda torch, t: torch.nn.functional.conv_transpose2d(t, torch.from_numpy(kernel), stride=2)
    holes = np.where(rng.random(x.shape) < 0.2, np.float32(np.nan), x)
    yield "upsample bilinear x2 --coordinates half-pixel", x, dict(op="upsample", scale=2, mode="bilinear",
                                                                   coordinates="half-pixel"), \
        lambda torch, t: torch.nn.functional.interpolate(t, scale_factor=2, mode="bilinear")  # the same map
    yield "max 2x2 --index-layout tensor", x, dict(op="max", kernel=2, return_indices=True, index_layout="tensor"), \
        lambda torch, t: _tensor_indices(torch, t)
    yield "avg 2x2 --skip-nan (vs NumPy)", holes, dict(op="avg", kernel=2, skip_nan=True), _numpy_nanmean
    yield "quantile 2x2 q=0.9 (vs NumPy)", x, dict(op="quantile", kernel=2, q=0.9), _numpy_quantile


def _tiles(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)


def _numpy_nanmean(x: np.ndarray) -> np.ndarray:
    """No-data averaging written plainly: numpy.nanmean over the 2×2 tiles."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(_tiles(x), axis=-1)


def _numpy_quantile(x: np.ndarray) -> np.ndarray:
    """numpy.quantile over the 2×2 tiles."""
    return np.quantile(_tiles(x), 0.9, axis=-1)


def _tensor_indices(torch, t):
    """ONNX's flat-over-the-tensor indices from torch: max_pool2d's per-plane ones plus each plane's offset."""
    y, idx = torch.nn.functional.max_pool2d(t, 2, return_indices=True)
    planes = torch.arange(t.shape[0] * t.shape[1]).reshape(t.shape[0], t.shape[1], 1, 1) * (t.shape[2] * t.shape[3])
    return y + 0 * (idx + planes)  # the indices computed; the sum keeps autograd to the values


def _weighted_torch(torch, t, w: np.ndarray):
    """A weighted average in torch: a grouped convolution over the same convolution of ones."""
    weight = torch.from_numpy(w[:, None].astype(np.float32))
    num = torch.nn.functional.conv2d(t, weight, stride=2, groups=w.shape[0])
    return num / torch.nn.functional.conv2d(torch.ones_like(t[:1]), weight, stride=2, groups=w.shape[0])


def _numpy_stochastic(x: np.ndarray) -> np.ndarray:
    """Stochastic 2×2 pooling written plainly: the tiles side by side, cumulative sums, the first cell past u·Σ."""
    n, c, h, w = x.shape
    tiles = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    cum = np.cumsum(tiles, axis=-1)
    u = np.random.default_rng(0).random(cum.shape[:-1], dtype=np.float32)
    pick = np.argmax(cum >= (u * cum[..., -1])[..., None], axis=-1)
    return np.take_along_axis(tiles, pick[..., None], axis=-1)[..., 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    torch = optional_torch()
    print(machine(torch, " (1 thread)"))
    if torch is not None:
        torch.set_num_threads(1)
    print(f"{'operator':26} {'pass':8} {'poolcli':>10} {'torch':>10} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for name, x, options, torch_fn in cases(rng):
        if args.only and not any(word in name for word in args.only.split(",")):
            continue
        options = dict(options)
        op = options.pop("op")
        y = poolcli.forward(x, op, **options)
        indices_only = isinstance(y, tuple)  # the index conventions: forward only
        y = y[0] if indices_only else y
        grad = rng.standard_normal(y.shape).astype(y.dtype)
        options["threads"] = 1  # beside torch on 1 thread
        ours = {"forward": lambda x=x, op=op, options=options: poolcli.forward(x, op, **options),
                "backward": lambda x=x, grad=grad, op=op, options=options: poolcli.backward(x, grad, op, **options)}
        theirs = {}
        if torch_fn in (_numpy_stochastic, _numpy_nanmean, _numpy_quantile):  # a plain NumPy formulation, forward
            theirs = {"forward": lambda x=x, fn=torch_fn: fn(x)}
        elif torch is not None:
            t = torch.from_numpy(x)
            if op == "unpool":
                ti = torch.from_numpy(options["indices"])

                def torch_fn(torch, a, ti=ti):
                    return torch.nn.functional.max_unpool2d(a, ti, 2)

            tg = torch.from_numpy(grad)

            def fwd_bwd(t=t, tg=tg, fn=torch_fn):
                leaf = t.clone().requires_grad_(True)
                fn(torch, leaf).backward(tg)

            def fwd(t=t, fn=torch_fn):
                with torch.no_grad():
                    fn(torch, t)

            theirs = {"forward": fwd} if indices_only else {"forward": fwd, "backward": fwd_bwd}
        for which in ("forward", "backward"):
            if which not in theirs and theirs:
                continue
            with one_core():
                mine = best_of(ours[which], args.repeat)
                # torch's backward row is forward + backward (autograd needs the forward); so is ours
                if which == "backward" and theirs:
                    mine += best_of(ours["forward"], args.repeat) if op in ("unpool", "upsample") else 0.0
            other = best_of(theirs[which], args.repeat) if theirs else float("nan")
            print(f"{name:26} {which:8} {mine * 1e3:8.1f}ms {other * 1e3:8.1f}ms {mine / other:6.2f}")


if __name__ == "__main__":
    main()
