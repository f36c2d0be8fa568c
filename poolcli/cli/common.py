"""What every command shares: the typer app, the pooling options, reading the input and emitting the result.

>>> Pooling({**{name: default for name, (_, (default, _)) in POOL_OPTIONS.items()}, "kernel": "3"}).spec.kernel
(3,)
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from poolcli.engine import ALIASES, DEFAULT, OPERATORS, OPS, OPTIONS, TIES, Op, Option, Params, declared_by, declaring
from poolcli.errors import InputError, UsageError
from poolcli.io.arrays import DEFAULT_MAX_BYTES
from poolcli.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES

WINDOW, OPERATOR, INPUT, OUTPUT, BATCH = "Window", "Operator", "Input", "Output", "Images and batches"
MORE = ", ".join(op.name for op in OPERATORS if not op.windowed)  # the panel of the operators without windows
CHECK = "Gradient check"
IMAGE_SUFFIX_SET = set(IMAGE_SUFFIXES)

IMAGE_DEFAULT = next(op.name for op in OPERATORS if op.box_mean)  # images: a box filter, not max
Ties = Enum("Ties", {name: name for name in TIES}, type=str)  # type: ignore[misc]


TERMINAL_FORMATS = ("table", "json", "txt", "csv")
IMAGE_FORMATS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "gif")


app = typer.Typer(
    name="poolcli",
    help="Pooling operators of convolutional networks, forward and backward, on NumPy arrays and images.",
    epilog=(
        "Examples:\n"
        "poolcli forward x.npy -k 3 -s 2 -p 1 -o y.npy\n"
        "poolcli shape 1,3,224,224 -k 3 -s 2 -p 1\n"
        "poolcli visualize x.npy -k 3 -s 2 --backward"
    ),
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _aliases() -> str:
    return ", ".join(f"{alias} = {name}" for alias, name in ALIASES.items())


def _complete_op(incomplete: str) -> list[str]:
    """Shell completion of --op: the operators and aliases that start with what was typed."""
    return [name for name in [*OPS, *ALIASES] if name.startswith(incomplete.lower())]


def _option(default: Any, *names: str, panel: str, **kw: Any) -> tuple[Any, Any]:
    return default, typer.Option(*names, rich_help_panel=panel, **kw)


# The options every pooling command shares: (default, typer.Option) by parameter name, in the order --help
# shows them: the window, then the operator and its options, then the input.
POOL_OPTIONS: dict[str, tuple[type, tuple[Any, Any]]] = {
    "kernel": (str | None, _option(None, "-k", "--kernel", panel=WINDOW, metavar="K[,K…]",
                                      help="Window size per axis (default 2).")),
    "stride": (str | None, _option(None, "-s", "--stride", panel=WINDOW, metavar="S[,S…]",
                                      help="Step between windows (default: -k).")),
    "padding": (str, _option("0", "-p", "--padding", panel=WINDOW, metavar="P[,P…]|MODE", show_default=False,
                             help="Padding per axis or side; valid, same.")),
    "dilation": (str, _option("1", "-d", "--dilation", panel=WINDOW, metavar="D[,D…]", show_default=False,
                              help="Spacing between window taps.")),
    "ceil": (bool, _option(False, "--ceil", panel=WINDOW, help="Round the output size up.")),
    "global_pool": (bool, _option(False, "--global", panel=WINDOW, help="One window over each whole plane.")),
    "output_size": (str | None, _option(None, "--output-size", panel=WINDOW, metavar="N[,N…]",
                                           help="Adaptive pooling to this size.")),
    "dims": (int | None, _option(None, "--dims", panel=WINDOW, metavar="N",
                                    help="Trailing spatial axes (default 2).")),
    "channels_last": (bool, _option(False, "--channels-last", panel=WINDOW, help="The input is (…, H, W, C).")),
    "op": (str | None, _option(None, "--op", panel=OPERATOR, metavar="NAME", show_default=False,
                               autocompletion=_complete_op,
                               help=f"{' '.join(OPS)} (default {DEFAULT}, images {IMAGE_DEFAULT}; "
                                    "--op X --help: its options)")),
}
INPUT_OPTIONS: dict[str, tuple[type, tuple[Any, Any]]] = {
    "key": (str | None, _option(None, "--key", panel=INPUT, help="The array to read from an .npz.")),
    "matrix": (str | None, _option(None, "--matrix", panel=INPUT, metavar='"1 2; 3 4"',
                                      help="An inline matrix, rows split by ;.")),
    "max_bytes": (int, _option(DEFAULT_MAX_BYTES, "--max-bytes", panel=INPUT, metavar="N", min=1,
                               show_default=False, help="Largest .npz member or text read (1 GiB).")),
}
WINDOW_NAMES = ("kernel", "stride", "padding", "dilation", "ceil", "global_pool", "output_size", "dims",
                "channels_last")


def cli_name(option: Option) -> str:
    """The command function's parameter for an operator option: its flag as a Python name (--with -> with_)."""
    import keyword

    name = option.cli_flag.lstrip("-").replace("-", "_")
    return name + "_" if keyword.iskeyword(name) else name


def _option_help(name: str, takers: list[Op]) -> str:
    """An operator option's help: what it does for each of ``takers``, naming them."""
    by_help: dict[str, list[str]] = {}
    for op in takers:
        option = next(o for o in op.options if o.name == name)
        default = "" if option.default in (None, False) or option.kind is bool else f" ({option.default:g})" \
            if isinstance(option.default, float) else f" ({option.default})"
        by_help.setdefault(option.help + default, []).append(op.name)
    return "; ".join(f"{', '.join(ops)}: {h}" for h, ops in by_help.items()) + "."


def _operator_option(name: str, declared: tuple[Option, ...]) -> tuple[type, tuple[Any, Any]]:
    """One command-line option from the operators' declarations of it: its help names who takes it."""
    first = declared[0]
    text = _option_help(name, declaring(name))
    panel = OPERATOR if any(op.windowed for op in declaring(name)) else MORE
    if first.kind is bool:
        return bool, _option(first.default, first.flags, panel=panel, help=text, show_default=False)
    kind: Any = {int: int, float: float, "floats": str, "array": str}.get(first.kind)
    if len({d.kind for d in declared}) > 1:  # a number for one operator, a file for another (--bias): read as text
        kind = str
    if first.kind == "choice":
        kind = Enum(name.title(), {c: c for c in first.choices}, type=str)  # type: ignore[misc]
    metavar = first.metavar or ("S[,S…]" if first.kind == "floats" else None)
    return kind | None, _option(None, first.flags, panel=panel, metavar=metavar, show_default=False, help=text)


OPERATOR_OPTIONS = {cli_name(declared[0]): (name, declared) for name, declared in OPTIONS.items()
                    if name != "ties"}  # --ties is the backward and visualize commands' own option
POOL_OPTIONS.update({param: _operator_option(name, declared) for param, (name, declared) in OPERATOR_OPTIONS.items()})
POOL_OPTIONS.update(INPUT_OPTIONS)


def focus_help(argv: list[str]) -> None:
    """For --help: show the options of the operator named by --op; without --op, none (twenty operators' options
    do not fit a screen: ``--op NAME --help`` shows NAME's). Changes what the next help prints only."""
    asking = "--help" in argv or "-h" in argv
    named = argv[argv.index("--op") + 1] if "--op" in argv[:-1] else None
    try:
        op = OPS.get(operator_name(named)) if named else None
    except UsageError:
        op = None
    for param, (name, _) in OPERATOR_OPTIONS.items():
        takers = declaring(name)
        shown = [op] if op in takers else []
        info = POOL_OPTIONS[param][1][1]
        info.hidden = asking and not shown
        info.help = _option_help(name, shown if asking and shown else takers)  # what it does for them


class Pooling:
    """What the shared options say: the operator, its WindowSpec and Params, and where the inputs come from."""

    def __init__(self, values: dict[str, Any], ties: str = "first", threads: int | None = None) -> None:
        from poolcli.cli.options import window_spec

        self.explicit = values.get("op") is not None  # --op given; else max, or avg once the input is an image
        self.op = operator_name(values["op"]) if self.explicit else DEFAULT
        self.values, self.ties, self.threads = values, ties, threads
        self.files = {name: values[param] for param, (name, declared) in OPERATOR_OPTIONS.items()
                      if self._own(name, declared).kind == "array" and values.get(param) is not None}  # extra arrays
        self.spec = window_spec(*(values[n] for n in WINDOW_NAMES))
        self.key, self.matrix, self.max_bytes = values["key"], values["matrix"], values["max_bytes"]
        self._checked: tuple[str, Params] | None = None
        self._arrays: dict[str, Any] | None = None
        if self.explicit:
            self._params()  # a wrong option is said before any work (without --op, once the input is known)

    def _own(self, name: str, declared: tuple[Option, ...]) -> Option:
        """Option ``name`` as the chosen operator declares it (a name may be a number for one and a file for
        another, as --bias), else its first declaration."""
        return declared_by(self.op, name) or declared[0]

    @property
    def params(self) -> Params:
        """The operator options given, checked against the operator (see ``_params``)."""
        if self._checked is None or self._checked[0] != self.op:
            self._checked = (self.op, self._params())
        return self._checked[1]

    def _params(self) -> Params:
        """The operator options given, each checked to go with the operator."""
        from poolcli.cli.options import parse_floats

        given: dict[str, Any] = {}
        for param, (name, declared) in OPERATOR_OPTIONS.items():
            value, option = self.values.get(param), declared[0]
            value = getattr(value, "value", value)
            if value is None or (option.kind is bool and value == option.default):
                continue
            if self.op != "all" and OPS[self.op] not in declaring(name):
                names = [o.name for o in declaring(name)]
                takers = " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]
                typed = option.flags.split("/")[-1] if option.kind is bool and not value else option.cli_flag
                chosen = f"--op {self.op}" if self.explicit else f"--op {self.op} (the default)"
                raise UsageError(f"{typed} goes with --op {takers}, not {chosen}{option.hint}")
            option = self._own(name, declared)
            if option.kind is float and isinstance(value, str):  # read as text for another operator's file
                try:
                    value = float(value)
                except ValueError:
                    raise UsageError(f"{option.cli_flag} {value}: give a number") from None
            if option.kind != "array":
                given[name] = parse_floats(value, option.cli_flag) if option.kind == "floats" else value
        return Params(**given, ties=self.ties)

    def for_image(self) -> None:
        """The input is an image: without --op, pool it with the box filter (avg), not max; layout options,
        which an image's own layout makes meaningless, are refused rather than ignored."""
        if self.values.get("dims") is not None:
            raise UsageError(f"--dims {self.values['dims']} does not apply to an image: it is pooled over its "
                             "height and width, each channel on its own; convert it with -o x.npy to pool other axes")
        if self.values.get("channels_last"):
            raise UsageError("--channels-last does not apply to an image: its channels are always last and "
                             "kept apart; drop it")
        if not self.explicit:
            self.op = IMAGE_DEFAULT

    def read(self, source: str | None, *, main: bool = False, key: str | None = "",
             max_pixels: int = DEFAULT_MAX_PIXELS, frames: bool = False) -> Any:
        """Read one input the way these options say (--key, --max-bytes; --matrix for the ``main`` input).
        ``key`` overrides --key ("" keeps it). An animation or multi-page TIFF is refused unless ``frames``
        (forward pools every frame): taking its first frame alone would drop the others silently."""
        loaded = read_input(source, self.key if key == "" else key, self.matrix if main else None, max_pixels,
                            self.max_bytes)
        if main and loaded.meta.get("kind") == "image":
            self.for_image()
        elif main:
            self._warn_if_image_layout(loaded)
        count = loaded.meta.get("frames", 1)
        if count > 1 and not frames:
            raise UsageError(f"{loaded.name} has {count} frames and this command takes one image; "
                             "pool every frame with poolcli forward, or save the frame you want as its own file")
        return loaded

    def _warn_if_image_layout(self, loaded: Any) -> None:
        """A 3-D array whose last axis is 3 or 4 (and the other two larger) is most often an image as NumPy and
        PIL hold it, (H, W, C); it is read as (C, H, W) all the same (the result never changes silently), and
        this says so once."""
        shape = tuple(loaded.array.shape)
        if (len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4 and not self.values.get("channels_last")
                and self.values.get("dims") is None and self.op != "all" and OPS[self.op].spatial_layout):
            print(f"poolcli: warning: {loaded.name} {shape} is read as (C, H, W), pooling its last two axes; "
                  "if it is an image array (H, W, C), add --channels-last", file=sys.stderr)

    def arrays(self) -> dict[str, Any]:
        """The extra input arrays: unpool's indices (--from-indices), bilinear's second features (--with);
        read once, however many plans and recipes ask for them."""
        if self._arrays is None:
            self._arrays = {}
            for name, path in self.files.items():
                member = self._own(name, OPTIONS[name]).npz_key  # forward --indices's .npz holds them by name
                self._arrays[name] = self.read(path, key=member if member and _is_npz(path) else "").array
        return self._arrays

    def recipe(self) -> Any:
        """What to pool with, as plain data (the extra arrays read): for images and batches."""
        from poolcli.engine import Recipe

        if self.op == "all":
            raise UsageError("--op all goes with backward --check; pick one operator here")
        return Recipe(self.op, self.spec, self.params, self.arrays(), self.threads)

    def bind(self, shape: tuple[int, ...], arrays: dict[str, Any] | None = None) -> Any:
        """The operator's plan for an input of this shape (a Geometry for windowed operators)."""
        from poolcli.engine import bind

        if self.op == "all":
            raise UsageError("--op all goes with backward --check; pick one operator here")
        return bind(self.op, shape, self.spec, self.params, **(self.arrays() if arrays is None else arrays))


def operator_name(text: str) -> str:
    """An operator's name as typed, in any case (``AVG`` is avg, ``mean`` is avg); a name that is not
    one is refused with the closest ones.

    >>> operator_name("Mean")
    'avg'
    """
    import difflib

    word = str(text).strip().lower()
    if word == "all":
        return word
    if word in OPS or word in ALIASES:
        return ALIASES.get(word, word)
    names = [*OPS, *ALIASES]
    close = difflib.get_close_matches(word, names, n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UsageError(f"--op {text}: not an operator{hint} (one of {', '.join(OPS)})")


def _is_npz(path: str) -> bool:
    return path.lower().endswith(".npz")


def pooling_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the shared window, operator and input options, collected into its ``pool`` argument."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "pool"]
    # a command's own option of an operator option's name (visualize --region, lrn --region) takes both: the
    # operator's choices go to the operator, anything else to the command
    clash = {p.name for p in own} & set(POOL_OPTIONS)
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])
        for name, (kind, (default, option)) in POOL_OPTIONS.items() if name not in clash
    ]

    @functools.wraps(fn)
    def command(**kw: Any) -> Any:
        values = {name: kw.pop(name) for name in POOL_OPTIONS if name not in clash}
        for name in clash:
            choices = OPERATOR_OPTIONS[name][1][0].choices if name in OPERATOR_OPTIONS else ()
            values[name] = kw[name] if kw[name] in choices else None
            if values[name] is not None:
                kw[name] = None
        kw["pool"] = values
        return fn(**kw)

    def is_argument(p: inspect.Parameter) -> bool:
        return any(isinstance(m, typer.models.ArgumentInfo) for m in getattr(p.annotation, "__metadata__", ()))

    arguments = [p for p in own if is_argument(p)]
    options = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if not is_argument(p)]
    command.__signature__ = sig.replace(parameters=[*arguments, *shared, *options])  # type: ignore[attr-defined]
    return command


OutputOpt = Annotated[str | None, typer.Option("-o", "--output", rich_help_panel=OUTPUT, metavar="OUT",
                                                  help="Write .npy .json .csv…, an image, or -.")]
FullOpt = Annotated[bool, typer.Option("--full", rich_help_panel=OUTPUT, help="Print every value.")]
FormatOpt = Annotated[str | None, typer.Option("--format", rich_help_panel=OUTPUT, metavar="FORMAT",
                                                 show_default=False,
                                                 help="table, txt, csv, json; png, jpg… for -o.")]
InPlaceOpt = Annotated[bool, typer.Option("--in-place", rich_help_panel=OUTPUT,
                                          help="Let -o replace the input.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", rich_help_panel=INPUT, metavar="N", min=1,
                                                show_default=False, help="Threads pooling an array (all cores).")]
SchedulerOpt = Annotated[str | None, typer.Option("--scheduler", rich_help_panel=INPUT, metavar="ADDRESS",
                                                  show_default=False,
                                                  help="Pool on this Dask cluster (tcp://…).")]
BlockOpt = Annotated[int | None, typer.Option("--block-mb", rich_help_panel=INPUT, metavar="MB", min=1,
                                              show_default=False, help="Memory a block of planes takes (2).")]


def block_bytes(block_mb: int | None) -> int | None:
    """--block-mb in bytes (None: the engine's default)."""
    return None if block_mb is None else block_mb << 20


HOLD = 3  # an operator holds about this many copies of its smallest block (its input, intermediates, result)


def available_memory() -> int | None:
    """The memory the system can give without swapping (``MemAvailable`` on Linux), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) << 10
    except OSError:
        pass
    return None


def check_blocks(op: str, plan: Any, dtype: Any, block_mb: int | None) -> None:
    """Before pooling block by block into a file: say so when the operator must see more at once than the block
    budget (bilinear's whole sample), and refuse, with the memory it would need, when that does not fit."""
    from poolcli.engine import smallest_block
    from poolcli.engine.blocks import BLOCK_BYTES

    one, what = smallest_block(op, plan, dtype)
    budget = block_bytes(block_mb) or BLOCK_BYTES
    if one <= 16 * budget:
        return
    need, free = HOLD * one, available_memory()
    gib = 1 << 30
    if free is not None and need > free:
        raise UsageError(f"--op {op} must hold {what} at once: about {need / gib:.1f} GiB ({HOLD} × "
                         f"{one / gib:.1f} GiB) and {free / gib:.1f} GiB are free; pool fewer or smaller planes, "
                         "or on a machine with more memory")
    print(f"poolcli: note: --op {op} holds {what} at a time ({one / gib:.2f} GiB), beyond --block-mb "
          f"{budget >> 20}; memory grows with it", file=sys.stderr)


def npy_file(output: str | None) -> bool:
    """Whether -o names a .npy file, which is then written block by block through a memory map."""
    return output not in (None, "-") and Path(output).suffix.lower() == ".npy"


def read_input(source: str | None, key: str | None = None, matrix: str | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Load the one input array (a file, - for standard input, or --matrix)."""
    from poolcli.io import arrays

    if matrix is not None:
        if source is not None:
            raise UsageError("give an input file or --matrix, not both")
        return arrays.Loaded(arrays.parse_matrix(matrix), "--matrix", {"kind": "text"})
    if source is None:
        raise UsageError("no input; give a file (x.npy, x.txt, an image), - for standard input, or --matrix")
    if source == "-":
        return arrays.read_stdin(key, max_bytes)
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
        return arrays.read_array(path, key, max_bytes)
    except PermissionError:
        raise InputError(f"cannot read {source}: permission denied") from None


def emit(array: Any, output: str | None, full: bool, fmt: str, extra: dict[str, Any] | None = None) -> None:
    """Write the result to -o (already checked by ``guard``), or show it on the terminal (tables or JSON)."""
    from poolcli.io import arrays

    if output is not None:
        arrays.write_array(output, array, extra)
        return
    if fmt == "json":
        sys.stdout.write(arrays.to_json(array) + "\n")
        return
    if fmt in ("txt", "csv") or (fmt == "auto" and not arrays.stdout_isatty()):  # a pipe gets plain text
        sep = "," if fmt == "csv" else " "
        if np.asarray(array).ndim <= 2 or fmt != "auto":
            sys.stdout.write(arrays.text_lines(array, sep, f"--format {fmt}"))
            return
    from rich.console import Console

    from poolcli.render.table import render_array

    # --full promises every value: let tables be as wide as they need rather than squeezed
    plain = fmt == "auto" and not arrays.stdout_isatty()  # a pipe: no box drawing unless --format table
    Console(width=1 << 16 if full or plain else None).print(render_array(array, full, plain=plain))


def check_format(fmt: str | None) -> tuple[str, str | None]:
    """--format: a standard-output format (table, txt, csv, json; "auto" when not given) or an image format."""
    if fmt is None:
        return "auto", None
    word = fmt.lower()
    if word in TERMINAL_FORMATS:
        return word, None
    if word in IMAGE_FORMATS:
        return "table", word
    raise UsageError(f"--format {fmt}: give table, txt, csv or json (standard output), or an image format: "
                     f"{', '.join(IMAGE_FORMATS)}")


def guard(pooling: Pooling, source: str | None, outputs: dict[str, str | None], in_place: bool,
          **inputs: str | None) -> dict[str, str]:
    """Check every output path against every input path of the command (and each other) before any work;
    return where each output is written (``-o`` with --in-place through a symbolic link: its target)."""
    from poolcli.io.paths import MAIN_INPUT, guard_outputs

    named = {MAIN_INPUT: source, **{OPTIONS[name][0].cli_flag: path for name, path in pooling.files.items()}}
    named.update({f"--{name}": path for name, path in inputs.items()})
    return guard_outputs(named, outputs, in_place)
