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
         grad=None, ties="first", eps=1e-6, divisor=None, seed=0, expected=False, q=0.5, concat=False,
         nodata=None, skip_nan=False):
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
            if nodata is not None or skip_nan:  # no-data cells are left out, as padding is
                keep = [(c, v) for c, v in zip(real, vals) if not (v == nodata or (skip_nan and v != v))]
                counted -= len(real) - len(keep)
                real, vals = [c for c, _ in keep], [v for _, v in keep]
                if not keep:
                    y[li + oi] = math.nan if nodata is None else nodata
                    idx[li + oi] = -1
                    continue
            if op in ("max", "min"):
                chosen = _select(vals, op)
                y[li + oi] = vals[chosen[0]]
                idx[li + oi] = int(np.ravel_multi_index(real[chosen[0]], sizes))
                picks = chosen[:1] if ties == "first" else chosen
                share = g / len(chosen) if ties == "split" else g
                for i in picks:
                    dx[li + real[i]] += share
            elif op == "avg":
                by = counted if divisor is None else divisor
                y[li + oi] = sum(vals) / by
                for c in real:
                    dx[li + c] += g / by
            elif op == "gem":  # padded cells are zeros in the sum, counted as avg counts them
                clamped = [max(v, eps) for v in vals]
                m = sum(v**p for v in clamped) / counted
                y[li + oi] = m ** (1 / p)
                for c, v, k in zip(real, vals, clamped):
                    if v >= eps:
                        dx[li + c] += g * m ** (1 / p - 1) / counted * k ** (p - 1)
            elif op == "stochastic" and expected:
                s1 = sum(vals)
                y[li + oi] = sum(v * v for v in vals) / s1 if s1 > 0 else 0.0
                for c, v in zip(real, vals):
                    if s1 > 0:
                        dx[li + c] += g * (2 * v - y[li + oi]) / s1
            elif op == "stochastic":  # u from the window's place; the first positive cell where the sum reaches u·Σ
                u = window_uniform(seed, li + oi)
                total = 0.0
                for v in vals:
                    total += v
                running = 0.0
                for c, v in zip(real, vals):
                    running += v
                    if v > 0 and running >= u * total:
                        y[li + oi] = v
                        dx[li + c] += g
                        break
            elif op == "softpool":  # over the real cells only
                top = max(vals)
                e = [math.exp(v - top) for v in vals]
                w = [v / sum(e) for v in e]
                out = sum(wi * v for wi, v in zip(w, vals))
                y[li + oi] = out
                for c, v, wi in zip(real, vals, w):
                    dx[li + c] += g * wi * (1 + v - out)
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
            elif op == "median":
                if any(v != v for v in vals):  # NaN propagates; its gradient goes to the NaN cells, as max's
                    y[li + oi] = math.nan
                    middle = [_select(vals, "max")] * 2
                else:
                    ordered = sorted(vals)
                    n = len(ordered)
                    lo, hi = ordered[(n - 1) // 2], ordered[n // 2]
                    y[li + oi] = (lo + hi) / 2
                    middle = [[i for i, v in enumerate(vals) if v == lo], [i for i, v in enumerate(vals) if v == hi]]
                for chosen in middle:  # half the gradient to each middle value's cell(s)
                    picks = chosen[:1] if ties == "first" else chosen
                    share = g / 2 / len(chosen) if ties == "split" else g / 2
                    for i in picks:
                        dx[li + real[i]] += share
            elif op == "quantile":  # sorted real cells, linearly between the two around q·(n-1)
                if any(v != v for v in vals):
                    y[li + oi] = math.nan
                    parts = [(_select(vals, "max"), 0.5), (_select(vals, "max"), 0.5)]
                else:
                    ordered = sorted(vals)
                    at = q * (len(ordered) - 1)
                    lo = math.floor(at)
                    hi = min(lo + 1, len(ordered) - 1)
                    t = at - lo
                    y[li + oi] = ordered[lo] + (ordered[hi] - ordered[lo]) * t
                    parts = [([i for i, v in enumerate(vals) if v == ordered[lo]], 1 - t),
                             ([i for i, v in enumerate(vals) if v == ordered[hi]], t)]
                for chosen, weight in parts:
                    picks = chosen[:1] if ties == "first" else chosen
                    share = g * weight / len(chosen) if ties == "split" else g * weight
                    for i in picks:
                        dx[li + real[i]] += share
            elif op == "avgmax":  # max + avg
                chosen = _select(vals, "max")
                y[li + oi] = vals[chosen[0]] + sum(vals) / counted
                picks = chosen[:1] if ties == "first" else chosen
                for i in picks:
                    dx[li + real[i]] += g / len(chosen) if ties == "split" else g
                for c in real:
                    dx[li + c] += g / counted
            elif op == "mode":
                counts: dict = {}
                for v in vals:
                    key = "nan" if v != v else v
                    counts[key] = counts.get(key, 0) + 1
                most = max(counts.values())
                numbers = [v for v, c in counts.items() if c == most and v != "nan"]
                y[li + oi] = min(numbers) if numbers else math.nan  # NaNs sort after every number
            else:
                raise ValueError(op)
    return y, dx, idx


MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _splitmix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def window_uniform(seed: int, place: tuple[int, ...]) -> float:
    """The number in [0, 1) of the window at ``place`` (plane coordinates, then output coordinates):
    SplitMix64 over the seed and each coordinate in turn, in Python integers."""
    h = _splitmix((seed + GOLDEN) & MASK)
    for c in place:
        h = _splitmix(((h + GOLDEN) & MASK) ^ c)
    return (h >> 11) * 2.0**-53


# ---- the operators that are not windowed ---------------------------------------------------------------


def _lines(shape, axis):
    """Every index tuple of ``shape`` with ``axis`` left open (as a slice)."""
    others = [range(n) if i != axis else [slice(None)] for i, n in enumerate(shape)]
    return list(product(*others))


def kmax(x, k, axis=-1, grad=None, ties="first"):
    """K largest along ``axis`` in their order, ties to the lower index, NaN largest; returns (y, dx)."""
    x = np.asarray(x)
    axis %= x.ndim
    out_shape = list(x.shape)
    out_shape[axis] = k
    y = np.zeros(out_shape, dtype=x.dtype)
    dx = np.zeros(x.shape, dtype=np.float64)
    g = np.ones(out_shape) if grad is None else grad
    for line in _lines(x.shape, axis):
        values = [x[line][i] for i in range(x.shape[axis])]

        def rank(i, values=values):
            v = values[i]
            is_nan = v != v
            return (0 if is_nan else 1, 0 if is_nan else -float(v), i)

        kept = sorted(sorted(range(len(values)), key=rank)[:k])
        gl = g[line]
        for j, i in enumerate(kept):
            y[line][j] = values[i]
            if ties == "first":
                dx[line][i] += gl[j]
                continue
            same = [m for m, v in enumerate(values) if v == values[i] or (v != v and values[i] != values[i])]
            for m in same:
                dx[line][m] += gl[j] / len(same) if ties == "split" else gl[j]
    return y, dx


def unpool(values, indices, sizes, grad=None):
    """Max-unpooling of the planes of ``values`` (spatial axes last) to ``sizes``; returns (y, dvalues)."""
    dims = len(sizes)
    lead = values.shape[: values.ndim - dims]
    y = np.zeros(lead + tuple(sizes), dtype=values.dtype)
    dv = np.zeros(values.shape, dtype=np.float64)
    for li in product(*(range(n) for n in lead)):
        for oi in product(*(range(n) for n in values.shape[values.ndim - dims :])):
            cell = np.unravel_index(int(indices[li + oi]), sizes)
            y[li + tuple(cell)] = values[li + oi]
            if grad is not None:
                dv[li + oi] = grad[li + tuple(cell)]
    return y, dv


def _source(dst, n, out, scale, mode, align_corners):
    """Per SPEC/PyTorch: the (cell, weight) pairs one output coordinate reads along one axis."""
    from fractions import Fraction

    if mode == "nearest":
        ratio = Fraction(1) / Fraction(scale) if scale else Fraction(n, out)
        return [(min(math.floor(dst * ratio), n - 1), 1.0)]
    if align_corners:
        pos = dst * (n - 1) / (out - 1) if out > 1 else 0.0
    else:
        ratio = 1 / scale if scale else n / out
        pos = max((dst + 0.5) * ratio - 0.5, 0.0)
    i0 = min(int(pos), n - 1)
    i1 = min(i0 + 1, n - 1)
    w = min(max(pos - i0, 0.0), 1.0)
    return [(i0, 1 - w), (i1, w)] if i1 != i0 else [(i0, 1.0)]


def upsample(x, dims, outs, scales=None, mode="nearest", align_corners=False, grad=None):
    """Interpolate the trailing ``dims`` axes to ``outs``; returns (y, dx)."""
    x = np.asarray(x, dtype=np.float64)
    lead, sizes = x.shape[: x.ndim - dims], x.shape[x.ndim - dims :]
    scales = scales or [None] * dims
    y = np.zeros(lead + tuple(outs))
    dx = np.zeros(x.shape)
    for li in product(*(range(n) for n in lead)):
        for oi in product(*(range(o) for o in outs)):
            per_axis = [_source(oi[a], sizes[a], outs[a], scales[a], mode, align_corners) for a in range(dims)]
            for corner in product(*per_axis):
                cell = tuple(c for c, _ in corner)
                weight = math.prod(w for _, w in corner)
                y[li + oi] += weight * x[li + cell]
                if grad is not None:
                    dx[li + cell] += weight * grad[li + oi]
    return y, dx


def lrn(x, size=5, alpha=1e-4, beta=0.75, bias=1.0, axis=1, grad=None):
    """Local response normalisation across ``axis``; returns (y, dx)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.zeros(x.shape)
    dx = np.zeros(x.shape)
    g = np.ones(x.shape) if grad is None else grad
    c = x.shape[axis]
    for line in _lines(x.shape, axis):
        v, gl = x[line], g[line]

        def window(i):
            return [j for j in range(i - size // 2, i + (size - 1) // 2 + 1) if 0 <= j < c]

        d = [bias + alpha / size * sum(v[j] ** 2 for j in window(i)) for i in range(c)]
        for i in range(c):
            y[line][i] = v[i] * d[i] ** -beta
            dx[line][i] += gl[i] * d[i] ** -beta
            for m in window(i):  # D_i depends on x_m
                dx[line][m] += gl[i] * v[i] * -beta * d[i] ** (-beta - 1) * alpha / size * 2 * v[m]
    return y, dx


def bilinear(x, y=None, signed_sqrt=False, l2_normalize=False, grad=None):
    """Second-order pooling of one sample: x (C, L), y (C2, L); returns (z, dx, dy)."""
    x = np.asarray(x, dtype=np.float64)
    same = y is None
    y = x if same else np.asarray(y, dtype=np.float64)
    c, n = x.shape
    c2 = y.shape[0]
    z = np.zeros((c, c2))
    for i in range(c):
        for j in range(c2):
            z[i, j] = sum(x[i, loc] * y[j, loc] for loc in range(n)) / n
    s = np.array([[math.copysign(math.sqrt(abs(v)), v) for v in row] for row in z]) if signed_sqrt else z.copy()
    norm = math.sqrt(sum(v * v for v in s.ravel())) if l2_normalize else 1.0
    out = s / norm if norm > 0 else np.zeros_like(s)
    g = np.ones((c, c2)) if grad is None else np.asarray(grad, dtype=np.float64)
    ds = np.zeros((c, c2))
    dot = sum(out[i, j] * g[i, j] for i in range(c) for j in range(c2))
    for i in range(c):
        for j in range(c2):
            ds[i, j] = (g[i, j] - (out[i, j] * dot if l2_normalize else 0)) / norm if norm > 0 else 0.0
    dz = np.zeros((c, c2))
    for i in range(c):
        for j in range(c2):
            if signed_sqrt:
                dz[i, j] = ds[i, j] / (2 * math.sqrt(abs(z[i, j]))) if z[i, j] != 0 else 0.0
            else:
                dz[i, j] = ds[i, j]
    dx = np.zeros(x.shape)
    dy = np.zeros(y.shape)
    for i in range(c):
        for j in range(c2):
            for loc in range(n):
                dx[i, loc] += dz[i, j] * y[j, loc] / n
                dy[j, loc] += dz[i, j] * x[i, loc] / n
    if same:
        dx = dx + dy
    return out, dx, dy


def spp(x, levels=(1, 2, 4), reduce="max", dims=2, grad=None):
    """Spatial pyramid pooling: per sample, each level's adaptive pool flattened (channel-major), levels in turn.
    ``x`` is (N, C, spatial…); returns (y, dx)."""
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape[0], x.shape[1]
    sizes = x.shape[2:]
    pieces = []
    for level in levels:
        outs = (level,) * dims
        pieces.append(pool(x, reduce, dims=dims, output_size=outs)[0].reshape(n, c * level**dims))
    y = np.concatenate(pieces, axis=1)
    dx = np.zeros(x.shape)
    if grad is not None:
        at = 0
        for level in levels:
            size = c * level**dims
            part = grad[:, at: at + size].reshape((n, c) + (level,) * dims)
            at += size
            dx += pool(x, reduce, dims=dims, output_size=(level,) * dims, grad=part)[1]
    assert len(sizes) == dims
    return y, dx


def fractional(x, kernel, outs, samples, grad=None, ties="first"):
    """Fractional max-pooling, PyTorch's rule written out: along each axis window i starts at
    int((i + u)·α) - int(u·α), α = (n - k)/(out - 1), the last at n - k; the first max wins, NaN always wins.
    ``samples`` is (planes…, dims) with PyTorch's order (W then H in 2-D; T, H, W in 3-D). Returns (y, dx, idx)."""
    x = np.asarray(x, dtype=np.float64)
    dims = len(kernel)
    lead, sizes = x.shape[: x.ndim - dims], x.shape[x.ndim - dims:]
    y = np.zeros(lead + tuple(outs))
    idx = np.zeros(lead + tuple(outs), dtype=np.int64)
    dx = np.zeros(x.shape)
    order = [1, 0] if dims == 2 else list(range(dims))
    for li in product(*(range(n) for n in lead)):
        per_axis = []
        for a in range(dims):
            u, n, out, k = float(samples[li][order[a]]), sizes[a], outs[a], kernel[a]
            alpha = (n - k) / (out - 1) if out > 1 else 0.0
            per_axis.append([int((i + u) * alpha) - int(u * alpha) for i in range(out - 1)] + [n - k])
        for oi in product(*(range(o) for o in outs)):
            cells = list(product(*(range(per_axis[a][oi[a]], per_axis[a][oi[a]] + kernel[a]) for a in range(dims))))
            vals = [x[li + c] for c in cells]
            best, at = -math.inf, 0
            for j, v in enumerate(vals):
                if v > best or v != v:
                    best, at = v, j
            y[li + oi] = best
            idx[li + oi] = int(np.ravel_multi_index(cells[at], sizes))
            g = 1.0 if grad is None else float(grad[li + oi])
            tied = [j for j, v in enumerate(vals) if v == best or (v != v and best != best)]
            picks = [at] if ties == "first" else tied
            for j in picks:
                dx[li + cells[j]] += g / len(tied) if ties == "split" else g
    return y, dx, idx


def lrn_within(x, size=5, alpha=1e-4, beta=0.75, bias=1.0, dims=2, grad=None):
    """Local response normalisation within each channel (Caffe's WITHIN_CHANNEL): every cell over the sum of
    squares of the size^dims cells around it (missing cells are zeros), divided by size^dims; returns (y, dx)."""
    x = np.asarray(x, dtype=np.float64)
    y, dx = np.zeros(x.shape), np.zeros(x.shape)
    g = np.ones(x.shape) if grad is None else grad
    lead, sizes = x.shape[: x.ndim - dims], x.shape[x.ndim - dims:]
    n = size**dims

    def around(cell):
        ranges = [range(c - size // 2, c + (size - 1) // 2 + 1) for c in cell]
        return [p for p in product(*ranges) if all(0 <= a < s for a, s in zip(p, sizes))]

    for li in product(*(range(k) for k in lead)):
        v, gl = x[li], g[li]
        d = {cell: bias + alpha / n * sum(v[p] ** 2 for p in around(cell)) for cell in product(*map(range, sizes))}
        for cell, di in d.items():
            y[li + cell] = v[cell] * di**-beta
            dx[li + cell] += gl[cell] * di**-beta
            for p in around(cell):
                dx[li + p] += gl[cell] * v[cell] * -beta * di ** (-beta - 1) * alpha / n * 2 * v[p]
    return y, dx


def weighted_avg(x, weights, dims, kernel, stride, dilation, pads, ceil, grad=None):
    """Σ w·x / Σ w over each window's real cells, one weight window per channel (the axis before the spatial
    ones; (*kernel) weights for a plane without channels); returns (y, dx, dw)."""
    x = np.asarray(x, dtype=np.float64)
    lead, sizes = x.shape[: x.ndim - dims], x.shape[x.ndim - dims:]
    w = np.asarray(weights, dtype=np.float64).reshape((-1, *kernel))
    outs, wins = windows(sizes, kernel, stride, dilation, pads, ceil)
    y, dx, dw = np.zeros(lead + outs), np.zeros(x.shape), np.zeros(w.shape)
    for li in product(*(range(n) for n in lead)):
        c = li[-1] if lead else 0
        for oi, cells in wins.items():
            taps = [(pos, ji) for (pos, real, _), ji in zip(cells, product(*(range(k) for k in kernel))) if real]
            total = sum(w[(c, *ji)] for _, ji in taps)
            value = sum(w[(c, *ji)] * x[li + pos] for pos, ji in taps) / total
            y[li + oi] = value
            g = 1.0 if grad is None else float(grad[li + oi])
            for pos, ji in taps:
                dx[li + pos] += g * w[(c, *ji)] / total
                dw[(c, *ji)] += g * (x[li + pos] - value) / total
    return y, dx, dw.reshape(np.shape(weights))


def deconv(x, w, bias=None, stride=(1,), padding=(0,), output_padding=(0,), dilation=(1,), groups=1, grad=None):
    """Transposed convolution written out: every input cell i of channel ci adds x·W[ci, co, tap] to output cell
    i·s - p + tap·d of each output channel co of its group, inside the output. ``x`` is (N, C_in, *spatial);
    returns (y, dx, dw, db)."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    dims = x.ndim - 2
    n, c_in, sizes = x.shape[0], x.shape[1], x.shape[2:]
    kernel = w.shape[2:]
    per_in, per_out = c_in // groups, w.shape[1]
    outs = tuple((sz - 1) * s - 2 * p + d * (k - 1) + e + 1
                 for sz, k, s, p, d, e in zip(sizes, kernel, stride, padding, dilation, output_padding))
    y = np.zeros((n, per_out * groups, *outs))
    dx, dw = np.zeros(x.shape), np.zeros(w.shape)
    g = np.ones(y.shape) if grad is None else grad
    for b, ci, co in product(range(n), range(c_in), range(per_out)):
        out_c = (ci // per_in) * per_out + co
        for i in product(*map(range, sizes)):
            for tap in product(*map(range, kernel)):
                o = tuple(ii * s - p + t * d for ii, s, p, t, d in zip(i, stride, padding, tap, dilation))
                if all(0 <= oo < size for oo, size in zip(o, outs)):
                    y[(b, out_c, *o)] += x[(b, ci, *i)] * w[(ci, co, *tap)]
                    dx[(b, ci, *i)] += g[(b, out_c, *o)] * w[(ci, co, *tap)]
                    dw[(ci, co, *tap)] += g[(b, out_c, *o)] * x[(b, ci, *i)]
    db = g.sum(axis=(0, *range(2, 2 + dims)))
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * dims)
    return y, dx, dw, db


def resize_positions(n, out, scale, how):
    """ONNX Resize's coordinate_transformation_mode for output cell j, one cell at a time."""
    width = scale * n
    result = []
    for j in range(out):
        if how == "align-corners":
            result.append(0.0 if width == 1 else j * (n - 1) / (width - 1))
        elif how == "asymmetric":
            result.append(j / scale)
        elif how == "tf-half-pixel-for-nn":
            result.append((j + 0.5) / scale)
        elif how == "pytorch-half-pixel" and width == 1:
            result.append(-0.5)
        else:
            result.append((j + 0.5) / scale - 0.5)
    return result


def resize_nearest(x, outs, scales, how, rounding):
    """ONNX Resize, nearest mode, over the last len(outs) axes, written out: each output cell copies the input
    cell its coordinate rounds to (clamped to the edge)."""
    x = np.asarray(x, dtype=np.float64)
    dims = len(outs)
    lead, sizes = x.shape[: x.ndim - dims], x.shape[x.ndim - dims:]
    pick = []
    for n, out, s in zip(sizes, outs, scales):
        cells = []
        for pos in resize_positions(n, out, s, how):
            low = math.floor(pos)
            frac = pos - low
            up = {"round-prefer-floor": frac > 0.5, "round-prefer-ceil": frac >= 0.5, "floor": False,
                  "ceil": frac > 0}[rounding]
            cells.append(min(max(low + int(up), 0), n - 1))
        pick.append(cells)
    y = np.zeros(lead + tuple(outs))
    for li in product(*map(range, lead)):
        for o in product(*map(range, outs)):
            y[li + o] = x[li + tuple(pick[a][o[a]] for a in range(dims))]
    return y
