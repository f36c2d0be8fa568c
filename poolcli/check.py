"""``backward --check``: the analytic backward against central finite differences, in float64.

For a random upstream gradient g (fixed seed), the derivative of sum(forward(x) * g) with
respect to each checked input cell is estimated as (f(x + h) - f(x - h)) / 2h with
h = 1e-6 * max(1, |x|), differencing the outputs before summing so that outputs the cell does
not reach add no rounding. The error of a cell is |analytic - numeric| / max(1, |analytic|,
|numeric|): relative for gradients above 1, absolute below.

This is a diagnostic that runs the (vectorised) engine once per perturbed cell; it checks at
most ``cells`` cells, picked at random when the input is larger.

>>> import numpy as np
>>> from poolcli.engine import WindowSpec, Params, bind
>>> x = np.random.default_rng(0).normal(size=(4, 4))
>>> r = gradcheck(x, lambda a, **arrays: bind("avg", a.shape, WindowSpec(kernel=2), Params(), **arrays), "avg",
...               Params())
>>> r.worst < 1e-8, r.cells
(True, 16)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from poolcli.engine import Params, get_op, run_backward, run_forward, run_more_gradients

STEP = 1e-6


@dataclass
class CheckResult:
    """The worst cell of one operator's check."""

    op: str
    worst: float
    cells: int
    where: tuple[str, tuple[int, ...]] | None = None  # ("x", "with", "weights", "bias" or "p"; index)
    analytic: float = 0.0
    numeric: float = 0.0


def _cells(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(size) if size <= cells else np.sort(rng.choice(size, cells, replace=False))


def gradcheck(x: np.ndarray, bind: Callable[..., Any], op: str, params: Params, arrays: dict[str, Any] | None = None,
              cells: int = 256, seed: int = 0) -> CheckResult:
    """Check ``op``'s backward on ``x``; ``bind(x, **arrays)`` gives the plan (arrays: indices, other)."""
    rng = np.random.default_rng(seed)
    arrays = dict(arrays or {})
    x = np.asarray(x, dtype=np.float64)
    arrays = {k: np.asarray(v, dtype=np.float64) if k != "indices" else v for k, v in arrays.items()}
    plan = bind(x, **arrays)
    g = rng.normal(size=plan.out_shape)
    result = CheckResult(op, 0.0, 0)

    def record(kind: str, flat: np.ndarray, analytic: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> None:
        for i in _cells(flat.size, cells, rng):
            h = STEP * max(1.0, abs(float(flat[i])))
            keep = flat[i]
            flat[i] = keep + h
            up = f(flat)
            flat[i] = keep - h
            down = f(flat)
            flat[i] = keep
            numeric = float(((up - down) * g).sum() / (2 * h))
            a = float(analytic.flat[i])
            err = abs(a - numeric) / max(1.0, abs(a), abs(numeric))
            result.cells += 1
            if err > result.worst or result.where is None:
                where = (kind, tuple(int(v) for v in np.unravel_index(i, analytic.shape)))
                result.worst, result.where, result.analytic, result.numeric = err, where, a, numeric

    dx = run_backward(x, plan, g, op, params)
    xs = x.copy()
    record("x", xs.reshape(-1), dx, lambda flat: run_forward(xs, plan, op, params))
    for name, analytic in run_more_gradients(x, plan, g, op, params).items():  # --with's, weights, bias, p
        key = "other" if name == "with" else name
        if key in arrays:  # an input array: each of its cells perturbed in turn
            values = np.asarray(arrays[key], dtype=np.float64).copy()

            def moved(flat: np.ndarray, key: str = key, values: np.ndarray = values) -> np.ndarray:
                return run_forward(x, bind(x, **{**arrays, key: values}), op, params)

            record(name, values.reshape(-1), np.asarray(analytic), moved)
        elif name in params.declared:  # an operator option (gem's p)
            value = np.array([float(get_op(op).value(params, name))])  # the operator's own default

            def changed(flat: np.ndarray, name: str = name) -> np.ndarray:
                changed_params = params.replace(**{name: float(flat[0])})
                return run_forward(x, bind(x, params=changed_params, **arrays), op, changed_params)

            record(name, value, np.asarray(analytic).reshape(1), changed)
    return result


def random_indices(values_shape: tuple[int, ...], plane_shape: tuple[int, ...], dims: int, seed: int = 0
                   ) -> np.ndarray:
    """Distinct random flat indices per plane, as a max pooling's would be (for checking unpool)."""
    rng = np.random.default_rng(seed)
    per_plane = int(np.prod(values_shape[len(values_shape) - dims :]))
    cells = int(np.prod(plane_shape))
    planes = int(np.prod(values_shape[: len(values_shape) - dims]))
    if per_plane > cells:
        raise ValueError("more values than cells")
    order = np.argsort(rng.random((planes, cells)), axis=1)[:, :per_plane]
    return order.reshape(values_shape).astype(np.int64)
