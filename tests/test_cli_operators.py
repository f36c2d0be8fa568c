"""The new operators through the real command: forward, backward, --check, shape and visualize."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests import reference
from tests.conftest import npy_bytes
from tests.conftest import run_poolcli as poolcli
from tests.test_visualize import read_grid, selected_cells

MATRIX = "3 1 4 1; 5 9 2 6; 5 3 5 8; 9 7 9 3"


def as_json(r) -> np.ndarray:
    assert r.code == 0, r.stderr
    return np.array(json.loads(r.text)["data"], dtype=float)


def test_kmax_axis_0_keeps_the_top_two_of_each_column():
    r = poolcli("forward", "--matrix", MATRIX, "--op", "kmax", "--k", "2", "--axis", "0", "--format", "json")
    assert as_json(r).tolist() == [[5, 9, 5, 6], [9, 7, 9, 8]]
    b = poolcli("backward", "--matrix", MATRIX, "--op", "kmax", "--k", "2", "--axis", "0", "--ties", "split",
                "--format", "json")
    x = np.array([[3, 1, 4, 1], [5, 9, 2, 6], [5, 3, 5, 8], [9, 7, 9, 3]])
    np.testing.assert_allclose(as_json(b), reference.kmax(x, 2, 0, ties="split")[1])


def test_unpool_reads_the_indices_forward_saved(tmp_path: Path):
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 6))
    np.save(tmp_path / "x.npy", x)
    assert poolcli("forward", tmp_path / "x.npy", "-k", "3", "-s", "2", "-p", "1", "--indices", tmp_path / "i.npy",
                   "-o", tmp_path / "y.npz").code == 0
    for source in ("i.npy", "y.npz"):  # the .npz written with -o holds the indices too
        r = poolcli("forward", tmp_path / "y.npz", "--key", "output", "--op", "unpool", "--from-indices",
                    tmp_path / source, "--output-size", "6,6", "-o", tmp_path / "up.npy")
        assert r.code == 0, r.stderr
        up = np.load(tmp_path / "up.npy")
        assert up.shape == x.shape
        np.testing.assert_array_equal(up[up != 0], x[up != 0])
    # as PyTorch's, the size implied by -k 3 -s 2 -p 1 is (3 - 1)·2 - 2 + 3 = 5, too small for these indices
    bad = poolcli("forward", tmp_path / "y.npz", "--key", "output", "--op", "unpool", "--from-indices",
                  tmp_path / "i.npy", "-k", "3", "-s", "2", "-p", "1", "-o", tmp_path / "bad.npy")
    assert bad.code == 2 and "outside the unpooled plane" in bad.stderr and not (tmp_path / "bad.npy").exists()


def test_upsample_by_scale_and_to_a_size():
    r = poolcli("forward", "--matrix", "1 2; 3 4", "--op", "upsample", "--scale", "2", "--format", "json")
    assert as_json(r).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    r = poolcli("forward", "--matrix", "1 2; 3 4", "--op", "upsample", "--output-size", "3", "--mode", "bilinear",
                "--align-corners", "--format", "json")
    assert as_json(r).tolist() == [[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]]


def test_upsampling_an_image_keeps_its_mode(tmp_path: Path):
    from PIL import Image

    a = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "in.png")
    r = poolcli("forward", tmp_path / "in.png", "--op", "upsample", "--scale", "2", "-o", tmp_path / "big.png")
    assert r.code == 0, r.stderr
    big = np.asarray(Image.open(tmp_path / "big.png"))
    np.testing.assert_array_equal(big, a.repeat(2, axis=0).repeat(2, axis=1))


def test_lrn_runs_across_the_channel_axis():
    x = np.random.default_rng(2).normal(size=(2, 6, 5))
    r = poolcli("forward", "-", "--op", "lrn", "--dims", "1", "--size", "3", "--alpha", "0.5", "--format", "json",
                input=npy_bytes(x))
    np.testing.assert_allclose(as_json(r), reference.lrn(x, 3, 0.5, 0.75, 1.0, axis=1)[0], rtol=1e-12)
    assert "across channels" in poolcli("forward", "--matrix", "1 2; 3 4", "--op", "lrn").stderr


def test_bilinear_with_a_second_array_and_both_gradients(tmp_path: Path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 5, 4, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    r = poolcli("forward", tmp_path / "x.npy", "--op", "bilinear", "--with", tmp_path / "y.npy", "--signed-sqrt",
                "-o", tmp_path / "z.npy")
    assert r.code == 0, r.stderr
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (2, 3, 5)
    want = reference.bilinear(x[1].reshape(3, -1), y[1].reshape(5, -1), signed_sqrt=True)[0]
    np.testing.assert_allclose(z[1], want, rtol=1e-12)
    r = poolcli("backward", tmp_path / "x.npy", "--op", "bilinear", "--with", tmp_path / "y.npy",
                "-o", tmp_path / "grads.npz")
    assert r.code == 0, r.stderr
    with np.load(tmp_path / "grads.npz") as grads:
        assert grads["output"].shape == x.shape and grads["with"].shape == y.shape
        _, dx, dy = reference.bilinear(x[0].reshape(3, -1), y[0].reshape(5, -1))
        np.testing.assert_allclose(grads["output"][0].reshape(3, -1), dx, rtol=1e-10)
        np.testing.assert_allclose(grads["with"][0].reshape(5, -1), dy, rtol=1e-10)


def test_check_passes_for_every_operator():
    r = poolcli("backward", "--check", "--random", "2,4,6,6", "--op", "all")
    assert r.code == 0, r.stderr
    from poolcli.engine import OPERATORS

    lines = {line.split()[0]: line for line in r.text.splitlines()[1:]}
    ops = [op.name for op in OPERATORS if op.differentiable]
    assert sorted(lines) == sorted(op.name for op in OPERATORS)
    for op in OPERATORS:
        if not op.differentiable:
            assert lines[op.name] == f"{op.name:<9} skipped: it has no gradient"
    for op in ops:
        worst = float(lines[op].split("error ")[1].split()[0])
        assert worst < 1e-6 and lines[op].endswith("ok")


def test_check_fails_at_ties_and_on_a_wrong_gradient(monkeypatch):
    r = poolcli("backward", "--check", "samples/ties.txt")
    assert r.code == 1 and "FAILED" in r.text and "non-differentiable" in r.stderr
    from poolcli.engine import OPS

    broken = OPS["avg"].backward
    monkeypatch.setattr(OPS["avg"], "backward", lambda *a: broken(*a) * 1.001)
    r = poolcli("backward", "--check", "--random", "3,3", "--op", "avg")
    assert r.code == 1 and "avg" in r.stderr


@pytest.mark.parametrize("args,out", [
    (("--op", "kmax", "--k", "3"), "(2, 4, 6, 3)"),
    (("--op", "upsample", "--scale", "2,3"), "(2, 4, 12, 18)"),
    (("--op", "unpool", "-k", "3", "-s", "2", "-p", "1"), "(2, 4, 11, 11)"),
    (("--op", "lrn"), "(2, 4, 6, 6)"),
    (("--op", "bilinear"), "(2, 4, 4)"),
])
def test_shape_knows_the_new_operators(args, out):
    r = poolcli("shape", "2,4,6,6", *args)
    assert r.code == 0, r.stderr
    assert r.text.splitlines()[0] == f"(2, 4, 6, 6) → {out}"


def test_visualize_marks_kept_cells_and_landing_cells(tmp_path: Path):
    r = poolcli("visualize", "--matrix", MATRIX, "--op", "kmax", "--k", "2", "--axis", "0")
    assert r.code == 0, r.stderr
    x = np.array([[3, 1, 4, 1], [5, 9, 2, 6], [5, 3, 5, 8], [9, 7, 9, 3]])
    _, dx = reference.kmax(x, 2, 0)
    assert selected_cells(r.text) == {tuple(rc) for rc in np.argwhere(dx != 0)}
    np.save(tmp_path / "x.npy", x.astype(float))
    poolcli("forward", tmp_path / "x.npy", "-k", "2", "--indices", tmp_path / "i.npy", "-o", tmp_path / "y.npy")
    r = poolcli("visualize", tmp_path / "y.npy", "--op", "unpool", "--from-indices", tmp_path / "i.npy", "-k", "2")
    assert r.code == 0, r.stderr
    lines = r.text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("input"))
    right = "\n".join(line[lines[head].index("output"):] for line in lines[head:])
    landed = read_grid(right, "output")
    marked = {rc for rc, (_, m) in landed.items() if m}
    assert marked == {(1, 1), (1, 3), (3, 0), (3, 2)}  # the arg-max of each 2x2 window
    assert all(float(landed[rc][0]) == x[rc] for rc in marked)


@pytest.mark.parametrize("args,message", [
    (("forward", "--matrix", "1 2", "--op", "all"), "--op all goes with backward --check"),
    (("forward", "--matrix", "1 2", "--with", "samples/ties.txt"), "--with goes with --op bilinear, not --op max"),
    (("forward", "--matrix", "1 2", "--k", "3"), "the window size is -k/--kernel"),
    (("forward", "--matrix", "1 2", "--op", "avg", "--scale", "2"), "--scale goes with --op upsample"),
    (("forward", "--matrix", "1 2", "--op", "upsample", "--scale", "x"), "--scale x"),
    (("forward", "--matrix", "1 2", "--op", "upsample", "--mode", "cubic"), "--mode"),
    (("backward", "--random", "3,3"), "--random goes with --check"),
])
def test_new_option_mistakes_are_one_line_usage_errors(args, message):
    r = poolcli(*args)
    assert r.code == 2, (r.code, r.stderr)
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
