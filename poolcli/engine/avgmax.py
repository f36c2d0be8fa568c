"""AvgMaxPool, the textbook's sum of the two classic pools: ``max + avg`` of each window; ``--concat`` gives
the channel-concatenated variant ``[max, avg]`` (twice the channels) instead.

``mixed --alpha`` stays the convex mix; this is their sum, as in the textbook's AvgMaxPool (and timm's
``adaptive_avgmax_pool`` halves it). The window options are those of max and avg; padding counts in the
average as ``--count-pad`` says.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.arange(1.0, 5.0).reshape(1, 2, 2)
>>> op = AvgMax()
>>> op.forward(x, op.bind(x.shape, WindowSpec(kernel=2), Params()), Params()).tolist()
[[[6.5]]]
>>> p = Params(concat=True)
>>> op.forward(x, op.bind(x.shape, WindowSpec(kernel=2), p), p).ravel().tolist()
[4.0, 2.5]
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan
from poolcli.engine.geometry import Geometry, describe
from poolcli.engine.ops import COUNT_PAD, Avg, Max

__all__ = ["AvgMax", "AvgMaxPlan", "Params"]


@dataclass(frozen=True)
class AvgMaxPlan(Plan):
    windows: Geometry | None = None  # the windows, over the input with its channels (engine layout)
    concat: bool = False
    channels: bool = True  # the input has a channel axis (else --concat stacks a new one in front)


class AvgMax(Op):
    name, summary, windowed = "avgmax", "max + avg per window (the textbook's AvgMaxPool; --concat: [max, avg])", False
    options = (COUNT_PAD, Option("concat", bool, False, "[max, avg] along the channels, not their sum"))
    ties, marks, strided = True, "arg-max (the max part)", True  # max's and avg's separable passes
    hi, mean = Max(), Avg()

    def bind(self, shape, spec, params, **arrays):
        g = spec.bind(shape)
        if g.channels_last:  # the engine moved the channels already (non-windowed operators get the engine layout)
            g = replace(g, channels_last=False)
        concat = bool(params.concat)
        channels = len(g.lead) > 0
        out = g.out_shape
        if concat:
            out = out[: len(g.lead) - 1] + (2 * g.lead[-1],) + out[len(g.lead):] if channels else (2, *out)
        rows = tuple(describe(g))
        if concat:
            rows += ({"axis": "channels", "size": g.lead[-1] if channels else 1, "out": out[-g.dims - 1],
                      "kind": "avgmax", "formula": "[max, avg] side by side"},)
        return AvgMaxPlan(tuple(shape), out, rows, dims=g.dims, windows=g, concat=concat, channels=channels)

    def independent_axes(self, plan):
        k = len(plan.in_shape) - plan.dims
        return tuple(range(k - 1 if plan.concat and plan.channels else k))

    def block_plan(self, plan, lead, index):
        rest = plan.windows.lead[len(lead):]  # the channels, when --concat keeps them whole
        g = plan.windows.block(lead + rest, index + tuple(slice(0, n) for n in rest))
        out = list(plan.out_shape)
        out[: len(lead)] = lead
        return replace(plan, in_shape=g.in_shape, out_shape=tuple(out), channels_last=False, windows=g)

    def _parts(self, x, plan, params):
        g = plan.windows
        hi = self.hi.forward(x, g, params).astype(self.out_dtype(x.dtype), copy=False)
        return hi, self.mean.forward(x, g, params)

    def forward(self, x, plan, params):
        hi, mean = self._parts(x, plan, params)
        if not plan.concat:
            return hi + mean
        axis = x.ndim - plan.dims - 1 if plan.channels else 0
        if not plan.channels:
            hi, mean = hi[None], mean[None]
        return np.concatenate([hi, mean], axis=axis)

    def backward_reads_strided(self, plan, params):  # where both its parts do (not --concat's halves)
        w = plan.windows
        return not plan.concat and all(part.backward_reads_strided(w, params) for part in (self.hi, self.mean))

    def backward(self, x, plan, grad, params):
        g = plan.windows
        if not plan.concat:
            g_hi = g_mean = grad
        else:
            axis = x.ndim - plan.dims - 1 if plan.channels else 0
            g_hi, g_mean = np.split(grad, 2, axis=axis)
            if not plan.channels:
                g_hi, g_mean = g_hi[0], g_mean[0]
            g_hi, g_mean = np.ascontiguousarray(g_hi), np.ascontiguousarray(g_mean)
        return self.hi.backward(x, g, g_hi, params) + self.mean.backward(x, g, g_mean, params)

    def picture(self, x, y, dx, plan, params, dims):
        """The windows drawn as for max and avg, the arg-max marked, and max + avg as the output."""
        g = replace(plan.windows, lead=x.shape[: x.ndim - plan.dims], origin=())
        hi, mean = self._parts(x, replace(plan, windows=g), params)
        return Picture(x, hi + mean, dx, plan.dims, "max + avg" + (" (the output holds [max, avg])"
                                                                  if plan.concat else ""),
                       marked_in=self.hi.selected(x, g, params),
                       windows=lambda index: [[a.window(o) for o in range(a.out)] for a in g.axes])
