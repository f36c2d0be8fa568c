"""The pooling family against PyTorch, through the command line where a user reaches it: avg --divisor
(``divisor_override``), gem (its formula, with the gradient to p), softpool (its reference formula),
fractional max-pooling with the same samples, and every ``interpolate`` mode. Skipped without torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import poolcli
from tests.conftest import run_poolcli
from tests.strategies import deconv_case

torch = pytest.importorskip("torch")
F = torch.nn.functional
CASES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _autograd(fn, x: np.ndarray, grad: np.ndarray, *more: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy(x).requires_grad_(True)
    y = fn(t, *more)
    y.backward(torch.from_numpy(grad))
    return y.detach().numpy(), t.grad.numpy()


@st.composite
def window_case(draw, padded: bool = True, least: int = 1):
    """(``least``..3)-D input (2, 2, sides…) with a kernel, stride and padding torch's pools take."""
    dims = draw(st.integers(least, 3))
    sides = [draw(st.integers(2, 6 if dims == 3 else 9)) for _ in range(dims)]
    kernel = [draw(st.integers(1, min(3, n))) for n in sides]
    stride = [draw(st.integers(1, 3)) for _ in range(dims)]
    pad = [draw(st.integers(0, k // 2)) if padded else 0 for k in kernel]
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=(2, 2, *sides))
    return x, dict(kernel=tuple(kernel), stride=tuple(stride), padding=tuple(pad), dims=dims)


def _flags(options: dict) -> list[str]:
    return ["-k", ",".join(map(str, options["kernel"])), "-s", ",".join(map(str, options["stride"])),
            "-p", ",".join(map(str, options["padding"])), "--dims", str(options["dims"])]


def _cli(tmp_path: Path, command: str, x: np.ndarray, *args: str, grad: np.ndarray | None = None,
         out: str = "y.npy") -> Path:
    np.save(tmp_path / "x.npy", x)
    extra = []
    if grad is not None:
        np.save(tmp_path / "g.npy", grad)
        extra = ["--grad", str(tmp_path / "g.npy")]
    r = run_poolcli(command, tmp_path / "x.npy", *args, *extra, "-o", tmp_path / out)
    assert r.code == 0, r.stderr
    return tmp_path / out


@CASES
@given(case=window_case(least=2), divisor=st.integers(1, 9), count_pad=st.booleans())
def test_avg_divisor_is_divisor_override_through_the_cli(tmp_path, case, divisor, count_pad):
    x, o = case
    pool = getattr(F, f"avg_pool{o['dims']}d")

    def run(t):
        return pool(t, o["kernel"], o["stride"], o["padding"], False, count_pad, divisor_override=divisor)

    grad = np.random.default_rng(divisor).normal(size=run(torch.from_numpy(x)).shape)
    want, dx_want = _autograd(run, x, grad)
    flags = [*_flags(o), "--op", "avg", "--divisor", str(divisor), "--count-pad" if count_pad else "--no-count-pad"]
    np.testing.assert_allclose(np.load(_cli(tmp_path, "forward", x, *flags)), want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.load(_cli(tmp_path, "backward", x, *flags, grad=grad)), dx_want, rtol=0, atol=1e-10)


@CASES
@given(case=window_case(), p=st.sampled_from([1.0, 2.0, 3.0, 4.5]), eps=st.sampled_from([1e-6, 0.5]))
def test_gem_is_the_generalized_mean_with_its_gradient_to_p_through_the_cli(tmp_path, case, p, eps):
    x, o = case
    pool = getattr(F, f"avg_pool{o['dims']}d")
    pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)

    def run(t, q):
        return pool(t.clamp(min=eps).pow(q), o["kernel"], o["stride"], o["padding"]).pow(1 / q)

    grad = np.random.default_rng(7).normal(size=run(torch.from_numpy(x), pt).shape)
    want, dx_want = _autograd(run, x, grad, pt)
    flags = [*_flags(o), "--op", "gem", "--p", str(p), "--eps", str(eps)]
    np.testing.assert_allclose(np.load(_cli(tmp_path, "forward", x, *flags)), want, rtol=1e-10, atol=1e-10)
    grads = np.load(_cli(tmp_path, "backward", x, *flags, grad=grad, out="grads.npz"))
    np.testing.assert_allclose(grads["output"], dx_want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grads["p"], pt.grad.numpy(), rtol=1e-10, atol=1e-10)


@CASES
@given(case=window_case(padded=False), scale=st.sampled_from([1.0, 30.0]))
def test_softpool_is_the_papers_formula(case, scale):
    """The reference code's ``avg_pool(exp(x)·x) / avg_pool(exp(x))`` (no padding: there it would count zeros)."""
    x, o = case
    x = x * scale  # large values: the reference overflows at 1000, poolcli subtracts each window's max
    pool = getattr(F, f"avg_pool{o['dims']}d")

    def run(t):
        e = torch.exp(t)
        return pool(e * t, o["kernel"], o["stride"]) / pool(e, o["kernel"], o["stride"])

    grad = np.random.default_rng(3).normal(size=run(torch.from_numpy(x)).shape)
    want, dx_want = _autograd(run, x, grad)
    options = {k: v for k, v in o.items() if k != "padding"}
    np.testing.assert_allclose(poolcli.forward(x, "softpool", **options), want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(poolcli.backward(x, grad, "softpool", **options), dx_want, rtol=1e-9, atol=1e-9)


def test_softpool_does_not_overflow_where_the_formula_does():
    x = np.array([[1000.0, 999.0, -5.0, 2.0]])
    y = poolcli.forward(x, "softpool", kernel=(1, 2))
    w = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(y, [[1000 * w + 999 * (1 - w), (2 * np.exp(7) - 5) / (np.exp(7) + 1)]], rtol=1e-12)


@CASES
@given(data=st.data(), dims=st.sampled_from([2, 3]))
def test_fractional_is_fractional_max_pool_with_the_same_samples_through_the_cli(tmp_path, data, dims):
    sides = [data.draw(st.integers(3, 7 if dims == 3 else 11)) for _ in range(dims)]
    kernel = tuple(data.draw(st.integers(1, n - 2)) for n in sides)
    outs = tuple(data.draw(st.integers(1, n - k)) for n, k in zip(sides, kernel))  # torch 3-D: out + k - 1 < n
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, u = rng.normal(size=(2, 3, *sides)), rng.random((2, 3, dims))
    pool = getattr(F, f"fractional_max_pool{dims}d")

    def run(t):
        return pool(t, kernel, output_size=outs, _random_samples=torch.from_numpy(u))

    want_idx = pool(torch.from_numpy(x), kernel, output_size=outs, return_indices=True,
                    _random_samples=torch.from_numpy(u))[1].numpy()
    grad = rng.normal(size=want_idx.shape)
    want, dx_want = _autograd(run, x, grad)
    np.save(tmp_path / "u.npy", u)
    flags = ["--op", "fractional", "-k", ",".join(map(str, kernel)), "--output-size", ",".join(map(str, outs)),
             "--dims", str(dims), "--samples", str(tmp_path / "u.npy")]
    y = _cli(tmp_path, "forward", x, *flags, "--indices", str(tmp_path / "idx.npy"))
    np.testing.assert_array_equal(np.load(y), want)
    np.testing.assert_array_equal(np.load(tmp_path / "idx.npy"), want_idx)
    np.testing.assert_array_equal(np.load(_cli(tmp_path, "backward", x, *flags, grad=grad)), dx_want)


@CASES
@given(data=st.data(), reduce=st.sampled_from(["max", "avg"]))
def test_spp_is_the_concatenated_adaptive_pools(data, reduce):
    sides = [data.draw(st.integers(1, 12)) for _ in range(2)]
    levels = tuple(data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=(2, 3, *sides))
    pool = getattr(F, f"adaptive_{reduce}_pool2d")

    def run(t):
        return torch.cat([pool(t, n).flatten(1) for n in levels], dim=1)

    grad = np.random.default_rng(0).normal(size=(2, 3 * sum(n * n for n in levels)))
    want, dx_want = _autograd(run, x, grad)
    # a mean that cancels to near 0 is exact only relative to the values summed (each sum in its own order)
    np.testing.assert_allclose(poolcli.forward(x, "spp", levels=levels, reduce=reduce), want, rtol=1e-12,
                               atol=1e-14 * np.abs(x).max())
    np.testing.assert_allclose(poolcli.backward(x, grad, "spp", levels=levels, reduce=reduce), dx_want, rtol=1e-12,
                               atol=1e-12)


MODES = ["nearest", "nearest-exact", "bilinear", "bicubic", "area"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), mode=st.sampled_from(MODES), by_scale=st.booleans())
def test_upsample_modes_are_interpolate_through_the_cli(tmp_path, data, mode, by_scale):
    sides = (data.draw(st.integers(1, 8)), data.draw(st.integers(1, 8)))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=(2, 3, *sides))
    flags, options = ["--op", "upsample", "--mode", mode], {}
    if by_scale:
        scale = tuple(data.draw(st.sampled_from([0.35, 0.5, 0.7, 1.3, 2.0, 2.5, 3.0])) for _ in range(2))
        size = tuple(int(np.floor(n * s)) for n, s in zip(sides, scale))
        assume(min(size) >= 1)
        recompute = data.draw(st.booleans())
        options = dict(scale_factor=scale, recompute_scale_factor=recompute)
        flags += ["--scale", ",".join(map(str, scale))] + (["--recompute-scale"] if recompute else [])
    else:
        size = (data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12)))
        options, flags = dict(size=size), flags + ["--output-size", f"{size[0]},{size[1]}"]
    if mode in ("bilinear", "bicubic"):
        align, antialias = data.draw(st.booleans()), data.draw(st.booleans())
        options.update(align_corners=align, antialias=antialias)
        flags += (["--align-corners"] if align else []) + (["--antialias"] if antialias else [])
        # PyTorch's fused antialiased kernel is off when the output is one column and the rows change (see below)
        assume(not (antialias and size[1] == 1 and size[0] != sides[0]))

    def run(t):
        return F.interpolate(t, mode=mode, **options)

    grad = np.random.default_rng(0).normal(size=run(torch.from_numpy(x)).shape)
    want, dx_want = _autograd(run, x, grad)
    np.testing.assert_allclose(np.load(_cli(tmp_path, "forward", x, *flags)), want, rtol=0, atol=1e-10)
    dx = np.load(_cli(tmp_path, "backward", x, *flags, grad=grad))
    kept = by_scale and not recompute and any(o == n and f != 1 for o, n, f in zip(size, sides, scale))
    if mode in ("bilinear", "bicubic") and antialias and kept:
        # PyTorch's antialiased forward leaves an axis of unchanged size as it is; its backward does not (it is not
        # the adjoint of its forward then). poolcli's backward is the adjoint of its (PyTorch's) forward.
        other = np.random.default_rng(1).normal(size=x.shape)
        np.testing.assert_allclose((np.asarray(run(torch.from_numpy(other))) * grad).sum(), (other * dx).sum(),
                                   rtol=1e-10)
    else:
        np.testing.assert_allclose(dx, dx_want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_antialiased_resize_to_one_column_is_pytorchs_two_separable_calls(mode):
    """There PyTorch's fused CPU kernel gives other values than its own two calls (rows, then columns) and
    than its own backward (the adjoint of the two calls); poolcli gives the separable resize."""
    x = np.random.default_rng(0).normal(size=(1, 2, 8, 6))
    rows = F.interpolate(torch.from_numpy(x), size=(9, 6), mode=mode, antialias=True)
    two = F.interpolate(rows, size=(9, 1), mode=mode, antialias=True).numpy()
    y = poolcli.forward(x, "upsample", mode=mode, antialias=True, output_size=(9, 1))
    np.testing.assert_allclose(y, two, rtol=0, atol=1e-12)
    grad = np.random.default_rng(1).normal(size=y.shape)
    _, dx = _autograd(lambda t: F.interpolate(t, size=(9, 1), mode=mode, antialias=True), x, grad)
    np.testing.assert_allclose(poolcli.backward(x, grad, "upsample", mode=mode, antialias=True, output_size=(9, 1)),
                               dx, rtol=0, atol=1e-12)


@CASES
@given(data=st.data(), dims=st.integers(1, 3), groups=st.sampled_from([1, 2]), with_bias=st.booleans())
def test_deconv_is_conv_transpose_with_its_weight_and_bias_gradients_through_the_cli(tmp_path, data, dims, groups,
                                                                                        with_bias):
    x, w, b, o = deconv_case(data.draw, dims, groups, data.draw(st.integers(1, 3)), 4 if dims == 3 else 6)
    stride, padding, extra, dilation = o["stride"], o["padding"], o["output_padding"], o["dilation"]
    rng = np.random.default_rng(1)
    fn = getattr(F, f"conv_transpose{dims}d")
    wt, bt = torch.from_numpy(w).requires_grad_(True), torch.from_numpy(b).requires_grad_(True)

    def run(t, wt, bt):
        return fn(t, wt, bt if with_bias else None, stride=stride, padding=padding, output_padding=extra,
                  groups=groups, dilation=dilation)

    grad = rng.normal(size=run(torch.from_numpy(x), wt, bt).shape)
    want, dx_want = _autograd(run, x, grad, wt, bt)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "b.npy", b)
    flags = ["--op", "deconv", "--weights", str(tmp_path / "w.npy"), "-s", ",".join(map(str, stride)),
             "-p", ",".join(map(str, padding)), "-d", ",".join(map(str, dilation)), "--output-padding",
             ",".join(map(str, extra)), "--groups", str(groups), "--dims", str(dims)]
    flags += ["--bias", str(tmp_path / "b.npy")] if with_bias else []
    np.testing.assert_allclose(np.load(_cli(tmp_path, "forward", x, *flags)), want, rtol=0, atol=1e-10)
    grads = np.load(_cli(tmp_path, "backward", x, *flags, grad=grad, out="grads.npz"))
    np.testing.assert_allclose(grads["output"], dx_want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(grads["weights"], wt.grad.numpy(), rtol=0, atol=1e-10)
    if with_bias:
        np.testing.assert_allclose(grads["bias"], bt.grad.numpy(), rtol=0, atol=1e-10)
