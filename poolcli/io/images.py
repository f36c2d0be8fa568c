"""Images in and out with Pillow: modes, bit depths, EXIF orientation, ICC profiles, JPEG quality.

An image becomes an array of its own bit depth, ``(H, W)`` or ``(H, W, C)`` (channels last);
``meta`` keeps what writing it back in the same mode and format needs. Pooling an image (alpha,
linear light, strips) is ``poolcli.imaging``'s; this module moves bytes.

>>> pil_format(".tif")
'TIFF'
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from poolcli.errors import InputError, OutputError, UsageError
from poolcli.io.arrays import Loaded
from poolcli.io.atomic import atomic_write, describe_os_error

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own limit: 2 x 89.5 megapixels
_EXIF_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_PIXEL_X, _PIXEL_Y = 0xA002, 0xA003  # the Exif IFD's PixelXDimension / PixelYDimension
# Tags that describe the stored pixels rather than the picture (a TIFF's own layout, read as EXIF):
# size, samples, compression, strips and tiles, colour map, sub-IFDs, JPEG thumbnail offsets, ICC.
# Carried into a smaller image they lie about it (a TIFF written with them is unreadable).
_LAYOUT_TAGS = (254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325,
                330, 338, 339, 340, 341, 513, 514, 530, 531, 532, 34675)
# The colour space an ICC profile describes (bytes 16-20 of its header), by the image modes it fits.
_ICC_SPACES = {b"GRAY": ("L", "LA", "I", "I;16", "F", "1", "LA;16"), b"RGB ": ("RGB", "RGBA", "RGB;16", "RGBA;16"),
               b"CMYK": ("CMYK",)}


def _open(path: Path, max_pixels: int):
    from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

    # a large ICC profile or text chunk is legal: allow 64 MiB where Pillow stops at 1 MiB (a
    # decompression bomb is still refused, by Pillow's check of the total)
    PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, 64 << 20)
    PngImagePlugin.MAX_TEXT_MEMORY = max(PngImagePlugin.MAX_TEXT_MEMORY, 256 << 20)

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
        frames = getattr(img, "n_frames", 1) if fmt in ANIMATED_FORMATS else 1
        if frames > 1:
            extra.update(frames=frames, source=img)
        img.seek(0)
        tile = list(img.tile)
        img.load()
        extra["oriented"] = img.getexif().get(_EXIF_ORIENTATION, 1) != 1
        deep = _deep_png(path, img, tile) if fmt == "PNG" else None
        if extra["oriented"]:
            img = ImageOps.exif_transpose(img) or img
            deep = None if deep is None else [ImageOps.exif_transpose(part) or part for part in deep]
        if deep is not None:
            extra["deep"] = (_join_bytes(deep, tile[0].args), _DEEP_PNG[tile[0].args][1])
        return img, fmt, extra
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied") from None
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image Pillow can read (corrupt, or not the format its name says)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path} is truncated or corrupt ({e}); re-save or re-download it") from None


# 16-bit colour PNGs: Pillow keeps only the high byte of each sample. Decoding the same data again
# with a raw mode of the other byte order (or, for grey+alpha, as raw bytes) gives the low bytes,
# with the same PNG unfiltering, so no sample is lost.
_DEEP_PNG = {"RGB;16B": ("RGB;16L", "RGB;16"), "RGBA;16B": ("RGBA;16L", "RGBA;16"), "LA;16B": ("RGBA", "LA;16")}


def _deep_png(path: Path, img: Any, tile: list) -> list | None:
    """The Pillow images that hold the low bytes (RGB, RGBA) or all bytes (LA) of a 16-bit colour PNG."""
    if len(tile) != 1 or getattr(tile[0], "args", None) not in _DEEP_PNG:
        return None
    from PIL import Image

    other = Image.open(path)
    other.tile = [tile[0]._replace(args=_DEEP_PNG[tile[0].args][0])]
    other.load()
    return [img, other] if tile[0].args != "LA;16B" else [other]


def _join_bytes(parts: list, rawmode: str) -> np.ndarray:
    """(H, W, C) uint16 samples from the decoded byte planes."""
    if rawmode == "LA;16B":
        raw = np.asarray(parts[0]).astype(np.uint16)
        return np.stack([raw[..., 0] << 8 | raw[..., 1], raw[..., 2] << 8 | raw[..., 3]], axis=-1)
    high, low = (np.asarray(part).astype(np.uint16) for part in parts)
    return high << 8 | low


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
        img = _to_rgb(img)  # CMYK, YCbCr, LAB, …
        mode = img.mode
    deep, mode = extra.pop("deep", (None, mode))
    exif = img.getexif()
    if extra.pop("oriented"):
        exif[_EXIF_ORIENTATION] = 1  # the pixels are upright now
    for tag in _LAYOUT_TAGS:
        exif.pop(tag, None)
    meta: dict[str, Any] = {
        "frames": 1,
        "kind": "image",
        "mode": mode,
        "format": fmt,
        "icc_profile": fitting_profile(img.info.get("icc_profile"), mode),
        "exif": exif.tobytes() if len(exif) else None,
        "pil": img,
        **extra,
    }
    return ImageLoaded(deep, str(path), meta)  # type: ignore[arg-type]


def pixels(img: Any, mode: str) -> np.ndarray:
    """A decoded Pillow image (or part of one) as an array of the image's own bit depth."""
    array = np.asarray(img)
    return array.astype(np.uint16) if mode == "I;16" else array


class ImageLoaded(Loaded):
    """A decoded image whose array is made from Pillow's buffer only when someone asks for it."""

    @property
    def array(self) -> np.ndarray:  # type: ignore[override]
        if self._array is None:
            self._array = pixels(self.meta["pil"], self.meta["mode"])
        return self._array

    @array.setter
    def array(self, value: np.ndarray | None) -> None:
        self._array = value

    @property
    def shape(self) -> tuple[int, ...]:
        """(H, W) or (H, W, C), without converting the pixels."""
        if self._array is not None:
            return tuple(self._array.shape)
        img = self.meta["pil"]
        bands = len(img.getbands())
        return (img.height, img.width) if bands == 1 else (img.height, img.width, bands)


def _to_rgb(img: Any) -> Any:
    """An image in another colour space as RGB(A): through its own ICC profile to sRGB where it has one."""
    profile = img.info.get("icc_profile")
    if img.mode == "CMYK" and profile:
        import io

        from PIL import ImageCms

        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                converted.info = {k: v for k, v in img.info.items() if k != "icc_profile"}
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a profile that cannot be used: Pillow's plain conversion, and the profile is dropped
    return img.convert("RGBA" if "A" in img.mode else "RGB")


def image_shape(path: Path) -> tuple[int, ...]:
    """The array shape of an image, from its header only: ``(H, W)`` or ``(H, W, C)``."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # only the header is read: any size is safe to report
    try:
        with Image.open(path) as img:
            w, h = img.size
            bands = len(img.getbands())
            if img.mode in ("P", "PA"):
                bands = 4 if ("transparency" in img.info or img.mode == "PA") else 3
            if img.mode == "1":
                bands = 1
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied") from None
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path} is not an image Pillow can read ({e})") from None
    return (h, w) if bands == 1 else (h, w, bands)


def fitting_profile(profile: bytes | None, mode: str) -> bytes | None:
    """The ICC profile if it describes the colour space of ``mode``, else None (a CMYK profile on the RGB
    pixels a CMYK JPEG was converted to would make every viewer show wrong colours).

    >>> fitting_profile(b"x" * 16 + b"CMYK" + b"x" * 108, "RGB") is None
    True
    """
    if not profile:
        return None
    fits = _ICC_SPACES.get(profile[16:20])  # a profile of another space, or unreadable, is left as it is
    return profile if fits is None or mode in fits else None


def true_exif(exif: bytes | None, size: tuple[int, int]) -> bytes | None:
    """EXIF for a written image of ``size`` (width, height): the Exif IFD's pixel dimensions set to it."""
    if not exif:
        return None
    from PIL import Image

    tags = Image.Exif()
    tags.load(exif)
    if _EXIF_IFD in tags:
        sub = tags.get_ifd(_EXIF_IFD)
        if _PIXEL_X in sub or _PIXEL_Y in sub:
            sub[_PIXEL_X], sub[_PIXEL_Y] = size
    return tags.tobytes()


def has_alpha(meta: dict) -> bool:
    return meta.get("mode", "").split(";")[0] in ("LA", "RGBA")


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
    kind = format_name(path, fmt)
    mode = meta.get("mode", "")
    if isinstance(array, Image.Image):
        img = array
    else:
        if array.dtype == np.uint16 and array.ndim == 3:  # 16-bit colour, which Pillow cannot hold
            if kind == "PNG":
                return _write(target, kind, lambda f: f.write(png16(
                    array, fitting_profile(meta.get("icc_profile"), meta.get("mode", "")),
                    true_exif(meta.get("exif"), (array.shape[1], array.shape[0])))))
            if kind not in EIGHT_BIT_FORMATS:
                raise UsageError(f"-o {path}: 16-bit colour is written as .png (or .npy) only; "
                                 f"{kind} here would keep 8 of the 16 bits")
            array = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # 8-bit formats: as IM
        img = Image.fromarray(array)
    if mode == "1":
        img = img.convert("1", dither=Image.Dither.NONE)
    options: dict[str, Any] = {}
    if kind == "JPEG":
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
    elif quality is not None and kind == "WEBP":
        options["quality"] = quality
    profile = fitting_profile(meta.get("icc_profile"), img.mode)
    if profile and kind in ("JPEG", "PNG", "TIFF", "WEBP"):
        options["icc_profile"] = profile
    if meta.get("exif") and kind in ("JPEG", "PNG", "TIFF", "WEBP"):
        options["exif"] = true_exif(meta["exif"], img.size)
    _write(target, kind, lambda f: img.save(f, format=kind, **options))


EIGHT_BIT_FORMATS = ("JPEG", "WEBP", "GIF", "BMP")
ANIMATED_FORMATS = ("GIF", "PNG", "WEBP", "TIFF", "MPO")  # formats whose files may hold several frames or pages
WRITES_FRAMES = ("GIF", "PNG", "WEBP", "TIFF")


def write_frames(path: str, loaded: Loaded, pooled: list[Any], info: list[tuple[Any, Any]],
                 fmt: str | None = None) -> None:
    """Write pooled frames (Pillow images or arrays) as one animation or multi-page file, with each frame's
    (duration, disposal) and the source's loop count."""
    from PIL import Image

    kind = format_name(path, fmt)
    frames = [f if isinstance(f, Image.Image) else Image.fromarray(f) for f in pooled]
    options: dict[str, Any] = {"save_all": True, "append_images": frames[1:]}
    if all(d is not None for d, _ in info):
        options["duration"] = [d for d, _ in info]
    if all(d is not None for _, d in info):
        options["disposal"] = [d for _, d in info]
    if "loop" in loaded.meta["source"].info:
        options["loop"] = loaded.meta["source"].info["loop"]
    _write(Path(path), kind, lambda f: frames[0].save(f, format=kind, **options))


def frames(loaded: Loaded) -> Iterator[tuple[Loaded, tuple[Any, Any]]]:
    """Each frame (or page) of a multi-frame image as an image of its own, with its (duration, disposal)."""
    meta = loaded.meta
    source = meta["source"]
    try:
        for i in range(meta["frames"]):
            source.seek(i)
            frame = source.convert(meta["mode"].split(";")[0]) if source.mode != meta["mode"] else source.copy()
            yield (ImageLoaded(None, loaded.name, {**meta, "pil": frame}),
                   (source.info.get("duration"), getattr(source, "disposal_method", source.info.get("disposal"))))
    finally:
        source.seek(0)


def format_name(path: str, fmt: str | None) -> str:
    """Pillow's format name for an output: --format, or the file's suffix."""
    name = (fmt.upper() if fmt else None) or pil_format(Path(path).suffix)
    if name is None:
        suffix = Path(path).suffix or "(none)"
        raise UsageError(f"-o {path}: unknown image type {suffix}; use .png, .jpg, .tif, .webp …")
    return {"JPG": "JPEG", "TIF": "TIFF"}.get(name, name)


def _write(target: Path, kind: str, encode: Any) -> None:
    """Encode straight into the temporary file of an atomic write (a failure removes it), or for ``-`` onto
    standard output once the whole image is encoded."""
    try:
        if str(target) == "-":
            import io

            from poolcli.io.arrays import to_stdout

            buf = io.BytesIO()
            encode(buf)
            to_stdout(buf.getvalue(), kind, f"y.{kind.lower().replace('jpeg', 'jpg')}")
            return
        with atomic_write(target) as f:
            encode(f)
    except (OSError, ValueError, KeyError) as e:
        reason = describe_os_error(e) if isinstance(e, OSError) and e.errno else e
        raise OutputError(f"cannot write {target} as {kind}: {reason}") from None


def png16(array: np.ndarray, profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """A 16-bit PNG of an (H, W, C) uint16 array (C = 2, 3 or 4: grey+alpha, RGB, RGBA), which Pillow cannot
    write. Each row takes the Sub or Up filter, whichever leaves smaller bytes, as encoders usually choose.

    >>> from PIL import Image; import io
    >>> a = np.array([[[0, 1000, 65535]]], dtype=np.uint16)
    >>> Image.open(io.BytesIO(png16(a))).size
    (1, 1)
    """
    import struct
    import zlib

    h, w, c = array.shape
    rows = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(h, w * c * 2)
    sub, up = rows.copy(), rows.copy()
    sub[:, 2 * c :] -= rows[:, : -2 * c]  # uint8 arithmetic wraps, as the PNG filters do
    up[1:] -= rows[:-1]
    cost = [np.minimum(f, 256 - f.astype(np.int32)).sum(axis=1) for f in (rows, sub, up)]
    choice = np.argmin(np.stack(cost), axis=0)
    filtered = np.choose(choice[:, None], (rows, sub, up)).astype(np.uint8)
    data = np.concatenate([choice.astype(np.uint8)[:, None], filtered], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    colour = {2: 4, 3: 2, 4: 6}[c]
    out = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))]
    if profile:
        out.append(chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(profile)))
    if exif:
        out.append(chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    out += [chunk(b"IDAT", zlib.compress(data, 6)), chunk(b"IEND", b"")]
    return b"".join(out)
