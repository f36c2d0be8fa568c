"""The pooling engine: pure NumPy, arrays in and arrays out; no files, no printing.

>>> import numpy as np
>>> x = np.arange(1, 17).reshape(4, 4)
>>> g = WindowSpec(kernel=2).bind(x.shape)
>>> run_forward(x, g, "max")
array([[ 6,  8],
       [14, 16]])
>>> run_backward(x, g, np.ones((2, 2)), "max")
array([[0., 0., 0., 0.],
       [0., 1., 0., 1.],
       [0., 0., 0., 0.],
       [0., 1., 0., 1.]])
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from poolcli.engine.base import TIES, Op, Option, Params, Picture
from poolcli.engine.blocks import Layout, default_threads, run_blocks, unread
from poolcli.engine.geometry import (
    PAD_MODES,
    WINDOW_OPTIONS,
    AdaptiveAxis,
    Axis,
    Geometry,
    WindowSpec,
    caller_shape,
    describe,
    engine_shape,
)
from poolcli.engine.indices import to_layout
from poolcli.engine.registry import ALIASES, DEFAULT, OPERATORS, OPS, OPTIONS, declared_by, declaring, get_op
from poolcli.errors import UsageError

Allocate = Callable[[tuple[int, ...], np.dtype], np.ndarray]  # makes a result array: (shape, dtype) -> array

__all__ = [
    "ALIASES",
    "DEFAULT",
    "OPERATORS",
    "OPS",
    "OPTIONS",
    "PAD_MODES",
    "TIES",
    "WINDOW_OPTIONS",
    "AdaptiveAxis",
    "Axis",
    "Geometry",
    "Op",
    "Option",
    "Params",
    "Picture",
    "Recipe",
    "WindowSpec",
    "bind",
    "declared_by",
    "declaring",
    "describe",
    "get_op",
    "leading_independent",
    "run_backward",
    "run_forward",
    "run_indices",
    "run_more_gradients",
    "to_caller",
    "to_engine",
]


def bind(op: str, shape: tuple[int, ...], spec: WindowSpec, params: Params = Params(), **arrays: np.ndarray):
    """The plan of operator ``op`` for an input of ``shape``: a Geometry for windowed operators.

    ``arrays`` are the extra inputs some operators take: ``indices`` (unpool), ``other`` (bilinear).
    A channels-last input is moved here, once, for every operator: operators see channels before
    the spatial axes, and the plan's ``out_shape`` is the caller's.

    >>> bind("kmax", (4, 4), WindowSpec(), Params(k=2, axis=0)).out_shape
    (2, 4)
    >>> bind("upsample", (1, 2, 2, 3), WindowSpec(channels_last=True), Params(scale=2)).out_shape
    (1, 4, 4, 3)
    """
    given = {k: v for k, v in arrays.items() if v is not None}
    shape = tuple(int(n) for n in shape)
    if not given:  # a plan is plain immutable data: one made for the same question is handed out again
        try:
            hash((op, shape, spec, params))
            plain = not any(isinstance(v, np.ndarray) for v in params.given.values())
        except TypeError:  # an option given as a list: nothing to look up by
            plain = False
        if plain:
            return _bind_plain(op, shape, spec, params)
    return _bind(op, shape, spec, params, given)


@functools.lru_cache(maxsize=64)
def _bind_plain(op: str, shape: tuple[int, ...], spec: WindowSpec, params: Params) -> Any:
    """``bind`` without extra arrays, made once per question (about 90 µs of a call on a small input)."""
    return _bind(op, shape, spec, params, {})


def _bind(op: str, shape: tuple[int, ...], spec: WindowSpec, params: Params, given: dict[str, np.ndarray]) -> Any:
    pool = get_op(op)
    pool.check(params)
    unknown = set(given) - set(pool.arrays)
    if unknown:
        flags = {o.name: o.cli_flag for options in OPTIONS.values() for o in options}
        raise UsageError(f"{', '.join(flags.get(n, n) for n in sorted(unknown))} does not go with --op {pool.name}")
    if pool.windowed or not pool.spatial_layout or spec is None or not spec.channels_last:
        return pool.bind(shape, spec, params, **given)
    dims = pool.spatial(shape, spec, params)
    like_input = {o.name for o in pool.options if o.like_input}  # the others (deconv's weights) keep their layout
    moved = {k: _moved(np.asarray(v), dims) if k in like_input else v for k, v in given.items()}
    plan = pool.bind(engine_shape(shape, dims), dataclasses.replace(spec, channels_last=False, dims=dims), params,
                     **moved)
    out = caller_shape(plan.out_shape, plan.dims) if plan.moves_output else plan.out_shape
    return dataclasses.replace(plan, out_shape=out, channels_last=True)


@dataclasses.dataclass(frozen=True, eq=False)
class Recipe:
    """What to pool with: the operator's name, the window, the options and the extra input arrays.
    Plain data (picklable), for callers that pool many inputs the same way (images, batches).

    >>> r = Recipe("avg", WindowSpec(kernel=2))
    >>> r.forward(np.ones((4, 4)), r.bind((4, 4))).shape
    (2, 2)
    """

    op: str
    spec: WindowSpec
    params: Params = dataclasses.field(default_factory=Params)
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    threads: int | None = None  # None: every core; a batch of worker processes gives each 1

    @property
    def operator(self) -> Op:
        return get_op(self.op)

    def bind(self, shape: tuple[int, ...], spec: WindowSpec | None = None) -> Any:
        """The plan for an input of this shape (with another WindowSpec if given)."""
        return bind(self.op, shape, self.spec if spec is None else spec, self.params, **self.arrays)

    def forward(self, x: np.ndarray, plan: Any) -> np.ndarray:
        return run_forward(x, plan, self.op, self.params, self.threads)


def _moved(a: np.ndarray, dims: int) -> np.ndarray:
    return np.moveaxis(a, -1, a.ndim - dims - 1) if a.ndim > dims else a


def check_array(x: np.ndarray) -> np.ndarray:
    """Accept real numbers only (ints, floats, bools): ``check_array(np.array([1j]))`` raises UsageError."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise UsageError(f"the input holds {x.dtype} values; poolcli pools real numbers (ints or floats)")
    return x


def _moves(plan: Any, output: bool) -> bool:
    return bool(getattr(plan, "channels_last", False)) and (not output or getattr(plan, "moves_output", True))


def to_engine(a: np.ndarray, plan: Any, output: bool = False) -> np.ndarray:
    """A channels-last array (an input, or with ``output`` an output-shaped one) as a channels-first view."""
    return np.moveaxis(a, -1, a.ndim - plan.dims - 1) if _moves(plan, output) else a


def to_caller(a: np.ndarray, plan: Any, output: bool = True) -> np.ndarray:
    """The inverse of ``to_engine``: channels back after the spatial axes."""
    return np.moveaxis(a, a.ndim - plan.dims - 1, -1) if _moves(plan, output) else a


def _one_plane(g: Geometry) -> Geometry | None:
    """For an input with no planes (a zero-size batch or channel axis): the same windows over one plane,
    to learn the result's dtype; None when the plan is not a Geometry."""
    if not isinstance(g, Geometry) or not g.lead:
        return None
    return dataclasses.replace(g, lead=(1,) * len(g.lead))


def _empty_like_result(x: np.ndarray, g: Geometry, run: Callable[..., Any]) -> Any:
    """The empty result of the right shape and dtype for an input with no planes, as PyTorch gives."""
    one = _one_plane(g)
    shape = caller_shape(one.in_shape, one.dims) if one.channels_last else one.in_shape
    results = run(np.zeros(shape, dtype=x.dtype), one)
    if isinstance(results, tuple):
        return tuple(np.empty(g.out_shape, dtype=r.dtype) for r in results)
    return np.empty(g.out_shape, dtype=results.dtype)


def _run(fn: Callable[..., Any], plan: Any, inputs: list[np.ndarray], input_shaped: list[bool], threads: int | None,
         strided: bool = False, allocate: Allocate | None = None, block_bytes: int | None = None,
         widen: bool = True, pool: Op | None = None) -> Any:
    """``fn(*inputs, plan)`` on engine-layout views, giving the caller's layout: blocks of planes (see ``blocks``)
    on ``threads`` threads (None: every core). A windowed plan is cut along its planes; another operator's
    (``pool``) along its leading independent axes. Float16 is computed in float32 if ``widen``.
    ``allocate(shape, dtype)`` makes the result arrays (see ``run_blocks``)."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"--threads {threads}: give 1 or more threads")
    layout = plan if isinstance(plan, Geometry) else _layout(pool, plan)
    return run_blocks(fn, layout, inputs, input_shaped, default_threads() if threads is None else threads,
                      block_bytes, strided, allocate, widen)


def leading_independent(pool: Op, plan: Any) -> int:
    """How many leading axes of the plan's input (engine layout) ``pool`` pools each on its own: the axes it
    may be cut along (kmax: those before its axis; lrn: those before the channels)."""
    independent = set(pool.independent_axes(plan))
    k = 0
    while k < len(plan.in_shape) and k in independent:
        k += 1
    return k


def _layout(pool: Op, plan: Any) -> Layout:
    """An operator without windows, to the block executor: its leading independent axes are cut."""
    k = leading_independent(pool, plan)
    moves = bool(plan.channels_last)
    # an output larger than the input (unpool) costs more to copy out of small blocks than they gain
    grows = math.prod(plan.engine_out) > math.prod(plan.in_shape)
    grows = grows and pool.block_share == 1.0  # an operator that asks for smaller blocks gets them
    return Layout(tuple(plan.in_shape[:k]), tuple(plan.in_shape[k:]), plan.dims, moves,
                  moves and plan.moves_output, lambda lead, index: pool.block_plan(plan, lead, index), big=grows,
                  share=pool.block_share, side_by_side=pool.side_by_side(plan))


def smallest_block(op: str, plan: Any, dtype: np.dtype) -> tuple[int, str]:
    """The bytes of the smallest block the executor can give ``op`` (one plane of a windowed operator; the axes
    after the independent ones of another, bilinear's whole sample), in compute dtype, and what it is.

    >>> smallest_block("bilinear", bind("bilinear", (2, 8, 64, 64), WindowSpec()), np.dtype(np.float32))
    (131072, 'one (8, 64, 64) sample')
    """
    from poolcli.engine.blocks import widened

    size = widened(np.dtype(dtype)).itemsize
    if isinstance(plan, Geometry):
        cells = plan.in_shape[len(plan.in_shape) - plan.dims:]
        return int(np.prod(cells, dtype=np.int64)) * size, f"one {cells} plane"
    k = leading_independent(get_op(op), plan)
    rest = tuple(plan.in_shape[k:])
    return int(np.prod(rest, dtype=np.int64)) * size, f"one {rest} {'sample' if k else 'array, whole'}"


def _deliver(results: Any, allocate: Allocate | None) -> Any:
    """Results computed whole, copied into arrays from ``allocate`` when one is given."""
    if allocate is None:
        return results
    made = tuple(allocate(r.shape, r.dtype) for r in (results if isinstance(results, tuple) else (results,)))
    for target, r in zip(made, results if isinstance(results, tuple) else (results,)):
        np.copyto(target, r)
    return made if isinstance(results, tuple) else made[0]


def run_forward(x: np.ndarray, g: Geometry, op: str = DEFAULT, params: Params = Params(),
                threads: int | None = None, allocate: Allocate | None = None,
                block_bytes: int | None = None) -> np.ndarray:
    """Pool ``x`` (the caller's layout) over the windows of ``g`` with operator ``op``, on ``threads`` threads
    (None: every core; the result is the same bit for bit whatever the count), in blocks of about
    ``block_bytes`` (default ``blocks.BLOCK_BYTES``). ``allocate(shape, dtype)`` makes the output array (for
    instance a memory-mapped .npy file), which is then filled block by block.

    An input with a zero-size batch or channel axis gives an empty result of the right shape.
    """
    x = check_array(x)
    if x.size == 0 and _one_plane(g) is not None:
        return _deliver(_empty_like_result(x, g, lambda a, one: run_forward(a, one, op, params)), allocate)
    pool = get_op(op)
    return _run(lambda a, plan: pool.forward(a, plan, params), g, [to_engine(x, g)], [False], threads,
                pool.reads_strided(g, params), allocate, block_bytes, pool.widens_half(params), pool)


def run_indices(x: np.ndarray, g: Geometry, op: str = DEFAULT, threads: int | None = None,
                allocate: Allocate | None = None, block_bytes: int | None = None,
                params: Params = Params()) -> tuple[np.ndarray, np.ndarray]:
    """Max (or min, fractional) pooling with the index of each selected cell: flat per plane (PyTorch's
    return_indices), or as ``params.index_layout``/``storage_order`` say (ONNX's conventions; see ``indices``)."""
    x = check_array(x)
    pool = get_op(op)
    if not hasattr(pool, "indices"):
        which = " or ".join(o.name for o in OPERATORS if hasattr(o, "indices"))
        raise UsageError(f"--indices goes with --op {which}, not {op}")
    if x.size == 0 and _one_plane(g) is not None:
        return _deliver(_empty_like_result(x, g, lambda a, one: run_indices(a, one, op)), allocate)
    y, idx = _run(lambda a, plan: pool.indices(a, plan, params), g, [to_engine(x, g)], [False, False], threads, False,
                  allocate, block_bytes,
                  pool=pool)
    layout, order = params.index_layout, params.storage_order
    if (layout, order) != ("plane", "row"):  # rewritten in place, a few planes at a time (idx may be a mapped file)
        view = to_engine(idx, g, output=True)
        sizes = tuple(g.in_shape[len(g.in_shape) - g.dims:])
        lead = view.shape[: view.ndim - g.dims]
        flat = view.reshape((-1, *view.shape[view.ndim - g.dims:])) if view.flags.c_contiguous else None
        if flat is None or not lead:
            view[...] = to_layout(view, sizes, layout, order)
        else:
            for start in range(0, len(flat), 4096):
                part = flat[start: start + 4096]
                part[...] = to_layout(part, sizes, layout, order, first=start)
    return y, idx


def gradient_dtype(dtype: np.dtype) -> np.dtype:
    """Gradients are floats: a float input's dtype, else float64."""
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def run_backward(
    x: np.ndarray, g: Geometry, grad: np.ndarray | None = None, op: str = DEFAULT, params: Params = Params(),
    threads: int | None = None, allocate: Allocate | None = None, block_bytes: int | None = None,
) -> np.ndarray:
    """Gradient of ``sum(forward(x) * grad)`` with respect to ``x``; ``grad`` defaults to ones. ``threads``,
    ``allocate`` and ``block_bytes`` as for ``run_forward``."""
    x = check_array(x)
    pool = get_op(op)
    if not pool.differentiable:
        raise UsageError(f"--op {pool.name} has no gradient ({pool.summary}); backward goes with the other "
                         "operators")
    dtype = gradient_dtype(x.dtype)
    if grad is None:  # ones, as a view: no memory, however large the output
        grad = np.broadcast_to(np.ones((), dtype=dtype), g.out_shape)
    grad = check_array(grad)
    if grad.shape != g.out_shape:
        raise UsageError(
            f"the gradient has shape {grad.shape} but this pooling outputs {g.out_shape}; "
            "use the gradient of this output, or the forward run's window options"
        )
    grad = grad.astype(dtype, copy=False)
    if x.size == 0:
        return _deliver(np.zeros(x.shape, dtype=dtype), allocate)
    xe = to_engine(x, g)
    if not pool.backward_reads_input(g, params):  # only its shape: nothing of it is copied
        xe = unread(xe.shape, xe.dtype)
    dx = _run(lambda a, gr, plan: pool.backward(a, plan, gr, params), g,
              [xe, to_engine(grad, g, output=True)], [True], threads, pool.backward_reads_strided(g, params),
              allocate, block_bytes,
              pool.widens_half(params, backward=True, plan=g), pool)
    return dx if dx.dtype == dtype else dx.astype(dtype)


def run_more_gradients(x: np.ndarray, g: Any, grad: np.ndarray | None = None, op: str = DEFAULT,
                       params: Params = Params()) -> dict[str, np.ndarray]:
    """The gradients ``op``'s backward gives besides the input's, by name (``Op.more_gradients``): bilinear's
    to its ``--with`` array (``with``), gem's to its exponent (``p``); empty for the others.

    >>> x = np.arange(1.0, 5.0).reshape(1, 2, 2)
    >>> sorted(run_more_gradients(x, bind("gem", x.shape, WindowSpec(kernel=2)), op="gem"))
    ['p']
    """
    x = check_array(x)
    pool = get_op(op)
    dtype = gradient_dtype(x.dtype)
    grad = np.ones(g.out_shape, dtype=dtype) if grad is None else check_array(grad).astype(dtype, copy=False)
    found = pool.more_gradients(to_engine(x, g), g, to_engine(grad, g, output=True), params)
    like = {n for o in pool.options if o.like_input for n in (o.name, o.cli_flag.lstrip("-"))}  # --with: "with"
    return {name: to_caller(a, g, output=False) if name in like else a for name, a in found.items()}
