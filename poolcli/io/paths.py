"""Which files a command reads and writes, checked before any work: no output may replace an input
(the same file by inode, through symbolic and hard links) or another output of the same command.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()); (d / "x.npy").write_bytes(b"")
0
>>> y = str(d / "y.npy")
>>> guard_outputs({"the input": str(d / "x.npy")}, {"-o": y, "--indices": y}, False)  # doctest: +ELLIPSIS
Traceback (most recent call last):
poolcli.errors.UsageError: -o ... and --indices ... name the same file; give each output its own name
"""

from __future__ import annotations

import os
from pathlib import Path

from poolcli.errors import OutputError, UsageError

MAIN_INPUT = "the input"
NOT_FILES = (None, "-", "--matrix")


def same_target(a: str, b: str) -> bool:
    """Whether two paths name the same file: by inode when both exist, else by their resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def guard_outputs(inputs: dict[str, str | None], outputs: dict[str, str | None], in_place: bool) -> dict[str, str]:
    """Refuse outputs that would replace an input or each other; return where each output is written.

    ``inputs`` and ``outputs`` map an option's name (``-o``, ``--grad``, ``the input``) to a path. With
    ``in_place``, ``-o`` may name the input: it is then written through a symbolic link to its target,
    so that the link stays and the file it points at is updated.
    """
    written: dict[str, str] = {}
    for flag, path in outputs.items():
        if path in NOT_FILES:
            continue
        if Path(path).is_dir():
            raise OutputError(f"cannot write {flag} {path}: it is a folder; give a file name")
        for label, source in inputs.items():
            if source in NOT_FILES or not same_target(path, source):
                continue
            if flag == "-o" and label == MAIN_INPUT and in_place:
                path = os.path.realpath(path)
                continue
            if label == MAIN_INPUT:
                raise UsageError(f"{flag} {path} is the input file; "
                                 + ("pass --in-place to overwrite it" if flag == "-o" else "give another name"))
            raise UsageError(f"{flag} {path} is the {label} input; give the output another name")
        for other, done in written.items():
            if same_target(path, done):
                raise UsageError(f"{other} {done} and {flag} {path} name the same file; "
                                 "give each output its own name")
        written[flag] = path
    return written
