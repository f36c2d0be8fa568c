"""The classic windowed operators: max, min, avg, lp and mixed, and their backward.

Arrays here are in the engine's layout (spatial axes last). Each is built from whole-array
moves in ``kernels``: a separable reduction per axis, its adjoint, and, for max/min backward
and indices, a walk over the N-D taps that finds which cell of each window was selected.

>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.arange(1, 17.0).reshape(4, 4)
>>> Avg().forward(x, WindowSpec(kernel=2).bind(x.shape), Params())
array([[ 3.5,  5.5],
       [11.5, 13.5]])
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import Op, Option, Params, _accumulator, _finite, highest, lowest
from poolcli.engine.geometry import Geometry
from poolcli.engine.half import to_float16, to_float32
from poolcli.engine.indices import INDEX_LAYOUT, STORAGE_ORDER
from poolcli.engine.kernels import (
    disjoint,
    one_value,
    select_backward,
    select_indices,
    separable,
    spread,
    strided_windows,
    tiling,
    window_sum,
)
from poolcli.engine.nodata import NODATA, SKIP_NAN, data_counts, empty_value, missing, skips_cells, valid_count
from poolcli.engine.weighted import WeightedGeometry, weighted, weighted_backward, weighted_forward, weights_gradient
from poolcli.errors import UsageError

__all__ = ["COUNT_PAD", "Avg", "Lp", "Max", "Min", "Mixed"]

COUNT_PAD = Option("count_pad", bool, True, "count the padding",
                   flag="--count-pad/--no-count-pad")


def tiling_in_place(plan: Geometry, params: Params) -> bool:
    """Whether a separable operator's backward reads Fortran-ordered and channels-last blocks in place: over
    tiling windows without --nodata/--skip-nan its passes are elementwise, separable or a spread that keeps the
    gradient's memory order."""
    return tiling(plan) and not skips_cells(params)


class Max(Op):
    name, summary, keeps_int = "max", "largest value per window; NaN propagates", True
    options = (INDEX_LAYOUT, STORAGE_ORDER, NODATA, SKIP_NAN)
    selects, ties, marks, strided = True, True, "arg-max", True
    ufunc, fill, arg = np.maximum, staticmethod(lowest), staticmethod(np.argmax)

    def _filled(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray | None]:
        """The input with its no-data cells (if any) made the value that never wins, and their mask."""
        m = missing(x, params)
        return (x, None) if m is None else (np.where(m, self.fill(x.dtype), x), m)

    def backward_reads_strided(self, plan, params):
        # ties "first" over strided windows: each axis's reduction and the routing back follow the input's order
        return self._first_picks(params) and strided_windows(plan)

    def widens_half(self, params, backward=False, plan=None):
        if backward:  # where each cell is in one window at most, float16 gradients are moved as bits
            return plan is None or not self._moves_half(plan, params)
        return skips_cells(params)  # float16 forward picks on int16 keys

    @staticmethod
    def _first_picks(params: Params) -> bool:
        """Ties "first" with every cell read (no --nodata/--skip-nan): each window's gradient goes to the one
        cell it picked first, which the faster routings (in place, float16 as bits) rely on."""
        return params.ties == "first" and not skips_cells(params)

    def _moves_half(self, g: Geometry, params: Params) -> bool:
        return self._first_picks(params) and disjoint(g)

    def _half_forward(self, x: np.ndarray, g: Geometry, params: Params) -> np.ndarray:
        """Float16 pooled on int16 keys in the values' order (each key its own inverse): the picked values
        themselves, with no float arithmetic and no cast. A block holding NaN is computed in float32."""
        bits = x.view(np.int16)
        keys = bits ^ ((bits >> 15) & np.int16(0x7FFF))  # negative values: magnitude bits flipped
        if keys.size and (keys.max() > 0x7C00 or keys.min() < -0x7C01):  # beyond ±inf's keys: NaN
            return to_float16(self.forward(to_float32(x), g, params))
        picked = separable(keys, g, self.ufunc, self.fill(keys.dtype))
        return (picked ^ ((picked >> 15) & np.int16(0x7FFF))).view(np.float16)

    def forward(self, x, g, params):
        if x.dtype == np.float16 and not skips_cells(params):
            return self._half_forward(x, g, params)
        xs, m = self._filled(x, params)
        y = separable(xs, g, self.ufunc, self.fill(x.dtype))
        if m is not None:
            y[valid_count(m, g) == 0] = empty_value(params)
        return y

    def _half_backward(self, x: np.ndarray, g: Geometry, grad: np.ndarray, params: Params) -> np.ndarray:
        """Float16 backward where windows do not overlap (ties "first"): the cells picked on int16 keys that tie
        -0 with +0 as the values do, and each picked cell given its window's gradient bits, unchanged (a value
        that float32 would carry and round back exactly). A block holding NaN is computed in float32."""
        bits = x.view(np.int16)
        sign = bits >> 15
        keys = ((bits & np.int16(0x7FFF)) ^ sign) - sign  # ±magnitude: -0 and +0 are one key
        if keys.size and max(int(keys.max()), -int(keys.min())) > 0x7C00:  # beyond ±inf's keys: NaN
            return to_float16(self.backward(to_float32(x), g, to_float32(grad), params))
        given = grad.view(np.int16)
        dx = select_backward(keys, lambda: separable(keys, g, self.ufunc, self.fill(keys.dtype)), given, g,
                             params.ties, self.arg)
        if (given == np.int16(-0x8000)).any():  # float32 makes a chosen -0 gradient +0 (see select_backward)
            dx[dx == np.int16(-0x8000)] = 0
        return dx.view(np.float16)

    def backward(self, x, g, grad, params):
        if x.dtype == np.float16 and grad.dtype == np.float16:  # (widens_half) windows that do not overlap
            if self._moves_half(g, params):
                return self._half_backward(x, g, grad, params)
            return to_float16(self.backward(to_float32(x), g, to_float32(grad), params))
        xs, m = self._filled(x, params)
        if m is None:
            return select_backward(x, lambda: self.forward(x, g, params), grad, g, params.ties, self.arg)
        grad = np.where(valid_count(m, g) == 0, 0, grad)  # a window without data sends nothing
        fill = self.fill(x.dtype)
        dx = select_backward(xs, lambda: separable(xs, g, self.ufunc, fill), grad, g, params.ties, self.arg)
        return np.where(m, 0, dx)

    def indices(self, x: np.ndarray, g: Geometry, params: Params = Params()) -> tuple[np.ndarray, np.ndarray]:
        xs, m = self._filled(x, params)
        y = separable(xs, g, self.ufunc, self.fill(x.dtype))
        idx = select_indices(xs, y, g)
        if m is not None:
            none = valid_count(m, g) == 0
            y[none] = empty_value(params)
            idx[np.broadcast_to(none, idx.shape)] = -1  # no cell: -1
        return y, idx


class Min(Max):
    name, summary, marks = "min", "smallest value per window; NaN propagates", "arg-min"
    ufunc, fill, arg = np.minimum, staticmethod(highest), staticmethod(np.argmin)


DIVISOR = Option("divisor", int, None, "divide each window's sum by N", metavar="N",
                 check=lambda v: v >= 1, need="the divisor must be a whole number of 1 or more")


WEIGHTS = Option("weights", "array", None, "a weight window per channel", flag="--weights", metavar="W.npy")


class Avg(Op):
    name, aliases, summary = "avg", ("mean",), "mean per window (--count-pad/--no-count-pad, --divisor, --weights)"
    options, box_mean, strided = (COUNT_PAD, DIVISOR, WEIGHTS, NODATA, SKIP_NAN), True, True

    def bind(self, shape, spec, params, weights=None, **arrays):
        g = spec.bind(shape)
        if weights is None:
            return g
        if "divisor" in params.given or skips_cells(params):
            raise UsageError("--weights divides by the weights' sum; drop --divisor, --nodata and --skip-nan")
        return weighted(g, weights)

    def more_gradients(self, x, g, grad, params):
        if not isinstance(g, WeightedGeometry):
            return {}
        return {"weights": weights_gradient(x, g, grad)}

    def _divisor(self, g: Geometry, params: Params, dtype: np.dtype) -> np.ndarray:
        """What each window's sum is divided by: ``--divisor`` for every window, else its count of cells."""
        divisor = params.divisor if "divisor" in params.given else None
        if divisor is not None:
            return np.asarray(divisor, dtype=dtype)
        counts = g.counts(params.count_pad)
        if counts.size and (counts == counts.flat[0]).all():  # every window the same: one number (a broadcast
            return np.asarray(counts.flat[0], dtype=dtype)  # gradient divided by it stays one value)
        return counts.astype(dtype)  # float32 stays float32: no float64 pass

    def box_filter(self, params: Params) -> bool:
        return not {"divisor", "nodata", "skip_nan"} & set(params.given)

    def forward(self, x, g, params):
        if isinstance(g, WeightedGeometry):
            return weighted_forward(x, g)
        m = missing(x, params)
        if m is not None:
            return self._without(x, g, params, m)[0].astype(self.out_dtype(x.dtype), copy=False)
        if x.dtype.kind in "biu" and _exact_in_float32(x.dtype, g):  # integer sums below 2**24: exact in float32,
            y = separable(x.astype(np.float32), g, np.add, 0).astype(np.float64)  # half float64's bytes, same sums
        else:
            y = window_sum(x, g)
        y /= self._divisor(g, params, y.dtype)
        return y.astype(self.out_dtype(x.dtype), copy=False)

    def _without(self, x, g, params, m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The average of the cells with data: (result, divisor, windows without data). Padding counts as
        --count-pad says; --divisor replaces the count."""
        s = window_sum(np.where(m, 0, x), g)
        found, count = data_counts(m, g, params.count_pad)
        by = np.asarray(params.divisor if "divisor" in params.given else count, dtype=s.dtype)
        none = found == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            y = s / by
        y[np.broadcast_to(none, y.shape)] = empty_value(params)
        return y, by, none

    def backward_reads_input(self, g, params):
        return isinstance(g, WeightedGeometry) or skips_cells(params)

    def backward_reads_strided(self, plan, params):
        # where windows tile and only the gradient is read, its shares are spread in its own memory order
        return not self.backward_reads_input(plan, params) and tiling(plan)

    def widens_half(self, params, backward=False, plan=None):
        # backward rounds each window's share once and, where windows tile, spreads the float16 copies
        return not backward or self.backward_reads_input(plan, params)

    def backward(self, x, g, grad, params):
        if isinstance(g, WeightedGeometry):
            return weighted_backward(x, g, grad)
        m = missing(x, params)
        if m is not None:
            _, by, none = self._without(x, g, params, m)
            with np.errstate(invalid="ignore", divide="ignore"):
                per = np.where(none, 0, grad / by)
            return np.where(m, 0, spread(per.astype(grad.dtype, copy=False), g))
        divisor = self._divisor(g, params, np.dtype(np.float32) if grad.dtype == np.float16 else grad.dtype)
        if one_value(grad) and divisor.ndim == 0 and tiling(g):  # the default gradient: one share, every cell's
            one = grad.reshape(-1)[:1]
            share = to_float16(to_float32(one) / divisor) if grad.dtype == np.float16 else one / divisor
            return spread(np.broadcast_to(share[0], grad.shape), g)  # (spread leaves it one value)
        if grad.dtype == np.float16:  # (widens_half) each share computed in float32 and rounded once
            share = to_float32(grad) / divisor
            if tiling(g):  # every cell gets one share: copying rounded shares is the same
                return spread(to_float16(share), g)
            return to_float16(spread(share, g))
        return spread(grad / divisor, g)


def _exact_in_float32(dtype: np.dtype, g: Geometry) -> bool:
    """Whether every window sum of integers of ``dtype`` is an integer float32 holds exactly (below 2**24).

    >>> from poolcli.engine.geometry import WindowSpec
    >>> _exact_in_float32(np.dtype(np.uint8), WindowSpec(kernel=3).bind((8, 8)))
    True
    """
    if dtype.itemsize > 2:
        return False
    info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
    largest = max(abs(int(info.min)), int(info.max))
    return int(g.counts(True).max()) * largest < 1 << 24


class Lp(Op):
    name, summary, strided = "lp", "(sum |x|^p)^(1/p) per window (--p, --mean)", True
    options = (Option("p", float, 2.0, "the exponent", check=lambda v: v > 0 and _finite(v),
                      need="the norm's exponent must be a finite number above 0"),
               Option("mean", bool, False, "root of the mean"), COUNT_PAD, NODATA, SKIP_NAN)

    def backward_reads_strided(self, plan, params):
        return tiling_in_place(plan, params)

    @staticmethod
    def _power(x: np.ndarray, p: float) -> np.ndarray:
        a = np.abs(x.astype(_accumulator(x.dtype), copy=False))
        return a * a if p == 2 else a if p == 1 else a**p

    def _norm(self, x, g, params, m=None):
        """Each window's norm; with no-data cells ``m``, over the cells with data (``empty_value`` where none)."""
        s = window_sum(self._power(x if m is None else np.where(m, 0, x), params.p), g)
        found, count = (None, g.counts(params.count_pad)) if m is None else data_counts(m, g, params.count_pad)
        if params.mean:
            s /= count
        y = s ** (1 / params.p) if params.p != 1 else s
        if m is not None:
            y[np.broadcast_to(found == 0, y.shape)] = empty_value(params)
        return y

    def forward(self, x, g, params):
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._norm(x, g, params, missing(x, params)).astype(self.out_dtype(x.dtype), copy=False)

    def backward(self, x, g, grad, params):
        p = params.p
        m = missing(x, params)
        with np.errstate(invalid="ignore", divide="ignore"):
            y = self._norm(x, g, params, m)
            scale = np.where(y > 0, grad * y ** (1 - p), 0)
        if m is not None:
            found, count = data_counts(m, g, params.count_pad)
            scale = np.where(found == 0, 0, scale)
            if params.mean:
                scale = scale / np.maximum(count, 1)
            x = np.where(m, 0, x)
        elif params.mean:
            scale = scale / g.counts(params.count_pad)
        xa = x.astype(_accumulator(x.dtype), copy=False)
        a = np.abs(xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            local = np.sign(xa) * (a ** (p - 1) if p != 2 else a)
        local = np.where(xa == 0, 0, local)
        return (local * spread(scale, g)).astype(grad.dtype, copy=False)


class Mixed(Op):
    name, summary = "mixed", "alpha*max + (1-alpha)*avg per window (--alpha)"
    options = (Option("alpha", float, 0.5, "the max share",
                      check=lambda v: 0 <= v <= 1, need="the max share must be between 0 and 1"), COUNT_PAD)
    ties, marks, strided = True, "arg-max (the max part)", True
    hi, mean = Max(), Avg()

    def backward_reads_strided(self, plan, params):  # where both its parts do
        return all(part.backward_reads_strided(plan, params) for part in (self.hi, self.mean))

    def forward(self, x, g, params):
        hi = self.hi.forward(x, g, params).astype(self.out_dtype(x.dtype), copy=False)
        a = self.value(params, "alpha")
        return a * hi + (1 - a) * self.mean.forward(x, g, params)

    def backward(self, x, g, grad, params):
        a = self.value(params, "alpha")
        hi, mean = self.hi.backward(x, g, grad, params), self.mean.backward(x, g, grad, params)
        if one_value(mean):  # avg's share of the default gradient: one number, added in the max part's order
            return a * hi + (1 - a) * mean.reshape(-1)[0]
        return a * hi + (1 - a) * mean

    def selected(self, x, g, params):
        return self.hi.selected(x, g, params)
