"""Pooling images: averages on premultiplied alpha, optionally in linear light, in strips of rows, and
Pillow's own box reduce where it gives the same numbers. Above the engine, below the command line;
``io.images`` reads and writes the bytes.

What an operator is decides how: one that selects (``Op.selects``: max, min, kmax, median, mode)
runs on the raw values; one that combines values averages premultiplied colour.

>>> import numpy as np
>>> to_srgb(to_linear(np.array([0.0, 0.5, 1.0]))).round(6).tolist()
[0.0, 0.5, 1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poolcli.engine import Geometry, Recipe
from poolcli.errors import UsageError
from poolcli.io.arrays import Loaded
from poolcli.io.images import ImageLoaded, format_name, frames, has_alpha, pixels, write_frames, write_image

__all__ = ["STRIP_BYTES", "image_spec", "pool_and_write", "pool_as_array", "pool_image", "to_linear", "to_srgb"]

WRITES_FRAMES = ("GIF", "PNG", "WEBP", "TIFF")


def to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def to_srgb(v: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] back to sRGB encoding."""
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def _pillow_reduces(meta: dict, g: Any, recipe: Recipe, linear: bool) -> tuple[int, int] | None:
    """(kh, kw) when Pillow's Image.reduce gives exactly this average pooling, else None.

    That is: 8-bit grey or RGB (no alpha to premultiply), not in linear light, windows that
    tile (kernel == stride, no padding or dilation) with power-of-two sides, where Pillow
    rounds half up by exact shifts as the engine's path does.
    """
    if not recipe.operator.box_filter(recipe.params) or recipe.arrays or linear or meta.get("mode") not in ("L", "RGB"):
        return None
    sides = []
    for a in g.axes:
        if a.adaptive or a.kind == "global" or a.pad != (0, 0) or a.dilation != 1 or a.kernel != a.stride:
            return None
        if a.kernel & (a.kernel - 1) or a.out * a.kernel > a.size:
            return None
        sides.append(a.kernel)
    return sides[0], sides[1]


def image_spec(spec: Any, shape: tuple[int, ...]) -> Any:
    """The window options as they apply to an image array: height and width are the spatial axes,
    and a third axis holds the channels.

    >>> from poolcli.engine import WindowSpec
    >>> image_spec(WindowSpec(kernel=2), (64, 96, 3)).channels_last
    True
    """
    from dataclasses import replace

    return replace(spec, dims=2, channels_last=len(shape) == 3)


def pool_image(loaded: Loaded, recipe: Recipe, linear: bool = False, fast: bool = True, keep_pil: bool = False) -> Any:
    """Pool an image over height and width, channel by channel, back in its own dtype.

    Operators that select a value (``Op.selects``) run on the raw values; the others on premultiplied
    colour for images with alpha, so a transparent pixel's hidden colour never bleeds; ``linear``
    averages in linear light (sRGB decoded, pooled, re-encoded).
    Plain 2x/4x/8x box averages of 8-bit images go through Pillow's ``Image.reduce``, which
    gives the same numbers faster (``fast=False`` forces the engine); with ``keep_pil`` that path
    returns the Pillow image itself, saving a copy when it is written straight back.
    """
    meta = loaded.meta
    shape = loaded.shape if isinstance(loaded, ImageLoaded) else loaded.array.shape
    g = recipe.bind(shape, image_spec(recipe.spec, shape))
    sides = _pillow_reduces(meta, g, recipe, linear) if fast else None
    resample = recipe.operator.pillow_filter(recipe.params)
    if resample is not None:  # a filter only Pillow has (lanczos): Pillow resizes the image itself
        from PIL import Image

        img = meta.get("pil") or Image.fromarray(loaded.array)
        out = g.out_shape
        resized = img.resize((out[1], out[0]), getattr(Image.Resampling, resample.upper()))
        return resized if keep_pil else np.asarray(resized)
    if sides is not None:
        from PIL import Image

        (kh, kw), (oh, ow) = sides, g.out_spatial
        img = meta.get("pil") or Image.fromarray(loaded.array)
        if img.size != (ow * kw, oh * kh):
            img = img.crop((0, 0, ow * kw, oh * kh))
        small = img.reduce((kw, kh))
        return small if keep_pil else np.asarray(small)
    if recipe.operator.picks(recipe.params):  # every output is one of the input's values: no colour arithmetic
        return _to_dtype(recipe.forward(loaded.array, g), loaded.array.dtype)  # a median of two: a float
    rows = _row_reader(loaded)
    first = rows(0, 1)
    strips = []
    if isinstance(g, Geometry):  # float working memory per output row: ~4 copies of stride rows in float64
        strips = g.row_strips(max(1, STRIP_BYTES // (8 * 4 * g.axes[0].stride * first.size)))
    if len(strips) <= 1:
        return _pool_values(loaded.array, g, recipe, meta, linear)
    out = np.empty(g.out_shape, dtype=first.dtype)
    for o, i, sub in strips:  # a strip of rows at a time: memory stays bounded whatever the image's size
        out[o] = _pool_values(rows(i.start, i.stop), sub, recipe, meta, linear)
    return out


STRIP_BYTES = 16 << 20  # float working memory of one strip of an image being averaged


def _row_reader(loaded: Loaded) -> Any:
    """rows(a, b): the image's rows a..b as an array, without converting the whole image."""
    held = loaded._array if isinstance(loaded, ImageLoaded) else loaded.array
    if held is not None:
        return lambda a, b: held[a:b]
    img, mode = loaded.meta["pil"], loaded.meta["mode"]
    return lambda a, b: pixels(img.crop((0, a, img.width, b)), mode)


def _to_dtype(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A result back in the image's dtype: integers rounded half up (as Pillow) and clipped to the range.

    >>> _to_dtype(np.array([2.5, 300.0]), np.dtype(np.uint8))
    array([  3, 255], dtype=uint8)
    """
    if y.dtype == dtype:
        return y
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.floor(y + 0.5), info.min, info.max).astype(dtype)
    return y.astype(dtype)


def _pool_values(array: np.ndarray, g: Any, recipe: Recipe, meta: dict, linear: bool) -> np.ndarray:
    """Averaging image values: premultiplied alpha, optionally linear light, back to the dtype."""
    dtype = array.dtype
    integer = dtype.kind in "iu"
    alpha = has_alpha(meta)
    light = linear and meta.get("mode") not in ("I", "F")
    top = float(np.iinfo(dtype).max) if integer and (alpha or light) and meta.get("mode") != "I" else 1.0
    if (alpha or light) and {"nodata", "skip_nan"} & set(recipe.params.given):
        raise UsageError("--nodata compares an image's raw values, which premultiplied alpha and --linear change; "
                         "give it for images without alpha and without --linear (or pool the array)")
    x = array.astype(np.float64)
    if top != 1.0:
        x /= top
    colour = x[..., :-1] if has_alpha(meta) else x
    if light:
        colour[...] = to_linear(colour)
    if alpha:
        colour *= x[..., -1:]
    y = recipe.forward(x, g)
    del x, colour
    if alpha:
        a = y[..., -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            y[..., :-1] = np.where(a > 0, y[..., :-1] / a, 0)
    if light:
        channels = y[..., :-1] if has_alpha(meta) else y
        channels[...] = to_srgb(channels)
    if top != 1.0:
        y *= top
    return _to_dtype(y, dtype)


def pool_and_write(loaded: Loaded, recipe: Recipe, linear: bool, path: str, fmt: str | None = None,
                   quality: int | None = None) -> None:
    """Pool an image into an image file: every frame of an animation (or page of a TIFF), keeping each
    frame's duration and disposal and the loop count; a format that holds one frame is refused for those."""
    meta = loaded.meta
    if meta.get("frames", 1) == 1:
        write_image(path, pool_image(loaded, recipe, linear, keep_pil=True), meta, fmt, quality)
        return
    kind = format_name(path, fmt)
    if kind not in WRITES_FRAMES:
        raise UsageError(f"{loaded.name} has {meta['frames']} frames and {kind} holds one; "
                         "write .gif, .png, .webp or .tif to pool every frame")
    pooled, info = [], []
    for frame, timing in frames(loaded):
        pooled.append(pool_image(frame, recipe, linear))
        info.append(timing)
    write_frames(path, loaded, pooled, info, fmt)


def pool_as_array(loaded: Loaded, recipe: Recipe, linear: bool) -> Any:
    """Pool an image into an array (for .npy, text or the terminal): one frame only, so an animation or a
    multi-page TIFF is refused rather than cut to its first frame."""
    if loaded.meta.get("frames", 1) > 1:
        raise UsageError(f"{loaded.name} has {loaded.meta['frames']} frames; write an image (-o y.gif, .png, "
                         ".webp or .tif) to pool every frame")
    return pool_image(loaded, recipe, linear)
