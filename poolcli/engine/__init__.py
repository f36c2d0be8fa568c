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
from collections.abc import Callable
from typing import Any

import numpy as np

from poolcli.engine.geometry import PAD_MODES, WINDOW_OPTIONS, AdaptiveAxis, Axis, Geometry, WindowSpec, describe
from poolcli.engine.geometry import to_caller as caller_shape
from poolcli.engine.ops import ALIASES, OPS, TIES, Params, get_op
from poolcli.errors import UsageError

__all__ = [
    "ALIASES", "OPS", "PAD_MODES", "TIES", "WINDOW_OPTIONS", "AdaptiveAxis", "Axis", "Geometry", "Params", "WindowSpec",
    "bind", "describe", "get_op", "run_backward", "run_backward_other", "run_forward", "run_indices", "to_caller",
    "to_engine",
]


def bind(op: str, shape: tuple[int, ...], spec: WindowSpec, params: Params = Params(), **arrays: np.ndarray):
    """The plan of operator ``op`` for an input of ``shape``: a Geometry for windowed operators.

    ``arrays`` are the extra inputs some operators take: ``indices`` (unpool), ``other`` (bilinear).

    >>> bind("kmax", (4, 4), WindowSpec(), Params(k=2, axis=0)).out_shape
    (2, 4)
    """
    pool = get_op(op)
    unknown = set(arrays) - set(pool.arrays)
    given = {k: v for k, v in arrays.items() if v is not None}
    if unknown & set(given):
        names = {"indices": "--from-indices", "other": "--with"}
        raise UsageError(f"{', '.join(names.get(n, n) for n in sorted(unknown & set(given)))} "
                         f"does not go with --op {pool.name}")
    return pool.bind(tuple(shape), spec, params, **{k: v for k, v in given.items() if k in pool.arrays})


def check_array(x: np.ndarray) -> np.ndarray:
    """Accept real numbers only (ints, floats, bools): ``check_array(np.array([1j]))`` raises UsageError."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise UsageError(f"the input holds {x.dtype} values; poolcli pools real numbers (ints or floats)")
    return x


def to_engine(a: np.ndarray, g: Geometry) -> np.ndarray:
    """Channels-last arrays become channels-first views (spatial axes last)."""
    return np.moveaxis(a, -1, len(g.lead) - 1) if g.channels_last and g.lead else a


def to_caller(a: np.ndarray, g: Geometry) -> np.ndarray:
    """The inverse of ``to_engine``: channels back after the spatial axes."""
    return np.moveaxis(a, len(g.lead) - 1, -1) if g.channels_last and g.lead else a


def _one_plane(g: Geometry) -> Geometry | None:
    """For an input with no planes (a zero-size batch or channel axis): the same windows over one plane,
    to learn the result's dtype; None when the plan is not a Geometry."""
    if not isinstance(g, Geometry) or not g.lead:
        return None
    return dataclasses.replace(g, lead=(1,) * len(g.lead))


def _empty_like_result(x: np.ndarray, g: Geometry, run: Callable[..., Any]) -> Any:
    """The empty result of the right shape and dtype for an input with no planes, as PyTorch gives."""
    one = _one_plane(g)
    results = run(np.zeros(caller_shape(one.in_shape, one.channels_last, len(one.lead)), dtype=x.dtype), one)
    if isinstance(results, tuple):
        return tuple(np.empty(g.out_shape, dtype=r.dtype) for r in results)
    return np.empty(g.out_shape, dtype=results.dtype)


def run_forward(x: np.ndarray, g: Geometry, op: str = "max", params: Params = Params()) -> np.ndarray:
    """Pool ``x`` (the caller's layout) over the windows of ``g`` with operator ``op``.

    An input with a zero-size batch or channel axis gives an empty result of the right shape.
    """
    x = check_array(x)
    if x.size == 0 and _one_plane(g) is not None:
        return _empty_like_result(x, g, lambda a, one: run_forward(a, one, op, params))
    return to_caller(get_op(op).forward(to_engine(x, g), g, params), g)


def run_indices(x: np.ndarray, g: Geometry, op: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """Max (or min) pooling with the flat per-plane index of each selected cell (PyTorch's return_indices)."""
    x = check_array(x)
    pool = get_op(op)
    if not hasattr(pool, "indices"):
        raise UsageError(f"--indices goes with --op max or min, not {op}")
    if x.size == 0 and _one_plane(g) is not None:
        return _empty_like_result(x, g, lambda a, one: run_indices(a, one, op))
    y, idx = pool.indices(to_engine(x, g), g)
    return to_caller(y, g), to_caller(idx, g)


def gradient_dtype(dtype: np.dtype) -> np.dtype:
    """Gradients are floats: a float input's dtype, else float64."""
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def run_backward(
    x: np.ndarray, g: Geometry, grad: np.ndarray | None = None, op: str = "max", params: Params = Params()
) -> np.ndarray:
    """Gradient of ``sum(forward(x) * grad)`` with respect to ``x``; ``grad`` defaults to ones."""
    x = check_array(x)
    dtype = gradient_dtype(x.dtype)
    if grad is None:
        grad = np.ones(g.out_shape, dtype=dtype)
    grad = check_array(grad)
    if grad.shape != g.out_shape:
        raise UsageError(
            f"the gradient has shape {grad.shape} but this pooling outputs {g.out_shape}; "
            "use the gradient of this output, or the forward run's window options"
        )
    grad = grad.astype(dtype, copy=False)
    if x.size == 0:
        return np.zeros(x.shape, dtype=dtype)
    dx = get_op(op).backward(to_engine(x, g), g, to_engine(grad, g), params)
    return to_caller(dx.astype(dtype, copy=False), g)


def run_backward_other(x: np.ndarray, g, grad: np.ndarray | None = None, params: Params = Params()) -> np.ndarray:
    """bilinear with --with: the gradient with respect to the other array."""
    x = check_array(x)
    dtype = gradient_dtype(np.result_type(x.dtype, g.other.dtype)) if g.other is not None else np.float64
    grad = np.ones(g.out_shape, dtype=dtype) if grad is None else check_array(grad).astype(dtype, copy=False)
    return get_op("bilinear").backward_other(x, g, grad, params)
