"""The command line: options -> WindowSpec; io -> engine -> io/render; the one error boundary.

>>> main(["shape", "1,3,224,224", "-k", "3", "-s", "2", "-p", "1", "--json"])  # doctest: +ELLIPSIS
{"input": [1, 3, 224, 224], "output": [1, 3, 112, 112], ...}
0
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from poolcli.engine import ALIASES, OPS, TIES
from poolcli.errors import InputError, PoolcliError, UsageError
from poolcli.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES

WINDOW, OPERATOR, INPUT, OUTPUT, BATCH = "Window", "Operator", "Input", "Output", "Images and batches"
IMAGE_SUFFIX_SET = set(IMAGE_SUFFIXES)

Op = Enum("Op", {name: name for name in [*OPS, *ALIASES]}, type=str)  # type: ignore[misc]
Ties = Enum("Ties", {name: name for name in TIES}, type=str)  # type: ignore[misc]


TERMINAL_FORMATS = ("table", "json")
IMAGE_FORMATS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "gif")


app = typer.Typer(
    name="poolcli",
    help="Pooling operators of convolutional networks, forward and backward, on NumPy arrays and images.",
    epilog=(
        "Examples:  poolcli forward x.npy -k 3 -s 2 -p 1 -o y.npy  ·  poolcli shape 1,3,224,224 -k 3 -s 2 -p 1  ·  "
        "poolcli backward x.npy --ties split"
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _option(default: Any, *names: str, panel: str, **kw: Any) -> tuple[Any, Any]:
    return default, typer.Option(*names, rich_help_panel=panel, **kw)


# The options every pooling command shares: (default, typer.Option) by parameter name.
POOL_OPTIONS: dict[str, tuple[type, tuple[Any, Any]]] = {
    "op": (Op, _option(Op("max"), "--op", panel=OPERATOR, help="Pooling operator.")),
    "kernel": (str | None, _option(None, "-k", "--kernel", panel=WINDOW, metavar="K[,K…]",
                                      help="Window size, one or one per spatial axis. Default: 2.")),
    "stride": (str | None, _option(None, "-s", "--stride", panel=WINDOW, metavar="S[,S…]",
                                      help="Step between windows. Default: the kernel.")),
    "padding": (str, _option("0", "-p", "--padding", panel=WINDOW,
                             metavar="P|P,P|TOP,BOTTOM,LEFT,RIGHT|valid|same|same-lower",
                             help="Padding: both sides, per axis, begin,end per axis, or a mode.")),
    "dilation": (str, _option("1", "-d", "--dilation", panel=WINDOW, metavar="D[,D…]",
                              help="Spacing between window taps.")),
    "ceil": (bool, _option(False, "--ceil", panel=WINDOW, help="Ceil instead of floor in the output size.")),
    "global_pool": (bool, _option(False, "--global", panel=WINDOW, help="One window over the whole spatial extent.")),
    "output_size": (str | None, _option(None, "--output-size", panel=WINDOW, metavar="N[,N…]",
                                           help="Adaptive pooling to this output size.")),
    "dims": (int | None, _option(None, "--dims", panel=WINDOW, metavar="N",
                                    help="Number of trailing spatial axes. Default: 1 for a 1-D input, else 2.")),
    "channels_last": (bool, _option(False, "--channels-last", panel=WINDOW,
                                    help="The input is (…, H, W, C) rather than (…, C, H, W).")),
    "count_pad": (bool, _option(True, "--count-pad/--no-count-pad", panel=OPERATOR,
                                help="avg: padded cells count in the divisor (as PyTorch).")),
    "p": (float, _option(2.0, "--p", panel=OPERATOR, help="lp: the norm's exponent.")),
    "mean": (bool, _option(False, "--mean", panel=OPERATOR, help="lp: the root-mean variant (mean |x|^p)^(1/p).")),
    "alpha": (float, _option(0.5, "--alpha", panel=OPERATOR, help="mixed: share of max in alpha*max + (1-alpha)*avg.")),
    "key": (str | None, _option(None, "--key", panel=INPUT, help="The array to read from an .npz file.")),
    "matrix": (str | None, _option(None, "--matrix", panel=INPUT, metavar='"1 2; 3 4"',
                                      help="An inline matrix: rows split by ;, values by spaces or commas.")),
}
WINDOW_NAMES = ("kernel", "stride", "padding", "dilation", "ceil", "global_pool", "output_size", "dims",
                "channels_last")
PARAM_NAMES = ("count_pad", "p", "mean", "alpha")


class Pooling:
    """What the shared options say: the operator, its WindowSpec and Params, and where the input comes from."""

    def __init__(self, values: dict[str, Any], ties: str = "first") -> None:
        from poolcli.options import op_params, window_spec

        self.op = values["op"].value
        self.spec = window_spec(*(values[n] for n in WINDOW_NAMES))
        self.params = op_params(*(values[n] for n in PARAM_NAMES), ties=ties)
        self.key, self.matrix = values["key"], values["matrix"]


def pooling_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the shared window, operator and input options, collected into its ``pool`` argument."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "pool"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])
        for name, (kind, (default, option)) in POOL_OPTIONS.items()
    ]

    @functools.wraps(fn)
    def command(**kw: Any) -> Any:
        values = {name: kw.pop(name) for name in POOL_OPTIONS}
        kw["pool"] = values
        return fn(**kw)

    command.__signature__ = sig.replace(parameters=[*own, *shared])  # type: ignore[attr-defined]
    return command


OutputOpt = Annotated[str | None, typer.Option("-o", "--output", rich_help_panel=OUTPUT, metavar="OUT",
                                                  help="Write the result: .npy, .npz, .txt, .csv, or - for .npy bytes "
                                                       "on standard output.")]
FullOpt = Annotated[bool, typer.Option("--full", rich_help_panel=OUTPUT, help="Print every value, not just the edges.")]
FormatOpt = Annotated[str, typer.Option("--format", rich_help_panel=OUTPUT, metavar="table|json|png|jpg|…",
                                        help="Terminal output: tables or JSON; or the image format to write.")]
InPlaceOpt = Annotated[bool, typer.Option("--in-place", rich_help_panel=OUTPUT,
                                          help="Allow -o to overwrite the input file.")]


def _read(source: str | None, key: str | None = None, matrix: str | None = None,
          max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """Load the one input array (a file, - for standard input, or --matrix)."""
    from poolcli.io import arrays

    if matrix is not None:
        if source is not None:
            raise UsageError("give an input file or --matrix, not both")
        return arrays.Loaded(arrays.parse_matrix(matrix), "--matrix", {"kind": "text"})
    if source is None:
        raise UsageError("no input; give a file (x.npy, x.txt, an image), - for standard input, or --matrix")
    if source == "-":
        return arrays.read_stdin(key)
    path = Path(source)
    if not path.exists():
        raise InputError(f"{source}: no such file")
    if path.is_dir():
        raise UsageError(f"{source} is a folder; give a file, or use --out-dir to pool every image in it")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIX_SET:
        from poolcli.io import images

        return images.read_image(path, max_pixels)
    if suffix not in arrays.ARRAY_SUFFIXES:
        raise UsageError(
            f"{source}: unknown input type {suffix or '(no suffix)'}; poolcli reads .npy, .npz, .txt, .csv and images"
        )
    try:
        return arrays.read_array(path, key)
    except PermissionError:
        raise InputError(f"{source}: permission denied") from None


def _emit(array: Any, output: str | None, full: bool, fmt: str, loaded: Any, in_place: bool,
          indices: Any = None) -> None:
    """Write the result to -o, or show it on the terminal (tables or JSON)."""
    from poolcli.io import arrays

    if output is not None:
        if output != "-":
            if _refuse_overwrite(output, loaded.name, in_place):
                array = array.copy()  # the input may be memory-mapped from the file being replaced
        arrays.write_array(output, array, indices)
        return
    if fmt == "json":
        from poolcli.render.table import to_json

        sys.stdout.write(to_json(array) + "\n")
        return
    from rich.console import Console

    from poolcli.render.table import render_array

    # --full promises every value: let tables be as wide as they need rather than squeezed
    Console(width=1 << 16 if full else None).print(render_array(array, full))


def _check_format(fmt: str) -> tuple[str, str | None]:
    """--format: a terminal format (table, json) or an image format for written images."""
    word = fmt.lower()
    if word in TERMINAL_FORMATS:
        return word, None
    if word in IMAGE_FORMATS:
        return "table", word
    raise UsageError(f"--format {fmt}: give table or json (terminal), or an image format: {', '.join(IMAGE_FORMATS)}")


@app.command(epilog="Examples:  poolcli forward x.npy -k 3 -s 2 -p 1 -o y.npy  ·  "
             'poolcli forward --matrix "1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16" --op avg  ·  '
             "poolcli forward photos/ --op avg -k 4 --out-dir small/  ·  "
             "poolcli forward x.npy --op max --indices idx.npy -o y.npy")
@pooling_options
def forward(
    inputs: Annotated[list[str] | None, typer.Argument(metavar="INPUT...", show_default=False,
                                                       help="Array files, images, folders or globs; - for stdin.")]
    = None,
    output: OutputOpt = None,
    indices: Annotated[str | None, typer.Option("--indices", rich_help_panel=OUTPUT, metavar="IDX.npy",
                                                help="max/min: save the arg-max of each output cell (flat per "
                                                     "plane, as PyTorch's return_indices).")] = None,
    full: FullOpt = False,
    fmt: FormatOpt = "table",
    in_place: InPlaceOpt = False,
    out_dir: Annotated[str | None, typer.Option("--out-dir", rich_help_panel=BATCH, metavar="DIR",
                                                help="Pool every input into this folder, mirroring the input tree.")]
    = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", rich_help_panel=BATCH,
                                            help="Go into sub-folders of folder inputs.")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", rich_help_panel=BATCH, metavar="N",
                                             help="Worker processes. Default: all cores.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=BATCH,
                                            help="Replace outputs that exist (default: skip them).")] = False,
    linear: Annotated[bool, typer.Option("--linear", rich_help_panel=BATCH,
                                         help="Average in linear light (sRGB decoded, pooled, re-encoded).")] = False,
    quality: Annotated[int | None, typer.Option("--quality", rich_help_panel=BATCH, min=1, max=100, metavar="Q",
                                                help="JPEG/WebP quality. Default: the input JPEG's own.")] = None,
    max_pixels: Annotated[int, typer.Option("--max-pixels", rich_help_panel=BATCH, metavar="N",
                                            help="Refuse images with more pixels (decompression bombs).")]
    = DEFAULT_MAX_PIXELS,
    pool: Any = None,
) -> None:
    """Pool the input: one window per output cell. Images keep their mode, bit depth and format."""
    from poolcli.engine import run_forward, run_indices
    from poolcli.io import arrays

    pooling = Pooling(pool)
    terminal, image_format = _check_format(fmt)
    sources = inputs or []
    if out_dir is not None or len(sources) > 1 or any(Path(s).is_dir() for s in sources):
        return _batch(sources, out_dir, output, indices, recursive, jobs, overwrite,
                      _task(pooling, linear, quality, image_format, max_pixels))
    loaded = _read(sources[0] if sources else None, pooling.key, pooling.matrix, max_pixels)
    if loaded.meta.get("kind") == "image":
        if indices is not None:
            raise UsageError("--indices works on arrays; convert the image with -o x.npy first")
        from poolcli.io import images

        y = images.pool_image(loaded, pooling, linear)
        if output is not None and (Path(output).suffix.lower() in IMAGE_SUFFIX_SET or image_format):
            _refuse_overwrite(output, loaded.name, in_place)
            images.write_image(output, y, loaded.meta, image_format, quality)
            return None
        return _emit(y, output, full, terminal, loaded, in_place)
    g = pooling.spec.bind(loaded.array.shape)
    idx = None
    if indices is not None:
        if indices == "-" or Path(indices).suffix.lower() != ".npy":
            raise UsageError(f"--indices {indices}: give a .npy file name")
        y, idx = run_indices(loaded.array, g, pooling.op)
    else:
        y = run_forward(loaded.array, g, pooling.op, pooling.params)
    _emit(y, output, full, terminal, loaded, in_place, idx if output and output.endswith(".npz") else None)
    if idx is not None:
        arrays.write_array(indices, idx)
    return None


def _task(pooling: Pooling, linear: bool, quality: int | None, image_format: str | None, max_pixels: int) -> Any:
    from poolcli.batch import Task

    return Task(pooling, linear, quality, image_format, max_pixels)


def _batch(sources: list[str], out_dir: str | None, output: str | None, indices: str | None, recursive: bool,
           jobs: int | None, overwrite: bool, task: Any) -> int:
    """forward over many files into --out-dir; exit 1 if any failed."""
    from rich.console import Console

    from poolcli import batch

    if out_dir is None:
        raise UsageError(f"{len(sources)} inputs given; name a folder for the results with --out-dir")
    if output is not None or indices is not None:
        raise UsageError("--out-dir writes one file per input; drop -o/--indices")
    if "-" in sources or task.pooling.matrix is not None:
        raise UsageError("a batch reads files; standard input and --matrix take one array, without --out-dir")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more worker processes")
    if not sources:
        raise UsageError("no input; give image or array files, folders or globs")
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out-dir {out_dir} is a file, not a folder")
    pairs = batch.collect(sources, folder, recursive, task.image_format)
    if not pairs:
        raise UsageError(f"no images or arrays found in {', '.join(sources)}"
                         + ("" if recursive else "; add --recursive to look in sub-folders"))
    for src, dst in pairs:
        if src.exists() and dst.exists() and os.path.samefile(src, dst):
            raise UsageError(f"--out-dir {out_dir} would overwrite the input {src}; choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    summary = batch.run_batch(pairs, task, jobs or batch.default_jobs(), overwrite, console)
    for src, reason in summary.failed:
        print(f"poolcli: failed: {src}: {reason}", file=sys.stderr)
    skipped = f", skipped {len(summary.skipped)} (exist; --overwrite replaces them)" if summary.skipped else ""
    print(f"poolcli: done {len(summary.done)}{skipped}, failed {len(summary.failed)} → {folder}", file=sys.stderr)
    return 1 if summary.failed else 0


def _refuse_overwrite(output: str, source: str, in_place: bool) -> bool:
    """Refuse -o naming the input file unless --in-place; return whether it names it."""
    from poolcli.io import arrays

    same = source not in ("-", "--matrix") and arrays.same_file(output, source)
    if same and not in_place:
        raise UsageError(f"-o {output} is the input file; pass --in-place to overwrite it")
    return same


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
    loaded = _read(input, pooling.key, pooling.matrix)
    g = pooling.spec.bind(loaded.array.shape)
    upstream = None
    if grad is not None:
        if grad == "-" and input == "-":
            raise UsageError("the input and --grad cannot both come from standard input")
        grad_loaded = _read(grad, pooling.key)
        upstream = grad_loaded.array
        if upstream.shape != g.out_shape:
            raise UsageError(
                f"--grad {grad} has shape {upstream.shape} but this pooling outputs {g.out_shape}; "
                "use the gradient of this output, or the forward run's -k/-s/-p"
            )
    dx = run_backward(loaded.array, g, upstream, pooling.op, pooling.params)
    _emit(dx, output, full, _check_format(fmt)[0], loaded, in_place)


@app.command(epilog="Examples:  poolcli shape 1,3,224,224 -k 3 -s 2 -p 1  ·  poolcli shape x.npy --global --json")
@pooling_options
def shape(
    source: Annotated[str, typer.Argument(metavar="SHAPE|FILE", help="A shape like 1,3,224,224, or a .npy file "
                                                                     "(only its header is read).")],
    as_json: Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT, help="Machine-readable answer.")] = False,
    pool: Any = None,
) -> None:
    """Output shape of a pooling, with each axis's formula and its numbers filled in."""
    from poolcli.engine import describe
    from poolcli.options import parse_shape

    pooling = Pooling(pool)
    path = Path(source)
    if path.is_file():
        from poolcli.io import arrays

        if path.suffix.lower() in IMAGE_SUFFIX_SET:
            from poolcli.io import images

            in_shape = images.image_shape(path)
            pooling.spec = replace(pooling.spec, dims=2, channels_last=len(in_shape) == 3)
        elif path.suffix.lower() == ".npy":
            in_shape = arrays.npy_header_shape(path)
        else:
            raise UsageError(f"{source}: shape reads .npy and image headers; give one, or a shape like 1,3,224,224")
    else:
        in_shape = parse_shape(source)
    g = pooling.spec.bind(in_shape)
    axes = describe(g)
    if as_json:
        print(json.dumps({"input": list(in_shape), "output": list(g.out_shape), "op": pooling.op, "axes": axes}))
        return
    # plain text: shape is the command scripts call most, and rich would double its start-up
    lines = [f"{tuple(in_shape)} → {tuple(g.out_shape)}", "axis  size  output size"]
    lines += [f"{row['axis']:<4} {row['size']:>5}  {row['formula']}" for row in axes]
    print("\n".join(lines))


def _version(value: bool) -> None:
    if value:
        from poolcli import __version__

        print(f"poolcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the Python traceback of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Pooling operators of convolutional networks, forward and backward, on NumPy arrays and images."""


def fail(message: str, code: int) -> int:
    """Print one plain line on standard error and return the exit status."""
    message = " ".join(str(message).split())
    print(f"poolcli: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status. The one place errors become messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if not argv:
        argv = ["--help"]
    try:
        result = app(args=argv, prog_name="poolcli", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return fail("interrupted", 130)
    except typer.TyperException as e:  # unknown option, bad number, missing argument
        ctx = getattr(e, "ctx", None)
        where = f"poolcli {ctx.info_name}" if ctx is not None and ctx.parent is not None else "poolcli"
        return fail(f"{e.format_message()} (see {where} --help)", e.exit_code)
    except PoolcliError as e:
        if debug:
            raise
        return fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head); nothing more to say
        return 141
    except MemoryError:
        if debug:
            raise
        return fail("out of memory; pool a smaller input, or fewer planes at a time", 1)
    except Exception as e:  # a bug: say so in one line, the traceback is behind --debug
        if debug:
            raise
        return fail(f"internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback", 1)
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
