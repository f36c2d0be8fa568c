"""``poolcli backward``: the gradient each input cell receives.

>>> from poolcli.cli import main
>>> main(["backward", "--matrix", "1 2; 3 4", "--format", "json"])
{"shape": [2, 2], "dtype": "float64", "data": [[0.0, 0.0], [0.0, 1.0]]}
0
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolcli.cli import scale
from poolcli.cli.common import (
    CHECK,
    INPUT,
    OPERATOR,
    BlockOpt,
    FormatOpt,
    FullOpt,
    InPlaceOpt,
    OutputOpt,
    Pooling,
    SchedulerOpt,
    ThreadsOpt,
    Ties,
    block_bytes,
    check_blocks,
    check_format,
    emit,
    guard,
    npy_file,
    pooling_options,
)
from poolcli.errors import CheckFailed, UsageError

EPILOG = (
    "Examples:\n"
    "poolcli backward x.npy -k 2 --ties split\n"
    "poolcli backward x.npy --grad g.npy -o dx.npy\n"
    "poolcli backward --check --random 2,4,6,6 --op all"
)  # one example a line, as typed


@pooling_options
def backward(
    input: Annotated[str | None, typer.Argument(metavar="INPUT", help="Array file, or - for stdin.",
                                                   show_default=False)] = None,
    grad: Annotated[str | None, typer.Option("--grad", rich_help_panel=INPUT, metavar="G",
                                                help="Upstream gradient (default: ones).")] = None,
    ties: Annotated[Ties, typer.Option("--ties", rich_help_panel=OPERATOR, metavar="HOW", show_default=False,
                                       help="Tied cells: first (default), all or split.")] = Ties("first"),
    check: Annotated[bool, typer.Option("--check", rich_help_panel=CHECK,
                                        help="Against finite differences (--op all: all).")] = False,
    random: Annotated[str | None, typer.Option("--random", rich_help_panel=CHECK, metavar="SHAPE",
                                                  help="Check a random normal input.")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", rich_help_panel=CHECK, metavar="E", show_default=False,
                                             help="Largest error that passes (1e-6).")] = 1e-6,
    output: OutputOpt = None,
    full: FullOpt = False,
    fmt: FormatOpt = None,
    in_place: InPlaceOpt = False,
    threads: ThreadsOpt = None,
    block_mb: BlockOpt = None,
    scheduler: SchedulerOpt = None,
    pool: Any = None,
) -> int | None:
    """The gradient: which input cells receive it, and how much."""
    from poolcli.engine import run_backward, run_more_gradients

    pooling = Pooling(pool, ties=ties.value)
    if check or random is not None:
        if not check:
            raise UsageError("--random goes with --check")
        if grad is not None:
            raise UsageError("--check draws its own random upstream gradient (seed 0); drop --grad")
        return _check(input, pooling, random, tolerance, output)
    if pooling.op == "all":
        raise UsageError("--op all goes with --check")
    if scheduler is not None or scale.is_zarr(input) or scale.is_zarr(output):
        return scale.run("backward", pooling, input, output, scheduler, grad, check_format(fmt)[0], full)
    output = guard(pooling, input, {"-o": output}, in_place, grad=grad).get("-o", output)
    loaded = pooling.read(input, main=True)
    arrays = pooling.arrays()
    g = pooling.bind(loaded.array.shape, arrays)
    upstream = None
    if grad is not None:
        if grad == "-" and input == "-":
            raise UsageError("the input and --grad cannot both come from standard input")
        grad_loaded = pooling.read(grad)
        upstream = grad_loaded.array
        if upstream.shape != g.out_shape:
            raise UsageError(
                f"--grad {grad} has shape {upstream.shape} but this pooling outputs {g.out_shape}; "
                "use the gradient of this output, or the forward run's -k/-s/-p"
            )
    run = dict(threads=threads, block_bytes=block_bytes(block_mb))
    if npy_file(output):  # written block by block into the mapped file: an output larger than memory fits
        check_blocks(pooling.op, g, loaded.array.dtype, block_mb)
        from poolcli.io import arrays as files

        with files.NpyOutputs([output]) as made:
            run_backward(loaded.array, g, upstream, pooling.op, pooling.params, allocate=made.allocate, **run)
        return None
    dx = run_backward(loaded.array, g, upstream, pooling.op, pooling.params, **run)
    extra = None
    if output is not None and output.lower().endswith(".npz"):  # with the other gradients: --with's, gem's p
        extra = run_more_gradients(loaded.array, g, upstream, pooling.op, pooling.params) or None
    emit(dx, output, full, check_format(fmt)[0], extra)
    return None


def _check(source: str | None, pooling: Pooling, random: str | None, tolerance: float, output: str | None) -> int:
    """backward --check: one line per operator; exit 1 if any is above the tolerance."""
    import numpy as np

    from poolcli.check import gradcheck
    from poolcli.cli.options import parse_shape
    from poolcli.engine import OPS, get_op
    from poolcli.errors import PoolcliError

    if output is not None:
        raise UsageError("--check prints its findings; drop -o")
    if not tolerance > 0:
        raise UsageError(f"--tolerance {tolerance}: give a number above 0")
    if random is not None:
        if source is not None or pooling.matrix is not None:
            raise UsageError("--random makes the input; drop the input file")
        shape = parse_shape(random)
        x = np.random.default_rng(0).normal(size=shape)
        what = f"a random normal {'×'.join(map(str, shape))} input (seed 0)"
    else:
        loaded = pooling.read(source, main=True)
        x = loaded.array
        what = f"{loaded.name}, shape {'×'.join(map(str, x.shape))}"
    ops = tuple(OPS) if pooling.op == "all" else (pooling.op,)
    given = pooling.arrays()
    print(f"backward --check on {what}: central differences, h = 1e-6·max(1, |x|), tolerance {tolerance:g}")
    failed: list[str] = []
    tied: list[str] = []  # operators that failed at a cell tied with another
    for op in ops:
        pool = get_op(op)
        if not pool.differentiable:
            if pooling.op != "all":
                raise UsageError(f"--op {pool.name} has no gradient to check")
            print(f"{op:<9} skipped: it has no gradient")
            continue
        try:
            params, arrays = pool.prepare_check(x.shape, pooling.spec, pooling.params,
                                                {k: v for k, v in given.items() if k in pool.arrays})

            def bind(a: Any, op: str = op, params: Any = params, **arrays: Any) -> Any:
                from poolcli.engine import bind as engine_bind

                return engine_bind(op, a.shape, pooling.spec, params, **arrays)

            checked = pool.drawn(x) if random is not None else x  # a drawn input, as the operator takes it
            result = gradcheck(checked, bind, op, params, arrays)
        except PoolcliError as e:
            if pooling.op != "all":
                raise
            print(f"{op:<9} skipped: {e}")
            continue
        verdict = "ok" if result.worst <= tolerance else "FAILED"
        where = ""
        if result.where is not None and result.worst > tolerance:
            kind, index = result.where
            where = (f" at {'' if kind == 'x' else ('--' + kind + ' ') if kind != 'p' else 'p'}{index}: analytic "
                     f"{result.analytic:.6g}, "
                     f"numeric {result.numeric:.6g}")
            equal = int(np.count_nonzero(checked == checked[index])) - 1 if kind == "x" and pool.ties else 0
            if equal:  # the failing cell is tied: there the operator has no derivative to agree with
                where += f"; x{index} = {checked[index]:g} equals {equal} other cell{'s' if equal > 1 else ''} (a tie)"
                tied.append(op)
        print(f"{op:<9} worst relative error {result.worst:.1e} over {result.cells} cells  {verdict}{where}")
        if result.worst > tolerance:
            failed.append(op)
    if failed:
        hint = (f" ({' and '.join(tied)} {'is' if len(tied) == 1 else 'are'} non-differentiable at a tie: --ties "
                "decides the gradient there, and finite differences see another)" if tied else "")
        raise CheckFailed(f"the backward of {', '.join(failed)} differs from finite differences by more than "
                          f"--tolerance {tolerance:g}{hint}")
    return 0
