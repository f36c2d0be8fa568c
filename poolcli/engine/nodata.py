"""No-data cells (``--nodata VALUE``, ``--skip-nan``): cells holding VALUE (or NaN) are left out of every window,
as GDAL's resampling leaves out a raster's nodata; a window with only such cells gives VALUE (NaN with
``--skip-nan`` alone), and backward sends them nothing.

>>> import numpy as np
>>> missing(np.array([1.0, -9999.0, np.nan]), Params(nodata=-9999.0, skip_nan=True)).tolist()
[False, True, True]
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import Option, Params, _finite, float_type
from poolcli.engine.geometry import Geometry
from poolcli.engine.kernels import gather_windows, separable

__all__ = ["NODATA", "SKIP_NAN", "data_counts", "data_windows", "empty_value", "gathered_missing", "missing",
           "skips_cells", "valid_count"]

NODATA = Option("nodata", float, None, "cells of value V are no data", metavar="V", check=_finite,
                need="give the raster's no-data number (use --skip-nan for NaN)")
SKIP_NAN = Option("skip_nan", bool, False, "NaN cells are no data")


def skips_cells(params: Params) -> bool:
    """Whether ``--nodata`` or ``--skip-nan`` is given (then ``missing`` gives a mask).

    >>> skips_cells(Params()), skips_cells(Params(skip_nan=True))
    (False, True)
    """
    return params.given.get("nodata") is not None or bool(params.given.get("skip_nan"))


def missing(x: np.ndarray, params: Params) -> np.ndarray | None:
    """Where ``x`` has no data (a boolean mask), or None when neither option is given."""
    if not skips_cells(params):
        return None
    nodata = params.given.get("nodata")
    skip = bool(params.given.get("skip_nan"))
    mask = np.zeros(x.shape, dtype=bool)
    if nodata is not None:
        mask |= x == nodata
    if skip and x.dtype.kind == "f":
        mask |= np.isnan(x)
    return mask


def empty_value(params: Params) -> float:
    """What a window with no data gives: --nodata's value, else NaN."""
    nodata = params.given.get("nodata")
    return float("nan") if nodata is None else float(nodata)


def valid_count(mask: np.ndarray, g: Geometry) -> np.ndarray:
    """How many cells of each window hold data (exact in float32 below 2**24 cells)."""
    return separable((~mask).astype(np.float32), g, np.add, 0)


def data_counts(mask: np.ndarray, g: Geometry, count_pad: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per window: the cells holding data, and the divisor of an average over them (plus the padded cells when
    ``count_pad``, as avg counts padding)."""
    found = valid_count(mask, g)
    return found, found + (g.counts(True) - g.counts(False) if count_pad else 0)


def gathered_missing(mask: np.ndarray, g: Geometry) -> np.ndarray:
    """The mask gathered as ``gather_windows`` gathers cells (padding marked missing too)."""
    return gather_windows(mask, g, True)[0]


def data_windows(x: np.ndarray, g: Geometry, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """Every window's cells as floats (``gather_windows``), and which hold data: not padding, not no-data (those
    are NaN among the cells, so that a sort puts them last)."""
    cells, real = gather_windows(x.astype(float_type(x.dtype), copy=False), g, np.nan)
    m = missing(x, params)
    if m is not None:  # no-data cells are no cells: left out as padding is
        real = real & ~gathered_missing(m, g)
        cells = np.where(real, cells, np.nan)
    return cells, real
