"""Max-unpooling: each value goes back to the cell its max pooling took it from; every other cell is 0.

The indices are those of ``forward --op max --indices`` (PyTorch's ``return_indices``): flat
over the spatial axes of the output plane. Backward gathers the gradient from those cells.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> y, idx = np.array([[6, 8]]), np.array([[5, 7]])
>>> plan = Unpool().bind(y.shape, WindowSpec(kernel=2), Params(), indices=idx)
>>> Unpool().forward(y, plan, Params())
array([[0, 0, 0, 0],
       [0, 6, 0, 8]])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolcli.engine.base import Op, Params, Plan
from poolcli.engine.geometry import axis_names
from poolcli.errors import GeometryError, UsageError


@dataclass(frozen=True)
class UnpoolPlan(Plan):
    dims: int = 2
    sizes: tuple[int, ...] = ()  # output spatial size
    indices: np.ndarray | None = field(default=None, compare=False, repr=False)
    moved: bool = False  # channels-last: the channel axis goes before the spatial axes and back


def implied_size(n: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int) -> int:
    """The input size a max pooling read to give ``n`` outputs (PyTorch's max_unpool default).

    >>> implied_size(2, 2, 2, (0, 0), 1)
    4
    """
    return (n - 1) * stride - pad[0] - pad[1] + dilation * (kernel - 1) + 1


class Unpool(Op):
    name, summary, windowed, keeps_int = "unpool", "values back at their arg-max cells (--from-indices)", False, True
    arrays = ("indices",)

    def bind(self, shape, spec, params, indices=None, **arrays):
        shape = tuple(int(n) for n in shape)
        dims, sizes_in = spec.spatial(shape)
        names = axis_names(dims)
        if spec.output_size is not None:
            sizes = spec._per_axis(spec.output_size, "output_size", dims, 1)
            how = ["--output-size"] * dims
        else:
            if spec.global_pool or isinstance(spec.padding, str):
                raise UsageError("unpool cannot tell the size from --global or a padding mode; give --output-size")
            kernels = spec._per_axis(spec.kernel, "kernel", dims, 2)
            strides = tuple(s or k for s, k in zip(spec._per_axis(spec.stride, "stride", dims, 0), kernels))
            dilations = spec._per_axis(spec.dilation, "dilation", dims, 1)
            pads = spec._pads(sizes_in, kernels, strides, dilations)
            sizes = tuple(implied_size(n, k, s, p, d) for n, k, s, p, d in zip(sizes_in, kernels, strides, pads,
                                                                             dilations))
            how = [f"({n} - 1)·{s} - {p[0]} - {p[1]} + {d}·({k}-1) + 1"
                   for n, k, s, p, d in zip(sizes_in, kernels, strides, pads, dilations)]
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
            plane = int(np.prod(sizes))
            if indices.size and (indices.min() < 0 or indices.max() >= plane):
                bad = int(indices.min() if indices.min() < 0 else indices.max())
                raise UsageError(f"index {bad} is outside the unpooled plane of {'×'.join(map(str, sizes))} = "
                                 f"{plane} cells; check -k/-s/-p or --output-size against the forward run")
        return UnpoolPlan(shape, out, rows, dims=dims, sizes=tuple(sizes), indices=indices, moved=spec.channels_last)

    def _planes(self, a: np.ndarray, plan: UnpoolPlan) -> np.ndarray:
        if plan.moved:
            a = np.moveaxis(a, -1, a.ndim - plan.dims - 1)
        return a.reshape(-1, int(np.prod(a.shape[a.ndim - plan.dims :])))

    def _back(self, flat: np.ndarray, plan: UnpoolPlan, like: tuple[int, ...]) -> np.ndarray:
        a = flat.reshape(like)
        return np.moveaxis(a, a.ndim - plan.dims - 1, -1) if plan.moved else a

    def _indices(self, plan: UnpoolPlan) -> np.ndarray:
        if plan.indices is None:
            raise UsageError("unpool needs the indices of the max pooling: --from-indices IDX.npy")
        return self._planes(plan.indices, plan)

    def _engine_shape(self, shape: tuple[int, ...], plan: UnpoolPlan) -> tuple[int, ...]:
        if plan.moved:
            d = plan.dims
            return shape[: len(shape) - d - 1] + shape[-1:] + shape[len(shape) - d - 1 : -1]
        return shape

    def forward(self, x, plan, params):
        idx = self._indices(plan)
        vals = self._planes(x, plan)
        out = np.zeros((len(vals), int(np.prod(plan.sizes))), dtype=self.out_dtype(x.dtype))
        out[np.arange(len(vals))[:, None], idx] = vals
        return self._back(out, plan, self._engine_shape(plan.out_shape, plan))

    def backward(self, x, plan, grad, params):
        idx = self._indices(plan)
        g = self._planes(grad, plan)
        dx = g[np.arange(len(g))[:, None], idx]
        return self._back(dx, plan, self._engine_shape(plan.in_shape, plan))


__all__ = ["Params", "Unpool", "UnpoolPlan", "implied_size"]
