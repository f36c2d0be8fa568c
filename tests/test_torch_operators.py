"""kmax, unpool, upsample and lrn against torch (topk, max_unpool, interpolate, local_response_norm); skipped
without torch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli

torch = pytest.importorskip("torch")
F = torch.nn.functional
CASES = settings(max_examples=100, deadline=None)


def _grad(fn, x: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy(x).requires_grad_(True)
    y = fn(t)
    y.backward(torch.from_numpy(grad))
    return y.detach().numpy(), t.grad.numpy()


def _floats(draw, shape, distinct=False):
    n = int(np.prod(shape))
    if distinct:  # topk's tie order is unspecified: compare on distinct values
        return np.random.default_rng(draw(st.integers(0, 10**6))).permutation(n).reshape(shape).astype(np.float64)
    return np.random.default_rng(draw(st.integers(0, 10**6))).normal(size=shape)


@CASES
@given(data=st.data())
def test_kmax_is_topk_in_original_order(data):
    shape = tuple(data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=3)))
    axis = data.draw(st.integers(0, len(shape) - 1))
    k = data.draw(st.integers(1, shape[axis]))
    x = _floats(data.draw, shape, distinct=True)
    out_shape = list(shape)
    out_shape[axis] = k
    g = _floats(data.draw, tuple(out_shape))

    def topk_in_order(t):
        idx = torch.topk(t, k, dim=axis).indices.sort(dim=axis).values
        return torch.gather(t, axis, idx)

    want, dx_want = _grad(topk_in_order, x, g)
    np.testing.assert_array_equal(poolcli.forward(x, "kmax", k=k, axis=axis), want)
    np.testing.assert_array_equal(poolcli.backward(x, g, "kmax", k=k, axis=axis), dx_want)


@CASES
@given(data=st.data())
def test_unpool_is_max_unpool(data):
    dims = data.draw(st.integers(1, 3))
    k = data.draw(st.integers(1, 3))
    s = data.draw(st.integers(1, 3))
    pad = data.draw(st.integers(0, k // 2))
    sides = [data.draw(st.integers(k, k + (4 if dims == 3 else 7))) for _ in range(dims)]
    x = _floats(data.draw, (2, 3, *sides))
    xt = torch.from_numpy(x)
    pool = getattr(F, f"max_pool{dims}d")
    unpool = getattr(F, f"max_unpool{dims}d")
    y, idx = pool(xt, k, s, pad, return_indices=True)
    given_size = data.draw(st.booleans())
    size = list(x.shape[2:]) if given_size else None
    options = {"output_size": tuple(size)} if given_size else {"kernel": k, "stride": s, "padding": pad}
    try:
        shape = unpool(y, idx, k, s, pad, output_size=size).shape
    except RuntimeError:  # the implied size is smaller than the pooled input: both refuse
        with pytest.raises(poolcli.UsageError, match="outside the unpooled plane"):
            poolcli.forward(y.numpy(), "unpool", indices=idx.numpy(), dims=dims, **options)
        return
    if 0 in shape:  # torch makes an empty plane; poolcli says the size does not work
        with pytest.raises(poolcli.GeometryError, match="size 0"):
            poolcli.forward(y.numpy(), "unpool", indices=idx.numpy(), dims=dims, **options)
        return
    g = _floats(data.draw, tuple(shape))
    want, dy_want = _grad(lambda t: unpool(t, idx, k, s, pad, output_size=size), y.numpy(), g)
    got = poolcli.forward(y.numpy(), "unpool", indices=idx.numpy(), dims=dims, **options)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(poolcli.backward(y.numpy(), g, "unpool", indices=idx.numpy(), dims=dims, **options),
                                  dy_want)


@CASES
@given(data=st.data())
def test_upsample_is_interpolate(data):
    dims = data.draw(st.integers(1, 3))
    sides = [data.draw(st.integers(1, 6 if dims == 3 else 12)) for _ in range(dims)]
    mode = data.draw(st.sampled_from(["nearest", "bilinear"]))
    torch_mode = mode if mode == "nearest" else {1: "linear", 2: "bilinear", 3: "trilinear"}[dims]
    align = mode == "bilinear" and data.draw(st.booleans())
    x = _floats(data.draw, (1, 2, *sides))
    if data.draw(st.booleans()):
        scale = data.draw(st.sampled_from([0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0]))
        if min(int(np.floor(n * scale)) for n in sides) < 1:
            return
        ours, theirs = {"scale": scale}, {"scale_factor": scale}
    else:
        size = [data.draw(st.integers(1, 14)) for _ in range(dims)]
        ours, theirs = {"output_size": tuple(size)}, {"size": size}
    extra = {"align_corners": align} if mode == "bilinear" else {}
    y = F.interpolate(torch.from_numpy(x), mode=torch_mode, **theirs, **extra)
    g = _floats(data.draw, tuple(y.shape))
    want, dx_want = _grad(lambda t: F.interpolate(t, mode=torch_mode, **theirs, **extra), x, g)
    got = poolcli.forward(x, "upsample", mode=mode, align_corners=align, dims=dims, **ours)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(poolcli.backward(x, g, "upsample", mode=mode, align_corners=align, dims=dims, **ours),
                               dx_want, rtol=1e-10, atol=1e-12)


@CASES
@given(data=st.data())
def test_lrn_is_local_response_norm(data):
    dims = data.draw(st.integers(1, 3))
    sides = [data.draw(st.integers(1, 4)) for _ in range(dims)]
    channels = data.draw(st.integers(1, 8))
    size = data.draw(st.integers(1, 7))
    alpha = data.draw(st.sampled_from([1e-4, 1e-2, 0.5]))
    beta = data.draw(st.sampled_from([0.75, 0.5, 1.5]))
    bias = data.draw(st.sampled_from([1.0, 2.0]))
    x = _floats(data.draw, (2, channels, *sides)) * 3
    g = _floats(data.draw, x.shape)
    want, dx_want = _grad(lambda t: F.local_response_norm(t, size, alpha, beta, bias), x, g)
    options = dict(size=size, alpha=alpha, beta=beta, bias=bias, dims=dims)
    np.testing.assert_allclose(poolcli.forward(x, "lrn", **options), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(poolcli.backward(x, g, "lrn", **options), dx_want, rtol=1e-10, atol=1e-13)


def test_lrn_defaults_are_pytorchs():
    x = np.random.default_rng(0).normal(size=(1, 7, 3, 3)) * 40
    want = F.local_response_norm(torch.from_numpy(x), 5).numpy()
    np.testing.assert_allclose(poolcli.forward(x, "lrn"), want, rtol=1e-12)
