"""Bilinear (second-order) pooling: per sample, the mean over locations of the outer product x_l y_l^T.

For features ``(…, C, H, W)`` (the channel axis just before the spatial axes, or last with
``--channels-last``) the result is ``(…, C, C')``: every axis before the channels is a sample.
``y`` is ``x`` unless another array is given (same samples and locations, its own channels).
``--signed-sqrt`` then maps z to sign(z)·sqrt(|z|), and ``--l2-normalize`` divides each
sample's matrix by its Frobenius norm (in that order, as in bilinear CNNs).

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.array([[[1.0, 3.0]], [[2.0, 0.0]]])  # C=2, H=1, W=2
>>> BilinearPool().forward(x, BilinearPool().bind(x.shape, WindowSpec(), Params()), Params())
array([[5., 1.],
       [1., 2.]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan, float_type
from poolcli.engine.geometry import channel_axis
from poolcli.engine.kernels import memory_order
from poolcli.errors import UsageError


@dataclass(frozen=True)
class BilinearPlan(Plan):
    channel_axis: int = 0
    other: np.ndarray | None = field(default=None, compare=False, repr=False)


class BilinearPool(Op):
    name, summary, windowed = "bilinear", "second-order pooling (1/HW) sum x y^T per sample (--with)", False
    options = (Option("other", "array", None, "second features", flag="--with",
                      metavar="Y", like_input=True),
               Option("signed_sqrt", bool, False, "sign(z)·sqrt(|z|)"),
               Option("l2_normalize", bool, False, "divide by the norm"))

    def bind(self, shape, spec, params, other=None, **arrays):
        shape = tuple(int(n) for n in shape)
        if spec.kernel is not None or spec.stride is not None or spec.output_size is not None:
            raise UsageError("bilinear pools over every location; drop -k/-s/--output-size")
        axis, dims = channel_axis(shape, spec, "bilinear")
        c = shape[axis]
        c2 = c
        if other is not None:
            other = np.asarray(other)
            want = shape[:axis] + (None,) + shape[axis + 1 :]
            if other.ndim != len(shape) or any(w is not None and w != n for w, n in zip(want, other.shape)):
                raise UsageError(f"--with has shape {other.shape} but the input {shape}; they must agree on every "
                                 f"axis but the channels (axis {axis})")
            if other.dtype.kind not in "biuf":
                raise UsageError(f"--with holds {other.dtype} values; give real numbers")
            c2 = other.shape[axis]
        lead = shape[: len(shape) - dims - 1]  # the samples: every axis before the channels and locations
        locations = int(np.prod(spec.spatial(shape)[1]))
        if locations == 0:
            raise UsageError("the input has no locations to pool over")
        rows = ({"axis": "channels", "size": c, "out": c2, "kind": "bilinear",
                 "formula": f"(1/{locations}) · Σ x yᵀ over {locations} locations = {c}×{c2}"},)
        return BilinearPlan(shape, lead + (c, c2), rows, dims=dims, moves_output=False, channel_axis=axis,
                            other=other)

    def _flat(self, a: np.ndarray, plan: BilinearPlan) -> np.ndarray:
        """(samples, channels, locations) view/copy of an array in the engine's layout."""
        lead = a.shape[: plan.channel_axis]
        locations = int(np.prod(a.shape[plan.channel_axis + 1 :]))
        return a.reshape((int(np.prod(lead)), a.shape[plan.channel_axis], locations))

    def _unflat(self, flat: np.ndarray, plan: BilinearPlan, like: tuple[int, ...]) -> np.ndarray:
        return flat.reshape(like)

    def block_plan(self, plan, lead, index):
        sub = super().block_plan(plan, lead, index)
        return sub if plan.other is None else replace(sub, other=plan.other[index])

    def independent_axes(self, plan):
        return tuple(range(plan.channel_axis))

    def side_by_side(self, plan):  # samples and channels: a Fortran-ordered input's lie innermost
        return plan.channel_axis + 1

    def reads_strided(self, plan, params):
        # a sample's (channels, locations) view is one BLAS operand in either order: channels-last samples are
        # read in place (and their product is BLAS's faster transposed form); Fortran order: see _lying
        return plan.other is None

    def backward_reads_strided(self, plan, params):  # the same operands; the gradient C-ordered, or channels-last
        return plan.other is None

    def picture(self, x, y, dx, plan, params, dims):
        text = f"(1/L)·Σ x yᵀ over L = {self._flat(x, plan).shape[-1]} locations · input shown as channels × locations"
        return Picture(self._flat(x, plan), y.reshape((-1, *y.shape[-2:])),
                       None if dx is None else self._flat(dx, plan), 2, text)

    def _operands(self, x: np.ndarray, plan: BilinearPlan) -> tuple[np.ndarray, np.ndarray, bool]:
        dtype = float_type(np.result_type(x.dtype, plan.other.dtype) if plan.other is not None else x.dtype)
        a = self._flat(x, plan).astype(dtype, copy=False)
        if plan.other is None:
            return a, a, True
        return a, self._flat(plan.other, plan).astype(dtype, copy=False), False

    def _chain(self, x: np.ndarray, plan: BilinearPlan, params: Params):
        lying = _lying(x, plan) if plan.other is None else None
        if lying is not None:  # a Fortran-ordered input: the product in BLAS's transposed form, from a cheap copy
            a = b = np.swapaxes(lying, 1, 2)  # (samples, channels, locations), each sample's a BLAS operand
            same = True
            z = a @ lying / a.shape[-1]
        else:
            a, b, same = self._operands(x, plan)
            z = a @ np.swapaxes(b, 1, 2) / a.shape[-1]
        s = np.sign(z) * np.sqrt(np.abs(z)) if params.signed_sqrt else z
        norm = None
        if params.l2_normalize:
            norm = np.sqrt((s * s).sum(axis=(1, 2), keepdims=True))
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(norm > 0, s / norm, 0)
        else:
            out = s
        return a, b, same, z, s, norm, out

    def forward(self, x, plan, params):
        out = self._chain(x, plan, params)[-1]
        return out.reshape(plan.out_shape)

    def _dz(self, x, plan, grad, params):
        a, b, same, z, _, norm, out = self._chain(x, plan, params)
        g = grad.reshape(out.shape).astype(out.dtype, copy=False)
        if norm is not None:
            u = out
            with np.errstate(invalid="ignore", divide="ignore"):
                g = np.where(norm > 0, (g - u * (u * g).sum(axis=(1, 2), keepdims=True)) / norm, 0)
        if params.signed_sqrt:
            root = np.sqrt(np.abs(z))
            with np.errstate(invalid="ignore", divide="ignore"):
                g = np.where(root > 0, g / (2 * root), 0)  # d sqrt|z| is unbounded at 0: taken as 0 there
        return a, b, same, g / a.shape[-1]

    def backward(self, x, plan, grad, params):
        a, b, same, dz = self._dz(x, plan, grad, params)
        rows = np.swapaxes(a, 1, 2)  # each sample's (locations, channels)
        if same and x.strides[plan.channel_axis] == x.itemsize and rows.flags.c_contiguous:
            # channels-last: the rows times the symmetric dz + dzᵀ, the gradient laid out as the input
            da = np.swapaxes(rows @ (dz + np.swapaxes(dz, 1, 2)), 1, 2)
        else:  # x's own Gram: one product, (dz + dzᵀ) a
            da = (dz + np.swapaxes(dz, 1, 2)) @ a if same else dz @ b
        return self._unflat(da, plan, x.shape).astype(grad.dtype, copy=False)

    def more_gradients(self, x, plan, grad, params):
        """The gradient with respect to the --with array (``with``), when there is one."""
        if plan.other is None:
            return {}
        a, _, _, dz = self._dz(x, plan, grad, params)
        db = np.swapaxes(dz, 1, 2) @ a
        return {"with": self._unflat(db, plan, plan.other.shape).astype(grad.dtype, copy=False)}


def _lying(x: np.ndarray, plan: BilinearPlan) -> np.ndarray | None:
    """Where the locations are the outermost axes in memory (a Fortran-ordered input): each sample's
    (locations, channels) matrix, C-ordered, in float: the channels moved last, copied in one pass that reads
    the samples' and channels' values side by side; else None.

    >>> x = np.asfortranarray(np.arange(24.0).reshape(2, 3, 4))
    >>> _lying(x, BilinearPlan((2, 3, 4), (2, 3, 3), (), dims=1, channel_axis=1))[1, :2].tolist()
    [[12.0, 16.0, 20.0], [13.0, 17.0, 21.0]]
    """
    k = plan.channel_axis
    order = None if x.flags.c_contiguous else memory_order(x)
    spatial = x.ndim - k - 1
    if order is None or not spatial or set(order[:spatial]) != set(range(k + 1, x.ndim)):
        return None
    lying = np.ascontiguousarray(np.moveaxis(x, k, -1), dtype=float_type(x.dtype))
    return lying.reshape(-1, math.prod(x.shape[k + 1:]), x.shape[k])


__all__ = ["BilinearPlan", "BilinearPool"]
