"""Weighted average pooling (``avg --weights W.npy``): each window's real cells weighted by a per-channel weight
window, ``Σ w·x / Σ w`` over the cells inside the input (padding is left out of both sums).

``W`` has shape (C, *kernel) (one weight window per channel; a plane without channels takes (*kernel)).
Backward goes to x and, with ``-o grads.npz``, to the weights (``weights``): ``d y / d w_t = (x_t - y) / Σ w``.
A window whose weights sum to 0 gives NaN.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.array([[[1.0, 3.0, 5.0, 7.0]]])
>>> g = weighted(WindowSpec(kernel=(1, 2)).bind(x.shape), np.array([[[1.0, 3.0]]]))
>>> weighted_forward(x, g).tolist()
[[[2.5, 6.5]]]
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from poolcli.engine.base import float_type
from poolcli.engine.geometry import AdaptiveAxis, Geometry
from poolcli.engine.kernels import add_region, fortran_planes, inps, outs, region
from poolcli.errors import UsageError

__all__ = ["WeightedGeometry", "weighted", "weighted_backward", "weighted_forward", "weights_gradient"]


@dataclass(frozen=True)
class WeightedGeometry(Geometry):
    """Windows with a weight window per channel (the last leading axis): ``weights`` (C or 1, *kernel)."""

    weights: np.ndarray | None = None

    def block(self, lead, index):
        g = super().block(lead, index)
        return replace(g, weights=self.weights[index[-1]] if self.lead else self.weights)

    def plane(self, index):
        g = super().plane(index)
        return replace(g, weights=self.weights[index[-1]: index[-1] + 1] if self.lead else self.weights)


def weighted(g: Geometry, weights: np.ndarray) -> WeightedGeometry:
    """``g`` with a weight window per channel, checked against its kernel and channels."""
    w = np.asarray(weights)
    if w.dtype.kind not in "biuf":
        raise UsageError(f"--weights holds {w.dtype} values; give real numbers")
    if any(isinstance(a, AdaptiveAxis) for a in g.axes):
        raise UsageError("--weights needs fixed windows (-k); adaptive windows differ in size")
    kernel = tuple(a.kernel for a in g.axes)
    channels = g.lead[-1] if g.lead else 1
    if w.shape == kernel:
        w = w[None]
    if w.shape[1:] != kernel or w.shape[0] not in (channels, 1):
        raise UsageError(f"--weights has shape {w.shape}; give (C, *kernel) = {(channels, *kernel)}: one weight "
                         f"window per channel")
    if w.shape[0] == 1 and channels != 1:
        w = np.broadcast_to(w, (channels, *kernel))
    return WeightedGeometry(g.lead, g.axes, g.channels_last, g.origin, w.astype(np.float64))


def _tap_weights(g: WeightedGeometry, tap, dtype: np.dtype) -> np.ndarray:
    """The weight of one tap for every channel, shaped to broadcast over (…, C, out…)."""
    w = g.weights[(slice(None), *(t.j for t in tap))].astype(dtype)
    return w.reshape((-1,) + (1,) * g.dims) if g.lead else w.reshape(())


def _sums(x: np.ndarray, g: WeightedGeometry) -> tuple[np.ndarray, np.ndarray]:
    """The weighted sum of every window and the sum of its real cells' weights: one multiply and one add per
    tap, every tap reading one long contiguous run of the input's phase planes (``_Phases``)."""
    xf = x.astype(float_type(x.dtype), copy=False)
    if xf.size == 0:
        num = np.zeros(x.shape[: x.ndim - g.dims] + g.out_spatial, dtype=xf.dtype)
    else:
        if xf.flags.f_contiguous and not xf.flags.c_contiguous:  # planes innermost: their phases gather slowly
            xf = np.ascontiguousarray(fortran_planes(xf, xf.ndim - g.dims))
        num = _flat_sums(xf, g)
    return num, _weight_sums(g, xf.dtype)


@dataclass(frozen=True)
class _Phases:
    """The input's planes split into the stride phases of each spatial axis, each phase zero-padded so that every
    tap of every window is one shift of it. The outputs live on a grid whose rows have the phase planes' length
    (the extra cells of each row are dropped), so each tap reads one contiguous run of a flattened phase plane,
    per plane, and NumPy's loops run over whole planes instead of one output row each.

    >>> from poolcli.engine.geometry import WindowSpec
    >>> ph = _Phases.of(WindowSpec(kernel=3, stride=2, padding=1, dims=1).bind((1, 8)))
    >>> ph.ext, ph.run, [(t[0][0], ph.start(t)) for t in ph.taps]  # tap 0 reads the odd phase from cell -1
    ((6,), 4, [(1, 0), (0, 1), (1, 1)])
    """

    axes: tuple
    taps: tuple  # per tap (row-major), per axis: (phase, shift)
    low: tuple  # per axis, the smallest shift
    ext: tuple  # the phase planes' shape (one spare row on the first axis for the last run's overhang)
    run: int  # output grid cells per plane

    @classmethod
    def of(cls, g: Geometry) -> _Phases:
        per_axis = [[divmod(j * a.dilation - a.pad[0], a.stride)[::-1] for j in range(a.kernel)] for a in g.axes]
        low = tuple(min(q for _, q in t) for t in per_axis)
        spare = [1] + [0] * (len(g.axes) - 1)
        ext = tuple(a.out + max(q for _, q in t) - lo + n for a, t, lo, n in zip(g.axes, per_axis, low, spare))
        return cls(g.axes, tuple(itertools.product(*per_axis)), low, ext, g.axes[0].out * math.prod(ext[1:]))

    def phases(self) -> list[tuple[int, ...]]:
        """The phases some tap reads (one per axis)."""
        return sorted({tuple(p for p, _ in tap) for tap in self.taps})

    def start(self, tap: tuple) -> int:
        """Where a tap's run starts in its flattened phase plane."""
        return sum((q - lo) * math.prod(self.ext[d + 1:]) for d, ((_, q), lo) in enumerate(zip(tap, self.low)))

    def cells(self, phase: tuple[int, ...], sizes: tuple[int, ...]) -> tuple[tuple, tuple]:
        """The phase plane's cells that hold input cells, and those input cells: (its index, the input's)."""
        into, src = [Ellipsis], [Ellipsis]
        for p, axis, lo, n, m in zip(phase, self.axes, self.low, sizes, self.ext):
            first = p + axis.stride * lo  # the input cell of the phase plane's cell 0 (before the input if < 0)
            m_lo, m_hi = max(0, -(first // axis.stride)), min(m, -((first - n) // axis.stride))
            into.append(slice(m_lo, max(m_lo, m_hi)))
            src.append(slice(first + axis.stride * m_lo, first + axis.stride * (m_hi - 1) + 1, axis.stride)
                       if m_hi > m_lo else slice(0, 0))
        return tuple(into), tuple(src)

    def runs(self, phases: dict, shape: tuple[int, ...]) -> Iterator[tuple[int, np.ndarray]]:
        """Each tap's number (row-major, as the weights' cells) and its run of its flattened phase plane (in
        ``phases``, per phase), one per plane, shaped ``shape`` (…, C, run)."""
        for k, tap in enumerate(self.taps):
            start = self.start(tap)
            yield k, phases[tuple(p for p, _ in tap)][:, start: start + self.run].reshape(shape)

    def grid(self, a: np.ndarray, lead: tuple[int, ...]) -> np.ndarray:
        """Output-grid values (…, run) as the outputs: each row's extra cells dropped."""
        rows = a.reshape((-1, self.axes[0].out, *self.ext[1:]))
        return rows[(slice(None), slice(None), *(slice(0, x.out) for x in self.axes[1:]))].reshape(
            lead + tuple(x.out for x in self.axes))


def _per_channel(g: WeightedGeometry, k: int, dtype: np.dtype) -> np.ndarray:
    """Tap ``k``'s weight for every channel, shaped (C, 1)."""
    return g.weights[(slice(None), *np.unravel_index(k, g.weights.shape[1:]))].astype(dtype)[:, None]


def _flat_sums(xf: np.ndarray, g: WeightedGeometry) -> np.ndarray:
    """Σ w·x of every window, one multiply and one add per tap over whole planes (see ``_Phases``)."""
    ph = _Phases.of(g)
    lead, sizes = xf.shape[: xf.ndim - g.dims], xf.shape[xf.ndim - g.dims:]
    phases = {}
    for phase in ph.phases():
        a = np.zeros((*lead, *ph.ext), dtype=xf.dtype)
        into, src = ph.cells(phase, sizes)
        a[into] = xf[src]  # (an input in any memory order is read as it lies)
        phases[phase] = a.reshape(math.prod(lead), -1)
    channels = lead[-1] if lead else 1
    num = np.empty((math.prod(lead) // channels, channels, ph.run), dtype=xf.dtype)
    scratch = np.empty_like(num)
    for k, src in ph.runs(phases, num.shape):
        if k == 0:
            np.multiply(src, _per_channel(g, k, xf.dtype), out=num)
        else:
            np.add(num, np.multiply(src, _per_channel(g, k, xf.dtype), out=scratch), out=num)
    return ph.grid(num, lead)


def _flat_spread(scale: np.ndarray, g: WeightedGeometry, shape: tuple[int, ...]) -> np.ndarray:
    """The adjoint of ``_flat_sums``: each window's ``scale`` times each tap's weight added to the cell it read,
    one multiply and one add per tap over whole planes, then each phase plane put back in place."""
    ph = _Phases.of(g)
    lead, sizes = shape[: len(shape) - g.dims], shape[len(shape) - g.dims:]
    channels = lead[-1] if lead else 1
    grid = np.zeros((math.prod(lead) // channels, channels, ph.run), dtype=scale.dtype)
    ph.grid(grid, lead)[...] = scale  # the extra cells of each row stay 0: they reach no cell
    scratch = np.empty_like(grid)
    phases = {phase: np.zeros((math.prod(lead), math.prod(ph.ext)), dtype=scale.dtype) for phase in ph.phases()}
    for k, view in ph.runs(phases, grid.shape):
        np.add(view, np.multiply(grid, _per_channel(g, k, scale.dtype), out=scratch), out=view)
    dx = np.zeros(shape, dtype=scale.dtype)
    for phase, a in phases.items():
        into, src = ph.cells(phase, sizes)
        dx[src] = a.reshape((*lead, *ph.ext))[into]
    return dx


def _weight_sums(g: WeightedGeometry, dtype: np.dtype) -> np.ndarray:
    """The sum of the weights of every window's real cells, per channel: (C, *out) (or (*out)); read-only, made
    once for the blocks that share their channels' weights (each block of planes asked for it again)."""
    w = np.ascontiguousarray(g.weights, dtype=np.float64)  # (as ``weighted`` makes them: the key's bytes)
    small = w.shape[0] * math.prod(g.out_spatial) * np.dtype(dtype).itemsize <= KEPT_BYTES
    make = _weight_sums_of if small else _weight_sums_of.__wrapped__  # a large one is not kept after the call
    return make(g.axes, bool(g.lead), np.dtype(dtype), w.tobytes(), w.shape)


KEPT_BYTES = 8 << 20  # weight sums up to this size are kept for the next blocks (and calls)


@functools.lru_cache(maxsize=16)
def _weight_sums_of(axes: tuple, channels: bool, dtype: np.dtype, weights: bytes, shape: tuple[int, ...]
                    ) -> np.ndarray:
    w = np.frombuffer(weights, dtype=np.float64).reshape(shape)
    g = WeightedGeometry((shape[0],) if channels else (), axes, weights=w)
    den = np.zeros(((shape[0],) if channels else ()) + g.out_spatial, dtype=dtype)
    for tap in g.taps():
        w = _tap_weights(g, tap, dtype)
        add_region(den, outs(tap), np.broadcast_to(w, region(den, outs(tap)).shape))
    den.flags.writeable = False
    return den


def weighted_forward(x: np.ndarray, g: WeightedGeometry) -> np.ndarray:
    num, den = _sums(x, g)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def weighted_backward(x: np.ndarray, g: WeightedGeometry, grad: np.ndarray) -> np.ndarray:
    den = _weight_sums(g, np.dtype(float_type(x.dtype)))
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = grad / den
    if x.size == 0:
        return np.zeros(x.shape, dtype=scale.dtype)
    return _flat_spread(scale, g, x.shape)


def weights_gradient(x: np.ndarray, g: WeightedGeometry, grad: np.ndarray) -> np.ndarray:
    """d sum(y·grad) / d w, shape (C, *kernel) (or (*kernel) without channels): Σ grad·(x_t - y)/Σw per tap."""
    num, den = _sums(x, g)
    with np.errstate(invalid="ignore", divide="ignore"):
        y, scale = num / den, grad / den
    dw = np.zeros(g.weights.shape, dtype=np.float64)
    planes = tuple(range(x.ndim - g.dims - 1)) if g.lead else ()
    for tap in g.taps():
        part = region(scale, outs(tap)) * (region(x.astype(y.dtype, copy=False), inps(tap)) - region(y, outs(tap)))
        per = part.sum(axis=planes + tuple(range(part.ndim - g.dims, part.ndim)))
        dw[(slice(None), *(t.j for t in tap))] += per
    return dw
