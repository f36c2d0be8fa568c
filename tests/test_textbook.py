"""The textbook's and ONNX's last rows against the plain-loop oracles: weighted average pooling,
deconvolution, no-data cells, index layouts and resize modes."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli
from tests import reference
from tests.conftest import run_poolcli
from tests.strategies import deconv_case, pooling_case, reference_geometry

CASES = settings(max_examples=80, deadline=None)


@CASES
@given(data=st.data())
def test_weighted_average_matches_the_oracle(data):
    x, options, spec = data.draw(pooling_case())
    g = spec.bind(x.shape)
    geometry = reference_geometry(x.shape, options)
    if "kernel" not in geometry:
        return  # adaptive and global windows: --weights needs fixed ones (refused: tested below)
    channels = g.lead[-1] if g.lead else 1
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    w = rng.random((channels, *(a.kernel for a in g.axes))) + 0.1
    y = poolcli.forward(x, "avg", spec=spec, weights=w)
    grad = rng.normal(size=y.shape)
    want, dx_want, dw_want = reference.weighted_avg(x, w, geometry["dims"], geometry["kernel"], geometry["stride"],
                                                    geometry["dilation"], geometry["pads"], geometry["ceil"], grad)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    grads = poolcli.gradients(x, grad, "avg", spec=spec, weights=w)
    np.testing.assert_allclose(grads["x"], dx_want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["weights"], dw_want, rtol=1e-9, atol=1e-10)


def test_weighted_average_through_the_cli_with_its_weights_gradient(tmp_path):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 3, 6, 6)), rng.random((3, 2, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    r = run_poolcli("forward", tmp_path / "x.npy", "--op", "avg", "--weights", tmp_path / "w.npy", "-o", tmp_path / "y.npy")
    assert r.code == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), poolcli.forward(x, "avg", kernel=2, weights=w))
    r = run_poolcli("backward", tmp_path / "x.npy", "--op", "avg", "--weights", tmp_path / "w.npy", "-o",
                    tmp_path / "g.npz")
    assert r.code == 0, r.stderr
    grads = np.load(tmp_path / "g.npz")
    np.testing.assert_allclose(grads["weights"], poolcli.gradients(x, None, "avg", kernel=2, weights=w)["weights"])
    bad = run_poolcli("forward", tmp_path / "x.npy", "--op", "avg", "--weights", tmp_path / "w.npy", "-k", "3")
    assert bad.code == 2 and "(C, *kernel) = (3, 3, 3)" in bad.stderr


def test_weighted_average_refuses_adaptive_windows_and_a_divisor():
    x, w = np.ones((1, 2, 4, 4)), np.ones((2, 2, 2))
    with pytest.raises(poolcli.UsageError, match="fixed windows"):
        poolcli.forward(x, "avg", output_size=3, weights=w)
    with pytest.raises(poolcli.UsageError, match="divisor"):
        poolcli.forward(x, "avg", kernel=2, weights=w, divisor=3)


NODATA_OPS = ["max", "min", "avg", "lp", "median", "mode", "quantile"]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), op=st.sampled_from(NODATA_OPS), skip_nan=st.booleans())
def test_no_data_cells_are_left_out_of_every_window(data, op, skip_nan):
    x, options, spec = data.draw(pooling_case(nan=skip_nan))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = np.where(rng.random(x.shape) < 0.4, -9999.0, x)  # holes, and windows of holes only
    params = {"nodata": -9999.0, "skip_nan": skip_nan}
    if op in ("avg", "lp"):
        params["count_pad"] = data.draw(st.booleans())
    y = poolcli.forward(x, op, spec=spec, **params)
    geometry = reference_geometry(x.shape, options)
    grad = np.arange(1, y.size + 1, dtype=np.float64).reshape(y.shape)
    want, dx_want, idx_want = reference.pool(x, op, grad=grad, **geometry, **params)
    np.testing.assert_allclose(y, want, rtol=1e-9, atol=1e-12)
    if op != "mode":
        dx = poolcli.backward(x, grad, op, spec=spec, **params)
        np.testing.assert_allclose(dx, dx_want, rtol=1e-9, atol=1e-9)
        assert not dx[x == -9999.0].any()  # the holes receive nothing
    if op in ("max", "min"):
        np.testing.assert_array_equal(poolcli.forward(x, op, spec=spec, return_indices=True, **params)[1], idx_want)


def test_a_raster_with_holes_averages_as_gdal(tmp_path):
    """GDAL's -r average leaves nodata out of each window; a window of holes stays a hole."""
    x = np.array([[1.0, -1, 3, 5], [-1, -1, 7, 9], [-1, -1, 2, 2], [-1, -1, 2, 2]])
    np.save(tmp_path / "dem.npy", x)
    r = run_poolcli("forward", tmp_path / "dem.npy", "--op", "avg", "-k", "2", "--nodata", "-1", "-o", tmp_path / "y.npy")
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), [[1.0, 6.0], [-1.0, 2.0]])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dims=st.integers(1, 2), groups=st.sampled_from([1, 2]))
def test_deconv_matches_the_oracle(data, dims, groups):
    x, w, b, geometry = deconv_case(data.draw, dims, groups)
    rng = np.random.default_rng(0)
    options = dict(weights=w, bias=b, **geometry)
    y = poolcli.forward(x, "deconv", **options)
    grad = rng.normal(size=y.shape)
    want, dx, dw, db = reference.deconv(x, w, b, geometry["stride"], geometry["padding"], geometry["output_padding"],
                                        geometry["dilation"], groups, grad)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    grads = poolcli.gradients(x, grad, "deconv", **options)
    for name, expected in (("x", dx), ("weights", dw), ("bias", db)):
        np.testing.assert_allclose(grads[name], expected, rtol=1e-10, atol=1e-12, err_msg=name)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dims=st.integers(1, 3), bias=st.booleans(), dtype=st.sampled_from(["float64", "float32"]),
       runs=st.booleans())
def test_deconv_whose_kernel_tiles_the_output_matches_the_oracle(data, dims, bias, dtype, runs):
    """stride = kernel: the taps' product written into their strided views of the output (two batch axes here),
    for all samples at once or one sample at a time."""
    kernel = tuple(data.draw(st.lists(st.integers(1, 3), min_size=dims, max_size=dims)))
    sides = tuple(data.draw(st.lists(st.integers(1, 4), min_size=dims, max_size=dims)))
    c_in, c_out = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    rng = np.random.default_rng(dims)
    x = rng.normal(size=(2, 3, c_in, *sides)).astype(dtype)
    w = rng.normal(size=(c_in, c_out, *kernel))
    b = rng.normal(size=c_out) if bias else None
    with mock.patch("poolcli.engine.deconv._PRODUCT_BYTES", 1 if runs else 1 << 21):
        y = poolcli.forward(x, "deconv", weights=w, bias=b, stride=kernel, dims=dims)
        grad = rng.normal(size=y.shape).astype(dtype)
        got = poolcli.backward(x, grad, "deconv", weights=w, bias=b, stride=kernel, dims=dims)
    want, dx, _, _ = reference.deconv(x.reshape(6, c_in, *sides), w, b, kernel, (0,) * dims, (0,) * dims,
                                      (1,) * dims, grad=grad.reshape(6, *y.shape[2:]))
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y, want.reshape(2, 3, *want.shape[1:]), rtol=tol, atol=tol)
    np.testing.assert_allclose(got, dx.reshape(x.shape), rtol=tol, atol=tol)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), how=st.sampled_from(["half-pixel", "pytorch-half-pixel", "align-corners", "asymmetric",
                                            "tf-half-pixel-for-nn"]),
       rounding=st.sampled_from(["round-prefer-floor", "round-prefer-ceil", "floor", "ceil"]))
def test_resize_nearest_coordinates_match_the_oracle(data, how, rounding):
    sides = (data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7)))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=(2, *sides))
    scales = tuple(data.draw(st.sampled_from([0.5, 0.6, 0.75, 1.5, 2.0, 3.0])) for _ in range(2))
    outs = tuple(int(np.floor(n * s)) for n, s in zip(sides, scales))
    if min(outs) < 1:
        return
    y = poolcli.forward(x, "upsample", scale=scales, coordinates=how, nearest=rounding)
    np.testing.assert_array_equal(y, reference.resize_nearest(x, outs, scales, how, rounding))


def test_tensor_indices_are_the_plane_indices_plus_each_planes_offset():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4))
    _, plane = poolcli.forward(x, kernel=2, return_indices=True)
    _, tensor = poolcli.forward(x, kernel=2, return_indices=True, index_layout="tensor")
    np.testing.assert_array_equal(tensor - plane, np.broadcast_to((np.arange(6) * 16).reshape(2, 3, 1, 1), plane.shape))
    _, column = poolcli.forward(x, kernel=2, return_indices=True, storage_order="column")
    rows, cols = np.divmod(plane, 4)
    np.testing.assert_array_equal(column, cols * 4 + rows)
