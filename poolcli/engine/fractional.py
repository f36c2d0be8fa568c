"""Fractional max-pooling (Graham 2014), as PyTorch's ``FractionalMaxPool2d/3d`` (and in 1-D the same rule).

Each plane draws one number u in [0, 1) per spatial axis (``--samples U.npy`` gives them, shape
(N, C, dims) as PyTorch's ``_random_samples``, or ``--seed`` draws them); along an axis of ``n`` cells pooled
to ``out`` with a window of ``k``, window i starts at ``int((i + u)·α) - int(u·α)``, α = (n - k)/(out - 1), and
the last window ends at the input's end. Windows are ``k`` cells long, so steps of ``floor(α)`` and ``ceil(α)``
alternate pseudo-randomly: a downscaling by a fractional ratio (``--ratio 0.7``) or to ``--output-size``.
Within a window the first largest value wins (row-major), a NaN always wins, as PyTorch's kernel.

>>> import numpy as np
>>> from poolcli.engine.geometry import WindowSpec
>>> x = np.arange(25.0).reshape(1, 1, 5, 5)
>>> p = Params(ratio=(0.6,))
>>> plan = Fractional().bind(x.shape, WindowSpec(kernel=2), p, samples=np.array([[[0.5, 0.5]]]))
>>> Fractional().forward(x, plan, p)[0, 0]
array([[ 6.,  8.,  9.],
       [16., 18., 19.],
       [21., 23., 24.]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import product

import numpy as np

from poolcli.engine.base import Op, Option, Params, Picture, Plan, _finite
from poolcli.engine.geometry import axis_names
from poolcli.engine.indices import INDEX_LAYOUT, STORAGE_ORDER
from poolcli.engine.kernels import fortran_planes, memory_order
from poolcli.engine.stochastic import SEED
from poolcli.errors import GeometryError, UsageError

__all__ = ["Fractional", "FractionalPlan", "Params", "starts"]


@dataclass(frozen=True)
class FractionalPlan(Plan):
    kernel: tuple[int, ...] = ()
    samples: np.ndarray | None = None  # (lead…, dims): each plane's u per axis, in PyTorch's order


def starts(u: np.ndarray, n: int, out: int, k: int, dtype: np.dtype) -> np.ndarray:
    """Window starts along one axis for samples ``u`` (any shape): shape u.shape + (out,), in ``dtype``'s
    arithmetic (PyTorch's ``generate_intervals`` computes in the input's scalar type).

    >>> starts(np.array([0.5]), 10, 4, 2, np.dtype(np.float64)).tolist()
    [[0, 3, 5, 8]]
    """
    seq = np.empty(u.shape + (out,), dtype=np.int64)
    if out > 1:
        u = u.astype(dtype)
        alpha = dtype.type(n - k) / dtype.type(out - 1)
        i = np.arange(out - 1, dtype=dtype)
        seq[..., :-1] = ((i + u[..., None]) * alpha).astype(np.int64) - (u * alpha).astype(np.int64)[..., None]
    seq[..., -1] = n - k
    return seq


def _ratio(v: tuple[float, ...]) -> bool:
    return bool(v) and all(0 < r < 1 and _finite(r) for r in v)


def _c_steps(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The element strides of a C-ordered array of ``shape``: a cell's flat index is its indices times these.

    >>> _c_steps((2, 3, 4))
    (12, 4, 1)
    """
    return tuple(math.prod(shape[j + 1:]) for j in range(len(shape)))


class Fractional(Op):
    name, summary, windowed = "fractional", "fractional max-pooling: pseudo-random uneven windows (--ratio)", False
    options = (Option("ratio", "floats", None, "output/input size per axis", metavar="R[,R…]", check=_ratio,
                      need="give ratios between 0 and 1, such as 0.7"),
               SEED,
               Option("samples", "array", None, "window offsets u in [0,1) per plane and axis", flag="--samples",
                      metavar="U.npy"), INDEX_LAYOUT, STORAGE_ORDER)
    selects, ties, marks, keeps_int, random = True, True, "arg-max", True, True

    def bind(self, shape, spec, params, samples=None):
        shape = tuple(int(n) for n in shape)
        if spec.stride is not None or spec.padding not in (None, 0, (0,)) or spec.global_pool or spec.ceil:
            raise UsageError("fractional pooling takes -k and --ratio or --output-size; drop -s/-p/--ceil/--global")
        dims, sizes = spec.spatial(shape)
        names = axis_names(dims)
        kernel = spec._per_axis(spec.kernel, "kernel", dims, 2)
        if (params.ratio is None) == (spec.output_size is None):
            raise UsageError("fractional pooling needs --ratio R (such as 0.7) or --output-size N, not "
                             + ("both" if params.ratio is not None else "neither"))
        if params.ratio is not None:
            if len(params.ratio) not in (1, dims):
                raise UsageError(f"--ratio has {len(params.ratio)} values; give 1 or one per spatial axis ({dims})")
            ratios = params.ratio * dims if len(params.ratio) == 1 else params.ratio
            outs = tuple(int(n * r) for n, r in zip(sizes, ratios))
        else:
            outs = spec.output_sizes(dims)
        for name, n, o, k in zip(names, sizes, outs, kernel):
            if o < 1 or o + k - 1 > n:
                raise GeometryError(f"axis {name}: fractional pooling of {n} cells to {o} with a window of {k} needs "
                                    f"output + kernel - 1 ≤ input ({o} + {k} - 1 > {n}); give a smaller -k or "
                                    "output" if o >= 1 else f"axis {name}: {n} cells give an output of {o}; give a "
                                    "larger --ratio or --output-size")
        lead = shape[: len(shape) - dims]
        planes = int(np.prod(lead, dtype=np.int64))
        if samples is None:
            u = np.random.default_rng(self.value(params, "seed")).random(lead + (dims,))
        else:
            u = np.asarray(samples)
            if u.dtype.kind not in "fiu" or u.size != planes * dims:
                raise UsageError(f"--samples has shape {u.shape} but the input has {planes} plane(s) and {dims} "
                                 f"spatial axes; give (…, {dims}) numbers in [0, 1), one row per plane "
                                 "(PyTorch's _random_samples)")
            u = u.astype(np.float64).reshape(lead + (dims,))
            if not ((u >= 0) & (u < 1)).all():
                raise UsageError("--samples must hold numbers in [0, 1)")
        out = spec.with_sizes(shape, outs)
        rows = tuple({"axis": nm, "size": n, "out": o, "kind": "fractional",
                      "formula": (f"int({n} · {r:g}) = {o}" if params.ratio is not None else f"--output-size = {o}")
                      + f", windows of {k}"}
                     for nm, n, o, k, r in zip(names, sizes, outs, kernel, ratios if params.ratio else outs))
        return FractionalPlan(shape, out, rows, dims=dims, kernel=tuple(kernel), samples=u)

    def block_plan(self, plan, lead, index):
        return replace(super().block_plan(plan, lead, index), samples=plan.samples[index])

    def _starts(self, x: np.ndarray, plan: FractionalPlan) -> list[np.ndarray]:
        """Each spatial axis's window starts, (planes, out) per axis."""
        dims = plan.dims
        sizes = x.shape[x.ndim - dims:]
        outs = plan.engine_out[len(plan.engine_out) - dims:]
        dtype = np.dtype(x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
        u = plan.samples.reshape(-1, dims)
        # PyTorch's samples run W, H in 2-D (the last axis first) and T, H, W in 3-D
        order = list(range(dims))[::-1] if dims == 2 else list(range(dims))
        return [starts(u[:, order[a]], sizes[a], outs[a], plan.kernel[a], dtype) for a in range(dims)]

    def _by_axes(self, x: np.ndarray, plan: FractionalPlan, track: bool = False, axes: tuple[int, ...] | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """The forward's values one axis at a time, from the last: the max of every k cells along the axis (k - 1
        passes over shifted views), then each plane's window starts picked from it (whole rows along the first
        spatial axis, one flat ``take`` along the others); 4-6 times faster than gathering every tap of every
        window. With ``track``, also the flat in-plane index of the cell the windows' scan picks (PyTorch's: the
        first greatest in row-major order, the last NaN): each axis keeps its first strictly greater tap (its
        last NaN), and the cells' places along the axes already reduced follow that pick. Values and indices
        (``None`` without ``track``), shaped (planes, outputs per plane). Without ``track`` (values only: a max in
        any order of axes) ``axes`` may give the order in which ``x``'s axes lie in memory, its planes
        outermost: ``x`` is then read in that order, in place, and the values come in it too, (planes in memory
        order, outputs in memory order)."""
        dims, planes = plan.dims, int(np.prod(x.shape[: x.ndim - plan.dims], dtype=np.int64))
        first = x.ndim - dims
        starts, kernel = self._starts(x, plan), plan.kernel
        if axes is not None:  # planes and spatial axes in memory order
            lead, space = axes[:first], [a - first for a in axes[first:]]
            rows = np.arange(planes).reshape(x.shape[:first]).transpose(lead).reshape(-1)
            starts, kernel = [starts[a][rows] for a in space], [kernel[a] for a in space]
            x = x.transpose(axes)
        sizes = x.shape[first:]
        y, places = x.reshape((planes,) + sizes), {}
        nan = track and x.dtype.kind == "f" and bool(np.isnan(x).any())
        place = np.int32 if x.size < 2**31 else np.int64  # a cell's place along one axis, a flat index in a block
        for a, s in reversed(list(enumerate(starts))):
            k, at, n = kernel[a], a + 1, y.shape[a + 1]

            def shifted(v: np.ndarray, t: int, at: int = at, n: int = n, k: int = k) -> np.ndarray:
                return v[(slice(None),) * at + (slice(t, n - k + 1 + t),)]

            m = shifted(y, 0)
            tap = np.zeros(m.shape, dtype=np.uint8 if k < 256 else place) if track else None  # the tap each took
            inner = {b: shifted(p, 0) for b, p in places.items()}
            for t in range(1, k):
                v = shifted(y, t)
                if track:
                    better = (v > m) | np.isnan(v) if nan else v > m
                    tap += (better * (t - tap)).astype(tap.dtype, copy=False)
                    inner = {b: p + better * (shifted(places[b], t) - p) for b, p in inner.items()}
                m = np.where(better, v, m) if nan else np.maximum(m, v, out=m if t > 1 else None)
            s = s.astype(place, copy=False)
            if at == 1:  # whole rows

                def pick(v: np.ndarray, s: np.ndarray = s) -> np.ndarray:
                    return v[np.arange(planes)[:, None], s]
            else:  # one flat take, its index made once for the values and the places
                shape = m.shape[:at] + s.shape[1:] + m.shape[at + 1:]
                flat = np.zeros(shape, dtype=place)
                for j, (size, step) in enumerate(zip(shape, _c_steps(m.shape))):
                    if j == at:
                        along = s.reshape((planes,) + (1,) * (at - 1) + s.shape[1:] + (1,) * (m.ndim - at - 1))
                    else:
                        along = np.arange(size, dtype=place).reshape((1,) * j + (size,) + (1,) * (m.ndim - j - 1))
                    flat += along * step

                def pick(v: np.ndarray, flat: np.ndarray = flat) -> np.ndarray:
                    return np.take(np.ascontiguousarray(v).reshape(-1), flat)
            y = pick(m)
            if track:
                starts_here = s.reshape((planes,) + (1,) * (at - 1) + s.shape[1:] + (1,) * (dims - at))
                places = {b: pick(p) for b, p in inner.items()} | {a: pick(tap) + starts_here}
        cells, where = int(np.prod(y.shape[1:], dtype=np.int64)), None  # outputs per plane
        if track:
            where = sum(places[a].astype(np.int64) * step for a, step in enumerate(_c_steps(sizes)))
            where = where.reshape(planes, cells)
        return y.reshape(planes, cells), where

    def _windows(self, x: np.ndarray, plan: FractionalPlan) -> tuple[list[np.ndarray], np.ndarray]:
        """Each tap's flat in-plane index per window (planes flattened first), and the values there."""
        dims = plan.dims
        sizes = x.shape[x.ndim - dims:]
        outs = plan.engine_out[len(plan.engine_out) - dims:]
        u = plan.samples.reshape(-1, dims)
        first = [s.reshape((len(u),) + (1,) * a + (outs[a],) + (1,) * (dims - a - 1))
                 for a, s in enumerate(self._starts(x, plan))]
        taps = []
        for tap in product(*(range(k) for k in plan.kernel)):
            flat = sum((f + t) * step for f, t, step in zip(first, tap, _c_steps(sizes)))
            taps.append(np.broadcast_to(flat, (len(u),) + tuple(outs)).reshape(len(u), int(np.prod(outs))))
        return taps, x.reshape(len(u), int(np.prod(sizes)))

    def _select(self, x: np.ndarray, plan: FractionalPlan) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
        taps, flat = self._windows(x, plan)
        best = np.take_along_axis(flat, taps[0], axis=1)
        where = taps[0].copy()
        for idx in taps[1:]:
            v = np.take_along_axis(flat, idx, axis=1)
            better = (v > best) | np.isnan(v) if v.dtype.kind == "f" else v > best
            best = np.where(better, v, best)
            where = np.where(better, idx, where)
        return best, where, taps, flat

    def _shaped(self, a: np.ndarray, x: np.ndarray, plan: FractionalPlan) -> np.ndarray:
        return a.reshape(x.shape[: x.ndim - plan.dims] + plan.engine_out[len(plan.engine_out) - plan.dims:])

    def reads_strided(self, plan, params):  # the forward's values come out of any order of axes
        return True

    def forward(self, x, plan, params):
        first = x.ndim - plan.dims
        if x.flags.f_contiguous and not x.flags.c_contiguous:  # planes side by side innermost: each plane's
            x = fortran_planes(x, first)  # cells brought together (in reversed order), read in that order
        order = memory_order(x) if not x.flags.c_contiguous else None
        if order is None or sorted(order[:first]) != list(range(first)):  # C order, or planes not outermost
            return self._shaped(self._by_axes(np.ascontiguousarray(x), plan)[0], x, plan)
        outs = plan.engine_out[first:]
        y = self._by_axes(x, plan, axes=order)[0]
        return y.reshape([x.shape[a] for a in order[:first]] + [outs[a - first] for a in order[first:]]).transpose(
            np.argsort(order))

    def indices(self, x: np.ndarray, plan: FractionalPlan, params: Params = Params()) -> tuple[np.ndarray, np.ndarray]:
        best, where = self._by_axes(x, plan, track=True)
        return self._shaped(best, x, plan), self._shaped(where, x, plan)

    def backward(self, x, plan, grad, params):
        planes = int(np.prod(x.shape[: x.ndim - plan.dims], dtype=np.int64))
        cells = x.size // max(planes, 1)
        base = (np.arange(planes) * cells)[:, None]
        if params.ties == "first":
            best, where = self._by_axes(x, plan, track=True)
            chosen, weights = [where], [grad.reshape(best.shape)]
        else:
            from poolcli.engine.kernels import same

            best, _, taps, flat = self._select(x, plan)
            g = grad.reshape(best.shape)
            hits = [same(np.take_along_axis(flat, idx, axis=1), best) for idx in taps]
            share = g / np.sum(hits, axis=0) if params.ties == "split" else g
            chosen, weights = taps, [np.where(h, share, 0) for h in hits]
        dx = np.zeros(planes * cells, dtype=grad.dtype)
        for idx, w in zip(chosen, weights):
            dx += np.bincount((base + idx).ravel(), weights=w.ravel(), minlength=planes * cells).astype(grad.dtype)
        return dx.reshape(x.shape)

    def picture(self, x, y, dx, plan, params, dims):
        selected = self.backward(x.astype(np.float64), plan, np.ones(y.shape), params) != 0
        dtype = np.dtype(x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
        u = plan.samples
        order = list(range(plan.dims))[::-1] if plan.dims == 2 else list(range(plan.dims))
        sizes, outs = x.shape[x.ndim - plan.dims:], y.shape[y.ndim - plan.dims:]

        def windows(index: tuple[int, ...]) -> list[list[list[int]]]:
            per_axis = []
            for a in range(plan.dims):
                s = starts(np.asarray(u[index][order[a]]), sizes[a], outs[a], plan.kernel[a], dtype)
                per_axis.append([list(range(int(b), int(b) + plan.kernel[a])) for b in s])
            return per_axis

        return Picture(x, y, dx, plan.dims, f"kernel {'×'.join(map(str, plan.kernel))}, to "
                       f"{'×'.join(map(str, outs))}", marked_in=selected, windows=windows)

    def prepare_check(self, shape, spec, params, arrays):
        """A ratio of 0.7 when neither --ratio nor --output-size was given."""
        if params.ratio is None and spec.output_size is None:
            return params.replace(ratio=0.7), arrays
        return params, arrays

