"""``poolcli visualize``: one plane's windows, selected cells, output and gradient, on the terminal or as a PNG.

>>> from poolcli.cli import main
>>> main(["visualize", "--matrix", "1 5; 3 2"])  # doctest: +ELLIPSIS
max · kernel 2×2, stride 2×2 · plane 2×2
...
[v] = arg-max of a window (--ties first)
0
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from poolcli.cli.common import (
    INPUT,
    OPERATOR,
    OUTPUT,
    InPlaceOpt,
    Pooling,
    Ties,
    guard,
    pooling_options,
)
from poolcli.errors import UsageError
from poolcli.io.images import DEFAULT_MAX_PIXELS

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


EPILOG = (
    "Examples:\n"
    "poolcli visualize x.npy -k 3 -s 2 -p 1 --backward\n"
    "poolcli visualize x.npy --region 0:8,8:16\n"
    "poolcli visualize photo.jpg -k 8 -o fig.png"
)  # one example a line, as typed


@pooling_options
def visualize(
    input: Annotated[str | None, typer.Argument(metavar="INPUT", help="Array file, image, or - for stdin.",
                                                   show_default=False)] = None,
    backward: Annotated[bool, typer.Option("--backward", rich_help_panel=OPERATOR,
                                           help="Also show the gradient each input cell receives.")] = False,
    grad: Annotated[str | None, typer.Option("--grad", rich_help_panel=INPUT, metavar="G",
                                                help="Upstream gradient (default: ones).")] = None,
    ties: Annotated[Ties, typer.Option("--ties", rich_help_panel=OPERATOR, metavar="HOW", show_default=False,
                                       help="Tied cells: first (default), all or split.")] = Ties("first"),
    plane: Annotated[str | None, typer.Option("--plane", rich_help_panel=INPUT, metavar="N|I,J,…",
                                                 help="Plane: a number, or an index per axis.")] = None,
    region: Annotated[str | None, typer.Option("--region", rich_help_panel=INPUT, metavar="R0:R1,C0:C1",
                                                  help="Part of the plane (lrn: across or within).")] = None,
    output: Annotated[str | None, typer.Option("-o", "--output", rich_help_panel=OUTPUT, metavar="FIGURE.png",
                                                  help="Draw a picture instead of printing.")] = None,
    linear: Annotated[bool, typer.Option("--linear", rich_help_panel=OPERATOR,
                                         help="Images: average in linear light.")] = False,
    max_pixels: Annotated[int, typer.Option("--max-pixels", rich_help_panel=INPUT, metavar="N", min=1,
                                            help="Refuse larger images.", show_default=False)] = DEFAULT_MAX_PIXELS,
    in_place: InPlaceOpt = False,
    pool: Any = None,
) -> None:
    """Show one plane: windows, selected cells, output and gradient."""
    from poolcli import imaging
    from poolcli.cli.options import parse_ints, parse_region
    from poolcli.engine import bind
    from poolcli.io import images
    from poolcli.render.scene import build_scene

    pooling = Pooling(pool, ties=ties.value)
    if output is not None and Path(output).suffix.lower() not in FIGURE_SUFFIXES:
        raise UsageError(f"-o {output}: visualize draws a picture; name a .png (or .jpg, .webp) file")
    spans = parse_region(region) if region is not None else None
    picked = parse_ints(plane, "--plane") if plane is not None else None
    output = guard(pooling, input, {"-o": output}, in_place, grad=grad).get("-o", output)
    loaded = pooling.read(input, main=True, max_pixels=max_pixels)
    image = loaded.meta.get("kind") == "image"
    if image and output is not None:
        if picked is not None or spans is not None:
            raise UsageError("--plane and --region pick part of an array; an image figure shows the whole image")
        return _image_figure(loaded, pooling, linear, output)
    x = loaded.array
    spec = imaging.image_spec(pooling.spec, x.shape) if image else pooling.spec
    arrays = pooling.arrays()
    upstream = None
    if grad is not None:
        if not backward and output is None:
            raise UsageError("--grad goes with --backward (the gradient it shows)")
        upstream = pooling.read(grad).array
        want = bind(pooling.op, x.shape, spec, pooling.params, **arrays).out_shape
        if upstream.shape != want:
            raise UsageError(f"--grad {grad} has shape {upstream.shape} but this pooling outputs {want}")
    scene = build_scene(x, spec, pooling.op, pooling.params, picked, upstream, arrays)
    if output is not None:
        from poolcli.io.atomic import atomic_write
        from poolcli.render.figure import scene_figure

        if spans is not None:
            region = _region(scene, spans)
            scene = scene.crop(region.r0, region.r1, region.c0, region.c1)
        figure = scene_figure(scene, _figure_title(scene))
        with atomic_write(output) as f:
            figure.save(f, format=images.pil_format(Path(output).suffix))
        return None
    _print(scene, spans, backward)
    return None


def _print(scene: Any, spans: Any, backward: bool) -> None:
    from rich.console import Console

    from poolcli.render.grid import render_scene

    console = Console(highlight=False)
    region = None if spans is None else _region(scene, spans)
    console.print(render_scene(scene, console.width, region, backward))


def _region(scene: Any, spans: Any) -> Any:
    """--region's spans as a Region of the scene's plane (a 1-D plane takes one span: its cells)."""
    from poolcli.render.grid import Region

    h, w = scene.x.shape
    if h == 1 and len(spans) == 1:
        spans = ((0, 1), *spans)
    elif len(spans) == 1:
        spans = (*spans, (0, w))
    (r0, r1), (c0, c1) = spans
    region = Region(r0 or 0, min(h, r1 if r1 is not None else h), c0 or 0, min(w, c1 if c1 is not None else w))
    if region.r0 >= h or region.c0 >= w:
        raise UsageError(f"--region starts outside the {h}×{w} plane" if h > 1 else
                         f"--region starts outside the plane of length {w}")
    return region


def _figure_title(scene: Any) -> str:
    """The operator, its window and every option given that changes the result (--no-count-pad, --p 3, …)."""
    from poolcli.engine import OPTIONS

    plane = f" · plane {','.join(map(str, scene.plane))} of {'×'.join(map(str, scene.shape))}" if scene.plane else ""
    given = []
    for name, value in scene.params.given.items():
        option = OPTIONS[name][0]
        if option.kind is bool:
            given.append(option.cli_flag if value else option.flags.split("/")[-1])
        elif name != "ties" or (value != "first" and scene.selected is not None):
            shown = ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else value
            given.append(f"{option.cli_flag} {shown}")
    options = f" · {' '.join(given)}" if given else ""
    return f"{scene.op} · {scene.window}{options}{plane}"


def _image_figure(loaded: Any, pooling: Pooling, linear: bool, output: str) -> None:
    from poolcli import imaging
    from poolcli.engine import Geometry, bind
    from poolcli.io import images
    from poolcli.io.atomic import atomic_write
    from poolcli.render.figure import image_figure
    from poolcli.render.scene import window_text

    pooled = imaging.pool_image(loaded, pooling.recipe(), linear)
    h, w = loaded.shape[:2]
    g = bind(pooling.op, (h, w), imaging.image_spec(pooling.spec, (h, w)), pooling.params, **pooling.arrays())
    what = window_text(g) if isinstance(g, Geometry) else "; ".join(row["formula"] for row in g.describe())
    light = " · linear light" if linear else ""
    title = f"{Path(loaded.name).name} · {pooling.op} · {what}{light}"
    figure = image_figure(loaded.array, pooled, title)
    with atomic_write(output) as f:
        figure.save(f, format=images.pil_format(Path(output).suffix))

