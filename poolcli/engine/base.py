"""What every operator shares: its options (Params), its interface (Op) and dtype rules.

>>> Params(ties="split").ties
'split'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from poolcli.errors import UsageError

TIES = ("first", "all", "split")


@dataclass(frozen=True)
class Option:
    """One operator option, declared once by the operators that take it; the library keyword, ``Params``,
    the command-line option, its default, its help and the "goes with --op X" message all come from it.

    ``kind`` is bool, int, float, "floats" (one number or one per axis), "choice" (one of ``choices``) or
    "array" (another input array, read from a file on the command line); ``check`` says whether a value is
    allowed and ``need`` what is wrong otherwise.

    >>> SIZE = Option("size", int, 5, "channels in the window", check=lambda v: v >= 1, need="give 1 or more")
    >>> SIZE.validate(0)
    Traceback (most recent call last):
    poolcli.errors.UsageError: --size 0: give 1 or more
    """

    name: str
    kind: Any
    default: Any
    help: str
    flag: str = ""  # default: --name
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], bool] | None = None
    need: str = ""
    hint: str = ""  # said when the option is given to another operator
    npz_key: str = ""  # an "array" option: the member to read from an .npz (default: --key)
    like_input: bool = False  # an "array" option laid out like the input: its channels move with the input's

    @property
    def flags(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def cli_flag(self) -> str:
        """The flag as users type it (the first of a --x/--no-x pair)."""
        return self.flags.split("/")[0]

    def validate(self, value: Any) -> None:
        if self.choices and value not in self.choices:
            raise UsageError(f"{self.cli_flag} {value}: give one of {', '.join(self.choices)}")
        if self.check is not None and not self.check(value):
            shown = ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else value
            raise UsageError(f"{self.cli_flag} {shown}: {self.need}")


def _finite(v: Any) -> bool:
    return bool(np.isfinite(v))


TIES_OPTION = Option("ties", str, "first", "equal values in a window: first, all or split",
                     choices=TIES)


class Params:
    """The operator options of one run, by name: those given, else the declared default.

    An option several operators declare with different defaults (``alpha``) is read through
    ``Op.value``, which knows its operator's default.

    >>> Params(ties="split").ties
    'split'
    >>> Params(p=3).replace(p=4).p
    4
    """

    __slots__ = ("given",)
    declared: ClassVar[dict[str, Option]] = {}  # every option name, as the registry declares it (``Params.declare``)

    @classmethod
    def declare(cls, options: dict[str, tuple[Option, ...]]) -> None:
        """Learn the option names, kinds and defaults: called once by the registry."""
        cls.declared = {name: found[0] for name, found in options.items()}

    def __init__(self, **given: Any) -> None:
        given = {k: v for k, v in given.items() if v is not None}
        for name, value in given.items():
            option = self.declared.get(name)
            if option is None:
                raise TypeError(f"unknown operator option {name!r}")
            if option.kind == "floats" and not isinstance(value, tuple):
                given[name] = (float(value),) if np.isscalar(value) else tuple(float(v) for v in value)
        object.__setattr__(self, "given", given)  # values are checked by the operator that takes them (Op.check)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        given = object.__getattribute__(self, "given")
        if name in given:
            return given[name]
        if name not in self.declared:
            raise AttributeError(f"Params has no option {name!r}")
        return self.declared[name].default

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Params is read-only; use replace()")

    def __reduce__(self) -> tuple:
        return (Params, (), dict(self.given))

    def __setstate__(self, given: dict[str, Any]) -> None:
        object.__setattr__(self, "given", given)

    def replace(self, **changes: Any) -> Params:
        """A copy with some options changed."""
        return Params(**{**self.given, **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and self.given == other.given

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.given.items())))

    def __repr__(self) -> str:
        return f"Params({', '.join(f'{k}={v!r}' for k, v in self.given.items())})"


def float_type(dtype: np.dtype) -> np.dtype:
    """The dtype an averaging operator returns: floats keep theirs, integers and bools give float64."""
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _accumulator(dtype: np.dtype) -> np.dtype:
    """The dtype sums run in: float16 sums in float32 (as PyTorch), integers in float64."""
    return np.dtype(np.float32) if dtype == np.float16 else float_type(dtype)


def lowest(dtype: np.dtype) -> object:
    """The dtype's lowest value, the padding of a max."""
    if dtype == np.bool_:
        return False
    if np.issubdtype(dtype, np.floating):
        return -np.inf
    return np.iinfo(dtype).min


def highest(dtype: np.dtype) -> object:
    """The dtype's highest value, the padding of a min."""
    if dtype == np.bool_:
        return True
    if np.issubdtype(dtype, np.floating):
        return np.inf
    return np.iinfo(dtype).max


class Op:
    """One operator and every fact about it; nothing outside the engine asks for an operator by name.

    - ``name``, ``aliases``, ``summary``: what it is called and what it does, in a line;
    - ``options``: the options it takes (see ``Option``); ``Params`` and the command line come from them;
    - ``windowed``: it binds a WindowSpec to a Geometry (else to a Plan of its own);
    - ``selects``: every output is one of its window's input values (max, min, kmax, median, mode), so an
      image is pooled on its raw values, never on premultiplied colour or in linear light;
    - ``ties``: its backward depends on equal values (``--ties``), and finite differences disagree there;
    - ``differentiable``: it has a backward;
    - ``box_mean``: it is a plain box average (Pillow's ``Image.reduce`` computes it for images);
    - ``marks``: what visualize marks on the input (the cells the output took), or "";
    - ``keeps_int``: integer inputs keep their dtype (else float64);
    - ``random``: it draws random numbers keyed on each window's place in the whole input (``Geometry.planes``);
    - ``strided``: its forward reads any memory order in place at full speed (separable passes), so the block
      executor hands it views of Fortran-ordered and channels-last inputs rather than C-ordered copies.

    Arrays reach ``forward``/``backward`` in the engine's layout: channels before the spatial axes.
    """

    name = ""
    aliases: tuple[str, ...] = ()
    summary = ""
    options: tuple[Option, ...] = ()
    windowed = True
    spatial_layout = True  # its input has channels and spatial axes (--channels-last applies)
    selects = False
    ties = False
    differentiable = True
    box_mean = False
    marks = ""
    keeps_int = False
    strided = False
    random = False  # it draws random numbers keyed on each window's place in the whole input (Geometry.planes)
    block_share = 1.0  # its blocks are this share of the executor's budget (upsampling: its passes grow the data)

    @property
    def arrays(self) -> tuple[str, ...]:
        """The extra input arrays the plan needs (unpool: indices; bilinear: other)."""
        return tuple(o.name for o in self.options if o.kind == "array")

    def value(self, params: Params, name: str) -> Any:
        """Option ``name`` as given, else this operator's own default."""
        if name in params.given:
            return params.given[name]
        return next(o.default for o in self.options if o.name == name)

    def check(self, params: Params) -> None:
        """Refuse a value this operator does not allow (each option's own rule)."""
        for option in (*self.options, TIES_OPTION):
            if option.name in params.given:
                option.validate(params.given[option.name])

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        return dtype if self.keeps_int or np.issubdtype(dtype, np.floating) else np.dtype(np.float64)

    def spatial(self, shape: tuple[int, ...], spec: Any, params: Params) -> int:
        """How many spatial axes an input of this shape has (the caller's layout)."""
        return spec.spatial(shape)[0]

    def bind(self, shape: tuple[int, ...], spec: Any, params: Params, **arrays: Any) -> Any:
        """The plan for an input of this shape, in the engine's layout: a Geometry for windowed operators."""
        return spec.bind(shape)

    def forward(self, x: np.ndarray, g: Any, params: Params) -> np.ndarray:
        raise NotImplementedError

    def backward(self, x: np.ndarray, g: Any, grad: np.ndarray, params: Params) -> np.ndarray:
        raise NotImplementedError

    def backward_reads_input(self, g: Any, params: Params) -> bool:
        """Whether ``backward`` reads the input's values, not only its shape and dtype. When it does not (a map
        linear in the input), the executor hands it an unread stand-in and copies nothing of the input."""
        return True

    def more_gradients(self, x: np.ndarray, g: Any, grad: np.ndarray, params: Params) -> dict[str, np.ndarray]:
        """The gradients backward gives besides the input's, by name (engine layout): bilinear's to its --with
        array (``with``), gem's to p (``p``). One named after a ``like_input`` option (``with``) is laid out like
        the input; the others (deconv's ``weights``) have their own layout."""
        return {}

    def selected(self, x: np.ndarray, g: Any, params: Params) -> np.ndarray | None:
        """For visualize: the input cells the output took (engine layout), or None."""
        if not self.marks:
            return None
        return self.backward(x, g, np.ones(g.out_shape), params) != 0

    def block_plan(self, plan: Any, lead: tuple[int, ...], index: tuple[slice, ...]) -> Any:
        """For an operator without windows: the plan of one block, ``plan`` with its leading (independent) axes
        cut to ``lead`` sizes by ``index`` (an operator whose plan holds arrays cuts them too)."""
        k = len(lead)
        return replace(plan, in_shape=lead + tuple(plan.in_shape[k:]), out_shape=lead + tuple(plan.engine_out[k:]),
                       channels_last=False)

    def pillow_filter(self, params: Params) -> str | None:
        """The Pillow resampling filter (a ``PIL.Image.Resampling`` name) an image is resized with instead of
        the engine, for a filter only Pillow has (upsample --mode lanczos); else None."""
        return None

    def picks(self, params: Params) -> bool:
        """Whether every output of this run is one of its window's input values (``selects``, with these
        options): an image is then pooled on its raw values."""
        return self.selects

    def box_filter(self, params: Params) -> bool:
        """Whether this run is a plain box average (``box_mean`` with these options): Pillow may compute it."""
        return self.box_mean

    def widens_half(self, params: Params, backward: bool = False, plan: Any = None) -> bool:
        """Whether float16 inputs are computed in float32 (rounded once at the end) in this direction: yes where
        there is arithmetic; where values are only moved (unpool, nearest upsampling forward) float16 stays, and
        an operator that rounds where it pays itself (avg's backward) takes float16 blocks."""
        return True

    def backward_reads_strided(self, plan: Any, params: Params) -> bool:
        """Whether its backward of this plan reads its inputs (the gradient, and the input where it reads it) in
        any memory order in place and gives a result in their memory order: then the block executor hands it
        views of Fortran-ordered and channels-last arrays, as ``reads_strided`` for the forward."""
        return False

    def reads_strided(self, plan: Any, params: Params) -> bool:
        """Whether its forward of this plan reads the input in any memory order in place at full speed: then the
        block executor hands it views of Fortran-ordered and channels-last inputs (``strided``)."""
        return self.strided

    def independent_axes(self, plan: Any) -> tuple[int, ...]:
        """Axes of the engine's layout that can be cut into blocks and each pooled on its own."""
        return tuple(range(len(plan.in_shape) - plan.dims))

    def side_by_side(self, plan: Any) -> int | None:
        """For an operator that ``reads_strided``: how many leading axes (engine layout) count towards the run of
        values lying side by side innermost in memory from which it reads the input in place, where that is
        more than the axes it is cut along (None): spp's and bilinear pooling's channels too, so that a
        Fortran-ordered input (samples and channels innermost) is read as it lies."""
        return None

    def picture(self, x: np.ndarray, y: np.ndarray, dx: np.ndarray | None, plan: Any, params: Params,
                dims: int) -> Picture:
        """For visualize of an operator without windows: the arrays to draw as planes (engine layout), and a
        line about them. ``dims`` is how many trailing axes visualize would draw for an array without a
        layout of its own (--dims, else 2)."""
        return Picture(x, y, dx, plan.dims, self.summary)

    def drawn(self, x: np.ndarray) -> np.ndarray:
        """The input ``backward --check --random`` checks it on, from a random normal ``x``: ``x`` itself, or what
        this operator takes (stochastic: ``|x|``)."""
        return x

    def prepare_check(self, shape: tuple[int, ...], spec: Any, params: Params, arrays: dict[str, Any]
                      ) -> tuple[Params, dict[str, Any]]:
        """For ``backward --check``: the options and arrays to check with when the user gave none."""
        return params, arrays


@dataclass
class Picture:
    """What visualize draws for an operator without windows (engine layout, ``dims`` spatial axes last):
    input, output, gradient, a line of text, the marked input and output cells, and for an operator whose
    windows differ from plane to plane (fractional) the windows of the plane at a leading index, as the
    input cells each output row and column reads."""

    x: np.ndarray
    y: np.ndarray
    dx: np.ndarray | None
    dims: int
    text: str
    marked_in: np.ndarray | None = None
    marked_out: np.ndarray | None = None
    windows: Callable[[tuple[int, ...]], list[list[list[int]]]] | None = None  # a plane's windows: cells per axis


@dataclass(frozen=True)
class Plan:
    """A non-windowed operator's plan: input and output shapes (engine layout: channels before the spatial
    axes) and the facts ``shape`` prints. The engine's edge fills in ``caller_in``/``caller_out`` and
    ``channels_last`` for a channels-last input."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    rows: tuple[dict, ...] = ()
    dims: int = 0  # spatial axes at the end of the engine layout
    channels_last: bool = False
    moves_output: bool = True  # the output has the input's channel axis (bilinear's has not)

    @property
    def engine_out(self) -> tuple[int, ...]:
        """``out_shape`` in the engine's layout."""
        if self.channels_last and self.moves_output:
            from poolcli.engine.geometry import engine_shape

            return engine_shape(self.out_shape, self.dims)
        return self.out_shape

    def describe(self) -> list[dict]:
        return [dict(r) for r in self.rows]
