"""Window geometry: how pooling windows tile each spatial axis.

Options are parsed once into a shape-free :class:`WindowSpec`; ``spec.bind(shape)``
gives the :class:`Geometry` of one input, which forward, backward, ``shape`` and
``visualize`` all ask instead of re-deriving a formula.

>>> g = WindowSpec(kernel=3, stride=2, padding=1).bind((1, 3, 224, 224))
>>> g.out_shape
(1, 3, 112, 112)
>>> g.axes[0].explain()
'floor((224 + 1 + 1 - 1·(3-1) - 1) / 2) + 1 = 112'
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from poolcli.errors import GeometryError, UsageError

PadMode = str  # "valid", "same" or "same-lower"
PadSpec = int | Sequence[int] | PadMode
PAD_MODES = ("valid", "same", "same-lower")

Selection = slice | np.ndarray


def axis_names(dims: int) -> tuple[str, ...]:
    """Names of the spatial axes, as in messages: ``axis_names(2) == ('H', 'W')``."""
    return {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}.get(dims, tuple(f"S{i}" for i in range(dims)))


@dataclass(frozen=True)
class Tap:
    """One kernel tap along one axis: the outputs it feeds and the input cells it reads.

    ``out`` and ``inp`` are slices (regular windows) or index arrays (adaptive windows)
    of equal length; only real input cells appear, padding is never read.
    ``unique`` is False when ``inp`` repeats a cell (adaptive windows with more outputs
    than inputs), so a scatter must accumulate with ``np.add.at``.
    """

    j: int
    out: Selection
    inp: Selection
    full: bool
    unique: bool = True

    def positions(self) -> np.ndarray:
        """Input cell read for each output this tap feeds."""
        if isinstance(self.inp, slice):
            return np.arange(self.inp.start, self.inp.stop, self.inp.step)
        return self.inp


@dataclass(frozen=True)
class Axis:
    """How windows tile one spatial axis: ``Axis(224, kernel=3, stride=2, pad=(1, 1)).out == 112``.

    ``pad`` is ``(begin, end)``; under ``ceil`` a window may run past the padded end,
    but the last one must start inside the input or the begin padding.
    """

    size: int
    kernel: int
    stride: int
    dilation: int = 1
    pad: tuple[int, int] = (0, 0)
    ceil: bool = False
    name: str = "W"
    kind: str = "window"  # "window" or "global"

    adaptive = False

    @property
    def span(self) -> int:
        """Cells one window covers, holes included."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def padded(self) -> int:
        """Input length with both paddings."""
        return self.size + self.pad[0] + self.pad[1]

    @functools.cached_property
    def out(self) -> int:
        """Number of windows (output cells) along this axis (found once: every pass of every block asks)."""
        room = self.padded - self.span
        if room < 0:
            return 0
        n = (-(-room // self.stride) if self.ceil else room // self.stride) + 1
        if self.ceil and (n - 1) * self.stride >= self.size + self.pad[0]:
            n -= 1  # the last window must start inside the input or the front padding
        return n

    @property
    def overhang(self) -> int:
        """Cells past the padded end that the last window reaches (ceil mode)."""
        return max(0, (self.out - 1) * self.stride + self.span - self.padded)

    def explain(self) -> str:
        """The output-size formula with this axis's numbers filled in."""
        if self.kind == "global":
            return f"global: one window over all {self.size} cells = 1"
        room = f"({self.size} + {self.pad[0]} + {self.pad[1]} - {self.dilation}·({self.kernel}-1) - 1)"
        rounding = "ceil" if self.ceil else "floor"
        text = f"{rounding}({room} / {self.stride}) + 1"
        if self.ceil:
            raw = -(-(self.padded - self.span) // self.stride) + 1
            if raw != self.out:
                text += " - 1 (the last window may not start in the end padding)"
        return f"{text} = {self.out}"

    def starts(self) -> np.ndarray:
        """First input cell (unpadded coordinates, may be negative) of each window."""
        return np.arange(self.out) * self.stride - self.pad[0]

    def window(self, o: int) -> list[int]:
        """Real input cells read by output ``o`` (padding left out)."""
        first = o * self.stride - self.pad[0]
        cells = (first + j * self.dilation for j in range(self.kernel))
        return [c for c in cells if 0 <= c < self.size]

    def taps(self) -> list[Tap]:
        """For each kernel tap, the outputs it reaches and the real cells it reads."""
        return list(self._taps)

    @functools.cached_property
    def _taps(self) -> tuple[Tap, ...]:
        out, stride = self.out, self.stride
        taps = []
        for j in range(self.kernel):
            offset = j * self.dilation - self.pad[0]  # input cell read by output 0
            lo = -(offset // stride) if offset < 0 else 0  # first output on a real cell
            last = self.size - 1 - offset
            hi = min(out, last // stride + 1) if last >= 0 else 0
            if hi <= lo:
                continue
            start = lo * stride + offset
            stop = (hi - 1) * stride + offset + 1
            taps.append(Tap(j, slice(lo, hi), slice(start, stop, stride), lo == 0 and hi == out))
        return tuple(taps)

    def counts(self, count_pad: bool) -> np.ndarray:
        """Divisor of an average per output: taps on real cells, plus padded ones if ``count_pad``.

        Cells past the padded end (ceil mode) never count.
        """
        return self._taps_within(self.starts() + self.pad[0], *((0, self.padded) if count_pad else
                                                                 (self.pad[0], self.pad[0] + self.size)))

    def _taps_within(self, first: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """How many taps of each window (its first tap at ``first``) fall in [lo, hi): O(out), not O(out·kernel).

        >>> Axis(5, kernel=3, stride=2, dilation=2, pad=(2, 2))._taps_within(np.array([0, 2, 4]), 2, 7)
        array([2, 3, 2])
        """
        d = self.dilation
        j0 = np.maximum(0, -((first - lo) // d))  # first tap at or after lo: ceil((lo - first) / d)
        j1 = np.minimum(self.kernel, (hi - 1 - first) // d + 1)  # taps before hi
        return np.maximum(0, j1 - j0)

    def check(self) -> None:
        """Raise GeometryError naming this axis and its numbers if the windows do not fit."""
        if self.out < 1:
            fit_kernel = (self.padded - 1) // self.dilation + 1
            need = -(-(self.span - self.size) // 2)
            size_words = f"{self.padded} ({self.size} + {self.pad[0]} + {self.pad[1]})"
            what = f"kernel {self.kernel}"
            if self.dilation > 1:
                what += f" with dilation {self.dilation}"
            hint = f"use -k {fit_kernel} or less" if fit_kernel >= 1 else "use a smaller kernel"
            if need > max(self.pad):
                hint += f", or -p {need}"
            raise GeometryError(
                f"axis {self.name}: {what} spans {self.span} cells but the padded input has "
                f"{size_words}; {hint}"
            )
        starts = self.starts()
        real = self._taps_within(starts, 0, self.size) > 0
        if not real.all():
            o = int(np.argmin(real))
            first, last = int(starts[o]), int(starts[o]) + self.span - 1
            raise GeometryError(
                f"axis {self.name}: window {o} covers cells {first}..{last} of an input of "
                f"{self.size} and sees only padding (pad {self.pad[0]},{self.pad[1]}); "
                f"use a padding smaller than the kernel's span ({self.span})"
            )


@functools.lru_cache(maxsize=64)
def _counts(axes: tuple, count_pad: bool) -> np.ndarray:
    total = np.ones((), dtype=np.int64)
    for a in axes:
        total = np.multiply.outer(total, a.counts(count_pad))
    total.flags.writeable = False
    return total


@dataclass(frozen=True)
class AdaptiveAxis:
    """Adaptive windows: output i spans ``[floor(i*In/Out), ceil((i+1)*In/Out))``.

    >>> AdaptiveAxis(5, 3).bounds()
    (array([0, 1, 3]), array([2, 4, 5]))
    """

    size: int
    out: int
    name: str = "W"

    adaptive = True
    ceil = False
    pad = (0, 0)
    dilation = 1
    kind = "adaptive"

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Start (inclusive) and end (exclusive) input cell of every window (read-only: made once per size)."""
        return _adaptive_bounds(self.size, self.out)

    @property
    def kernel(self) -> int:
        """The longest window."""
        start, end = self.bounds()
        return int((end - start).max())

    @property
    def span(self) -> int:
        return self.kernel

    @property
    def stride(self) -> int:
        return max(1, self.size // self.out)

    overhang = 0

    def explain(self) -> str:
        return (
            f"adaptive: {self.out} windows over {self.size} cells, window i spans "
            f"[floor(i·{self.size}/{self.out}), ceil((i+1)·{self.size}/{self.out})) = {self.out}"
        )

    def starts(self) -> np.ndarray:
        return self.bounds()[0]

    def window(self, o: int) -> list[int]:
        start, end = self.bounds()
        return list(range(int(start[o]), int(end[o])))

    def taps(self) -> list[Tap]:
        start, end = self.bounds()
        length = end - start
        unique = self.out <= self.size
        taps = []
        for j in range(int(length.max())):
            outs = np.flatnonzero(length > j)
            full = len(outs) == self.out
            taps.append(Tap(j, slice(None) if full else outs, start[outs] + j, full, unique))
        return taps

    def counts(self, count_pad: bool) -> np.ndarray:
        start, end = self.bounds()
        return end - start

    def check(self) -> None:
        if self.out < 1:
            raise GeometryError(f"axis {self.name}: --output-size {self.out} must be 1 or more")


@functools.lru_cache(maxsize=256)
def _adaptive_bounds(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """``AdaptiveAxis.bounds``, computed once per (size, out): every block of every call asks for them."""
    i = np.arange(out)
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    start.flags.writeable = end.flags.writeable = False
    return start, end


AnyAxis = Axis | AdaptiveAxis


@dataclass(frozen=True)
class Geometry:
    """A WindowSpec bound to one input shape: leading (plane) axes and one Axis per spatial axis.

    The shape here is in the engine's layout, spatial axes last; ``channels_last``
    records that the caller's array keeps its channels after them.
    """

    lead: tuple[int, ...]
    axes: tuple[AnyAxis, ...]
    channels_last: bool = False
    origin: tuple[int, ...] = ()  # where these planes start in the whole input (see ``planes``); () = at 0

    @property
    def dims(self) -> int:
        return len(self.axes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Input shape, spatial axes last."""
        return self.lead + tuple(a.size for a in self.axes)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Output shape in the caller's layout (channels after the spatial axes if channels_last)."""
        shape = self.lead + tuple(a.out for a in self.axes)
        return caller_shape(shape, self.dims) if self.channels_last and self.lead else shape

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple(a.out for a in self.axes)

    def taps(self) -> Iterator[tuple[Tap, ...]]:
        """Every tap of the N-D window, in row-major order of the window's cells."""
        return itertools.product(*(a.taps() for a in self.axes))

    def window(self, o: Sequence[int]) -> list[list[int]]:
        """Real input cells, per axis, read by output cell ``o`` (spatial index)."""
        return [a.window(int(i)) for a, i in zip(self.axes, o)]

    def counts(self, count_pad: bool) -> np.ndarray:
        """Divisor of an average for every output cell (spatial shape), one count per axis multiplied
        (read-only: the blocks of one input share it)."""
        return _counts(self.axes, count_pad)

    def block(self, lead: tuple[int, ...], index: tuple[slice, ...]) -> Geometry:
        """The geometry of the block ``index`` of these planes (``lead`` its sizes), knowing where it starts.

        >>> Geometry((4, 6), ()).block((2, 3), (slice(2, 4), slice(3, 6))).origin
        (2, 3)
        """
        start = self.origin or (0,) * len(self.lead)
        shifted = tuple(int(a) + s.start for a, s in zip(start[len(start) - len(self.lead):], index))
        return replace(self, lead=lead, channels_last=False, origin=start[: len(start) - len(self.lead)] + shifted)

    def plane(self, index: tuple[int, ...]) -> Geometry:
        """The geometry of the one plane at ``index`` (one index per leading axis), for a picture of it.

        >>> Geometry((2, 3), ()).plane((1, 2)).origin
        (1, 2)
        """
        return replace(self, lead=(), channels_last=False, origin=tuple(index))

    def planes(self) -> tuple[tuple[int, ...], list[np.ndarray]]:
        """Where the planes are in the whole input: the origin (one start per leading axis of the whole input,
        which may have more axes than this block, as one plane cut out for a picture) and, per axis of
        ``lead``, the coordinates of its planes (open-mesh shaped). Operators that draw random numbers per
        window key them on these, so that every block, and a picture of one plane, draws what the whole does.
        """
        origin = self.origin or (0,) * len(self.lead)
        k = len(self.lead)
        shifted = origin[len(origin) - k:] if k else ()
        coords = [np.arange(a, a + n).reshape((-1,) + (1,) * (k - i - 1)) for i, (a, n) in enumerate(zip(shifted,
                                                                                                       self.lead))]
        return origin, coords

    def row_strips(self, rows: int) -> list[tuple[slice, slice, Geometry]]:
        """Split the first spatial axis into strips of about ``rows`` output rows, each pooled on its own:
        (output rows, input rows it reads, its Geometry), so that a large input never needs to be whole
        in memory. Each strip's windows, paddings and counts are those of the whole; windows that reach
        the end padding all go in the last strip, which keeps the end padding and ceil mode.

        >>> g = Geometry((), (Axis(10, kernel=3, stride=2, pad=(1, 1), name="H"), Axis(4, kernel=2, stride=2)))
        >>> [(o.start, o.stop, i.start, i.stop, s.out_spatial) for o, i, s in g.row_strips(2)]
        [(0, 2, 0, 4, (2, 2)), (2, 4, 3, 8, (2, 2)), (4, 5, 7, 10, (1, 2))]
        """
        axis = self.axes[0]
        if not isinstance(axis, Axis) or axis.kind != "window" or axis.out <= rows:
            return [(slice(0, axis.out), slice(0, axis.size), self)]
        # The last strip starts at the first window that reaches past the input, or earlier, so that it
        # holds at least one whole span (under ceil a window may also run past the padded end).
        past = (axis.size + axis.pad[0] - axis.span) // axis.stride + 1  # first window ending past the input
        tail = max(0, min(past, (axis.padded - axis.span) // axis.stride, axis.out - 1))
        bounds = [*range(0, tail, rows), tail, axis.out]
        strips = []
        for o0, o1 in itertools.pairwise(bounds):  # strictly increasing: tail < out
            last = o1 == axis.out
            begin = o0 * axis.stride - axis.pad[0]  # first padded cell the strip's first window reads
            end = axis.size + axis.pad[1] if last else (o1 - 1) * axis.stride - axis.pad[0] + axis.span
            a, b = max(begin, 0), min(end, axis.size)
            sub = Axis(b - a, axis.kernel, axis.stride, axis.dilation, (a - begin, end - b),
                       axis.ceil and last, axis.name, axis.kind)
            strips.append((slice(o0, o1), slice(a, b), Geometry(self.lead, (sub, *self.axes[1:]), self.channels_last)))
        return strips


def engine_shape(shape: tuple[int, ...], dims: int) -> tuple[int, ...]:
    """A channels-last shape (…, spatial, C) in the engine's layout (…, C, spatial).

    >>> engine_shape((1, 8, 6, 3), 2)
    (1, 3, 8, 6)
    """
    c = len(shape) - dims - 1
    return shape[:c] + shape[-1:] + shape[c:-1]


def caller_shape(shape: tuple[int, ...], dims: int) -> tuple[int, ...]:
    """The inverse of ``engine_shape``: (…, C, spatial) back to (…, spatial, C).

    >>> caller_shape((1, 3, 8, 6), 2)
    (1, 8, 6, 3)
    """
    c = len(shape) - dims - 1
    return shape[:c] + shape[c + 1 :] + (shape[c],)


def _tuple(value: int | Sequence[int] | None, name: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class WindowSpec:
    """Window options, parsed once and shape-free; ``bind(shape)`` gives a Geometry.

    - ``kernel``, ``stride``, ``dilation``: one int or one per spatial axis
      (stride defaults to the kernel, kernel to 2);
    - ``padding``: an int, one per axis (both sides), ``(begin, end)`` per axis
      (top, bottom, left, right in 2-D), ``"valid"``, ``"same"`` (odd pad at the end)
      or ``"same-lower"`` (odd pad at the start);
    - ``ceil``: ceil instead of floor for the output size;
    - ``global_pool``: one window over the whole spatial extent (axes kept as size 1);
    - ``output_size``: adaptive pooling to this size;
    - ``dims``: the number of trailing spatial axes (default 1 for a 1-D array, else 2,
      or the length of a per-axis kernel/stride/dilation/output size);
    - ``channels_last``: the array is ``(…, H, W, C)``.

    >>> WindowSpec(kernel=(3, 2), padding=(0, 1, 0, 1)).bind((5, 5)).out_shape
    (2, 3)
    """

    kernel: int | Sequence[int] | None = None
    stride: int | Sequence[int] | None = None
    padding: PadSpec = 0
    dilation: int | Sequence[int] = 1
    ceil: bool = False
    global_pool: bool = False
    output_size: int | Sequence[int] | None = None
    dims: int | None = None
    channels_last: bool = False

    def __post_init__(self) -> None:
        for name in ("kernel", "stride", "dilation", "output_size"):
            values = _tuple(getattr(self, name), name)
            if values is None:
                continue
            if not values:
                raise UsageError(f"--{name.replace('_', '-')} is empty; give a number like 2 or 2,2")
            low = 1
            for v in values:
                if v < low:
                    raise UsageError(
                        f"--{name.replace('_', '-')} {','.join(map(str, values))}: every value must be "
                        f"{low} or more"
                    )
        if isinstance(self.padding, str):
            if self.padding not in PAD_MODES:
                raise UsageError(
                    f"--padding {self.padding}: not a padding; give a number, per-axis numbers, "
                    f"or one of {', '.join(PAD_MODES)}"
                )
        else:
            pads = _tuple(self.padding, "padding") or (0,)
            if any(p < 0 for p in pads):
                raise UsageError(f"--padding {','.join(map(str, pads))}: padding cannot be negative")
        if self.global_pool and self.output_size is not None:
            raise UsageError("--global and --output-size both set the window; give one of them")
        if self.dims is not None and self.dims < 1:
            raise UsageError(f"--dims {self.dims}: give 1 or more spatial axes")

    def resolve_dims(self, ndim: int) -> int:
        """Number of spatial axes for an array of ``ndim`` dimensions (channels excluded)."""
        if self.dims is not None:
            if self.dims > ndim:
                raise GeometryError(
                    f"the input has {ndim} dimension{'s' if ndim != 1 else ''} but {self.dims} spatial "
                    f"axes are asked for; use --dims {ndim} or less"
                )
            return self.dims
        per_axis = {}
        for name in ("kernel", "stride", "dilation", "output_size"):
            values = _tuple(getattr(self, name), name)
            if values and len(values) > 1:
                per_axis.setdefault(len(values), (name, values))
        if len(per_axis) > 1:
            (n1, (a, va)), (n2, (b, vb)) = list(per_axis.items())[:2]
            raise UsageError(
                f"--{a.replace('_', '-')} {','.join(map(str, va))} has {n1} values but --{b.replace('_', '-')} "
                f"{','.join(map(str, vb))} has {n2}; give each 1 value or one per spatial axis"
            )
        if not per_axis:
            return 1 if ndim == 1 else 2
        dims, (name, values) = next(iter(per_axis.items()))
        if dims > ndim:
            raise GeometryError(
                f"--{name.replace('_', '-')} {','.join(map(str, values))} has {dims} values but the input "
                f"has only {ndim} dimension{'s' if ndim != 1 else ''}; give 1 or one per spatial axis"
            )
        return dims

    def _per_axis(self, value: int | Sequence[int] | None, name: str, dims: int, default: int) -> tuple[int, ...]:
        values = _tuple(value, name)
        if values is None:
            return (default,) * dims
        if len(values) == 1:
            return values * dims
        if len(values) != dims:
            raise UsageError(
                f"--{name.replace('_', '-')} {','.join(map(str, values))} has {len(values)} values; "
                f"give 1 or one per spatial axis ({dims})"
            )
        return values

    def _pads(self, sizes: Sequence[int], kernels: Sequence[int], strides: Sequence[int],
              dilations: Sequence[int]) -> list[tuple[int, int]]:
        dims = len(sizes)
        if isinstance(self.padding, str):
            if self.padding == "valid":
                return [(0, 0)] * dims
            pads = []
            for size, k, s, d in zip(sizes, kernels, strides, dilations):
                out = -(-size // s)
                total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
                small, large = total // 2, total - total // 2
                pads.append((small, large) if self.padding == "same" else (large, small))
            return pads
        values = _tuple(self.padding, "padding") or (0,)
        if len(values) == 1:
            return [(values[0], values[0])] * dims
        if len(values) == dims:
            return [(v, v) for v in values]
        if len(values) == 2 * dims:
            return [(values[2 * i], values[2 * i + 1]) for i in range(dims)]
        raise UsageError(
            f"--padding {','.join(map(str, values))} has {len(values)} values; give 1, one per axis "
            f"({dims}), or begin,end per axis ({2 * dims})"
        )

    def output_sizes(self, dims: int) -> tuple[int, ...]:
        """--output-size, one per spatial axis: ``WindowSpec(output_size=3).output_sizes(2)`` is ``(3, 3)``."""
        return self._per_axis(self.output_size, "output_size", dims, 1)

    def unpooled_sizes(self, sizes: Sequence[int]) -> tuple[tuple[int, ...], list[str]]:
        """The spatial sizes a pooling with these options read to give ``sizes`` outputs (PyTorch's
        max_unpool default), or --output-size; and how each was found, as a formula.

        >>> WindowSpec(kernel=2).unpooled_sizes((2, 3))
        ((4, 6), ['(2 - 1)·2 - 0 - 0 + 1·(2-1) + 1', '(3 - 1)·2 - 0 - 0 + 1·(2-1) + 1'])
        """
        dims = len(sizes)
        if self.output_size is not None:
            return self._per_axis(self.output_size, "output_size", dims, 1), ["--output-size"] * dims
        if self.global_pool or isinstance(self.padding, str):
            raise UsageError("unpool cannot tell the size from --global or a padding mode; give --output-size")
        kernels = self._per_axis(self.kernel, "kernel", dims, 2)
        strides = tuple(s or k for s, k in zip(self._per_axis(self.stride, "stride", dims, 0), kernels))
        dilations = self._per_axis(self.dilation, "dilation", dims, 1)
        pads = self._pads(sizes, kernels, strides, dilations)
        found = tuple((n - 1) * s - p[0] - p[1] + d * (k - 1) + 1
                      for n, k, s, p, d in zip(sizes, kernels, strides, pads, dilations))
        how = [f"({n} - 1)·{s} - {p[0]} - {p[1]} + {d}·({k}-1) + 1"
               for n, k, s, p, d in zip(sizes, kernels, strides, pads, dilations)]
        return found, how

    def spatial(self, shape: Sequence[int]) -> tuple[int, tuple[int, ...]]:
        """The number of spatial axes of an input of this shape (the caller's layout), and their sizes.

        >>> WindowSpec(channels_last=True).spatial((1, 8, 6, 3))
        (2, (8, 6))
        """
        shape = tuple(int(n) for n in shape)
        ndim = len(shape)
        if ndim == 0:
            raise GeometryError("the input is a single number (0-D); pooling needs at least one axis")
        dims = self.resolve_dims(ndim - (1 if self.channels_last else 0))
        if self.channels_last and ndim < dims + 1:
            raise GeometryError(
                f"--channels-last needs a channel axis after {dims} spatial axes, but the input has shape {shape}"
            )
        first = ndim - dims - (1 if self.channels_last else 0)
        return dims, shape[first : first + dims]

    def with_sizes(self, shape: Sequence[int], sizes: Sequence[int]) -> tuple[int, ...]:
        """``shape`` with its spatial sizes replaced: ``WindowSpec().with_sizes((1, 3, 8, 8), (4, 4))`` is
        ``(1, 3, 4, 4)``."""
        shape = tuple(int(n) for n in shape)
        first = len(shape) - len(sizes) - (1 if self.channels_last else 0)
        return shape[:first] + tuple(int(n) for n in sizes) + shape[first + len(sizes) :]

    def bind(self, shape: Sequence[int]) -> Geometry:
        """The Geometry of an input of this shape (the caller's layout); raises GeometryError if it does not fit."""
        shape = tuple(int(n) for n in shape)
        dims, sizes = self.spatial(shape)
        first = len(shape) - dims - (1 if self.channels_last else 0)
        lead = shape[:first] + ((shape[-1],) if self.channels_last else ())
        names = axis_names(dims)
        for name, size in zip(names, sizes):
            if size < 1:
                raise GeometryError(f"axis {name} has size {size}; pooling needs at least one cell")
        axes: list[AnyAxis]
        if self.global_pool or self.output_size is not None:
            explicit = [n for n in ("kernel", "stride") if getattr(self, n) is not None]
            if explicit or self.dilation not in (1, (1,)) or self.padding not in (0, (0,), "valid"):
                which = "--global" if self.global_pool else "--output-size"
                raise UsageError(f"{which} sets the windows itself; drop -k/-s/-p/-d")
        if self.global_pool:
            axes = [Axis(n, n, 1, name=name, kind="global") for n, name in zip(sizes, names)]
        elif self.output_size is not None:
            outs = self._per_axis(self.output_size, "output_size", dims, 1)
            axes = []
            for n, o, name in zip(sizes, outs, names):
                if n % o == 0:  # windows tile exactly: a plain strided window
                    axes.append(Axis(n, n // o, n // o, name=name, kind="adaptive"))
                else:
                    axes.append(AdaptiveAxis(n, o, name=name))
        else:
            kernels = self._per_axis(self.kernel, "kernel", dims, 2)
            strides = self._per_axis(self.stride, "stride", dims, 0)
            strides = tuple(s or k for s, k in zip(strides, kernels))
            dilations = self._per_axis(self.dilation, "dilation", dims, 1)
            pads = self._pads(sizes, kernels, strides, dilations)
            axes = [Axis(n, k, s, d, p, self.ceil, name)
                    for n, k, s, d, p, name in zip(sizes, kernels, strides, dilations, pads, names)]
        for a in axes:
            a.check()
        return Geometry(tuple(lead), tuple(axes), self.channels_last)


WINDOW_OPTIONS = tuple(f.name for f in fields(WindowSpec))


def describe(g: Geometry) -> list[dict]:
    """Per-axis facts for ``shape --json`` and messages."""
    rows = []
    for a in g.axes:
        row = {"axis": a.name, "size": a.size, "out": a.out, "kind": a.kind, "formula": a.explain()}
        if not a.adaptive:
            row.update(kernel=a.kernel, stride=a.stride, dilation=a.dilation, pad=list(a.pad), ceil=a.ceil)
        rows.append(row)
    return rows


def channel_axis(shape: tuple[int, ...], spec: WindowSpec, op: str) -> tuple[int, int]:
    """The channel axis (before the spatial axes, or last with --channels-last) and the number of spatial axes."""
    ndim = len(shape)
    cl = spec.channels_last
    dims = spec.resolve_dims(ndim - (1 if cl else 0))
    axis = ndim - 1 if cl else ndim - dims - 1
    if axis < 0 or (cl and ndim < dims + 1):
        raise GeometryError(f"{op} works across channels, but shape {shape} has none before its {dims} spatial "
                            f"ax{'es' if dims > 1 else 'is'}; give (…, C, H, W), or --dims 1 for (N, C, L)")
    return axis, dims
