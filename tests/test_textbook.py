"""The textbook's and ONNX's last rows against the plain-loop oracles: weighted average pooling, and the
rest of issue "the last rows" as they land (deconvolution, no-data cells, index layouts, resize modes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli
from tests import reference
from tests.conftest import run_poolcli
from tests.strategies import pooling_case, reference_geometry

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
