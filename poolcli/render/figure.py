"""A Scene as a picture (Pillow only): input heat map with the window grid and selected cells, output, gradient mask.

>>> import numpy as np
>>> from poolcli.engine import WindowSpec, Params
>>> from poolcli.render.scene import build_scene
>>> fig = scene_figure(build_scene(np.arange(16.0).reshape(4, 4), WindowSpec(kernel=2), "max", Params()))
>>> fig.mode, fig.width > fig.height
('RGB', True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from poolcli.render.grid import finite_range, fmt
from poolcli.render.scene import Scene

# viridis at 9 stops: perceptually even, readable in grey and for colour-blind readers
VIRIDIS = np.array([
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
], dtype=np.float64)
BACKGROUND, INK, FAINT = (255, 255, 255), (30, 30, 30), (110, 110, 110)
ZERO = (236, 236, 236)  # gradient cells that receive nothing
WINDOW_COLOURS = ((255, 255, 255), (255, 120, 0))  # neighbouring windows alternate
SELECTED = (230, 20, 60)
MARGIN, GAP, PANEL = 24, 36, 480  # pixels; PANEL is the longest side of the input heat map


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own scalable font (no system fonts needed)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def plain(text: str) -> str:
    """Text the built-in font can draw (it has no ×, –, Σ, ᵀ or …): ``plain("3×3")`` is ``'3x3'``."""
    for glyph, text_form in (("×", "x"), ("–", "-"), ("Σ", "sum "), ("ᵀ", "^T"), ("…", "..")):
        text = text.replace(glyph, text_form)
    return text


def colourise(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Map values to viridis RGB (uint8); NaN is grey. ``colourise(np.array([0.0, 1.0]))[1]`` is viridis' yellow.

    >>> colourise(np.array([0.0, 1.0])).tolist()
    [[68, 1, 84], [253, 231, 37]]
    """
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    if lo is None or hi is None:
        lo, hi = finite_range(a) or (0.0, 1.0)
    t = np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.full(a.shape, 0.5)
    t = np.where(finite, t, 0) * (len(VIRIDIS) - 1)
    i = np.minimum(t.astype(np.int64), len(VIRIDIS) - 2)
    f = (t - i)[..., None]
    rgb = VIRIDIS[i] * (1 - f) + VIRIDIS[i + 1] * f
    rgb[~finite] = (128, 128, 128)
    return np.rint(rgb).astype(np.uint8)


def _cell_size(h: int, w: int) -> int:
    return int(np.clip(PANEL // max(h, w), 1, 64))


def _heat(a: np.ndarray, cell: int, zero_grey: bool = False) -> Image.Image:
    rgb = colourise(a)
    if zero_grey:
        rgb[a == 0] = ZERO
    img = Image.fromarray(rgb, "RGB")
    return img.resize((a.shape[1] * cell, a.shape[0] * cell), Image.Resampling.NEAREST)


def _value_font(a: np.ndarray, cell: int, hide_zero: bool = False) -> tuple[dict, Any] | None:
    """The texts of a panel's cells and the font that fits them, or None when cells are too small to read."""
    if cell < 24 or a.size > 4096:
        return None
    texts = {rc: fmt(v, a.dtype.kind) for rc, v in np.ndenumerate(a) if not (hide_zero and v == 0)}
    longest = max(texts.values(), key=len, default="")
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    size = max(9, cell // 3)
    face = font(size)
    while size > 9 and probe.textlength(longest, font=face) > cell - 6:
        size -= 1
        face = font(size)
    if probe.textlength(longest, font=face) > cell - 4:
        return None  # values would run into each other: the heat map says enough
    return texts, face


def values_written(a: np.ndarray, cell: int, hide_zero: bool = False) -> bool:
    """Whether a panel's cells carry their numbers."""
    return _value_font(a, cell, hide_zero) is not None


def _values(draw: ImageDraw.ImageDraw, a: np.ndarray, cell: int, at: tuple[int, int], hide_zero: bool = False) -> None:
    """Write each value in its cell when cells are large enough to read."""
    found = _value_font(a, cell, hide_zero)
    if found is None:
        return
    texts, face = found
    rgb = colourise(a)
    for (r, c), text in texts.items():
        v = a[r, c]
        light = rgb[r, c] @ np.array([0.299, 0.587, 0.114]) > 140 or (hide_zero and v == 0)
        cx, cy = at[0] + c * cell + cell / 2, at[1] + r * cell + cell / 2
        draw.text((cx, cy), text, fill=INK if light else (255, 255, 255), font=face, anchor="mm")


def outlines_windows(scene: Scene, cell: int) -> bool:
    """Whether windows are outlined: only while they stay readable."""
    return scene.windowed and cell >= 10 and 0 < len(scene.rows) * len(scene.cols) <= 1024


def shown_windows(scene: Scene) -> tuple[list[int], list[int]]:
    """The window rows and columns outlined: all of them, or, where windows overlap, a set that does not
    (every n-th), so that outlines never cover the heat map twice."""
    def every(spans: list[list[int]]) -> list[int]:
        if len(spans) < 2:
            return list(range(len(spans)))
        step = 1
        while step < len(spans) and spans[step][0] <= spans[0][-1]:  # still overlapping the first window
            step += 1
        return list(range(0, len(spans), step))

    return every(scene.rows), every(scene.cols)


def _windows(draw: ImageDraw.ImageDraw, scene: Scene, cell: int, at: tuple[int, int]) -> None:
    """Outline the windows (a non-overlapping set of them where they overlap); neighbours alternate colour and
    inset. A dilated window outlines its taps, cell by cell, rather than the box around them."""
    if not outlines_windows(scene, cell):
        return
    width = 2 if cell >= 12 else 1
    rows_shown, cols_shown = shown_windows(scene)
    for n, i in enumerate(rows_shown):
        for m, j in enumerate(cols_shown):
            rows, cols = scene.rows[i], scene.cols[j]
            parity = (n + m) % 2
            inset = parity * (width + 1)
            colour = WINDOW_COLOURS[parity]
            holes = len(rows) != rows[-1] - rows[0] + 1 or len(cols) != cols[-1] - cols[0] + 1
            if holes:  # dilation: the taps, not a solid box
                for r in rows:
                    for c in cols:
                        draw.rectangle((at[0] + c * cell + 1, at[1] + r * cell + 1, at[0] + (c + 1) * cell - 2,
                                        at[1] + (r + 1) * cell - 2), outline=colour, width=width)
                continue
            box = (at[0] + cols[0] * cell + inset, at[1] + rows[0] * cell + inset,
                   at[0] + (cols[-1] + 1) * cell - 1 - inset, at[1] + (rows[-1] + 1) * cell - 1 - inset)
            draw.rectangle(box, outline=colour, width=width)


def _scale(a: np.ndarray, height: int) -> Image.Image:
    """A colour bar for a panel whose numbers are not written: its lowest value at the bottom."""
    span = finite_range(a)
    lo, hi = span if span else (0.0, 1.0)
    ramp = np.linspace(hi, lo, max(height, 2))[:, None].repeat(14, axis=1)
    rgb = colourise(ramp, lo, hi)
    return Image.fromarray(rgb, "RGB")


def ring_inset(cell: int) -> int:
    """How far inside its cell a selection ring is drawn (wide enough to circle the value)."""
    return max(2, cell // 8)


def ring_width(cell: int) -> int:
    return max(2, cell // 20)


def _selected(draw: ImageDraw.ImageDraw, mask: np.ndarray, cell: int, at: tuple[int, int]) -> None:
    for r, c in np.argwhere(mask):
        x0, y0 = at[0] + c * cell, at[1] + r * cell
        if cell >= 8:
            pad = ring_inset(cell)
            draw.ellipse((x0 + pad, y0 + pad, x0 + cell - 1 - pad, y0 + cell - 1 - pad), outline=SELECTED,
                         width=ring_width(cell))
        elif cell >= 3:
            dot = cell // 3
            draw.rectangle((x0 + dot, y0 + dot, x0 + cell - 1 - dot, y0 + cell - 1 - dot), fill=SELECTED)
        else:
            draw.point((x0, y0), fill=SELECTED)


def _range(a: np.ndarray) -> str:
    span = finite_range(a)
    return f"min {fmt(span[0], a.dtype.kind)} · max {fmt(span[1], a.dtype.kind)}" if span else "no finite values"


class Canvas:
    """Panels laid out left to right under a title, each with a label above and a note below."""

    def __init__(self, title: str) -> None:
        self.title = plain(title)
        self.panels: list[tuple[str, Image.Image, str, object]] = []
        self.origins: list[tuple[int, int]] = []  # top-left corner of each panel's image, once rendered

    def add(self, label: str, image: Image.Image, note: str = "", draw=None) -> None:
        self.panels.append((plain(label), image, plain(note), draw))

    def render(self) -> Image.Image:
        big, small = font(20), font(15)
        top = MARGIN + 34
        label_h, note_h = 26, 24
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        # each panel is as wide as its picture, its label and its note
        columns = [max(image.width, int(probe.textlength(label, font=small)), int(probe.textlength(note, font=small)))
                   for label, image, note, _ in self.panels]
        width = MARGIN * 2 + sum(columns) + GAP * (len(self.panels) - 1)
        width = max(width, int(probe.textlength(self.title, font=big)) + 2 * MARGIN)
        height = top + label_h + max(p[1].height for p in self.panels) + note_h + MARGIN
        canvas = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        draw.text((MARGIN, MARGIN), self.title, fill=INK, font=big)
        x = MARGIN
        self.origins = []
        for (label, image, note, extra), column in zip(self.panels, columns):
            y = top + label_h
            draw.text((x, top), label, fill=INK, font=small)
            canvas.paste(image, (x, y))
            self.origins.append((x, y))
            draw.rectangle((x - 1, y - 1, x + image.width, y + image.height), outline=FAINT)
            if extra is not None:
                extra(draw, (x, y))
            draw.text((x, y + image.height + 6), note, fill=FAINT, font=small)
            x += column + GAP
        return canvas


def scene_figure(scene: Scene, title: str | None = None) -> Image.Image:
    """Input heat map (windows outlined, selected cells ringed), output heat map and gradient mask, side by side."""
    return scene_canvas(scene, title).render()


def scene_canvas(scene: Scene, title: str | None = None) -> Canvas:
    """The panels of ``scene_figure``, not yet drawn."""
    h, w = scene.x.shape
    cell = _cell_size(h, w)
    x, y, gx = scene.x, scene.y, scene.grad
    canvas = Canvas(title or f"{scene.op} · {scene.window}")

    def over_input(draw: ImageDraw.ImageDraw, at: tuple[int, int]) -> None:
        _values(draw, x, cell, at)
        _windows(draw, scene, cell, at)
        if scene.selected is not None:
            _selected(draw, scene.selected, cell, at)

    what = []
    if outlines_windows(scene, cell):
        rows_shown, cols_shown = shown_windows(scene)
        every = len(rows_shown) * len(cols_shown) < len(scene.rows) * len(scene.cols)
        what.append("non-overlapping windows outlined" if every else "windows outlined")
    if scene.selected is not None:
        kept = "kept" if not scene.windowed else "selected"
        what.append(f"{kept} cells ringed" if cell >= 8 else f"{kept} cells dotted")
    label = f"input {h}×{w}" if not scene.cropped else (
        f"input rows {scene.offset[0]}–{scene.offset[0] + h - 1}, cols {scene.offset[1]}–{scene.offset[1] + w - 1}")
    canvas.add(" · ".join([label, *what]), _heat(x, cell), _range(x), over_input)
    out_cell = _cell_size(*y.shape) if not scene.windowed else cell  # no windows tie the two scales

    def over_output(draw: ImageDraw.ImageDraw, at: tuple[int, int]) -> None:
        _values(draw, y, out_cell, at)
        if scene.out_marked is not None:
            _selected(draw, scene.out_marked, out_cell, at)

    landed = " · landing cells ringed" if scene.out_marked is not None else ""
    canvas.add(f"output {y.shape[0]}×{y.shape[1]}{landed}", _heat(y, out_cell), _range(y), over_output)
    if gx is not None:
        receive = int(np.count_nonzero(gx))
        canvas.add("gradient to the input", _heat(gx, cell, zero_grey=True),
                   f"{receive} of {gx.size} cells receive gradient",
                   lambda draw, at: _values(draw, gx, cell, at, hide_zero=True))
        if not values_written(gx, cell, hide_zero=True):  # no numbers on the cells: a colour scale instead
            span = finite_range(gx)
            lo, hi = span if span else (0.0, 0.0)
            canvas.add("scale", _scale(gx, gx.shape[0] * cell), f"{fmt(lo, 'f')} to {fmt(hi, 'f')}")
    return canvas


def to_display(a: np.ndarray) -> Image.Image:
    """An image array (H,W) or (H,W,C) as an 8-bit picture for showing: alpha over white, >8-bit scaled down."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        f = a.astype(np.float64)
        top = 65535.0 if a.dtype == np.uint16 or (a.dtype.kind in "iu" and f.max() > 255) else max(1.0, f.max())
        if a.dtype.kind == "f" and f.max() <= 1.0:
            top = 1.0
        a = np.rint(np.clip(f / top, 0, 1) * 255).astype(np.uint8)
    if a.ndim == 2:
        return Image.fromarray(a, "L").convert("RGB")
    if a.shape[-1] in (2, 4):
        colour = a[..., :-1] if a.shape[-1] == 4 else np.repeat(a[..., :1], 3, axis=-1)
        alpha = a[..., -1:].astype(np.float64) / 255
        mixed = colour * alpha + 255 * (1 - alpha)
        return Image.fromarray(np.rint(mixed).astype(np.uint8), "RGB")
    return Image.fromarray(a[..., :3], "RGB")


def image_figure(original: np.ndarray, pooled: np.ndarray, title: str) -> Image.Image:
    """The original and the pooled image side by side, the pooled one enlarged (nearest) to the same size."""
    before, after = to_display(original), to_display(pooled)
    longest = max(before.size)
    shrink = max(1, -(-longest // 640))
    grow = max(1, 320 // longest)
    if shrink > 1:
        shown, note = before.reduce(shrink), f"shown at 1/{shrink} (box filter)"
    elif grow > 1:
        shown = before.resize((before.width * grow, before.height * grow), Image.Resampling.NEAREST)
        note = f"enlarged ×{grow}, nearest neighbour"
    else:
        shown, note = before, "actual pixels"
    big = after.resize(shown.size, Image.Resampling.NEAREST)
    canvas = Canvas(title)
    canvas.add(f"original {before.width}×{before.height}", shown, note)
    zoom = shown.width / after.width
    canvas.add(f"pooled {after.width}×{after.height}", big, f"enlarged ×{zoom:.3g}, nearest neighbour")
    return canvas.render()
