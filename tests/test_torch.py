"""Differential tests against torch.nn.functional (forward and autograd backward); skipped without torch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import poolcli

torch = pytest.importorskip("torch")
F = torch.nn.functional


@st.composite
def torch_case(draw, max_dims: int = 3, padded: bool = True, ceil_mode: bool = True):
    """An input and window options torch takes; ``padded``/``ceil_mode`` False draws none of those (for torch
    functions without them), so that no drawn case is thrown away."""
    dims = draw(st.integers(1, max_dims))
    sides = [draw(st.integers(2, 7 if dims == 3 else 10)) for _ in range(dims)]
    kernel = [draw(st.integers(1, 4)) for _ in range(dims)]
    stride = [draw(st.integers(1, 3)) for _ in range(dims)]
    pad = [draw(st.integers(0, k // 2)) if padded else 0 for k in kernel]
    dilation = [draw(st.integers(1, 2)) for _ in range(dims)]
    ceil = draw(st.booleans()) if ceil_mode else False
    x = np.array(draw(st.lists(st.integers(-4, 4), min_size=2 * int(np.prod(sides)), max_size=2 * int(np.prod(sides)))),
                 dtype=np.float64).reshape([1, 2, *sides])
    options = dict(kernel=tuple(kernel), stride=tuple(stride), padding=tuple(pad), ceil=ceil, dims=dims)
    try:
        poolcli.geometry(x.shape, **options)
    except poolcli.UsageError:
        assume(False)
    return x, options, dilation


def _pool(dims, name):
    return getattr(F, f"{name}{dims}d")


def _torch_grad(fn, x, grad):
    t = torch.from_numpy(x).requires_grad_(True)
    y = fn(t)
    y.backward(torch.from_numpy(grad))
    return y.detach().numpy(), t.grad.numpy()


@settings(max_examples=200, deadline=None)
@given(case=torch_case(), use_dilation=st.booleans())
def test_max_pool_matches_torch_forward_backward_and_indices(case, use_dilation):
    x, options, dilation = case
    dims = options["dims"]
    if use_dilation:
        options = dict(options, dilation=tuple(dilation))
    d = options.get("dilation", 1)
    try:
        ref = _pool(dims, "max_pool")(torch.from_numpy(x), options["kernel"], options["stride"], options["padding"],
                                      d, options["ceil"], return_indices=True)
    except RuntimeError:
        assume(False)
    try:
        y, idx = poolcli.forward(x, "max", return_indices=True, **options)
    except poolcli.UsageError:
        assume(False)
    np.testing.assert_array_equal(y, ref[0].numpy())
    np.testing.assert_array_equal(idx, ref[1].numpy())
    grad = np.random.default_rng(0).random(y.shape)
    _, dx = _torch_grad(lambda t: _pool(dims, "max_pool")(t, options["kernel"], options["stride"], options["padding"],
                                                          d, options["ceil"]), x, grad)
    np.testing.assert_allclose(poolcli.backward(x, grad, "max", **options), dx, rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(case=torch_case(), count_pad=st.booleans())
def test_avg_pool_matches_torch(case, count_pad):
    x, options, _ = case
    dims = options["dims"]
    fn = _pool(dims, "avg_pool")

    def run(t):
        return fn(t, options["kernel"], options["stride"], options["padding"], options["ceil"], count_pad)

    try:
        ref = run(torch.from_numpy(x))
    except RuntimeError:
        assume(False)
    y = poolcli.forward(x, "avg", count_pad=count_pad, **options)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-12)
    grad = np.random.default_rng(1).random(y.shape)
    _, dx = _torch_grad(run, x, grad)
    np.testing.assert_allclose(poolcli.backward(x, grad, "avg", count_pad=count_pad, **options), dx, rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(case=torch_case(max_dims=2, padded=False, ceil_mode=False), p=st.sampled_from([1.0, 2.0, 3.0]))
def test_lp_pool_matches_torch_on_positive_inputs(case, p):
    """torch's lp_pool has no padding, no ceil_mode and (before 2.2) no 3-D form: cases without them."""
    x, options, _ = case
    x = np.abs(x) + 0.5  # torch raises x to p without |x|; on positive inputs the two agree
    dims = options["dims"]
    fn = _pool(dims, "lp_pool")

    def run(t):
        if dims == 1:
            return fn(t, p, options["kernel"][0], options["stride"][0])
        return fn(t, p, options["kernel"], options["stride"])

    y = poolcli.forward(x, "lp", p=p, **options)
    np.testing.assert_allclose(y, run(torch.from_numpy(x)).numpy(), rtol=1e-10)
    grad = np.random.default_rng(2).random(y.shape)
    _, dx = _torch_grad(run, x, grad)
    np.testing.assert_allclose(poolcli.backward(x, grad, "lp", p=p, **options), dx, rtol=1e-9)


@settings(max_examples=150, deadline=None)
@given(dims=st.integers(1, 3), data=st.data(), op=st.sampled_from(["max", "avg"]))
def test_adaptive_pooling_matches_torch(dims, data, op):
    sides = [data.draw(st.integers(1, 9)) for _ in range(dims)]
    outs = [data.draw(st.integers(1, 11)) for _ in range(dims)]
    x = np.random.default_rng(3).integers(-3, 4, size=(2, *sides)).astype(np.float64)
    fn = _pool(dims, f"adaptive_{op}_pool")
    y = poolcli.forward(x, op, output_size=tuple(outs), dims=dims)
    grad = np.random.default_rng(4).random(y.shape)
    ref, dx = _torch_grad(lambda t: fn(t, outs), x, grad)
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    np.testing.assert_allclose(poolcli.backward(x, grad, op, output_size=tuple(outs), dims=dims), dx, rtol=1e-12)
