"""ONNX conventions against ``onnx.reference`` (skipped without onnx): MaxPool's ``Indices`` (flat over the
tensor, ``storage_order`` 0 and 1) through ``--index-layout tensor`` / ``--storage-order column``, read back by
unpool; and Resize's coordinate transformation and nearest modes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import poolcli
from tests.conftest import run_poolcli

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

CASES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _run(op_type: str, inputs: dict[str, np.ndarray], outputs: list[str], **attributes) -> list[np.ndarray]:
    node = helper.make_node(op_type, list(inputs), outputs, **attributes)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, TensorProto.DOUBLE if v.dtype == np.float64
                                                                          else TensorProto.INT64, None)
                                            for k, v in inputs.items()],
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    return ReferenceEvaluator(model).run(None, inputs)


@CASES
@given(data=st.data(), dims=st.integers(1, 3), column=st.booleans())
def test_max_pool_indices_are_onnx_maxpool_indices_through_the_cli(tmp_path, data, dims, column):
    sides = [data.draw(st.integers(3, 6 if dims == 3 else 9)) for _ in range(dims)]
    kernel = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    stride = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    # onnx.reference computes MaxPool's indices in its MaxPool kernel only when a stride or dilation is not 1
    # (all-ones go through its generic pooling, whose indices are per plane and otherwise ordered)
    assume(any(s != 1 for s in stride) or any(d != 1 for d in dilation))
    pads = [data.draw(st.integers(0, (k - 1) // 2)) for k in kernel]
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=(2, 3, *sides))
    try:
        poolcli.geometry(x.shape, kernel=kernel, stride=stride, dilation=dilation, padding=pads, dims=dims)
    except poolcli.UsageError:  # no window fits (ONNX returns an empty output; poolcli says why)
        assume(False)
    try:
        want, want_idx = _run("MaxPool", {"X": x}, ["Y", "I"], kernel_shape=kernel, strides=stride,
                              dilations=dilation, pads=pads + pads, storage_order=int(column))
    except Exception:  # a geometry ONNX refuses
        assume(False)
    order = "column" if column else "row"
    np.save(tmp_path / "x.npy", x)
    flags = ["-k", ",".join(map(str, kernel)), "-s", ",".join(map(str, stride)), "-d", ",".join(map(str, dilation)),
             "-p", ",".join(map(str, pads)), "--dims", str(dims), "--index-layout", "tensor", "--storage-order", order]
    r = run_poolcli("forward", tmp_path / "x.npy", *flags, "--indices", tmp_path / "i.npy", "-o", tmp_path / "y.npy")
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    np.testing.assert_array_equal(np.load(tmp_path / "i.npy"), want_idx)
    # unpool reads them back: each value lands in the cell ONNX's index names
    r = run_poolcli("forward", tmp_path / "y.npy", "--op", "unpool", "--from-indices", tmp_path / "i.npy",
                    "--output-size", ",".join(map(str, sides)), "--dims", str(dims), "-k", "1",
                    "--index-layout", "tensor", "--storage-order", order, "-o", tmp_path / "u.npy")
    assert r.code == 0, r.stderr
    expect = np.zeros((6, int(np.prod(sides))))
    for flat, value in zip(want_idx.ravel(), want.ravel()):
        plane, cell = divmod(int(flat), expect.shape[1])
        if column:  # the spatial axes counted first-fastest
            cell = np.ravel_multi_index(np.unravel_index(cell, sides, order="F"), sides)
        expect[plane, cell] = value
    np.testing.assert_array_equal(np.load(tmp_path / "u.npy"), expect.reshape(x.shape))


def _resize(x: np.ndarray, mode: str, coordinates: str, nearest: str, sizes=None, scales=None) -> np.ndarray:
    inputs: dict[str, np.ndarray] = {"X": x}
    if scales is not None:
        inputs["scales"] = np.array([1, 1, *scales], dtype=np.float32)
        names = ["X", "", "scales"]
    else:
        inputs["sizes"] = np.array([*x.shape[:2], *sizes], dtype=np.int64)
        names = ["X", "", "", "sizes"]
    node = helper.make_node("Resize", names, ["Y"], mode={"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode),
                            coordinate_transformation_mode=coordinates.replace("-", "_"),
                            nearest_mode=nearest.replace("-", "_"))
    types = {np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.float32): TensorProto.FLOAT,
             np.dtype(np.int64): TensorProto.INT64}
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, types[v.dtype], None)
                                            for k, v in inputs.items()],
                              [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    return ReferenceEvaluator(model).run(None, inputs)[0]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), mode=st.sampled_from(["nearest", "bilinear", "bicubic"]),
       coordinates=st.sampled_from(["half-pixel", "pytorch-half-pixel", "align-corners", "asymmetric"]),
       nearest=st.sampled_from(["round-prefer-floor", "round-prefer-ceil", "floor", "ceil"]), by_scale=st.booleans())
def test_upsample_coordinates_are_onnx_resize_through_the_cli(tmp_path, data, mode, coordinates, nearest, by_scale):
    sides = (data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7)))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=(1, 2, *sides))
    flags = ["--op", "upsample", "--mode", mode, "--coordinates", coordinates]
    if mode == "nearest":
        flags += ["--nearest", nearest]
    if by_scale:
        scales = tuple(data.draw(st.sampled_from([0.5, 0.75, 1.5, 2.0, 3.0])) for _ in range(2))
        assume(all(int(np.floor(n * s)) >= 1 for n, s in zip(sides, scales)))
        want = _resize(x, mode, coordinates, nearest, scales=scales)
        flags += ["--scale", ",".join(map(str, scales))]
    else:
        sizes = (data.draw(st.integers(1, 10)), data.draw(st.integers(1, 10)))
        want = _resize(x, mode, coordinates, nearest, sizes=sizes)
        flags += ["--output-size", f"{sizes[0]},{sizes[1]}"]
    np.save(tmp_path / "x.npy", x)
    r = run_poolcli("forward", tmp_path / "x.npy", *flags, "-o", tmp_path / "y.npy")
    assert r.code == 0, r.stderr
    # onnx.reference computes its cubic weights in single precision (from its float attribute cubic_coeff_a,
    # NumPy 2's promotion keeps float32), at coordinates from a float32 scale: equal to 1e-10 in float64 but there,
    # where float32's error is its own: 16 taps, each weight off by up to about 1e-6 (a coordinate of up to 10
    # cells, 1.2e-7 relative, times the cubic's slope of up to 1.5, plus the weight's own rounding). A wrong
    # coefficient or coordinate is off by 1e-2 or more; the same example measured against torch's float64
    # bicubic is equal to 3e-15.
    tolerance = 16e-6 * (1 + np.abs(x).max()) if mode == "bicubic" else 1e-10
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=0, atol=tolerance)


def test_tf_half_pixel_for_nn_is_its_formula():
    """onnx.reference no longer runs the mode (deprecated since opset 13): (x + 0.5) / scale, then the rounding."""
    x = np.arange(5.0)[None]
    y = poolcli.forward(x, "upsample", dims=1, scale=0.6, coordinates="tf-half-pixel-for-nn", nearest="floor")
    assert y.tolist() == [[x[0, int(0.5 / 0.6)], x[0, int(1.5 / 0.6)], x[0, int(2.5 / 0.6)]]]


def test_lanczos_resizes_images_as_pillow_and_is_refused_for_arrays(tmp_path):
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    img.save(tmp_path / "a.png")
    r = run_poolcli("forward", tmp_path / "a.png", "--op", "upsample", "--mode", "lanczos", "--scale", "0.5",
                    "-o", tmp_path / "b.png")
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")),
                                  np.asarray(img.resize((15, 10), Image.Resampling.LANCZOS)))
    np.save(tmp_path / "x.npy", np.ones((4, 4)))
    bad = run_poolcli("forward", tmp_path / "x.npy", "--op", "upsample", "--mode", "lanczos", "--scale", "2")
    assert bad.code == 2 and "resizes images" in bad.stderr
