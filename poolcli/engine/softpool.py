"""SoftPool (Stergiou et al. 2021): each window's values weighted by their softmax, ``Σ softmax(x)_i · x_i``.

Computed stably: the exponentials are taken of ``x - max(window)``, so large inputs do not overflow; padding
is not a value (only real cells take part, as in max pooling). The gradient is analytic:
``dy/dx_i = w_i (1 + x_i - y)`` with ``w = softmax(window)``.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.array([[0.0, 0.0, 1000.0, 1000.0]])
>>> SoftPool().forward(x, WindowSpec(kernel=(1, 2)).bind(x.shape), Params()).tolist()
[[0.0, 1000.0]]
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.base import Op, Params, float_type
from poolcli.engine.kernels import add_region, inps, outs, region, separable

__all__ = ["Params", "SoftPool"]


class SoftPool(Op):
    name, summary = "softpool", "softmax-weighted sum Σ softmax(x)·x per window (SoftPool)"
    strided = True  # its passes are elementwise over each tap's view, in any memory order

    def backward_reads_strided(self, plan, params):  # as the forward; the gradient in the input's memory order
        return True

    def _sums(self, x: np.ndarray, g) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The input as floats, each window's max, Σ exp(x - max) and Σ exp(x - max)·x, each exponential taken
        once."""
        xf = x.astype(float_type(x.dtype), copy=False)
        top = separable(xf, g, np.maximum, -np.inf)
        den, num = np.zeros_like(top), np.zeros_like(top)

        def both(tap, e, xi):
            add_region(den, outs(tap), e)
            add_region(num, outs(tap), np.multiply(e, xi, out=e))

        self._walk(xf, g, top, both)
        return xf, top, den, num

    @staticmethod
    def _walk(xf: np.ndarray, g, top: np.ndarray, visit) -> None:
        """``visit(tap, exp(x - window max), x)`` for each tap of the window, over the real cells it reads."""
        with np.errstate(invalid="ignore", over="ignore"):
            for tap in g.taps():
                xi = region(xf, inps(tap))
                visit(tap, np.exp(xi - region(top, outs(tap))), xi)

    def forward(self, x, g, params):
        _, _, den, num = self._sums(x, g)
        return num / den

    def backward(self, x, g, grad, params):
        xf, top, den, num = self._sums(x, g)
        y = num / den
        scale = grad / den
        dx = np.zeros_like(xf, dtype=scale.dtype)  # in the input's memory order

        def add(tap, e, xi):
            add_region(dx, inps(tap), region(scale, outs(tap)) * e * (1 + xi - region(y, outs(tap))),
                       all(t.unique for t in tap))

        self._walk(xf, g, top, add)
        return dx.astype(grad.dtype, copy=False)
