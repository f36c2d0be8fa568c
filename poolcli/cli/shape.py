"""``poolcli shape``: the output shape and each axis's formula, from a shape or a file header.

>>> from poolcli.cli import main
>>> main(["shape", "1,3,224,224", "-k", "3", "-s", "2", "-p", "1", "--json"])  # doctest: +ELLIPSIS
{"input": [1, 3, 224, 224], "output": [1, 3, 112, 112], ...}
0
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from poolcli.cli.common import DEFAULT, IMAGE_SUFFIX_SET, OUTPUT, Pooling, pooling_options
from poolcli.errors import UsageError

EPILOG = (
    "Examples:\n"
    "poolcli shape 1,3,224,224 -k 3 -s 2 -p 1\n"
    "poolcli shape x.npy --global --json"
)  # one example a line, as typed


@pooling_options
def shape(
    source: Annotated[str, typer.Argument(metavar="SHAPE|FILE", help="A shape like 1,3,224,224, or a .npy file "
                                                                     "(only its header is read).")],
    as_json: Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT, help="Machine-readable answer.")] = False,
    pool: Any = None,
) -> None:
    """The output shape, with each axis's formula filled in."""
    from poolcli.cli.options import parse_shape
    from poolcli.engine import describe

    pooling = Pooling(pool)
    path = Path(source)
    if path.is_file():
        from poolcli.io import arrays

        if path.suffix.lower() in IMAGE_SUFFIX_SET:
            from poolcli import imaging
            from poolcli.io import images

            in_shape = images.image_shape(path)
            pooling.spec = imaging.image_spec(pooling.spec, in_shape)
            pooling.for_image()
        elif path.suffix.lower() == ".npy":
            in_shape = arrays.npy_header_shape(path)
        else:
            raise UsageError(f"{source}: shape reads .npy and image headers; give one, or a shape like 1,3,224,224")
    elif source == "-":
        from poolcli.io import arrays

        in_shape = arrays.stdin_npy_shape()
    else:
        in_shape = parse_shape(source)
    g = pooling.bind(in_shape)
    axes = g.describe() if hasattr(g, "describe") else describe(g)
    if as_json:
        print(json.dumps({"input": list(in_shape), "output": list(g.out_shape), "op": pooling.op, "axes": axes}))
        return
    # plain text: shape is the command scripts call most, and rich would double its start-up
    wide = max(4, *(len(str(row["axis"])) for row in axes))
    lines = [f"{tuple(in_shape)} → {tuple(g.out_shape)}" + (f"  (--op {pooling.op}, the default for images)"
                                                            if pooling.op != DEFAULT and not pooling.explicit else ""),
             f"{'axis':<{wide}}  size  output size"]
    lines += [f"{row['axis']:<{wide}} {row['size']:>5}  {row['formula']}" for row in axes]
    print("\n".join(lines))


