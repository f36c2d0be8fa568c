"""Images in and out with Pillow: modes, bit depths, EXIF orientation, ICC profiles, JPEG quality.

An image becomes an array of its own bit depth, ``(H, W)`` or ``(H, W, C)`` (channels last);
``meta`` keeps what writing it back in the same mode and format needs.

>>> import numpy as np
>>> to_srgb(to_linear(np.array([0.0, 0.5, 1.0]))).round(6).tolist()
[0.0, 0.5, 1.0]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poolcli.errors import InputError, OutputError, UsageError
from poolcli.io.arrays import Loaded
from poolcli.io.atomic import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own limit: 2 x 89.5 megapixels
_EXIF_ORIENTATION = 0x0112


def _open(path: Path, max_pixels: int):
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # the header's size is checked here, against --max-pixels
    try:
        img = Image.open(path)
        fmt = img.format
        w, h = img.size
        if w * h > max_pixels:
            img.close()
            raise InputError(
                f"{path} is too large to open safely ({w}x{h} = {w * h:,} pixels, the limit is {max_pixels:,}); "
                f"if you trust it, raise the limit with --max-pixels {w * h}"
            )
        extra: dict[str, Any] = {}
        if fmt == "JPEG":
            from PIL import JpegImagePlugin

            extra = {"qtables": img.quantization, "subsampling": JpegImagePlugin.get_sampling(img)}
        img.seek(0)
        img.load()
        extra["oriented"] = img.getexif().get(_EXIF_ORIENTATION, 1) != 1
        if extra["oriented"]:
            img = ImageOps.exif_transpose(img) or img
        return img, fmt, extra
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image Pillow can read (corrupt, or not the format its name says)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path} is truncated or corrupt ({e}); re-save or re-download it") from None


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Loaded:
    """An image file as an array of its own bit depth, EXIF orientation applied.

    ``meta["pil"]`` keeps the decoded Pillow image, for the Image.reduce fast path.
    """
    img, fmt, extra = _open(path, max_pixels)
    mode = img.mode
    if mode == "1":
        img = img.convert("L")  # written back as 1-bit; pooled as 0/255 grey
    elif mode in ("P", "PA"):
        img = img.convert("RGBA" if ("transparency" in img.info or mode == "PA") else "RGB")
        mode = img.mode  # a palette cannot hold averages: written back as RGB(A)
    elif mode.startswith("I;16"):
        mode = "I;16"
    elif mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        img = img.convert("RGBA" if "A" in mode else "RGB")  # CMYK, YCbCr, LAB, …
        mode = img.mode
    exif = img.getexif()
    if extra.pop("oriented"):
        exif[_EXIF_ORIENTATION] = 1  # the pixels are upright now
    meta: dict[str, Any] = {
        "kind": "image",
        "mode": mode,
        "format": fmt,
        "icc_profile": img.info.get("icc_profile"),
        "exif": exif.tobytes() if len(exif) else None,
        "pil": img,
        **extra,
    }
    return ImageLoaded(None, str(path), meta)  # type: ignore[arg-type]


class ImageLoaded(Loaded):
    """A decoded image whose array is made from Pillow's buffer only when someone asks for it."""

    @property
    def array(self) -> np.ndarray:  # type: ignore[override]
        if self._array is None:
            img = self.meta["pil"]
            array = np.asarray(img)
            self._array = array.astype(np.uint16) if self.meta["mode"] == "I;16" else array
        return self._array

    @array.setter
    def array(self, value: np.ndarray | None) -> None:
        self._array = value

    @property
    def shape(self) -> tuple[int, ...]:
        """(H, W) or (H, W, C), without converting the pixels."""
        img = self.meta["pil"]
        bands = len(img.getbands())
        return (img.height, img.width) if bands == 1 else (img.height, img.width, bands)


def image_shape(path: Path) -> tuple[int, ...]:
    """The array shape of an image, from its header only: ``(H, W)`` or ``(H, W, C)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            w, h = img.size
            bands = len(img.getbands())
            if img.mode in ("P", "PA"):
                bands = 4 if ("transparency" in img.info or img.mode == "PA") else 3
            if img.mode == "1":
                bands = 1
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path} is not an image Pillow can read ({e})") from None
    return (h, w) if bands == 1 else (h, w, bands)


def has_alpha(meta: dict) -> bool:
    return meta.get("mode") in ("LA", "RGBA")


def to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def to_srgb(v: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] back to sRGB encoding."""
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def _pillow_reduces(meta: dict, g: Any, op: str, linear: bool) -> tuple[int, int] | None:
    """(kh, kw) when Pillow's Image.reduce gives exactly this average pooling, else None.

    That is: 8-bit grey or RGB (no alpha to premultiply), not in linear light, windows that
    tile (kernel == stride, no padding or dilation) with power-of-two sides, where Pillow
    rounds half up by exact shifts as the engine's path does.
    """
    if op not in ("avg", "mean") or linear or meta.get("mode") not in ("L", "RGB"):
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


def pool_image(loaded: Loaded, pool: Any, linear: bool = False, fast: bool = True, keep_pil: bool = False) -> Any:
    """Pool an image over height and width, channel by channel, back in its own dtype.

    Averages of images with alpha run on premultiplied colour, so a transparent pixel's hidden
    colour never bleeds; ``linear`` averages in linear light (sRGB decoded, pooled, re-encoded).
    Plain 2x/4x/8x box averages of 8-bit images go through Pillow's ``Image.reduce``, which
    gives the same numbers faster (``fast=False`` forces the engine); with ``keep_pil`` that path
    returns the Pillow image itself, saving a copy when it is written straight back.
    """
    from poolcli.engine import bind, run_forward

    meta = loaded.meta
    shape = loaded.shape if isinstance(loaded, ImageLoaded) else loaded.array.shape
    spec = image_spec(pool.spec, shape)
    g = bind(pool.op, shape, spec, pool.params, **pool.arrays())
    sides = _pillow_reduces(meta, g, pool.op, linear) if fast else None
    if sides is not None:
        from PIL import Image

        (kh, kw), (oh, ow) = sides, g.out_spatial
        img = meta.get("pil") or Image.fromarray(loaded.array)
        if img.size != (ow * kw, oh * kh):
            img = img.crop((0, 0, ow * kw, oh * kh))
        small = img.reduce((kw, kh))
        return small if keep_pil else np.asarray(small)
    array = loaded.array
    dtype = array.dtype
    integer = dtype.kind in "iu"
    averaging = pool.op not in ("max", "min")
    if not averaging and not linear:
        return run_forward(array, g, pool.op, pool.params)
    alpha = has_alpha(meta) and averaging
    light = linear and meta.get("mode") not in ("I", "F")
    top = float(np.iinfo(dtype).max) if integer and (alpha or light) and meta.get("mode") != "I" else 1.0
    x = array.astype(np.float64)
    if top != 1.0:
        x /= top
    colour = x[..., :-1] if has_alpha(meta) else x
    if light:
        colour[...] = to_linear(colour)
    if alpha:
        colour *= x[..., -1:]
    y = run_forward(x, g, pool.op, pool.params)
    if alpha:
        a = y[..., -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            y[..., :-1] = np.where(a > 0, y[..., :-1] / a, 0)
    if light:
        channels = y[..., :-1] if has_alpha(meta) else y
        channels[...] = to_srgb(channels)
    if top != 1.0:
        y *= top
    if integer:
        info = np.iinfo(dtype)
        return np.clip(np.floor(y + 0.5), info.min, info.max).astype(dtype)  # round half up, as Pillow
    return y.astype(dtype)


COMMON_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF", ".tif": "TIFF",
                  ".tiff": "TIFF", ".webp": "WEBP"}


def pil_format(suffix: str) -> str | None:
    """Pillow's format name for a file suffix (common ones without loading every Pillow plugin).

    >>> pil_format(".JPG")
    'JPEG'
    """
    known = COMMON_FORMATS.get(suffix.lower())
    if known is not None:
        return known
    from PIL import Image

    Image.init()
    return Image.EXTENSION.get(suffix.lower())


def write_image(path: str, array: Any, meta: dict, fmt: str | None = None, quality: int | None = None) -> None:
    """Write ``array`` (or a Pillow image) as an image in the input's mode and bit depth, keeping ICC profile,
    EXIF and JPEG quality."""
    from PIL import Image

    target = Path(path)
    format_name = (fmt.upper() if fmt else None) or pil_format(target.suffix)
    if format_name == "JPG":
        format_name = "JPEG"
    if format_name is None:
        raise UsageError(f"-o {path}: unknown image type {target.suffix or '(none)'}; use .png, .jpg, .tif, .webp …")
    mode = meta.get("mode", "")
    if isinstance(array, Image.Image):
        img = array
    else:
        if array.dtype == np.uint16 and array.ndim != 2:
            raise UsageError("16-bit colour images are written as .npy; Pillow writes 16 bits for grey only")
        img = Image.fromarray(array)
    if mode == "1":
        img = img.convert("1", dither=Image.Dither.NONE)
    options: dict[str, Any] = {}
    if format_name == "JPEG":
        if img.mode in ("RGBA", "LA"):
            img = img.convert(img.mode[:-1])  # JPEG has no alpha: drop it, as ImageMagick does
        if img.mode not in ("L", "RGB", "CMYK"):
            raise UsageError(f"-o {path}: JPEG holds 8-bit grey or colour, not {img.mode}; write .png or .tif")
        if quality is not None:
            options["quality"] = quality
        elif meta.get("qtables") and meta.get("format") == "JPEG":
            options["qtables"] = meta["qtables"]
            if meta.get("subsampling", -1) != -1:
                options["subsampling"] = meta["subsampling"]
        else:
            options["quality"] = 90
    elif quality is not None and format_name == "WEBP":
        options["quality"] = quality
    if meta.get("icc_profile") and format_name in ("JPEG", "PNG", "TIFF", "WEBP"):
        options["icc_profile"] = meta["icc_profile"]
    if meta.get("exif") and format_name in ("JPEG", "PNG", "TIFF", "WEBP"):
        options["exif"] = meta["exif"]
    try:
        with atomic_write(target) as f:  # encoded straight into the temporary file; a failure removes it
            img.save(f, format=format_name, **options)
    except (OSError, ValueError, KeyError) as e:
        raise OutputError(f"cannot write {path} as {format_name}: {getattr(e, 'strerror', None) or e}") from None
