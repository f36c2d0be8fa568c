"""Generalized-mean pooling (GeM, Radenović et al. 2018): ``(mean clamp(x, eps)^p)^(1/p)`` per window.

p = 1 is average pooling of the clamped values and p → ∞ approaches max pooling; retrieval networks learn p,
so backward also gives the gradient with respect to p (``more_gradients``: ``-o grads.npz`` member ``p``).

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.array([[1.0, 2.0], [3.0, 4.0]])
>>> float(GeM().forward(x, WindowSpec(global_pool=True).bind(x.shape), Params(p=1.0))[0, 0])
2.5
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import Op, Option, Params, _accumulator, _finite
from poolcli.engine.kernels import spread, window_sum
from poolcli.engine.ops import COUNT_PAD, tiling_in_place

__all__ = ["GeM", "Params"]


class GeM(Op):
    name, summary, strided = "gem", "generalized mean (mean clamp(x,eps)^p)^(1/p) per window (--p, --eps)", True
    options = (Option("p", float, 3.0, "the exponent", check=lambda v: v > 0 and _finite(v),
                      need="the mean's exponent must be a finite number above 0"),
               Option("eps", float, 1e-6, "clamp below", check=lambda v: v > 0 and _finite(v),
                      need="the clamp must be a finite number above 0"),
               COUNT_PAD)

    def _parts(self, x: np.ndarray, g, params: Params
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray | None]:
        """The clamped input, its p-th power, the windows' means of it, p, and c^(p-1) where p is 2 or 3 (the
        power's own first factor: products are 5× pow's speed)."""
        p = float(self.value(params, "p"))
        c = np.maximum(x.astype(_accumulator(x.dtype), copy=False), self.value(params, "eps"))
        slope = c * c if p == 3 else c if p == 2 else None
        power = np.multiply(slope, c) if slope is not None else c if p == 1 else c**p  # (c·c)·c, c·c
        mean = window_sum(power, g)
        mean /= g.counts(params.count_pad).astype(mean.dtype)
        return c, power, mean, p, slope

    def forward(self, x, g, params):
        _, _, mean, p, _ = self._parts(x, g, params)
        return (mean ** (1 / p)).astype(self.out_dtype(x.dtype), copy=False)

    def backward_reads_strided(self, plan, params):
        return tiling_in_place(plan, params)

    def backward(self, x, g, grad, params):
        c, power, mean, p, slope = self._parts(x, g, params)
        scale = grad * mean ** (1 / p - 1) / g.counts(params.count_pad)
        slope = power / c if slope is None else slope  # c^(p-1)
        dx = np.multiply(spread(scale.astype(c.dtype, copy=False), g), slope, out=power)  # (power's memory: spent)
        dx *= x >= self.value(params, "eps")  # clamp's gradient: where the input was kept
        return dx.astype(grad.dtype, copy=False)

    def more_gradients(self, x, g, grad, params):
        """d/dp of ``sum(y * grad)``: y = m^(1/p) with m = mean c^p, so dy/dp = y (mean(c^p ln c) / (p m)
        - ln(m) / p²)."""
        c, power, mean, p, _ = self._parts(x, g, params)
        y = mean ** (1 / p)
        weighted = window_sum(power * np.log(c), g) / g.counts(params.count_pad)
        dy = y * (weighted / (p * mean) - np.log(mean) / p**2)
        return {"p": np.asarray((grad * dy).sum(), dtype=np.result_type(grad.dtype, np.float32))}
