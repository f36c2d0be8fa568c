"""The pooling family against the plain-loop oracles (tests/reference.py): spp, stochastic and fractional
pooling, over hypothesis-drawn shapes and options."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli
from tests import reference

CASES = settings(max_examples=80, deadline=None)


@CASES
@given(data=st.data(), dims=st.integers(1, 3), reduce=st.sampled_from(["max", "avg"]))
def test_spp_concatenates_the_levels_adaptive_pools(data, dims, reduce):
    sides = [data.draw(st.integers(1, 5 if dims == 3 else 8)) for _ in range(dims)]
    levels = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=(2, 3, *sides))
    y = poolcli.forward(x, "spp", levels=levels, reduce=reduce, dims=dims)
    grad = np.random.default_rng(1).normal(size=y.shape)
    want, dx_want = reference.spp(x, levels, reduce, dims, grad)
    assert y.shape == (2, 3 * sum(n**dims for n in levels))
    np.testing.assert_allclose(y, want, rtol=1e-12)
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
