"""Images in and out, premultiplied alpha, linear light, and batches, through the real command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poolcli.imaging import to_linear, to_srgb
from tests.conftest import run_poolcli as poolcli


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def box_average(a: np.ndarray, k: int) -> np.ndarray:
    """Plain block means, the oracle for 2x2 / kxk average pooling of an image."""
    h, w = a.shape[0] // k, a.shape[1] // k
    blocks = a[: h * k, : w * k].astype(np.float64).reshape(h, k, w, k, *a.shape[2:])
    return blocks.mean(axis=(1, 3))


@pytest.mark.parametrize("mode,dtype,channels", [("L", np.uint8, 0), ("RGB", np.uint8, 3), ("I;16", np.uint16, 0)])
def test_png_round_trip_keeps_mode_and_bit_depth(tmp_path: Path, mode, dtype, channels):
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    shape = (6, 10, channels) if channels else (6, 10)
    a = rng.integers(0, top, size=shape, endpoint=True).astype(dtype)
    Image.fromarray(a).save(tmp_path / "in.png")
    assert Image.open(tmp_path / "in.png").mode == mode
    r = poolcli("forward", tmp_path / "in.png", "--op", "avg", "-k", "2", "-o", tmp_path / "out.png")
    assert r.code == 0, r.stderr
    out = Image.open(tmp_path / "out.png")
    assert out.mode == mode and out.size == (5, 3)
    np.testing.assert_array_equal(np.asarray(out), np.floor(box_average(a, 2) + 0.5).astype(dtype))


def test_max_pooling_an_image_is_per_channel(tmp_path: Path):
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    a[0, 1] = (200, 0, 0)
    a[1, 0] = (0, 150, 0)
    Image.fromarray(a).save(tmp_path / "in.png")
    assert poolcli("forward", tmp_path / "in.png", "--op", "max", "-o", tmp_path / "out.png").code == 0
    assert pixels(tmp_path / "out.png")[0, 0].tolist() == [200, 150, 0]


def test_rgba_average_uses_premultiplied_alpha(tmp_path: Path):
    a = np.zeros((2, 2, 4), dtype=np.uint8)
    a[..., :3] = (255, 0, 0)  # hidden red under full transparency
    a[0, 0] = (0, 0, 255, 255)  # one opaque blue pixel
    Image.fromarray(a).save(tmp_path / "in.png")
    assert poolcli("forward", tmp_path / "in.png", "--op", "avg", "-o", tmp_path / "out.png").code == 0
    assert pixels(tmp_path / "out.png")[0, 0].tolist() == [0, 0, 255, 64]


def test_linear_light_average(tmp_path: Path):
    a = np.zeros((1, 2), dtype=np.uint8)
    a[0, 1] = 255  # black beside white
    Image.fromarray(a).save(tmp_path / "in.png")
    poolcli("forward", tmp_path / "in.png", "--op", "avg", "-k", "1,2", "-o", tmp_path / "plain.png")
    poolcli("forward", tmp_path / "in.png", "--op", "avg", "-k", "1,2", "--linear", "-o", tmp_path / "linear.png")
    assert pixels(tmp_path / "plain.png")[0, 0] == 128
    expected = round(float(to_srgb(np.array(0.5))) * 255)  # half the light of white is sRGB 188
    assert pixels(tmp_path / "linear.png")[0, 0] == expected == 188
    assert to_linear(np.array(1.0)) == 1.0


def test_palette_and_grey_alpha_and_one_bit(tmp_path: Path):
    p = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16).convert("P")
    p.save(tmp_path / "p.png")
    assert poolcli("forward", tmp_path / "p.png", "--op", "avg", "-o", tmp_path / "p2.png").code == 0
    assert Image.open(tmp_path / "p2.png").mode == "RGB"
    la = Image.fromarray(np.full((4, 4, 2), 200, dtype=np.uint8), "LA")
    la.save(tmp_path / "la.png")
    assert poolcli("forward", tmp_path / "la.png", "--op", "avg", "-o", tmp_path / "la2.png").code == 0
    assert Image.open(tmp_path / "la2.png").mode == "LA"
    one = Image.fromarray(np.eye(4, dtype=bool))
    one.save(tmp_path / "one.png")
    assert poolcli("forward", tmp_path / "one.png", "-o", tmp_path / "one2.png").code == 0
    out = Image.open(tmp_path / "one2.png")
    assert out.mode == "1" and np.asarray(out).tolist() == [[True, False], [False, True]]


def test_exif_orientation_is_applied_and_reset(tmp_path: Path):
    a = np.zeros((4, 8), dtype=np.uint8)
    a[0, :2] = 255  # a bright mark top-left, on a landscape image
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to view: a portrait 8x4
    img.save(tmp_path / "in.jpg", exif=exif.tobytes(), quality=95)
    r = poolcli("forward", tmp_path / "in.jpg", "-o", tmp_path / "out.jpg")
    assert r.code == 0, r.stderr
    out = Image.open(tmp_path / "out.jpg")
    assert out.size == (2, 4)  # portrait after orientation, then halved
    assert out.getexif().get(0x0112) == 1
    assert pixels(tmp_path / "out.jpg")[0, 1] > 128  # the mark now sits top-right


def test_jpeg_keeps_its_quality_tables_and_icc_profile(tmp_path: Path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(32, 32, 3)).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "in.jpg", quality=40, icc_profile=b"fake-icc-profile")
    poolcli("forward", tmp_path / "in.jpg", "--op", "avg", "-o", tmp_path / "out.jpg")
    src, out = Image.open(tmp_path / "in.jpg"), Image.open(tmp_path / "out.jpg")
    assert out.quantization == src.quantization
    assert out.info.get("icc_profile") == b"fake-icc-profile"
    poolcli("forward", tmp_path / "in.jpg", "--quality", "95", "-o", tmp_path / "hq.jpg")
    assert Image.open(tmp_path / "hq.jpg").quantization != src.quantization


def test_image_to_npy_gives_the_array(tmp_path: Path):
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(tmp_path / "in.png")
    poolcli("forward", tmp_path / "in.png", "--op", "max", "-o", tmp_path / "out.npy")
    y = np.load(tmp_path / "out.npy")
    assert y.shape == (2, 2, 3) and y.dtype == np.uint8 and y[0, 0].tolist() == [15, 16, 17]


def test_decompression_bombs_and_corrupt_files_are_refused(tmp_path: Path):
    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    r = poolcli("forward", tmp_path / "big.png", "--max-pixels", "5000", "-o", tmp_path / "out.png")
    assert r.code == 1 and "--max-pixels 10000" in r.stderr and not (tmp_path / "out.png").exists()
    assert poolcli("forward", tmp_path / "big.png", "--max-pixels", "10000", "-o", tmp_path / "out.png").code == 0
    Image.new("RGB", (64, 64), "red").save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    r = poolcli("forward", tmp_path / "cut.jpg", "-o", tmp_path / "cut2.jpg")
    assert r.code == 1 and "truncated or corrupt" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cut2.jpg").exists()


def test_shape_reads_an_image_header(tmp_path: Path):
    Image.new("RGB", (640, 480)).save(tmp_path / "x.png")
    r = poolcli("shape", tmp_path / "x.png", "-k", "4", "--json")
    assert r.code == 0 and '"output": [120, 160, 3]' in r.text


def _photos(folder: Path, n: int) -> None:
    rng = np.random.default_rng(2)
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        where = folder / "sub" if i % 2 else folder
        Image.fromarray(rng.integers(0, 256, size=(16, 24, 3)).astype(np.uint8)).save(where / f"p{i}.png")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_batch_mirrors_the_tree_skips_existing_and_reports_failures(tmp_path: Path, jobs):
    src, out = tmp_path / "photos", tmp_path / "small"
    _photos(src, 4)
    (src / "broken.png").write_bytes(b"not a png")
    r = poolcli("forward", src, "--op", "avg", "-k", "4", "--out-dir", out, "--recursive", "--jobs", jobs)
    assert r.code == 1
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["p0.png", "p2.png", "sub/p1.png",
                                                                          "sub/p3.png"]
    assert Image.open(out / "sub" / "p1.png").size == (6, 4)
    assert "broken.png" in r.stderr and "done 4" in r.stderr and "failed 1" in r.stderr
    assert not list(out.rglob("*.tmp")) and not (out / "broken.png").exists()
    again = poolcli("forward", src / "p0.png", src / "p2.png", "--op", "avg", "-k", "4", "--out-dir", out)
    assert again.code == 0 and "skipped 2" in again.stderr
    fresh = poolcli("forward", src / "p0.png", "-k", "4", "--out-dir", out, "--overwrite", "--format", "jpg")
    assert fresh.code == 0 and (out / "p0.jpg").exists()


def test_batch_needs_an_out_dir():
    r = poolcli("forward", "a.png", "b.png")
    assert r.code == 2 and "--out-dir" in r.stderr


@pytest.mark.parametrize("seed", range(30))
def test_pillow_reduce_fast_path_equals_the_engine(seed):
    import poolcli
    from poolcli.engine import Recipe
    from poolcli.imaging import pool_image

    rng = np.random.default_rng(seed)
    kh, kw = (int(v) for v in rng.choice([1, 2, 4, 8], size=2))
    h, w = int(rng.integers(kh, 70)), int(rng.integers(kw, 70))
    channels = () if seed % 2 else (3,)
    a = rng.integers(0, 256, size=(h, w, *channels)).astype(np.uint8)
    pool = Recipe("avg", poolcli.WindowSpec(kernel=(kh, kw)))
    from poolcli.io.arrays import Loaded

    loaded = Loaded(a, "a", {"mode": "RGB" if channels else "L"})
    np.testing.assert_array_equal(pool_image(loaded, pool), pool_image(loaded, pool, fast=False))


def test_an_image_without_op_is_averaged_not_max_pooled(tmp_path: Path):
    """A 1-px black line on white: a box filter keeps it grey, max pooling would erase it (as
    ImageMagick's -scale keeps it). Arrays keep max; an explicit --op max still max-pools."""
    a = np.full((8, 8), 255, np.uint8)
    a[3, :] = 0
    Image.fromarray(a).save(tmp_path / "scan.png")
    assert poolcli("forward", tmp_path / "scan.png", "-k", "2", "-o", tmp_path / "half.png").code == 0
    assert pixels(tmp_path / "half.png")[1].tolist() == [128] * 4
    assert poolcli("forward", tmp_path / "scan.png", "-k", "2", "--op", "max", "-o", tmp_path / "max.png").code == 0
    assert pixels(tmp_path / "max.png")[1].tolist() == [255] * 4
    np.save(tmp_path / "a.npy", a)
    assert poolcli("forward", tmp_path / "a.npy", "-k", "2", "-o", tmp_path / "a2.npy").code == 0
    assert np.load(tmp_path / "a2.npy")[1].tolist() == [255] * 4
    r = poolcli("shape", tmp_path / "scan.png")
    assert "(--op avg, the default for images)" in r.text
    assert poolcli("forward", tmp_path / "scan.png", "--no-count-pad", "-p", "1", "-o", tmp_path / "p.npy").code == 0
