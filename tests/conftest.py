"""Shared test helpers: run the real entry point like a shell line."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from typer.testing import CliRunner

from poolcli.cli import main


@dataclass
class Run:
    code: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode()


def run_poolcli(*args: str, input: bytes = b"", tty: bool = False) -> Run:
    """Run ``poolcli ARGS`` in-process; return the exit code, stdout bytes and stderr text."""
    import poolcli.io.arrays as arrays

    old = arrays.stdout_isatty
    arrays.stdout_isatty = lambda: tty
    try:
        with CliRunner().isolation(input=input) as (out, err, *_):
            code = main([str(a) for a in args])
            sys.stdout.flush()
            sys.stderr.flush()
            return Run(code, out.getvalue(), err.getvalue().decode())
    finally:
        arrays.stdout_isatty = old


def npy_bytes(a: np.ndarray) -> bytes:
    """``a`` as the bytes of a .npy file, to feed poolcli on standard input."""
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.fixture
def poolcli():
    return run_poolcli


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/ from the current output")
