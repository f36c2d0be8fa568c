"""visualize: the terminal grid read back cell by cell, and the picture checked pixel by pixel."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from poolcli.engine import Params, WindowSpec
from poolcli.render import figure
from poolcli.render.scene import build_scene
from tests import reference
from tests.conftest import npy_bytes
from tests.conftest import run_poolcli as poolcli

TIES = np.array([[1, 3, 2, 2], [3, 0, 2, 2], [5, 5, 0, 7], [1, 5, 7, 7]])
TIES_TEXT = "; ".join(" ".join(map(str, row)) for row in TIES)


def read_grid(text: str, heading: str) -> dict[tuple[int, int], tuple[str, bool]]:
    """The grid under ``heading`` ("input" or "gradient to the input"): {(row, col): (text, bracketed)}.

    Column labels are right-aligned with the values below them, so each value is found by
    the right edge of its column's label.
    """
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    limit = lines[start].find("output") if heading == "input" and "output" in lines[start] else None
    header = lines[start + 1][:limit]
    columns = [(int(m.group()), m.end()) for m in re.finditer(r"\d+", header)]
    cells = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        row = re.match(r"\s*(\d+)", line)
        if row is None:  # a window boundary rule
            continue
        for col, end in columns:
            token = re.split(r"[\s│\[\]]+", line[:end])[-1]
            cells[int(row.group(1)), col] = (token, line[end : end + 1] == "]")
    return cells


def selected_cells(text: str) -> set[tuple[int, int]]:
    return {rc for rc, (_, picked) in read_grid(text, "input").items() if picked}


@pytest.mark.parametrize("ties", ["first", "all", "split"])
def test_terminal_marks_the_cells_each_window_selects(ties):
    r = poolcli("visualize", "--matrix", TIES_TEXT, "--ties", ties)
    assert r.code == 0, r.stderr
    _, dx, _ = reference.pool(TIES.astype(float), ties=ties)
    assert selected_cells(r.text) == {tuple(rc) for rc in np.argwhere(dx != 0)}
    values = read_grid(r.text, "input")
    assert all(int(values[rc][0]) == TIES[rc] for rc in values)
    assert f"--ties {ties}" in r.text


def test_terminal_shows_output_beside_and_gradient_below():
    g = np.array([[1.0, -2.0], [0.5, 4.0]])
    r = poolcli("visualize", "--matrix", TIES_TEXT, "--backward", "--ties", "split", "--grad", "-",
                input=npy_bytes(g))
    assert r.code == 0, r.stderr
    y, dx, _ = reference.pool(TIES.astype(float), ties="split", grad=g)
    head = next(line for line in r.text.splitlines() if line.startswith("input"))
    assert head.split() == ["input", "output"]
    out_rows = [line.split()[-2:] for line in r.text.splitlines()[4:6]]
    assert [[float(v) for v in row] for row in out_rows] == y.tolist()
    grad = read_grid(r.text, "gradient to the input")
    for (i, j), (token, _) in grad.items():
        assert (0.0 if token == "·" else float(token)) == pytest.approx(dx[i, j], abs=5e-3)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(2, 9), k=st.integers(1, 3), s=st.integers(1, 3),
       op=st.sampled_from(["max", "min"]), ties=st.sampled_from(["first", "all"]), seed=st.integers(0, 99))
def test_terminal_selection_matches_the_oracle(h, w, k, s, op, ties, seed):
    x = np.random.default_rng(seed).integers(0, 4, size=(h, w))
    k = min(k, h, w)
    text = "; ".join(" ".join(map(str, row)) for row in x)
    r = poolcli("visualize", "--matrix", text, "--op", op, "-k", k, "-s", s, "--ties", ties)
    assert r.code == 0, r.stderr
    _, dx, _ = reference.pool(x.astype(float), op=op, kernel=(k, k), stride=(s, s), ties=ties)
    shown = read_grid(r.text, "input")
    assert selected_cells(r.text) == {tuple(rc) for rc in np.argwhere(dx != 0) if tuple(rc) in shown}
    assert all(int(v) == x[rc] for rc, (v, _) in shown.items())
    assert (len(shown) < x.size) == ("showing" in r.text)


def test_plane_and_region_pick_what_is_shown():
    x = np.arange(2 * 3 * 12 * 12).reshape(2, 3, 12, 12)
    r = poolcli("visualize", "-", "--plane", "1,2", "--region", "4:8,2:6", input=npy_bytes(x))
    assert r.code == 0, r.stderr
    cells = read_grid(r.text, "input")
    assert sorted({rc[0] for rc in cells}) == [4, 5, 6, 7] and sorted({rc[1] for rc in cells}) == [2, 3, 4, 5]
    assert all(int(v) == x[1, 2][rc] for rc, (v, _) in cells.items())
    flat = poolcli("visualize", "-", "--plane", "5", "--region", "4:8,2:6", input=npy_bytes(x))
    assert flat.text.replace("plane 1,2", "") == r.text.replace("plane 1,2", "")


def test_large_planes_are_cropped_to_80_columns_and_say_so():
    x = np.random.default_rng(1).normal(size=(40, 40))
    r = poolcli("visualize", "-", "-k", "3", "-s", "2", "--backward", input=npy_bytes(x))
    assert r.code == 0, r.stderr
    assert max(len(line) for line in r.text.splitlines()) <= 80
    assert "--region" in r.text and "of 40×40" in r.text


def _real_poolcli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poolcli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_no_color_reads_in_plain_text_and_colour_tints_windows():
    args = ("visualize", "--matrix", TIES_TEXT, "--backward")
    terminal = {"FORCE_COLOR": "1", "COLUMNS": "80", "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    plain = _real_poolcli(*args, env={**terminal, "NO_COLOR": "1"})
    coloured = _real_poolcli(*args, env={**terminal, "NO_COLOR": ""})
    assert plain.returncode == coloured.returncode == 0, plain.stderr + coloured.stderr
    escapes = re.compile(r"\x1b\[[0-9;]*m")
    colours = re.compile(r"\x1b\[[0-9;]*[34]8;")  # foreground or background colour
    assert not colours.search(plain.stdout) and colours.search(coloured.stdout)
    assert "48;2;28;62;104" in coloured.stdout  # a window tint
    text = escapes.sub("", plain.stdout)
    assert escapes.sub("", coloured.stdout) == text
    assert "[3]" in text and "│" in text and "─" in text and "·" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_1d_sequences_show_as_one_row():
    r = poolcli("visualize", "--matrix", "3 1 4 1 5 9 2 6", "--dims", "1", "-k", "3", "-s", "2")
    assert r.code == 0, r.stderr
    assert "kernel 3, stride 2" in r.text
    x = np.array([[3, 1, 4, 1, 5, 9, 2, 6]], dtype=float)  # --matrix gives 1x8; --dims 1 pools each row
    y, dx, _ = reference.pool(x, dims=1, kernel=(3,), stride=(2,), dilation=(1,), pads=((0, 0),))
    assert selected_cells(r.text) == {tuple(rc) for rc in np.argwhere(dx != 0)}
    out_line = next(line for line in r.text.splitlines() if line.lstrip().startswith("0 ") and "[" in line)
    assert [float(v) for v in out_line.split()[-len(y[0]):]] == y[0].tolist()


def figure_panels(scene) -> list[tuple[int, int]]:
    canvas = figure.scene_canvas(scene)
    canvas.render()
    return canvas.origins


def test_picture_shows_heat_windows_selection_and_gradient(tmp_path: Path):
    out = tmp_path / "fig.png"
    r = poolcli("visualize", "--matrix", TIES_TEXT, "--ties", "all", "-o", out)
    assert r.code == 0, r.stderr and r.text == ""
    img = np.asarray(Image.open(out).convert("RGB"))
    scene = build_scene(TIES, WindowSpec(kernel=2), "max", Params(ties="all"))
    (ix, iy), (ox, oy), (gx, gy) = figure_panels(scene)
    cell = figure._cell_size(4, 4)
    heat = figure.colourise(TIES)
    for r_, c in np.ndindex(TIES.shape):
        # the left edge of a cell, inside the window outline and clear of the value and the ring
        probe = figure.ring_inset(cell) - 2  # past the outline (at most 5 px in), before the ring
        assert tuple(img[iy + r_ * cell + cell // 2, ix + c * cell + probe]) == tuple(heat[r_, c])
    # selected cells carry a ring, the others do not
    _, dx, _ = reference.pool(TIES.astype(float), ties="all")
    for (r_, c), v in np.ndenumerate(dx):
        start = ix + c * cell + figure.ring_inset(cell)
        ring = img[iy + r_ * cell + cell // 2, start : start + figure.ring_width(cell) + 1]
        assert (v != 0) == any(tuple(p) == figure.SELECTED for p in ring)
    # window (0, 0) is outlined in the first colour at its corner, window (0, 1) in the second, inset
    assert tuple(img[iy + cell // 2, ix]) == figure.WINDOW_COLOURS[0]
    inset = 2 + 1
    assert tuple(img[iy + cell // 2, ix + 2 * cell + inset]) == figure.WINDOW_COLOURS[1]
    # output panel: the maxima
    y = np.array([[3, 2], [5, 7]])
    yheat = figure.colourise(y)
    for (r_, c), _ in np.ndenumerate(y):
        assert tuple(img[oy + r_ * cell + 4, ox + c * cell + 4]) == tuple(yheat[r_, c])
    # gradient panel: grey where nothing arrives
    for (r_, c), v in np.ndenumerate(dx):
        pixel = tuple(img[gy + r_ * cell + 4, gx + c * cell + 4])
        assert (pixel == figure.ZERO) == (v == 0)


def test_picture_of_an_image_puts_the_pooled_image_beside_the_original(tmp_path: Path):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(40, 64, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "in.png")
    r = poolcli("visualize", tmp_path / "in.png", "--op", "avg", "-k", "8", "-o", tmp_path / "fig.png")
    assert r.code == 0, r.stderr
    img = np.asarray(Image.open(tmp_path / "fig.png").convert("RGB"))
    pooled = np.floor(a.astype(float).reshape(5, 8, 8, 8, 3).mean(axis=(1, 3)) + 0.5).astype(np.uint8)
    grow = 320 // 64  # small images are enlarged
    canvas = figure.Canvas("")
    canvas.add("", Image.new("RGB", (64 * grow, 40 * grow)))
    canvas.add("", Image.new("RGB", (64 * grow, 40 * grow)))
    canvas.render()
    (ax, ay), (bx, by) = canvas.origins
    for i, j in [(0, 0), (2, 3), (4, 7)]:
        assert tuple(img[ay + (i * 8 + 3) * grow, ax + (j * 8 + 5) * grow]) == tuple(a[i * 8 + 3, j * 8 + 5])
        block = 8 * grow
        assert tuple(img[by + i * block + block // 2, bx + j * block + block // 2]) == tuple(pooled[i, j])


@pytest.mark.parametrize("args,code,message", [
    (("-o", "{tmp}/fig.txt"), 2, "picture"),
    (("--plane", "9"), 2, "--plane 9"),
    (("--region", "3:1,0:2"), 2, "--region"),
    (("--region", "9:12,0:2"), 2, "outside"),
    (("--dims", "3", "-k", "1"), 2, "1-D and 2-D"),
    (("--grad", "{tmp}/nope.npy", "--backward"), 1, "no such file"),
])
def test_visualize_errors_are_one_line(tmp_path: Path, args, code, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = poolcli("visualize", "-", *argv, input=npy_bytes(np.zeros((2, 4, 4))))
    assert r.code == code, (r.code, r.stderr)
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_a_batch_leaving_only_whole_files(tmp_path: Path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(300):
        Image.fromarray(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)).save(src / f"{i:03}.png",
                                                                                    compress_level=0)
    proc = subprocess.Popen([sys.executable, "-m", "poolcli", "forward", str(src), "--op", "avg", "-k", "2",
                             "--out-dir", str(dst), "--jobs", "2"], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not (dst.exists() and any(dst.glob("*.png"))) and time.monotonic() < deadline:
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted after" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    written = sorted(dst.iterdir())
    assert 0 < len(written) < 300
    assert all(not p.name.startswith(".") for p in written)  # no temporary files left behind
    for p in written:
        with Image.open(p) as im:
            im.load()
            assert im.size == (200, 200)


def test_region_crops_the_picture_too(tmp_path: Path):
    x = np.arange(64.0).reshape(8, 8)
    r = poolcli("visualize", "-", "--region", "2:6,4:8", "-o", tmp_path / "fig.png", input=npy_bytes(x))
    assert r.code == 0, r.stderr
    img = np.asarray(Image.open(tmp_path / "fig.png").convert("RGB"))
    scene = build_scene(x, WindowSpec(kernel=2), "max", Params()).crop(2, 6, 4, 8)
    (ix, iy), (ox, oy), _ = figure_panels(scene)
    cell = figure._cell_size(4, 4)
    heat, yheat = figure.colourise(x[2:6, 4:8]), figure.colourise(np.array([[27.0, 29], [43, 45]]))
    for i, j in np.ndindex(4, 4):
        probe = figure.ring_inset(cell) - 2
        assert tuple(img[iy + i * cell + cell // 2, ix + j * cell + probe]) == tuple(heat[i, j])
    for i, j in np.ndindex(2, 2):
        assert tuple(img[oy + i * cell + 3, ox + j * cell + 3]) == tuple(yheat[i, j])
