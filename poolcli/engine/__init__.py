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

import numpy as np

from poolcli.engine.geometry import PAD_MODES, WINDOW_OPTIONS, AdaptiveAxis, Axis, Geometry, WindowSpec, describe
from poolcli.engine.ops import ALIASES, OPS, TIES, Params, get_op
from poolcli.errors import UsageError

__all__ = [
    "ALIASES", "OPS", "PAD_MODES", "TIES", "WINDOW_OPTIONS", "AdaptiveAxis", "Axis", "Geometry", "Params", "WindowSpec",
    "describe", "get_op", "run_backward", "run_forward", "run_indices",
]


def check_array(x: np.ndarray) -> np.ndarray:
    """Accept real numbers only (ints, floats, bools): ``check_array(np.array([1j]))`` raises UsageError."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise UsageError(f"the input holds {x.dtype} values; poolcli pools real numbers (ints or floats)")
    return x


def _to_engine(a: np.ndarray, g: Geometry) -> np.ndarray:
    """Channels-last arrays become channels-first views (spatial axes last)."""
    return np.moveaxis(a, -1, len(g.lead) - 1) if g.channels_last and g.lead else a


def _to_caller(a: np.ndarray, g: Geometry) -> np.ndarray:
    return np.moveaxis(a, len(g.lead) - 1, -1) if g.channels_last and g.lead else a


def run_forward(x: np.ndarray, g: Geometry, op: str = "max", params: Params = Params()) -> np.ndarray:
    """Pool ``x`` (the caller's layout) over the windows of ``g`` with operator ``op``."""
    x = check_array(x)
    return _to_caller(get_op(op).forward(_to_engine(x, g), g, params), g)


def run_indices(x: np.ndarray, g: Geometry, op: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """Max (or min) pooling with the flat per-plane index of each selected cell (PyTorch's return_indices)."""
    x = check_array(x)
    pool = get_op(op)
    if not hasattr(pool, "indices"):
        raise UsageError(f"--indices goes with --op max or min, not {op}")
    y, idx = pool.indices(_to_engine(x, g), g)
    return _to_caller(y, g), _to_caller(idx, g)


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
    dx = get_op(op).backward(_to_engine(x, g), g, _to_engine(grad, g), params)
    return _to_caller(dx.astype(dtype, copy=False), g)
