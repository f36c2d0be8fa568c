"""Transposed convolution (``deconv``), the textbook's third upsampling method after unpooling and interpolation:
PyTorch's ``conv_transpose1d/2d/3d`` in NumPy, one strided add per kernel tap.

``--weights W.npy`` has shape (C_in, C_out/groups, *kernel); ``-s``, ``-p``, ``-d`` are the stride, padding and
dilation, ``--output-padding`` adds cells at the end of each axis, ``--groups`` splits the channels, ``--bias
B.npy`` (C_out) is added. Output size per axis: ``(in - 1)·s - 2p + d·(k - 1) + output_padding + 1``.
Each input cell i spreads ``x[i] · W[tap]`` to output cell ``i·s - p + tap·d``. Backward goes to x and, with
``-o grads.npz``, to the weights and bias (``weights``, ``bias``).

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x, w = np.array([[[1.0, 2.0]]]), np.array([[[1.0, 10.0, 100.0]]])
>>> op = Deconv()
>>> op.forward(x, op.bind(x.shape, WindowSpec(stride=2, dims=1), Params(), weights=w), Params()).tolist()
[[[1.0, 10.0, 102.0, 20.0, 200.0]]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan, float_type
from poolcli.engine.geometry import axis_names
from poolcli.engine.kernels import tap_cells
from poolcli.engine.ops import WEIGHTS
from poolcli.errors import GeometryError, UsageError

__all__ = ["Deconv", "DeconvPlan", "Params"]


@dataclass(frozen=True)
class DeconvPlan(Plan):
    weights: np.ndarray | None = field(default=None, compare=False, repr=False)  # (C_in, C_out/groups, *k)
    bias: np.ndarray | None = field(default=None, compare=False, repr=False)  # (C_out,)
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    output_padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    batched: bool = True  # the input has a batch axis before the channels (else one is added and taken away)


_PRODUCT_BYTES = 1 << 21  # the weights' product with a run of samples: written out tap by tap while in cache


def _by_tap(w: np.ndarray) -> np.ndarray:
    """The weights (C_in, C_out/groups, *kernel) as (*kernel, C_in, C_out/groups): each tap's matrix (and its
    rows of a group) contiguous, so its products are BLAS calls, not NumPy's strided fallback loop.

    >>> _by_tap(np.zeros((3, 2, 4, 5)))[1, 2].flags.c_contiguous
    True
    """
    return np.ascontiguousarray(np.moveaxis(w, (0, 1), (-2, -1)))


def _ints(v: tuple[float, ...]) -> bool:
    return bool(v) and all(float(n).is_integer() and n >= 0 for n in v)


class Deconv(Op):
    name, summary, windowed = "deconv", "transposed convolution by --weights (PyTorch's conv_transpose)", False
    options = (WEIGHTS,
               Option("bias", "array", None, "added per output channel", flag="--bias", metavar="B.npy"),
               Option("output_padding", "floats", None, "cells added at each axis's end", metavar="P[,P…]",
                      check=_ints, need="give whole numbers of 0 or more"),
               Option("groups", int, 1, "channel groups", metavar="G", check=lambda v: v >= 1,
                      need="give 1 or more groups"))

    def bind(self, shape, spec, params, weights=None, bias=None, **arrays):
        shape = tuple(int(n) for n in shape)
        if weights is None:
            raise UsageError("deconv needs its kernel: --weights W.npy, shape (C_in, C_out/groups, *kernel) as "
                             "PyTorch's conv_transpose")
        if spec.global_pool or spec.output_size is not None or spec.ceil:
            raise UsageError("deconv takes -s/-p/-d and --output-padding; drop --global/--output-size/--ceil")
        w = np.asarray(weights)
        if w.dtype.kind not in "biuf":
            raise UsageError(f"--weights holds {w.dtype} values; give real numbers")
        dims = spec.resolve_dims(len(shape)) if spec.dims is None else spec.dims
        if w.ndim != dims + 2:
            raise UsageError(f"--weights has shape {w.shape}; for {dims} spatial axes give (C_in, C_out/groups, "
                             f"{', '.join('k' + n for n in axis_names(dims))})")
        batched = len(shape) >= dims + 2
        if len(shape) < dims + 1:
            raise UsageError(f"deconv needs channels: give (N, C, …) or (C, …) with {dims} spatial axes, not {shape}")
        c_in, sizes = shape[-dims - 1], shape[-dims:]
        groups = int(params.groups)
        if w.shape[0] != c_in or c_in % groups:
            raise UsageError(f"--weights has {w.shape[0]} input channels but the input {c_in}"
                             if w.shape[0] != c_in else f"--groups {groups} does not divide the {c_in} input channels")
        kernel = w.shape[2:]
        if spec.kernel is not None and tuple(spec._per_axis(spec.kernel, "kernel", dims, 1)) != tuple(kernel):
            raise UsageError(f"-k disagrees with the weights' kernel {'×'.join(map(str, kernel))}; drop -k")
        stride = spec._per_axis(spec.stride, "stride", dims, 1)
        dilation = spec._per_axis(spec.dilation, "dilation", dims, 1)
        pad = spec.padding if spec.padding is not None else 0
        if isinstance(pad, str):
            raise UsageError(f"deconv's padding is a number of cells per axis, not {pad}")
        padding = spec._per_axis(pad, "padding", dims, 0)
        extra = tuple(int(v) for v in (params.output_padding or (0.0,)))
        extra = extra * dims if len(extra) == 1 else extra
        if len(extra) != dims:
            raise UsageError(f"--output-padding has {len(extra)} values; give 1 or one per spatial axis ({dims})")
        c_out = w.shape[1] * groups
        if bias is not None:
            bias = np.asarray(bias)
            if bias.shape != (c_out,) or bias.dtype.kind not in "biuf":
                raise UsageError(f"--bias has shape {bias.shape}; give one number per output channel ({c_out},)")
        outs, rows = [], []
        for name, n, k, s, p, d, e in zip(axis_names(dims), sizes, kernel, stride, padding, dilation, extra):
            if e >= max(s, d):
                raise GeometryError(f"axis {name}: --output-padding {e} must be below the stride or the dilation "
                                    f"({max(s, d)}), as PyTorch asks")
            o = (n - 1) * s - 2 * p + d * (k - 1) + e + 1
            if o < 1:
                raise GeometryError(f"axis {name}: ({n} - 1)·{s} - 2·{p} + {d}·({k} - 1) + {e} + 1 = {o}; give less "
                                    "padding")
            outs.append(o)
            rows.append({"axis": name, "size": n, "out": o, "kind": "deconv",
                         "formula": f"({n} - 1)·{s} - 2·{p} + {d}·({k} - 1) + {e} + 1 = {o}"})
        out = shape[: -dims - 1] + (c_out, *outs)
        return DeconvPlan(shape, out, tuple(rows), dims=dims, weights=w, bias=bias, stride=tuple(stride),
                          padding=tuple(padding), output_padding=extra, dilation=tuple(dilation), groups=groups,
                          batched=batched)

    def independent_axes(self, plan):
        return tuple(range(len(plan.in_shape) - plan.dims - 1))  # the samples; every channel feeds every output

    def reads_strided(self, plan, params):
        # the (C_in, cells) planes of a channels-last sample are one BLAS operand as they lie, and the other
        # path moves the channels last anyway
        return True

    # ---- the arithmetic, channels last inside: (batch, *spatial, C), each tap one matrix product -------------

    def _full(self, plan: DeconvPlan) -> tuple[int, ...]:
        """Each axis's length before the padding is cut: (in - 1)·s + d·(k - 1) + output_padding + 1."""
        sizes = plan.in_shape[-plan.dims:]
        kernel = plan.weights.shape[2:]
        return tuple((n - 1) * s + d * (k - 1) + e + 1
                     for n, k, s, d, e in zip(sizes, kernel, plan.stride, plan.dilation, plan.output_padding))

    def _taps(self, plan: DeconvPlan):
        """Each tap: its index in the kernel and the strided slices of the full output it adds to."""
        sizes = plan.in_shape[-plan.dims:]
        for tap in product(*(range(k) for k in plan.weights.shape[2:])):
            yield tap, tuple(slice(j * d, j * d + (n - 1) * s + 1, s)
                             for j, d, n, s in zip(tap, plan.dilation, sizes, plan.stride))

    def _last(self, a: np.ndarray, dims: int) -> np.ndarray:
        """(batch…, C, *spatial) → (batch, *spatial, C)."""
        b = a.reshape((int(np.prod(a.shape[: a.ndim - dims - 1])),) + a.shape[a.ndim - dims - 1:])
        return np.moveaxis(b, 1, -1)

    def _crop(self, plan: DeconvPlan) -> tuple[slice, ...]:
        outs = plan.engine_out[-plan.dims:]  # a channels-last plan's out_shape is the caller's
        return tuple(slice(p, p + o) for p, o in zip(plan.padding, outs))

    @staticmethod
    def _tiles(plan: DeconvPlan) -> bool:
        """Whether each input cell fills its own kernel-sized tile of the output (stride = kernel, no padding,
        dilation, output padding or groups): then the whole is one matrix product and one transposition."""
        kernel = plan.weights.shape[2:]
        return (plan.groups == 1 and tuple(plan.stride) == tuple(kernel) and not any(plan.padding)
                and not any(plan.output_padding) and all(d == 1 for d in plan.dilation))

    def _tile_order(self, plan: DeconvPlan) -> tuple[int, ...]:
        """(B, *in, C_out, *k) → (B, C_out, in_0, k_0, in_1, k_1, …)."""
        d = plan.dims
        return (0, d + 1, *(i for a in range(d) for i in (1 + a, d + 2 + a)))

    def _tile_forward(self, x: np.ndarray, w: np.ndarray, plan: DeconvPlan) -> np.ndarray:
        """Kernels that tile the output: every tap's (C_out, C_in) weights stacked into one matrix, its product
        with the (C_in, cells) planes of a few samples at a time made in one cache-sized buffer, and each tap's
        rows written from there into its strided view of the output (the input read in its own layout)."""
        d, kernel = plan.dims, w.shape[2:]
        lead, channels, sizes = x.shape[: x.ndim - d - 1], x.shape[x.ndim - d - 1], x.shape[x.ndim - d:]
        planes = x.reshape((int(np.prod(lead, dtype=np.int64)), channels, int(np.prod(sizes, dtype=np.int64))))
        stacked = np.ascontiguousarray(np.moveaxis(w, 0, -1)).reshape(-1, channels)  # (C_out·taps, C_in)
        y = np.empty((len(planes), w.shape[1], *(v for n, k in zip(sizes, kernel) for v in (n, k))), dtype=x.dtype)
        run = max(1, _PRODUCT_BYTES // max(1, stacked.shape[0] * planes.shape[-1] * x.dtype.itemsize))
        buffer = np.empty((min(run, len(planes)), stacked.shape[0], planes.shape[-1]), dtype=x.dtype)
        for start in range(0, len(planes), run):
            part = buffer[: min(run, len(planes) - start)]
            np.matmul(stacked, planes[start:start + len(part)], out=part)
            taps = part.reshape((len(part), w.shape[1], *kernel, *sizes))
            for tap in product(*(range(k) for k in kernel)):
                y[(slice(start, start + len(part)), slice(None), *tap_cells(tap))] = \
                    taps[(slice(None), slice(None), *tap)]
        if plan.bias is not None:
            y += plan.bias.astype(x.dtype).reshape((-1,) + (1,) * (2 * d))
        return y.reshape(lead + (w.shape[1],) + tuple(n * k for n, k in zip(sizes, kernel)))

    def forward(self, x, plan, params):
        dtype = float_type(x.dtype)  # the input's float dtype (the weights are cast to it), as every operator
        w = plan.weights.astype(dtype, copy=False)
        if self._tiles(plan):
            return self._tile_forward(x.astype(dtype, copy=False), w, plan)
        xl = self._last(x.astype(dtype, copy=False), plan.dims)
        g, cg = plan.groups, w.shape[0] // plan.groups
        og = w.shape[1]
        by_tap = _by_tap(w)
        full = np.zeros((len(xl), *self._full(plan), og * g), dtype=dtype)
        for tap, where in self._taps(plan):
            for k in range(g):
                part = xl[..., k * cg:(k + 1) * cg] @ by_tap[tap][k * cg:(k + 1) * cg]
                view = full[(slice(None), *where, slice(k * og, (k + 1) * og))]
                view += part
        y = full[(slice(None), *self._crop(plan), slice(None))]
        if plan.bias is not None:
            y = y + plan.bias.astype(dtype)
        y = np.moveaxis(y, -1, 1)
        return np.ascontiguousarray(y).reshape(x.shape[: x.ndim - plan.dims - 1] + y.shape[1:])

    def _grad_full(self, plan: DeconvPlan, grad: np.ndarray) -> np.ndarray:
        """The upstream gradient laid into the uncropped output (zeros where the padding was cut)."""
        gl = self._last(grad, plan.dims)
        full = np.zeros((len(gl), *self._full(plan), gl.shape[-1]), dtype=gl.dtype)
        full[(slice(None), *self._crop(plan), slice(None))] = gl
        return full

    def _tile_grad(self, plan: DeconvPlan, grad: np.ndarray) -> np.ndarray:
        """For tiling kernels: the gradient as (B·cells, C_out·k) rows, one per input cell."""
        d, kernel = plan.dims, plan.weights.shape[2:]
        sizes = plan.in_shape[len(plan.in_shape) - d:]
        b = int(np.prod(grad.shape[: grad.ndim - d - 1]))
        split = grad.reshape(b, grad.shape[grad.ndim - d - 1], *(v for n, k in zip(sizes, kernel) for v in (n, k)))
        back = np.argsort(self._tile_order(plan))
        return split.transpose(back).reshape(b * int(np.prod(sizes)), -1)

    def backward_reads_input(self, plan, params):
        return False

    def backward(self, x, plan, grad, params):
        if self._tiles(plan):  # the adjoint of _tile_forward: every tap's strided view of grad gathered for a
            # few samples at a time into one cache-sized buffer, times the (C_in, C_out·taps) weights
            w = plan.weights.astype(grad.dtype, copy=False)
            d, kernel = plan.dims, w.shape[2:]
            sizes = x.shape[x.ndim - d:]
            b = int(np.prod(grad.shape[: grad.ndim - d - 1], dtype=np.int64))
            split = grad.reshape((b, w.shape[1], *(v for n, k in zip(sizes, kernel) for v in (n, k))))
            flat = w.reshape(w.shape[0], -1)  # (C_in, C_out·taps), as the gathered rows
            cells = int(np.prod(sizes, dtype=np.int64))
            dx = np.empty((b, w.shape[0], cells), dtype=grad.dtype)
            run = max(1, _PRODUCT_BYTES // max(1, flat.shape[1] * cells * grad.dtype.itemsize))
            buffer = np.empty((min(run, b), w.shape[1], *kernel, *sizes), dtype=grad.dtype)
            for start in range(0, b, run):
                part = buffer[: min(run, b - start)]
                for tap in product(*(range(k) for k in kernel)):
                    part[(slice(None), slice(None), *tap)] = split[(slice(start, start + len(part)), slice(None),
                                                                   *tap_cells(tap))]
                np.matmul(flat, part.reshape(len(part), flat.shape[1], cells), out=dx[start:start + len(part)])
            return dx.reshape(x.shape)
        gf = self._grad_full(plan, grad)
        w = plan.weights.astype(gf.dtype, copy=False)
        g, cg, og = plan.groups, w.shape[0] // plan.groups, w.shape[1]
        by_tap = _by_tap(w)
        dx = np.zeros((len(gf), *plan.in_shape[-plan.dims:], w.shape[0]), dtype=gf.dtype)
        for tap, where in self._taps(plan):
            picked = gf[(slice(None), *where, slice(None))]
            for k in range(g):
                dx[..., k * cg:(k + 1) * cg] += picked[..., k * og:(k + 1) * og] @ by_tap[tap][k * cg:(k + 1) * cg].T
        return np.ascontiguousarray(np.moveaxis(dx, -1, 1)).reshape(x.shape).astype(grad.dtype, copy=False)

    def more_gradients(self, x, plan, grad, params):
        """To the weights (``weights``) and, when given, the bias (``bias``)."""
        found = {}
        if plan.bias is not None:
            found["bias"] = grad.reshape((-1,) + grad.shape[grad.ndim - plan.dims - 1:]).sum(
                axis=(0, *range(2, plan.dims + 2)))
        if self._tiles(plan):
            xl = self._last(x.astype(grad.dtype, copy=False), plan.dims)
            dw = xl.reshape(-1, xl.shape[-1]).T @ self._tile_grad(plan, grad)
            return {"weights": dw.reshape(plan.weights.shape), **found}
        gf = self._grad_full(plan, grad)
        xl = self._last(x.astype(gf.dtype, copy=False), plan.dims)
        w = plan.weights
        g, cg, og = plan.groups, w.shape[0] // plan.groups, w.shape[1]
        dw = np.zeros(w.shape, dtype=gf.dtype)
        flat_x = xl.reshape(-1, xl.shape[-1])
        for tap, where in self._taps(plan):
            picked = gf[(slice(None), *where, slice(None))].reshape(-1, gf.shape[-1])
            for k in range(g):
                dw[(slice(k * cg, (k + 1) * cg), slice(None), *tap)] = \
                    flat_x[:, k * cg:(k + 1) * cg].T @ picked[:, k * og:(k + 1) * og]
        return {"weights": dw, **found}

    def picture(self, x, y, dx, plan, params, dims):
        """Input plane (n, c) beside output plane (n, c mod C_out)."""
        c_in, c_out = x.shape[x.ndim - plan.dims - 1], y.shape[y.ndim - plan.dims - 1]
        pick = np.arange(c_in) % max(c_out, 1)
        shown = np.take(y, pick, axis=y.ndim - plan.dims - 1)
        return Picture(x, shown, dx, plan.dims, f"transposed convolution, {c_in} → {c_out} channels (output plane "
                       "c mod C_out beside input plane c)")

    def prepare_check(self, shape, spec, params, arrays):
        """Random weights (and bias) for a 2×2 kernel when none were given: C_in to C_in channels."""
        if "weights" in arrays:
            return params, arrays
        dims = spec.resolve_dims(len(shape)) if spec.dims is None else spec.dims
        c_in = shape[-dims - 1] if len(shape) > dims else 1
        groups = int(params.groups)
        rng = np.random.default_rng(0)
        return params, {**arrays, "weights": rng.normal(size=(c_in, max(c_in // groups, 1), *(2,) * dims)),
                        "bias": rng.normal(size=(max(c_in // groups, 1) * groups,))}
