"""Hypothesis strategies: raw window options and inputs, validated by WindowSpec.bind itself."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from poolcli import GeometryError, UsageError, WindowSpec


def per_axis(dims: int, values: st.SearchStrategy[int]) -> st.SearchStrategy:
    """One value for all axes, or one per axis."""
    return st.one_of(values, st.lists(values, min_size=dims, max_size=dims).map(tuple))


@st.composite
def window_options(draw, dims: int, sides: tuple[int, ...]) -> dict:
    """Raw options of §3 (not yet validated)."""
    mode = draw(st.sampled_from(["window", "window", "window", "global", "adaptive"]))
    if mode == "global":
        return {"global_pool": True}
    if mode == "adaptive":
        return {"output_size": tuple(draw(st.integers(1, n + 2)) for n in sides)}
    options = {"kernel": draw(per_axis(dims, st.integers(1, 4)))}
    if draw(st.booleans()):
        options["stride"] = draw(per_axis(dims, st.integers(1, 3)))
    if draw(st.booleans()):
        options["dilation"] = draw(per_axis(dims, st.integers(1, 2)))
    options["padding"] = draw(
        st.one_of(
            st.integers(0, 2),
            st.lists(st.integers(0, 2), min_size=dims, max_size=dims).map(tuple),
            st.lists(st.integers(0, 3), min_size=2 * dims, max_size=2 * dims).map(tuple),
            st.sampled_from(["valid", "same", "same-lower"]),
        )
    )
    options["ceil"] = draw(st.booleans())
    return options


@st.composite
def pooling_case(draw, dtypes=("float64",), nan: bool = False) -> tuple[np.ndarray, dict, WindowSpec]:
    """An input array and window options that WindowSpec accepts for it."""
    dims = draw(st.integers(1, 3))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    top = 5 if dims == 3 else 9
    sides = tuple(draw(st.lists(st.integers(1, top), min_size=dims, max_size=dims)))
    options = draw(window_options(dims, sides))
    options["dims"] = dims
    try:
        spec = WindowSpec(**options)
        spec.bind(lead + sides)
    except (GeometryError, UsageError):
        assume(False)
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    size = math.prod(lead + sides)
    values = draw(st.lists(st.integers(-3, 3), min_size=size, max_size=size))
    x = np.array(values, dtype=np.float64).reshape(lead + sides)
    if nan and dtype.kind == "f" and draw(st.booleans()):
        x.flat[draw(st.integers(0, size - 1))] = np.nan
    return x.astype(dtype), options, spec


def reference_geometry(shape: tuple[int, ...], options: dict) -> dict:
    """The options in the oracle's words (pads resolved from §3's rules, written out here again)."""
    dims = options["dims"]
    sizes = shape[len(shape) - dims :]

    def axis_values(name, default):
        v = options.get(name)
        if v is None:
            return list(default)
        return [v] * dims if isinstance(v, int) else list(v)

    if options.get("global_pool"):
        return {"dims": dims, "global_pool": True}
    if options.get("output_size") is not None:
        return {"dims": dims, "output_size": axis_values("output_size", [])}
    kernel = axis_values("kernel", [2] * dims)
    stride = axis_values("stride", kernel)
    dilation = axis_values("dilation", [1] * dims)
    pad = options.get("padding", 0)
    if pad == "valid":
        pads = [(0, 0)] * dims
    elif pad in ("same", "same-lower"):
        pads = []
        for n, k, s, d in zip(sizes, kernel, stride, dilation):
            total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if pad == "same" else (large, small))
    elif isinstance(pad, int):
        pads = [(pad, pad)] * dims
    elif len(pad) == dims:
        pads = [(v, v) for v in pad]
    else:
        pads = [(pad[2 * i], pad[2 * i + 1]) for i in range(dims)]
    return {"dims": dims, "kernel": kernel, "stride": stride, "dilation": dilation, "pads": pads,
            "ceil": options.get("ceil", False)}


NON_NEGATIVE = ("stochastic",)  # operators that take probabilities a/Σa: their inputs must not be negative


def valid_input(op: str, x):
    """``x`` as ``op`` takes it: its absolute value for the operators that refuse negative inputs."""
    import numpy as np

    return np.abs(x) if op in NON_NEGATIVE else x


def deconv_case(draw, dims: int, groups: int, out_per_group: int = 2, largest: int = 4) -> tuple:
    """A transposed convolution PyTorch takes: (x, weights, bias, options as poolcli's keywords), drawn with
    ``draw`` (hypothesis's ``data.draw``)."""
    import numpy as np
    from hypothesis import strategies as st

    sides = [draw(st.integers(1, largest)) for _ in range(dims)]
    kernel = [draw(st.integers(1, 3)) for _ in range(dims)]
    stride = [draw(st.integers(1, 3)) for _ in range(dims)]
    dilation = [draw(st.integers(1, 2)) for _ in range(dims)]
    padding = [draw(st.integers(0, d * (k - 1) // 2)) for k, d in zip(kernel, dilation)]
    extra = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c_in = 2 * groups
    x, w = rng.normal(size=(2, c_in, *sides)), rng.normal(size=(c_in, out_per_group, *kernel))
    bias = rng.normal(size=out_per_group * groups)
    options = dict(stride=stride, padding=padding, output_padding=extra, dilation=dilation, groups=groups, dims=dims)
    return x, w, bias, options
