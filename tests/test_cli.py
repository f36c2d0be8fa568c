"""The real command, driven like shell lines: inputs, outputs, and every bad input of §9."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import npy_bytes, run_poolcli
from tests.conftest import run_poolcli as poolcli

M4 = "1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16"


def from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def table_cells(text: str) -> list[list[str]]:
    """The body rows of the rich tables printed: row label, then the values."""
    return [[c.strip() for c in line.strip("│").split("│")] for line in text.splitlines() if line.startswith("│")]


def test_worked_example_prints_the_averages_and_maxima():
    avg = poolcli("forward", "--matrix", M4, "--op", "avg", "-k", "2", "--format", "table")
    assert avg.code == 0
    assert table_cells(avg.text) == [["0", "3.5", "5.5"], ["1", "11.5", "13.5"]]
    piped = poolcli("forward", "--matrix", M4, "--op", "avg", "-k", "2")  # not a terminal: plain text
    assert piped.text == "3.5 5.5\n11.5 13.5\n"
    top = poolcli("forward", "--matrix", M4, "--op", "max", "-k", "2", "--format", "json")
    assert json.loads(top.text)["data"] == [[6, 8], [14, 16]]


def test_npy_in_npy_out(tmp_path: Path):
    x = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = poolcli("forward", tmp_path / "x.npy", "-k", "3", "-s", "2", "-p", "1", "-o", tmp_path / "y.npy")
    assert r.code == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (2, 3, 4, 4) and y.dtype == np.float32
    assert y[1, 2, 0, 0] == x[1, 2, :2, :2].max()


def test_stdin_and_stdout_carry_npy_bytes():
    x = np.arange(16.0).reshape(4, 4)
    r = poolcli("forward", "-", "-o", "-", "--op", "avg", input=npy_bytes(x))
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(from_npy(r.stdout), [[2.5, 4.5], [10.5, 12.5]])


def test_stdin_text_matrix():
    r = poolcli("forward", "-", "--format", "json", input=b"1,2\n3,4\n")
    assert json.loads(r.text)["data"] == [[4]]


def test_npy_to_a_terminal_is_refused():
    r = poolcli("forward", "--matrix", M4, "-o", "-", tty=True)
    assert r.code == 2 and r.stdout == b""
    assert "terminal" in r.stderr


@pytest.mark.parametrize("suffix,sep", [(".txt", " "), (".csv", ",")])
def test_text_files_in_and_out(tmp_path: Path, suffix: str, sep: str):
    (tmp_path / f"x{suffix}").write_text("\n".join(sep.join(str(4 * r + c + 1) for c in range(4)) for r in range(4)))
    r = poolcli("forward", tmp_path / f"x{suffix}", "--op", "avg", "-o", tmp_path / f"y{suffix}")
    assert r.code == 0, r.stderr
    assert (tmp_path / f"y{suffix}").read_text() == f"3.5{sep}5.5\n11.5{sep}13.5\n"


def test_npz_key_and_npz_output_with_indices(tmp_path: Path):
    np.savez(tmp_path / "x.npz", a=np.arange(16).reshape(4, 4), b=np.zeros((2, 2)))
    r = poolcli("forward", tmp_path / "x.npz", "-o", tmp_path / "y.npz")
    assert r.code == 2 and "--key" in r.stderr and "a, b" in r.stderr
    r = poolcli("forward", tmp_path / "x.npz", "--key", "a", "-o", tmp_path / "y.npz", "--indices", tmp_path / "i.npy")
    assert r.code == 0, r.stderr
    with np.load(tmp_path / "y.npz") as out:
        np.testing.assert_array_equal(out["output"], [[5, 7], [13, 15]])
        np.testing.assert_array_equal(out["indices"], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(np.load(tmp_path / "i.npy"), [[5, 7], [13, 15]])


def test_backward_defaults_to_ones_and_checks_the_grad_shape(tmp_path: Path):
    np.save(tmp_path / "x.npy", np.array([[1.0, 1.0], [0.0, 1.0]]))
    r = poolcli("backward", tmp_path / "x.npy", "--ties", "split", "--format", "json")
    np.testing.assert_allclose(json.loads(r.text)["data"], [[1 / 3, 1 / 3], [0, 1 / 3]])
    np.save(tmp_path / "g.npy", np.ones((2, 2)))
    r = poolcli("backward", tmp_path / "x.npy", "--grad", tmp_path / "g.npy", "-o", tmp_path / "dx.npy")
    assert r.code == 2
    assert r.stderr.strip() == (
        f"poolcli: error: --grad {tmp_path / 'g.npy'} has shape (2, 2) but this pooling outputs (1, 1); "
        "use the gradient of this output, or the forward run's -k/-s/-p"
    )
    assert not (tmp_path / "dx.npy").exists()
    np.save(tmp_path / "g.npy", np.full((1, 1), 6.0))
    r = poolcli("backward", tmp_path / "x.npy", "--grad", tmp_path / "g.npy", "--ties", "all", "-o", tmp_path / "dx.npy")
    assert r.code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "dx.npy"), [[6, 6], [0, 6]])


def test_shape_prints_the_formula_and_json():
    r = poolcli("shape", "1,3,224,224", "-k", "3", "-s", "2", "-p", "1")
    assert r.code == 0
    assert "(1, 3, 112, 112)" in r.text
    assert "floor((224 + 1 + 1 - 1·(3-1) - 1) / 2) + 1 = 112" in r.text
    data = json.loads(poolcli("shape", "1x3x224x224", "--global", "--json").text)
    assert data["output"] == [1, 3, 1, 1] and data["axes"][0]["kind"] == "global"


def test_shape_reads_only_the_npy_header(tmp_path: Path):
    path = tmp_path / "big.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(4, 3, 300, 200))
    with open(path, "r+b") as f:  # cut the data: a header-only reader does not notice
        f.truncate(200)
    r = poolcli("shape", path, "-k", "2", "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.text)["output"] == [4, 3, 150, 100]


def test_shape_explains_a_geometry_that_does_not_fit():
    r = poolcli("shape", "1,3,3,3", "-k", "5")
    assert r.code == 2
    assert "axis H: kernel 5 spans 5 cells but the padded input has 3 (3 + 0 + 0); use -k 3 or less, or -p 1" in r.stderr


def test_pretty_print_summarises_large_arrays_and_full_prints_all():
    x = np.arange(40 * 40).reshape(40, 40)
    r = poolcli("forward", "-", "-k", "1", "--format", "table", input=npy_bytes(x))
    assert "shape (40, 40) · int64" in r.text and "⋮" in r.text and "1599" in r.text and "800" not in r.text
    full = poolcli("forward", "-", "-k", "1", "--full", "--format", "table", input=npy_bytes(x))
    assert "800" in full.text


def test_output_never_overwrites_the_input_without_in_place(tmp_path: Path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(16.0).reshape(4, 4))
    r = poolcli("forward", path, "-o", path)
    assert r.code == 2 and "--in-place" in r.stderr
    assert np.load(path).shape == (4, 4)
    r = poolcli("forward", path, "-o", path, "--in-place")
    assert r.code == 0 and np.load(path).shape == (2, 2)


def test_channels_last_and_dims(tmp_path: Path):
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float64).reshape(2, 4, 4, 3)
    r = poolcli("forward", "-", "--channels-last", "-o", "-", input=npy_bytes(x))
    assert from_npy(r.stdout).shape == (2, 2, 2, 3)
    r = poolcli("forward", "-", "--dims", "1", "-k", "3", "-o", "-", input=npy_bytes(x))
    np.testing.assert_array_equal(from_npy(r.stdout), x[..., 2:3])


ERRORS = [
    (["forward", "missing.npy"], 1, "missing.npy: no such file"),
    (["forward", "--matrix", M4, "-k", "5"], 2, "axis H: kernel 5 spans 5 cells"),
    (["forward", "--matrix", M4, "-k", "0"], 2, "--kernel 0: every value must be 1 or more"),
    (["forward", "--matrix", M4, "-k", "2,x"], 2, "--kernel 2,x: 'x' is not a whole number"),
    (["forward", "--matrix", M4, "-p", "1,2,3"], 2, "--padding 1,2,3 has 3 values"),
    (["forward", "--matrix", M4, "-p", "sideways"], 2, "--padding sideways: not a padding"),
    (["forward", "--matrix", M4, "--op", "medain"], 2, "--op medain: not an operator; did you mean median"),
    (["forward", "--matrix", M4, "--op", "average"], 2, "did you mean avg"),
    (["forward", "--matrix", M4, "--no-count-pad"], 2, "--no-count-pad goes with --op avg, lp, mixed, gem or avgmax, not --op max"),
    (["forward", "--matrix", M4, "--op", "mode", "--alpha", "0.2"], 2, "--alpha goes with --op mixed or lrn"),
    (["forward", "--matrix", M4, "--global", "-k", "2"], 2, "--global sets the windows itself"),
    (["forward", "--matrix", "1 2; 3"], 1, "row 2 has 1 values but row 1 has 2"),
    (["forward", "--matrix", "1 two"], 1, "'two' is not a number"),
    (["forward", "--matrix", M4, "--op", "lp", "--p", "0"], 2, "--p 0.0: the norm's exponent"),
    (["forward", "--matrix", M4, "--op", "mixed", "--alpha", "2"], 2, "--alpha 2.0"),
    (["forward"], 2, "no input"),
    (["backward", "--matrix", M4, "--ties", "some"], 2, "'some' is not one of"),
    (["shape", "1,3,a"], 2, "'1,3,a': 'a' is not a size"),
    (["shape", "1,3,x,224"], 2, "'1,3,x,224': 'x' is not a size"),
    (["shape", "1,3,,224"], 2, "'1,3,,224': an empty size"),
    (["forward", "--matrix", M4, "--bogus"], 2, "No such option: --bogus"),
]


@pytest.mark.parametrize("args,code,message", ERRORS)
def test_bad_input_gets_one_clear_line_and_no_output(tmp_path: Path, args, code, message):
    out = tmp_path / "y.npy"
    r = poolcli(*args, "-o", out) if args[0] != "shape" else poolcli(*args)
    assert r.code == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("poolcli: error: ")
    assert message in lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_pickled_and_corrupt_npy_files_are_refused(tmp_path: Path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = poolcli("forward", tmp_path / "obj.npy")
    assert r.code == 1 and "pickled" in r.stderr and "never loads" in r.stderr
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    r = poolcli("forward", tmp_path / "bad.npy", "-o", tmp_path / "y.npy")
    assert r.code == 1 and "not a valid .npy file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.npy").exists()


def test_failed_write_leaves_no_file(tmp_path: Path):
    r = poolcli("forward", "--matrix", M4, "-o", tmp_path / "nope" / "y.npy")
    assert r.code == 1 and "does not exist" in r.stderr
    r = poolcli("forward", "--matrix", "1 2 3; 4 5 6", "-k", "1", "--dims", "1", "-o", tmp_path / "y.parquet")
    assert r.code == 2 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["before the command", "after it"])
def test_debug_shows_the_traceback_and_keeps_the_exit_status(where: str):
    args = ["forward", "--matrix", M4, "-k", "9"]
    args = ["--debug", *args] if where == "before the command" else [*args, "--debug"]
    r = subprocess.run([sys.executable, "-m", "poolcli", *args], capture_output=True, text=True)
    plain = subprocess.run([sys.executable, "-m", "poolcli", *(a for a in args if a != "--debug")],
                           capture_output=True, text=True)
    assert r.returncode == plain.returncode == 2
    assert "Traceback" in r.stderr and "Traceback" not in plain.stderr
    assert r.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def test_console_script_and_python_m_agree(tmp_path: Path):
    env = dict(os.environ, COLUMNS="100")
    a = subprocess.run(["poolcli", "shape", "1,3,224,224", "-k", "3", "-s", "2", "-p", "1", "--json"],
                       capture_output=True, text=True, env=env)
    b = subprocess.run([sys.executable, "-m", "poolcli", "shape", "1,3,224,224", "-k", "3", "-s", "2", "-p", "1",
                        "--json"], capture_output=True, text=True, env=env)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout
    assert json.loads(a.stdout)["output"] == [1, 3, 112, 112]


@pytest.mark.parametrize("command", ["forward", "backward", "shape", "visualize"])
def test_help_shows_examples(command):
    r = poolcli(command, "--help")
    assert r.code == 0 and "Examples" in r.text and f"poolcli {command}" in r.text


def test_zarr_without_dask_says_how_to_install_it(tmp_path, monkeypatch):
    """Dask is an optional extra: without it a .zarr path or --scheduler is one line saying what to install."""
    for name in ("dask", "dask.array", "poolcli.dask"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of these now fails, as if not installed
    np.save(tmp_path / "x.npy", np.ones((4, 4)))
    for args in (["forward", tmp_path / "v.zarr"], ["forward", tmp_path / "x.npy", "-o", tmp_path / "y.zarr"],
                 ["backward", tmp_path / "x.npy", "--scheduler", "tcp://127.0.0.1:9"]):
        run = run_poolcli(*args)
        assert run.code == 2 and 'pip install "poolcli[dask]"' in run.stderr and "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
