"""K-max pooling: the k largest values along one axis, kept in their original order.

Ties go to the lower index; NaN counts as larger than any number (as ``torch.topk``).

>>> import numpy as np
>>> x = np.array([[3, 1, 4, 1], [5, 9, 2, 6], [5, 3, 5, 8], [9, 7, 9, 3]])
>>> plan = KMax().bind(x.shape, None, Params(k=2, axis=0))
>>> KMax().forward(x, plan, Params(k=2, axis=0))
array([[5, 9, 5, 6],
       [9, 7, 9, 8]])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan
from poolcli.engine.half import to_float32
from poolcli.engine.kernels import fortran_planes, same
from poolcli.errors import GeometryError, UsageError


@dataclass(frozen=True)
class KMaxPlan(Plan):
    axis: int = -1
    k: int = 1


def normalise_axis(axis: int, ndim: int) -> int:
    """``axis`` as a non-negative index: ``normalise_axis(-1, 3)`` is 2."""
    if not -ndim <= axis < ndim:
        raise UsageError(f"--axis {axis}: the input has {ndim} axes; give 0 to {ndim - 1} (or -1 for the last)")
    return axis % ndim


FEW = 8  # up to this many kept values, k argmax passes beat a partition of every line


def _has_minus_inf(x: np.ndarray) -> bool:
    lowest = x.min()  # NaN when there is one: then look for -inf among the rest
    return bool(np.isneginf(x).any()) if np.isnan(lowest) else bool(np.isneginf(lowest))


def _by_argmax(x: np.ndarray, k: int) -> np.ndarray | None:
    """``choose`` by k argmax passes, each pick then set below every value (NaN is argmax's largest, ties go to the
    lower index, as choose's); None when no value is below the input's (a float -inf, an int64 minimum)."""
    if x.dtype.kind in "ui" and x.dtype.itemsize < 8:
        wide = np.dtype(f"int{2 * 8 * x.dtype.itemsize}")  # room below the smallest value
        below = np.iinfo(wide).min
    elif x.dtype.kind == "f" and not _has_minus_inf(x):
        wide, below = x.dtype, -np.inf
    else:
        return None
    first = np.argmax(x, axis=-1)[..., None]
    if k == 1:
        return first
    work = x.astype(wide, copy=True)
    picks = [first]
    for _ in range(k - 1):
        np.put_along_axis(work, picks[-1], below, axis=-1)
        picks.append(np.argmax(work, axis=-1)[..., None])
    return np.sort(np.concatenate(picks, axis=-1), axis=-1)


def choose(x: np.ndarray, k: int) -> np.ndarray:
    """Positions (ascending) of the k largest values along the last axis; ties to the lower index, NaN largest."""
    n = x.shape[-1]
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    if k <= FEW and x.size:
        picked = _by_argmax(x, k)
        if picked is not None:
            return picked
    if x.dtype.kind == "f" and np.isnan(x).any():
        nan = np.isnan(x)
        order = np.lexsort((-np.where(nan, 0, x), ~nan), axis=-1)  # NaN first, then largest; stable
        return np.sort(order[..., :k], axis=-1)
    t = np.partition(x, n - k, axis=-1)[..., n - k : n - k + 1]  # the k-th largest value
    greater = x > t
    eq = x == t
    need = k - greater.sum(axis=-1, keepdims=True)
    chosen = greater | (eq & (np.cumsum(eq, axis=-1) <= need))
    return np.nonzero(chosen.reshape(-1, n))[1].reshape(x.shape[:-1] + (k,))


class KMax(Op):
    name, summary, windowed, keeps_int = "kmax", "the --k largest values along --axis, in their order", False, True
    spatial_layout, selects, ties, marks = False, True, True, "kept"
    options = (Option("k", int, 2, "values kept", metavar="K", check=lambda v: v >= 1,
                      need="keep 1 or more values", hint=" (the window size is -k/--kernel)"),
               Option("axis", int, -1, "along this axis", metavar="AXIS"))

    def bind(self, shape, spec, params, **arrays):
        shape = tuple(int(n) for n in shape)
        if not shape:
            raise GeometryError("the input is a single number (0-D); kmax needs an axis")
        axis = normalise_axis(params.axis, len(shape))
        n = shape[axis]
        if params.k > n:
            raise GeometryError(f"--k {params.k}: axis {axis} holds only {n} values; give --k {n} or less")
        out = shape[:axis] + (params.k,) + shape[axis + 1 :]
        row = {"axis": str(axis), "size": n, "out": params.k, "kind": "kmax",
               "formula": f"the {params.k} largest of {n}, in their order = {params.k}"}
        return KMaxPlan(shape, out, (row,), axis=axis, k=params.k)

    def positions(self, x: np.ndarray, plan: KMaxPlan) -> np.ndarray:
        """Where the kept values sit along the axis (the axis moved last)."""
        return choose(np.moveaxis(x, plan.axis, -1), plan.k)

    def reads_strided(self, plan, params):  # a Fortran-ordered input's lines as rows (see _lines)
        return True

    def backward_reads_strided(self, plan, params):
        return True

    def _lines(self, x: np.ndarray, plan: KMaxPlan
               ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
        """The lines along the axis as the last axis, and the maps that take an array of ``x``'s axes (the
        gradient) to that axis order and back: for a Fortran-ordered input pooled along its last axis, the
        lines brought together by the planes-from-cells transposition, the other axes reversed (no copy back
        to C order); else the axis moved last, of a C-ordered copy where the input is in no simple order."""
        last = x.ndim - 1
        if plan.axis == last and last > 0 and x.flags.f_contiguous and not x.flags.c_contiguous:
            order = (*range(last - 1, -1, -1), last)  # the other axes reversed: C order in memory

            def turn(a: np.ndarray) -> np.ndarray:  # (its own inverse)
                return a.transpose(order)
            return turn(fortran_planes(x, last)), turn, turn
        if not x.flags.c_contiguous:  # (a Fortran-ordered one through the tiled transposition: NumPy's copy is slow)
            x = np.ascontiguousarray(fortran_planes(x, last) if x.flags.f_contiguous else x)
        return (np.moveaxis(x, plan.axis, -1), lambda a: np.moveaxis(a, plan.axis, -1),
                lambda a: np.moveaxis(a, -1, plan.axis))

    def forward(self, x, plan, params):
        lines, _, back = self._lines(x, plan)
        return back(np.take_along_axis(lines, choose(lines, plan.k), axis=-1))

    def widens_half(self, params, backward=False, plan=None):
        return not (backward and params.ties == "first")  # each kept cell takes its one value: float16 moved as is

    def backward(self, x, plan, grad, params):
        lines, to_lines, back = self._lines(x, plan)
        g = to_lines(grad)
        pos = choose(to_float32(lines) if lines.dtype == np.float16 else lines, plan.k)  # (float32's picks)
        dx = np.zeros(lines.shape, dtype=grad.dtype)
        if params.ties == "first":
            np.put_along_axis(dx, pos, g, axis=-1)
        else:  # every cell equal to a kept value shares (split) or takes (all) that output's gradient
            kept = np.take_along_axis(lines, pos, axis=-1)
            tied = same(lines[..., None, :], kept[..., :, None])
            share = g / tied.sum(axis=-1) if params.ties == "split" else g
            dx = np.einsum("...j,...jn->...n", share, tied.astype(grad.dtype))
        return back(dx)

    def selected(self, x, plan, params):
        mask = np.zeros(np.moveaxis(x, plan.axis, -1).shape, dtype=bool)
        np.put_along_axis(mask, self.positions(x, plan), True, axis=-1)
        return np.moveaxis(mask, -1, plan.axis)

    def independent_axes(self, plan):
        return tuple(i for i in range(len(plan.in_shape)) if i != plan.axis)

    def picture(self, x, y, dx, plan, params, dims):
        dims = min(dims, x.ndim)
        if plan.axis < x.ndim - dims:
            raise UsageError(f"visualize --op kmax draws the last {dims} axes; keep along one of them "
                             f"(--axis {x.ndim - dims} or more)")
        return Picture(x, y, dx, dims, f"the {plan.k} largest along axis {plan.axis}, in their order",
                       marked_in=self.selected(x, plan, params))


__all__ = ["KMax", "KMaxPlan", "Params", "choose", "normalise_axis"]
