"""Resampling as ``torch.nn.functional.interpolate``: nearest, nearest-exact, (bi/tri)linear, bicubic and area, by a
factor or to a size, optionally antialiased when downscaling, and the exact adjoint of each.

Linear interpolation in several axes is the product of 1-D interpolations, so each axis is
done in turn: a gather of two neighbours and a weighted sum. The backward pass is the adjoint
of each 1-D step (a segmented sum, since source cells are non-decreasing), in reverse order.
Coordinates follow PyTorch's ``interpolate``: with ``--scale``, the factor itself maps output
to input (``--recompute-scale``: in/out, as ``recompute_scale_factor``); with ``--output-size``, in/out;
``--align-corners`` maps corner to corner. Bicubic, area and antialiased axes are weighted sums of a few
source cells per output (``Taps``); bicubic and antialiasing work in any number of axes, PyTorch's in 2-D.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.array([[1.0, 2.0], [3.0, 4.0]])
>>> up = Upsample()
>>> up.forward(x, up.bind(x.shape, WindowSpec(), Params(scale=2)), Params(scale=2))
array([[1., 1., 2., 2.],
       [1., 1., 2., 2.],
       [3., 3., 4., 4.],
       [3., 3., 4., 4.]])
>>> p = Params(mode="bilinear", align_corners=True)
>>> up.forward(x, up.bind(x.shape, WindowSpec(output_size=3), p), p)
array([[1. , 1.5, 2. ],
       [2. , 2.5, 3. ],
       [3. , 3.5, 4. ]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import pairwise

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan, _finite, float_type
from poolcli.engine.geometry import axis_names
from poolcli.engine.kernels import last_phases, memory_order, phase_run
from poolcli.errors import GeometryError, UsageError


@dataclass(frozen=True)
class Interp:
    """One axis: for each output cell, two source cells and their weights (w1 = 0 for nearest)."""

    i0: np.ndarray
    i1: np.ndarray
    w1: np.ndarray
    size: int

    @cached_property
    def phased(self) -> tuple[int, list[list[tuple[int, float]]]] | None:
        """``phases(self)``, found once per axis (every block of a plan shares it)."""
        return phases(self)


@dataclass(frozen=True)
class Taps:
    """One axis as a weighted sum of ``T`` source cells per output cell (bicubic, area, antialiased): row t of
    ``idx`` and ``w`` is the t-th source of every output; each row of ``idx`` is non-decreasing."""

    idx: np.ndarray  # (T, out)
    w: np.ndarray  # (T, out)
    size: int

    @cached_property
    def phased(self) -> tuple[int, list[list[tuple[int, float]]]] | None:
        """``phases(self)``, found once per axis (every block of a plan shares it)."""
        return phases(self)

    @cached_property
    def banded(self) -> tuple[int, int, int, list[tuple[int, float]]] | None:
        """``band(self)``, found once per axis."""
        return band(self)


@dataclass(frozen=True)
class UpsamplePlan(Plan):
    axes: tuple[Interp | Taps, ...] = ()


A_CUBIC = -0.75  # PyTorch's bicubic (OpenCV's); its antialiased bicubic uses Keys' -0.5 (Pillow's)


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel at distance ``t`` (Keys 1981)."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _ratio(n: int, out: int, scale: float | None, align_corners: bool) -> float:
    """PyTorch's ``area_pixel_compute_scale``: input cells per output cell."""
    if align_corners:
        return (n - 1) / (out - 1) if out > 1 else 0.0
    return 1 / scale if scale else n / out


def bicubic_axis(n: int, out: int, scale: float | None, align_corners: bool) -> Taps:
    """Four taps per output cell at floor(pos)-1 … floor(pos)+2 (indices clamped to the edge), A = -0.75.

    >>> bicubic_axis(4, 8, 2.0, False).w[:, 2].round(4).tolist()
    [-0.0352, 0.2617, 0.8789, -0.1055]
    """
    dst = np.arange(out, dtype=np.float64)
    ratio = _ratio(n, out, scale, align_corners)
    return cubic_taps(dst * ratio if align_corners else (dst + 0.5) * ratio - 0.5, n)  # not clamped at 0, as PyTorch


def cubic_taps(pos: np.ndarray, n: int) -> Taps:
    """Cubic convolution (A = -0.75) at input coordinates ``pos``: the four cells floor(pos)-1 … floor(pos)+2,
    indices clamped to the edge (PyTorch's bicubic and ONNX Resize's cubic)."""
    base = np.floor(pos).astype(np.int64)
    t = pos - base
    idx = np.clip(base[None, :] + np.arange(-1, 3)[:, None], 0, n - 1)
    w = np.stack([_cubic(t + 1, A_CUBIC), _cubic(t, A_CUBIC), _cubic(1 - t, A_CUBIC), _cubic(2 - t, A_CUBIC)])
    return Taps(idx, w, n)


def area_axis(n: int, out: int) -> Taps:
    """Adaptive average pooling along one axis: output i averages [floor(i·n/out), ceil((i+1)·n/out)).

    >>> area_axis(5, 2).idx.tolist()
    [[0, 2], [1, 3], [2, 4]]
    """
    i = np.arange(out)
    start, end = (i * n) // out, -((-(i + 1) * n) // out)
    count = end - start
    t = np.arange(int(count.max()))[:, None]
    idx = np.minimum(start[None, :] + t, end[None, :] - 1)
    return Taps(idx, np.where(t < count[None, :], 1 / count[None, :], 0.0), n)


def antialiased_axis(n: int, out: int, scale: float | None, align_corners: bool, mode: str) -> Taps:
    """PyTorch's antialiased interpolation (Pillow's resampling): a triangle (bilinear) or Keys cubic (a = -0.5)
    filter stretched by the downscaling factor, its weights normalised to sum 1.

    >>> antialiased_axis(4, 2, None, False, "bilinear").w[:, 0].round(4).tolist()
    [0.4286, 0.4286, 0.1429, 0.0, 0.0]
    """
    ratio = _ratio(n, out, scale, align_corners)
    size = 2 if mode == "bilinear" else 4
    support = size / 2 * ratio if ratio >= 1 else size / 2
    invscale = 1 / ratio if ratio >= 1 else 1.0
    center = ratio * (np.arange(out) + 0.5)
    lo = np.maximum((center - support + 0.5).astype(np.int64), 0)
    count = np.minimum((center + support + 0.5).astype(np.int64), n) - lo
    width = int(np.ceil(support)) * 2 + 1
    count = np.clip(count, 0, width)
    t = np.arange(width)[:, None]
    x = (t + lo[None, :] - center[None, :] + 0.5) * invscale
    w = np.maximum(0.0, 1 - np.abs(x)) if mode == "bilinear" else _cubic(x, -0.5)
    w = np.where(t < count[None, :], w, 0.0)
    total = w.sum(axis=0)
    w = np.where(total != 0, w / np.where(total != 0, total, 1), 0.0)
    return Taps(np.clip(lo[None, :] + t, 0, n - 1), w, n)


def interp_axis(n: int, out: int, scale: float | None, mode: str, align_corners: bool) -> Interp:
    """Source cells and weights of one axis, PyTorch's coordinate rules.

    >>> interp_axis(2, 4, 2.0, "bilinear", False).w1.tolist()
    [0.0, 0.25, 0.75, 0.0]
    """
    dst = np.arange(out)
    if mode in ("nearest", "nearest-exact"):
        # PyTorch computes this index in single precision; so does this, to pick the same cells
        ratio = np.float32(1 / scale) if scale else np.float32(n) / np.float32(out)
        at = dst.astype(np.float32) + (np.float32(0.5) if mode == "nearest-exact" else np.float32(0))
        src = np.minimum(np.floor(at * ratio).astype(np.int64), n - 1)
        if mode == "nearest" and out in (n, 2 * n):  # PyTorch's exact integer cases
            src = dst if out == n else dst >> 1
        return Interp(src, src, np.zeros(out), n)
    if align_corners:
        ratio = (n - 1) / (out - 1) if out > 1 else 0.0
        pos = dst * ratio
    else:
        ratio = 1 / scale if scale else n / out
        pos = np.maximum((dst + 0.5) * ratio - 0.5, 0.0)
    i0 = np.minimum(pos.astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w1 = np.clip(pos - i0, 0.0, 1.0)
    return Interp(i0, i1, np.where(i1 == i0, 0.0, w1), n)


def _shape(a: np.ndarray, axis: int) -> tuple[int, ...]:
    return (-1,) + (1,) * (a.ndim - axis - 1)


def _as_taps(ip: Interp | Taps) -> tuple[np.ndarray, np.ndarray]:
    """Any axis as (idx, w), each (T, out): a weighted sum of T source cells per output cell."""
    if isinstance(ip, Taps):
        return ip.idx, ip.w
    if not ip.w1.any():
        return ip.i0[None], np.ones((1, len(ip.i0)))
    return np.stack([ip.i0, ip.i1]), np.stack([1 - ip.w1, ip.w1])


def phases(ip: Interp | Taps) -> tuple[int, list[list[tuple[int, float]]]] | None:
    """For an axis whose output is a whole ``f`` times its input and whose weights repeat every ``f`` outputs
    (nearest, bilinear, bicubic by 2, 3, …): per phase r, the taps as (offset, weight), where output ``f·i + r``
    reads input ``i + offset`` (the edge cell past the ends); None for any other axis. The taps are read off the
    middle of the axis, and the map they make is checked against the axis's own on random values (edges too).

    >>> phases(interp_axis(4, 8, 2.0, "bilinear", False))
    (2, [[(-1, 0.25), (0, 0.75)], [(0, 0.75), (1, 0.25)]])
    """
    n = ip.size
    idx, w = _as_taps(ip)
    out = idx.shape[1]
    if n < 3 or out % n:
        return None
    f, mid = out // n, n // 2
    found = [[(int(idx[t, r + f * mid]) - mid, float(w[t, r + f * mid])) for t in range(len(idx))
              if w[t, r + f * mid] != 0] for r in range(f)]
    probe = np.random.default_rng(0).random((3, n))  # the same linear map on three random rows, or not
    mine = _apply_phases(probe, 1, f, found)
    theirs = sum(probe[:, i] * wt for i, wt in zip(idx, w))
    return (f, found) if np.allclose(mine, theirs, rtol=1e-12, atol=1e-12) else None


def band(ip: Taps) -> tuple[int, int, int, list[tuple[int, float]]] | None:
    """For an axis shrunk by a whole factor ``d`` (antialiased, bicubic or area downscaling by 2, 3, …): the
    outputs ``a`` to ``b`` whose taps are the middle output's shifted by ``d`` cells per output, and those
    taps as (offset, weight): output ``o`` there is the sum over taps of ``x[d·o + offset] · weight``, each
    tap a strided view of the input. None for any other axis.

    >>> band(antialiased_axis(8, 4, None, False, "bilinear"))[:3]
    (2, 1, 3)
    """
    idx, w = ip.idx, ip.w
    out, n = idx.shape[1], ip.size
    if out < 3 or n % out or n // out < 2:
        return None
    d, mid = n // out, out // 2
    rows = [(t, int(idx[t, mid]) - d * mid, float(w[t, mid])) for t in range(len(idx))]
    o = np.arange(out)
    same = np.ones(out, dtype=bool)
    for t, offset, weight in rows:
        same &= w[t] == weight
        if weight != 0:
            same &= idx[t] == d * o + offset
    a = mid - int(np.argmin(same[mid::-1])) + 1 if not same[: mid + 1].all() else 0
    b = mid + int(np.argmin(same[mid:])) if not same[mid:].all() else out
    taps = [(offset, weight) for _, offset, weight in rows if weight != 0]
    return (d, a, b, taps) if taps and b - a >= 2 else None


def _gather(x: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_t ``x`` at ``idx[t]`` along ``axis`` times ``w[t]`` (rows of all-zero weights skipped)."""
    y = None
    for i, wt in zip(idx, w):
        if not wt.any():
            continue
        part = np.take(x, i, axis=axis) * wt.astype(x.dtype).reshape(_shape(x, axis))
        y = part if y is None else y + part
    if y is None:
        out = list(x.shape)
        out[axis] = idx.shape[1]
        return np.zeros(out, dtype=x.dtype)
    return y


def _apply_band(x: np.ndarray, axis: int, ip: Taps) -> np.ndarray:
    """``apply_axis`` for a banded axis: the outputs inside the band as a few weighted strided views of the
    input (no gathers; along the last axis, runs of its phases), the few at the edges gathered as any
    axis's."""
    d, a, b, taps = ip.banded
    shape = list(x.shape)
    shape[axis] = ip.idx.shape[1]
    y = np.empty(shape, dtype=x.dtype)
    inner = _along(y, axis, slice(a, b))
    scratch = np.empty_like(inner)
    parts = last_phases(x, d) if axis == x.ndim - 1 else None  # each tap then a contiguous run of one phase
    for k, (offset, weight) in enumerate(taps):
        if parts is not None:
            src = phase_run(parts, d * a + offset, b - a)
        else:
            src = _along(x, axis, slice(d * a + offset, d * (b - 1) + offset + 1, d))
        np.multiply(src, x.dtype.type(weight), out=inner if k == 0 else scratch)
        if k:
            inner += scratch
    for lo, hi in ((0, a), (b, shape[axis])):
        if hi > lo:
            _along(y, axis, slice(lo, hi))[...] = _gather(x, axis, ip.idx[:, lo:hi], ip.w[:, lo:hi])
    return y


def _along(a: np.ndarray, axis: int, index: slice) -> np.ndarray:
    return a[(slice(None),) * axis + (index,)]


def _padded(x: np.ndarray, axis: int, reach: int) -> np.ndarray:
    """``x`` with its edge cells repeated ``reach`` times past each end of ``axis``."""
    n = x.shape[axis]
    first, last = _along(x, axis, slice(0, 1)), _along(x, axis, slice(n - 1, n))
    return np.concatenate([first] * reach + [x] + [last] * reach, axis=axis)


def _apply_phases(x: np.ndarray, axis: int, f: int, found: list[list[tuple[int, float]]]) -> np.ndarray:
    """``apply_axis`` by phases: each output phase is a few strided views of the input, weighted and summed."""
    n = x.shape[axis]
    reach = max([abs(o) for taps in found for o, _ in taps] + [0])
    xp = _padded(x, axis, reach) if reach else x
    shape = list(x.shape)
    shape[axis] = n * f
    y = np.empty(shape, dtype=x.dtype)
    tmp = np.empty_like(x)
    for r, taps in enumerate(found):
        dst = _along(y, axis, slice(r, None, f))
        if not taps:
            dst[...] = 0
        for k, (offset, weight) in enumerate(taps):
            src = _along(xp, axis, slice(reach + offset, reach + offset + n))
            if k == 0:
                np.multiply(src, x.dtype.type(weight), out=dst) if weight != 1 else np.copyto(dst, src)
            else:
                np.multiply(src, x.dtype.type(weight), out=tmp)
                dst += tmp
    return y


def repeats(ip: Interp | Taps) -> int | None:
    """The whole factor ``f`` of an axis that repeats each input cell ``f`` times (nearest by 1, 2, 3, …), else None.

    >>> repeats(interp_axis(4, 8, 2.0, "nearest", False)), repeats(interp_axis(4, 8, 2.0, "bilinear", False))
    (2, None)
    """
    by_phase = ip.phased  # its map checked on random values: an axis of the same size need not be the identity
    if by_phase is None or any(taps != [(0, 1.0)] for taps in by_phase[1]):
        return None
    return by_phase[0]


def replicate(x: np.ndarray, first: int, factors: Sequence[int], dtype: np.dtype | None = None) -> np.ndarray:
    """Every cell of the axes from ``first`` on repeated ``factors`` times along each, as ``dtype`` (default
    ``x``'s; the cast made while copying). One pass per repeat of the last axis, each writing its copy of every
    cell into all the leading axes' repeats at once (the input read by broadcasting; the inner loop runs along
    whole rows), over runs of rows whose output stays in cache between the passes. A cell of 1, 2 or 4 bytes
    repeated twice along the last axis is one product in the integer twice as wide, both copies at once; one of
    8 bytes, a record of two fields, both assigned at once.

    >>> replicate(np.array([[1.0, 2.0], [3.0, 4.0]]), 0, (2, 3))[:2].tolist()
    [[1.0, 1.0, 1.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]]
    """
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    order = memory_order(x) if not x.flags.c_contiguous else None
    if order is not None and order != tuple(range(x.ndim)):  # in x's own memory order, and so the result
        every = (1,) * first + tuple(factors)
        y = replicate(x.transpose(order), 0, [every[i] for i in order], dtype)
        return y.transpose(np.argsort(order))
    if dtype.itemsize > x.dtype.itemsize and factors[-1] > 1:  # the last axis repeated in the narrower dtype,
        # the cast then one contiguous pass over whole rows
        narrow = replicate(x, first, (1,) * (len(factors) - 1) + (factors[-1],))
        return replicate(narrow, first, tuple(factors[:-1]) + (1,), dtype)
    lead, cells = x.shape[:first], x.shape[first:]
    y = np.empty(lead + tuple(n * f for n, f in zip(cells, factors)), dtype=dtype)
    if y.size == 0:
        return y
    rows = math.prod(lead) * cells[0]  # the runs cut along the first cell axis and all before it
    split = y.reshape((rows,) + tuple(v for n, f in zip(cells, factors) for v in (n, f))[1:])
    src = x.reshape((rows,) + tuple(v for n in cells[1:] for v in (1, n)))  # broadcast over the repeats
    f = factors[-1]
    if f == 2 and dtype == x.dtype and dtype.itemsize in _WIDER and x.flags.c_contiguous:
        narrow, wide = _WIDER[dtype.itemsize]  # both copies of a cell are one integer twice as wide
        pairs = split.reshape(split.shape[:-2] + (-1,)).view(wide)
        np.multiply(src.view(narrow), wide.type((1 << 8 * dtype.itemsize) + 1), out=pairs, dtype=wide)
        return y
    if f == 2 and dtype == x.dtype and x.flags.c_contiguous:  # (8 bytes: no wider integer) both copies of a cell
        pairs = split.reshape(split.shape[:-2] + (-1,)).view(np.dtype([("a", dtype), ("b", dtype)]))
        pairs[...] = src  # the two fields of one record: NumPy gives a plain value to every field, bits as they are
        return y
    run = max(1, _RUN_BYTES // (y.nbytes // rows))
    for start in range(0, rows, run):
        part, cut = split[start:start + run], src[start:start + run]
        for r in range(f):
            part[..., r] = cut
    return y


_WIDER = {1: (np.dtype(np.uint8), np.dtype(np.uint16)), 2: (np.dtype(np.uint16), np.dtype(np.uint32)),
          4: (np.dtype(np.uint32), np.dtype(np.uint64))}
_RUN_BYTES = 1 << 19  # the output of a run of rows: in cache while its repeats are written one pass each


def unreplicate(g: np.ndarray, first: int, factors: Sequence[int]) -> np.ndarray:
    """The transpose of ``replicate``: each input cell gets the sum of its block of repeats, the leading axes'
    repeats added as whole rows first (halving what the strided last axis reads).

    >>> unreplicate(np.arange(12.0).reshape(2, 6), 0, (2, 3)).tolist()
    [[24.0, 42.0]]
    """
    cells = tuple(n // f for n, f in zip(g.shape[first:], factors))
    for axis, f in enumerate(factors):
        if f == 1:
            continue
        at = first + axis
        split = g.reshape(g.shape[:at] + (cells[axis], f) + g.shape[at + 1:])
        pick = (slice(None),) * (at + 1)
        total = split[pick + (0,)] + split[pick + (1,)]
        for r in range(2, f):
            total += split[pick + (r,)]
        g = total
    return g


def _adjoint_phases(g: np.ndarray, axis: int, f: int, found: list[list[tuple[int, float]]]) -> np.ndarray:
    """The transpose of ``_apply_phases``: each phase's gradient added back onto the views it read."""
    n = g.shape[axis] // f
    reach = max([abs(o) for taps in found for o, _ in taps] + [0])
    shape = list(g.shape)
    shape[axis] = n + 2 * reach
    gp = np.zeros(shape, dtype=g.dtype)
    for r, taps in enumerate(found):
        src = _along(g, axis, slice(r, None, f))
        for offset, weight in taps:
            dst = _along(gp, axis, slice(reach + offset, reach + offset + n))
            dst += src * g.dtype.type(weight) if weight != 1 else src
    dx = _along(gp, axis, slice(reach, reach + n))
    if reach:  # what reached past the ends belongs to the edge cells
        _along(dx, axis, slice(0, 1))[...] += _along(gp, axis, slice(0, reach)).sum(axis=axis, keepdims=True)
        _along(dx, axis, slice(n - 1, n))[...] += _along(gp, axis, slice(reach + n, None)).sum(axis=axis,
                                                                                              keepdims=True)
    return dx


def apply_axis(x: np.ndarray, axis: int, ip: Interp | Taps) -> np.ndarray:
    """Interpolate ``x`` along ``axis``."""
    by_phase = ip.phased
    if by_phase is not None:
        return _apply_phases(x, axis, *by_phase)
    if isinstance(ip, Taps):
        if ip.banded is not None:
            return _apply_band(x, axis, ip)
        return _gather(x, axis, ip.idx, ip.w)
    lo = np.take(x, ip.i0, axis=axis)
    if not ip.w1.any():
        return lo
    hi = np.take(x, ip.i1, axis=axis)
    w1 = ip.w1.astype(x.dtype).reshape(_shape(x, axis))
    lo += (hi - lo) * w1
    return lo


def _pieces(dst: np.ndarray, src: np.ndarray) -> list[tuple[slice | np.ndarray, slice | np.ndarray]]:
    """Split paired index arrays into runs where both step evenly, as slices (views, not copies).

    Interpolation indices are regular but for a cell or two at the edges, so this gives a
    handful of slices; irregular ones (more than 8 runs) stay index arrays.

    >>> _pieces(np.array([0, 0, 1, 2]), np.array([0, 1, 3, 5]))
    [(slice(0, 1, 1), slice(0, 1, 1)), (slice(0, 3, 1), slice(1, 6, 2))]
    """
    n = len(dst)
    if n == 1:
        return [(slice(int(dst[0]), int(dst[0]) + 1, 1), slice(int(src[0]), int(src[0]) + 1, 1))]
    cuts = [0]
    i = 0
    while i < n - 1:
        a, b = dst[i + 1] - dst[i], src[i + 1] - src[i]
        j = i + 1
        while j < n - 1 and dst[j + 1] - dst[j] == a and src[j + 1] - src[j] == b:
            j += 1
        if a <= 0 or b <= 0:  # not a slice: this pair stands alone
            j = i
        cuts.append(j + 1)
        i = j + 1
        if len(cuts) > 9:
            return [(dst, src)]
    if cuts[-1] != n:
        cuts.append(n)
    out = []
    for lo, hi in pairwise(cuts):
        d, s = dst[lo:hi], src[lo:hi]
        step_d = int(d[1] - d[0]) if len(d) > 1 else 1
        step_s = int(s[1] - s[0]) if len(s) > 1 else 1
        out.append((slice(int(d[0]), int(d[-1]) + 1, step_d), slice(int(s[0]), int(s[-1]) + 1, step_s)))
    return out


def _segment_sum(g: np.ndarray, axis: int, src: np.ndarray, size: int) -> np.ndarray:
    """``out[src[j]] += g[j]`` along ``axis``, for non-decreasing ``src``.

    The outputs that are the j-th of their source cell's run have distinct sources, so each
    such j is one plain (unaccumulated) indexed add; there are as many passes as the longest run.

    >>> _segment_sum(np.arange(5.0), 0, np.array([0, 0, 1, 2, 2]), 3)
    array([1., 2., 7.])
    """
    n = len(src)
    starts = np.flatnonzero(np.diff(src, prepend=-1))
    runs = np.diff(np.append(starts, n))
    offset = np.arange(n) - np.repeat(starts, runs)
    out_shape = list(g.shape)
    out_shape[axis] = size
    out = np.zeros(out_shape, dtype=g.dtype)
    lead = (slice(None),) * axis
    for j in range(int(runs.max())):
        sel = np.flatnonzero(offset == j)
        for dst, part in _pieces(src[sel], sel):
            out[lead + (dst,)] += g[lead + (part,)]
    return out


def adjoint_axis(g: np.ndarray, axis: int, ip: Interp | Taps) -> np.ndarray:
    """The transpose of ``apply_axis``: each source cell gets the weighted gradients of the outputs it fed."""
    by_phase = ip.phased
    if by_phase is not None:
        return _adjoint_phases(g, axis, *by_phase)
    if isinstance(ip, Taps):
        dx = None
        for idx, w in zip(ip.idx, ip.w):
            if not w.any():
                continue
            part = _segment_sum(g * w.astype(g.dtype).reshape(_shape(g, axis)), axis, idx, ip.size)
            dx = part if dx is None else dx + part
        if dx is None:
            out = list(g.shape)
            out[axis] = ip.size
            return np.zeros(out, dtype=g.dtype)
        return dx
    if not ip.w1.any():
        return _segment_sum(g, axis, ip.i0, ip.size)
    w1 = ip.w1.astype(g.dtype).reshape(_shape(g, axis))
    part1 = g * w1
    return _segment_sum(g - part1, axis, ip.i0, ip.size) + _segment_sum(part1, axis, ip.i1, ip.size)


MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area", "lanczos")


COORDINATES = ("half-pixel", "pytorch-half-pixel", "align-corners", "asymmetric", "tf-half-pixel-for-nn")
ROUNDING = ("round-prefer-floor", "round-prefer-ceil", "floor", "ceil")


def onnx_positions(n: int, out: int, scale: float, how: str) -> np.ndarray:
    """ONNX Resize's ``coordinate_transformation_mode``: the input coordinate of each output cell. As ONNX, the
    corner modes use the unrounded output width ``scale·n`` (3 cells by 0.75 are 4.5 wide, not 4).

    >>> onnx_positions(4, 8, 2.0, "asymmetric").tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    """
    x = np.arange(out, dtype=np.float64)
    width = scale * n
    if how == "align-corners":
        return x * (n - 1) / (width - 1) if width != 1 else np.zeros(out)
    if how == "asymmetric":
        return x / scale
    if how == "tf-half-pixel-for-nn":
        return (x + 0.5) / scale
    if how == "pytorch-half-pixel" and width == 1:
        return np.full(out, -0.5)
    return (x + 0.5) / scale - 0.5  # half-pixel, pytorch-half-pixel


def onnx_axis(n: int, out: int, scale: float | None, params: Params | _Rule) -> Interp | Taps:
    """One axis as ONNX Resize maps it (``--coordinates``, ``--nearest``): positions from the coordinate mode, the
    nearest cell by the rounding mode, or linear/cubic (A = -0.75) neighbours clamped to the edge."""
    pos = onnx_positions(n, out, scale if scale else out / n, params.coordinates or "half-pixel")
    if params.mode == "nearest":
        rounding = params.nearest or "round-prefer-floor"
        below = np.floor(pos)
        frac = pos - below
        up = {"round-prefer-floor": frac > 0.5, "round-prefer-ceil": frac >= 0.5, "floor": np.zeros(out, bool),
              "ceil": frac > 0}[rounding]
        src = np.clip((below + up).astype(np.int64), 0, n - 1)
        return Interp(src, src, np.zeros(out), n)
    if params.mode == "bicubic":
        return cubic_taps(pos, n)
    base = np.floor(pos).astype(np.int64)
    i0, i1 = np.clip(base, 0, n - 1), np.clip(base + 1, 0, n - 1)
    return Interp(i0, i1, np.where(i0 == i1, 0.0, pos - base), n)


def _axis(n: int, out: int, scale: float | None, params: Params) -> Interp | Taps:
    """One axis's source cells and weights, by mode: made once per process for each size and rule (an axis finds
    its phases once, however many calls and blocks use it)."""
    return _made_axis(n, out, scale, _Rule(params.mode, params.coordinates, params.nearest, bool(params.antialias),
                                           bool(params.align_corners)))


@dataclass(frozen=True)
class _Rule:
    """What of the options an axis's map depends on (with its sizes and factor)."""

    mode: str
    coordinates: str | None
    nearest: str | None
    antialias: bool
    align_corners: bool


@lru_cache(maxsize=256)
def _made_axis(n: int, out: int, scale: float | None, params: _Rule) -> Interp | Taps:
    made = _new_axis(n, out, scale, params)
    for a in vars(made).values():  # shared between calls: nobody may write to it
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    return made


def _new_axis(n: int, out: int, scale: float | None, params: Params | _Rule) -> Interp | Taps:
    if params.mode == "lanczos":  # Pillow resizes images itself (pillow_filter); an array is refused when pooled
        return interp_axis(n, out, scale, "nearest", False)
    if params.coordinates is not None or params.nearest is not None:
        return onnx_axis(n, out, scale, params)
    if params.mode == "area":
        return area_axis(n, out)
    if params.antialias:
        return antialiased_axis(n, out, scale, params.align_corners, params.mode)
    if params.mode == "bicubic":
        return bicubic_axis(n, out, scale, params.align_corners)
    return interp_axis(n, out, scale, params.mode, params.align_corners)


class Upsample(Op):
    name, summary, windowed = "upsample", "resampling by --scale or to --output-size (--mode, as interpolate)", False
    block_share = 0.5  # 1 MiB of input a block: its output and the pass between the axes stay in cache
    options = (Option("mode", "choice", "nearest", "nearest, nearest-exact, bilinear, bicubic, area; lanczos (images)",
                      choices=MODES, metavar="MODE"),
               Option("scale", "floats", None, "factor per axis",
                      metavar="S[,S…]", check=lambda v: bool(v) and all(s > 0 and _finite(s) for s in v),
                      need="every factor must be a finite number above 0"),
               Option("align_corners", bool, False, "corners onto corners"),
               Option("antialias", bool, False, "filter when downscaling (bilinear, bicubic)"),
               Option("recompute_scale", bool, False, "map by in/out sizes, not the factor"),
               Option("coordinates", "choice", None, "ONNX Resize's coordinate mapping", choices=COORDINATES),
               Option("nearest", "choice", None, "ONNX Resize's nearest rounding", choices=ROUNDING))

    def spatial(self, shape, spec, params):
        scales = params.scale
        if spec.dims is None and scales is not None and len(scales) > 1 and spec.output_size is None:
            ndim = len(shape) - (1 if spec.channels_last else 0)
            if len(scales) > ndim:
                raise GeometryError(f"--scale {','.join(f'{s:g}' for s in scales)} has {len(scales)} values but the "
                                    f"input has only {len(shape)} axes; give 1 factor or one per spatial axis")
            return len(scales)
        return spec.spatial(shape)[0]

    def bind(self, shape, spec, params, **arrays):
        from dataclasses import replace

        scales = params.scale
        spec = replace(spec, dims=self.spatial(shape, spec, params))
        dims, sizes = spec.spatial(shape)
        if spec.kernel is not None or spec.stride is not None or spec.global_pool:
            raise UsageError("upsample takes --scale or --output-size, not -k/-s/--global")
        names = axis_names(dims)
        if (scales is None) == (spec.output_size is None):
            raise UsageError("upsample needs --scale S (one factor or one per axis) or --output-size N, not "
                             + ("both" if scales is not None else "neither"))
        if scales is not None:
            if len(scales) not in (1, dims):
                raise UsageError(f"--scale has {len(scales)} factors; give 1 or one per spatial axis ({dims})")
            per = scales * dims if len(scales) == 1 else scales
            outs = tuple(int(np.floor(n * s)) for n, s in zip(sizes, per))
        else:
            per = (None,) * dims
            outs = spec.output_sizes(dims)
        for name, o in zip(names, outs):
            if o < 1:
                raise GeometryError(f"axis {name}: upsampling gives size {o}; give a larger --scale or --output-size")
        if params.align_corners and params.mode not in ("bilinear", "bicubic"):
            raise UsageError(f"--align-corners goes with --mode bilinear or bicubic, not {params.mode}")
        if params.antialias and params.mode not in ("bilinear", "bicubic"):
            raise UsageError(f"--antialias goes with --mode bilinear or bicubic, not {params.mode}")
        if params.coordinates is not None or params.nearest is not None:  # ONNX Resize's rules
            if params.mode not in ("nearest", "bilinear", "bicubic") or params.antialias or params.align_corners:
                raise UsageError("--coordinates and --nearest follow ONNX Resize: give --mode nearest, bilinear or "
                                 "bicubic, without --antialias/--align-corners (--coordinates align-corners)")
            if params.nearest is not None and params.mode != "nearest":
                raise UsageError(f"--nearest rounds --mode nearest, not {params.mode}")
        mapped = (None,) * dims if params.recompute_scale else per  # PyTorch's recompute_scale_factor
        if params.coordinates is None and params.nearest is None and (params.mode == "bilinear" or params.antialias):
            # PyTorch's linear and antialiased kernels leave an axis whose size does not change as it is
            mapped = tuple(None if o == n else s for n, o, s in zip(sizes, outs, mapped))
        axes = tuple(_axis(n, o, s, params) for n, o, s in zip(sizes, outs, mapped))
        out = spec.with_sizes(shape, outs)
        rows = tuple({"axis": nm, "size": n, "out": o, "kind": "upsample",
                      "formula": (f"floor({n} · {s:g}) = {o}" if s is not None else f"--output-size = {o}")}
                     for nm, n, o, s in zip(names, sizes, outs, per))
        return UpsamplePlan(shape, out, rows, dims=dims, axes=axes)

    def pillow_filter(self, params):
        return "lanczos" if params.mode == "lanczos" else None

    def widens_half(self, params, backward=False, plan=None):
        return backward or not params.mode.startswith("nearest")  # nearest forward only moves values

    def reads_strided(self, plan, params):
        # nearest by whole factors: replicated in the input's own memory order (channels innermost, or a
        # Fortran-ordered array's planes), so the result is laid out as the input already
        return all(repeats(ip) for ip in plan.axes)

    def _arrays_only(self, params: Params) -> None:
        if params.mode == "lanczos":
            raise UsageError("--mode lanczos resizes images (Pillow's LANCZOS filter), forward only; for arrays "
                             "give --mode bicubic (with --antialias to downscale)")

    def forward(self, x, plan, params):
        self._arrays_only(params)
        first = x.ndim - plan.dims
        factors = [repeats(ip) for ip in plan.axes]
        if all(factors):  # nearest by whole factors: every cell repeated, written once (cast as it is copied)
            return replicate(x, first, factors, float_type(x.dtype))
        y = x.astype(float_type(x.dtype), copy=False)
        for i, ip in enumerate(plan.axes):
            y = apply_axis(y, first + i, ip)
        return y if y is not x else y.copy()

    def backward_reads_input(self, plan, params):
        return False

    def backward(self, x, plan, grad, params):
        self._arrays_only(params)
        first = grad.ndim - plan.dims
        factors = [repeats(ip) for ip in plan.axes]
        if all(factors):  # nearest by whole factors: each cell's block of repeats summed
            return unreplicate(grad, first, factors) if any(f > 1 for f in factors) else grad.copy()
        g = grad
        for i in reversed(range(plan.dims)):
            g = adjoint_axis(g, first + i, plan.axes[i])
        return g

    def picture(self, x, y, dx, plan, params, dims):
        return Picture(x, y, dx, plan.dims, f"{params.mode}, to {'×'.join(map(str, y.shape[y.ndim - plan.dims:]))}")

    def prepare_check(self, shape, spec, params, arrays):
        """A factor of 2 when neither --scale nor --output-size was given."""
        if params.scale is None and spec.output_size is None:
            return params.replace(scale=2.0), arrays
        return params, arrays


__all__ = ["Interp", "Params", "Taps", "Upsample", "UpsamplePlan", "adjoint_axis", "apply_axis", "area_axis",
           "bicubic_axis", "interp_axis"]
