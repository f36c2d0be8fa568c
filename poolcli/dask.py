"""Pooling Dask arrays: the engine on every chunk, scheduled by Dask (``pip install "poolcli[dask]"``).

``forward`` and ``backward`` take the arguments of ``poolcli.forward`` and ``poolcli.backward``, with Dask
arrays in and out. A spatial axis cut into chunks is rechunked so that each chunk begins where the first
window of an output chunk begins; each chunk then gets, from its neighbours, the cells its windows reach
past it (``dask.array.overlap``; none where windows tile) and is pooled by the engine with the windows,
padding and counts of its own part of the whole, so every value equals the in-memory engine's. Axes that
each output reads whole (adaptive and global windows, the non-batch axes of operators without windows)
are gathered into one chunk; the batch and channel axes keep their chunks.

>>> import dask.array as da
>>> a = np.arange(64.0).reshape(8, 8)
>>> y = forward(da.from_array(a, chunks=3), "max", kernel=3, stride=2, padding=1)
>>> y.chunks, bool((y.compute() == poolcli.forward(a, kernel=3, stride=2, padding=1)).all())
(((2, 2), (2, 2)), True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np

import poolcli
from poolcli.engine import Geometry, Op, bind, get_op, leading_independent, run_backward, run_forward, run_indices
from poolcli.engine.geometry import Axis
from poolcli.errors import UsageError

__all__ = ["backward", "forward"]


@dataclasses.dataclass(frozen=True)
class Cut:
    """One spatial axis cut into chunks: output chunk ``j`` is outputs ``outs[j]:outs[j+1]``, whose windows begin
    in input chunk ``j``, cells ``cells[j]:cells[j+1]``."""

    position: int  # the axis in the caller's array
    axis: Axis
    outs: tuple[int, ...]
    cells: tuple[int, ...]

    @property
    def reach(self) -> int:
        """Cells a chunk's last window reads past the chunk's end."""
        return max(0, self.axis.span - self.axis.stride)

    @property
    def behind(self) -> int:
        """Outputs of the chunk before whose windows reach into a chunk."""
        return -(-self.reach // self.axis.stride)

    def piece(self, j: int, first_out: int, start: int, length: int) -> Axis:
        """The windows of outputs ``first_out:outs[j+1]`` over cells ``start:start+length``, as an Axis of its own:
        the whole's begin padding in the first chunk, its end padding and ceil in the last."""
        a = self.axis
        offset = first_out * a.stride - a.pad[0] - start  # where the first window begins in the piece
        last = start + length == a.size
        sub = Axis(length, a.kernel, a.stride, a.dilation, (max(0, -offset), a.pad[1] if last else 0),
                   a.ceil and last, a.name, a.kind)
        assert offset <= 0 and sub.out >= self.outs[j + 1] - first_out, (self, j, sub)
        return sub


def cuts(chunks: tuple[tuple[int, ...], ...], g: Geometry, positions: list[int]) -> list[Cut | None]:
    """For each spatial axis, how its chunks are cut (None: the axis is pooled as one chunk).

    >>> g = poolcli.geometry((10,), kernel=3, stride=2, padding=1, dims=1)
    >>> cuts(((4, 4, 2),), g, [0])[0].cells
    (0, 3, 10)
    """
    found: list[Cut | None] = []
    for position, axis in zip(positions, g.axes):
        sizes = chunks[position]
        if len(sizes) == 1 or not isinstance(axis, Axis) or axis.kind != "window":
            found.append(None)
            continue
        s, p = axis.stride, axis.pad[0]
        reach = max(0, axis.span - s)
        behind = -(-reach // s)
        # outputs a chunk: about the chunk's cells, and enough that no halo is longer than a chunk
        want = max(-(-max(sizes) // s), behind + -(-(p + 1) // s), -(-reach // s), 1)
        outs = list(range(0, axis.out, want)) + [axis.out]
        if len(outs) > 2 and outs[-1] - outs[-2] < want:
            outs.pop(-2)  # a short last chunk joins the one before
        while len(outs) > 2 and axis.size + axis.pad[1] - (outs[-2] * s - p) < axis.span:
            outs.pop(-2)  # the last chunk holds a whole window (under ceil one may run past the padded end)
        if len(outs) == 2:
            found.append(None)
            continue
        cells = (0, *(o * s - p for o in outs[1:-1]), axis.size)
        found.append(Cut(position, axis, tuple(outs), cells))
    return found


def _positions(ndim: int, g: Geometry) -> list[int]:
    """The spatial axes in the caller's layout."""
    end = ndim - 1 if g.channels_last and g.lead else ndim
    return list(range(end - g.dims, end))


def _lead(shape: tuple[int, ...], g: Geometry) -> tuple[int, ...]:
    """The engine-layout lead of a block of the caller's layout."""
    if g.channels_last and g.lead:
        return tuple(shape[: len(shape) - g.dims - 1]) + (shape[-1],)
    return tuple(shape[: len(shape) - g.dims])


def _bind(x: da.Array, op: str, options: dict[str, Any], arrays: dict[str, Any]) -> tuple[Any, Any, Any]:
    unsupported = [name for name in poolcli.ARRAY_OPTIONS
                   if options.get(name) is not None and poolcli._is_array(name, op)]
    if unsupported:  # weights and samples are per channel or plane: cut with the chunks, they are not yet
        raise UsageError(f"{', '.join(unsupported)}= has no Dask form yet; use poolcli.forward/backward on NumPy "
                         "arrays (an .npy input and output stream just as well)")
    spec, params = poolcli._split(options, op)
    with poolcli._python_words():
        plan = bind(op, x.shape, spec, params, **{k: _stand_in(v) for k, v in arrays.items()})
    return spec, params, plan


def _stand_in(a: Any) -> np.ndarray:
    """A NumPy array of ``a``'s shape and dtype taking no memory: binding reads the shapes of extra arrays."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype=a.dtype), np.shape(a), (0,) * len(np.shape(a)))


def _windowed_layout(x: da.Array, g: Geometry) -> tuple[da.Array, list[int], list[Cut | None]]:
    """``x`` rechunked for pooling with ``g``: whole axes gathered, cut axes cut at window starts."""
    positions = _positions(x.ndim, g)
    x = x.rechunk({p: -1 for p, a in zip(positions, g.axes) if not isinstance(a, Axis) or a.kind != "window"})
    found = cuts(x.chunks, g, positions)
    x = x.rechunk({p: -1 if c is None else tuple(np.diff(c.cells)) for p, c in zip(positions, found)})
    return x, positions, found


def _chunkable(op: str) -> Op:
    """The operator, if its result does not depend on where a chunk lies (random windows do)."""
    pool = get_op(op)
    if pool.random:
        raise UsageError(f"--op {pool.name} draws a random number per window from its place in the whole input; "
                         "run it without Dask (an .npy input and output stream just as well)")
    return pool


def forward(x: Any, op: str = "max", *, return_indices: bool = False, indices: Any = None, other: Any = None,
            **options: Any) -> Any:
    """``poolcli.forward`` on a Dask array: a Dask array (and, with ``return_indices``, the indices), lazily."""
    x = da.asarray(x)
    arrays = {k: v for k, v in (("indices", indices), ("other", other)) if v is not None}
    spec, params, plan = _bind(x, op, options, arrays)
    pool = _chunkable(op)
    if not isinstance(plan, Geometry):
        if return_indices:
            raise UsageError(f"return_indices goes with --op max or min, not {op}")
        return _whole(pool, plan, x, None, arrays, lambda b, gb, extra: poolcli.forward(
            b, op, spec=spec, threads=1, **params.given, **extra))
    g = plan
    x, positions, found = _windowed_layout(x, g)
    depth = {c.position: (0, c.reach) for c in found if c is not None and c.reach}
    xo = da.overlap.overlap(x, depth=depth, boundary="none") if depth else x
    chunks = list(x.chunks)
    for position, axis, cut in zip(positions, g.axes, found):
        chunks[position] = (axis.out,) if cut is None else tuple(np.diff(cut.outs))

    def piece(block: np.ndarray, block_info: dict | None = None) -> Any:
        where = block_info[0]["chunk-location"]
        axes, offsets, keep = [], [], [slice(None)] * block.ndim
        for position, axis, cut in zip(positions, g.axes, found):
            if cut is None:
                axes.append(axis)
                offsets.append(0)
                continue
            j = where[position]
            axes.append(cut.piece(j, cut.outs[j], cut.cells[j], block.shape[position]))
            offsets.append(cut.cells[j])
            keep[position] = slice(0, cut.outs[j + 1] - cut.outs[j])
        sub = dataclasses.replace(g, lead=_lead(block.shape, g), axes=tuple(axes))
        if not return_indices:
            return run_forward(block, sub, op, params, threads=1)[tuple(keep)]
        idx = run_indices(block, sub, op, threads=1)[1][tuple(keep)]
        flat = np.unravel_index(idx, tuple(a.size for a in axes))
        return np.ravel_multi_index(tuple(c + o for c, o in zip(flat, offsets)), tuple(a.size for a in g.axes))

    one = _one(g, x.dtype)
    dtype = run_forward(one[0], one[1], op, params, threads=1).dtype
    if return_indices:  # the values and the indices, each its own map (the indices shifted to the whole plane)
        values = forward(x, op, **options)
        return values, da.map_blocks(piece, xo, chunks=tuple(chunks), dtype=np.int64)
    return da.map_blocks(piece, xo, chunks=tuple(chunks), dtype=dtype)


def _one(g: Geometry, dtype: np.dtype) -> tuple[np.ndarray, Geometry]:
    """A one-plane input and its geometry (for the result's dtype)."""
    one = dataclasses.replace(g, lead=(1,) * len(g.lead), channels_last=False)
    return np.zeros(one.in_shape, dtype=dtype), one


def _independent(pool: Op, plan: Any, ndim: int) -> int:
    """How many leading axes (of the caller's layout) an operator without windows pools each on its own."""
    keep = leading_independent(pool, plan)
    if getattr(plan, "channels_last", False):  # the channels come last in the caller's layout
        keep = min(keep, ndim - plan.dims - 1)
    return keep


def _whole(pool: Op, plan: Any, x: da.Array, grad: da.Array | None, arrays: dict[str, Any],
           fn: Callable[[np.ndarray, np.ndarray | None, dict[str, np.ndarray]], np.ndarray]) -> da.Array:
    """An operator without windows: every axis after its leading independent ones gathered into one chunk."""
    keep = _independent(pool, plan, x.ndim)
    x = x.rechunk({i: -1 for i in range(keep, x.ndim)})

    def like_x(a: Any) -> da.Array:
        a = da.asarray(a)
        return a.rechunk(x.chunks[:keep] + tuple((n,) for n in a.shape[keep:]))

    names = list(arrays)
    extra = [like_x(a) for a in arrays.values()]
    if grad is not None:
        fewer = x.ndim - grad.ndim  # bilinear's gradient has fewer axes: trailing ones of size 1 pair it with x
        grad = like_x(grad)[(..., *(None,) * fewer)] if fewer > 0 else like_x(grad)
        return da.map_blocks(lambda b, gb, *rest: fn(b, gb.reshape(gb.shape[: gb.ndim - fewer]),
                                                     dict(zip(names, rest))),
                             x, grad, *extra, chunks=x.chunks, dtype=_gradient_dtype(x.dtype))
    out = plan.out_shape
    chunks = x.chunks[:keep] + tuple((n,) for n in out[keep:])
    probe = fn(np.zeros((1,) * keep + x.shape[keep:], dtype=x.dtype), None,
               {k: _stand_in(np.empty((1,) * keep + a.shape[keep:], dtype=a.dtype)) for k, a in zip(names, extra)})
    drop = list(range(len(out), x.ndim)) if len(out) < x.ndim else []
    return da.map_blocks(lambda b, *rest: fn(b, None, dict(zip(names, rest))), x, *extra, chunks=chunks,
                         dtype=probe.dtype, drop_axis=drop)


def _gradient_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype) if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def backward(x: Any, grad: Any = None, op: str = "max", *, indices: Any = None, other: Any = None,
             **options: Any) -> da.Array:
    """``poolcli.backward`` on Dask arrays: the gradient with respect to ``x``, lazily (``grad`` defaults to ones)."""
    x = da.asarray(x)
    if other is not None:
        raise UsageError("bilinear with other= has no Dask backward; use poolcli.backward on NumPy arrays")
    arrays = {k: v for k, v in (("indices", indices),) if v is not None}
    spec, params, plan = _bind(x, op, options, arrays)
    pool = _chunkable(op)
    if not pool.differentiable:
        raise UsageError(f"--op {pool.name} has no gradient ({pool.summary})")
    shape = tuple(plan.out_shape)
    grad = da.ones(shape, dtype=_gradient_dtype(x.dtype), chunks=-1) if grad is None else da.asarray(grad)
    if grad.shape != shape:
        raise UsageError(f"the gradient has shape {grad.shape} but this pooling outputs {shape}")
    if not isinstance(plan, Geometry):
        return _whole(pool, plan, x, grad, arrays, lambda b, gb, extra: poolcli.backward(
            b, gb, op, spec=spec, threads=1, **params.given, **extra))
    g = plan
    x, positions, found = _windowed_layout(x, g)
    grad = grad.rechunk({**{i: x.chunks[i] for i in range(x.ndim) if i not in positions},
                         **{p: (a.out,) if c is None else tuple(np.diff(c.outs))
                            for p, a, c in zip(positions, g.axes, found)}})
    x_depth = {c.position: (c.behind * c.axis.stride, c.reach) for c in found if c is not None and c.reach}
    g_depth = {c.position: (c.behind, 0) for c in found if c is not None and c.behind}
    xo = da.overlap.overlap(x, depth=x_depth, boundary="none") if x_depth else x
    go = da.overlap.overlap(grad, depth=g_depth, boundary="none") if g_depth else grad

    def piece(block: np.ndarray, gblock: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        where = block_info[0]["chunk-location"]
        axes, core = [], [slice(None)] * block.ndim
        for position, axis, cut in zip(positions, g.axes, found):
            if cut is None:
                axes.append(axis)
                continue
            j = where[position]
            first_out = cut.outs[j] - cut.behind if j else 0
            start = first_out * axis.stride - axis.pad[0] if j else 0  # where that output's window begins
            axes.append(cut.piece(j, first_out, start, block.shape[position]))
            core[position] = slice(cut.cells[j] - start, cut.cells[j + 1] - start)
        sub = dataclasses.replace(g, lead=_lead(block.shape, g), axes=tuple(axes))
        return run_backward(block, sub, gblock, op, params, threads=1)[tuple(core)]

    return da.map_blocks(piece, xo, go, chunks=x.chunks, dtype=_gradient_dtype(x.dtype))
