"""Upsampling: nearest or (bi/tri)linear interpolation by a factor or to a size, and its exact adjoint.

Linear interpolation in several axes is the product of 1-D interpolations, so each axis is
done in turn: a gather of two neighbours and a weighted sum. The backward pass is the adjoint
of each 1-D step (a segmented sum, since source cells are non-decreasing), in reverse order.
Coordinates follow PyTorch's ``interpolate``: with ``--scale``, the factor itself maps output
to input; with ``--output-size``, in/out; ``--align-corners`` maps corner to corner.

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

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan, _finite, float_type
from poolcli.engine.geometry import axis_names
from poolcli.errors import GeometryError, UsageError


@dataclass(frozen=True)
class Interp:
    """One axis: for each output cell, two source cells and their weights (w1 = 0 for nearest)."""

    i0: np.ndarray
    i1: np.ndarray
    w1: np.ndarray
    size: int


@dataclass(frozen=True)
class UpsamplePlan(Plan):
    axes: tuple[Interp, ...] = ()


def interp_axis(n: int, out: int, scale: float | None, mode: str, align_corners: bool) -> Interp:
    """Source cells and weights of one axis, PyTorch's coordinate rules.

    >>> interp_axis(2, 4, 2.0, "bilinear", False).w1.tolist()
    [0.0, 0.25, 0.75, 0.0]
    """
    dst = np.arange(out)
    if mode == "nearest":
        # PyTorch computes this index in single precision; so does this, to pick the same cells
        ratio = np.float32(1 / scale) if scale else np.float32(n) / np.float32(out)
        src = np.minimum(np.floor(dst.astype(np.float32) * ratio).astype(np.int64), n - 1)
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


def apply_axis(x: np.ndarray, axis: int, ip: Interp) -> np.ndarray:
    """Interpolate ``x`` along ``axis``."""
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


def adjoint_axis(g: np.ndarray, axis: int, ip: Interp) -> np.ndarray:
    """The transpose of ``apply_axis``: each source cell gets the weighted gradients of the outputs it fed."""
    if not ip.w1.any():
        return _segment_sum(g, axis, ip.i0, ip.size)
    w1 = ip.w1.astype(g.dtype).reshape(_shape(g, axis))
    part1 = g * w1
    return _segment_sum(g - part1, axis, ip.i0, ip.size) + _segment_sum(part1, axis, ip.i1, ip.size)


MODES = ("nearest", "bilinear")


class Upsample(Op):
    name, summary, windowed = "upsample", "nearest or (bi/tri)linear by --scale or to --output-size", False
    options = (Option("mode", "choice", "nearest", "interpolation", choices=MODES),
               Option("scale", "floats", None, "factor per axis",
                      metavar="S[,S…]", check=lambda v: bool(v) and all(s > 0 and _finite(s) for s in v),
                      need="every factor must be a finite number above 0"),
               Option("align_corners", bool, False, "corners onto corners"))

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
        axes = tuple(interp_axis(n, o, s, params.mode, params.align_corners) for n, o, s in zip(sizes, outs, per))
        out = spec.with_sizes(shape, outs)
        rows = tuple({"axis": nm, "size": n, "out": o, "kind": "upsample",
                      "formula": (f"floor({n} · {s:g}) = {o}" if s is not None else f"--output-size = {o}")}
                     for nm, n, o, s in zip(names, sizes, outs, per))
        return UpsamplePlan(shape, out, rows, dims=dims, axes=axes)

    def widens_half(self, params, backward=False):
        return backward or params.mode != "nearest"  # nearest forward only moves values; its adjoint adds

    def forward(self, x, plan, params):
        y = x.astype(float_type(x.dtype), copy=False)
        first = y.ndim - plan.dims
        for i, ip in enumerate(plan.axes):
            y = apply_axis(y, first + i, ip)
        return y if y is not x else y.copy()

    def backward(self, x, plan, grad, params):
        first = grad.ndim - plan.dims
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


__all__ = ["Interp", "Params", "Upsample", "UpsamplePlan", "adjoint_axis", "apply_axis", "interp_axis"]
