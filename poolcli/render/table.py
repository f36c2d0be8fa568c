"""Arrays as text: rich tables per 2-D plane, summarised at the edges, or JSON for scripts.

>>> import io, numpy as np
>>> from rich.console import Console
>>> c = Console(file=io.StringIO(), width=80, color_system=None)
>>> c.print(render_array(np.array([[3.5, 5.5], [11.5, 13.5]])))
>>> print(c.file.getvalue().strip())
shape (2, 2) · float64
┏━━━┳━━━━━━┳━━━━━━┓
┃   ┃    0 ┃    1 ┃
┡━━━╇━━━━━━╇━━━━━━┩
│ 0 │  3.5 │  5.5 │
│ 1 │ 11.5 │ 13.5 │
└───┴──────┴──────┘
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

EDGE = 3  # rows, columns and planes kept at each edge of a summarised array
MAX_ROWS, MAX_COLS, MAX_PLANES = 16, 10, 6


def format_value(v: object, kind: str) -> str:
    """One cell: integers as they are, floats in 6 significant digits, NaN as nan."""
    if kind in "iub":
        return str(int(v))  # type: ignore[call-overload]
    return f"{float(v):.6g}"  # type: ignore[arg-type]


def _keep(n: int, limit: int, full: bool) -> list[int | None]:
    """Indices to show along an axis of length n; None marks the elided middle."""
    if full or n <= limit:
        return list(range(n))
    return [*range(EDGE), None, *range(n - EDGE, n)]


def _plane_table(plane: np.ndarray, title: str | None, full: bool, plain: bool = False) -> Table:
    kind = plane.dtype.kind
    rows, cols = _keep(plane.shape[0], MAX_ROWS, full), _keep(plane.shape[1], MAX_COLS, full)
    table = Table(title=title, show_header=True, header_style="bold", title_justify="left",
                  box=None if plain else box.HEAVY_HEAD)
    table.add_column("", style="dim", justify="right")
    for c in cols:
        table.add_column("…" if c is None else str(c), justify="right")
    for r in rows:
        if r is None:
            table.add_row("⋮", *("⋮" if c is not None else "⋱" for c in cols))
            continue
        cells = ["…" if c is None else format_value(plane[r, c], kind) for c in cols]
        table.add_row(str(r), *cells)
    return table


def _planes(array: np.ndarray, full: bool) -> Iterator[tuple[tuple[int, ...] | None, np.ndarray | None]]:
    lead = array.shape[:-2]
    indices = list(product(*(range(n) for n in lead)))
    if not full and len(indices) > MAX_PLANES:
        for i in indices[:EDGE]:
            yield i, array[i]
        yield None, None
        for i in indices[-EDGE:]:
            yield i, array[i]
        return
    for i in indices:
        yield i, array[i]


def render_array(array: np.ndarray, full: bool = False, plain: bool = False) -> RenderableType:
    """A header with shape and dtype, then one table per 2-D plane (edges only for large arrays);
    ``plain``: no box drawing (for a pipe)."""
    array = np.asarray(array)
    header = Text(f"shape {tuple(array.shape)} · {array.dtype}", style="bold")
    if array.ndim == 0:
        return Group(header, Text(format_value(array[()], array.dtype.kind)))
    view = array.reshape(1, -1) if array.ndim == 1 else array
    parts: list[RenderableType] = [header]
    omitted = int(np.prod(view.shape[:-2])) - 2 * EDGE
    for index, plane in _planes(view, full):
        if index is None:
            parts.append(Text(f"… {omitted} planes omitted (--full shows all) …", style="dim"))
            continue
        title = None if array.ndim <= 2 else f"[{', '.join(map(str, index))}, :, :]"
        parts.append(_plane_table(plane, title, full, plain))
    return Group(*parts)
