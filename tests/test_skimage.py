"""skimage's ``block_reduce`` as an outside oracle for median pooling (stride equal to kernel);
skipped when scikit-image is not installed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli

measure = pytest.importorskip("skimage.measure")


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_median_matches_block_reduce(data):
    dims = data.draw(st.integers(1, 3))
    kernel = tuple(data.draw(st.lists(st.integers(1, 4), min_size=dims, max_size=dims)))
    blocks = tuple(data.draw(st.lists(st.integers(1, 4), min_size=dims, max_size=dims)))
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    dtype = data.draw(st.sampled_from(["float64", "float32", "int16", "uint8"]))
    shape = lead + tuple(k * b for k, b in zip(kernel, blocks))
    seed = data.draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).integers(0, 9, size=shape).astype(dtype)  # small values: many ties
    y = poolcli.forward(x, "median", kernel=kernel, dims=dims)
    expected = measure.block_reduce(x, (1,) * len(lead) + kernel, np.median)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert y.dtype == expected.dtype


def test_median_of_a_nan_window_is_nan_as_numpy_says():
    x = np.array([[1.0, np.nan, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    y = poolcli.forward(x, "median", kernel=2)
    np.testing.assert_array_equal(y, measure.block_reduce(x, (2, 2), np.median))
