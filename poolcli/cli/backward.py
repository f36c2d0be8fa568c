"""``poolcli backward``: the gradient each input cell receives.

>>> from poolcli.cli import main
>>> main(["backward", "--matrix", "1 2; 3 4", "--format", "json"])
{"shape": [2, 2], "dtype": "float64", "data": [[0.0, 0.0], [0.0, 1.0]]}
0
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolcli.cli.common import (
    INPUT,
    OPERATOR,
    FormatOpt,
    FullOpt,
    InPlaceOpt,
    OutputOpt,
    Pooling,
    Ties,
    app,
    check_format,
    emit,
    pooling_options,
    read_input,
)
from poolcli.errors import UsageError


@app.command(epilog="Examples:  poolcli backward x.npy -k 2 --ties split  ·  "
             "poolcli backward x.npy -k 3 -s 2 -p 1 --grad g.npy -o dx.npy")
@pooling_options
def backward(
    input: Annotated[str | None, typer.Argument(metavar="INPUT", help="Array file, or - for stdin.",
                                                   show_default=False)] = None,
    grad: Annotated[str | None, typer.Option("--grad", rich_help_panel=INPUT, metavar="G",
                                                help="Upstream gradient, shaped like the forward output. "
                                                     "Default: ones.")] = None,
    ties: Annotated[Ties, typer.Option("--ties", rich_help_panel=OPERATOR,
                                       help="max/min: who gets the gradient of tied cells.")] = Ties("first"),
    output: OutputOpt = None,
    full: FullOpt = False,
    fmt: FormatOpt = "table",
    in_place: InPlaceOpt = False,
    pool: Any = None,
) -> None:
    """Gradient of the pooling with respect to its input: which cells receive gradient, and how much."""
    from poolcli.engine import run_backward

    pooling = Pooling(pool, ties=ties.value)
    loaded = read_input(input, pooling.key, pooling.matrix)
    g = pooling.spec.bind(loaded.array.shape)
    upstream = None
    if grad is not None:
        if grad == "-" and input == "-":
            raise UsageError("the input and --grad cannot both come from standard input")
        grad_loaded = read_input(grad, pooling.key)
        upstream = grad_loaded.array
        if upstream.shape != g.out_shape:
            raise UsageError(
                f"--grad {grad} has shape {upstream.shape} but this pooling outputs {g.out_shape}; "
                "use the gradient of this output, or the forward run's -k/-s/-p"
            )
    dx = run_backward(loaded.array, g, upstream, pooling.op, pooling.params)
    emit(dx, output, full, check_format(fmt)[0], loaded, in_place)


