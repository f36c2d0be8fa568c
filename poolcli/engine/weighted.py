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

from dataclasses import dataclass, replace

import numpy as np

from poolcli.engine.base import float_type
from poolcli.engine.geometry import AdaptiveAxis, Geometry
from poolcli.engine.kernels import add_region, inps, last_phases, outs, phase_run, region
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


def _in_phase(parts: list[np.ndarray], tap, size: int) -> np.ndarray:
    """The cells one tap reads, as a run of the phase of the last axis (of ``size`` cells) they lie in."""
    last = tap[-1].inp
    run = phase_run(parts, last.start, len(range(*last.indices(size))))
    return region(run, inps(tap[:-1]) + [slice(None)])


def _sums(x: np.ndarray, g: WeightedGeometry) -> tuple[np.ndarray, np.ndarray]:
    """The weighted sum of every window and the sum of its real cells' weights: one multiply into a scratch
    array and one add per tap, every tap reading a contiguous run of one phase of the last axis."""
    xf = x.astype(float_type(x.dtype), copy=False)
    num = np.zeros(x.shape[: x.ndim - g.dims] + g.out_spatial, dtype=xf.dtype)
    step = g.axes[-1].stride  # every tap reads the last axis with it: a stride over 1 is read as its phases
    parts = last_phases(xf, step) if step > 1 else None
    scratch = np.empty_like(num)
    for tap in g.taps():
        part = region(scratch, outs(tap))
        src = _in_phase(parts, tap, x.shape[-1]) if parts else region(xf, inps(tap))
        np.multiply(src, _tap_weights(g, tap, xf.dtype), out=part)
        add_region(num, outs(tap), part)
    return num, _weight_sums(g, xf.dtype)


def _weight_sums(g: WeightedGeometry, dtype: np.dtype) -> np.ndarray:
    """The sum of the weights of every window's real cells, per channel: (C, *out) (or (*out))."""
    den = np.zeros(((g.lead[-1],) if g.lead else ()) + g.out_spatial, dtype=dtype)
    for tap in g.taps():
        w = _tap_weights(g, tap, dtype)
        add_region(den, outs(tap), np.broadcast_to(w, region(den, outs(tap)).shape))
    return den


def weighted_forward(x: np.ndarray, g: WeightedGeometry) -> np.ndarray:
    num, den = _sums(x, g)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def weighted_backward(x: np.ndarray, g: WeightedGeometry, grad: np.ndarray) -> np.ndarray:
    den = _weight_sums(g, np.dtype(float_type(x.dtype)))
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = grad / den
    step = g.axes[-1].stride
    if step == 1:
        dx = np.zeros(x.shape, dtype=grad.dtype)
        for tap in g.taps():
            add_region(dx, inps(tap), region(scale, outs(tap)) * _tap_weights(g, tap, grad.dtype),
                       all(t.unique for t in tap))
        return dx
    # gathered in the phases of the last axis (contiguous adds), interleaved once at the end
    parts = [np.zeros(x.shape[:-1] + (len(range(p, x.shape[-1], step)),), dtype=grad.dtype) for p in range(step)]
    scratch = np.empty_like(scale)
    for tap in g.taps():
        part = region(scratch, outs(tap))
        np.multiply(region(scale, outs(tap)), _tap_weights(g, tap, grad.dtype), out=part)
        view = _in_phase(parts, tap, x.shape[-1])
        np.add(view, part, out=view)
    dx = np.empty(x.shape, dtype=grad.dtype)
    for p, part in enumerate(parts):
        dx[..., p::step] = part
    return dx


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
