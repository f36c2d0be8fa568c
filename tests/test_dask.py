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

WINDOWED = [op.name for op in OPERATORS if op.windowed and not op.random]  # random ones are refused (below)


def chunked(data, x: np.ndarray):
    """``x`` as a Dask array cut into chunks of a drawn size along every axis."""
    chunks = tuple(data.draw(st.integers(1, max(1, n)), label=f"chunk of axis {i}") for i, n in enumerate(x.shape))
    return da.from_array(x, chunks=chunks)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), op=st.sampled_from(WINDOWED))
def test_every_chunking_gives_the_engines_values(data, op):
    x, _, spec = data.draw(pooling_case(dtypes=("float64", "float32", "int16")))
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


@pytest.fixture
def volume(tmp_path):
    """A chunked .zarr store and the same array as .npy."""
    zarr = pytest.importorskip("zarr")
    x = np.random.default_rng(3).normal(size=(4, 3, 40, 36)).astype(np.float32)
    store = zarr.open_array(str(tmp_path / "vol.zarr"), mode="w", shape=x.shape, chunks=(2, 3, 16, 16),
                            dtype=x.dtype)
    store[:] = x
    np.save(tmp_path / "x.npy", x)
    return tmp_path, x


def test_zarr_in_and_out_through_the_command(volume):
    from tests.conftest import run_poolcli

    zarr = pytest.importorskip("zarr")
    tmp, x = volume
    geometry = ["-k", "3", "-s", "2", "-p", "1"]
    run = run_poolcli("forward", tmp / "vol.zarr", *geometry, "-o", tmp / "half.zarr")
    assert run.code == 0, run.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp / "half.zarr"))[:],
                                  poolcli.forward(x, kernel=3, stride=2, padding=1))
    run = run_poolcli("backward", tmp / "vol.zarr", *geometry, "--op", "avg", "-o", tmp / "dx.npy")
    assert run.code == 0, run.stderr
    np.testing.assert_array_equal(np.load(tmp / "dx.npy"), poolcli.backward(x, op="avg", kernel=3, stride=2, padding=1))
    run = run_poolcli("forward", tmp / "x.npy", "-k", "2", "-o", tmp / "half.zarr")  # an .npy in; replaces the store
    assert run.code == 0, run.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp / "half.zarr"))[:], poolcli.forward(x, kernel=2))
    run = run_poolcli("forward", tmp / "vol.zarr", "--global", "--format", "json")
    assert run.code == 0 and '"shape": [4, 3, 1, 1]' in run.text
    assert sorted(p.name for p in tmp.iterdir()) == ["dx.npy", "half.zarr", "vol.zarr", "x.npy"]  # no temporaries


def test_zarr_mistakes_are_said_in_one_line(volume):
    from tests.conftest import run_poolcli

    tmp, _ = volume
    cases = [
        (["forward", tmp / "vol.zarr", "-o", tmp / "vol.zarr"], 2, "is the input"),
        (["forward", tmp / "none.zarr", "-o", tmp / "y.zarr"], 1, "no such Zarr store"),
        (["forward", tmp / "vol.zarr", "-o", tmp / "y.zarr", "--indices", tmp / "i.npy"], 2, "--indices"),
        (["forward", tmp / "vol.zarr", "-o", tmp / "y.zarr", "--scheduler", "tcp://127.0.0.1:9"], 2,
         "no Dask scheduler answers"),
        (["forward", tmp / "vol.zarr", "-k", "99", "-o", tmp / "y.zarr"], 2, "kernel 99"),
    ]
    for args, code, words in cases:
        run = run_poolcli(*args)
        assert run.code == code and words in run.stderr and "Traceback" not in run.stderr, (args, run.stderr)
    assert not (tmp / "y.zarr").exists() and not list(tmp.glob(".*tmp"))


def test_a_running_cluster_pools_the_store(volume):
    from tests.conftest import run_poolcli

    zarr = pytest.importorskip("zarr")
    distributed = pytest.importorskip("distributed")
    tmp, x = volume
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        run = run_poolcli("backward", tmp / "vol.zarr", "-k", "2", "-o", tmp / "dx.zarr", "--scheduler",
                          cluster.scheduler_address)
    assert run.code == 0, run.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp / "dx.zarr"))[:], poolcli.backward(x, kernel=2))


def test_a_cluster_pools_an_image_batch_as_the_local_workers_do(tmp_path):
    """One task a file on the cluster: the same outputs as the local batch, a bad file reported and the rest
    written, existing outputs skipped."""
    from PIL import Image

    from tests.conftest import run_poolcli

    distributed = pytest.importorskip("distributed")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(4)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    (photos / "broken.png").write_bytes(b"not a png")
    local = run_poolcli("forward", photos, "-k", "2", "--out-dir", tmp_path / "local")
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "p0.png").write_bytes(b"kept")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        remote = run_poolcli("forward", photos, "-k", "2", "--out-dir", tmp_path / "remote", "--scheduler",
                             cluster.scheduler_address)
    assert local.code == remote.code == 1 and "broken.png" in remote.stderr
    assert (tmp_path / "remote" / "p0.png").read_bytes() == b"kept"
    for i in range(1, 4):
        assert (tmp_path / "remote" / f"p{i}.png").read_bytes() == (tmp_path / "local" / f"p{i}.png").read_bytes()


def test_random_operators_are_refused_rather_than_drawn_per_chunk():
    x = da.from_array(np.random.default_rng(0).random((2, 3, 8, 8)), chunks=(1, 3, 4, 4))
    with pytest.raises(poolcli.UsageError, match="without Dask"):
        pooldask.forward(x, "stochastic", kernel=2)
