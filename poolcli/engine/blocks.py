"""The block executor: an operator run over blocks of independent planes, each copied once into the dtype
and layout its kernels are fastest on.

A block is a rectangle of the operator's independent (plane) axes with every spatial cell. Each block is
copied, while it sits in cache, into a C-ordered array of the compute dtype (float16 is computed in
float32 and rounded once at the end, as PyTorch's CPU kernels do); Fortran-ordered, strided and
channels-last inputs therefore cost one cache-resident copy instead of slow strided passes. The results
are written straight into the caller's output array. Blocks are independent, so they may run on a thread
pool (NumPy releases the GIL in its loops); the result is the same bit for bit whatever the thread count.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> from poolcli.engine.ops import Max, Params
>>> x = np.asfortranarray(np.arange(32, dtype=np.float16).reshape(2, 4, 4))
>>> g = WindowSpec(kernel=2).bind(x.shape)
>>> y = run_blocks(lambda a, plan: Max().forward(a, plan, Params()), g, [x], [False], block_bytes=64)
>>> y.dtype, y[1].tolist()
(dtype('float16'), [[21.0, 23.0], [29.0, 31.0]])
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from poolcli.engine.geometry import Geometry, caller_shape
from poolcli.engine.half import to_float16, to_float32
from poolcli.engine.kernels import fortran_planes, memory_order, one_value, results_into, same_array, whole

BLOCK_BYTES = 1 << 21  # compute bytes of one input per block: its kernels' intermediates stay in cache


def _steady_malloc() -> None:
    """Fix glibc's malloc thresholds where its dynamic ones end up after the first large free (mmap above
    32 MiB, trim above 64 MiB), so that each block's scratch arrays reuse the memory the last block freed
    instead of being mapped, faulted in and unmapped again; with several threads (an arena each) the
    mapping and unmapping otherwise costs more than the pooling. Large arrays are still mapped and returned."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)  # the process's own C library: no search, no subprocess
    except OSError:  # pragma: no cover - no C library to ask
        return
    if hasattr(libc, "mallopt"):  # glibc (musl has none)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


_steady_malloc()


def default_threads() -> int:
    """The cores this process may run on (``os.sched_getaffinity`` where the system has it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


@functools.lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    """A thread pool kept for the process's life (starting threads for every call costs more than small work)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="poolcli")


if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads: it starts its own pools
    os.register_at_fork(after_in_child=_pool.cache_clear)


@functools.lru_cache(maxsize=16)
def _nothing(dtype: np.dtype) -> np.ndarray:
    return np.zeros((), dtype=dtype)


def unread(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A stand-in for an input the operator does not read (only its shape and dtype): zeros, in no memory. The
    executor cuts it into blocks without copying anything.

    >>> a = unread((2, 3), np.dtype(np.float16))
    >>> a.shape, a.dtype, a.strides
    ((2, 3), dtype('float16'), (0, 0))
    """
    return np.broadcast_to(_nothing(np.dtype(dtype)), shape)


def _is_unread(a: np.ndarray) -> bool:
    return a.base is not None and a.base is _nothing(a.dtype)


def _one_value(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """An unread stand-in, or one broadcast value, in ``dtype``: converted once and still broadcast, never made
    whole.

    >>> b = _one_value(np.broadcast_to(np.float16(0.5), (2, 3)), np.dtype(np.float32))
    >>> b.dtype, b.strides, float(b[1, 2])
    (dtype('float32'), (0, 0), 0.5)
    """
    if _is_unread(a):
        return unread(a.shape, dtype)
    return np.broadcast_to(cast(np.array(a[(0,) * a.ndim]).reshape(1), dtype)[0], a.shape)


def widened(dtype: np.dtype) -> np.dtype:
    """The dtype kernels run in: float16 in float32 (NumPy's float16 loops are slow and round every step)."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def blocks(lead: Sequence[int], strides: Sequence[int], per_item: int, budget: int,
           cuttable: Sequence[bool] | None = None) -> Iterator[tuple[slice, ...]]:
    """Index tuples over the ``lead`` axes cutting them into blocks of about ``budget`` bytes, ``per_item`` bytes
    an item; the axis with the largest stride is cut first, so each block is as contiguous as the input allows.
    Axes not ``cuttable`` stay whole.

    >>> [b for b in blocks((2, 3), (24, 8), 8, 24)]
    [(slice(0, 1, None), slice(0, 3, None)), (slice(1, 2, None), slice(0, 3, None))]
    >>> len(list(blocks((4, 3), (8, 32), 8, 16)))  # Fortran order: the second axis is cut first
    6
    """
    whole = [i for i in range(len(lead)) if cuttable is not None and not cuttable[i]]
    per_item *= math.prod(lead[i] for i in whole)
    order = sorted((i for i in range(len(lead)) if i not in whole), key=lambda i: -abs(strides[i]))
    per_block = max(1, budget // max(1, per_item))
    # The outermost axes cut one index at a time, then one axis cut in chunks, the rest whole.
    inner = 1
    split = len(order)
    for k in reversed(range(len(order))):
        if inner * lead[order[k]] > per_block:
            split = k
            break
        inner *= lead[order[k]]
    else:
        yield tuple(slice(0, n) for n in lead)
        return
    step = max(1, per_block // inner)
    outer = [range(lead[i]) for i in order[:split]]
    cut = order[split]
    for head in itertools.product(*outer):
        for start in range(0, lead[cut], step):
            index = [slice(0, n) for n in lead]
            for i, v in zip(order[:split], head):
                index[i] = slice(v, v + 1)
            index[cut] = slice(start, min(start + step, lead[cut]))
            yield tuple(index)


def cast(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``a`` as a C-ordered array of ``dtype`` (``a`` itself if it is one already); float16 to and from float32 by
    the vectorised casts of ``half`` (NumPy's are element by element), with the same bits.

    >>> cast(np.array([[1.5, 2.0]], dtype=np.float16).T, np.dtype(np.float32)).tolist()
    [[1.5], [2.0]]
    """
    if a.dtype == np.float16 and dtype == np.float32:
        return to_float32(np.ascontiguousarray(a))
    if a.dtype == np.float32 and dtype == np.float16:
        return to_float16(a)
    return np.ascontiguousarray(a, dtype=dtype)


def _store(target: np.ndarray, values: np.ndarray) -> None:
    """``target[...] = values``, float32 rounded into a float16 target by ``half.to_float16``."""
    if target.dtype == np.float16 and values.dtype == np.float32 and target.shape == values.shape:
        to_float16(values, out=target)
    else:
        target[...] = values


def _from_fortran(a: np.ndarray, first: int, dtype: np.dtype) -> np.ndarray:
    """A Fortran-ordered array in C order and ``dtype``: ``kernels.fortran_planes`` (each plane's cells brought
    together in tiles that stay in cache), then each group's axes reversed in cache and cast in one pass, on
    the narrower data. NumPy's direct copy walks the last axis at the largest stride: 2-5 times slower on 2 MiB
    to 128 MiB inputs.

    >>> a = np.asfortranarray(np.arange(24.0).reshape(2, 3, 4))
    >>> b = _from_fortran(a, 1, a.dtype)
    >>> b.flags.c_contiguous, np.array_equal(a, b)
    (True, True)
    """
    return cast(fortran_planes(a, first), dtype)


def _inner_planes(x: np.ndarray, first: int, order: tuple[int, ...]) -> int:
    """How many planes sit side by side innermost in memory (channels-last: C; Fortran order: all of them)."""
    run = 1
    for axis in reversed(order):
        if axis >= first:
            break
        run *= x.shape[axis]
    return run


STRIDED_RUN = 16  # planes side by side from which an operator reading strided views beats a C-ordered copy


def _slabs(first: int, order: tuple[int, ...]) -> bool:
    """Whether the leading axes are the outermost in memory, in order: every block is then one contiguous slab
    (a channels-last input to an operator pooling whole samples), read in place at no cost.

    >>> _slabs(1, (0, 2, 3, 1)), _slabs(1, (3, 2, 1, 0))
    (True, False)
    """
    return first > 0 and order[:first] == tuple(range(first))


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the executor needs of a plan: the leading axes it may cut (engine layout) and the rest of the
    input's shape, how results go back to a channels-last caller, and the plan of one block."""

    lead: tuple[int, ...]
    rest: tuple[int, ...]
    dims: int
    moves_in: bool  # input-shaped results (gradients) go back to channels-last
    moves_out: bool  # output-shaped results do
    sub: Callable[[tuple[int, ...], tuple[slice, ...]], Any]  # (block lead, block index) -> the block's plan
    big: bool = False  # blocks 16 times larger (global pooling keeps no intermediates; unpooling grows)
    share: float = 1.0  # the block budget times this for an input over 4 budgets (an operator whose intermediates
    # are larger than its input); a smaller input is one block
    side_by_side: int | None = None  # leading axes whose values side by side innermost may be read in place, if
    # more than ``lead`` (see Op.side_by_side)

    @classmethod
    def of(cls, g: Geometry) -> Layout:
        moves = g.channels_last and bool(g.lead)
        return cls(g.lead, g.in_shape[len(g.lead):], g.dims, moves, moves,
                   g.block, whole(g))


def run_blocks(
    fn: Callable[..., Any],
    g: Geometry | Layout,
    inputs: Sequence[np.ndarray],
    input_shaped: Sequence[bool],
    threads: int = 1,
    block_bytes: int | None = None,
    strided: bool = False,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray] | None = None,
    widen: bool = True,
) -> Any:
    """``fn(*blocks, plan)`` over blocks of the plane axes of ``g`` (a Geometry, or the Layout of another plan);
    its result(s) assembled in the caller's layout.

    ``inputs`` are engine-layout views whose leading axes are ``g.lead``; ``input_shaped[i]`` says whether
    result ``i`` has the input's spatial shape (a gradient) rather than the output's. A float16 first
    input is computed in float32 and its float32 results are returned as float16. With ``strided`` (the
    operator reads any memory order at full speed) an input whose planes lie side by side in memory is
    handed over as views, cut only along the axes outside its cells in memory. ``allocate(shape, dtype)``, if
    given, makes each result array (the caller's layout), e.g. a memory-mapped file: the results are written
    into it block by block and never held whole in memory. Without ``widen`` float16 stays float16.
    """
    layout = g if isinstance(g, Layout) else Layout.of(g)
    x = inputs[0]
    read = [a for a in inputs if not _is_unread(a)]
    shown = read[0] if read else x  # the memory order blocks follow: the first input read
    first = len(layout.lead)

    def compute_dtype(dtype: np.dtype) -> np.dtype:
        return widened(dtype) if widen else np.dtype(dtype)

    dtype = compute_dtype(x.dtype)
    order = memory_order(shown) if not shown.flags.c_contiguous else None
    cuttable = [True] * first
    planes = first if layout.side_by_side is None else layout.side_by_side
    if strided and order is not None and (_inner_planes(shown, planes, order) >= STRIDED_RUN or _slabs(first, order)):
        outside = min(order.index(i) for i in range(first, x.ndim))  # the outermost spatial axis in memory
        cuttable = [order.index(i) < outside for i in range(first)]

        def read(a: np.ndarray) -> np.ndarray:
            if a.dtype == np.float16 and compute_dtype(a.dtype) == np.float32:
                return to_float32(a)  # in the input's own memory order
            return a.astype(compute_dtype(a.dtype), copy=False)
    else:
        if shown.flags.f_contiguous and not shown.flags.c_contiguous:
            # transposed whole, split between planes and cells: a block's planes are spread over all of a
            # Fortran-ordered array (converted block by block, 128 MiB took 25% longer)
            split = x.ndim - layout.dims if 0 < x.ndim - layout.dims < x.ndim else first
            inputs = [_from_fortran(a, split, compute_dtype(a.dtype)) if a.flags.f_contiguous else a for a in inputs]

        def read(a: np.ndarray) -> np.ndarray:
            return cast(a, compute_dtype(a.dtype))

    def convert(a: np.ndarray) -> np.ndarray:
        if _is_unread(a) or one_value(a):  # a stand-in, or one value: still one value
            return _one_value(a, compute_dtype(a.dtype))
        return read(a)
    plane = math.prod(x.shape[first:]) * dtype.itemsize
    budget = BLOCK_BYTES if block_bytes is None else block_bytes
    if block_bytes is None and layout.big and allocate is None:  # larger blocks, fewer calls (in memory only)
        budget *= 16
    if block_bytes is None and layout.share != 1.0:  # smaller blocks where they pay: a large input (a small one
        total = math.prod(x.shape) * dtype.itemsize  # is one block, with no copying out)
        budget = max(1, int(budget * layout.share)) if total > 4 * BLOCK_BYTES else max(total, budget)
    cuts = list(blocks(layout.lead, shown.strides[:first], plane, budget, cuttable)) if first else [()]
    outputs: list[np.ndarray] = []
    views: list[np.ndarray] = []

    def one(index: tuple[slice, ...]) -> Any:
        parts = [convert(a[index]) for a in inputs]
        target = views[0][index] if len(views) == 1 else None  # (a kernel may write its result there)
        with results_into(target):
            return fn(*parts, layout.sub(parts[0].shape[:first], index))  # the block's plan knows where it starts

    def put(index: tuple[slice, ...], results: Any) -> None:
        for view, r in zip(views, results if isinstance(results, tuple) else (results,)):
            target = view[index]
            if not same_array(target, r):
                _store(target, r)

    parallel = threads > 1 and len(cuts) - 1 >= 2 * threads
    # while the first block shows the results' shapes and dtypes, the other threads start on the next blocks
    early = [(index, _pool(threads).submit(one, index)) for index in cuts[1:threads]] if parallel else []
    try:
        head = one(cuts[0])
    except BaseException:
        for _, future in early:
            future.cancel()
        raise
    heads = head if isinstance(head, tuple) else (head,)

    def rounded(dtype: np.dtype) -> np.dtype:  # the float32 results of a float16 input are float16
        return np.dtype(np.float16) if x.dtype == np.float16 and dtype == np.float32 else np.dtype(dtype)

    def moves(shaped: bool) -> bool:
        return layout.moves_in if shaped else layout.moves_out

    if len(cuts) == 1 and allocate is None:  # one block: its results are the output, in their own memory order
        results = tuple(cast(r, rounded(r.dtype)) if rounded(r.dtype) != r.dtype else r for r in heads)
        results = tuple(np.array(r) if one_value(r) else r for r in results)  # a broadcast made whole
        results = tuple(np.moveaxis(r, r.ndim - layout.dims - 1, -1) if moves(shaped) else r
                        for r, shaped in zip(results, input_shaped))
        return results if isinstance(head, tuple) else results[0]
    make = allocate or (lambda shape, dtype: np.empty(shape, dtype=dtype))
    for r, shaped in zip(heads, input_shaped):
        shape = layout.lead + (layout.rest if shaped else r.shape[first:])
        if moves(shaped):
            out = make(caller_shape(shape, layout.dims), rounded(r.dtype))
            views.append(np.moveaxis(out, -1, out.ndim - layout.dims - 1))
        else:
            out = make(shape, rounded(r.dtype))
            views.append(out)
        outputs.append(out)
    put(cuts[0], head)
    rest = cuts[1 + len(early):]
    if parallel:  # each worker writes its own block: disjoint views, no lock
        futures = [_pool(threads).submit(lambda index: put(index, one(index)), index) for index in rest]
        try:
            for index, future in early:
                put(index, future.result())
            for future in futures:
                future.result()
        except BaseException:  # an error, or Ctrl-C: the blocks not started are dropped, not run on to the end
            for future in futures + [future for _, future in early]:
                future.cancel()
            raise
    else:
        for index in rest:
            put(index, one(index))
    return tuple(outputs) if isinstance(head, tuple) else outputs[0]
