"""Local response normalisation across channels (PyTorch's ``local_response_norm``), or within each channel
over a spatial window (``--region within``, Caffe's WITHIN_CHANNEL: the sum of squares over a size×size
window, zero-padded, divided by size^dims).

``y = x / (bias + alpha/size * sum of x^2 over the channel window)^beta``; the window of
channel c is c - size//2 … c + (size-1)//2 (leaning as PyTorch's for an even size). The
channel axis is the one just before the spatial axes, or the last with ``--channels-last``.
The channel window sum is a 1-D window sum, so it reuses the pooling engine.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> from poolcli.engine.base import Params
>>> x = np.ones((1, 3, 1, 1))
>>> p = Params(size=3, alpha=3.0, beta=1.0, bias=1.0)
>>> LRN().forward(x, LRN().bind(x.shape, WindowSpec(), p), p).ravel()
array([0.33333333, 0.25      , 0.33333333])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from poolcli.engine.base import Op, Option, Picture, Plan, _finite, float_type
from poolcli.engine.geometry import Axis, Geometry, WindowSpec, axis_names, channel_axis
from poolcli.engine.kernels import spread, window_sum
from poolcli.errors import UsageError

ALPHA = 1e-4  # PyTorch's default
FINITE = "give a finite number"


@dataclass(frozen=True)
class LRNPlan(Plan):
    channel_axis: int = 0  # -1: within each channel (--region within), the window over the spatial axes
    window: Any = None  # the 1-D geometry of the channel windows (channels moved last)


class LRN(Op):
    name, summary, windowed = "lrn", "local response normalisation across channels", False
    options = (Option("size", int, 5, "channels in the window", metavar="N", check=lambda v: v >= 1,
                      need="the channel window needs 1 or more channels", hint=" (the window size is -k/--kernel)"),
               Option("alpha", float, ALPHA, "scale", check=_finite, need=FINITE),
               Option("beta", float, 0.75, "exponent", check=_finite, need=FINITE),
               Option("bias", float, 1.0, "constant added", check=_finite, need=FINITE),
               Option("region", "choice", "across", "across channels, or within each over a spatial window",
                      choices=("across", "within")))

    def bind(self, shape, spec, params, **arrays):
        shape = tuple(int(n) for n in shape)
        if spec.kernel is not None or spec.stride is not None or spec.output_size is not None or spec.global_pool:
            raise UsageError("lrn's window is --size channels (or cells, with --region within); "
                             "drop -k/-s/--output-size/--global")
        if params.region == "within":
            return self._within(shape, spec, params)
        axis, dims = channel_axis(shape, spec, "lrn")
        c, size = shape[axis], params.size
        window = None  # no channels: nothing to normalise (the result is empty, as PyTorch's)
        if c > 0:
            window = WindowSpec(kernel=size, stride=1, padding=(size // 2, (size - 1) // 2), dims=1).bind((c,))
        row = {"axis": f"channels (axis {axis})", "size": c, "out": c, "kind": "lrn",
               "formula": f"window c-{size // 2}…c+{(size - 1) // 2} of {c} channels, same size = {c}"}
        return LRNPlan(shape, shape, (row,), dims=dims, channel_axis=axis, window=window)

    def _within(self, shape: tuple[int, ...], spec, params) -> LRNPlan:
        """Caffe's WITHIN_CHANNEL: a --size window over each spatial axis of every plane, zero-padded to keep the
        size (leaning as the channel window does for an even size), the sum divided by size^dims."""
        dims, sizes = spec.spatial(shape)
        size = params.size
        axes = tuple(Axis(n, kernel=size, stride=1, pad=(size // 2, (size - 1) // 2), name=nm)
                     for n, nm in zip(sizes, axis_names(dims)))
        window = Geometry(shape[: len(shape) - dims], axes)
        rows = tuple({"axis": nm, "size": n, "out": n, "kind": "lrn",
                      "formula": f"window {size} cells, x-{size // 2}…x+{(size - 1) // 2}, same size = {n}"}
                     for nm, n in zip(axis_names(dims), sizes))
        return LRNPlan(shape, shape, rows, dims=dims, channel_axis=-1, window=window)

    def _terms(self, plan: LRNPlan, params) -> int:
        """How many cells the sum of squares is divided over: the channel window, or size^dims within a channel."""
        return params.size ** plan.dims if plan.channel_axis == -1 else params.size

    def _moved(self, a: np.ndarray, plan: LRNPlan, back: bool = False) -> np.ndarray:
        """Across channels: the channel axis last (and back); within: as it is."""
        if plan.channel_axis == -1:
            return a
        return np.moveaxis(a, -1, plan.channel_axis) if back else np.moveaxis(a, plan.channel_axis, -1)

    def _geometry(self, plan: LRNPlan, shape: tuple[int, ...]) -> Geometry:
        if plan.channel_axis == -1:
            return Geometry(tuple(shape[: len(shape) - plan.dims]), plan.window.axes)
        return _planes(plan.window, shape)

    def _parts(self, x: np.ndarray, plan: LRNPlan, params) -> tuple[np.ndarray, np.ndarray]:
        """The input as floats (channels last) and the denominator's base, bias + alpha/n · Σ x², a new array."""
        xf = self._moved(x.astype(float_type(x.dtype), copy=False), plan)
        d = window_sum(xf * xf, self._geometry(plan, xf.shape))  # scaled and shifted in place
        d *= self.value(params, "alpha") / self._terms(plan, params)
        d += self.value(params, "bias")
        return xf, d

    def forward(self, x, plan, params):
        if x.size == 0:
            return np.empty(x.shape, dtype=float_type(x.dtype))
        xf, y = self._parts(x, plan, params)
        np.power(y, -params.beta, out=y)
        y *= xf
        return self._moved(y, plan, back=True)

    def backward(self, x, plan, grad, params):
        if x.size == 0:
            return np.zeros(x.shape, dtype=grad.dtype)
        xf, d = self._parts(x, plan, params)
        g = self._moved(grad, plan)
        beta, alpha = params.beta, self.value(params, "alpha")
        scale = d ** -beta
        inner = g * xf * scale / d  # g_i x_i D_i^(-beta-1)
        dx = g * scale - (2 * alpha * beta / self._terms(plan, params)) * xf * spread(inner, self._geometry(
            plan, inner.shape))
        return self._moved(dx.astype(grad.dtype, copy=False), plan, back=True)

    def independent_axes(self, plan):
        if plan.channel_axis == -1:  # within each channel: every plane on its own
            return tuple(range(len(plan.in_shape) - plan.dims))
        return tuple(i for i in range(len(plan.in_shape)) if i != plan.channel_axis)

    def picture(self, x, y, dx, plan, params, dims):
        v = self.value
        return Picture(x, y, dx, plan.dims, f"{params.region}, size {params.size}, alpha {v(params, 'alpha'):g}, "
                       f"beta {params.beta:g}, bias {v(params, 'bias'):g}")


def _planes(window, shape: tuple[int, ...]):
    """The 1-D channel geometry with every other axis as a plane."""
    return Geometry(tuple(shape[:-1]), window.axes)


__all__ = ["ALPHA", "LRN", "LRNPlan"]
