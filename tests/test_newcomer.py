"""The traps a new user falls into: each answered with the right result or one clear line.
Each test drives the real command."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_poolcli as poolcli

POOLCLI = [sys.executable, "-m", "poolcli"]


def one_line(r, code: int, *words: str) -> None:
    assert r.code == code, (r.code, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("poolcli: error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_random_shapes_name_the_bad_token():
    one_line(poolcli("backward", "--check", "--random", "2,3,x"), 2, "'2,3,x': 'x' is not a size")


def test_shape_reads_a_npy_header_from_standard_input(tmp_path: Path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 8, 8), dtype=np.float32))
    r = subprocess.run([*POOLCLI, "shape", "-", "-k", "2"], stdin=open(tmp_path / "x.npy", "rb"),
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("(2, 3, 8, 8) → (2, 3, 4, 4)"), r.stderr
    bad = subprocess.run([*POOLCLI, "shape", "-"], input="1 2 3", capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("poolcli: error: standard input is not .npy bytes")


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(d / "a.png")
    Image.fromarray(np.full((8, 8), 30, np.uint8)).save(d / "sub" / "b.jpg")
    (d / "notes.txt").write_text("not a picture")
    np.save(d / "sub" / "features.npy", np.ones((2, 4, 4)))
    return d


def test_a_folder_yields_images_only_and_says_what_it_passed_over(mixed_folder: Path, tmp_path: Path):
    r = poolcli("forward", mixed_folder, "--out-dir", tmp_path / "out", "-r")
    assert r.code == 0, r.stderr
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["a.png", "sub/b.jpg"]
    assert "passed over 2 other files (--arrays takes arrays too)" in r.stderr
    r = poolcli("forward", mixed_folder, "--out-dir", tmp_path / "all", "-r", "--arrays")
    assert r.code == 1 and "failed: " in r.stderr and "notes.txt: 'not' is not a number" in r.stderr
    assert (tmp_path / "all" / "sub" / "features.npy").exists()


def test_quiet_and_verbose_batches(mixed_folder: Path, tmp_path: Path):
    r = poolcli("forward", mixed_folder, "--out-dir", tmp_path / "q", "-r", "--quiet")
    assert (r.code, r.stderr) == (0, "")
    r = poolcli("forward", mixed_folder, "--out-dir", tmp_path / "v", "-r", "--verbose")
    assert r.code == 0
    assert f"poolcli: wrote {tmp_path / 'v' / 'a.png'} (from {mixed_folder / 'a.png'})" in r.stderr
    assert f"poolcli: passed over {mixed_folder / 'notes.txt'}" in r.stderr
    one_line(poolcli("forward", mixed_folder, "--out-dir", tmp_path / "x", "-q", "-v"), 2, "opposite")
    one_line(poolcli("forward", mixed_folder / "a.png", "-o", tmp_path / "y.png", "--quiet"), 2,
             "--quiet goes with a batch")


def test_op_is_read_in_any_case_and_mistakes_get_a_suggestion(tmp_path: Path):
    r = poolcli("forward", "--matrix", "1 2; 3 4", "--op", "AVG", "--format", "json")
    assert r.code == 0 and '"data": [[2.5]]' in r.text
    one_line(poolcli("forward", "--matrix", "1 2; 3 4", "--op", "average"), 2, "did you mean avg?")


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "p.jpg")
    return tmp_path / "p.jpg"


def test_dash_output_with_an_image_format_writes_the_image_to_standard_output(photo: Path, tmp_path: Path):
    r = subprocess.run([*POOLCLI, "forward", str(photo), "--op", "avg", "-k", "2", "--format", "png", "-o", "-"],
                       capture_output=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"\x89PNG") and not (tmp_path / "-").exists()
    import io

    assert Image.open(io.BytesIO(r.stdout)).size == (8, 8)
    tty = subprocess.run([*POOLCLI, "forward", str(photo), "--format", "png", "-o", "-"], capture_output=True,
                         text=True, env={**__import__("os").environ, "TTY_COMPATIBLE": "1"})
    assert tty.returncode == 2 and "refusing to write PNG bytes to a terminal" in tty.stderr


@pytest.mark.parametrize("args,words", [
    (["--dims", "1"], "--dims 1 does not apply to an image"),
    (["--dims", "3"], "--dims 3 does not apply to an image"),
    (["--channels-last"], "--channels-last does not apply to an image"),
    (["-o", "{d}/y.png", "--quality", "80"], "--quality sets JPEG and WebP quality; PNG has none"),
    (["-o", "{d}/y.tiff", "--format", "png"], "names a TIFF file but --format png asks for PNG"),
    (["--format", "tiff"], "--format tiff writes an image: give -o FILE"),
    (["-o", "{d}/y.png", "--arrays"], "--arrays goes with a batch"),
    (["-o", "{d}/y.png", "--verbose"], "--verbose goes with a batch"),
])
def test_options_that_cannot_apply_to_an_image_are_refused(photo: Path, tmp_path: Path, args, words):
    before = sorted(tmp_path.iterdir())
    r = poolcli("forward", photo, *(a.format(d=tmp_path) for a in args))
    one_line(r, 2, words)
    assert sorted(tmp_path.iterdir()) == before


def test_check_refuses_a_gradient_it_would_not_use(tmp_path: Path):
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    one_line(poolcli("backward", "--check", tmp_path / "x.npy", "--grad", tmp_path / "x.npy"), 2, "drop --grad")


def test_an_image_shaped_array_is_said_to_be_read_channels_first(tmp_path: Path):
    np.save(tmp_path / "hwc.npy", np.zeros((12, 8, 3)))
    r = poolcli("forward", tmp_path / "hwc.npy", "-k", "2", "-o", tmp_path / "y.npy")
    assert r.code == 0 and np.load(tmp_path / "y.npy").shape == (12, 4, 1)  # the result is not changed
    assert r.stderr.strip().splitlines() == [f"poolcli: warning: {tmp_path / 'hwc.npy'} (12, 8, 3) is read as "
                                             "(C, H, W), pooling its last two axes; if it is an image array "
                                             "(H, W, C), add --channels-last"]
    quiet = poolcli("forward", tmp_path / "hwc.npy", "-k", "2", "--channels-last", "-o", tmp_path / "z.npy")
    assert quiet.stderr == "" and np.load(tmp_path / "z.npy").shape == (6, 4, 3)


def test_check_names_the_tie_at_the_failing_cell_and_only_then(tmp_path: Path):
    np.savetxt(tmp_path / "ties.txt", np.array([[5, 5, 1, 2], [0, 1, 3, 4]]))
    r = poolcli("backward", "--check", tmp_path / "ties.txt")
    assert r.code == 1 and "equals 1 other cell (a tie)" in r.text and "non-differentiable at a tie" in r.stderr
    np.savetxt(tmp_path / "relu.txt", np.maximum(np.random.default_rng(0).normal(size=(6, 6)), 0))
    relu = poolcli("backward", "--check", tmp_path / "relu.txt")  # zeros tie, but never as a window's max
    assert relu.code == 0 and "ok" in relu.text, relu.stderr


def test_plain_text_in_a_pipe_csv_and_short_json(tmp_path: Path):
    x = (np.arange(16, dtype=np.float32) / 10).reshape(4, 4)
    np.save(tmp_path / "x.npy", x)
    piped = subprocess.run([*POOLCLI, "forward", str(tmp_path / "x.npy"), "-k", "2"], capture_output=True, text=True)
    assert piped.stdout == "0.5 0.7\n1.3 1.5\n" and "┃" not in piped.stdout
    csv = poolcli("forward", tmp_path / "x.npy", "-k", "2", "--format", "csv")
    assert csv.text == "0.5,0.7\n1.3,1.5\n"
    js = poolcli("forward", tmp_path / "x.npy", "-k", "1", "--format", "json")
    assert '"data": [[0.0, 0.1, 0.2, 0.3]' in js.text and '"dtype": "float32"' in js.text
    back = poolcli("forward", "-", "-k", "2", "--op", "avg", "--format", "json", input=js.text.encode())
    assert back.code == 0 and '"dtype": "float32"' in back.text
    np.testing.assert_allclose(__import__("json").loads(back.text)["data"], [[0.25, 0.45], [1.05, 1.25]], rtol=1e-6)


def test_library_mistakes_are_said_in_python_words():
    import poolcli

    with pytest.raises(TypeError, match=r"unknown option kernel_size; did you mean kernel\?"):
        poolcli.forward(np.ones((4, 4)), kernel_size=2)
    with pytest.raises(TypeError, match=r"unknown option kernl; did you mean kernel\?"):
        poolcli.forward(np.ones((4, 4)), kernl=2)
    with pytest.raises(poolcli.UsageError, match=r"^k=0: keep 1 or more values$"):
        poolcli.forward(np.ones((4, 4)), "kmax", k=0)
    with pytest.raises(poolcli.GeometryError) as e:
        poolcli.forward(np.ones((4, 4)), kernel=9)
    assert "use kernel=4 or less, or padding=3" in str(e.value) and "-k" not in str(e.value)


def _help(*args: str) -> str:
    import os

    r = subprocess.run([*POOLCLI, *args, "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("command", ["forward", "backward", "shape", "visualize"])
def test_help_is_a_screenful_in_one_panel_order(command: str):
    from poolcli.engine import OPS

    text = _help(command)
    lines = text.splitlines()
    assert len(lines) <= 64, len(lines)
    panels = [line.split("─ ")[1].split(" ─")[0] for line in lines if line.startswith("╭─ ")]
    assert panels[:5] == ["Arguments", "Options", "Window", "Operator", "Input"], panels
    import re

    tokens = set(re.split(r"[\s(),;│]+", text))
    assert all(name in tokens for name in OPS), "an operator's name is cut at a line end"
    start = next(i for i, x in enumerate(lines) if x.strip() == "Examples:") + 1
    examples = [line.strip() for line in lines[start:] if line.strip()]
    assert examples and all(e.startswith(f"poolcli {command} ") for e in examples), examples
    for e in examples:  # each example runs as far as parsing goes: no option it names is unknown
        assert "No such option" not in subprocess.run([*POOLCLI, *e.split()[1:], "--help"], capture_output=True,
                                                       text=True).stderr


def test_help_shows_the_options_of_the_operator_asked_about():
    plain = _help("forward")
    assert "--count-pad" not in plain and "--size" not in plain and "--k " not in plain and "--alpha" not in plain
    import re

    words = " ".join(w for w in re.split(r"[\s│]+", plain) if w)
    assert "--op X --help: its options" in words  # twenty operators' options do not fit: each is a line away
    assert "--count-pad" in _help("forward", "--op", "avg")
    kmax = _help("forward", "--op", "kmax")
    assert "--k " in kmax and "--axis" in kmax and "--size" not in kmax and "--count-pad" not in kmax
    root = _help()
    commands = [line for line in root.splitlines() if line.startswith("│ ") and line.split()[1] in
                ("forward", "backward", "shape", "visualize")]
    assert len(commands) == 4 and len(root.splitlines()) <= 30
    assert [line.strip() for line in root.splitlines() if line.strip().startswith("poolcli ")][:3] == [
        "poolcli forward x.npy -k 3 -s 2 -p 1 -o y.npy", "poolcli shape 1,3,224,224 -k 3 -s 2 -p 1",
        "poolcli visualize x.npy -k 3 -s 2 --backward"]


def test_shell_completion_offers_commands_and_operators():
    import os

    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "_POOLCLI_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        return subprocess.run(["poolcli"], env=env, capture_output=True, text=True).stdout.split()

    assert complete("poolcli forw", 1) == ["forward"]
    assert set(complete("poolcli forward --op m", 3)) == {"max", "min", "mixed", "median", "mode", "mean"}
    script = subprocess.run(["poolcli", "--show-completion", "bash"], capture_output=True, text=True)
    assert script.returncode == 0 and "_poolcli_completion" in script.stdout


def _scene(**options):
    """avg over a 16×16 plane with these window options."""
    from poolcli.engine import Params, WindowSpec
    from poolcli.render.scene import build_scene

    return build_scene(np.random.default_rng(0).normal(size=(16, 16)), WindowSpec(**options), "avg", Params())


def test_overlapping_windows_are_outlined_without_overlap():
    from poolcli.render.figure import shown_windows

    scene = _scene(kernel=3, stride=1, padding=1)
    rows, cols = shown_windows(scene)
    assert len(rows) < len(scene.rows)  # not every window: they overlap
    for shown, spans in ((rows, scene.rows), (cols, scene.cols)):
        assert all(spans[b][0] > spans[a][-1] for a, b in itertools.pairwise(shown))  # the outlined ones do not


def test_a_dilated_window_outlines_its_taps_not_a_box():
    from poolcli.render.figure import WINDOW_COLOURS, scene_canvas

    scene = _scene(kernel=3, stride=2, dilation=2)
    canvas = scene_canvas(scene)
    picture = canvas.render()
    (x0, y0), cell = canvas.origins[0], 30  # 16 cells in a 480-pixel panel
    between = picture.getpixel((x0 + cell + cell // 2, y0 + 1))  # top edge of cell (0, 1), between taps 0 and 2
    tap = picture.getpixel((x0 + cell // 2, y0 + 1))  # top edge of tap (0, 0)
    assert tap in WINDOW_COLOURS and between not in WINDOW_COLOURS


def test_a_gradient_without_numbers_gets_a_colour_scale_and_titles_name_the_options(tmp_path: Path):
    from poolcli.engine import Params, WindowSpec
    from poolcli.render.figure import scene_canvas
    from poolcli.render.scene import build_scene

    x = np.random.default_rng(0).normal(size=(16, 16))
    adaptive = build_scene(x, WindowSpec(output_size=7), "avg", Params())
    assert [label for label, *_ in scene_canvas(adaptive).panels][-1] == "scale"
    small = build_scene(x[:4, :4], WindowSpec(kernel=2), "avg", Params())
    assert [label for label, *_ in scene_canvas(small).panels][-1] != "scale"  # numbers on the cells already
    from poolcli.cli.visualize import _figure_title

    padded = build_scene(x, WindowSpec(kernel=3, padding=1, ceil=True), "avg", Params(count_pad=False))
    assert _figure_title(padded) == "avg · kernel 3×3, stride 3×3, padding 1, ceil · --no-count-pad"
    np.save(tmp_path / "x.npy", x)
    r = poolcli("visualize", tmp_path / "x.npy", "--output-size", "7", "--op", "avg", "--backward",
                "-o", tmp_path / "fig.png")
    assert r.code == 0 and Image.open(tmp_path / "fig.png").width > 1000
