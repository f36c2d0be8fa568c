"""Median pooling: the median of each window, as ``skimage.measure.block_reduce(x, k, np.median)``.

Padding is not a value: a window at the edge takes the median of its real cells. NaN propagates.
An even count of cells gives the mean of the two middle values (NumPy's median), so backward
sends half the gradient to each of the two middle cells; equal values share as ``--ties`` says,
as for max.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.array([[1, 9, 2, 2], [5, 3, 7, 1]])
>>> g = WindowSpec(kernel=2).bind(x.shape)
>>> Median().forward(x, g, Params())
array([[4., 2.]])
>>> Median().backward(x.astype(float), g, np.ones((1, 2)), Params(ties="split"))
array([[0. , 0. , 0.5, 0.5],
       [0.5, 0.5, 0. , 0. ]])
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import Op, Params
from poolcli.engine.kernels import finite, pick_first, scatter_windows, share_of
from poolcli.engine.nodata import NODATA, SKIP_NAN, data_windows, empty_value, skips_cells

__all__ = ["Median", "Params"]


class Median(Op):
    name, summary = "median", "median per window (NaN propagates; even counts: the mean of the middle two)"
    selects, ties, marks = True, True, "median cell"
    options = (NODATA, SKIP_NAN)

    def _middle(self, x: np.ndarray, g, params: Params) -> tuple[np.ndarray, ...]:
        """The windows' cells, which are real (not padding, not no-data), the two middle values and whether a
        window holds NaN."""
        cells, real = data_windows(x, g, params)
        n = real.sum(axis=-1)
        ordered = np.sort(cells, axis=-1)  # padding (NaN) last; a real NaN makes the median NaN anyway
        shape = ordered.shape[:-1] + (1,)
        lo = np.take_along_axis(ordered, np.broadcast_to(((n - 1) // 2)[..., None], shape), axis=-1)[..., 0]
        hi = np.take_along_axis(ordered, np.broadcast_to((n // 2)[..., None], shape), axis=-1)[..., 0]
        nan = (np.isnan(cells) & real).any(axis=-1)
        return cells, real, lo, hi, nan

    def forward(self, x, g, params):
        _, real, lo, hi, nan = self._middle(x, g, params)
        y = lo + (hi - lo) / 2
        y[nan] = np.nan
        if skips_cells(params):
            y[np.broadcast_to(~real.any(axis=-1), y.shape)] = empty_value(params)
        return y

    def backward(self, x, g, grad, params):
        cells, real, lo, hi, nan = self._middle(x, g, params)
        picked = np.isnan(cells) & real & nan[..., None]  # a NaN window: its NaN cells, as max does
        low = np.where(nan[..., None], picked, cells == lo[..., None])
        high = np.where(nan[..., None], picked, cells == hi[..., None])
        share = (pick_first(low, params.ties) + pick_first(high, params.ties)) / 2
        return scatter_windows(share_of(share, grad[..., None], not finite(grad)).astype(grad.dtype, copy=False), g,
                               x.shape)
