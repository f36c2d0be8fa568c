"""Fast ways to walk the taps of a Geometry: whole-array NumPy passes, never per element.

- ``reduce_axis``: reduce the windows along one axis, one ufunc pass per kernel tap over
  strided views, or, for long kernels, log-doubling (van Herk/Gil-Werman style) blocks;
  windows of several axes are reduced one axis at a time (max, min and sums separate).
- ``scatter_axis``: the adjoint of a sum along one axis (backward of avg and lp).
- ``region`` / ``add_region``: read or accumulate one N-D tap's cells, for the
  non-separable arg-max selection.

Padding is never materialised on the tap paths: each tap reads only the real cells it
reaches, so an average's zero padding and a max's "lowest value" padding cost nothing.

>>> from poolcli.engine.geometry import Axis
>>> reduce_axis(np.arange(1, 7), 0, Axis(6, kernel=2, stride=2), np.add, 0)
array([ 3,  7, 11])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from poolcli.engine.geometry import AnyAxis, Axis, Selection, Tap


def reduce_axis(x: np.ndarray, pos: int, axis: AnyAxis, ufunc: np.ufunc, fill: object) -> np.ndarray:
    """Reduce every window along array axis ``pos`` with ``ufunc`` (np.maximum, np.minimum or np.add).

    ``fill`` is the identity of the reduction, used only for outputs that no tap reaches
    on a real cell (they cannot exist after Axis.check, but a partial tap needs a start).
    """
    if isinstance(axis, Axis) and _doubling_pays(axis):
        return _reduce_doubling(x, pos, axis, ufunc, fill)
    if pos == x.ndim - 1 and _tiles(axis) and x.flags.c_contiguous:
        # Strided ufunc loops over the last axis are slow; a transposing copy puts each
        # tap in a contiguous row, and one reduction over rows runs vectorised.
        rows = x.reshape(-1, axis.kernel).T.copy()
        return ufunc.reduce(rows, axis=0).reshape(x.shape[:-1] + (axis.out,))
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
    dx = np.zeros(shape, dtype=g.dtype)
    pre = (slice(None),) * pos
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
