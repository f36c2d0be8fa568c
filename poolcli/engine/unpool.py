"""Max-unpooling: each value goes back to the cell its max pooling took it from; every other cell is 0.

The indices are those of ``forward --op max --indices`` (PyTorch's ``return_indices``): flat
over the spatial axes of the output plane, or in ONNX's conventions with ``--index-layout tensor`` and
``--storage-order column`` (see ``indices``). Backward gathers the gradient from those cells.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> y, idx = np.array([[6, 8]]), np.array([[5, 7]])
>>> plan = Unpool().bind(y.shape, WindowSpec(kernel=2), Params(), indices=idx)
>>> Unpool().forward(y, plan, Params())
array([[0, 0, 0, 0],
       [0, 6, 0, 8]])
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan
from poolcli.engine.geometry import axis_names, engine_shape
from poolcli.engine.indices import INDEX_LAYOUT, STORAGE_ORDER, from_layout
from poolcli.errors import GeometryError, UsageError


@dataclass(frozen=True)
class UnpoolPlan(Plan):
    sizes: tuple[int, ...] = ()  # output spatial size
    indices: np.ndarray | None = field(default=None, compare=False, repr=False)


class Unpool(Op):
    name, summary, windowed, keeps_int = "unpool", "values back at their arg-max cells (--from-indices)", False, True
    options = (Option("indices", "array", None, "from forward --indices",
                      flag="--from-indices", metavar="IDX.npy", npz_key="indices", like_input=True), INDEX_LAYOUT,
               STORAGE_ORDER)
    marks = "where each value landed"

    def bind(self, shape, spec, params, indices=None, **arrays):
        dims, sizes_in = spec.spatial(shape)
        names = axis_names(dims)
        sizes, how = spec.unpooled_sizes(sizes_in)
        for name, n in zip(names, sizes):
            if n < 1:
                raise GeometryError(f"axis {name}: unpooling to size {n}; give --output-size or the pooling's -k/-s/-p")
        out = spec.with_sizes(shape, sizes)
        rows = tuple({"axis": nm, "size": n, "out": o, "kind": "unpool", "formula": f"{h} = {o}"}
                     for nm, n, o, h in zip(names, sizes_in, sizes, how))
        if indices is not None:
            indices = np.asarray(indices)
            if indices.shape != shape:
                raise UsageError(f"the indices have shape {indices.shape} but the values {shape}; give the indices "
                                 "saved with these values (forward --op max --indices)")
            if indices.dtype.kind not in "iu":
                raise UsageError(f"the indices hold {indices.dtype} values; they must be whole numbers")
            if (params.index_layout, params.storage_order) != ("plane", "row"):  # ONNX's: read back per plane
                indices = from_layout(indices, tuple(sizes), params.index_layout, params.storage_order)
            plane = int(np.prod(sizes))
            if indices.size and (indices.min() < 0 or indices.max() >= plane):
                bad = int(indices.min() if indices.min() < 0 else indices.max())
                raise UsageError(f"index {bad} is outside the unpooled plane of {'×'.join(map(str, sizes))} = "
                                 f"{plane} cells; check -k/-s/-p or --output-size against the forward run "
                                 "(indices saved with --index-layout tensor need it here too)")
        return UnpoolPlan(shape, out, rows, dims=dims, sizes=tuple(sizes), indices=indices)

    def _planes(self, a: np.ndarray, plan: UnpoolPlan) -> np.ndarray:
        return a.reshape(-1, int(np.prod(a.shape[a.ndim - plan.dims :])))

    def _indices(self, plan: UnpoolPlan) -> np.ndarray:
        if plan.indices is None:
            raise UsageError("unpool needs the indices of the max pooling: --from-indices IDX.npy")
        return self._planes(plan.indices, plan)

    def block_plan(self, plan, lead, index):
        sub = super().block_plan(plan, lead, index)
        return sub if plan.indices is None else replace(sub, indices=plan.indices[index])

    def widens_half(self, params, backward=False, plan=None):
        return False  # both ways it only moves values

    def forward(self, x, plan, params):
        idx = self._indices(plan)
        vals = self._planes(x, plan)
        out = np.zeros((len(vals), int(np.prod(plan.sizes))), dtype=self.out_dtype(x.dtype))
        out[np.arange(len(vals))[:, None], idx] = vals
        return out.reshape(plan.engine_out)

    def backward(self, x, plan, grad, params):
        idx = self._indices(plan)
        g = self._planes(grad, plan)
        return g[np.arange(len(g))[:, None], idx].reshape(plan.in_shape)

    def picture(self, x, y, dx, plan, params, dims):
        landed = self.forward(np.ones(x.shape, dtype=np.int8), plan, params) != 0
        return Picture(x, y, dx, plan.dims, f"unpooled to {'×'.join(map(str, y.shape[y.ndim - plan.dims:]))}",
                       marked_out=landed)

    def prepare_check(self, shape, spec, params, arrays):
        """Distinct random cells of each unpooled plane, as a max pooling's indices would be."""
        if "indices" in arrays:
            return params, arrays
        dims, sizes_in = spec.spatial(shape)
        cells = int(np.prod(spec.unpooled_sizes(sizes_in)[0]))
        per_plane = int(np.prod(sizes_in))
        if per_plane > cells:
            raise UsageError("unpool: more values than cells in the unpooled plane; give --output-size")
        planes = int(np.prod(shape)) // max(per_plane, 1)
        order = np.argsort(np.random.default_rng(0).random((planes, cells)), axis=1)[:, :per_plane]
        if not spec.channels_last:
            return params, {**arrays, "indices": order.reshape(shape).astype(np.int64)}
        indices = order.reshape(engine_shape(tuple(shape), dims)).astype(np.int64)
        return params, {**arrays, "indices": np.moveaxis(indices, len(shape) - dims - 1, -1)}


__all__ = ["Params", "Unpool", "UnpoolPlan"]
