"""Fast ways to walk the taps of a Geometry: whole-array NumPy passes, never per element.

- ``reduce_axis``: reduce the windows along one axis, one ufunc pass per kernel tap over
  strided views, or, for long kernels, log-doubling (van Herk/Gil-Werman style) blocks;
  windows of several axes are reduced one axis at a time (max, min and sums separate).
- ``scatter_axis``: the adjoint of a sum along one axis (backward of avg and lp).
- ``region`` / ``add_region``: read or accumulate one N-D tap's cells, for the
  non-separable arg-max selection.
- ``separable``/``window_sum``/``spread``: whole windows of several axes, one axis at a time;
  ``select_backward``/``select_indices``: which cell of each window was selected;
  ``gather_windows``/``scatter_windows``: every window's cells side by side, for reductions that
  do not separate (median, mode), and the adjoint.

Padding is never materialised on the tap paths: each tap reads only the real cells it
reaches, so an average's zero padding and a max's "lowest value" padding cost nothing.

>>> from poolcli.engine.geometry import Axis
>>> reduce_axis(np.arange(1, 7), 0, Axis(6, kernel=2, stride=2), np.add, 0)
array([ 3,  7, 11])
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from poolcli.engine.base import _accumulator, highest, lowest
from poolcli.engine.geometry import AdaptiveAxis, AnyAxis, Axis, Geometry, Selection, Tap

MAX_BANDS = 512  # windows given as slices and reduced one by one, up to this many per axis


def bands(axis: AnyAxis) -> list[slice] | None:
    """Each window along ``axis`` as one slice of real cells, when every window is contiguous and unpadded
    (global and adaptive pooling) and there are few of them; else None.

    >>> bands(AdaptiveAxis(5, 3))
    [slice(0, 2, None), slice(1, 4, None), slice(3, 5, None)]
    """
    if isinstance(axis, AdaptiveAxis):
        return None if axis.out > MAX_BANDS else list(_adaptive_bands(axis.size, axis.out))
    if axis.out == 1 and axis.pad == (0, 0) and axis.dilation == 1 and axis.kernel >= axis.size:
        return [slice(0, axis.size)]
    return None


@functools.lru_cache(maxsize=256)
def _adaptive_bands(size: int, out: int) -> tuple[slice, ...]:
    start, end = AdaptiveAxis(size, out).bounds()
    return tuple(slice(int(a), int(b)) for a, b in zip(start, end))


def whole(g: Geometry) -> bool:
    """Whether every spatial axis is one window over all of it (global pooling)."""
    return all(b is not None and len(b) == 1 and b[0] == slice(0, a.size) for a, b in ((a, bands(a)) for a in g.axes))


def reduce_axis(x: np.ndarray, pos: int, axis: AnyAxis, ufunc: np.ufunc, fill: object) -> np.ndarray:
    """Reduce every window along array axis ``pos`` with ``ufunc`` (np.maximum, np.minimum or np.add).

    ``fill`` is the identity of the reduction, used only for outputs that no tap reaches
    on a real cell (they cannot exist after Axis.check, but a partial tap needs a start).
    Contiguous unpadded windows (global, adaptive) are reduced as slices, one ufunc pass each.
    """
    spans = bands(axis)
    if spans is not None:
        pre = (slice(None),) * pos
        return np.concatenate([ufunc.reduce(x[pre + (b,)], axis=pos, keepdims=True) for b in spans], axis=pos)
    if isinstance(axis, Axis) and _doubling_pays(axis):
        return _reduce_doubling(x, pos, axis, ufunc, fill)
    if pos == x.ndim - 1 and _tiles(axis) and x.flags.c_contiguous:
        # Strided ufunc loops over the last axis are slow; a transposing copy puts each
        # tap in a contiguous row, and one reduction over rows runs vectorised.
        rows = x.reshape(-1, axis.kernel).T.copy()
        out = result_array(x.shape[:-1] + (axis.out,), x.dtype)  # (the caller's output, when this is the last pass)
        ufunc.reduce(rows, axis=0, out=out.reshape(-1))
        return out
    pre = (slice(None),) * pos
    taps = axis.taps()
    full = [t for t in taps if t.full]
    if len(full) >= 2:
        acc = ufunc(x[pre + (full[0].inp,)], x[pre + (full[1].inp,)])
        rest = [t for t in taps if t is not full[0] and t is not full[1]]
    elif full:
        acc = np.array(x[pre + (full[0].inp,)], copy=True)
        rest = [t for t in taps if t is not full[0]]
    else:
        shape = x.shape[:pos] + (axis.out,) + x.shape[pos + 1 :]
        acc = np.full(shape, fill, dtype=x.dtype)
        rest = taps
    for t in rest:
        src = x[pre + (t.inp,)]
        if t.full:
            ufunc(acc, src, out=acc)
        elif isinstance(t.out, slice):
            view = acc[pre + (t.out,)]
            ufunc(view, src, out=view)
        else:
            acc[pre + (t.out,)] = ufunc(acc[pre + (t.out,)], src)
    return acc


def _tiles(axis: AnyAxis) -> bool:
    """Whether the windows tile the axis exactly: kernel == stride, no holes, no padding, no rest."""
    return (
        isinstance(axis, Axis)
        and axis.kernel > 1
        and axis.kernel == axis.stride
        and axis.dilation == 1
        and axis.pad == (0, 0)
        and axis.out * axis.kernel == axis.size
    )


def tiling(g: Geometry) -> bool:
    """Whether the windows tile every axis exactly (kernel = stride, no padding, no rest): each cell is in one
    window."""
    return all(_tiles(a) for a in g.axes)


def disjoint(g: Geometry) -> bool:
    """Whether no two windows share a cell: strided windows at least a window's span apart on every axis.

    >>> from poolcli.engine.geometry import WindowSpec
    >>> disjoint(WindowSpec(kernel=2).bind((4, 4))), disjoint(WindowSpec(kernel=3, stride=2).bind((5, 5)))
    (True, False)
    """
    return all(isinstance(a, Axis) and a.stride >= a.span for a in g.axes)


def strided_windows(g: Geometry) -> bool:
    """Whether every axis has strided windows (not the slices of global and adaptive pooling).

    >>> from poolcli.engine.geometry import WindowSpec
    >>> strided_windows(WindowSpec(kernel=3, stride=2).bind((8,)))
    True
    """
    return all(isinstance(a, Axis) and bands(a) is None for a in g.axes)


def _identity(axis: AnyAxis) -> bool:
    """Whether every window along ``axis`` is one cell, its own: the axis is not pooled."""
    return isinstance(axis, Axis) and axis.kernel == 1 and axis.stride == 1 and axis.pad == (0, 0) \
        and axis.out == axis.size


def _doubling_pays(axis: Axis) -> bool:
    """Whether log-doubling (passes over the whole padded axis) beats one pass per tap."""
    if axis.kernel < 4:
        return False
    length = (axis.out - 1) * axis.stride + axis.span
    levels = axis.kernel.bit_length()
    return (levels + 2) * length < axis.kernel * axis.out


def _reduce_doubling(x: np.ndarray, pos: int, axis: Axis, ufunc: np.ufunc, fill: object) -> np.ndarray:
    """Windows along one axis by doubling: block[m][i] = ufunc over taps i, i+d, …, i+(m-1)d.

    A window of k taps is then two overlapping blocks (max, min: idempotent) or the
    blocks of k's binary digits (sums): about log2(k) passes instead of k.
    """
    pre = (slice(None),) * pos
    length = (axis.out - 1) * axis.stride + axis.span
    widths = [(0, 0)] * x.ndim
    widths[pos] = (axis.pad[0], max(0, length - axis.size - axis.pad[0]))
    xp = np.pad(x, widths, constant_values=fill)
    xp = xp[pre + (slice(0, length),)]
    d, k = axis.dilation, axis.kernel
    ends = slice(0, (axis.out - 1) * axis.stride + 1, axis.stride)

    def at(block: np.ndarray, offset: int) -> np.ndarray:
        return block[pre + (slice(offset, offset + ends.stop, axis.stride),)]

    idempotent = ufunc in (np.maximum, np.minimum, np.fmax, np.fmin)
    top = 1 << (k.bit_length() - 1)
    block, m = xp, 1
    parts: list[tuple[np.ndarray, int]] = []  # (block of size m, m), for the binary digits of k
    while True:
        if not idempotent and k & m:
            parts.append((block, m))
        if m == top:
            break
        n = block.shape[pos] - m * d
        block = ufunc(block[pre + (slice(0, n),)], block[pre + (slice(m * d, m * d + n),)])
        m *= 2
    if idempotent:
        return ufunc(at(block, 0), at(block, (k - top) * d))
    acc, offset = None, 0
    for blk, size in reversed(parts):
        piece = at(blk, offset * d)
        acc = np.array(piece, copy=True) if acc is None else np.add(acc, piece, out=acc)
        offset += size
    return acc


def scatter_axis(g: np.ndarray, pos: int, axis: AnyAxis) -> np.ndarray:
    """Adjoint of a windowed sum along axis ``pos``: each input cell gets the sum of its windows' values.

    >>> from poolcli.engine.geometry import Axis
    >>> scatter_axis(np.array([1.0, 10.0]), 0, Axis(3, kernel=2, stride=1))
    array([ 1., 11., 10.])
    """
    shape = g.shape[:pos] + (axis.size,) + g.shape[pos + 1 :]
    pre = (slice(None),) * pos
    spans = bands(axis)
    if spans is not None:  # each window a slice: add its gradient over the slice
        if len(spans) == 1:
            return np.broadcast_to(g, shape).copy()
        dx = np.zeros(shape, dtype=g.dtype)
        for i, b in enumerate(spans):
            view = dx[pre + (b,)]
            np.add(view, g[pre + (slice(i, i + 1),)], out=view)
        return dx
    dx = np.zeros(shape, dtype=g.dtype)
    for t in axis.taps():
        src = g[pre + (t.out,)]
        if isinstance(t.inp, slice):
            view = dx[pre + (t.inp,)]
            np.add(view, src, out=view)
        elif t.unique:
            dx[pre + (t.inp,)] += src
        else:
            np.add.at(dx, pre + (t.inp,), src)
    return dx


def _index(sels: Sequence[Selection], shape: Sequence[int]) -> tuple:
    """An index tuple for the trailing axes: basic slices when possible, else an open mesh."""
    if all(isinstance(s, slice) for s in sels):
        return (Ellipsis, *sels)
    arrays = [np.arange(*s.indices(n)) if isinstance(s, slice) else s for s, n in zip(sels, shape)]
    return (Ellipsis, *np.ix_(*arrays))


def region(a: np.ndarray, sels: Sequence[Selection]) -> np.ndarray:
    """The cells of ``a``'s trailing axes picked by one selection per axis (a view when all are slices)."""
    return a[_index(sels, a.shape[a.ndim - len(sels) :])]


def set_region(a: np.ndarray, sels: Sequence[Selection], values: np.ndarray) -> None:
    """``a[sels] = values`` for one selection per trailing axis."""
    a[_index(sels, a.shape[a.ndim - len(sels) :])] = values


def add_region(a: np.ndarray, sels: Sequence[Selection], values: np.ndarray, unique: bool = True) -> None:
    """``a[sels] += values``, accumulating repeated cells when ``unique`` is False."""
    idx = _index(sels, a.shape[a.ndim - len(sels) :])
    if unique:
        if all(isinstance(s, slice) for s in sels):
            view = a[idx]
            np.add(view, values, out=view)
        else:
            a[idx] += values
    else:
        np.add.at(a, idx, values)


def outs(taps: Sequence[Tap]) -> list[Selection]:
    """The output selection of each axis's tap."""
    return [t.out for t in taps]


def inps(taps: Sequence[Tap]) -> list[Selection]:
    """The input selection of each axis's tap."""
    return [t.inp for t in taps]


def memory_order(x: np.ndarray) -> tuple[int, ...] | None:
    """The axis order in which ``x`` is C-contiguous (largest stride first), or None when no order is.

    >>> memory_order(np.zeros((2, 3, 4)).transpose(0, 2, 1))
    (0, 2, 1)
    """
    order = tuple(sorted(range(x.ndim), key=lambda i: -x.strides[i]))
    return order if x.transpose(order).flags.c_contiguous else None


FORTRAN_TILE = 32 << 10  # bytes of one tile of the planes-from-cells transpose


def fortran_planes(a: np.ndarray, first: int) -> np.ndarray:
    """A Fortran-ordered array as a view of a new array in which the cells of each plane (the axes from
    ``first`` on) lie together: the planes-from-cells 2-D transpose, done in tiles of about 32 KiB that stay in
    cache. What is left for C order (each group's axes reversed, a copy of the view) then also runs in cache.

    >>> a = np.asfortranarray(np.arange(24.0).reshape(2, 3, 4))
    >>> b = fortran_planes(a, 1)
    >>> np.array_equal(a, b), b.transpose(0, 2, 1).flags.c_contiguous
    (True, True)
    """
    if first == 0 or a.ndim - first == 0:
        return a
    lead, space = a.shape[:first], a.shape[first:]
    planes = math.prod(lead)
    cells = a.T.reshape(-1, planes)  # C order: one row of planes per cell, the cells in reversed axis order
    rows = np.empty((planes, len(cells)), dtype=a.dtype)
    tile = max(16, FORTRAN_TILE // (planes * a.itemsize))
    for start in range(0, len(cells), tile):
        rows[:, start:start + tile] = cells[start:start + tile].T
    back = tuple(range(first - 1, -1, -1)) + tuple(range(a.ndim - 1, first - 1, -1))
    return rows.reshape(lead[::-1] + space[::-1]).transpose(back)


def empty_as(like: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, make: Callable[..., np.ndarray] = np.empty
             ) -> np.ndarray:
    """A new array of ``shape`` laid out in memory as ``like`` (an array of as many axes), when ``like`` is
    contiguous in some axis order (Fortran, channels-last); else C-ordered. ``make``: np.empty, or np.zeros.

    >>> empty_as(np.zeros((2, 3, 4), order="F"), (2, 3, 2), np.dtype(np.float32)).flags.f_contiguous
    True
    """
    order = memory_order(like) if not like.flags.c_contiguous else None
    if order is None:
        return make(shape, dtype=dtype)
    return make([shape[i] for i in order], dtype=dtype).transpose(np.argsort(order))


@functools.lru_cache(maxsize=8)
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    ones = np.ones(n, dtype)
    ones.flags.writeable = False
    return ones


SUM_RUN = 1024  # cells summed in one vectorised run before the runs' sums are added


def plane_sums(planes: np.ndarray) -> np.ndarray:
    """The sum of each row of a C-ordered float32/float64 array (the cells of each plane, flattened). Short
    rows: one BLAS product with ones (3× ``np.add.reduce``, which pays per row); long ones: einsum's
    vectorised sums over runs of ``SUM_RUN`` cells, then the runs' sums (a BLAS product on one core reads
    at 2/3 of the speed, and one vectorised sum over a whole long row loses precision: 6.7e-7 against 1.4e-7
    over 16384 float32 cells).

    >>> plane_sums(np.ones((2, 3000), np.float32)).tolist()
    [3000.0, 3000.0]
    """
    n = planes.shape[-1]
    if n < 2 * SUM_RUN:
        return planes @ _ones(n, planes.dtype)
    flat = planes.reshape(-1, n)
    runs = n // SUM_RUN
    sums = np.einsum("ijk->ij", flat[:, :runs * SUM_RUN].reshape(len(flat), runs, SUM_RUN)).sum(axis=1)
    if n % SUM_RUN:
        sums += np.einsum("ij->i", flat[:, runs * SUM_RUN:])
    return sums.reshape(planes.shape[:-1])


FOLD_RUN = 1024  # values in each row of an order-free reduction across rows (fewer, longer inner loops)


def _whole(x: np.ndarray, first: int, ufunc: np.ufunc) -> np.ndarray:
    """Each plane's cells (the axes from ``first`` on) reduced to one value, shape ``x.shape[:first]``. Sums are
    taken over C-ordered planes (a Fortran-ordered input transposed in cached tiles first), so every layout
    gives the C order's bits; max and min, which no order changes, reduce the input as it lies in memory
    (Fortran order, channels-last: ``fold``), copying nothing.

    >>> _whole(np.asfortranarray(np.arange(12.0).reshape(3, 4)), 1, np.maximum).tolist()
    [3.0, 7.0, 11.0]
    """
    order = None if x.flags.c_contiguous else memory_order(x)
    if ufunc is not np.add and order is not None:
        at = sorted(order.index(i) for i in range(first, x.ndim))
        if at == list(range(at[0], at[0] + len(at))):  # the cells together in memory, between planes
            kept = order[:at[0]] + order[at[-1] + 1:]  # the plane axes, in memory order
            t = x.transpose(order).reshape(math.prod(x.shape[a] for a in order[:at[0]]), -1,
                                           math.prod(x.shape[a] for a in order[at[-1] + 1:]))
            return fold(t, ufunc).reshape([x.shape[a] for a in kept]).transpose(np.argsort(kept))
    if order is not None and x.flags.f_contiguous:
        x = fortran_planes(x, first)
    planes = np.ascontiguousarray(x).reshape(x.shape[:first] + (-1,))
    if ufunc is np.add and planes.dtype in (np.float32, np.float64):
        return plane_sums(planes)
    return ufunc.reduce(planes, axis=-1)


def fold(t: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """``ufunc.reduce(t, axis=1)`` of a C-ordered (outer, rows, inner) array for a ufunc whose result no order
    changes (max, min): rows taken ``FOLD_RUN // inner`` at a time as one longer row, then those folded, so
    NumPy's inner loop runs over about ``FOLD_RUN`` values, not ``inner`` (32 channels: 7× faster).

    >>> fold(np.arange(24).reshape(2, 6, 2), np.maximum).tolist()
    [[10, 11], [22, 23]]
    """
    outer, rows, inner = t.shape
    if inner == 1:  # each row one value: the rows are one contiguous run
        return ufunc.reduce(t.reshape(outer, rows), axis=1).reshape(outer, 1)
    k = max(1, min(rows, FOLD_RUN // inner))
    whole_rows = rows // k * k
    r = ufunc.reduce(t[:, :whole_rows].reshape(outer, whole_rows // k, k * inner), axis=1)
    r = ufunc.reduce(r.reshape(outer, k, inner), axis=1)
    if whole_rows < rows:
        ufunc(r, ufunc.reduce(t[:, whole_rows:], axis=1), out=r)
    return r


def separable(x: np.ndarray, g: Geometry, ufunc: np.ufunc, fill: object) -> np.ndarray:
    """Reduce the windows of every spatial axis in turn (max, min and sums are separable).

    The passes run in the input's own memory order, so a Fortran-ordered or channels-last input is read in
    place, its planes contiguous inside each tap (an input in no memory order is copied to C order first).
    The axes are reduced in the same order whatever the layout, so the results are the same bit for bit.
    """
    first = x.ndim - g.dims
    if x.size == 0:  # no planes (a zero-size batch or channel axis): nothing to reduce
        return np.empty(x.shape[:first] + g.out_spatial, dtype=x.dtype)
    if whole(g):  # global pooling: one reduction over each plane's cells
        return _whole(x, first, ufunc).reshape(x.shape[:first] + g.out_spatial)
    order = memory_order(x)
    if order is None:
        x, order = np.ascontiguousarray(x), tuple(range(x.ndim))
    t = y = x.transpose(order)
    for i, axis in enumerate(g.axes):
        y = reduce_axis(y, order.index(first + i), axis, ufunc, fill)
    return (y if y is not t else y.copy()).transpose(np.argsort(order))


def window_sum(x: np.ndarray, g: Geometry) -> np.ndarray:
    """Sum of every window, in the accumulator dtype."""
    return separable(x.astype(_accumulator(x.dtype), copy=False), g, np.add, 0)


def spread(grad: np.ndarray, g: Geometry) -> np.ndarray:
    """Adjoint of ``window_sum``: every input cell gets the sum of the values of the windows it is in."""
    first = grad.ndim - g.dims
    if tiling(g) and one_value(grad):  # every cell gets that one value: still one value (the caller fills with it)
        return np.broadcast_to(grad.reshape(-1)[0], grad.shape[:first] + tuple(a.size for a in g.axes))
    if tiling(g):  # each input cell in one window: every tap written once, no zero fill
        (dx, split), taps = _tiled(grad.shape[:first], g, grad.dtype, like=grad)  # in grad's memory order
        for tap in taps:
            split[tap] = grad
        return dx
    dx = grad
    for i in reversed(range(g.dims)):
        dx = scatter_axis(dx, first + i, g.axes[i])
    return dx


_block = threading.local()  # the caller's own array for the result of the block being computed, if free


@contextlib.contextmanager
def results_into(target: np.ndarray | None) -> Iterator[None]:
    """While a block is computed on this thread, ``result_array`` may hand out ``target`` (the caller's part of
    the output) for the result, which then needs no copying.

    >>> out = np.zeros((2, 3))
    >>> with results_into(out[:1]):
    ...     r = result_array((1, 3), np.dtype(np.float64))
    >>> np.shares_memory(r, out)
    True
    """
    _block.target = target
    try:
        yield
    finally:
        _block.target = None


def result_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A new C-ordered array for a kernel's result: the block's target (once) where it has this shape and dtype
    and is C-ordered, else fresh memory. Only for a result written whole and returned as it is."""
    target = result_target(shape, dtype, c_order=True)
    return np.empty(shape, dtype=dtype) if target is None else target


def result_target(shape: tuple[int, ...], dtype: np.dtype, c_order: bool = False) -> np.ndarray | None:
    """The block's target (once) where it has this shape and dtype (and, with ``c_order``, is C-ordered), in
    whatever memory order; else None. For a kernel that writes its result through strides (``gradient_at``)."""
    target = getattr(_block, "target", None)
    fits = target is not None and target.shape == shape and target.dtype == dtype
    if not fits or (c_order and not target.flags.c_contiguous):
        return None
    _block.target = None
    return target


def result_as(like: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``result_array`` where ``like`` is C-ordered, else ``empty_as``: a kernel's result in its input's memory
    order, written straight into the caller's output when that fits."""
    return result_array(shape, dtype) if like.flags.c_contiguous else empty_as(like, shape, dtype)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` are the same memory seen the same way (the result was written into the target)."""
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def one_value(a: np.ndarray) -> bool:
    """Whether ``a`` is one value broadcast over its shape (the default gradient of ones).

    >>> one_value(np.broadcast_to(1.0, (2, 3))), one_value(np.ones((2, 3)))
    (True, False)
    """
    return a.size > 0 and a.ndim > 0 and not any(a.strides)


def has_nan(a: np.ndarray) -> bool:
    """Whether a float array holds NaN (then NaN is what its windows select)."""
    return a.dtype.kind == "f" and bool(np.isnan(a).any())


def same(a: np.ndarray, b: np.ndarray, nan: bool = True) -> np.ndarray:
    """``a == b`` with NaN equal to NaN (where ``nan``, and the arrays are floats): the cells holding a
    selected value, NaN included.

    >>> same(np.array([1.0, np.nan, 2.0]), np.array([1.0, np.nan, 3.0])).tolist()
    [True, True, False]
    """
    hit = a == b
    if nan and np.result_type(a, b).kind == "f":
        hit |= np.isnan(a) & np.isnan(b)
    return hit


def _hits(x: np.ndarray, y: np.ndarray, g: Geometry, ties: str):
    """For each N-D tap, the outputs whose selected (extreme) value sits on that tap's cell.

    Yields ``(taps, hit)``; with ``ties="first"`` only the first tied cell in row-major
    window order is hit, else every tied cell. NaN, when present, is the selected value.
    """
    nan = has_nan(y)
    every = list(g.taps())
    taken = np.zeros(y.shape, dtype=bool) if ties == "first" else None
    for n, taps in enumerate(every):
        hit = same(region(x, inps(taps)), region(y, outs(taps)), nan)
        if taken is not None and n == 0:  # nothing taken yet
            set_region(taken, outs(taps), hit)
        elif taken is not None:
            seen = region(taken, outs(taps))
            hit &= ~seen
            if n < len(every) - 1:  # the last tap's takings are not asked for
                set_region(taken, outs(taps), seen | hit)
        yield taps, hit


def _tile_bands(axis: AnyAxis) -> list[slice] | None:
    """Each window along ``axis`` as a slice, when the windows are unpadded, undilated tiles; else None."""
    if not isinstance(axis, Axis) or axis.pad != (0, 0) or axis.dilation != 1 or axis.kernel != axis.stride:
        return None
    return [slice(o * axis.kernel, (o + 1) * axis.kernel) for o in range(axis.out)]


def window_slices(axis: AnyAxis) -> list[slice] | None:
    """Each window along ``axis`` as a slice of cells: the ``bands`` of global and adaptive pooling, or unpadded,
    undilated tiles (adaptive pooling that divides evenly); else None.

    >>> from poolcli.engine.geometry import WindowSpec
    >>> window_slices(WindowSpec(output_size=2, dims=1).bind((8,)).axes[0])
    [slice(0, 4, None), slice(4, 8, None)]
    """
    return bands(axis) or _tile_bands(axis)


def _unique(taps) -> bool:
    return all(t.unique for t in taps)


def select_backward(x: np.ndarray, y: Any, grad: np.ndarray, g: Geometry, ties: str,
                    arg: Callable[..., np.ndarray] | None = None) -> np.ndarray:
    """Route each output's gradient to the cell its window selected (max/min backward). ``y`` is the forward
    result, or a function giving it; ``arg`` (np.argmax or np.argmin: the first selected cell, NaN first)
    spares computing it where windows are slices."""
    dx = _select(x, y, grad, g, ties, arg)
    if grad.dtype.kind == "f" and np.signbit(grad).any():  # a negative share times 0 is -0.0: 0 in the others
        np.add(dx, 0, out=dx)
    return dx


def _select(x: np.ndarray, y: Any, grad: np.ndarray, g: Geometry, ties: str,
            arg: Callable[..., np.ndarray] | None) -> np.ndarray:
    spans = [bands(a) for a in g.axes]
    if not finite(grad):  # an inf or NaN gradient times a 0 weight would be NaN: each share is chosen, not multiplied
        if all(b is not None for b in spans) and math.prod(len(b) for b in spans) <= MAX_BANDS:
            return _select_in_bands(x, y, grad, spans, ties, arg, exact=True)
        return _select_backward(x, _forward(y), grad, g, ties, exact=True)
    if any(b is None for b in spans):  # large tiles (adaptive pooling that divides evenly): fewer windows than taps
        tiles = [window_slices(a) for a in g.axes]
        if all(b is not None for b in tiles) and math.prod(len(b) for b in tiles) < math.prod(a.kernel for a in g.axes):
            spans = tiles
    if all(b is not None for b in spans) and math.prod(len(b) for b in spans) <= MAX_BANDS:
        return _select_in_bands(x, y, grad, spans, ties, arg)
    if arg is not None and ties == "first" and not tiling(g):
        dx = _select_picking(x, grad, g, np.maximum if arg is np.argmax else np.minimum)
        if dx is not None:
            return dx
    if arg is not None and ties in ("first", "all") and g.dims > 1 and not tiling(g):
        return _select_by_axes(x, grad, g, ties, np.maximum if arg is np.argmax else np.minimum)
    if arg is not None and ties == "first" and all(_tiles(a) or _identity(a) for a in g.axes):
        dx = _select_tiles_first(x, grad, g, np.maximum if arg is np.argmax else np.minimum)
        if dx is not None:
            return dx
    return _select_backward(x, _forward(y), grad, g, ties)


def _select_tiles_first(x: np.ndarray, grad: np.ndarray, g: Geometry, ufunc: np.ufunc) -> np.ndarray | None:
    """select_backward with ties "first" where the windows tile the plane, one axis at a time (see
    ``_select_by_axes``: the first selected cell is the first cell holding the extreme in the first row holding
    it). Along each axis, from the last, the k taps of every window are compared once and the first strictly
    better one remembered; the gradient then goes back through each axis as k masked writes. The last axis's
    taps are read as rows of one transposing copy (its stride-k views read slowly). None when a window holds NaN
    (``_select_backward`` picks it)."""
    first = x.ndim - g.dims
    better_than = np.greater if ufunc is np.maximum else np.less
    stages = []  # (axis, kernel, shape before, the tap each window picked)
    best = x
    for i in reversed(range(g.dims)):
        axis = g.axes[i]
        if not _tiles(axis):
            continue
        pos, k, shape = first + i, axis.kernel, best.shape
        if pos == best.ndim - 1 and best.flags.c_contiguous:
            rows = np.ascontiguousarray(best.reshape(-1, k).T)
            taps = [r.reshape(shape[:-1] + (axis.out,)) for r in rows]
        else:
            split = best.reshape(shape[:pos] + (axis.out, k) + shape[pos + 1:])
            taps = [split[(slice(None),) * (pos + 1) + (t,)] for t in range(k)]
        picked = better_than(taps[1], taps[0])
        top = ufunc(taps[0], taps[1])
        if k > 2:
            picked = picked.view(np.uint8)
            for t in range(2, k):  # taps in order: a later pick is a larger t
                better = better_than(taps[t], top).view(np.uint8)
                np.maximum(picked, np.multiply(better, np.uint8(t), out=better), out=picked)
                ufunc(top, taps[t], out=top)
        stages.append((pos, k, best, picked))
        best = top
    if has_nan(best):
        return None
    d = grad
    for pos, k, before, picked in reversed(stages):
        masks = [~picked, picked] if k == 2 else [picked == t for t in range(k)]
        # in the memory order of that stage's input (any order: the result comes back in the input's; splitting
        # one axis is a view in any order), written through k strided views (a transposing copy back is slower)
        out = result_as(before, before.shape, d.dtype)
        split = out.reshape(before.shape[:pos] + (before.shape[pos] // k, k) + before.shape[pos + 1:])
        for t in range(k):
            np.multiply(d, masks[t], out=split[(slice(None),) * (pos + 1) + (t,)])
        d = out
    return d


def tap_cells(tap: tuple[int, ...]) -> tuple:
    """The index, over spatial axes split into (windows, kernel) pairs, of the cells one kernel tap covers in
    windows that tile.

    >>> np.arange(8).reshape(2, 2, 2)[(slice(None), *tap_cells((1,)))].tolist()  # (2 windows, kernel 2) a row
    [[1, 3], [5, 7]]
    """
    return tuple(v for t in tap for v in (slice(None), t))


def _tiled(lead: tuple[int, ...], g: Geometry, dtype: np.dtype,
           like: np.ndarray | None = None) -> tuple[tuple[np.ndarray, np.ndarray], list[tuple]]:
    """For windows that tile the plane: a new input-shaped array (laid out in memory as ``like``, an array of the
    same number of axes, when that is contiguous in some axis order; else C order), its view split into (out,
    kernel) pairs per axis, and the index of every tap in that view (each a strided view of one cell per
    window)."""
    shape = lead + tuple(a.size for a in g.axes)
    dx = result_array(shape, dtype) if like is None else result_as(like, shape, dtype)
    order = memory_order(dx)  # contiguous in that axis order by construction
    base = dx.transpose(order)  # C order in memory order
    first, places, parts = len(lead), {}, []
    for i in order:  # each pooled axis split into (out, kernel) where it lies in memory
        axis = g.axes[i - first] if i >= first else None
        pieces = (axis.out, axis.kernel) if axis is not None else (shape[i],)
        places[i] = tuple(range(len(parts), len(parts) + len(pieces)))
        parts.extend(pieces)
    split = base.reshape(parts).transpose([p for i in range(len(shape)) for p in places[i]])
    pre = (slice(None),) * len(lead)
    taps = [pre + tap_cells(tap) for tap in itertools.product(*(range(a.kernel) for a in g.axes))]
    return (dx, split), taps


def _select_by_axes(x: np.ndarray, grad: np.ndarray, g: Geometry, ties: str, ufunc: np.ufunc) -> np.ndarray:
    """select_backward one axis at a time: the first selected cell of a window in row-major order is, in the first
    row (along the first axis) holding the window's extreme, the first cell holding that row's extreme; and the
    cells tied with the extreme are those of every such row. So the windows are reduced from the last axis to
    the first, and the gradient routed back through each 1-D reduction in turn: a k-tap walk per axis instead of
    one over all k^d taps. (Ties "split" shares by cell, not by row: it keeps the N-D walk.)"""
    first = x.ndim - g.dims
    fill = lowest(x.dtype) if ufunc is np.maximum else highest(x.dtype)
    stages = [x]  # stages[j]: the input reduced along the last j spatial axes
    for i in reversed(range(g.dims)):
        stages.append(reduce_axis(stages[-1], first + i, g.axes[i], ufunc, fill))
    routed = grad
    for i in range(g.dims):
        below = stages[g.dims - 1 - i]  # reduced along the axes after i, not yet along i
        axes = tuple(a if j == i else Axis(n, kernel=1, stride=1)
                     for j, (a, n) in enumerate(zip(g.axes, below.shape[first:])))
        routed = _select_backward(below, stages[g.dims - i], routed, Geometry(g.lead, axes), ties)
    return routed


def _select_picking(x: np.ndarray, grad: np.ndarray, g: Geometry, ufunc: np.ufunc) -> np.ndarray | None:
    """select_backward with ties "first" for windows of strided slices, one axis at a time as
    ``_select_by_axes``, but each axis's reduction remembers which tap each window took (its first strictly
    better one), so the gradient goes back as one masked write per tap, the first write of a cell assigning
    it (no zero fill, no comparison of the input with the result). None when a window holds NaN, or the
    taps of an axis do not suit (``_select_by_axes`` handles those)."""
    first = x.ndim - g.dims
    better_than = np.greater if ufunc is np.maximum else np.less
    stages = []  # (array position, axis, the array it reduced, the tap each window picked)
    best = x
    for i in reversed(range(g.dims)):
        axis = g.axes[i]
        if _identity(axis):
            continue
        pos = first + i
        reduced = _reduce_picking(best, pos, axis, ufunc, better_than)
        if reduced is None:
            return None
        stages.append((pos, axis, best, reduced[1]))
        best = reduced[0]
    if has_nan(best):
        return None
    d = grad
    for pos, axis, before, picked in reversed(stages):
        d = _route_picked(d, picked, pos, axis, before)
    return d


def _reduce_picking(x: np.ndarray, pos: int, axis: AnyAxis, ufunc: np.ufunc,
                    better_than: np.ufunc) -> tuple[np.ndarray, np.ndarray] | None:
    """The windows along array axis ``pos`` reduced with ``ufunc``, and the tap (uint8) of each window's first
    strictly better cell; taps read in window order, each output set by the first tap reaching a real cell.
    None where the outputs the taps reach do not grow as one interval."""
    if not isinstance(axis, Axis) or axis.kernel > 255:
        return None
    if _phased(x, pos, axis):
        return _reduce_phased(x, axis, ufunc, better_than)
    shape = x.shape[:pos] + (axis.out,) + x.shape[pos + 1:]
    pre = (slice(None),) * pos
    top = empty_as(x, shape, x.dtype)  # in the input's memory order
    picked = empty_as(x, shape, np.dtype(np.uint8))
    lo = hi = 0  # the outputs set so far
    for t in axis.taps():
        a, b = t.out.start, t.out.stop
        src = x[pre + (t.inp,)]
        if lo == hi:
            top[pre + (t.out,)] = src
            picked[pre + (t.out,)] = t.j
            lo, hi = a, b
            continue
        if b < lo or a > hi:  # a gap between the outputs set: not one interval
            return None
        for new in (slice(a, min(b, lo)), slice(max(a, hi), b)):
            if new.stop > new.start:
                top[pre + (new,)] = src[pre + (slice(new.start - a, new.stop - a),)]
                picked[pre + (new,)] = t.j
        both = slice(max(a, lo), min(b, hi))
        if both.stop > both.start:
            cells = src[pre + (slice(both.start - a, both.stop - a),)]
            acc = top[pre + (both,)]
            better = better_than(cells, acc).view(np.uint8)  # taps come in order: a later pick is a larger j
            view = picked[pre + (both,)]
            np.maximum(view, np.multiply(better, np.uint8(t.j), out=better), out=view)
            ufunc(acc, cells, out=acc)
        lo, hi = min(lo, a), max(hi, b)
    if (lo, hi) != (0, axis.out):
        return None
    return top, picked


def _phased(x: np.ndarray, pos: int, axis: Axis) -> bool:
    """Whether the strided last axis is best split into its stride's phases: each phase then holds one cell
    per window, and every tap is a phase shifted by whole windows."""
    s = axis.stride
    return pos == x.ndim - 1 and s > 1 and axis.size == s * axis.out and x.flags.c_contiguous


def last_phases(x: np.ndarray, s: int) -> list[np.ndarray]:
    """The last axis of ``x`` as its ``s`` phases ``x[..., p::s]``, each contiguous: a pass that reads cells
    ``s`` apart is then a contiguous run of one phase (``phase_run``), not a strided view.

    >>> [p.tolist() for p in last_phases(np.arange(6), 2)]
    [[0, 2, 4], [1, 3, 5]]
    """
    return [np.ascontiguousarray(x[..., p::s]) for p in range(s)]


def phase_run(phases: list[np.ndarray], start: int, count: int) -> np.ndarray:
    """Cells ``start``, ``start + s``, … (``count`` of them) of the last axis split by ``last_phases`` into ``s``
    phases: the run of the phase they lie in.

    >>> phase_run(last_phases(np.arange(10), 3), 4, 2).tolist()
    [4, 7]
    """
    s = len(phases)
    return phases[start % s][..., start // s: start // s + count]


def _phase_of(t: Tap, s: int) -> tuple[int, int]:
    """The phase a tap reads and its shift: output o reads cell s·(o + shift) + phase."""
    return divmod(t.inp.start - t.out.start * s, s)[::-1]


def _reduce_phased(x: np.ndarray, axis: Axis, ufunc: np.ufunc,
                   better_than: np.ufunc) -> tuple[np.ndarray, np.ndarray] | None:
    """``_reduce_picking`` along a last axis split into phases (one transposing copy; strided passes over the
    last axis are slow), each tap one pass over the flattened phase shifted by whole windows. A shifted pass
    also reaches the outputs at the ends of each row that the tap does not feed (reading a neighbouring row):
    those are kept aside and put back. The first full tap starts the result; the taps before it take ties."""
    s, out = axis.stride, axis.out
    taps = axis.taps()
    full = [t for t in taps if t.full]
    if not full:
        return None
    phases = x.reshape(-1, s).T.copy()  # (s, rows · out): phase r of cell s·o + r at [r, row · out + o]
    n = phases.shape[1]
    start = full[0]
    r0, _ = _phase_of(start, s)  # a full tap reads output 0's own window: no shift
    shared = any(_phase_of(t, s)[0] == r0 for t in taps if t is not start)
    top = phases[r0].copy() if shared else phases[r0]
    picked = np.full(n, start.j, dtype=np.uint8)
    rows = (n // out, out)
    before = [t for t in taps if t.j < start.j][::-1]  # each smaller than every tap taken so far
    after = [t for t in taps if t.j > start.j]  # each larger
    for t, ties in [(t, True) for t in before] + [(t, False) for t in after]:
        r, q = _phase_of(t, s)
        lo, hi = max(0, -q), min(n, n - q)
        a, b = t.out.start, t.out.stop
        grid_top, grid_picked = top.reshape(rows), picked.reshape(rows)
        kept = [(sl, grid_top[:, sl].copy(), grid_picked[:, sl].copy()) for sl in (slice(0, a), slice(b, out))
                if sl.stop > sl.start]
        cells, acc, pick = phases[r][lo + q: hi + q], top[lo:hi], picked[lo:hi]
        if ties:  # j below every pick so far: it takes the ties
            better = np.logical_not(better_than(acc, cells)).view(np.uint8)
            np.minimum(pick, np.subtract(np.uint8(255), np.multiply(better, np.uint8(255 - t.j), out=better),
                                         out=better), out=pick)
        else:
            better = better_than(cells, acc).view(np.uint8)
            np.maximum(pick, np.multiply(better, np.uint8(t.j), out=better), out=pick)
        ufunc(acc, cells, out=acc)
        for sl, values, picks in kept:
            grid_top[:, sl] = values
            grid_picked[:, sl] = picks
    shape = x.shape[:-1] + (out,)
    return top.reshape(shape), picked.reshape(shape)


@functools.lru_cache(maxsize=256)
def _route_plan(axis: Axis) -> tuple[bool, tuple[tuple[int, slice, slice, bool], ...]]:
    """How the gradient goes back along ``axis`` tap by tap: whether the result needs a zero fill (cells no tap
    reads), and for each tap its (j, outputs, input cells, assign) pieces, ``assign`` where no earlier tap
    wrote those cells."""
    written = np.zeros(axis.size, dtype=bool)
    pieces = []
    zero = False
    for t in axis.taps():
        cells = t.positions()
        fresh = ~written[cells]
        n = len(cells)
        cut = int(np.argmin(fresh)) if fresh[0] else int(np.argmax(fresh))  # where the run of fresh flips
        if fresh.all() or not fresh.any():
            parts = [(0, n, bool(fresh[0]))]
        elif not fresh[cut:].any() if fresh[0] else fresh[cut:].all():
            parts = [(0, cut, bool(fresh[0])), (cut, n, not fresh[0])]
        else:  # fresh and written cells interleave: add everything into zeros
            zero = True
            parts = [(0, n, False)]
        for i, k, assign in parts:
            pieces.append((t.j, slice(t.out.start + i, t.out.start + k),
                           slice(t.inp.start + i * t.inp.step, t.inp.start + k * t.inp.step, t.inp.step), assign))
        written[cells] = True
    zero = zero or not written.all()
    if zero:
        pieces = [(j, o, c, False) for j, o, c, _ in pieces]
    return zero, tuple(pieces)


def _route_picked(d: np.ndarray, picked: np.ndarray, pos: int, axis: Axis, before: np.ndarray) -> np.ndarray:
    """Each window's gradient ``d`` back to the cell of the tap it picked along array axis ``pos``, into an array
    shaped and laid out as ``before`` (the reduction's input)."""
    if _phased(d, pos, axis):
        return _route_phased(d, picked, axis, before.shape)
    zero, pieces = _route_plan(axis)
    dx = result_as(before, before.shape, d.dtype)
    if zero:
        dx[...] = 0
    pre = (slice(None),) * pos
    for j, o, c, assign in pieces:
        _route_piece(d[pre + (o,)], picked[pre + (o,)] == j, dx[pre + (c,)], assign)
    return dx


def _route_phased(d: np.ndarray, picked: np.ndarray, axis: Axis, shape: tuple[int, ...]) -> np.ndarray:
    """``_route_picked`` along a last axis split into phases: each tap one pass over the flattened gradient
    shifted by whole windows into its phase (the first tap of a phase assigns it, the others add). A shifted
    pass also reaches outputs the tap does not feed, of a neighbouring row: their pick is never this tap, so
    what they add is 0. The phases are then copied into place, one strided copy each."""
    s = axis.stride
    flat, picks = d.reshape(-1), picked.reshape(-1)
    n = flat.shape[0]
    phases = np.empty((s, n), dtype=d.dtype)
    written = [False] * s
    for t in axis.taps():
        r, q = _phase_of(t, s)
        lo, hi = max(0, -q), min(n, n - q)
        view = phases[r][lo + q: hi + q]
        share = np.multiply(flat[lo:hi], picks[lo:hi] == t.j, out=None if written[r] else view)
        if written[r]:
            np.add(view, share, out=view)
        else:
            phases[r][: lo + q] = 0
            phases[r][hi + q:] = 0
            written[r] = True
    dx = result_array(shape, d.dtype)
    split = dx.reshape(-1, s)
    for r in range(s):
        split[:, r] = phases[r] if written[r] else 0
    return dx


def _route_piece(d: np.ndarray, mask: np.ndarray, view: np.ndarray, assign: bool) -> None:
    if assign:
        np.multiply(d, mask, out=view)
    else:
        np.add(view, d * mask, out=view)


def finite(a: np.ndarray) -> bool:
    """Whether every value of ``a`` is finite (integers always are)."""
    return a.dtype.kind != "f" or bool(np.isfinite(a).all())


def share_of(weight: np.ndarray, values: np.ndarray, exact: bool = False) -> np.ndarray:
    """``weight · values``; with ``exact``, 0 wherever the weight is 0 even for an inf or NaN value (a product
    would give NaN there).

    >>> share_of(np.array([0.0, 1.0]), np.array([np.inf, np.inf]), exact=True).tolist()
    [0.0, inf]
    """
    if exact:
        with np.errstate(invalid="ignore"):  # the products where the weight is 0 are not used
            product = weight * values
        return np.where(weight != 0, product, 0).astype(product.dtype, copy=False)
    return weight * values


def _select_backward(x: np.ndarray, y: np.ndarray, grad: np.ndarray, g: Geometry, ties: str,
                     exact: bool = False) -> np.ndarray:
    """The N-D walk over every tap of the windows (see ``select_backward``), or one strided view a tap where
    the windows tile."""
    if not exact and all(_tiles(a) or _identity(a) for a in g.axes) and any(_tiles(a) for a in g.axes):
        return _select_tiled(x, y, grad, g, ties)
    dx = np.zeros(x.shape, dtype=grad.dtype)
    if ties == "split":
        count = np.zeros(y.shape, dtype=grad.dtype)
        for taps, hit in _hits(x, y, g, "all"):
            add_region(count, outs(taps), hit)
        grad = grad / count
    for n, (taps, hit) in enumerate(_hits(x, y, g, ties)):
        if n == 0 and not exact and _unique(taps) and all(isinstance(t.inp, slice) for t in taps):  # dx is 0 there
            view = region(dx, inps(taps))
            np.multiply(region(grad, outs(taps)), hit, out=view)
        else:
            add_region(dx, inps(taps), share_of(hit, region(grad, outs(taps)), exact), _unique(taps))
    return dx


def _forward(y: Any) -> np.ndarray:
    return y() if callable(y) else y


def _select_tiled(x: np.ndarray, y: np.ndarray, grad: np.ndarray, g: Geometry, ties: str) -> np.ndarray:
    """select_backward where the windows tile the plane exactly: each input cell is one tap of one window, so
    every tap is a strided view of the input and of the result, written once (no zero fill, no scatter)."""
    lead = x.shape[: x.ndim - g.dims]
    (dx, d), taps = _tiled(lead, g, grad.dtype)
    v = x.reshape(d.shape)
    nan = has_nan(y)

    def hit(tap: tuple) -> np.ndarray:
        return same(v[tap], y, nan)

    if ties == "split":
        count = np.zeros(y.shape, dtype=grad.dtype)
        for tap in taps:
            count += hit(tap)
        grad = grad / count
    taken = np.zeros(y.shape, dtype=bool) if ties == "first" else None
    for tap in taps:
        h = hit(tap)
        if taken is not None:
            h &= ~taken
            taken |= h
        np.multiply(h, grad, out=d[tap])
    return dx


def band_picks(planes: np.ndarray, spans: list[list[slice]], arg: Callable[..., np.ndarray] | None,
               best: np.ndarray | None = None) -> np.ndarray:
    """For planes ``(lead…, spatial…)`` (any strides) and windows that are slices (``spans``: each axis's
    windows), the flat plane index of each window's first selected cell, ``(P, windows)`` with the planes in
    row-major order and the windows too: ``arg``'s pick (np.argmax, np.argmin), or the first cell equal to the
    window's value in ``best`` ``(P, windows)``.

    >>> band_picks(np.array([[[1, 5], [5, 2]]]), [[slice(0, 2)], [slice(0, 1), slice(0, 2)]], np.argmax).tolist()
    [[2, 1]]
    """
    dims = len(spans)
    lead, spatial = planes.shape[: planes.ndim - dims], planes.shape[planes.ndim - dims:]
    sizes = [b[0].stop - b[0].start for b in spans]
    if best is None and all(w == slice(i * n, (i + 1) * n) and w.stop <= size for b, n, size in
                            zip(spans, sizes, spatial) for i, w in enumerate(b)):
        return _tile_picks(planes, [len(b) for b in spans], sizes, arg)  # windows one after another, all alike
    windows = list(itertools.product(*(range(len(b)) for b in spans)))
    nan = best is not None and has_nan(best)
    where = np.empty((math.prod(lead), len(windows)), dtype=np.intp)
    for k, o in enumerate(windows):
        window = [b[i] for b, i in zip(spans, o)]
        cells = planes[(Ellipsis, *window)]
        flat = cells.reshape(len(where), -1)
        at = arg(flat, axis=-1) if best is None else same(flat, best[:, k : k + 1], nan).argmax(axis=-1)
        cell = np.unravel_index(at, cells.shape[len(lead):])
        where[:, k] = np.ravel_multi_index(tuple(c + w.start for c, w in zip(cell, window)), spatial)
    return where


def _tile_picks(planes: np.ndarray, counts: list[int], sizes: list[int], arg: Callable[..., np.ndarray]
                ) -> np.ndarray:
    """``band_picks`` where each axis's windows tile it (``counts`` windows of ``sizes`` cells from its first
    cell): the cells copied once into window-major order (each window's cells in a row), then ``arg`` of rows."""
    dims = len(counts)
    first = planes.ndim - dims
    lead = planes.shape[:first]
    split = planes[(Ellipsis, *(slice(0, c * n) for c, n in zip(counts, sizes)))].reshape(
        (*lead, *itertools.chain.from_iterable(zip(counts, sizes))))
    rows = np.ascontiguousarray(split.transpose(*range(first), *range(first, first + 2 * dims, 2),
                                                *range(first + 1, first + 2 * dims, 2)))
    at = arg(rows.reshape(math.prod(lead), math.prod(counts), math.prod(sizes)), axis=-1)
    cell = np.unravel_index(at, sizes)
    corner = np.unravel_index(np.arange(math.prod(counts)), counts)
    return np.ravel_multi_index(tuple(c + k * n for c, k, n in zip(cell, corner, sizes)), planes.shape[first:])


def gradient_at(where: np.ndarray, grad: np.ndarray, shape: tuple[int, ...], out: np.ndarray | None = None
                ) -> np.ndarray:
    """Zeros of ``shape`` ``(P, spatial…)`` with ``grad[p, k]`` added at flat plane index ``where[p, k]``, each
    plane's values added in the order of ``k``. With ``out`` (zeros ``(lead…, spatial…)``, P planes, any memory
    order): added there, through its strides, and returned; an ``out`` of another dtype (float16 for float32
    values) gets each cell's sum rounded once.

    >>> gradient_at(np.array([[3, 3, 0]]), np.array([[1.0, 2.0, 4.0]]), (1, 2, 2)).tolist()
    [[[4.0, 0.0], [0.0, 3.0]]]
    """
    if out is not None:
        run, at = cells_at(out, len(shape) - 1, where)
        if out.dtype == grad.dtype:
            np.add.at(run, at, grad)
        else:  # the cells reached, each one's values summed (in the same order) and rounded once
            cells, inverse = np.unique(at, return_inverse=True)
            sums = np.zeros(len(cells), dtype=grad.dtype)
            np.add.at(sums, inverse.reshape(-1), grad.reshape(-1))
            run[cells] = sums
        return out
    dx = np.zeros((shape[0], math.prod(shape[1:])), dtype=grad.dtype)
    np.add.at(dx, (np.arange(shape[0])[:, None], where), grad)
    return dx.reshape(shape)


def cells_at(a: np.ndarray, dims: int, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``a`` ``(lead…, spatial…)`` (``dims`` spatial axes, strides ≥ 0) and flat plane indices ``where``
    ``(P, K)`` (planes in row-major order): a 1-D view of ``a``'s memory and the places in it of those cells,
    so that ``run[at]`` reads them and ``np.add.at(run, at, v)`` adds to them, in any memory order.

    >>> a = np.arange(8).reshape(2, 2, 2).transpose(0, 2, 1)
    >>> run, at = cells_at(a, 2, np.array([[1], [2]]))
    >>> run[at].tolist(), [a[0].ravel()[1].item(), a[1].ravel()[2].item()]
    ([[2], [5]], [2, 5])
    """
    steps = tuple(s // a.itemsize for s in a.strides)
    first = a.ndim - dims
    span = 1 + sum((n - 1) * s for n, s in zip(a.shape, steps))
    run = np.lib.stride_tricks.as_strided(a, (span,), (a.itemsize,))
    planes, cells = _places(a.shape[:first], steps[:first]), _places(a.shape[first:], steps[first:])
    return run, planes[:, None] + cells[where]


@functools.lru_cache(maxsize=64)
def _places(shape: tuple[int, ...], steps: tuple[int, ...]) -> np.ndarray:
    """The place in memory (in elements) of every index of ``shape`` in row-major order, for ``steps``."""
    places = np.zeros((), dtype=np.intp)
    for n, step in zip(shape, steps):
        places = np.add.outer(places, np.arange(n, dtype=np.intp) * step)
    places = places.reshape(-1)
    places.flags.writeable = False  # (kept by the cache)
    return places


def _select_in_bands(x: np.ndarray, y: Any, grad: np.ndarray, spans: list[list[slice]], ties: str,
                     arg: Callable[..., np.ndarray] | None = None, exact: bool = False) -> np.ndarray:
    """select_backward for windows that are slices (global, adaptive): each window's cells flattened, the
    selected ones found at once for every plane, and the gradient added back over the window. ``y`` may be
    a function giving the forward result: with ``arg`` and ties "first" it is not needed."""
    dims = len(spans)
    lead = x.shape[: x.ndim - dims]
    windows = list(itertools.product(*(range(len(b)) for b in spans)))
    if ties == "first":  # each window's first selected cell takes its gradient
        planes = x.reshape((-1, *x.shape[x.ndim - dims :]))
        best = None if arg is not None else _forward(y).reshape((len(planes), len(windows)))
        where = band_picks(planes, spans, arg, best)
        return gradient_at(where, grad.reshape(len(planes), len(windows)), planes.shape).reshape(x.shape)
    y = _forward(y)
    nan = has_nan(y)
    dx = np.zeros(x.shape, dtype=grad.dtype)
    for o in windows:
        window = (Ellipsis, *(b[i] for b, i in zip(spans, o)))
        cells = x[window]
        hit = same(cells.reshape(lead + (-1,)), y[(Ellipsis, *o)][..., None], nan)
        weight = pick_first(hit, ties).astype(grad.dtype, copy=False)
        view = dx[window]
        np.add(view, share_of(weight, grad[(Ellipsis, *o)][..., None], exact).reshape(cells.shape), out=view)
    return dx


def select_indices(x: np.ndarray, y: np.ndarray, g: Geometry) -> np.ndarray:
    """For each output, the flat index (over its plane's spatial axes) of the first selected cell."""
    idx = np.full(y.shape, -1, dtype=np.int64)
    plane = [a.size for a in g.axes]
    for taps, hit in _hits(x, y, g, "first"):
        flat = np.zeros((), dtype=np.int64)
        for t, n in zip(taps, plane):
            flat = np.add.outer(flat * n, t.positions())
        set_region(idx, outs(taps), np.where(hit, flat, region(idx, outs(taps))))
    return idx


def gather_windows(x: np.ndarray, g: Geometry, fill: object) -> tuple[np.ndarray, np.ndarray]:
    """Every window's cells along a new last axis, in row-major window order: ``(…, out…, taps)``,
    with ``fill`` where a tap falls on padding; and the mask of real cells.

    >>> from poolcli.engine.geometry import WindowSpec
    >>> cells, real = gather_windows(np.arange(4.0), WindowSpec(kernel=2, padding=1).bind((4,)), np.nan)
    >>> cells.tolist(), real.tolist()
    ([[nan, 0.0], [1.0, 2.0], [3.0, nan]], [[False, True], [True, True], [True, False]])
    """
    taps = list(g.taps())
    out = x.shape[: x.ndim - g.dims] + g.out_spatial
    cells = np.full(out + (len(taps),), fill, dtype=x.dtype)
    real = np.zeros(g.out_spatial + (len(taps),), dtype=bool)
    for i, tap in enumerate(taps):
        set_region(cells[..., i], outs(tap), region(x, inps(tap)))
        set_region(real[..., i], outs(tap), True)
    return cells, real


def scatter_windows(w: np.ndarray, g: Geometry, shape: tuple[int, ...]) -> np.ndarray:
    """The adjoint of ``gather_windows``: each input cell gets the sum of its entries in ``w`` (…, out…, taps)."""
    dx = np.zeros(shape, dtype=w.dtype)
    for i, tap in enumerate(g.taps()):
        add_region(dx, inps(tap), region(w[..., i], outs(tap)), all(t.unique for t in tap))
    return dx


def pick_first(hit: np.ndarray, ties: str) -> np.ndarray:
    """Along the last axis: the first True only (``first``), each True (``all``), or each True sharing 1 (``split``).

    >>> pick_first(np.array([False, True, True]), "split").tolist()
    [0.0, 0.5, 0.5]
    """
    if ties == "first":
        first = np.zeros(hit.shape, dtype=bool)
        np.put_along_axis(first, hit.argmax(axis=-1)[..., None], True, axis=-1)
        return (first & hit).astype(np.float64)
    if ties == "split":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(hit / hit.sum(axis=-1, keepdims=True))
    return hit.astype(np.float64)
