"""Mode pooling: the most frequent value of each window, for label images and segmentation masks.

Downsampling a label map with avg invents labels and max favours the largest; the mode keeps
the label most of the window holds. Equal counts go to the smallest value; padding is not a
value; NaNs count as one value. Integer and boolean dtypes are kept. It has no gradient.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> labels = np.array([[3, 3, 1, 2], [7, 3, 2, 1]])
>>> Mode().forward(labels, WindowSpec(kernel=2).bind(labels.shape), Params())
array([[3, 1]])
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import Op, Params
from poolcli.engine.kernels import gather_windows, same, scatter_windows
from poolcli.engine.nodata import NODATA, SKIP_NAN, empty_value, gathered_missing, missing

__all__ = ["Mode", "Params"]


class Mode(Op):
    name, summary = "mode", "most frequent value per window, ties to the smallest (label maps)"
    selects, differentiable, keeps_int, marks = True, False, True, "cells holding the mode"

    options = (NODATA, SKIP_NAN)

    def forward(self, x, g, params):
        cells, real = gather_windows(x, g, np.zeros((), dtype=x.dtype))
        m = missing(x, params)
        pad = np.broadcast_to(~real, cells.shape) if m is None else ~real | gathered_missing(m, g)
        order = np.lexsort((cells, pad), axis=-1)  # real cells first, each window's values ascending
        values = np.take_along_axis(cells, order, axis=-1)
        kept = ~np.take_along_axis(pad, order, axis=-1)
        equal = same(values[..., 1:], values[..., :-1])
        taps = np.arange(values.shape[-1])
        starts = np.concatenate([np.ones(equal.shape[:-1] + (1,), dtype=bool), ~equal], axis=-1)
        run = taps - np.maximum.accumulate(np.where(starts, taps, 0), axis=-1) + 1  # length of each run so far
        best = np.where(kept, run, 0).argmax(axis=-1)  # the first longest run: the smallest of the most frequent
        y = np.take_along_axis(values, best[..., None], axis=-1)[..., 0]
        if m is not None:
            y[~kept.any(axis=-1)] = empty_value(params)  # a window without data
        return y

    def selected(self, x, g, params):
        cells, real = gather_windows(x, g, np.zeros((), dtype=x.dtype))
        y = self.forward(x, g, params)[..., None]
        hit = (cells == y) | ((cells != cells) & (y != y))
        return scatter_windows((hit & real).astype(np.int64), g, x.shape) > 0
