"""What ``visualize`` shows, before it is drawn: one 2-D plane, its windows, the selected cells, output and gradient.

A 1-D plane is shown as one row. The terminal grid (``render.grid``) and the picture
(``render.figure``) both draw a Scene.

>>> import numpy as np
>>> from poolcli.engine import WindowSpec, Params
>>> s = build_scene(np.arange(16).reshape(4, 4), WindowSpec(kernel=2), "max", Params())
>>> s.y
array([[ 5,  7],
       [13, 15]])
>>> s.rows, s.cols
([[0, 1], [2, 3]], [[0, 1], [2, 3]])
>>> np.argwhere(s.selected).tolist()
[[1, 1], [1, 3], [3, 1], [3, 3]]
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from poolcli.engine import (
    AdaptiveAxis,
    Geometry,
    Params,
    WindowSpec,
    bind,
    get_op,
    run_backward,
    run_forward,
    to_engine,
)
from poolcli.errors import UsageError


@dataclass
class Scene:
    """One plane: input ``x`` and output ``y`` (2-D), the input rows/cols each output row/col reads,
    the cells the operator selected (or None), the gradient each input cell receives (or None)."""

    x: np.ndarray
    y: np.ndarray
    rows: list[list[int]]
    cols: list[list[int]]
    selected: np.ndarray | None
    grad: np.ndarray | None
    op: str
    params: Params
    plane: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()
    window: str = ""
    offset: tuple[int, int] = (0, 0)  # where a cropped scene's first cell sits in the plane
    out_marked: np.ndarray | None = None  # output cells to mark (unpool: where the values landed)
    windowed: bool = True  # False for operators without windows (kmax, unpool, …): no windows to draw
    marks: str = ""  # what the marked cells are (the operator's own words: "arg-max", "median cell", …)
    cropped: bool = False  # a part of the plane (--region)

    def crop(self, r0: int, r1: int, c0: int, c1: int) -> Scene:
        """The part rows r0:r1, cols c0:c1 of the input, with the windows that start inside it.

        >>> s = build_scene(np.arange(36).reshape(6, 6), WindowSpec(kernel=2), "max", Params())
        >>> part = s.crop(2, 6, 0, 2)
        >>> part.x.shape, part.y.tolist(), part.rows
        ((4, 2), [[19], [31]], [[0, 1], [2, 3]])
        """
        part = (slice(r0, r1), slice(c0, c1))
        if not self.windowed:  # no windows tie the output to the input: crop the input only
            return replace(self, x=self.x[part], selected=None if self.selected is None else self.selected[part],
                           grad=None if self.grad is None else self.grad[part], offset=(r0, c0), cropped=True)
        keep_r = [i for i, w in enumerate(self.rows) if r0 <= w[0] < r1]
        keep_c = [j for j, w in enumerate(self.cols) if c0 <= w[0] < c1]
        if not keep_r or not keep_c:
            raise UsageError("--region holds no window start; widen it")
        rows = [[r - r0 for r in self.rows[i] if r < r1] for i in keep_r]
        cols = [[c - c0 for c in self.cols[j] if c < c1] for j in keep_c]
        return replace(self, x=self.x[part], y=self.y[np.ix_(keep_r, keep_c)], rows=rows, cols=cols,
                       selected=None if self.selected is None else self.selected[part],
                       grad=None if self.grad is None else self.grad[part], offset=(r0, c0), cropped=True)

    def coverage(self) -> np.ndarray:
        """How many windows read each input cell."""
        r = np.zeros(self.x.shape[0], dtype=np.int64)
        c = np.zeros(self.x.shape[1], dtype=np.int64)
        for cells in self.rows:
            r[cells] += 1
        for cells in self.cols:
            c[cells] += 1
        return np.multiply.outer(r, c)

    def parity(self) -> np.ndarray:
        """For each input cell, (window row + window column) % 2 of the first window reading it; -1 if none."""
        r = np.full(self.x.shape[0], -1, dtype=np.int64)
        c = np.full(self.x.shape[1], -1, dtype=np.int64)
        for i, cells in reversed(list(enumerate(self.rows))):
            r[cells] = i
        for j, cells in reversed(list(enumerate(self.cols))):
            c[cells] = j
        return np.where((r[:, None] >= 0) & (c[None, :] >= 0), (r[:, None] + c[None, :]) % 2, -1)


def pick_plane(x: np.ndarray, dims: int, plane: tuple[int, ...] | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """The plane ``plane`` of ``x`` (spatial axes last): a flat index, or one index per leading axis.

    >>> pick_plane(np.zeros((2, 3, 4, 4)), 2, (4,))[1]
    (1, 1)
    """
    lead = x.shape[: x.ndim - dims]
    count = int(np.prod(lead)) if lead else 1
    if not plane:
        plane = (0,)
    if len(plane) == 1 and len(lead) != 1:
        if not 0 <= plane[0] < count:
            raise UsageError(f"--plane {plane[0]}: the input has {count} plane{'s' if count != 1 else ''} "
                             f"(leading shape {lead}); give 0 to {count - 1}")
        index = tuple(int(i) for i in np.unravel_index(plane[0], lead)) if lead else ()
    else:
        if len(plane) != len(lead) or any(not 0 <= p < n for p, n in zip(plane, lead)):
            raise UsageError(f"--plane {','.join(map(str, plane))}: the leading axes are {lead}; give one index "
                             "per leading axis within them, or one flat plane number")
        index = tuple(plane)
    return x[index], index


def build_scene(x: np.ndarray, spec: WindowSpec, op: str, params: Params, plane: tuple[int, ...] | None = None,
                grad: np.ndarray | None = None, arrays: dict[str, np.ndarray] | None = None) -> Scene:
    """Run ``op`` on one plane of ``x`` and collect what visualize draws. ``grad`` is the full upstream gradient."""
    pool = get_op(op)
    if not pool.windowed:
        return _plain_scene(x, spec, op, params, plane, grad, arrays or {})
    g = bind(op, x.shape, spec, params, **(arrays or {}))  # checks the geometry on the whole input
    if g.dims > 2:
        raise UsageError("visualize draws 1-D and 2-D pooling; for --dims 3 look at the numbers with forward/backward")
    sheet, index = pick_plane(to_engine(x, g), g.dims, plane)
    pg = g.plane(index)  # the plane's own windows (and weights, random numbers)
    y = run_forward(sheet, pg, op, params)
    dx = None
    if pool.differentiable:
        dx = run_backward(sheet, pg, None if grad is None else to_engine(grad, g, output=True)[index], op, params)
    selected = pool.selected(sheet, pg, params)
    first, last = pg.axes[0], pg.axes[-1]
    rows = [first.window(o) for o in range(first.out)] if g.dims == 2 else [[0]]
    cols = [last.window(o) for o in range(last.out)]
    if g.dims == 1:
        sheet, y = sheet[None], y[None]
        dx = None if dx is None else dx[None]
        selected = None if selected is None else selected[None]
    return Scene(sheet, y, rows, cols, selected, dx, pool.name, params, index, tuple(x.shape), window_text(pg),
                 marks=pool.marks)


def _plain_scene(x: np.ndarray, spec: WindowSpec, op: str, params: Params, plane: tuple[int, ...] | None,
                 grad: np.ndarray | None, arrays: dict[str, np.ndarray]) -> Scene:
    """A scene for the operators without windows: the plane, its output, marked cells and the gradient,
    as the operator pictures itself (``Op.picture``)."""
    pool = get_op(op)
    g = bind(op, x.shape, spec, params, **arrays)
    y = run_forward(x, g, op, params)
    dx = run_backward(x, g, grad, op, params) if pool.differentiable else None
    picture = pool.picture(to_engine(x, g), to_engine(y, g, output=True),
                           None if dx is None else to_engine(dx, g), g, params, spec.dims or 2)
    if picture.dims > 2:
        raise UsageError("visualize draws 1-D and 2-D planes; for --dims 3 look at the numbers with forward")
    sheet, index = pick_plane(picture.x, picture.dims, plane)
    y2 = picture.y[index]
    d2 = None if picture.dx is None else picture.dx[index]
    m_in = None if picture.marked_in is None else picture.marked_in[index]
    m_out = None if picture.marked_out is None else picture.marked_out[index]
    if picture.dims == 1:
        sheet, y2 = sheet[None], y2[None]
        d2 = None if d2 is None else d2[None]
        m_in = None if m_in is None else m_in[None]
        m_out = None if m_out is None else m_out[None]
    rows: list[list[int]] = []
    cols: list[list[int]] = []
    if picture.windows is not None:  # windows of this plane's own (fractional): drawn as for the windowed
        per_axis = picture.windows(index)
        rows, cols = (per_axis if picture.dims == 2 else [[[0]], per_axis[0]])
    return Scene(sheet, y2, rows, cols, m_in, d2, pool.name, params, index, tuple(x.shape), picture.text,
                 out_marked=m_out, windowed=picture.windows is not None, marks=pool.marks)


def window_text(g: Geometry) -> str:
    """The window options in words: ``kernel 3×3, stride 2×2, padding 1``.

    >>> window_text(WindowSpec(kernel=3, stride=2, padding=1).bind((9, 9)))
    'kernel 3×3, stride 2×2, padding 1'
    """
    axes = g.axes
    if any(isinstance(a, AdaptiveAxis) for a in axes):
        return "adaptive to " + "×".join(str(a.out) for a in axes)

    def join(values: list) -> str:
        return str(values[0]) if len(set(values)) == 1 and len(values) > 1 else "×".join(map(str, values))

    parts = [f"kernel {'×'.join(str(a.kernel) for a in axes)}", f"stride {'×'.join(str(a.stride) for a in axes)}"]
    pads = [p for a in axes for p in a.pad]
    if any(pads):
        parts.append(f"padding {join(pads) if len(set(pads)) == 1 else ','.join(map(str, pads))}")
    if any(a.dilation > 1 for a in axes):
        parts.append(f"dilation {'×'.join(str(a.dilation) for a in axes)}")
    if any(a.ceil for a in axes):
        parts.append("ceil")
    return ", ".join(parts)
