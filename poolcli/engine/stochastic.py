"""Stochastic pooling (Zeiler & Fergus 2013): each window picks one of its cells with probability
``a_i / Σ a``; ``--expected`` gives the inference form, the probability-weighted average ``Σ a_i² / Σ a_i``.

The inputs must be non-negative (activations after a ReLU); a window of zeros gives 0. NaN propagates.
The random number of a window is a counter-based hash of ``--seed``, the plane and the window's position
(SplitMix64), not a stream: the same seed gives the same picks whatever the blocks, threads or plane shown,
so a later ``backward`` with the same seed sends the gradient to the cells ``forward`` picked. Within a window,
cell i is picked when the running sum of the window (row-major order) first reaches u·Σa at a positive cell.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.array([[0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 2.0, 2.0]])
>>> g = WindowSpec(kernel=2).bind(x.shape)
>>> Stochastic().forward(x, g, Params()).tolist()  # the only positive cell, then one of two
[[3.0, 2.0]]
>>> Stochastic().forward(x, g, Params(expected=True)).tolist()
[[3.0, 2.0]]
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import Op, Option, Params, float_type
from poolcli.engine.geometry import Geometry
from poolcli.engine.kernels import add_region, inps, outs, region, set_region, spread, window_sum
from poolcli.errors import InputError

__all__ = ["SEED", "Params", "Stochastic", "uniform"]

SEED = Option("seed", int, 0, "random seed", metavar="N", check=lambda v: 0 <= v < 2**63,
              need="give a whole number from 0")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (wrapping uint64 arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, g: Geometry) -> np.ndarray:
    """One number in [0, 1) per window of ``g`` (shape lead + out), from the seed and each window's place in the
    whole input.

    >>> from poolcli.engine.geometry import WindowSpec
    >>> g = WindowSpec(kernel=2).bind((4, 4, 4))
    >>> bool((uniform(1, g)[2:] == uniform(1, g.block((2,), (slice(2, 4),)))).all())
    True
    """
    origin, coords = g.planes()
    fixed = origin[: len(origin) - len(g.lead)]
    k = len(g.lead)
    spatial = [np.arange(n).reshape((-1,) + (1,) * (g.dims - i - 1)) for i, n in enumerate(g.out_spatial)]
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(np.uint64(seed) + _GOLDEN))
        for c in [*fixed, *[c.reshape(c.shape + (1,) * g.dims) for c in coords], *spatial]:
            h = _mix((h + _GOLDEN) ^ np.asarray(c).astype(np.uint64))
        h = np.broadcast_to(h, g.lead + g.out_spatial) if h.shape != g.lead + g.out_spatial else h
    assert h.ndim == k + g.dims
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


class Stochastic(Op):
    name, summary = "stochastic", "a cell picked with probability a/Σa per window (--seed; --expected)"
    options = (SEED, Option("expected", bool, False, "Σa²/Σa, the inference form"))
    selects, marks, random = True, "picked cell", True

    def drawn(self, x):
        return np.abs(x)

    def picks(self, params):
        return not params.expected

    def _floats(self, x: np.ndarray) -> np.ndarray:
        xf = x.astype(float_type(x.dtype), copy=False)
        if xf.size and np.nanmin(xf) < 0:
            raise InputError(f"stochastic pooling picks cells with probability a/Σa, so the input must not be "
                             f"negative; its smallest value is {np.nanmin(xf):g} (pool it after a ReLU)")
        return xf

    def _picks(self, xf: np.ndarray, g: Geometry, params: Params) -> tuple[np.ndarray, np.ndarray]:
        """Each window's picked tap (-1: none, a window of zeros or with NaN) and its value (0 or NaN then)."""
        taps = list(g.taps())
        total = np.zeros(xf.shape[: xf.ndim - g.dims] + g.out_spatial, dtype=xf.dtype)
        for tap in taps:
            add_region(total, outs(tap), region(xf, inps(tap)))
        target = uniform(self.value(params, "seed"), g) * total
        cum = np.zeros_like(total)
        pick = np.full(total.shape, -1, dtype=np.int64)
        y = np.where(np.isnan(total), np.nan, 0).astype(xf.dtype)
        for i, tap in enumerate(taps):  # the running sums repeat total's additions, so the last reaches it
            xi = region(xf, inps(tap))
            c = region(cum, outs(tap)) + xi
            set_region(cum, outs(tap), c)
            free = region(pick, outs(tap)) < 0
            now = free & (c >= region(target, outs(tap))) & (xi > 0)
            set_region(pick, outs(tap), np.where(now, i, region(pick, outs(tap))))
            set_region(y, outs(tap), np.where(now, xi, region(y, outs(tap))))
        return pick, y

    def forward(self, x, g, params):
        xf = self._floats(x)
        if params.expected:
            s1, s2 = window_sum(xf, g), window_sum(xf * xf, g)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(s1 > 0, s2 / s1, np.where(np.isnan(s1), np.nan, 0)).astype(xf.dtype, copy=False)
        return self._picks(xf, g, params)[1]

    def backward(self, x, g, grad, params):
        xf = self._floats(x)
        if params.expected:  # y = S2/S1: dy/da_i = (2 a_i - y) / S1
            s1, s2 = window_sum(xf, g), window_sum(xf * xf, g)
            with np.errstate(invalid="ignore", divide="ignore"):
                per = np.where(s1 > 0, grad / s1, 0)
                y = np.where(s1 > 0, s2 / s1, 0)
            return (2 * xf * spread(per, g) - spread(per * y, g)).astype(grad.dtype, copy=False)
        pick, _ = self._picks(xf, g, params)
        dx = np.zeros(xf.shape, dtype=grad.dtype)
        for i, tap in enumerate(g.taps()):
            add_region(dx, inps(tap), np.where(region(pick, outs(tap)) == i, region(grad, outs(tap)), 0),
                       all(t.unique for t in tap))
        return dx
