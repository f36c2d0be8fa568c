"""Every registered operator through every command: forward, backward, shape, visualize (terminal and PNG),
backward --check, an RGBA image and a batch. An operator that forgets one of its facts fails here.

Options an operator needs to run at all are given in NEEDS (unpool's indices, upsample's factor);
an operator not named there runs with its defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from poolcli.engine import OPERATORS
from tests.conftest import run_poolcli as poolcli
from tests.strategies import NON_NEGATIVE, valid_input

NEEDS = {
    "unpool": ["--from-indices", "{d}/idx.npy"],
    "upsample": ["--scale", "2"],
    "lrn": ["--size", "3"],
    "fractional": ["--ratio", "0.6"],
    "deconv": ["--weights", "{d}/deconv.npy", "-s", "2"],
}
# What an operator cannot do, said in one line (exit 2; in a batch, each file's failure line and exit 1)
# rather than done: (operator, step) -> the words said. Unpool's indices fit one input's shape only.
REFUSED = {
    ("mode", "backward"): "has no gradient",
    ("mode", "check"): "has no gradient to check",
    ("unpool", "image"): "the indices have shape",
    ("unpool", "batch"): "the indices have shape",
    ("deconv", "image"): "input channels",  # its weights take 3 channels; the RGBA image has 4
    ("deconv", "batch"): "input channels",
}
NAMES = [op.name for op in OPERATORS]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    from PIL import Image

    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    np.save(d / "x.npy", rng.normal(size=(2, 3, 6, 6)))
    np.save(d / "positive.npy", rng.random(size=(2, 3, 6, 6)))  # for the operators that refuse negative values
    np.save(d / "y.npy", rng.normal(size=(2, 3, 3, 3)))  # what unpool takes: a 2x2 max pooling's output
    order = np.argsort(rng.random((6, 36)), axis=1)[:, :9].reshape(2, 3, 3, 3)
    np.save(d / "idx.npy", order)
    np.save(d / "deconv.npy", rng.normal(size=(3, 2, 2, 2)))  # (C_in, C_out, kh, kw)
    rgba = rng.integers(0, 256, size=(6, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    (d / "batch").mkdir()
    Image.fromarray(rgba, "RGBA").save(d / "batch" / "a.png")
    np.save(d / "batch" / "b.npy", rng.random(size=(2, 3, 6, 6)))
    return d


def _args(op: str, d: Path, step: str) -> list[str]:
    main = "y.npy" if op == "unpool" else "positive.npy" if op in NON_NEGATIVE else "x.npy"
    source = {"image": "rgba.png", "batch": "batch"}.get(step, main)
    return [str(d / source), "--op", op, *(a.format(d=d) for a in NEEDS.get(op, []))]


def _expect(r, op: str, step: str) -> None:
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    refused = REFUSED.get((op, step))
    if refused is None:
        assert r.code == 0, f"{op} {step}: {r.stderr}"
    elif step == "batch":
        failed = [line for line in r.stderr.splitlines() if line.startswith("poolcli: failed: ")]
        assert r.code == 1 and failed and all(refused in line for line in failed), r.stderr
    else:
        assert r.code == 2 and refused in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("op", NAMES)
def test_every_operator_runs_in_every_command(inputs: Path, tmp_path: Path, op: str):
    d = inputs
    steps = {
        "forward": ["forward", *_args(op, d, "forward"), "-o", str(tmp_path / "y.npy")],
        "backward": ["backward", *_args(op, d, "backward"), "-o", str(tmp_path / "dx.npy")],
        "shape": ["shape", *_args(op, d, "shape")],
        "visualize": ["visualize", *_args(op, d, "visualize")],
        "figure": ["visualize", *_args(op, d, "visualize"), "-o", str(tmp_path / "fig.png")],
        "check": ["backward", "--check", *_args(op, d, "check")],
        "image": ["forward", *_args(op, d, "image"), "-o", str(tmp_path / "small.png")],
        "batch": ["forward", *_args(op, d, "batch"), "--out-dir", str(tmp_path / "out"), "--jobs", "1"],
    }
    for step, args in steps.items():
        _expect(poolcli(*args), op, step)
    if REFUSED.get((op, "forward")) is None:
        assert np.load(tmp_path / "y.npy").size > 0


def test_no_operator_is_missing_from_the_refusals_by_mistake():
    assert {op for op, _ in REFUSED} <= set(NAMES)
    assert {op for op in NEEDS} <= set(NAMES)


@pytest.mark.parametrize("op", [op.name for op in OPERATORS if op.selects])
def test_operators_that_select_run_on_raw_image_values(inputs: Path, tmp_path: Path, op: str):
    """Premultiplied colour would change a selected value (kmax once returned [200, 10] for the pixel
    (200, 100, 50, 10)): every operator that selects gives on an RGBA image what it gives on its array."""
    from PIL import Image

    raw = np.asarray(Image.open(inputs / "rgba.png"))
    np.save(tmp_path / "raw.npy", raw)
    extra = [*NEEDS.get(op, [])]
    image = poolcli("forward", inputs / "rgba.png", "--op", op, *extra, "-o", tmp_path / "image.npy")
    array = poolcli("forward", tmp_path / "raw.npy", "--channels-last", "--op", op, *extra, "-o", tmp_path / "a.npy")
    assert image.code == 0 and array.code == 0, image.stderr + array.stderr
    expected = np.load(tmp_path / "a.npy")
    if expected.dtype != raw.dtype:  # a median of two middle values: back to the image's dtype, half up
        expected = np.floor(expected + 0.5).astype(raw.dtype)
    np.testing.assert_array_equal(np.load(tmp_path / "image.npy"), expected)


def test_kmax_keeps_the_largest_channels_of_a_translucent_pixel(tmp_path: Path):
    from PIL import Image

    Image.fromarray(np.array([[[200, 100, 50, 10]]], dtype=np.uint8), "RGBA").save(tmp_path / "p.png")
    r = poolcli("forward", tmp_path / "p.png", "--op", "kmax", "--k", "2", "--axis", "-1", "--format", "json")
    assert r.code == 0, r.stderr
    import json

    assert json.loads(r.text)["data"] == [[[200, 100]]]


@pytest.mark.parametrize("op", NAMES)
def test_independent_axes_can_be_pooled_in_blocks(op: str):
    """What a block executor relies on: cut the input along any axis the operator calls independent,
    pool each block on its own, and the pieces put together are the whole result."""
    from poolcli.engine import OPS, Params, WindowSpec, bind, run_forward

    rng = np.random.default_rng(1)
    x = valid_input(op, rng.normal(size=(3, 4, 6, 6)) if op != "unpool" else rng.normal(size=(3, 4, 3, 3)))
    params = Params(**{"upsample": {"scale": 2.0}, "lrn": {"size": 3}, "fractional": {"ratio": 0.6}}.get(op, {}))
    arrays = {}
    if op == "unpool":
        arrays["indices"] = np.argsort(rng.random((12, 36)), axis=1)[:, :9].reshape(3, 4, 3, 3)
    if op == "fractional":  # its windows from samples per plane, cut with the planes
        arrays["samples"] = rng.random((3, 4, 2))
    whole_arrays = {}  # arrays that are not per plane: kept whole in every block
    if op == "deconv":
        whole_arrays["weights"] = rng.normal(size=(4, 2, 2, 2))
    plan = bind(op, x.shape, WindowSpec(), params, **arrays, **whole_arrays)
    whole = run_forward(x, plan, op, params)
    axes = OPS[op].independent_axes(plan)
    assert axes, f"{op} names no independent axis"
    for axis in axes:
        pieces = []
        for block in np.array_split(np.arange(x.shape[axis]), 2):
            part = {k: np.take(v, block, axis=axis) for k, v in arrays.items()}
            xb = np.take(x, block, axis=axis)
            plan = bind(op, xb.shape, WindowSpec(), params, **part, **whole_arrays)
            if OPS[op].random and "samples" not in arrays:  # its windows draw from their place in the whole: the block says where it starts
                plan = dataclasses.replace(plan, origin=tuple(int(block[0]) if i == axis else 0
                                                              for i in range(len(plan.lead))))
            pieces.append(run_forward(xb, plan, op, params))
        np.testing.assert_allclose(np.concatenate(pieces, axis=axis), whole, rtol=1e-12)


@pytest.mark.parametrize("op", NAMES)
@pytest.mark.parametrize("shape", [(0, 3, 6, 6), (2, 0, 6, 6)])
def test_empty_batch_or_channel_axes_give_empty_results(op: str, shape: tuple[int, ...]):
    """PyTorch's own sample inputs include empty batches and channels: the result is empty, of the right shape."""
    import poolcli
    from poolcli.engine import OPS

    x = np.ones(shape if op != "unpool" else shape[:2] + (3, 3))
    options = {"upsample": {"scale": 2}, "lrn": {"size": 3}, "fractional": {"ratio": 0.6}}.get(op, {})
    if op == "unpool":
        options = {"indices": np.zeros(x.shape, dtype=np.int64), "kernel": 2}
    if op == "deconv":  # from C channels to 2 (no channels in: zeros out, as PyTorch's conv_transpose)
        options = {"weights": np.ones((x.shape[1], 2, 2, 2))}
    y = poolcli.forward(x, op, **options)
    if op == "deconv" and x.shape[1] == 0:
        assert y.shape == (2, 2, 7, 7) and not y.any()
        return
    kept = 1 if op in ("bilinear", "spp", "deconv") else 2  # no input channel axis out: a vector, matrix, or C_out
    assert y.size == 0 and y.shape[:kept] == x.shape[:kept]
    if OPS[op].differentiable:
        assert poolcli.backward(x, op=op, **options).shape == x.shape
