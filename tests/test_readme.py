"""The README's commands run, and its shown outputs are what poolcli prints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```console\n(.*?)```", README, flags=re.S)


def test_first_screen_has_exactly_two_setup_commands():
    lines = BLOCKS[0].strip().splitlines()
    assert len(lines) == 2
    assert "samples/" in lines[0] and "poolcli " in lines[0]
    assert "pytest" in lines[1]


def _commands() -> list[str]:
    found = []
    for block in BLOCKS[1:]:
        for line in block.splitlines():
            if line.startswith("poolcli ") and "INPUT" not in line and "SHAPE" not in line:
                found.append(line)
            elif line.startswith("cat "):
                found.append(line)
    return found


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    return tmp_path


@pytest.mark.parametrize("command", _commands())
def test_readme_commands_run(command: str, workdir: Path):
    if "--grad pooled.npy" in command:
        subprocess.run("poolcli forward samples/feature_map.npy -k 3 -s 2 -p 1 -o pooled.npy", shell=True,
                       cwd=workdir, check=True)
    r = subprocess.run(command, shell=True, cwd=workdir, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _examples() -> list[tuple[str, str]]:
    pairs = []
    for block in BLOCKS:
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            pairs.append((command, output))
    return pairs


@pytest.mark.parametrize("command,expected", _examples())
def test_readme_examples_print_what_they_show(command: str, expected: str, workdir: Path):
    env = dict(os.environ, COLUMNS="120", NO_COLOR="1", TTY_COMPATIBLE="1")  # as typed at a terminal
    r = subprocess.run(command, shell=True, cwd=workdir, capture_output=True, text=True, env=env)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)  # a terminal's bold, not part of the text
    shown = [line.rstrip() for line in plain.strip().splitlines()]
    assert shown == [line.rstrip() for line in expected.strip().splitlines()]


def test_readme_python_blocks_run():
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.S):
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["z"].shape == (2, 8, 8) and namespace["dy"].shape == (2, 3, 5, 5)
