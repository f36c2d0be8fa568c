"""The engine against the plain-loop oracle, over random shapes and every option of §3/§4."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli
from poolcli import WindowSpec
from tests.reference import pool as reference
from tests.strategies import pooling_case, reference_geometry

OPS = ["max", "min", "avg", "lp", "mixed", "median", "gem", "softpool", "stochastic", "quantile", "avgmax"]


@st.composite
def op_params(draw, op: str) -> dict:
    params: dict = {"ties": draw(st.sampled_from(["first", "all", "split"]))}
    if op == "quantile":
        params["q"] = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]))
    if op in ("avg", "mixed", "lp", "gem", "avgmax"):
        params["count_pad"] = draw(st.booleans())
    if op == "avg" and draw(st.booleans()):
        params["divisor"] = draw(st.integers(1, 7))
    if op == "stochastic":
        params["seed"] = draw(st.integers(0, 2**40))
        params["expected"] = draw(st.booleans())
    if op == "gem":
        params["p"] = draw(st.sampled_from([1.0, 3.0, 0.5, 2.5]))
        params["eps"] = draw(st.sampled_from([1e-6, 0.3]))
    if op == "lp":
        params["p"] = draw(st.sampled_from([1.0, 2.0, 3.0, 0.5, 1.5]))
        params["mean"] = draw(st.booleans())
    if op == "mixed":
        params["alpha"] = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    return params


@settings(max_examples=400, deadline=None)
@given(data=st.data(), op=st.sampled_from(OPS))
def test_forward_and_backward_match_the_oracle(data, op):
    x, options, spec = data.draw(pooling_case(nan=op in ("max", "min", "median", "quantile")))
    if op == "stochastic":  # probabilities a/Σa: non-negative inputs, with zeros and ties
        x = np.abs(np.round(x))
    params = data.draw(op_params(op))
    y = poolcli.forward(x, op, spec=spec, **params)
    grad = np.arange(1, y.size + 1, dtype=np.float64).reshape(y.shape)
    dx = poolcli.backward(x, grad, op, spec=spec, **params)
    ref_y, ref_dx, ref_idx = reference(x, op, grad=grad, **reference_geometry(x.shape, options), **params)
    assert y.shape == spec.bind(x.shape).out_shape == ref_y.shape
    np.testing.assert_allclose(y, ref_y, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-9, atol=1e-9)
    if op in ("max", "min"):
        y2, idx = poolcli.forward(x, op, spec=spec, return_indices=True)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(y2, y)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["float64", "float32", "int8", "uint8", "int64", "bool"]))
def test_mode_matches_the_oracle_and_keeps_the_dtype(data, dtype):
    x, options, spec = data.draw(pooling_case(dtypes=(dtype,), nan=True))
    y = poolcli.forward(x, "mode", spec=spec)
    assert y.dtype == x.dtype
    ref = reference(x.astype(np.float64), "mode", **reference_geometry(x.shape, options))[0]
    np.testing.assert_array_equal(y.astype(np.float64), ref)


def test_mode_keeps_labels_where_avg_and_max_invent_or_bias_them():
    labels = np.array([[1, 1, 7, 7], [1, 4, 7, 2]], dtype=np.uint8)
    assert poolcli.forward(labels, "mode", kernel=2).tolist() == [[1, 7]]
    assert poolcli.forward(labels, "avg", kernel=2).tolist() == [[1.75, 5.75]]  # labels that do not exist
    with pytest.raises(poolcli.UsageError, match="has no gradient"):
        poolcli.backward(labels, op="mode", kernel=2)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), op=st.sampled_from(["max", "min"]))
def test_integer_inputs_keep_their_dtype(data, op):
    x, options, spec = data.draw(pooling_case(dtypes=("int8", "int32", "uint8", "int64")))
    y = poolcli.forward(x, op, spec=spec)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, reference(x, op, **reference_geometry(x.shape, options))[0])


@settings(max_examples=100, deadline=None)
@given(data=st.data(), op=st.sampled_from(["avg", "lp", "mixed", "median"]))
def test_integer_inputs_average_in_float64(data, op):
    x, options, spec = data.draw(pooling_case(dtypes=("int8", "uint8", "int64")))
    y = poolcli.forward(x, op, spec=spec)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, reference(x, op, **reference_geometry(x.shape, options))[0], rtol=1e-12)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_first_and_split_ties_conserve_the_gradient_sum(data):
    x, _, spec = data.draw(pooling_case())
    grad = np.random.default_rng(0).random(spec.bind(x.shape).out_shape)
    for ties in ("first", "split"):
        assert poolcli.backward(x, grad, "max", spec=spec, ties=ties).sum() == pytest.approx(grad.sum())


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_average_is_linear_and_its_backward_is_its_adjoint(data):
    x, _, spec = data.draw(pooling_case())
    grad = np.random.default_rng(1).random(spec.bind(x.shape).out_shape)
    lhs = float(np.sum(poolcli.forward(x, "avg", spec=spec) * grad))
    rhs = float(np.sum(x * poolcli.backward(x, grad, "avg", spec=spec)))
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), count_pad=st.booleans())
def test_average_backward_preserves_the_gradient_sum_without_padding(data, count_pad):
    x, _options, spec = data.draw(pooling_case())
    g = spec.bind(x.shape)
    if any(a.pad != (0, 0) or a.overhang for a in g.axes):
        count_pad = False  # with padding counted, some of the gradient goes to padded cells
        grad = np.ones(g.out_shape)
        dx = poolcli.backward(x, grad, "avg", spec=spec, count_pad=False)
    else:
        grad = np.ones(g.out_shape)
        dx = poolcli.backward(x, grad, "avg", spec=spec, count_pad=count_pad)
    assert dx.sum() == pytest.approx(grad.sum())


def test_worked_example():
    x = np.arange(1, 17).reshape(4, 4)
    np.testing.assert_array_equal(poolcli.forward(x, "avg", kernel=2), [[3.5, 5.5], [11.5, 13.5]])
    np.testing.assert_array_equal(poolcli.forward(x, "max", kernel=2), [[6, 8], [14, 16]])


@pytest.mark.parametrize("kernel,stride,padding", [(15, 1, 7), (9, 2, 4), (8, 1, 0), (6, 3, (0, 5))])
@pytest.mark.parametrize("op", ["max", "min", "avg", "lp"])
def test_long_kernels_take_the_doubling_path_and_agree(kernel, stride, padding, op):
    x = np.random.default_rng(2).normal(size=(2, 40, 37))
    options = dict(kernel=kernel, stride=stride, padding=padding)
    y = poolcli.forward(x, op, **options)
    ref = reference(x, op, **reference_geometry(x.shape, dict(options, dims=2)))[0]
    np.testing.assert_allclose(y, ref, rtol=1e-9)


def test_nan_propagates_through_max_and_min():
    x = np.array([[1.0, np.nan, 3.0, 4.0]])
    assert np.isnan(poolcli.forward(x, "max", kernel=(1, 2))[0, 0])
    assert np.isnan(poolcli.forward(x, "min", kernel=(1, 2))[0, 0])
    np.testing.assert_array_equal(poolcli.backward(x, op="max", kernel=(1, 2))[0], [0, 1, 0, 1])


def test_channels_last_pools_the_axes_before_the_channels():
    x = np.random.default_rng(3).random((2, 6, 6, 3))
    y = poolcli.forward(x, kernel=3, stride=2, padding=1, channels_last=True)
    expected = poolcli.forward(np.moveaxis(x, -1, 1), kernel=3, stride=2, padding=1)
    np.testing.assert_array_equal(y, np.moveaxis(expected, 1, -1))
    dx = poolcli.backward(x, op="avg", kernel=2, channels_last=True)
    assert dx.shape == x.shape


def test_global_keeps_the_pooled_axes():
    x = np.arange(24.0).reshape(2, 3, 4)
    assert poolcli.forward(x, "avg", global_pool=True).shape == (2, 1, 1)
    assert poolcli.forward(x, global_pool=True, dims=1)[1, 2, 0] == 23


@settings(max_examples=60, deadline=None)
@given(cells=st.integers(1, 5000), planes=st.integers(1, 4), dtype=st.sampled_from(["float32", "float64"]),
       order=st.sampled_from(["C", "F"]))
def test_global_sums_of_long_and_short_planes_are_the_exact_sums_rounded(cells, planes, dtype, order):
    """Global avg (a BLAS product for short planes; vectorised runs of cells, a shorter last run, then the
    runs' sums for long ones): within a few roundings of the exact mean, in any memory order."""
    x = (np.random.default_rng(cells).random((planes, 2, cells)) + 0.5).astype(dtype)
    exact = x.astype(np.float64 if dtype == "float32" else np.longdouble).mean(axis=-1, keepdims=True)
    got = poolcli.forward(np.asarray(x, order=order), "avg", global_pool=True, dims=1)
    assert got.dtype == x.dtype
    tol = 8 * np.finfo(dtype).eps * np.log2(cells + 1)
    np.testing.assert_allclose(got.astype(np.float64), exact.astype(np.float64), rtol=tol)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), op=st.sampled_from(["max", "min"]), dtype=st.sampled_from(["float32", "float64", "float16",
                                                                                 "uint8", "int16"]))
def test_global_max_and_min_read_every_layout_in_place_and_agree_with_a_plain_reduction(data, op, dtype):
    """Global max/min of a Fortran-ordered, channels-last or plane-swapped input reduce it as it lies in memory,
    rows folded into runs of FOLD_RUN values (a shorter last group of rows, NaN among them): each plane's
    plain max/min, bit for bit."""
    from unittest import mock

    from poolcli.engine import kernels

    shape = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 9), st.integers(1, 9)))
    x = np.random.default_rng(sum(shape)).normal(size=shape) * 50
    if dtype.startswith("float") and data.draw(st.booleans()):
        x.flat[data.draw(st.integers(0, x.size - 1))] = np.nan
    x = x.astype(dtype)
    expected = getattr(np, "fmax" if op == "max" else "fmin").reduce(x.reshape(shape[:2] + (-1,)), axis=-1)
    expected = np.where(np.isnan(x).any(axis=(-2, -1)), np.nan, expected) if dtype.startswith("float") else expected
    layout = data.draw(st.sampled_from(["F", "channels-last", "swapped"]))
    view = {"F": np.asfortranarray(x), "channels-last": np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
            "swapped": np.ascontiguousarray(x.swapaxes(-1, -2)).swapaxes(-1, -2)}[layout]
    with mock.patch.object(kernels, "FOLD_RUN", data.draw(st.sampled_from([1, 7, 64, 1024]))):
        got = poolcli.forward(view, op, global_pool=True, channels_last=layout == "channels-last")
    got = got[:, 0, 0, :] if layout == "channels-last" else got[..., 0, 0]
    np.testing.assert_array_equal(got, expected)


def test_float32_and_float16_keep_their_dtype():
    for dtype in (np.float32, np.float16):
        x = np.ones((4, 4), dtype=dtype)
        for op in OPS:
            assert poolcli.forward(x, op).dtype == dtype
            assert poolcli.backward(x, op=op).dtype == dtype


def test_the_engine_imports_no_cli_or_image_libraries():
    code = "import poolcli, poolcli.engine, sys; print(sorted(m for m in ('typer', 'rich', 'PIL', 'click') if m in sys.modules))"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "shape,options,message",
    [
        ((3, 3), dict(kernel=5), "axis H: kernel 5 spans 5 cells but the padded input has 3 (3 + 0 + 0); use -k 3 or less, or -p 1"),
        ((8, 4), dict(kernel=2, padding=(0, 0, 3, 0)), "axis W: window 0 covers cells -3..-2"),
        ((4, 4), dict(kernel=(2, 2, 2)), "--kernel 2,2,2 has 3 values but the input has only 2 dimensions"),
        ((4, 4), dict(padding=(1, 2, 3)), "--padding 1,2,3 has 3 values; give 1, one per axis (2), or begin,end per axis (4)"),
        ((4, 4), dict(kernel=0), "--kernel 0: every value must be 1 or more"),
        ((4, 4, 4), dict(kernel=(2, 2, 2), stride=(1, 1)), "--kernel 2,2,2 has 3 values but --stride 1,1 has 2; give each 1 value or one per spatial axis"),
        ((4,), dict(kernel=2, dims=2), "the input has 1 dimension but 2 spatial axes are asked for"),
        ((4, 4), dict(kernel=2, global_pool=True), "--global sets the windows itself"),
    ],
)
def test_geometry_errors_name_the_axis_and_the_numbers(shape, options, message):
    with pytest.raises(poolcli.UsageError) as err:
        WindowSpec(**options).bind(shape)
    assert message in str(err.value)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), op=st.sampled_from(["max", "avg", "lp", "mixed"]), rows=st.integers(1, 4))
def test_row_strips_pool_as_the_whole(data, op, rows):
    """Pooled a strip of rows at a time (as large images are), every output equals the whole's."""
    x, _, spec = data.draw(pooling_case())
    g = spec.bind(x.shape)
    whole = poolcli.forward(x, op, spec=spec)
    lead = (slice(None),) * len(g.lead)
    pieces = [poolcli.engine.run_forward(x[lead + (i,)], sub, op, poolcli.engine.Params())
              for o, i, sub in g.row_strips(rows)]
    assert sum(o.stop - o.start for o, _, _ in g.row_strips(rows)) == g.axes[0].out
    np.testing.assert_allclose(np.concatenate(pieces, axis=len(g.lead)), whole, rtol=1e-12, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), op=st.sampled_from(["max", "min", "avg", "lp", "mixed"]))
def test_float16_equals_the_float32_computation_rounded(data, op):
    """float16 is computed in float32 blocks: the result is the float32 one, rounded to float16."""
    x, _, spec = data.draw(pooling_case(dtypes=("float16",)))
    y = poolcli.forward(x, op, spec=spec)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, poolcli.forward(x.astype(np.float32), op, spec=spec).astype(np.float16))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), op=st.sampled_from(["max", "avg", "median"]))
def test_fortran_order_and_strided_inputs_give_the_c_order_result(data, op):
    x, _, spec = data.draw(pooling_case())
    for view in (np.asfortranarray(x), np.repeat(x, 2, axis=-1)[..., ::2]):
        np.testing.assert_array_equal(poolcli.forward(view, op, spec=spec), poolcli.forward(x, op, spec=spec))
        np.testing.assert_array_equal(poolcli.backward(view, op=op, spec=spec), poolcli.backward(x, op=op, spec=spec))


@pytest.mark.parametrize("ties", ["first", "all", "split"])
def test_global_and_adaptive_backward_match_the_oracle_on_ties(ties):
    x = np.array([[[3.0, 1.0, 3.0], [0.0, 3.0, 2.0], [np.nan, 1.0, 1.0]]])
    for options in ({"global_pool": True, "dims": 2}, {"output_size": (2, 2), "dims": 2}):
        ref = reference(x, "max", grad=None, ties=ties, **reference_geometry(x.shape, options))
        np.testing.assert_array_equal(poolcli.forward(x, "max", **options), ref[0])
        np.testing.assert_array_equal(poolcli.backward(x, op="max", ties=ties, **options), ref[1])


@settings(max_examples=200, deadline=None)
@given(dims=st.integers(1, 3), data=st.data(), op=st.sampled_from(["max", "min"]),
       dtype=st.sampled_from(["float64", "float32", "int16"]))
def test_tiling_windows_route_each_gradient_to_the_first_selected_cell(dims, data, op, dtype):
    """Windows that tile the plane (kernel = stride, some axes unpooled), many ties: the gradient reaches the
    first cell in row-major window order holding the extreme, as the plain-loop oracle says."""
    kernel = data.draw(st.lists(st.integers(1, 4), min_size=dims, max_size=dims))
    outs = data.draw(st.lists(st.integers(1, 4), min_size=dims, max_size=dims))
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    sizes = tuple(k * o for k, o in zip(kernel, outs))
    seed = data.draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).integers(-2, 3, size=lead + sizes).astype(dtype)  # five values: many ties
    grad = np.random.default_rng(dims).integers(1, 9, size=lead + tuple(outs)).astype(np.float64)
    dx = poolcli.backward(x, grad, op, kernel=tuple(kernel), stride=tuple(kernel), dims=dims)
    _, expected, _ = reference(x, op=op, dims=dims, kernel=tuple(kernel), stride=tuple(kernel),
                               dilation=(1,) * dims, pads=((0, 0),) * dims, grad=grad)
    np.testing.assert_array_equal(dx, expected)


@settings(max_examples=300, deadline=None)
@given(dims=st.integers(1, 3), data=st.data(), op=st.sampled_from(["max", "min"]),
       dtype=st.sampled_from(["float64", "float32", "int16", "uint8"]))
def test_overlapping_and_gapped_windows_route_each_gradient_to_the_first_selected_cell(dims, data, op, dtype):
    """Strided windows that overlap or leave gaps, padded, dilated, in ceil mode, on sizes a whole number of
    strides or not, with many ties and the dtype's extremes: each gradient reaches the first cell in row-major
    window order holding the extreme, as the plain-loop oracle says (the same for a transposed input)."""
    kernel = tuple(data.draw(st.lists(st.integers(1, 5), min_size=dims, max_size=dims)))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in kernel)
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in kernel)
    pads = tuple(data.draw(st.integers(0, (k - 1) * d // 2)) for k, d in zip(kernel, dilation))
    outs = tuple(data.draw(st.integers(1, 5)) for _ in kernel)
    extra = tuple(data.draw(st.sampled_from([0, 0, 1])) for _ in kernel)  # 0: the size is stride · out
    sizes = tuple(max(s * o + e, (k - 1) * d + 1 - 2 * p)
                  for s, o, e, k, d, p in zip(stride, outs, extra, kernel, dilation, pads))
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    ceil = data.draw(st.booleans())
    options = dict(kernel=kernel, stride=stride, dilation=dilation, padding=pads, ceil=ceil, dims=dims)
    try:
        WindowSpec(**options).bind(lead + sizes)
    except poolcli.GeometryError:
        return
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    info = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    values = np.array([info.min, info.max, 0, 1, 2], dtype=dtype)
    if np.dtype(dtype).kind == "f":
        values = np.append(values, [-np.inf, np.inf]).astype(dtype)
    x = rng.choice(values, size=lead + sizes)  # few values: many ties
    y = poolcli.forward(x, op, **options)
    grad = rng.integers(1, 9, size=y.shape).astype(np.float64)
    _, expected, _ = reference(x, op=op, dims=dims, kernel=kernel, stride=stride, dilation=dilation,
                               pads=tuple((p, p) for p in pads), ceil=ceil, grad=grad)
    np.testing.assert_array_equal(poolcli.backward(x, grad, op, **options), expected)
    if x.ndim > 1:  # a Fortran-ordered input takes the transposed paths
        np.testing.assert_array_equal(poolcli.backward(np.asfortranarray(x), grad, op, **options), expected)


@pytest.mark.parametrize("op, options", [
    ("max", dict(kernel=2)), ("max", dict(kernel=3, stride=1, padding=1)), ("min", dict(kernel=3, stride=2)),
    ("max", dict(output_size=2)), ("max", dict(global_pool=True)), ("max", dict(kernel=2, ties="split")),
    ("max", dict(output_size=4, ties="all")), ("median", dict(kernel=3)), ("quantile", dict(kernel=2, q=0.25)),
    ("kmax", dict(k=2)), ("fractional", dict(ratio=0.6)), ("mixed", dict(kernel=2))])
def test_an_infinite_or_nan_gradient_reaches_only_the_cells_its_window_chose(op, options):
    """inf·0 is NaN: a gradient holding inf or NaN must still send 0 to the cells its window did not choose."""
    rng = np.random.default_rng(4)
    x = rng.random((2, 2, 6, 6))
    y = poolcli.forward(x, op, **{k: v for k, v in options.items() if k != "ties"})
    grad = rng.normal(size=y.shape)
    grad.flat[:3] = [np.inf, np.nan, -np.inf]
    dx = poolcli.backward(x, grad, op, **options)
    finite = poolcli.backward(x, np.where(np.isfinite(grad), grad, 0), op, **options)
    reached = poolcli.backward(x, np.where(np.isfinite(grad), 0.0, 1.0), op, **options) != 0
    assert reached.any() and not np.isfinite(dx[reached]).all()
    np.testing.assert_allclose(dx[~reached], finite[~reached], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", [dict(kernel=2), dict(kernel=3, stride=1, padding=1), dict(output_size=2),
                                     dict(kernel=2, ties="split"), dict(kernel=(2, 1), stride=(2, 1))])
def test_cells_no_window_chose_get_plus_zero(options):
    """A negative gradient times a 0 weight is -0.0: the cells no window chose get +0, as PyTorch's."""
    x = np.random.default_rng(6).random((2, 3, 6, 6))
    y = poolcli.forward(x, **{k: v for k, v in options.items() if k != "ties"})
    dx = poolcli.backward(x, -np.ones(y.shape), **options)
    assert not np.signbit(dx[dx == 0]).any()


def test_a_plan_is_made_once_per_question_and_errors_are_raised_every_time():
    """``bind`` hands out the plan it made for the same operator, shape, window and options; an option given as a
    list (nothing to look up by) is bound afresh, to the same plan; a bad question fails every time."""
    from poolcli.engine import Params, WindowSpec, bind

    spec = WindowSpec(kernel=3, stride=2, padding=1)
    first = bind("max", (2, 3, 9, 9), spec, Params())
    assert bind("max", (2, 3, 9, 9), WindowSpec(kernel=3, stride=2, padding=1), Params()) is first
    assert bind("max", (2, 3, 9, 8), spec, Params()) is not first
    listed = bind("max", (2, 3, 9, 9), WindowSpec(kernel=[3, 3], stride=2, padding=1), Params())
    assert listed is not first and listed.out_shape == first.out_shape == (2, 3, 5, 5)
    for _ in range(2):
        with pytest.raises(poolcli.GeometryError):
            bind("max", (2, 3, 2, 2), WindowSpec(kernel=5), Params())
