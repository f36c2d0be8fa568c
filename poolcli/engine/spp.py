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

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan
from poolcli.engine.geometry import Geometry, WindowSpec
from poolcli.engine.half import to_float32
from poolcli.engine.kernels import (
    MAX_BANDS,
    band_picks,
    cells_at,
    empty_as,
    fortran_planes,
    gradient_at,
    result_target,
    same,
    window_slices,
)
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


@functools.lru_cache(maxsize=64)
def unions(fine: Geometry, coarse: Geometry) -> tuple[tuple[tuple[int, int], ...], ...] | None:
    """Along each spatial axis, the run ``(first, end)`` of ``fine``'s windows whose union is each window of
    ``coarse``; None where some coarse window is no such union.

    >>> g = lambda n: WindowSpec(output_size=n).bind((1, 8, 8))
    >>> unions(g(4), g(2))
    (((0, 2), (2, 4)), ((0, 2), (2, 4)))
    >>> unions(g(3), g(2)) is None
    True
    """
    runs = []
    for f, c in zip(fine.axes, coarse.axes):
        fb, cb = window_slices(f), window_slices(c)
        if fb is None or cb is None:
            return None
        axis = []
        for w in cb:
            inside = [j for j, b in enumerate(fb) if w.start <= b.start and b.stop <= w.stop]
            reached = w.start
            for j in inside:  # the windows in order of their starts: no gap between them
                if fb[j].start > reached:
                    return None
                reached = max(reached, fb[j].stop)
            if not inside or reached != w.stop:
                return None
            axis.append((inside[0], inside[-1] + 1))
        runs.append(tuple(axis))
    return tuple(runs)  # (kept by the cache: not to be changed)


def gathered(y: np.ndarray, runs: tuple[tuple[tuple[int, int], ...], ...], ufunc: np.ufunc) -> np.ndarray:
    """The pooled values ``y`` (spatial axes last) reduced with ``ufunc`` over the runs of windows ``unions``
    gives, one axis at a time.

    >>> gathered(np.arange(16).reshape(4, 4), (((0, 2), (2, 4)), ((0, 4),)), np.maximum).tolist()
    [[7], [15]]
    """
    for d, axis in enumerate(runs):
        at = y.ndim - len(runs) + d
        starts = [a for a, _ in axis]
        if all(b == c for (_, b), c in zip(axis, [*starts[1:], y.shape[at]])):  # one after another: one call
            y = ufunc.reduceat(y, starts, axis=at)
        else:
            y = np.stack([ufunc.reduce(y[(slice(None),) * at + (slice(a, b),)], axis=at) for a, b in axis], axis=at)
    return y


def finest_first(levels: tuple[Geometry, ...]) -> Iterator[tuple[int, tuple[int, tuple] | None]]:
    """Each level's number, finest first, with the finer level (of those before it, the one with fewest windows)
    whose windows' unions are its windows and those runs (``unions``), or None.

    >>> g = lambda n: WindowSpec(output_size=n).bind((1, 8, 8))
    >>> [(i, None if f is None else f[0]) for i, f in finest_first((g(1), g(2), g(4)))]
    [(2, None), (1, 2), (0, 1)]
    """
    done: list[int] = []
    for i in sorted(range(len(levels)), key=lambda i: -math.prod(levels[i].out_spatial)):
        finer = [(j, runs) for j in done if (runs := unions(levels[j], levels[i])) is not None]
        yield i, min(finer, key=lambda f: math.prod(levels[f[0]].out_spatial)) if finer else None
        done.append(i)


def _max_backward(full: np.ndarray, plan: PyramidPlan, grad: np.ndarray) -> np.ndarray:
    """Max pyramid backward: each level's window picks its first largest cell, a level nested in a finer one
    from that level's picks (of the finer windows holding its value, the first pick); every level's gradient
    then added at once, level after level as the sum of the levels' own backward would. ``full`` is read in
    its own memory order and the gradient written in it (or into the caller's output)."""
    given, dtype = full, grad.dtype  # the gradient: laid out as the input, in the gradient's dtype
    if full.flags.f_contiguous and not full.flags.c_contiguous:  # planes innermost: each window's cells are
        full = fortran_planes(full, full.ndim - plan.dims)  # far apart, brought together (cells reversed)
    if full.dtype == np.float16:  # picked in float32; the gradient summed in float32, each cell rounded once
        full, grad = to_float32(full), grad.astype(np.float32)
    planes = math.prod(full.shape[: full.ndim - plan.dims])
    picks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # level: (values, flat cell) per plane and window
    for i, finer in finest_first(plan.levels):
        if finer is not None:
            j, runs = finer
            picks[i] = _first_of(*picks[j], plan.levels[j].out_spatial, runs)
        else:
            where = band_picks(full, [window_slices(a) for a in plan.levels[i].axes], np.argmax)
            run, at = cells_at(full, plan.dims, where)
            picks[i] = run[at], where
    where = np.concatenate([picks[i][1] for i in range(len(plan.levels))], axis=1)
    ends = np.cumsum([0] + [int(np.prod(g.out_shape[len(g.out_shape) - plan.dims - 1:])) for g in plan.levels])
    shares = np.concatenate([grad[..., a:b].reshape(planes, -1) for a, b in itertools.pairwise(ends)], axis=1)
    out = result_target(full.shape, dtype)
    if out is None:
        out = empty_as(given, full.shape, dtype, np.zeros)
    else:
        out[...] = 0
    return gradient_at(where, shares, (planes, *full.shape[full.ndim - plan.dims:]), out)


def _first_of(values: np.ndarray, where: np.ndarray, fine: tuple[int, ...],
              runs: tuple[tuple[tuple[int, int], ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """A coarser level's picks from a finer one's ``(values, where)`` (per plane, its windows ``fine`` in
    row-major order): each coarse window's largest value (NaN first) and, of the fine windows holding it,
    the first cell picked."""
    values, where = values.reshape((len(values), *fine)), where.reshape((len(where), *fine))
    top, first = [], []
    for spans in itertools.product(*runs):
        inside = (slice(None), *(slice(a, b) for a, b in spans))
        v, w = values[inside].reshape(len(values), -1), where[inside].reshape(len(where), -1)
        best = np.maximum.reduce(v, axis=1)
        top.append(best)
        first.append(np.where(same(v, best[:, None]), w, np.iinfo(w.dtype).max).min(axis=1))
    return np.stack(top, axis=1), np.stack(first, axis=1)


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

    def side_by_side(self, plan):
        return len(plan.in_shape) - plan.dims  # the samples and channels

    def reads_strided(self, plan, params):  # max: its finest level reads the input once, in any memory order
        return isinstance(self._pool(params), Max)  # (avg pools every level from the input: slower in place)

    def backward_reads_strided(self, plan, params):  # max over slices: the picks and the gradient in any order
        return self._max_pyramid(plan, params)

    def widens_half(self, params, backward=False, plan=None):  # the max pyramid rounds each cell it reaches
        return not (backward and plan is not None and self._max_pyramid(plan, params))

    def _max_pyramid(self, plan: PyramidPlan, params: Params) -> bool:
        """Whether the backward is ``_max_backward``: max, every level's windows slices, few enough of them."""
        return isinstance(self._pool(params), Max) and all(
            window_slices(a) is not None for g in plan.levels for a in g.axes) and max(
            int(np.prod(g.out_spatial)) for g in plan.levels) <= MAX_BANDS

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
        pooled: dict[int, np.ndarray] = {}
        # finest first: with max, a level whose every window is a union of a finer level's windows is pooled
        # from that level's few values (1 and 2 from 4 of 1,2,4), not from the input again
        for i, finer in finest_first(plan.levels):
            if finer is not None and isinstance(pool, Max):
                j, runs = finer
                pooled[i] = gathered(pooled[j], runs, pool.ufunc)
            else:
                pooled[i] = pool.forward(full, plan.levels[i], params)
        parts = [pooled[i].reshape(lead + (c * int(np.prod(g.out_spatial)),)) for i, g in enumerate(plan.levels)]
        return np.concatenate(parts, axis=-1).astype(pool.out_dtype(x.dtype), copy=False)

    def backward(self, x, plan, grad, params):
        full = x if plan.channels else x[None]
        pool, dx, at = self._pool(params), None, 0
        if self._max_pyramid(plan, params):
            dx = _max_backward(full, plan, grad)
            return dx if plan.channels else dx[0]
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
