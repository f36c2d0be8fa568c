"""Quantile pooling: the ``--q`` quantile of each window's real cells, NumPy's default (linear) method, a
generalisation of median pooling (``--q 0.5``) towards max (1) and min (0).

The virtual index ``n·q + (1 - q) - 1`` (NumPy's formula for the linear method) falls between two sorted
cells, whose values are interpolated as ``numpy.quantile`` does; backward sends ``1 - γ`` of the gradient to the
lower cell and ``γ`` to the upper (equal values share by ``--ties``). NaN propagates.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.array([[1.0, 9.0, 2.0, 4.0]])
>>> Quantile().forward(x, WindowSpec(kernel=(1, 4)).bind(x.shape), Params(q=0.75)).tolist()
[[5.25]]
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import Op, Option, Params, _finite
from poolcli.engine.kernels import finite, pick_first, same, scatter_windows, share_of
from poolcli.engine.nodata import NODATA, SKIP_NAN, data_windows, empty_value, skips_cells

__all__ = ["Params", "Quantile"]


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """NumPy's ``_lerp``: from ``a`` below t = 0.5 and from ``b`` above, for the exact ends."""
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


class Quantile(Op):
    name, summary = "quantile", "the --q quantile per window (NumPy's linear method)"
    options = (Option("q", float, 0.5, "which quantile", check=lambda v: _finite(v) and 0 <= v <= 1,
                      need="the quantile must be between 0 and 1"), NODATA, SKIP_NAN)
    ties, marks = True, "quantile cell"

    def _parts(self, x: np.ndarray, g, params: Params):
        """The windows' cells, which are real, the two sorted values around the virtual index, its fraction and
        whether a window holds NaN."""
        cells, real = data_windows(x, g, params)
        n = real.sum(axis=-1)
        q = float(self.value(params, "q"))
        virtual = n * q + (1 + q * (1 - 1 - 1)) - 1  # NumPy's _compute_virtual_index for alpha = beta = 1
        below = np.floor(virtual)
        gamma = virtual - below
        lo_at = np.clip(below.astype(np.int64), 0, np.maximum(n - 1, 0))
        hi_at = np.clip(below.astype(np.int64) + 1, 0, np.maximum(n - 1, 0))
        ordered = np.sort(cells, axis=-1)  # padding (NaN) last; a real NaN makes the result NaN anyway
        shape = ordered.shape[:-1] + (1,)
        lo = np.take_along_axis(ordered, np.broadcast_to(lo_at[..., None], shape), axis=-1)[..., 0]
        hi = np.take_along_axis(ordered, np.broadcast_to(hi_at[..., None], shape), axis=-1)[..., 0]
        nan = (np.isnan(cells) & real).any(axis=-1)
        return cells, real, lo, hi, np.broadcast_to(gamma.astype(cells.dtype), lo.shape), nan

    def forward(self, x, g, params):
        _, real, lo, hi, gamma, nan = self._parts(x, g, params)
        y = _lerp(lo, hi, gamma)
        y[nan] = np.nan
        if skips_cells(params):
            y[np.broadcast_to(~real.any(axis=-1), y.shape)] = empty_value(params)
        return y

    def backward(self, x, g, grad, params):
        cells, real, lo, hi, gamma, nan = self._parts(x, g, params)
        picked = np.isnan(cells) & real & nan[..., None]  # a NaN window: its NaN cells, as max does
        low = np.where(nan[..., None], picked, same(cells, lo[..., None], False) & real)
        high = np.where(nan[..., None], picked, same(cells, hi[..., None], False) & real)
        g0 = np.where(nan, 0.5, 1 - gamma)[..., None]
        g1 = np.where(nan, 0.5, gamma)[..., None]
        share = pick_first(low, params.ties) * g0 + pick_first(high, params.ties) * g1
        return scatter_windows(share_of(share, grad[..., None], not finite(grad)).astype(grad.dtype, copy=False), g,
                               x.shape)
