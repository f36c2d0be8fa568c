"""Index conventions of ``--indices``: where each selected cell is, as one integer.

- ``--index-layout plane`` (default, PyTorch's ``return_indices``): flat over the cell's own plane's spatial axes;
- ``--index-layout tensor`` (ONNX MaxPool's ``Indices``, darknet's ``l.indexes``): flat over the whole tensor in
  (N, C, spatial…) order: the plane's number times its cells, plus the in-plane index;
- ``--storage-order column`` (ONNX ``storage_order=1``): the in-plane index counts the spatial axes in column-major
  order (the first axis fastest).

Arrays here are in the engine's layout (planes first, spatial axes last).

>>> idx = np.array([[[[6, 2]]], [[[1, 5]]]])   # 2 planes of a 1×2 output, over 3×4 planes
>>> tensor = to_layout(idx, (3, 4), "tensor", "column")
>>> tensor.ravel().tolist()
[7, 6, 15, 16]
>>> from_layout(tensor, (3, 4), "tensor", "column").ravel().tolist()
[6, 2, 1, 5]
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import Option
from poolcli.errors import UsageError

__all__ = ["INDEX_LAYOUT", "LAYOUTS", "ORDERS", "STORAGE_ORDER", "from_layout", "to_layout"]

LAYOUTS = ("plane", "tensor")
ORDERS = ("row", "column")
INDEX_LAYOUT = Option("index_layout", "choice", "plane", "indices flat per plane (PyTorch) or over the tensor (ONNX)",
                      choices=LAYOUTS)
STORAGE_ORDER = Option("storage_order", "choice", "row", "spatial axes row- or column-major (ONNX storage_order)",
                       choices=ORDERS)


def _plane_offsets(shape: tuple[int, ...], dims: int, cells: int, first: int = 0) -> np.ndarray:
    """Each plane's number (counting from ``first``) times its cells, shaped to broadcast over an engine-layout
    array of ``shape``."""
    lead = shape[: len(shape) - dims]
    return (np.arange(first, first + int(np.prod(lead)), dtype=np.int64) * cells).reshape(lead + (1,) * dims)


def to_layout(idx: np.ndarray, sizes: tuple[int, ...], layout: str = "plane", order: str = "row",
              first: int = 0) -> np.ndarray:
    """Per-plane row-major indices (engine layout) into ``layout`` and ``order``; ``sizes`` the plane's spatial size;
    ``first`` the number of the first plane of ``idx`` in the whole tensor."""
    dims, cells = len(sizes), int(np.prod(sizes))
    out = np.asarray(idx, dtype=np.int64)
    if order == "column":
        out = np.ravel_multi_index(np.unravel_index(out, sizes), sizes, order="F").astype(np.int64)
    if layout == "tensor":
        out = out + _plane_offsets(out.shape, dims, cells, first)
    return out


def from_layout(idx: np.ndarray, sizes: tuple[int, ...], layout: str = "plane", order: str = "row") -> np.ndarray:
    """The inverse of ``to_layout``, checking that every index lies in its own plane."""
    dims, cells = len(sizes), int(np.prod(sizes))
    out = np.asarray(idx, dtype=np.int64)
    if layout == "tensor":
        out = out - _plane_offsets(out.shape, dims, cells)
    if out.size and (out.min() < 0 or out.max() >= cells):
        where = np.unravel_index(int(np.argmax((out < 0) | (out >= cells))), out.shape)
        raise UsageError(f"index {int(np.asarray(idx)[where])} at {tuple(int(i) for i in where)} is outside its plane "
                         f"of {'×'.join(map(str, sizes))} = {cells} cells (--index-layout {layout}); check "
                         "-k/-s/-p or --output-size, and --index-layout/--storage-order, against the forward run")
    if order == "column":
        out = np.ravel_multi_index(np.unravel_index(out, sizes, order="F"), sizes).astype(np.int64)
    return out
