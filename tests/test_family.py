"""The pooling family against the plain-loop oracles (tests/reference.py): spp, stochastic and fractional
pooling, over hypothesis-drawn shapes and options."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli
from tests import reference

CASES = settings(max_examples=80, deadline=None)


@CASES
@given(data=st.data(), dims=st.integers(1, 3), reduce=st.sampled_from(["max", "avg"]),
       values=st.sampled_from(["normal", "ties", "nan"]))
def test_spp_concatenates_the_levels_adaptive_pools(data, dims, reduce, values):
    """Each level as its own adaptive pool; a max level whose windows are unions of a finer level's (1 and 2 of
    1,2,4 on 8 cells) is taken from that level's values and picks: the same values and the same first picks,
    on ties (few distinct values) and NaN too."""
    sides = [data.draw(st.integers(1, 5 if dims == 3 else 16)) for _ in range(dims)]
    levels = tuple(data.draw(st.lists(st.sampled_from([1, 2, 3, 4, 8]), min_size=1, max_size=3)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(2, 3, *sides)) if values == "normal" else rng.integers(0, 3, (2, 3, *sides)) * 1.0
    if values == "nan":
        x.flat[rng.integers(0, x.size, 3)] = np.nan
    y = poolcli.forward(x, "spp", levels=levels, reduce=reduce, dims=dims)
    grad = np.random.default_rng(1).normal(size=y.shape)
    want, dx_want = reference.spp(x, levels, reduce, dims, grad)
    assert y.shape == (2, 3 * sum(n**dims for n in levels))
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)  # sums in another order
    np.testing.assert_allclose(poolcli.backward(x, grad, "spp", levels=levels, reduce=reduce, dims=dims), dx_want,
                               rtol=1e-12, atol=1e-12)


def test_spp_gives_one_length_whatever_the_input_size():
    lengths = {poolcli.forward(np.ones((2, 5, h, w)), "spp").shape for h, w in [(7, 9), (13, 13), (32, 20)]}
    assert lengths == {(2, 5 * 21)}


def test_spp_of_a_plane_without_channels_is_one_vector_and_channels_last_is_read_as_such():
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 3))
    y = poolcli.forward(x, "spp", channels_last=True, levels=(1, 2))
    np.testing.assert_array_equal(y, poolcli.forward(np.moveaxis(x, -1, 1), "spp", levels=(1, 2)))
    assert poolcli.forward(x[0, :, :, 0], "spp", levels=(1, 2)).shape == (5,)


def test_stochastic_picks_in_proportion_to_the_values_and_the_seed_repeats_them():
    x = np.array([[1.0, 3.0]])
    picks = np.array([poolcli.forward(x, "stochastic", kernel=(1, 2), seed=s)[0, 0] for s in range(4000)])
    assert 0.72 < np.mean(picks == 3.0) < 0.78  # 3/4, within 4 standard errors (0.0068 each)
    big = np.random.default_rng(0).random((3, 4, 12, 12))
    assert np.array_equal(poolcli.forward(big, "stochastic", seed=9), poolcli.forward(big, "stochastic", seed=9))
    assert not np.array_equal(poolcli.forward(big, "stochastic", seed=9), poolcli.forward(big, "stochastic", seed=10))


def test_stochastic_sends_the_gradient_to_the_cell_forward_picked():
    x = np.random.default_rng(1).random((2, 3, 8, 8))
    y = poolcli.forward(x, "stochastic", kernel=2, seed=4)
    dx = poolcli.backward(x, None, "stochastic", kernel=2, seed=4)
    assert dx.sum() == y.size and set(np.unique(dx)) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.sort(x[dx == 1]), np.sort(y.ravel()))


def test_stochastic_refuses_negative_inputs_in_one_line(tmp_path):
    from tests.conftest import run_poolcli

    np.save(tmp_path / "x.npy", np.array([[1.0, -0.5], [2.0, 3.0]]))
    r = run_poolcli("forward", tmp_path / "x.npy", "--op", "stochastic", "-o", tmp_path / "y.npy")
    assert r.code == 1 and "must not be negative" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.npy").exists()


def test_visualize_shows_the_picks_forward_made_on_that_plane():
    from poolcli.engine import Params, WindowSpec
    from poolcli.render.scene import build_scene

    x = np.random.default_rng(2).random((2, 3, 6, 6))
    y = poolcli.forward(x, "stochastic", kernel=2, seed=3)
    scene = build_scene(x, WindowSpec(kernel=2), "stochastic", Params(seed=3), plane=(1, 2))
    np.testing.assert_array_equal(scene.y, y[1, 2])


@CASES
@given(data=st.data(), dims=st.integers(1, 3), ties=st.sampled_from(["first", "all", "split"]))
def test_fractional_matches_the_oracle_with_the_same_samples(data, dims, ties):
    sides = [data.draw(st.integers(2, 6 if dims == 3 else 10)) for _ in range(dims)]
    kernel = tuple(data.draw(st.integers(1, n - 1)) for n in sides)
    outs = tuple(data.draw(st.integers(1, n - k + 1)) for n, k in zip(sides, kernel))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = np.round(rng.normal(size=(2, 2, *sides)) * 2)  # ties
    samples = rng.random((2, 2, dims))
    options = dict(kernel=kernel, output_size=outs, samples=samples, dims=dims)
    y, idx = poolcli.forward(x, "fractional", return_indices=True, **options)
    grad = rng.normal(size=y.shape)
    want, dx_want, idx_want = reference.fractional(x, kernel, outs, samples, grad, ties)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(poolcli.forward(x, "fractional", **options), want)  # the values alone, by axes
    np.testing.assert_array_equal(idx, idx_want)
    np.testing.assert_allclose(poolcli.backward(x, grad, "fractional", ties=ties, **options), dx_want, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint8"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_fractional_by_axes_equals_the_windows_scan_with_nan(dtype, dims):
    """The values and indices found one axis at a time are those the tap-by-tap scan of every window picks
    (PyTorch's: the first greatest in row-major order, the last NaN), NaN included; integers stay integers."""
    rng = np.random.default_rng(dims)
    x = (rng.normal(size=(3, 2) + (9,) * dims) * 20).astype(dtype)
    if x.dtype.kind == "f":
        x[rng.random(x.shape) < 0.05] = np.nan
    options = dict(kernel=(3, 2, 2)[:dims], ratio=(0.6,), samples=rng.random((3, 2, dims)), dims=dims)
    y, idx = poolcli.forward(x, "fractional", return_indices=True, **options)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(poolcli.forward(x, "fractional", **options), y)
    op = poolcli.OPS["fractional"]
    plan = op.bind(x.shape, poolcli.WindowSpec(kernel=options["kernel"], dims=dims), poolcli.Params(ratio=(0.6,)),
                   samples=options["samples"])
    scanned, where, _, _ = op._select(x, plan)  # every tap of every window in scan order
    np.testing.assert_array_equal(y.reshape(scanned.shape), scanned)
    np.testing.assert_array_equal(idx.reshape(where.shape), where)


def test_fractional_ratio_seed_and_uneven_windows():
    x = np.random.default_rng(0).normal(size=(2, 3, 25, 25))
    y = poolcli.forward(x, "fractional", ratio=0.7, seed=1)
    assert y.shape == (2, 3, 17, 17)
    assert np.array_equal(y, poolcli.forward(x, "fractional", ratio=0.7, seed=1))
    assert not np.array_equal(y, poolcli.forward(x, "fractional", ratio=0.7, seed=2))
    from poolcli.engine.fractional import starts

    steps = np.diff(starts(np.array([0.3]), 25, 17, 2, np.dtype(np.float64))[0])
    assert set(steps.tolist()) == {1, 2}  # α = 23/16: steps of 1 and 2 alternate


def test_fractional_refuses_samples_of_the_wrong_shape_or_range():
    x = np.ones((2, 3, 8, 8))
    with pytest.raises(poolcli.UsageError, match="samples"):
        poolcli.forward(x, "fractional", ratio=0.5, samples=np.zeros((2, 3, 3)))
    with pytest.raises(poolcli.UsageError, match=r"\[0, 1\)"):
        poolcli.forward(x, "fractional", ratio=0.5, samples=np.ones((2, 3, 2)))


@CASES
@given(data=st.data())
def test_avgmax_concat_is_max_then_avg_along_the_channels(data):
    from tests.strategies import pooling_case

    x, _, spec = data.draw(pooling_case())
    y = poolcli.forward(x, "avgmax", spec=spec, concat=True)
    hi, mean = poolcli.forward(x, "max", spec=spec), poolcli.forward(x, "avg", spec=spec)
    lead = x.ndim - spec.bind(x.shape).dims
    want = np.concatenate([hi, mean], axis=lead - 1) if lead else np.stack([hi, mean])
    np.testing.assert_array_equal(y, want)
    grad = np.random.default_rng(0).normal(size=y.shape)
    g_hi, g_mean = np.split(grad, 2, axis=lead - 1 if lead else 0)
    if not lead:
        g_hi, g_mean = g_hi[0], g_mean[0]
    np.testing.assert_allclose(poolcli.backward(x, grad, "avgmax", spec=spec, concat=True),
                               poolcli.backward(x, g_hi, "max", spec=spec) + poolcli.backward(x, g_mean, "avg",
                                                                                              spec=spec), rtol=1e-12)


@CASES
@given(data=st.data(), q=st.floats(0, 1))
def test_quantile_is_numpys_quantile_of_each_tile(data, q):
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=(2, 3, 8, 6))
    y = poolcli.forward(x, "quantile", kernel=2, q=q)
    tiles = x.reshape(2, 3, 4, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 4, 3, 4)
    np.testing.assert_allclose(y, np.quantile(tiles, q, axis=-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(poolcli.forward(x, "quantile", kernel=2, q=0.5), poolcli.forward(x, "median", kernel=2),
                               rtol=1e-15, atol=1e-15)


@CASES
@given(data=st.data(), dims=st.integers(1, 3), size=st.integers(1, 4))
def test_lrn_within_a_channel_matches_the_oracle(data, dims, size):
    sides = [data.draw(st.integers(1, 4 if dims == 3 else 6)) for _ in range(dims)]
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=(2, *sides))
    options = dict(region="within", size=size, alpha=0.7, beta=0.75, bias=1.5, dims=dims)
    y = poolcli.forward(x, "lrn", **options)
    grad = np.random.default_rng(1).normal(size=y.shape)
    want, dx_want = reference.lrn_within(x, size, 0.7, 0.75, 1.5, dims, grad)
    np.testing.assert_allclose(y, want, rtol=1e-12)
    np.testing.assert_allclose(poolcli.backward(x, grad, "lrn", **options), dx_want, rtol=1e-10, atol=1e-12)


def test_lrn_within_reads_channels_last_as_such():
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 3))
    y = poolcli.forward(x, "lrn", region="within", size=3, channels_last=True)
    np.testing.assert_allclose(np.moveaxis(y, -1, 1),
                               poolcli.forward(np.moveaxis(x, -1, 1), "lrn", region="within", size=3), rtol=1e-15)


def test_visualize_region_is_lrns_region_or_the_crop_by_its_value(tmp_path):
    from tests.conftest import run_poolcli

    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(1, 3, 8, 8)))
    within = run_poolcli("visualize", tmp_path / "x.npy", "--op", "lrn", "--region", "within", "--size", "3")
    assert within.code == 0 and "within, size 3" in within.text, within.stderr
    crop = run_poolcli("visualize", tmp_path / "x.npy", "--op", "lrn", "--region", "0:4,0:4", "--size", "3")
    assert crop.code == 0 and "across, size 3" in crop.text, crop.stderr
    bad = run_poolcli("forward", tmp_path / "x.npy", "--op", "lrn", "--region", "inside")
    assert bad.code == 2 and "across" in bad.stderr
