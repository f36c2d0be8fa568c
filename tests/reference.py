"""The oracle: plain-loop pooling written from SPEC.md's formulas alone, slow and obvious.

Every window is listed cell by cell; nothing here is shared with the engine.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np


def out_size(size: int, kernel: int, stride: int, dilation: int, pad: tuple[int, int], ceil: bool) -> int:
    """SPEC §3: floor((in + pads - dilation*(kernel-1) - 1) / stride) + 1, or ceil with the last-window rule."""
    room = size + pad[0] + pad[1] - dilation * (kernel - 1) - 1
    n = (math.ceil(room / stride) if ceil else math.floor(room / stride)) + 1
    if ceil and (n - 1) * stride >= size + pad[0]:
        n -= 1
    return n


def windows(sizes, kernel, stride, dilation, pads, ceil, output_size=None, global_pool=False):
    """Output spatial shape and, per output cell, the list of (cell or None, counts_when_padded) taps.

    Each tap is (position tuple, is_real, inside_padded_extent), in row-major window order.
    """
    dims = len(sizes)
    if global_pool:
        kernel, stride, dilation, pads, ceil = list(sizes), [1] * dims, [1] * dims, [(0, 0)] * dims, False
    if output_size is not None:
        outs = list(output_size)
        per_axis = []
        for n, o in zip(sizes, outs):
            per_axis.append([list(range(math.floor(i * n / o), math.ceil((i + 1) * n / o))) for i in range(o)])
        result = {}
        for oi in product(*(range(o) for o in outs)):
            cells = [(c, True, True) for c in product(*(per_axis[a][oi[a]] for a in range(dims)))]
            result[oi] = cells
        return tuple(outs), result
    outs = [out_size(n, k, s, d, p, ceil) for n, k, s, d, p in zip(sizes, kernel, stride, dilation, pads)]
    result = {}
    for oi in product(*(range(o) for o in outs)):
        cells = []
        for ji in product(*(range(k) for k in kernel)):
            pos = tuple(oi[a] * stride[a] + ji[a] * dilation[a] - pads[a][0] for a in range(dims))
            real = all(0 <= pos[a] < sizes[a] for a in range(dims))
            in_padded = all(-pads[a][0] <= pos[a] < sizes[a] + pads[a][1] for a in range(dims))
            cells.append((pos, real, in_padded))
        result[oi] = cells
    return tuple(outs), result


def _select(values: list[float], op: str) -> list[int]:
    """Positions (in window order) of the cells equal to the window's max/min; NaN wins."""
    nan = [i for i, v in enumerate(values) if v != v]
    if nan:
        return nan
    best = max(values) if op == "max" else min(values)
    return [i for i, v in enumerate(values) if v == best]


def pool(x, op="max", dims=2, kernel=(2, 2), stride=(2, 2), dilation=(1, 1), pads=((0, 0), (0, 0)),
         ceil=False, count_pad=True, p=2.0, mean=False, alpha=0.5, output_size=None, global_pool=False,
         grad=None, ties="first"):
    """Forward (grad None) or backward of one pooling, spatial axes last. Returns y, or (y, dx, idx)."""
    x = np.asarray(x)
    lead, sizes = x.shape[: x.ndim - dims], x.shape[x.ndim - dims :]
    outs, wins = windows(sizes, kernel, stride, dilation, pads, ceil, output_size, global_pool)
    y = np.zeros(lead + outs, dtype=np.float64)
    dx = np.zeros(x.shape, dtype=np.float64)
    idx = np.zeros(lead + outs, dtype=np.int64)
    for li in product(*(range(n) for n in lead)):
        plane = x[li]
        for oi, cells in wins.items():
            real = [c for c, is_real, _ in cells if is_real]
            vals = [float(plane[c]) for c in real]
            counted = sum(1 for _, is_real, inside in cells if (inside if count_pad else is_real))
            g = 1.0 if grad is None else float(grad[li + oi])
            if op in ("max", "min"):
                chosen = _select(vals, op)
                y[li + oi] = vals[chosen[0]]
                idx[li + oi] = int(np.ravel_multi_index(real[chosen[0]], sizes))
                picks = chosen[:1] if ties == "first" else chosen
                share = g / len(chosen) if ties == "split" else g
                for i in picks:
                    dx[li + real[i]] += share
            elif op == "avg":
                y[li + oi] = sum(vals) / counted
                for c in real:
                    dx[li + c] += g / counted
            elif op == "lp":
                s = sum(abs(v) ** p for v in vals)
                n = counted if mean else 1
                norm = (s / n) ** (1 / p)
                y[li + oi] = norm
                for c, v in zip(real, vals):
                    if norm > 0 and v != 0:
                        dx[li + c] += g * (abs(v) ** (p - 1)) * math.copysign(1, v) * norm ** (1 - p) / n
            elif op == "mixed":
                chosen = _select(vals, "max")
                y[li + oi] = alpha * vals[chosen[0]] + (1 - alpha) * sum(vals) / counted
                picks = chosen[:1] if ties == "first" else chosen
                share = g / len(chosen) if ties == "split" else g
                for i in picks:
                    dx[li + real[i]] += alpha * share
                for c in real:
                    dx[li + c] += (1 - alpha) * g / counted
            else:
                raise ValueError(op)
    return y, dx, idx
