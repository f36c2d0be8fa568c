"""What every operator shares: its options (Params), its interface (Op) and dtype rules.

>>> Params(ties="split").ties
'split'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from poolcli.errors import UsageError

TIES = ("first", "all", "split")
MODES = ("nearest", "bilinear")


@dataclass(frozen=True)
class Params:
    """Operator options (window options live on WindowSpec).

    - ``count_pad``: padded cells count in an average's divisor (PyTorch's default);
    - ``p``, ``mean``: the Lp norm's exponent and its root-mean variant;
    - ``alpha``: the max share of ``mixed`` (default 0.5), or lrn's scale (default 1e-4);
    - ``ties``: first, all or split (backward of max, min, kmax);
    - ``k``, ``axis``: kmax keeps the k largest values along ``axis``;
    - ``mode``, ``scale``, ``align_corners``: upsample (nearest or bilinear, by a factor per axis);
    - ``size``, ``beta``, ``bias``: lrn's channel window, exponent and constant;
    - ``signed_sqrt``, ``l2_normalize``: bilinear pooling's normalisations.
    """

    count_pad: bool = True
    p: float = 2.0
    mean: bool = False
    alpha: float | None = None
    ties: str = "first"
    k: int = 2
    axis: int = -1
    mode: str = "nearest"
    scale: float | tuple[float, ...] | None = None
    align_corners: bool = False
    size: int = 5
    beta: float = 0.75
    bias: float = 1.0
    signed_sqrt: bool = False
    l2_normalize: bool = False

    def __post_init__(self) -> None:
        if self.ties not in TIES:
            raise UsageError(f"--ties {self.ties}: give one of {', '.join(TIES)}")
        if not (self.p > 0 and np.isfinite(self.p)):
            raise UsageError(f"--p {self.p}: the norm's exponent must be a finite number above 0")
        if self.alpha is not None and not np.isfinite(self.alpha):
            raise UsageError(f"--alpha {self.alpha}: give a finite number")
        if self.k < 1:
            raise UsageError(f"--k {self.k}: keep 1 or more values")
        if self.mode not in MODES:
            raise UsageError(f"--mode {self.mode}: give one of {', '.join(MODES)}")
        scales = self.scales
        if scales is not None and (not scales or any(not (s > 0 and np.isfinite(s)) for s in scales)):
            raise UsageError(f"--scale {','.join(map(str, scales))}: every factor must be a finite number above 0")
        if self.size < 1:
            raise UsageError(f"--size {self.size}: the channel window needs 1 or more channels")
        if not (np.isfinite(self.beta) and np.isfinite(self.bias)):
            raise UsageError("--beta and --bias must be finite numbers")

    @property
    def scales(self) -> tuple[float, ...] | None:
        """``scale`` as a tuple (one factor, or one per spatial axis)."""
        if self.scale is None:
            return None
        return (float(self.scale),) if np.isscalar(self.scale) else tuple(float(v) for v in self.scale)

    def alpha_or(self, default: float) -> float:
        """``alpha``, or the operator's own default when it was not given."""
        return default if self.alpha is None else float(self.alpha)


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
    """One operator: name, ``bind`` (shape -> plan), forward and backward.

    Windowed operators bind to a Geometry and work in the engine layout (spatial axes
    last); the others bind to a plan of their own, which handles the caller's layout
    itself (its ``lead`` is empty and ``channels_last`` False, so nothing is moved).
    """

    name = ""
    summary = ""
    windowed = True
    keeps_int = False  # integer inputs keep their dtype (max/min/kmax/unpool), else float64
    arrays: tuple[str, ...] = ()  # extra input arrays the plan needs (unpool: indices; bilinear: other)

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        return dtype if self.keeps_int or np.issubdtype(dtype, np.floating) else np.dtype(np.float64)

    def bind(self, shape: tuple[int, ...], spec: Any, params: Params, **arrays: Any) -> Any:
        """The plan for an input of this shape: a Geometry for windowed operators."""
        return spec.bind(shape)

    def forward(self, x: np.ndarray, g: Any, params: Params) -> np.ndarray:
        raise NotImplementedError

    def backward(self, x: np.ndarray, g: Any, grad: np.ndarray, params: Params) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Plan:
    """A non-windowed operator's plan: input and output shapes and the facts ``shape`` prints."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    rows: tuple[dict, ...] = ()
    lead: tuple[int, ...] = ()
    channels_last: bool = False

    def describe(self) -> list[dict]:
        return [dict(r) for r in self.rows]


