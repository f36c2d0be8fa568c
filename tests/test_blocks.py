"""The block executor: blocks, threads, dtypes and memory layouts change nothing in the results."""

from __future__ import annotations

import itertools
import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli
from poolcli.engine import OPERATORS, blocks, kernels, weighted
from tests.conftest import run_poolcli
from tests.strategies import pooling_case, valid_input

WINDOWED = [op.name for op in OPERATORS if op.windowed]
DIFFERENTIABLE = [name for name in WINDOWED if poolcli.OPS[name].differentiable]


@settings(max_examples=200, deadline=None)
@given(lead=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data())
def test_blocks_cover_every_plane_once(lead, data):
    strides = data.draw(st.permutations([8 * 7**i for i in range(len(lead))]))
    per_item = data.draw(st.integers(1, 64))
    budget = data.draw(st.integers(1, 400))
    cuttable = data.draw(st.lists(st.booleans(), min_size=len(lead), max_size=len(lead)))
    seen = np.zeros(lead, dtype=int)
    for index in blocks.blocks(lead, strides, per_item, budget, cuttable):
        seen[index] += 1
        for axis, (s, n) in enumerate(zip(index, lead)):
            if not cuttable[axis]:
                assert (s.start, s.stop) == (0, n)  # an axis that may not be cut stays whole
    assert (seen == 1).all()


def tiny_blocks(on: bool = True):
    """Blocks of a few bytes: every plane (or a few) a block of its own, so that cuts and threads are exercised."""
    return mock.patch.object(blocks, "BLOCK_BYTES", 64 if on else blocks.BLOCK_BYTES)


def layouts(x: np.ndarray, dims: int) -> dict[str, tuple[np.ndarray, dict]]:
    """The same array in C order, Fortran order, channels-last, with its last two axes swapped in memory and with
    negative strides, with their options."""
    out = {"C": (x, {}), "Fortran": (np.asfortranarray(x), {}), "reversed": (x[..., ::-1].copy()[..., ::-1], {})}
    if dims >= 2 and x.ndim >= 2:  # the last two axes swapped in memory (the planes still outermost)
        out["transposed"] = (np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2), {})
    if x.ndim > dims:
        out["channels-last"] = (np.ascontiguousarray(np.moveaxis(x, x.ndim - dims - 1, -1)), {"channels_last": True})
    return out


@settings(max_examples=150, deadline=None)
@given(data=st.data(), op=st.sampled_from(WINDOWED), threads=st.integers(2, 4))
def test_threads_and_blocks_give_the_one_thread_result_bit_for_bit(data, op, threads):
    x, _, spec = data.draw(pooling_case(dtypes=("float64", "float32", "float16", "uint8")))
    x = valid_input(op, x)
    one = poolcli.forward(x, op, spec=spec, threads=1)
    with tiny_blocks():
        np.testing.assert_array_equal(poolcli.forward(x, op, spec=spec, threads=threads), one)
    if poolcli.OPS[op].differentiable:
        grad = np.random.default_rng(0).normal(size=one.shape)
        with tiny_blocks():
            many = poolcli.backward(x, grad, op, spec=spec, threads=threads)
        np.testing.assert_array_equal(many, poolcli.backward(x, grad, op, spec=spec, threads=1))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), op=st.sampled_from(WINDOWED), small=st.booleans())
def test_every_memory_layout_gives_the_c_order_result(data, op, small):
    """Fortran order, channels-last and strided inputs, cut into blocks or whole, pool exactly as C order."""
    with tiny_blocks(small):
        check_layouts(data, op)


def check_layouts(data, op):
    x, options, spec = data.draw(pooling_case(dtypes=("float64", "float32", "float16")))
    x = valid_input(op, x)
    dims = options["dims"]
    ref = poolcli.forward(x, op, spec=spec)
    grad = np.random.default_rng(1).normal(size=ref.shape).astype(x.dtype)
    for name, (view, extra) in layouts(x, dims).items():
        moved = (lambda a: np.moveaxis(a, -1, a.ndim - dims - 1)) if extra else (lambda a: a)
        back = (lambda a: np.moveaxis(a, a.ndim - dims - 1, -1)) if extra else (lambda a: a)
        s = spec if not extra else poolcli.WindowSpec(**{**options, **extra})
        np.testing.assert_array_equal(moved(poolcli.forward(view, op, spec=s)), ref, err_msg=name)
        if poolcli.OPS[op].differentiable:
            np.testing.assert_array_equal(moved(poolcli.backward(view, back(grad), op, spec=s)),
                                          poolcli.backward(x, grad, op, spec=spec), err_msg=name)


@settings(max_examples=150, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=5), data=st.data(),
       dtype=st.sampled_from(["float16", "float32", "float64", "uint8"]), tile=st.sampled_from([1, 24, 1 << 15]))
def test_fortran_order_comes_out_as_the_same_array_in_c_order(shape, data, dtype, tile):
    """The executor's tiled transposition of a Fortran-ordered input, at every split, cast or not, in tiles
    smaller than the data (a ragged last tile) or holding all of it."""
    x = np.asfortranarray((np.random.default_rng(len(shape)).normal(size=shape) * 40 + 100).astype(dtype))
    split = data.draw(st.integers(0, x.ndim))
    to = data.draw(st.sampled_from([np.dtype(dtype), blocks.widened(np.dtype(dtype))]))
    with mock.patch.object(kernels, "FORTRAN_TILE", tile):
        c = blocks._from_fortran(x, split, to)
    assert c.flags.c_contiguous and c.dtype == to
    np.testing.assert_array_equal(c, x.astype(to))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), op=st.sampled_from(DIFFERENTIABLE))
def test_float16_backward_equals_the_float32_computation_rounded(data, op):
    x, _, spec = data.draw(pooling_case(dtypes=("float16",)))
    x = valid_input(op, x)
    y = poolcli.forward(x, op, spec=spec)
    grad = (np.random.default_rng(2).normal(size=y.shape) * 8).astype(np.float16)
    dx = poolcli.backward(x, grad, op, spec=spec)
    assert dx.dtype == np.float16
    expected = poolcli.backward(x.astype(np.float32), grad.astype(np.float32), op, spec=spec).astype(np.float16)
    np.testing.assert_array_equal(dx, expected)


HALF_SPECIALS = np.array([0.0, -0.0, 6e-8, -6e-8, 1.0, -1.0, 2.0, 65504.0, -65504.0, np.inf, -np.inf],
                         dtype=np.float16)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), op=st.sampled_from(["max", "min"]), nan=st.booleans(), small=st.booleans())
def test_float16_max_and_min_backward_are_the_float32_bits_rounded(data, op, nan, small):
    """Windows that tile, leave gaps or overlap, padded, over ±0, subnormals, ±65504, ±inf (NaN in some
    inputs), gradients with -0, ±inf and NaN: the bits of the float32 computation rounded to float16."""
    dims = data.draw(st.integers(1, 3))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(dims))
    stride = tuple(k + data.draw(st.integers(-1, 1)) or 1 for k in kernel)
    padding = tuple(data.draw(st.integers(0, k // 2)) for k in kernel)
    sizes = tuple(data.draw(st.integers(k, 7)) for k in kernel)
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = data.draw(st.sampled_from([HALF_SPECIALS, HALF_SPECIALS[:2], HALF_SPECIALS[:4], HALF_SPECIALS[-4:]]))
    x = rng.choice(values, size=lead + sizes)  # ±0 alone: ties between -0 and +0
    if nan:
        x.flat[rng.integers(x.size)] = np.nan
    options = dict(kernel=kernel, stride=stride, padding=padding, dims=dims)
    y = poolcli.forward(x, op, **options)
    grad = rng.choice(np.append(HALF_SPECIALS, np.nan).astype(np.float16), size=y.shape)
    with tiny_blocks(small), np.errstate(over="ignore", invalid="ignore"):  # inf - inf, and sums past 65504
        dx = poolcli.backward(x, grad, op, threads=1, **options)  # (np.errstate holds in this thread)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = poolcli.backward(x.astype(np.float32), grad.astype(np.float32), op, **options).astype(np.float16)
    assert dx.dtype == np.float16
    np.testing.assert_array_equal(dx.view(np.uint16), expected.view(np.uint16))


@pytest.mark.parametrize("op", [op.name for op in OPERATORS if not op.windowed])
def test_operators_without_windows_compute_float16_in_float32(op):
    """kmax, unpool, upsample, lrn and bilinear: float16 in, float16 out, the float32 result rounded once."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(2, 6, 4, 4)) * 4).astype(np.float16)
    options = {"kmax": {"k": 2}, "upsample": {"scale": 2}, "lrn": {"size": 3}, "fractional": {"ratio": 0.6},
               "deconv": {"weights": rng.normal(size=(6, 2, 2, 2)), "stride": 2}}.get(op, {})
    if op == "unpool":
        x, options = poolcli.forward(x, "max", kernel=2, return_indices=True)
        options = {"indices": options, "kernel": 2}
    y = poolcli.forward(x, op, **options)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, poolcli.forward(x.astype(np.float32), op, **options).astype(np.float16))
    if poolcli.OPS[op].differentiable:
        grad = rng.normal(size=y.shape).astype(np.float16)
        expected = poolcli.backward(x.astype(np.float32), grad.astype(np.float32), op, **options)
        np.testing.assert_array_equal(poolcli.backward(x, grad, op, **options), expected.astype(np.float16))


def test_threads_must_be_one_or_more():
    with pytest.raises(poolcli.UsageError, match="threads"):
        poolcli.forward(np.ones((4, 4)), threads=0)


def test_the_threads_option_changes_no_byte_of_the_output(tmp_path):
    x = np.random.default_rng(4).normal(size=(3, 8, 33, 31)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    outputs = []
    for command, threads in itertools.product(("forward", "backward"), ("1", "2")):
        out = tmp_path / f"{command}{threads}.npy"
        run = run_poolcli(command, tmp_path / "x.npy", "-k", "3", "-s", "2", "-p", "1", "--threads", threads,
                          "-o", out)
        assert run.code == 0, run.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and outputs[2] == outputs[3] and outputs[0] != outputs[2]
    bad = run_poolcli("forward", tmp_path / "x.npy", "--threads", "0")
    assert bad.code == 2 and "--threads" in bad.stderr and "Traceback" not in bad.stderr


def test_npy_outputs_are_filled_block_by_block_and_equal_the_whole(tmp_path):
    """-o y.npy is a memory-mapped file filled block by block (--block-mb 1: many blocks); the same values."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 16, 128, 64)).astype(np.float32)  # 3 MiB of planes: blocks of 1 MiB → 3 blocks
    np.save(tmp_path / "x.npy", x)
    cases = [
        (["forward", "-k", "3", "-s", "2", "-p", "1"], poolcli.forward(x, kernel=3, stride=2, padding=1)),
        (["backward", "--op", "avg", "-k", "2"], poolcli.backward(x, op="avg", kernel=2)),
        (["forward", "--op", "kmax", "--k", "3"], poolcli.forward(x, "kmax", k=3)),
        (["forward", "--channels-last", "--op", "lp"], poolcli.forward(x, "lp", channels_last=True)),
    ]
    for command, expected in cases:
        run = run_poolcli(command[0], tmp_path / "x.npy", *command[1:], "--block-mb", "1", "-o", tmp_path / "y.npy")
        assert run.code == 0, run.stderr
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    run = run_poolcli("forward", tmp_path / "x.npy", "--block-mb", "1", "-o", tmp_path / "y.npy",
                      "--indices", tmp_path / "i.npy")
    y, idx = poolcli.forward(x, return_indices=True)
    assert run.code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), y)
    np.testing.assert_array_equal(np.load(tmp_path / "i.npy"), idx)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.npy", "x.npy", "y.npy"]  # no temporary left


def test_an_output_that_cannot_be_made_leaves_no_other(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 4, 4), dtype=np.float32))
    run = run_poolcli("forward", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--indices", tmp_path / "no" / "i.npy")
    assert run.code != 0 and "no" in run.stderr and "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    bad = run_poolcli("forward", tmp_path / "x.npy", "--block-mb", "0")
    assert bad.code == 2 and "--block-mb" in bad.stderr


def test_results_go_straight_into_the_array_allocate_makes(tmp_path):
    """The engine writes into the array it is given (a mapped file here): it never holds the whole result."""
    from poolcli.engine import Params, run_backward, run_forward

    x = np.random.default_rng(6).normal(size=(8, 4, 16, 16))
    g = poolcli.geometry(x.shape, kernel=2)
    made = []

    def allocate(shape, dtype):
        made.append(np.lib.format.open_memmap(tmp_path / f"{len(made)}.npy", mode="w+", dtype=dtype, shape=shape))
        return made[-1]

    with tiny_blocks():
        y = run_forward(x, g, "avg", Params(), allocate=allocate)
        dx = run_backward(x, g, None, "max", Params(), allocate=allocate)
    assert y is made[0] and dx is made[1]
    np.testing.assert_array_equal(y, poolcli.forward(x, "avg", kernel=2))
    np.testing.assert_array_equal(dx, poolcli.backward(x, op="max", kernel=2))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["uint8", "int8", "int16", "uint16", "bool"]))
def test_integer_averages_equal_the_float64_computation(data, dtype):
    """Small integers are summed in float32 where every sum is exact: the float64 result, bit for bit."""
    x, _, spec = data.draw(pooling_case(dtypes=(dtype,)))
    np.testing.assert_array_equal(poolcli.forward(x, "avg", spec=spec), poolcli.forward(x.astype(np.float64), "avg",
                                                                                      spec=spec))


@pytest.mark.parametrize("side", [250, 300])  # 250² · 255 is below 2**24 (float32 sums), 300² · 255 above it
def test_integer_averages_at_the_edge_of_float32(side):
    x = np.full((2, side, side), 255, dtype=np.uint8)
    x[0, 0, 0] = 254
    np.testing.assert_array_equal(poolcli.forward(x, "avg", global_pool=True),
                                  poolcli.forward(x.astype(np.float64), "avg", global_pool=True))


@pytest.mark.parametrize("case", ["kmax", "kmax-axis1", "upsample", "upsample-last", "upsample-bilinear-last",
                                  "lrn", "lrn-last",
                                  "unpool", "bilinear", "bilinear-with", "spp", "spp-last"])
def test_operators_without_windows_run_in_blocks_as_whole(case):
    """Cut along their leading independent axes (tiny blocks, three threads), they give the whole's values."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 4, 6, 5))
    op = case.split("-")[0]
    options = {"kmax": dict(k=2), "kmax-axis1": dict(k=2, axis=1), "upsample": dict(scale=2),
               "upsample-last": dict(scale=(2, 3), channels_last=True),
               "upsample-bilinear-last": dict(scale=(2, 1.5), mode="bilinear", channels_last=True),
               "lrn": dict(size=3), "lrn-last": dict(size=3, channels_last=True), "unpool": {}, "bilinear": {},
               "bilinear-with": dict(other=rng.normal(size=(3, 2, 6, 5))), "spp": dict(levels=(1, 2, 3)),
               "spp-last": dict(reduce="avg", channels_last=True)}[case]
    if op == "unpool":  # the output of a max pooling of an even-sized plane, and its indices
        x, idx = poolcli.forward(rng.normal(size=(3, 4, 6, 6)), return_indices=True, kernel=2)
        options = dict(indices=idx, kernel=2)
    whole = poolcli.forward(x, op, threads=1, **options)
    with tiny_blocks():
        np.testing.assert_array_equal(poolcli.forward(x, op, threads=3, **options), whole)
    if poolcli.OPS[op].differentiable:
        grad = rng.normal(size=whole.shape)
        expected = poolcli.backward(x, grad, op, threads=1, **options)
        with tiny_blocks():
            got = poolcli.backward(x, grad, op, threads=3, **options)
        for a, b in zip(got if isinstance(got, tuple) else (got,), expected if isinstance(got, tuple) else (expected,)):
            np.testing.assert_array_equal(a, b)  # bilinear with other= gives the pair (to x, to other)


STRIDED_WITHOUT_WINDOWS = [op.name for op in OPERATORS if op.strided and not op.windowed]


@pytest.mark.parametrize("op", STRIDED_WITHOUT_WINDOWS)
@pytest.mark.parametrize("concat", [False, True])
@pytest.mark.parametrize("small", [False, True])
def test_operators_reading_strided_views_give_the_c_order_result_in_every_layout(op, concat, small):
    """An operator without windows that reads any memory order in place (avgmax: max's and avg's passes), in
    Fortran order, channels-last and reversed strides, whole or in tiny blocks on three threads."""
    x = (np.random.default_rng(8).normal(size=(3, 20, 6, 7)) * 9).astype(np.float32)
    options = dict(kernel=3, stride=2, padding=1, concat=concat)
    ref = poolcli.forward(x, op, threads=1, **options)
    for name, (view, extra) in layouts(x, 2).items():
        with tiny_blocks(small):
            got = poolcli.forward(view, op, threads=3, **options, **extra)
        np.testing.assert_array_equal(np.moveaxis(got, -1, 1) if extra else got, ref, err_msg=name)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8"])
@pytest.mark.parametrize("scale", [2, (3, 1), (1, 2)])
@pytest.mark.parametrize("small", [False, True])
def test_nearest_upsampling_of_every_layout_is_replicated_in_its_memory_order(dtype, scale, small):
    """Nearest upsampling by whole factors reads a Fortran-ordered, channels-last or reversed input in place: the
    C-order values, and a Fortran-ordered input gives a Fortran-ordered result (no transposition whole)."""
    x = (np.random.default_rng(9).normal(size=(4, 20, 5, 6)) * 40 + 100).astype(dtype)
    ref = poolcli.forward(x, "upsample", scale=scale, threads=1)
    for name, (view, extra) in layouts(x, 2).items():
        with tiny_blocks(small):
            got = poolcli.forward(view, "upsample", scale=scale, threads=3, **extra)
        np.testing.assert_array_equal(np.moveaxis(got, -1, 1) if extra else got, ref, err_msg=name)
        if name == "Fortran" and not small:
            assert got.flags.f_contiguous


@pytest.mark.parametrize("op", ["max", "min", "avg", "lp", "gem", "mixed", "avgmax", "softpool"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8"])
@pytest.mark.parametrize("options", [dict(kernel=2), dict(kernel=(3, 2)), dict(kernel=(1, 4)),
                                     dict(kernel=3, stride=2, padding=1), dict(kernel=2, stride=3, dilation=2)])
@pytest.mark.parametrize("small", [False, True])
def test_backward_over_strided_windows_reads_every_layout_in_place(op, dtype, options, small):
    """Max/min (ties first), avg, lp, gem, mixed, avgmax and softpool backward over windows that tile, overlap or leave
    gaps, on 20 planes side by side in memory (Fortran order, channels-last: read in place where the operator
    can, in the input's order), whole or in tiny blocks on three threads, with many ties, a gradient laid out as
    the input and the default gradient of ones: the C-order result."""
    rng = np.random.default_rng(10)
    x = rng.integers(0, 4, size=(2, 20, 7, 8)).astype(dtype)  # four values: ties in most windows
    grad = rng.normal(size=poolcli.forward(x, op, **options).shape).astype(np.float64 if dtype == "uint8" else dtype)
    for upstream in (grad, None):
        ref = poolcli.backward(x, upstream, op, threads=1, **options)
        for name, (view, extra) in layouts(x, 2).items():
            g = upstream if upstream is None or not extra else np.ascontiguousarray(np.moveaxis(upstream, 1, -1))
            g = np.asfortranarray(g) if name == "Fortran" and g is not None else g
            with tiny_blocks(small):
                got = poolcli.backward(view, g, op, threads=3, **options, **extra)
            np.testing.assert_array_equal(np.moveaxis(got, -1, 1) if extra else got, ref, err_msg=name)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8"])
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("small", [False, True])
def test_fractional_forward_gives_the_c_order_values_in_every_layout(dtype, dims, small):
    """Fractional max-pooling's forward (a max: any order of axes gives its values) reads an input whose planes
    are outermost in its own axis order, and a Fortran-ordered one after bringing each plane's cells together:
    in every layout, whole or in tiny blocks on three threads, the C order's values, NaN and ties included;
    a Fortran-ordered input of 20 planes is handed over as it lies."""
    rng = np.random.default_rng(15)
    shape = (2, 10) + (9, 8, 7)[:dims]
    x = (rng.integers(0, 5, size=shape) * 20).astype(dtype)  # ties in most windows
    if x.dtype.kind == "f":
        x.reshape(-1)[::37] = np.nan
    options = dict(ratio=0.6, kernel=(3, 2, 2)[:dims], samples=rng.random((2, 10, dims)), dims=dims)
    ref = poolcli.forward(x, "fractional", threads=1, **options)
    pool = type(poolcli.OPS["fractional"])
    cases = layouts(x, dims)
    if dims == 3:  # the cells' axes in a cyclic order in memory (no order its own inverse)
        cases["cyclic"] = (np.ascontiguousarray(x.transpose(0, 1, 3, 4, 2)).transpose(0, 1, 4, 2, 3), {})
    for name, (view, extra) in cases.items():
        with tiny_blocks(small), mock.patch.object(pool, "forward", autospec=True,
                                                   side_effect=pool.forward) as forward:
            got = poolcli.forward(view, "fractional", threads=3, **options, **extra)
        np.testing.assert_array_equal(np.moveaxis(got, -1, 1) if extra else got, ref, err_msg=name)
        if name == "Fortran" and not small and dtype != "float16":
            assert all(np.shares_memory(call.args[1], view) for call in forward.call_args_list)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8"])
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("ties", ["first", "split"])
@pytest.mark.parametrize("small", [False, True])
def test_kmax_gives_the_c_order_result_in_every_layout(dtype, axis, ties, small):
    """K-max pooling of every layout, along the last axis or another, whole or in tiny blocks on three threads:
    the C order's values and gradient bit for bit, with ties and NaN. A Fortran-ordered input pooled along its
    last axis is handed over as it lies (its lines then brought together, the other axes left reversed)."""
    rng = np.random.default_rng(16)
    x = (rng.integers(0, 6, size=(3, 5, 4, 9)) * 10).astype(dtype)  # ties on most lines
    if x.dtype.kind == "f":
        x.reshape(-1)[::23] = np.nan
    options = dict(k=3, axis=axis, ties=ties)
    ref = poolcli.forward(x, "kmax", threads=1, **options)
    grad = rng.normal(size=ref.shape).astype(np.float64 if dtype == "uint8" else dtype)
    dref = poolcli.backward(x, grad, "kmax", threads=1, **options)
    pool = type(poolcli.OPS["kmax"])
    cases = {name: view for name, (view, extra) in layouts(x, 2).items() if not extra}
    cases["channels-last"] = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)  # the same array
    for name, view in cases.items():
        with tiny_blocks(small), mock.patch.object(pool, "forward", autospec=True,
                                                   side_effect=pool.forward) as forward:
            got = poolcli.forward(view, "kmax", threads=3, **options)
            back = poolcli.backward(view, grad, "kmax", threads=3, **options)
        np.testing.assert_array_equal(got, ref, err_msg=name)
        np.testing.assert_array_equal(back, dref, err_msg=name)
        if name == "Fortran" and axis == -1 and not small and dtype != "float16":
            assert all(np.shares_memory(call.args[1], view) for call in forward.call_args_list)


@pytest.mark.parametrize("layout", ["Fortran", "channels-last"])
def test_softpool_backward_reads_the_input_in_place_and_lays_the_gradient_out_as_it(layout):
    """SoftPool's backward is elementwise over each tap's view: a Fortran-ordered or channels-last input (20
    planes side by side) is handed over as it lies, and the gradient comes back laid out as the input."""
    x = np.random.default_rng(9).normal(size=(2, 20, 7, 8))
    view, extra = layouts(x, 2)[layout]
    pool = type(poolcli.OPS["softpool"])
    with mock.patch.object(pool, "backward", autospec=True, side_effect=pool.backward) as backward:
        dx = poolcli.backward(view, None, "softpool", kernel=3, stride=2, threads=1, **extra)
    assert all(np.shares_memory(call.args[1], view) for call in backward.call_args_list)
    assert dx.strides == view.strides
    np.testing.assert_array_equal(np.moveaxis(dx, -1, 1) if extra else dx,
                                  poolcli.backward(x, None, "softpool", kernel=3, stride=2, threads=1))


def _default_gradient_options(op: str, x: np.ndarray) -> dict:
    """What each differentiable operator needs to run on x (4-D, 6×6 planes), in the library's words."""
    rng = np.random.default_rng(12)
    if op == "unpool":
        return dict(indices=poolcli.forward(x, "max", kernel=2, return_indices=True)[1], kernel=2)
    if op == "deconv":
        return dict(weights=rng.normal(size=(x.shape[1], 2, 2, 2)), stride=2)
    return {"upsample": dict(scale=2), "lrn": dict(size=3), "fractional": dict(ratio=0.6, seed=3),
            "stochastic": dict(seed=3), "kmax": dict(k=2)}.get(op, {})


@pytest.mark.parametrize("op", [o.name for o in OPERATORS if o.differentiable])
@pytest.mark.parametrize("dtype", ["float64", "float16"])
@pytest.mark.parametrize("layout", ["C", "Fortran", "channels-last"])
@pytest.mark.parametrize("small", [False, True])
def test_the_default_gradient_of_ones_gives_what_an_array_of_ones_gives(op, dtype, layout, small):
    """The default gradient is one value broadcast, handed to each block as such (never made whole; avg's
    shares over tiling windows stay one value, which fills the result): every operator's backward gives, bit
    for bit, what it gives for an array of ones."""
    x = valid_input(op, np.random.default_rng(13).normal(size=(2, 20, 6, 6))).astype(dtype)
    options = _default_gradient_options(op, x)
    if op == "unpool":  # it takes a max pooling's output
        x = poolcli.forward(x, "max", kernel=2)
    if layout == "Fortran":
        x = np.asfortranarray(x)
    elif layout == "channels-last":
        x, options = np.ascontiguousarray(np.moveaxis(x, 1, -1)), {**options, "channels_last": True}
        if "indices" in options:  # unpool's indices move with the input (deconv's weights do not)
            options["indices"] = np.ascontiguousarray(np.moveaxis(options["indices"], 1, -1))
    ones = np.ones(poolcli.forward(x, op, **options).shape, dtype=x.dtype)
    with tiny_blocks(small):
        got = poolcli.backward(x, op=op, threads=3, **options)
    expected = poolcli.backward(x, ones, op, threads=3, **options)
    for a, b in zip(got if isinstance(got, tuple) else (got,), expected if isinstance(got, tuple) else (expected,)):
        np.testing.assert_array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


UNREAD = {  # backward passes linear in the input: they read only its shape
    "avg": dict(kernel=3, stride=2, padding=1, count_pad=False),
    "avg-tiles": dict(kernel=2),
    "upsample": dict(scale=2),
    "upsample-bicubic": dict(scale=(1.5, 0.5), mode="bicubic", antialias=True),
    "deconv": dict(stride=2),
    "deconv-overlap": dict(stride=1, padding=1),
}


@pytest.mark.parametrize("case", sorted(UNREAD))
@pytest.mark.parametrize("layout", ["C", "Fortran", "channels-last"])
def test_a_backward_that_does_not_read_the_input_copies_none_and_gives_the_same(case, layout):
    """Such a backward gets an unread stand-in for the input: its result is the one computed from the input, and
    the same for any input values (which is what lets it skip them)."""
    rng = np.random.default_rng(11)
    op = case.split("-")[0]
    options = dict(UNREAD[case])
    if op == "deconv":
        options["weights"] = rng.normal(size=(4, 3, 3, 3) if case == "deconv-overlap" else (4, 3, 2, 2))
    x = rng.normal(size=(2, 4, 6, 8))
    if layout == "channels-last":
        x, options = np.ascontiguousarray(np.moveaxis(x, 1, -1)), {**options, "channels_last": True}
    elif layout == "Fortran":
        x = np.asfortranarray(x)
    grad = rng.normal(size=poolcli.forward(x, op, **options).shape)
    assert not poolcli.OPS[op].backward_reads_input(None if op != "avg" else poolcli.WindowSpec().bind(x.shape),
                                                    poolcli.Params())
    with tiny_blocks():
        dx = poolcli.backward(x, grad, op, threads=2, **options)
        np.testing.assert_array_equal(poolcli.backward(rng.normal(size=x.shape), grad, op, **options), dx)
        with mock.patch.object(type(poolcli.OPS[op]), "backward_reads_input", return_value=True):
            np.testing.assert_array_equal(poolcli.backward(x, grad, op, threads=2, **options), dx)


def test_an_average_without_data_cells_reads_its_input():
    x = np.arange(16.0).reshape(4, 4)
    assert poolcli.OPS["avg"].backward_reads_input(poolcli.WindowSpec(kernel=2).bind(x.shape),
                                                   poolcli.Params(nodata=0.0))
    dx = poolcli.backward(x, np.ones((2, 2)), "avg", kernel=2, nodata=0.0)
    assert dx[0, 0] == 0 and dx[0, 1] == pytest.approx(1 / 3)  # the no-data cell takes nothing; three share


@pytest.mark.parametrize("case", ["deconv-tiles", "deconv-padded", "deconv-3d", "avg-weights", "fractional",
                                  "bilinear-with"])
def test_channels_last_moves_the_input_and_its_like_not_the_weights(case):
    """A channels-last input gives the channels-first result moved, with every gradient: arrays laid out like
    the input (--with) move with it; weights, bias and per-plane samples keep their own layout."""
    rng = np.random.default_rng(5)
    op = case.split("-")[0]
    dims = 3 if case == "deconv-3d" else 2
    x = rng.normal(size=(2, 3, 4, 5, 3)[: 2 + dims])
    options = {"deconv-tiles": dict(weights=rng.normal(size=(3, 2, 2, 2)), bias=rng.normal(size=2), stride=2),
               "deconv-padded": dict(weights=rng.normal(size=(3, 2, 3, 3)), stride=2, padding=1, output_padding=1),
               "deconv-3d": dict(weights=rng.normal(size=(3, 2, 2, 2, 2)), stride=1, dims=3),
               "avg-weights": dict(weights=rng.random(size=(3, 2, 2)), kernel=2),
               "fractional": dict(samples=rng.random(size=(2, 3, 2)), output_size=3),
               "bilinear-with": dict(other=rng.normal(size=(2, 2, 4, 5)))}[case]
    last = {k: np.moveaxis(v, 1, -1) if k == "other" else v for k, v in options.items()}
    y = poolcli.forward(x, op, **options)
    moved = poolcli.forward(np.moveaxis(x, 1, -1), op, channels_last=True, **last)
    np.testing.assert_allclose(moved if op == "bilinear" else np.moveaxis(moved, -1, 1), y, rtol=1e-12, atol=1e-12)
    if op == "fractional":
        return
    grad = rng.normal(size=y.shape)
    want = poolcli.gradients(x, grad, op, **options)
    got = poolcli.gradients(np.moveaxis(x, 1, -1), grad if op == "bilinear" else np.moveaxis(grad, 1, -1), op,
                            channels_last=True, **last)
    assert set(got) == set(want)
    for name in want:
        back = np.moveaxis(got[name], -1, 1) if name in ("x", "with") else got[name]
        np.testing.assert_allclose(back, want[name], rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("op", ["bilinear", "deconv"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8"])
@pytest.mark.parametrize("small", [False, True])
def test_operators_pooling_whole_samples_read_channels_last_slabs_in_place(op, dtype, small):
    """Bilinear pooling and deconv read a channels-last sample as it lies (each block one contiguous slab, its
    products BLAS calls on transposed operands), whole or in tiny blocks on three threads: the C-order values
    (to BLAS's rounding), and the same in every other layout. Bilinear pooling also reads a Fortran-ordered
    input in place (its samples' channels side by side innermost), copied once into lying operands."""
    x = (np.random.default_rng(10).normal(size=(5, 6, 4, 3)) * 20 + 50).astype(dtype)
    options = {"deconv": dict(weights=np.random.default_rng(2).normal(size=(6, 4, 2, 2)), stride=2)}.get(op, {})
    ref = poolcli.forward(x, op, threads=1, **options)
    tol = {"float16": 2e-3, "float32": 2e-6}.get(dtype, 1e-12)
    pool = poolcli.OPS[op]
    for name, (view, extra) in layouts(x, 2).items():
        with tiny_blocks(small), mock.patch.object(type(pool), "forward", autospec=True,
                                                   side_effect=type(pool).forward) as forward:
            got = poolcli.forward(view, op, threads=3, **options, **extra)
        got = np.moveaxis(got, -1, 1) if extra and op != "bilinear" else got
        assert got.dtype == ref.dtype
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max(), err_msg=name)
        if (name == "channels-last" or (name == "Fortran" and op == "bilinear")) and dtype in ("float32", "float64"):
            assert all(np.shares_memory(call.args[1], view) for call in forward.call_args_list), name


@pytest.mark.parametrize("reduce", ["max", "avg"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8"])
@pytest.mark.parametrize("small", [False, True])
def test_spp_gives_the_c_order_result_in_every_layout_and_max_reads_them_in_place(reduce, dtype, small):
    """Spatial pyramid pooling of every layout, whole or in tiny blocks on three threads: the C-order result bit
    for bit. With max, a Fortran-ordered input (samples and channels side by side innermost) and a channels-last
    one are read in place: every block the operator gets is a view of the input, both ways, and the gradient is
    laid out as the input."""
    x = (np.random.default_rng(11).normal(size=(3, 8, 8, 12)) * 20 + 50).astype(dtype)
    options = dict(levels=(1, 2, 4), reduce=reduce)
    ref = poolcli.forward(x, "spp", threads=1, **options)
    grad = np.random.default_rng(3).normal(size=ref.shape).astype(ref.dtype)
    dx = poolcli.backward(x, grad, "spp", threads=1, **options)
    pool = poolcli.OPS["spp"]
    for name, (view, extra) in layouts(x, 2).items():
        with tiny_blocks(small), mock.patch.object(type(pool), "forward", autospec=True,
                                                   side_effect=type(pool).forward) as forward:
            got = poolcli.forward(view, "spp", threads=3, **options, **extra)
        np.testing.assert_array_equal(got, ref, err_msg=name)
        if reduce == "max" and name in ("Fortran", "channels-last") and dtype != "float16":
            assert all(np.shares_memory(call.args[1], view) for call in forward.call_args_list), name
        with tiny_blocks(small), mock.patch.object(type(pool), "backward", autospec=True,
                                                   side_effect=type(pool).backward) as backward:
            back = poolcli.backward(view, grad, "spp", threads=3, **options, **extra)
        np.testing.assert_array_equal(np.moveaxis(back, -1, 1) if extra else back, dx, err_msg=name)
        if reduce == "max" and name in ("Fortran", "channels-last") and dtype != "float16":
            assert all(np.shares_memory(call.args[1], view) for call in backward.call_args_list), name
            if not small:  # one block: the gradient laid out as the input (each pick added through its strides)
                assert [s // back.itemsize for s in back.strides] == [s // view.itemsize for s in view.strides], name


@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 6), (3, 5, 7), (2, 2, 3, 2, 3, 4), (6, 4, 9)])
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("layout", ["Fortran", "channels-last"])
def test_bilinear_pooling_reads_fortran_and_channels_last_inputs_in_place_both_ways(shape, dims, layout):
    """Several sample axes, one or two location axes, a Fortran-ordered input (each sample's lying operand copied
    once) or a channels-last one (read as it lies): the C-order input's Gram matrices and gradient (to BLAS's
    rounding), each block handed over as a view of the input, forward and backward; a channels-last input's
    gradient laid out as it."""
    x = np.random.default_rng(12).normal(size=shape)
    grad = np.random.default_rng(13).normal(size=poolcli.forward(x, "bilinear", dims=dims).shape)
    ref, dref = poolcli.forward(x, "bilinear", dims=dims), poolcli.backward(x, grad, "bilinear", dims=dims)
    k = len(shape) - dims - 1  # the channel axis
    view = np.asfortranarray(x) if layout == "Fortran" else np.moveaxis(np.ascontiguousarray(np.moveaxis(x, k, -1)),
                                                                         -1, k)
    pool = type(poolcli.OPS["bilinear"])
    with mock.patch.object(pool, "forward", autospec=True, side_effect=pool.forward) as forward, \
            mock.patch.object(pool, "backward", autospec=True, side_effect=pool.backward) as backward:
        got = poolcli.forward(view, "bilinear", dims=dims, threads=1)
        dx = poolcli.backward(view, grad, "bilinear", dims=dims, threads=1)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dref, rtol=1e-12, atol=1e-12)
    side_by_side = math.prod(shape[: len(shape) - dims]) if layout == "Fortran" else shape[k]
    if side_by_side >= blocks.STRIDED_RUN or (layout == "channels-last" and k > 0):
        assert all(np.shares_memory(call.args[1], view) for call in forward.call_args_list + backward.call_args_list)
        if layout == "channels-last":  # (one block) the gradient laid out as the input: channels innermost
            assert dx.strides == view.strides


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8"])
@pytest.mark.parametrize("small", [False, True])
def test_weighted_average_gives_the_c_order_result_in_every_layout_and_block(dtype, small):
    """The weighted average's phase planes (each tap one run of a zero-padded phase of the input): every layout,
    whole or in tiny blocks on three threads, gives the C-order one-thread result bit for bit, forward, backward
    and the weights' gradient, over strides 1-3 with padding and dilation (the windows' weight sums kept for the
    next blocks, or, with tiny blocks, made for each)."""
    rng = np.random.default_rng(14)
    x = (rng.normal(size=(2, 5, 11, 9)) * 20 + 50).astype(dtype)
    for options in (dict(kernel=3, stride=2, padding=1), dict(kernel=2, stride=3), dict(kernel=3, dilation=2, ceil=True,
                                                                                        stride=2, padding=1)):
        w = rng.random((5, *[options["kernel"]] * 2)) + 0.1
        ref = poolcli.forward(x, "avg", threads=1, weights=w, **options)
        grad = rng.normal(size=ref.shape)
        want = poolcli.gradients(x, grad, "avg", threads=1, weights=w, **options)
        for name, (view, extra) in layouts(x, 2).items():
            back = (lambda a: np.moveaxis(a, -1, 1)) if extra else (lambda a: a)
            with tiny_blocks(small), mock.patch.object(weighted, "KEPT_BYTES", 0 if small else weighted.KEPT_BYTES):
                got = poolcli.forward(view, "avg", threads=3, weights=w, **options, **extra)
                grads = poolcli.gradients(view, np.moveaxis(grad, 1, -1) if extra else grad, "avg", threads=3,
                                          weights=w, **options, **extra)
            np.testing.assert_array_equal(back(got), ref, err_msg=name)
            np.testing.assert_array_equal(back(grads["x"]), want["x"], err_msg=name)
            np.testing.assert_allclose(grads["weights"], want["weights"], rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("op", ["max", "min", "avg"])
def test_windows_tiling_the_last_axis_are_reduced_straight_into_the_output(op):
    """1-D windows that tile a contiguous last axis (W6's k4s4): each block's reduction of its transposed rows is
    written into the caller's output, so only the first block (before the output exists) is copied there."""
    x = np.random.default_rng(15).normal(size=(6, 8, 64)).astype(np.float32)
    ref = poolcli.forward(x, op, kernel=4, stride=4, dims=1, threads=1)
    with tiny_blocks(), mock.patch.object(blocks, "_store", autospec=True, side_effect=blocks._store) as store:
        got = poolcli.forward(x, op, kernel=4, stride=4, dims=1, threads=1)
    np.testing.assert_array_equal(got, ref)
    assert store.call_count == 1
