"""Operators: each is a reduction over the windows of a Geometry, and its backward.

Arrays here are in the engine's layout (spatial axes last). Every windowed operator is
built from three whole-array moves: a separable reduction (``reduce_axis`` per axis),
its adjoint (``scatter_axis``), and, for max/min backward and indices, a walk over the
N-D taps that finds which cell of each window was selected.

>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.arange(1, 17.0).reshape(4, 4)
>>> OPS["avg"].forward(x, WindowSpec(kernel=2).bind(x.shape), Params())
array([[ 3.5,  5.5],
       [11.5, 13.5]])
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import TIES, Op, Params, _accumulator, float_type, highest, lowest
from poolcli.engine.geometry import Geometry
from poolcli.engine.kernels import add_region, inps, outs, reduce_axis, region, scatter_axis, set_region
from poolcli.errors import UsageError

__all__ = ["OPS", "TIES", "Op", "Params", "float_type", "get_op", "highest", "lowest", "separable", "spread",
           "window_sum"]


CHUNK_BYTES = 1 << 19  # blocks of planes this large keep a block's intermediates in cache


def separable(x: np.ndarray, g: Geometry, ufunc: np.ufunc, fill: object) -> np.ndarray:
    """Reduce the windows of every spatial axis in turn (max, min and sums are separable).

    Planes are reduced in blocks of about CHUNK_BYTES, so that the strided passes of the
    later axes read from cache rather than memory.
    """
    first = x.ndim - g.dims
    if x.size == 0:  # no planes (a zero-size batch or channel axis): nothing to reduce
        return np.empty(x.shape[:first] + g.out_spatial, dtype=x.dtype)
    if first == 0 or not x.flags.c_contiguous:
        return _reduce_block(x, g, ufunc, fill, first)
    planes = x.reshape((-1, *x.shape[first:]))
    step = max(1, CHUNK_BYTES // max(1, planes[0].nbytes))
    if step >= len(planes):
        return _reduce_block(x, g, ufunc, fill, first)
    out = np.empty((len(planes), *g.out_spatial), dtype=x.dtype)
    for i in range(0, len(planes), step):
        out[i : i + step] = _reduce_block(planes[i : i + step], g, ufunc, fill, 1)
    return out.reshape(x.shape[:first] + g.out_spatial)


def _reduce_block(x: np.ndarray, g: Geometry, ufunc: np.ufunc, fill: object, first: int) -> np.ndarray:
    y = x
    for i, axis in enumerate(g.axes):
        y = reduce_axis(y, first + i, axis, ufunc, fill)
    return y if y is not x else y.copy()


def window_sum(x: np.ndarray, g: Geometry) -> np.ndarray:
    """Sum of every window, in the accumulator dtype."""
    return separable(x.astype(_accumulator(x.dtype), copy=False), g, np.add, 0)


def spread(grad: np.ndarray, g: Geometry) -> np.ndarray:
    """Adjoint of ``window_sum``: every input cell gets the sum of the values of the windows it is in."""
    first = grad.ndim - g.dims
    dx = grad
    for i in reversed(range(g.dims)):
        dx = scatter_axis(dx, first + i, g.axes[i])
    return dx


def _hits(x: np.ndarray, y: np.ndarray, g: Geometry, ties: str):
    """For each N-D tap, the outputs whose selected (extreme) value sits on that tap's cell.

    Yields ``(taps, hit)``; with ``ties="first"`` only the first tied cell in row-major
    window order is hit, else every tied cell. NaN, when present, is the selected value.
    """
    nan = np.issubdtype(y.dtype, np.floating) and bool(np.isnan(y).any())
    taken = np.zeros(y.shape, dtype=bool) if ties == "first" else None
    for taps in g.taps():
        v = region(x, inps(taps))
        w = region(y, outs(taps))
        hit = v == w
        if nan:
            hit |= np.isnan(v) & np.isnan(w)
        if taken is not None:
            seen = region(taken, outs(taps))
            hit &= ~seen
            set_region(taken, outs(taps), seen | hit)
        yield taps, hit


def _unique(taps) -> bool:
    return all(t.unique for t in taps)


def select_backward(x: np.ndarray, y: np.ndarray, grad: np.ndarray, g: Geometry, ties: str) -> np.ndarray:
    """Route each output's gradient to the cell its window selected (max/min backward)."""
    dx = np.zeros(x.shape, dtype=grad.dtype)
    if ties == "split":
        count = np.zeros(y.shape, dtype=grad.dtype)
        for taps, hit in _hits(x, y, g, "all"):
            add_region(count, outs(taps), hit)
        grad = grad / count
    for taps, hit in _hits(x, y, g, ties):
        add_region(dx, inps(taps), region(grad, outs(taps)) * hit, _unique(taps))
    return dx


def select_indices(x: np.ndarray, y: np.ndarray, g: Geometry) -> np.ndarray:
    """For each output, the flat index (over its plane's spatial axes) of the first selected cell."""
    idx = np.full(y.shape, -1, dtype=np.int64)
    plane = [a.size for a in g.axes]
    for taps, hit in _hits(x, y, g, "first"):
        flat = np.zeros((), dtype=np.int64)
        for t, n in zip(taps, plane):
            flat = np.add.outer(flat * n, t.positions())
        set_region(idx, outs(taps), np.where(hit, flat, region(idx, outs(taps))))
    return idx


class Max(Op):
    name, summary, keeps_int = "max", "largest value per window; NaN propagates", True
    ufunc, fill = np.maximum, staticmethod(lowest)

    def forward(self, x, g, params):
        return separable(x, g, self.ufunc, self.fill(x.dtype))

    def backward(self, x, g, grad, params):
        return select_backward(x, self.forward(x, g, params), grad, g, params.ties)

    def indices(self, x: np.ndarray, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
        y = self.forward(x, g, Params())
        return y, select_indices(x, y, g)


class Min(Max):
    name, summary = "min", "smallest value per window; NaN propagates"
    ufunc, fill = np.minimum, staticmethod(highest)


class Avg(Op):
    name, summary = "avg", "mean per window (--count-pad/--no-count-pad)"

    def forward(self, x, g, params):
        y = window_sum(x, g)
        y /= g.counts(params.count_pad)
        return y.astype(self.out_dtype(x.dtype), copy=False)

    def backward(self, x, g, grad, params):
        return spread(grad / g.counts(params.count_pad), g)


class Lp(Op):
    name, summary = "lp", "(sum |x|^p)^(1/p) per window (--p, --mean)"

    @staticmethod
    def _power(x: np.ndarray, p: float) -> np.ndarray:
        a = np.abs(x.astype(_accumulator(x.dtype), copy=False))
        return a * a if p == 2 else a if p == 1 else a**p

    def _norm(self, x, g, params):
        s = window_sum(self._power(x, params.p), g)
        if params.mean:
            s /= g.counts(params.count_pad)
        return s ** (1 / params.p) if params.p != 1 else s

    def forward(self, x, g, params):
        return self._norm(x, g, params).astype(self.out_dtype(x.dtype), copy=False)

    def backward(self, x, g, grad, params):
        p = params.p
        y = self._norm(x, g, params)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(y > 0, grad * y ** (1 - p), 0)
        if params.mean:
            scale = scale / g.counts(params.count_pad)
        xa = x.astype(_accumulator(x.dtype), copy=False)
        a = np.abs(xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            local = np.sign(xa) * (a ** (p - 1) if p != 2 else a)
        local = np.where(xa == 0, 0, local)
        return (local * spread(scale, g)).astype(grad.dtype, copy=False)


class Mixed(Op):
    name, summary = "mixed", "alpha*max + (1-alpha)*avg per window (--alpha)"

    def forward(self, x, g, params):
        hi = OPS["max"].forward(x, g, params).astype(self.out_dtype(x.dtype), copy=False)
        a = _share(params)
        return a * hi + (1 - a) * OPS["avg"].forward(x, g, params)

    def backward(self, x, g, grad, params):
        a = _share(params)
        return a * OPS["max"].backward(x, g, grad, params) + (1 - a) * OPS["avg"].backward(x, g, grad, params)


def _share(params: Params) -> float:
    a = params.alpha_or(0.5)
    if not 0 <= a <= 1:
        raise UsageError(f"--alpha {a}: the max share must be between 0 and 1")
    return a


def _all_ops() -> dict[str, Op]:
    from poolcli.engine.bilinear import BilinearPool
    from poolcli.engine.kmax import KMax
    from poolcli.engine.lrn import LRN
    from poolcli.engine.unpool import Unpool
    from poolcli.engine.upsample import Upsample

    ops = (Max(), Min(), Avg(), Lp(), Mixed(), KMax(), Unpool(), Upsample(), LRN(), BilinearPool())
    return {op.name: op for op in ops}


OPS: dict[str, Op] = _all_ops()
ALIASES = {"mean": "avg"}


def get_op(name: str) -> Op:
    """The operator called ``name`` (or an alias such as ``mean``)."""
    key = ALIASES.get(name, name)
    if key not in OPS:
        raise UsageError(f"--op {name}: not an operator; give one of {', '.join(OPS)}")
    return OPS[key]
