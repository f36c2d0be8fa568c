"""Spatial pyramid pooling (He et al. 2014): adaptive pools at several ``--levels`` concatenated into one
fixed-length vector per sample, whatever the input's spatial size.

An input (N, C, H, W) gives (N, C·Σ l²) (``l^d`` in d dims): for each level, the (N, C, l, l) adaptive pool
flattened per sample, levels one after another, as the paper's and most implementations' ``torch.cat``.
The channel axis is the one before the spatial axes (the last with ``--channels-last``); an input with
no channel axis gives a vector of Σ l^d.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> p = Params(levels=(1, 2))
>>> SPP().forward(x, SPP().bind(x.shape, WindowSpec(), p), p).tolist()
[[15.0, 5.0, 7.0, 13.0, 15.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan
from poolcli.engine.geometry import Geometry, WindowSpec
from poolcli.engine.ops import Avg, Max
from poolcli.errors import UsageError

__all__ = ["SPP", "Params", "PyramidPlan"]

REDUCE = {"max": Max(), "avg": Avg()}


@dataclass(frozen=True)
class PyramidPlan(Plan):
    levels: tuple[Geometry, ...] = ()  # one adaptive pooling per level, over (lead…, C, spatial…)
    channels: bool = True  # the input has a channel axis (else one is added and taken away)


def _levels(v: tuple[float, ...]) -> bool:
    return bool(v) and all(float(n).is_integer() and 1 <= n <= 4096 for n in v)


class SPP(Op):
    name, summary, windowed = "spp", "spatial pyramid: adaptive pools at --levels, concatenated per sample", False
    options = (Option("levels", "floats", (1.0, 2.0, 4.0), "pyramid levels", metavar="L[,L…]", check=_levels,
                      need="give whole numbers of 1 or more, such as 1,2,4"),
               Option("reduce", "choice", "max", "the pool of each level", choices=tuple(REDUCE)))

    def bind(self, shape, spec, params, **arrays):
        shape = tuple(int(n) for n in shape)
        if spec.kernel is not None or spec.stride is not None or spec.output_size is not None or spec.global_pool:
            raise UsageError("spp pools each level adaptively; give --levels, not -k/-s/--output-size/--global")
        dims = self.spatial(shape, spec, params)
        channels = len(shape) > dims
        full = shape if channels else (1, *shape)
        levels = tuple(WindowSpec(output_size=int(n), dims=dims).bind(full) for n in self.value(params, "levels"))
        cells = sum(int(np.prod(g.out_spatial)) for g in levels)
        out = full[: len(full) - dims - 1] + (full[-dims - 1] * cells,)
        rows = tuple({"axis": f"level {int(n)}", "size": "×".join(map(str, full[-dims:])), "out": int(n) ** dims,
                      "kind": "spp", "formula": f"adaptive {self.value(params, 'reduce')} to "
                      f"{'×'.join([str(int(n))] * dims)} = {int(n) ** dims} per channel"}
                     for n in self.value(params, "levels"))
        total = {"axis": "vector", "size": full[-dims - 1], "out": out[-1], "kind": "spp",
                 "formula": f"{full[-dims - 1]} channels · {cells} cells = {out[-1]}"}
        return PyramidPlan(shape, out, (*rows, total), dims=dims, moves_output=False,
                           levels=levels, channels=channels)

    def independent_axes(self, plan):
        return tuple(range(len(plan.in_shape) - plan.dims - 1))

    def block_plan(self, plan, lead, index):
        k = len(lead)
        levels = tuple(replace(g, lead=lead + g.lead[k:]) for g in plan.levels)
        return replace(plan, in_shape=lead + tuple(plan.in_shape[k:]), out_shape=lead + tuple(plan.out_shape[k:]),
                       channels_last=False, levels=levels)

    def _pool(self, params: Params) -> Op:
        return REDUCE[self.value(params, "reduce")]

    def forward(self, x, plan, params):
        full = x if plan.channels else x[None]
        pool = self._pool(params)
        lead, c = full.shape[: full.ndim - plan.dims - 1], full.shape[full.ndim - plan.dims - 1]
        parts = [pool.forward(full, g, params).reshape(lead + (c * int(np.prod(g.out_spatial)),))
                 for g in plan.levels]
        return np.concatenate(parts, axis=-1).astype(pool.out_dtype(x.dtype), copy=False)

    def backward(self, x, plan, grad, params):
        full = x if plan.channels else x[None]
        pool, dx, at = self._pool(params), None, 0
        for g in plan.levels:
            n = int(np.prod(g.out_shape[len(g.out_shape) - plan.dims - 1:]))
            part = grad[..., at: at + n].reshape(g.out_shape)
            at += n
            d = pool.backward(full, g, np.ascontiguousarray(part), params)
            dx = d if dx is None else dx + d
        return dx if plan.channels else dx[0]

    def picture(self, x, y, dx, plan, params, dims):
        """Each plane's own pyramid cells as one row beside it (levels one after another)."""
        lead = x.shape[: x.ndim - plan.dims]
        sizes = [int(np.prod(g.out_spatial)) for g in plan.levels]
        pieces = np.split(y, np.cumsum([n * (lead[-1] if lead else 1) for n in sizes])[:-1], axis=-1)
        per_channel = np.concatenate([p.reshape(lead + (n,)) for p, n in zip(pieces, sizes)], axis=-1)
        channel_cells = per_channel.reshape(lead + (1,) * (plan.dims - 1) + (-1,))
        levels = "+".join(f"{g.out_spatial[0]}^{plan.dims}" for g in plan.levels) if plan.dims > 1 else \
            "+".join(str(g.out_spatial[0]) for g in plan.levels)
        return Picture(x, channel_cells, dx, plan.dims,
                       f"{self.value(params, 'reduce')} pyramid, {levels} cells per channel")
