"""The traps a new user falls into: each answered with the right result or one clear line.
Each test drives the real command."""

from __future__ import annotations

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
