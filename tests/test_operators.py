"""kmax, unpool, upsample, lrn and bilinear against the plain-loop oracle, over random shapes and options."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli
from poolcli import UsageError
from poolcli.engine import blocks
from poolcli.errors import GeometryError
from tests import reference

CASES = settings(max_examples=120, deadline=None)


def small_array(draw, shape, dtype="float64", low=-3, high=3):
    size = math.prod(shape)
    values = draw(st.lists(st.integers(low, high), min_size=size, max_size=size))
    return np.array(values, dtype=dtype).reshape(shape)


@pytest.mark.parametrize("line", [[-np.inf, 5, -np.inf], [np.nan, -np.inf, -np.inf, np.nan], [-np.inf] * 4,
                                  [np.iinfo(np.int64).min, 3, np.iinfo(np.int64).min], [0, 0, 0]])
def test_kmax_keeps_every_position_once_when_values_repeat_at_the_bottom(line):
    """All of a line kept: every position once, in order, though nothing is below -inf or int64's minimum."""
    x = np.array([line], dtype=np.int64 if isinstance(line[0], int) else np.float64)
    n = len(line)
    grad = np.arange(1.0, n + 1)[None]
    np.testing.assert_array_equal(poolcli.backward(x, grad, "kmax", k=n), grad)
    np.testing.assert_array_equal(poolcli.forward(x, "kmax", k=n), x)


@CASES
@given(data=st.data())
def test_kmax_matches_the_oracle(data):
    shape = tuple(data.draw(st.lists(st.integers(1, 11), min_size=1, max_size=3)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(1, shape[axis]))  # up to 8 by argmax passes, more by a partition
    dtype = data.draw(st.sampled_from(["float64", "int32", "float32", "uint8", "int64"]))
    x = small_array(data.draw, shape, dtype, low=0 if dtype == "uint8" else -3)
    for special in ([np.nan, -np.inf, np.inf] if dtype == "float64" else [np.iinfo(np.int64).min]
                    if dtype == "int64" else []):  # NaN largest; a value nothing is below
        for at in data.draw(st.lists(st.integers(0, x.size - 1), max_size=4)):
            x.ravel()[at] = special
    ties = data.draw(st.sampled_from(["first", "all", "split"]))
    out_shape = list(shape)
    out_shape[axis] = k
    grad = small_array(data.draw, tuple(out_shape), "float64", 1, 4)
    y = poolcli.forward(x, "kmax", k=k, axis=axis)
    want, dx_want = reference.kmax(x, k, axis, grad, ties)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, want)
    dx = poolcli.backward(x, grad, "kmax", k=k, axis=axis, ties=ties)
    assert dx.dtype == (np.float32 if dtype == "float32" else np.float64)
    np.testing.assert_allclose(dx, dx_want, rtol=1e-6 if dtype == "float32" else 1e-12)


def test_kmax_on_columns_is_the_top_two_of_each_column():
    x = np.array([[3, 1, 4, 1], [5, 9, 2, 6], [5, 3, 5, 8], [9, 7, 9, 3]])
    y = poolcli.forward(x, "kmax", k=2, axis=0)
    assert y.tolist() == [[5, 9, 5, 6], [9, 7, 9, 8]]


@CASES
@given(data=st.data())
def test_unpool_inverts_the_indices_of_max_pooling(data):
    dims = data.draw(st.integers(1, 3))
    lead = tuple(data.draw(st.lists(st.integers(1, 2), max_size=2)))
    k = data.draw(st.integers(1, 3))
    s = data.draw(st.integers(1, 3))
    sides = tuple(data.draw(st.lists(st.integers(k, k + 5), min_size=dims, max_size=dims)))
    x = small_array(data.draw, lead + sides, "float64", -9, 9)
    try:
        y, idx = poolcli.forward(x, "max", return_indices=True, kernel=k, stride=s, dims=dims)
    except GeometryError:
        return
    target = tuple(data.draw(st.integers(n, n + 2)) for n in sides)
    up = poolcli.forward(y, "unpool", indices=idx, output_size=target, dims=dims)
    grad = small_array(data.draw, lead + target, "float64", -4, 4)
    want, dv_want = reference.unpool(y, idx, target, grad)
    np.testing.assert_array_equal(up, want)
    np.testing.assert_array_equal(poolcli.backward(y, grad, "unpool", indices=idx, output_size=target, dims=dims),
                                  dv_want)


def test_unpool_size_follows_the_geometry_as_pytorch():
    x = np.arange(25.0).reshape(5, 5)
    y, idx = poolcli.forward(x, kernel=3, stride=2, padding=1, return_indices=True)
    up = poolcli.forward(y, "unpool", indices=idx, kernel=3, stride=2, padding=1)
    assert up.shape == (5, 5)  # (3 - 1) * 2 - 2 + 3 = 5
    assert set(np.flatnonzero(up)) == set(idx.ravel()) and (up[up != 0] == x[up != 0]).all()


@pytest.mark.parametrize("indices,message", [
    (np.array([[0, 99]]), "outside the unpooled plane"),
    (np.array([[0, -1]]), "outside the unpooled plane"),
    (np.array([[0, 1, 2]]), "shape"),
    (np.array([[0.0, 1.0]]), "whole numbers"),
])
def test_unpool_refuses_bad_indices(indices, message):
    with pytest.raises(UsageError, match=message):
        poolcli.forward(np.array([[1.0, 2.0]]), "unpool", indices=indices, kernel=2)


@CASES
@given(data=st.data())
def test_upsample_matches_the_oracle(data):
    dims = data.draw(st.integers(1, 3))
    lead = tuple(data.draw(st.lists(st.integers(1, 2), max_size=2)))
    sides = tuple(data.draw(st.lists(st.integers(1, 5), min_size=dims, max_size=dims)))
    mode = data.draw(st.sampled_from(["nearest", "bilinear"]))
    align = mode == "bilinear" and data.draw(st.booleans())
    x = small_array(data.draw, lead + sides, data.draw(st.sampled_from(["float64", "int16"])), -9, 9)
    if data.draw(st.booleans()):
        scales = tuple(data.draw(st.sampled_from([0.5, 1, 1.5, 2, 2.5, 3])) for _ in range(dims))
        outs = tuple(math.floor(n * f) for n, f in zip(sides, scales))
        if min(outs) < 1:
            return
        options = {"scale": scales}
        ref_scales = list(scales)
    else:
        outs = tuple(data.draw(st.integers(1, 8)) for _ in range(dims))
        options = {"output_size": outs}
        ref_scales = None
    grad = small_array(data.draw, lead + outs, "float64", -3, 3)
    y = poolcli.forward(x, "upsample", mode=mode, align_corners=align, dims=dims, **options)
    want, dx_want = reference.upsample(x, dims, outs, ref_scales, mode, align, grad)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    dx = poolcli.backward(x, grad, "upsample", mode=mode, align_corners=align, dims=dims, **options)
    np.testing.assert_allclose(dx, dx_want, rtol=1e-12, atol=1e-12)


@CASES
@given(data=st.data())
def test_lrn_matches_the_oracle(data):
    dims = data.draw(st.integers(1, 2))
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=dims + 1, max_size=dims + 2)))
    channels_last = data.draw(st.booleans())
    size = data.draw(st.integers(1, 6))
    alpha = data.draw(st.sampled_from([1e-4, 0.1, 1.0]))
    beta = data.draw(st.sampled_from([0.75, 0.5, 1.0, 2.0]))
    bias = data.draw(st.sampled_from([1.0, 2.0, 0.5]))
    x = small_array(data.draw, shape, "float64", -4, 4) / 2
    grad = small_array(data.draw, shape, "float64", -3, 3)
    options = dict(size=size, alpha=alpha, beta=beta, bias=bias, dims=dims, channels_last=channels_last)
    axis = len(shape) - 1 if channels_last else len(shape) - dims - 1
    want, dx_want = reference.lrn(x, size, alpha, beta, bias, axis, grad)
    np.testing.assert_allclose(poolcli.forward(x, "lrn", **options), want, rtol=1e-12)
    np.testing.assert_allclose(poolcli.backward(x, grad, "lrn", **options), dx_want, rtol=1e-10, atol=1e-12)


@CASES
@given(data=st.data())
def test_bilinear_matches_the_oracle(data):
    samples = data.draw(st.integers(1, 3))
    c, c2 = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    h, w = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    with_other = data.draw(st.booleans())
    signed, l2 = data.draw(st.booleans()), data.draw(st.booleans())
    x = small_array(data.draw, (samples, c, h, w), "float64", -3, 3)
    y = small_array(data.draw, (samples, c2, h, w), "float64", -3, 3) if with_other else None
    options = dict(signed_sqrt=signed, l2_normalize=l2)
    cw = c2 if with_other else c
    grad = small_array(data.draw, (samples, c, cw), "float64", -2, 2)
    z = poolcli.forward(x, "bilinear", other=y, **options)
    grads = poolcli.backward(x, grad, "bilinear", other=y, **options)
    dx, dy = grads if with_other else (grads, None)
    for n in range(samples):
        want, dx_want, dy_want = reference.bilinear(x[n].reshape(c, -1), None if y is None else y[n].reshape(c2, -1),
                                                    signed, l2, grad[n])
        np.testing.assert_allclose(z[n], want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx[n].reshape(c, -1), dx_want, rtol=1e-9, atol=1e-12)
        if with_other:
            np.testing.assert_allclose(dy[n].reshape(c2, -1), dy_want, rtol=1e-9, atol=1e-12)


def test_bilinear_channels_last_agrees_with_channels_first():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5))
    first = poolcli.forward(x, "bilinear", signed_sqrt=True)
    last = poolcli.forward(np.moveaxis(x, 1, -1), "bilinear", signed_sqrt=True, channels_last=True)
    np.testing.assert_allclose(first, last, rtol=1e-12)
    assert first.shape == (2, 3, 3)


@pytest.mark.parametrize("op,options,error,message", [
    ("kmax", {"k": 5}, GeometryError, "holds only 4"),
    ("kmax", {"axis": 3}, UsageError, "axis=3"),
    ("upsample", {}, UsageError, "needs scale"),
    ("upsample", {"scale": 2, "output_size": 3}, UsageError, "not both"),
    ("upsample", {"scale": 0.1}, GeometryError, "size 0"),
    ("upsample", {"scale": (2, 2, 2)}, GeometryError, "3 values"),
    ("lrn", {}, GeometryError, "across channels"),
    ("bilinear", {}, GeometryError, "across channels"),
    ("unpool", {}, UsageError, "needs the indices of the max pooling: indices=…"),
])
def test_new_operators_explain_bad_options(op, options, error, message):
    with pytest.raises(error, match=message):
        poolcli.forward(np.ones((4, 4)), op, **options)


@pytest.mark.parametrize("op,options", [
    ("upsample", {"scale": 2, "mode": "bilinear"}),
    ("upsample", {"output_size": (3, 5)}),
    ("lrn", {"size": 3}),
])
def test_channels_last_is_the_same_operator_on_moved_axes(op, options):
    x = np.random.default_rng(4).normal(size=(2, 3, 4, 5))
    g = np.random.default_rng(5).normal(size=poolcli.forward(x, op, **options).shape)
    first = poolcli.forward(x, op, **options)
    last = poolcli.forward(np.moveaxis(x, 1, -1), op, channels_last=True, **options)
    np.testing.assert_allclose(np.moveaxis(last, -1, 1), first, rtol=1e-12)
    dx = poolcli.backward(x, g, op, **options)
    dx_last = poolcli.backward(np.moveaxis(x, 1, -1), np.moveaxis(g, 1, -1), op, channels_last=True, **options)
    np.testing.assert_allclose(np.moveaxis(dx_last, -1, 1), dx, rtol=1e-12)


@pytest.mark.parametrize("scale", [2, (3, 2), (1, 2), (2, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8", "float16"])
def test_nearest_upsampling_of_many_channels_last_is_replicated_in_place(scale, dtype):
    """Nearest upsampling by whole factors of a channels-last input with many channels is replicated in its own
    memory order: the values of the channels-first result, laid out channels-last, whole or in blocks."""
    x = (np.random.default_rng(6).normal(size=(3, 20, 5, 7)) * 30 + 60).astype(dtype)
    first = poolcli.forward(x, "upsample", scale=scale)
    last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    with mock.patch.object(blocks, "BLOCK_BYTES", 64):
        for got in (poolcli.forward(last, "upsample", scale=scale, channels_last=True),
                    poolcli.forward(last, "upsample", scale=scale, channels_last=True, threads=3)):
            assert got.dtype == first.dtype and got.flags.c_contiguous
            np.testing.assert_array_equal(np.moveaxis(got, -1, 1), first)
    whole = poolcli.forward(last, "upsample", scale=scale, channels_last=True)
    assert whole.flags.c_contiguous
    np.testing.assert_array_equal(np.moveaxis(whole, -1, 1), first)


@pytest.mark.parametrize("dtype", ["float64", "int64", "float32", "uint16", "int8", "float16", "bool"])
@pytest.mark.parametrize("factors", [(2, 2), (3, 2), (2, 1), (1, 3), (2,)])
def test_replicating_copies_every_cell_bit_for_bit(dtype, factors):
    """Nearest upsampling by whole factors is a copy: every byte of every cell repeated, NaN payloads (a
    signalling NaN too), -0.0 and infinities as they are, against np.repeat along each axis."""
    from poolcli.engine.upsample import replicate

    rng = np.random.default_rng(7)
    x = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype) if dtype != "bool" else rng.random((3, 4, 5)) < 0.5
    if x.dtype.kind == "f":  # NaNs quiet and signalling with a payload, a negative one, -0.0 and infinities
        nans = {2: [0x7E01, 0x7C01, 0xFE00], 4: [0x7FC00001, 0x7F800001, 0xFFC00000],
                8: [0x7FF8000000000001, 0x7FF0000000000001, 0xFFF8000000000000]}[x.itemsize]
        x.reshape(-1).view(f"u{x.itemsize}")[:3] = nans
        x.reshape(-1)[3:7] = [-0.0, np.inf, -np.inf, 0.0]
        assert np.isnan(x.reshape(-1)[:3]).all()
    first = x.ndim - len(factors)
    want = x
    for axis, f in enumerate(factors):
        want = np.repeat(want, f, axis=first + axis)
    got = replicate(x, first, factors)
    assert got.dtype == x.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_unpool_channels_last_uses_the_channels_last_indices():
    x = np.random.default_rng(6).normal(size=(1, 6, 6, 3))
    y, idx = poolcli.forward(x, kernel=2, return_indices=True, channels_last=True)
    up = poolcli.forward(y, "unpool", indices=idx, kernel=2, channels_last=True)
    assert up.shape == x.shape
    np.testing.assert_array_equal(up[up != 0], x[up != 0])
    assert np.count_nonzero(up) == y.size


@settings(max_examples=150, deadline=None)
@given(dims=st.integers(1, 3), data=st.data(),
       dtype=st.sampled_from(["float32", "float64", "float16", "int16", "uint8"]), channels_last=st.booleans(),
       runs=st.booleans())
def test_nearest_by_whole_factors_repeats_every_cell(dims, data, dtype, channels_last, runs):
    """Nearest upsampling by whole factors (each cell written once into its block of repeats, in runs of rows
    or all at once) is np.repeat, bit for bit (-0.0, infinities and NaN moved as they are)."""
    sizes = data.draw(st.lists(st.integers(1, 5), min_size=dims, max_size=dims))
    factors = data.draw(st.lists(st.integers(1, 4), min_size=dims, max_size=dims))
    x = (np.random.default_rng(len(sizes)).normal(size=(2, 3, *sizes)) * 50).astype(dtype)
    if x.dtype.kind == "f":
        x.flat[:4] = [-0.0, np.inf, -np.inf, np.nan][:x.size]
    expected = x.astype(np.float64) if x.dtype.kind in "iu" else x  # integers upsample to float64
    for axis, f in enumerate(factors):
        expected = np.repeat(expected, f, axis=2 + axis)
    if channels_last:
        x, expected = np.moveaxis(x, 1, -1), np.moveaxis(expected, 1, -1)
    with mock.patch("poolcli.engine.upsample._RUN_BYTES", 1 if runs else 1 << 19):
        y = poolcli.forward(x, "upsample", scale=tuple(float(f) for f in factors), dims=dims,
                            channels_last=channels_last)
    assert y.dtype == expected.dtype
    bits = f"u{y.dtype.itemsize}"
    np.testing.assert_array_equal(y.view(bits), np.ascontiguousarray(expected).view(bits))


@settings(max_examples=100, deadline=None)
@given(dims=st.integers(1, 3), data=st.data(), dtype=st.sampled_from(["float32", "float64"]))
def test_nearest_by_whole_factors_backward_sums_each_block_of_repeats(dims, data, dtype):
    sizes = data.draw(st.lists(st.integers(1, 5), min_size=dims, max_size=dims))
    factors = data.draw(st.lists(st.integers(1, 4), min_size=dims, max_size=dims))
    x = np.zeros((2, 3, *sizes), dtype=dtype)
    grad = np.random.default_rng(dims).integers(-8, 8, size=(2, 3, *(n * f for n, f in zip(sizes, factors))))
    expected = grad.reshape((2, 3, *(v for n, f in zip(sizes, factors) for v in (n, f))))
    expected = expected.sum(axis=tuple(3 + 2 * i for i in range(dims)))  # small integers: exact in any order
    dx = poolcli.backward(x, grad.astype(dtype), "upsample", scale=tuple(float(f) for f in factors), dims=dims)
    assert dx.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("mode, antialias", [("bilinear", False), ("bilinear", True), ("bicubic", True)])
def test_an_axis_whose_size_does_not_change_is_left_as_it_is(mode, antialias):
    """PyTorch's linear and antialiased kernels skip an axis whose output size is its input size, whatever the
    factor says: (2, 3) by (1.3, 2) is (2, 6) with the rows untouched, as by (1, 2)."""
    x = np.random.default_rng(8).normal(size=(2, 3, 2, 3))
    y = poolcli.forward(x, "upsample", scale=(1.3, 2.0), mode=mode, antialias=antialias)
    np.testing.assert_array_equal(y, poolcli.forward(x, "upsample", scale=(1.0, 2.0), mode=mode, antialias=antialias))
    grad = np.random.default_rng(9).normal(size=y.shape)
    np.testing.assert_array_equal(poolcli.backward(x, grad, "upsample", scale=(1.3, 2.0), mode=mode, antialias=antialias),
                                  poolcli.backward(x, grad, "upsample", scale=(1.0, 2.0), mode=mode, antialias=antialias))


@settings(max_examples=150, deadline=None)
@given(out=st.integers(3, 12), factor=st.integers(2, 4), axis=st.integers(0, 2), data=st.data(),
       dtype=st.sampled_from(["float32", "float64"]))
def test_downscaling_by_a_whole_factor_is_the_gathered_weighted_sum(out, factor, axis, data, dtype):
    """Antialiased, bicubic and area downscaling by 2, 3, 4 (the outputs inside the band as weighted strided
    views, along the last axis runs of its phases; the edges gathered) give Σ x[idx]·w over the axis's taps,
    bit for bit, along any axis."""
    from poolcli.engine.upsample import _gather, antialiased_axis, apply_axis, area_axis, bicubic_axis

    n = out * factor
    make = data.draw(st.sampled_from([
        lambda: antialiased_axis(n, out, 1 / factor, False, "bilinear"),
        lambda: antialiased_axis(n, out, 1 / factor, False, "bicubic"),
        lambda: bicubic_axis(n, out, 1 / factor, False), lambda: area_axis(n, out)]))
    ip = make()
    assert ip.banded is not None or out < 12  # wide enough: the band is taken
    shape = [3, 4, 5]
    shape[axis] = n
    x = np.random.default_rng(out * factor).normal(size=shape).astype(dtype)
    want = _gather(x, axis, ip.idx, ip.w)
    np.testing.assert_array_equal(apply_axis(x, axis, ip), want)
