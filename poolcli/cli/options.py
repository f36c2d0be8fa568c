"""Command-line words to engine objects: ``"3,2"`` to ``(3, 2)``, ``"0,1,0,1"`` to pads, and so on.

>>> parse_ints("3,2", "--kernel")
(3, 2)
>>> parse_padding("same-lower")
'same-lower'
>>> parse_shape("1x3x224x224")
(1, 3, 224, 224)
"""

from __future__ import annotations

from poolcli.engine import PAD_MODES, WindowSpec
from poolcli.errors import UsageError

LARGEST = 2**31 - 1  # window sizes, steps and paddings past this cannot fit any array


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """Comma-separated whole numbers, as in ``-k 3,2``."""
    parts = [p.strip() for p in str(text).split(",")]
    values = []
    for part in parts:
        try:
            values.append(int(part))
            if abs(values[-1]) > LARGEST:
                raise UsageError(f"{option} {text}: {part} is too large; give values up to {LARGEST}")
        except ValueError:
            raise UsageError(
                f"{option} {text}: {part!r} is not a whole number; give one number or one per axis, like 3 or 3,2"
            ) from None
    return tuple(values)


def parse_padding(text: str) -> str | tuple[int, ...]:
    """``1``, ``1,2``, ``0,1,0,1`` (top,bottom,left,right) or a mode: valid, same, same-lower."""
    word = str(text).strip().lower()
    if word in PAD_MODES or word.replace("_", "-") in PAD_MODES:
        return word.replace("_", "-")
    if word.isalpha():
        raise UsageError(f"--padding {text}: not a padding; give a number, numbers per axis, or {', '.join(PAD_MODES)}")
    return parse_ints(text, "--padding")


def parse_shape(text: str) -> tuple[int, ...]:
    """An array shape written as ``1,3,224,224``, ``1x3x224x224``, ``1 3 224 224`` or ``(1, 3, 224, 224)``;
    a token that is not a size is named, never dropped.

    >>> parse_shape("(2, 3)")
    (2, 3)
    """
    body = text.strip()
    if body[:1] in "([" and body[-1:] in ")]":
        body = body[1:-1]
    body = body.rstrip(",").strip()  # (4,) is a 1-D shape
    sep = "," if "," in body else ("x" if "x" in body else "×" if "×" in body else None)
    parts = [p.strip() for p in (body.split(sep) if sep else body.split())]
    for part in parts:
        if not part.isdigit():
            what = "an empty size" if not part else f"{part!r} is not a size"
            raise UsageError(f"{text!r}: {what}; give whole numbers like 1,3,224,224 (or name a file that exists)")
    if not parts:
        raise UsageError(f"{text!r} is not a shape; give sizes like 1,3,224,224")
    return tuple(int(p) for p in parts)


def window_spec(
    kernel: str | None,
    stride: str | None,
    padding: str,
    dilation: str,
    ceil: bool,
    global_pool: bool,
    output_size: str | None,
    dims: int | None,
    channels_last: bool,
) -> WindowSpec:
    """The WindowSpec for the window options of the command line."""
    return WindowSpec(
        kernel=None if kernel is None else parse_ints(kernel, "--kernel"),
        stride=None if stride is None else parse_ints(stride, "--stride"),
        padding=parse_padding(padding),
        dilation=parse_ints(dilation, "--dilation"),
        ceil=ceil,
        global_pool=global_pool,
        output_size=None if output_size is None else parse_ints(output_size, "--output-size"),
        dims=dims,
        channels_last=channels_last,
    )


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """Comma-separated numbers, as in ``--scale 2,1.5``."""
    values = []
    for part in str(text).split(","):
        try:
            values.append(float(part))
        except ValueError:
            raise UsageError(f"{option} {text}: {part.strip()!r} is not a number; give one or one per axis, "
                             "like 2 or 2,1.5") from None
    return tuple(values)


def parse_region(text: str) -> tuple[tuple[int | None, int | None], ...]:
    """``R0:R1,C0:C1`` (half-open, ends may be left out, like NumPy slices); one span for a 1-D plane.

    >>> parse_region("0:8,4:")
    ((0, 8), (4, None))
    """
    spans = []
    for part in str(text).split(","):
        bounds = part.strip().split(":")
        if len(bounds) != 2:
            raise UsageError(f"--region {text}: give rows and columns as R0:R1,C0:C1, like 0:8,16:24")
        try:
            lo, hi = (int(b) if b.strip() else None for b in bounds)
        except ValueError:
            raise UsageError(f"--region {text}: {part!r} is not a span of whole numbers like 0:8") from None
        if (lo is not None and lo < 0) or (hi is not None and lo is not None and hi <= lo):
            raise UsageError(f"--region {text}: {part.strip()} is empty; give START:END with START < END")
        spans.append((lo, hi))
    if len(spans) > 2:
        raise UsageError(f"--region {text}: give at most rows and columns, R0:R1,C0:C1")
    return tuple(spans)
