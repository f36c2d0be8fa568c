"""A Scene as text for the terminal: the input grid with its windows, the output beside it, the gradient below.

Windows are tinted (two alternating tints, a third where windows overlap) and bounded
by lines, so the picture reads without colour too (``NO_COLOR``); selected cells are
``[bracketed]``; zero gradient shows as ``·``.

>>> import io, numpy as np
>>> from rich.console import Console
>>> from poolcli.engine import WindowSpec, Params
>>> from poolcli.render.scene import build_scene
>>> s = build_scene(np.arange(16).reshape(4, 4), WindowSpec(kernel=2), "max", Params())
>>> c = Console(file=io.StringIO(), width=80, color_system=None)
>>> c.print(render_scene(s, 80, backward=True))
>>> print("\\n".join(line.rstrip() for line in c.file.getvalue().splitlines()[:8]))
max · kernel 2×2, stride 2×2 · plane 4×4
<BLANKLINE>
input                      output
      0    1    2    3           0    1
  0   0    1 │  2    3       0   5    7
  1   4   [5]│  6   [7]      1  13   15
    ─────────┼─────────
  2   8    9 │ 10   11
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.console import Group, RenderableType
from rich.text import Text

from poolcli.render.scene import Scene

TINTS = ("white on rgb(28,62,104)", "white on rgb(96,64,18)")  # neighbouring windows
OVERLAP = "white on rgb(104,36,112)"  # cells read by two or more windows
OUTSIDE = "dim"  # cells no window reads
SELECTED = "bold bright_yellow"
LOW, MID, HIGH = (59, 76, 192), (138, 138, 138), (200, 30, 45)  # heat ramp, readable on dark and light
MAX_ROWS = 16


def heat(v: float, lo: float, hi: float) -> str:
    """A foreground colour for ``v`` on a blue–grey–red ramp between lo and hi.

    >>> heat(0, 0, 1), heat(1, 0, 1)
    ('rgb(59,76,192)', 'rgb(200,30,45)')
    """
    t = 0.5 if not np.isfinite(v) or hi <= lo else float(np.clip((v - lo) / (hi - lo), 0, 1))
    a, b, t = (LOW, MID, t * 2) if t < 0.5 else (MID, HIGH, t * 2 - 1)
    return "rgb({},{},{})".format(*(round(p + (q - p) * t) for p, q in zip(a, b)))


def fmt(v: object, kind: str) -> str:
    """A value in 3 significant digits (4 from 100 to 9999): ``fmt(0.333333, 'f')`` is ``'0.333'``."""
    if kind in "iub":
        return str(int(v))  # type: ignore[call-overload]
    f = float(v)  # type: ignore[arg-type]
    return f"{f:.4g}" if 100 <= abs(f) < 10000 else f"{f:.3g}"


def edges(windows: list[list[int]], n: int) -> set[int]:
    """Cells a boundary line goes before: each window's first cell, and the cell after a window
    when no window reads it. ``edges([[0, 1, 2], [2, 3, 4]], 6)`` is ``{0, 2, 5}``."""
    covered = np.zeros(n + 1, dtype=bool)
    for w in windows:
        covered[w] = True
    out = {w[0] for w in windows if w}
    out |= {w[-1] + 1 for w in windows if w and not covered[w[-1] + 1]}
    return out


def _range_text(windows: list[list[int]]) -> str:
    spans = [f"{w[0]}–{w[-1]}" if len(w) > 1 else str(w[0]) for w in windows]
    return ", ".join(spans) if len(spans) <= 6 else ", ".join([*spans[:3], "…", *spans[-2:]])


@dataclass
class Region:
    """Half-open rows r0:r1 and columns c0:c1 of the input plane."""

    r0: int
    r1: int
    c0: int
    c1: int

    def shown(self, windows: list[list[int]], lo: int, hi: int) -> list[int]:
        """The output indices whose window starts inside [lo, hi)."""
        return [i for i, w in enumerate(windows) if w and lo <= w[0] < hi]


class Grid:
    """Lines of one 2-D grid of cells with row and column labels and window boundary lines."""

    def __init__(self, rows: list[int], cols: list[int], width: int, row_edges: set[int], col_edges: set[int]):
        self.rows, self.cols, self.width = rows, cols, width
        self.row_edges, self.col_edges = row_edges, col_edges
        self.label = max(2, len(str(max(rows, default=0))))

    def _sep(self, k: int) -> str:
        return "│" if k > 0 and self.cols[k] in self.col_edges else " "

    def lines(self, cell) -> list[Text]:
        """``cell(r, c)`` gives (text, style) for each cell; returns header + rows as Text lines."""
        head = Text(" " * (self.label + 1))
        for c in self.cols:
            head.append(" " + str(c).rjust(self.width + 1) + " ")
        out = [head]
        for i, r in enumerate(self.rows):
            if i > 0 and r in self.row_edges:
                rule = Text(" " * (self.label + 1))
                for k in range(len(self.cols)):
                    rule.append(("┼" if self._sep(k) == "│" else "─" if k else " ") + "─" * (self.width + 2))
                out.append(rule)
            line = Text(str(r).rjust(self.label + 1), style="dim")
            for k, c in enumerate(self.cols):
                text, style = cell(r, c)
                line.append(self._sep(k))
                line.append(text, style=style)
            out.append(line)
        return out

    @property
    def columns(self) -> int:
        return self.label + 1 + len(self.cols) * (self.width + 3)


def _wide(scene: Scene, backward: bool) -> int:
    xs = [fmt(v, scene.x.dtype.kind) for v in scene.x.ravel()[:4096]]
    ys = [fmt(v, scene.y.dtype.kind) for v in scene.y.ravel()[:4096]]
    gs = [fmt(v, "f") for v in scene.grad.ravel()[:4096]] if backward and scene.grad is not None else []
    return max(len(s) for s in [*xs, *ys, *gs, "0"])


def fit_region(scene: Scene, width: int, cell: int) -> tuple[Region, bool]:
    """The largest top-left region whose input (and output beside it) fits ``width`` columns;
    whether the output goes beside the input."""
    h, w = scene.x.shape
    r1 = min(h, MAX_ROWS)
    label = max(2, len(str(r1 - 1))) + 1
    for side in (True, False):
        for c1 in range(w, 0, -1):
            total = label + c1 * (cell + 3)
            if side:
                shown = len(Region(0, r1, 0, c1).shown(scene.cols, 0, c1)) if scene.windowed else scene.y.shape[1]
                total += 4 + label + shown * (cell + 3)
            if total <= width and (not side or c1 >= min(w, 8)):
                return Region(0, r1, 0, c1), side
    return Region(0, r1, 0, 1), False


def _title(scene: Scene) -> str:
    h, w = scene.x.shape
    plane = f"plane {','.join(map(str, scene.plane))} of {'×'.join(map(str, scene.shape))}" if scene.plane else (
        f"plane {h}×{w}" if h > 1 else f"length {w}")
    return f"{scene.op} · {scene.window} · {plane}"


def render_scene(scene: Scene, width: int = 80, region: Region | None = None, backward: bool = False
                 ) -> RenderableType:
    """The scene as rich Text lines for a terminal ``width`` columns wide."""
    x, y = scene.x, scene.y
    cell = _wide(scene, backward)
    auto, side = fit_region(scene, width, cell)
    crop = region or auto
    if region is not None:
        crop = Region(max(0, region.r0), min(x.shape[0], region.r1), max(0, region.c0), min(x.shape[1], region.c1))
    rows, cols = list(range(crop.r0, crop.r1)), list(range(crop.c0, crop.c1))
    row_edges, col_edges = edges(scene.rows, x.shape[0]), edges(scene.cols, x.shape[1])
    grid = Grid(rows, cols, cell, row_edges, col_edges)
    cover, parity = scene.coverage(), scene.parity()
    sel = scene.selected
    kind = x.dtype.kind

    def in_cell(r: int, c: int) -> tuple[str, str]:
        v = fmt(x[r, c], kind)
        picked = sel is not None and bool(sel[r, c])
        if not scene.windowed:
            style = ""
        else:
            style = OUTSIDE if cover[r, c] == 0 else OVERLAP if cover[r, c] > 1 else TINTS[parity[r, c]]
        if picked:
            return f"[{v}]".rjust(cell + 2), f"{style} {SELECTED}"
        return f" {v.rjust(cell)} ", style

    if scene.windowed:
        out_rows = crop.shown(scene.rows, crop.r0, crop.r1) if x.shape[0] > 1 else [0]
        out_cols = crop.shown(scene.cols, crop.c0, crop.c1)
    else:  # the output's own top-left part, as much as fits
        fits = max(1, (width - 4 - max(2, len(str(y.shape[0] - 1)))) // (cell + 3))
        out_rows, out_cols = list(range(min(y.shape[0], MAX_ROWS))), list(range(min(y.shape[1], fits)))
    lo, hi = finite_range(y) or (0.0, 0.0)
    out = Grid(out_rows, out_cols, cell, set(), set())
    ykind = y.dtype.kind
    marked = scene.out_marked

    def out_cell(r: int, c: int) -> tuple[str, str]:
        v = fmt(y[r, c], ykind)
        if marked is not None and marked[r, c]:
            return f"[{v}]".rjust(cell + 2), f"bold {heat(float(y[r, c]), lo, hi)}"
        return f" {v.rjust(cell)} ", heat(float(y[r, c]), lo, hi)

    left, right = grid.lines(in_cell), out.lines(out_cell)
    parts: list[RenderableType] = [Text(_title(scene), style="bold"), Text()]
    if (side and region is None) or (region is not None and grid.columns + 4 + out.columns <= width):
        head = Text("input".ljust(grid.columns + 4) + "output", style="bold")
        parts.append(head)
        for i in range(max(len(left), len(right))):
            line = left[i].copy() if i < len(left) else Text(" " * grid.columns)
            line.pad_right(grid.columns + 4 - line.cell_len)
            if i < len(right):
                line.append_text(right[i])
            parts.append(line)
    else:
        parts += [Text("input", style="bold"), *left, Text(), Text("output", style="bold"), *right]
    if backward and scene.grad is not None:
        gx = scene.grad
        glo, ghi = finite_range(gx) or (0.0, 0.0)

        def grad_cell(r: int, c: int) -> tuple[str, str]:
            v = gx[r, c]
            if v == 0:
                return f" {'·'.rjust(cell)} ", "dim"
            return f" {fmt(v, 'f').rjust(cell)} ", f"bold {heat(float(v), min(glo, 0), ghi)}"

        parts += [Text(), Text("gradient to the input", style="bold"), *grid.lines(grad_cell)]
    parts.append(Text())
    parts += [Text(line, style="dim") for line in _legend(scene, crop, region is None, cover)]
    return Group(*parts)


def finite_range(a: np.ndarray) -> tuple[float, float] | None:
    """The smallest and largest finite values, or None if there are none: ``finite_range(np.array([np.nan, 2.0]))``
    is ``(2.0, 2.0)``."""
    f = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    return (float(f.min()), float(f.max())) if f.size else None


def _cells(n: int) -> str:
    return f"{n} cell is" if n == 1 else f"{n} cells are"


def _legend(scene: Scene, crop: Region, auto: bool, cover: np.ndarray) -> list[str]:
    h, w = scene.x.shape
    if not scene.windowed:
        lines = []
        if scene.selected is not None:
            lines.append("[v] = kept (ties to the lower index)" if scene.params.ties == "first" else
                         f"[v] = kept; backward --ties {scene.params.ties} also reaches cells equal to a kept value")
        if scene.out_marked is not None:
            lines.append("[v] in the output = where a value landed (the arg-max cell it came from)")
        oh, ow = scene.y.shape
        if (crop.r0, crop.r1, crop.c0, crop.c1) != (0, h, 0, w):
            span = (f"rows {crop.r0}–{crop.r1 - 1}, cols {crop.c0}–{crop.c1 - 1} of the {h}×{w} input" if h > 1
                    else f"cells {crop.c0}–{crop.c1 - 1} of {w}")
            lines.append(f"showing {span}" + ("; --region shows another part" if auto else ""))
        if oh > MAX_ROWS or scene.y.shape != (oh, ow):
            lines.append(f"the output is {oh}×{ow}")
        return lines
    lines = []
    windows = f"cols {_range_text(scene.cols)}"
    if h > 1:
        windows = f"rows {_range_text(scene.rows)} × {windows}"
    lines.append(f"windows read {windows}")
    if (cover > 1).any():
        overlap = _cells(int((cover > 1).sum()))
        lines.append(f"{overlap} read by 2 or more windows (purple; lines mark where windows start)")
    if (cover == 0).any():
        lines.append(f"{_cells(int((cover == 0).sum()))} in no window (dim)")
    if scene.selected is not None:
        ties = scene.params.ties
        lines.append(f"[v] = {scene.marks} of a window" + (f" (--ties {ties})" if scene.grad is not None else ""))
    if (crop.r0, crop.r1, crop.c0, crop.c1) != (0, h, 0, w):
        span = f"rows {crop.r0}–{crop.r1 - 1}, cols {crop.c0}–{crop.c1 - 1}" if h > 1 else (
            f"cells {crop.c0}–{crop.c1 - 1}")
        hint = "; --region R0:R1,C0:C1 shows another part" if auto else ""
        lines.append(f"showing {span} of {h}×{w}{hint}" if h > 1 else f"showing {span} of {w}{hint}")
    return lines
