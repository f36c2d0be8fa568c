"""poolcli.dask against the in-memory engine: every chunking gives the same values (skips without dask)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolcli
from poolcli.engine import OPERATORS
from tests.strategies import pooling_case

da = pytest.importorskip("dask.array")
pooldask = pytest.importorskip("poolcli.dask")

WINDOWED = [op.name for op in OPERATORS if op.windowed]


def chunked(data, x: np.ndarray):
    """``x`` as a Dask array cut into chunks of a drawn size along every axis."""
    chunks = tuple(data.draw(st.integers(1, max(1, n)), label=f"chunk of axis {i}") for i, n in enumerate(x.shape))
    return da.from_array(x, chunks=chunks)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), op=st.sampled_from(WINDOWED))
def test_every_chunking_gives_the_engines_values(data, op):
    x, options, spec = data.draw(pooling_case(dtypes=("float64", "float32", "int16")))
    dx_in = chunked(data, x)
    np.testing.assert_array_equal(pooldask.forward(dx_in, op, spec=spec).compute(scheduler="sync"),
                                  poolcli.forward(x, op, spec=spec))
    if poolcli.OPS[op].differentiable:
        y = poolcli.forward(x, op, spec=spec)
        grad = np.arange(1, y.size + 1, dtype=np.float64).reshape(y.shape) % 7 - 3
        got = pooldask.backward(dx_in, chunked(data, grad), op, spec=spec).compute(scheduler="sync")
        np.testing.assert_array_equal(got, poolcli.backward(x, grad, op, spec=spec))
    if op in ("max", "min"):
        y, idx = pooldask.forward(dx_in, op, spec=spec, return_indices=True)
        ref_y, ref_idx = poolcli.forward(x, op, spec=spec, return_indices=True)
        np.testing.assert_array_equal(y.compute(scheduler="sync"), ref_y)
        np.testing.assert_array_equal(idx.compute(scheduler="sync"), ref_idx)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), op=st.sampled_from(["max", "avg"]))
def test_channels_last_chunks_give_the_engines_values(data, op):
    x, options, spec = data.draw(pooling_case())
    if x.ndim == options["dims"]:
        x = x[None]
    moved = np.ascontiguousarray(np.moveaxis(x, x.ndim - options["dims"] - 1, -1))
    spec = poolcli.WindowSpec(**{**options, "channels_last": True})
    got = pooldask.forward(chunked(data, moved), op, spec=spec).compute(scheduler="sync")
    np.testing.assert_array_equal(got, poolcli.forward(moved, op, spec=spec))
    got = pooldask.backward(chunked(data, moved), None, op, spec=spec).compute(scheduler="sync")
    np.testing.assert_array_equal(got, poolcli.backward(moved, None, op, spec=spec))


OTHERS = {
    "kmax": dict(k=2), "upsample": dict(scale=2), "lrn": dict(size=3), "bilinear": {},
    "upsample-bilinear": dict(scale=(1.5, 2), mode="bilinear"),
}


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_operators_without_windows_give_the_engines_values(name):
    op, options = name.split("-")[0], OTHERS[name]
    x = np.random.default_rng(0).normal(size=(5, 4, 6, 7))
    dx_in = da.from_array(x, chunks=(2, 3, 4, 5))
    y = poolcli.forward(x, op, **options)
    np.testing.assert_array_equal(pooldask.forward(dx_in, op, **options).compute(scheduler="sync"), y)
    if poolcli.OPS[op].differentiable:
        grad = np.random.default_rng(1).normal(size=y.shape)
        got = pooldask.backward(dx_in, da.from_array(grad, chunks=2), op, **options).compute(scheduler="sync")
        np.testing.assert_array_equal(got, poolcli.backward(x, grad, op, **options))


def test_unpool_takes_chunked_indices():
    x = np.random.default_rng(2).normal(size=(4, 3, 8, 8))
    y, idx = poolcli.forward(x, return_indices=True, kernel=2)
    got = pooldask.forward(da.from_array(y, chunks=(1, 2, 3, 3)), "unpool", indices=da.from_array(idx, chunks=2),
                           kernel=2)
    np.testing.assert_array_equal(got.compute(scheduler="sync"), poolcli.forward(y, "unpool", indices=idx, kernel=2))


def test_bad_options_are_said_before_any_work():
    x = da.zeros((4, 4), chunks=2)
    with pytest.raises(poolcli.UsageError, match="kernel 9"):
        pooldask.forward(x, kernel=9)
    with pytest.raises(TypeError, match="did you mean kernel"):
        pooldask.forward(x, kernel_size=2)
