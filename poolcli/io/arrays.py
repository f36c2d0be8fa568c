"""Reading and writing arrays: .npy (never unpickled, memory-mapped), .npz, text, stdin and stdout.

>>> parse_matrix("1 2 3; 4 5 6").tolist()
[[1, 2, 3], [4, 5, 6]]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolcli.errors import InputError, OutputError, UsageError
from poolcli.io.atomic import atomic_write, describe_os_error

NPY_MAGIC = b"\x93NUMPY"
TEXT_SUFFIXES = (".txt", ".csv", ".tsv")
ARRAY_SUFFIXES = (".npy", ".npz", ".json", *TEXT_SUFFIXES)
DEFAULT_MAX_BYTES = 1 << 30  # what an .npz member, a text file or standard input may hold (1 GiB)
_INT = re.compile(r"^[+-]?\d+$")


@dataclass
class Loaded:
    """An input array and what writing a result back needs to know about where it came from."""

    array: np.ndarray
    name: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def stdout_isatty() -> bool:
    """Whether standard output is a terminal; TTY_COMPATIBLE=1 or 0 says so instead (as for rich)."""
    import os

    forced = os.environ.get("TTY_COMPATIBLE", "")
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stdout.isatty()


def parse_text(text: str, name: str, row_sep: str = "\n") -> np.ndarray:
    """A 2-D matrix from text: rows by newline (or ``;``), values by whitespace or commas.

    Integers stay integers (int64); any other number makes the matrix float64.
    """
    rows = [r for r in (line.split("#", 1)[0].strip() for line in text.split(row_sep)) if r]
    if not rows:
        raise InputError(f"{name} holds no numbers; give a matrix such as \"1 2; 3 4\"")
    cells = [[c for c in re.split(r"[,\s]+", r) if c] for r in rows]
    widths = {len(r) for r in cells}
    if len(widths) != 1:
        bad = next(i for i, r in enumerate(cells) if len(r) != len(cells[0]))
        raise InputError(
            f"{name}: row {bad + 1} has {len(cells[bad])} values but row 1 has {len(cells[0])}; "
            "every row needs the same number of values"
        )
    flat = [c for r in cells for c in r]
    try:
        if all(_INT.match(c) for c in flat):
            array = np.array([int(c) for c in flat], dtype=np.int64)
        else:
            array = np.array([float(c) for c in flat], dtype=np.float64)
    except (ValueError, OverflowError) as e:
        word = str(e).split(":")[-1].strip()
        raise InputError(f"{name}: {word} is not a number; values are separated by spaces or commas") from None
    return array.reshape(len(cells), len(cells[0]))


def parse_matrix(text: str) -> np.ndarray:
    """The inline ``--matrix "1 2 3 4; 5 6 7 8"``: rows split by ``;``, values by spaces or commas."""
    return parse_text(text.replace("\n", ";"), "--matrix", row_sep=";")


def _unreadable(name: object, kind: str, error: Exception) -> InputError:
    """The error for a .npy/.npz that numpy refused: pickled data, a broken file, or one that cannot be read."""
    if isinstance(error, OSError) and error.errno is not None:  # permission, I/O error: not the file's fault
        return InputError(f"cannot read {name}: {describe_os_error(error)}")
    if isinstance(error, ValueError) and ("pickle" in str(error) or "object" in str(error).lower()):
        return InputError(
            f"{name} holds Python objects (pickled data), which poolcli never loads; save a numeric array"
        )
    saver = "numpy.save" if kind == ".npy" else "numpy.savez"
    return InputError(f"{name} is not a valid {kind} file ({error}); re-save it with {saver}")


def _npy(source: Path | io.BytesIO, name: str, mmap: bool, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """A .npy file (memory-mapped when ``mmap``) or .npy bytes; anything else is refused by its magic,
    so that numpy never reaches its pickle path. A pipe or device is read through once (bounded)."""
    if isinstance(source, Path):
        try:
            with open(source, "rb") as f:
                if source.is_file():
                    head = f.read(len(NPY_MAGIC))
                else:  # a pipe or device cannot be memory-mapped, nor opened twice
                    source, mmap = io.BytesIO(_read_limited(f, name, max_bytes)), False
        except PermissionError:
            raise InputError(f"cannot read {name}: permission denied") from None
        except OSError as e:
            raise InputError(f"cannot read {name}: {describe_os_error(e)}") from None
    if isinstance(source, io.BytesIO):
        head = source.getvalue()[: len(NPY_MAGIC)]
    if head != NPY_MAGIC:
        raise InputError(f"{name} is not a .npy file ({_looks_like(head)}); give an array saved with numpy.save")
    try:
        if mmap:
            return np.load(source, mmap_mode="r", allow_pickle=False)
        return np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise _unreadable(name, ".npy", e) from None


def _looks_like(head: bytes) -> str:
    """What a file that is not .npy seems to be, from its first bytes.

    >>> _looks_like(bytes([0x89]) + b"PNG")
    'it starts like a PNG image'
    """
    kinds = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"PK": "a zip archive (.npz?)",
             b"GIF8": "a GIF image", b"\x80": "Python pickle data, which poolcli never loads"}
    for magic, kind in kinds.items():
        if head.startswith(magic):
            return f"it starts like {kind}"
    return "it is empty" if not head else "its first bytes are not the .npy magic"


def _npz(path: Path, key: str | None, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if key is None:
                if len(keys) != 1:
                    raise UsageError(
                        f"{path} holds {len(keys)} arrays ({', '.join(keys) or 'none'}); pick one with --key"
                    )
                key = keys[0]
            if key not in keys:
                raise UsageError(f"{path} has no array named {key!r}; it holds {', '.join(keys)}")
            _check_member(path, archive.zip, key, max_bytes)
            array = archive[key]
            if not isinstance(array, np.ndarray):
                raise InputError(f"{path}: {key} is not an array saved by numpy; give an .npz written by numpy.savez")
            return array
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise _unreadable(path, ".npz", e) from None


def _check_member(path: Path, archive: zipfile.ZipFile, key: str, max_bytes: int) -> None:
    """Refuse a member before inflating it: over --max-bytes, or whose .npy header promises more data than
    the member holds (a header that lies would otherwise ask for any amount of memory)."""
    name = key if key in archive.namelist() else f"{key}.npy"
    info = archive.getinfo(name)
    if info.file_size > max_bytes:
        raise InputError(f"{path}: array {key} inflates to {info.file_size:,} bytes, more than --max-bytes "
                         f"{max_bytes:,}; if you trust the file, raise the limit with --max-bytes {info.file_size}")
    if not name.endswith(".npy"):
        return
    with archive.open(name) as f:
        try:
            shape, _, dtype = _read_header(f)
        except (ValueError, EOFError):
            return  # numpy's own reading says what is wrong
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if need > info.file_size:
            raise InputError(f"{path}: array {key} is corrupt (its header says {need:,} bytes of data but the "
                             f"member holds {info.file_size:,}); re-save it with numpy.savez")


def _read_limited(f: Any, name: str, max_bytes: int) -> bytes:
    """All of ``f``, refused past ``max_bytes`` (an endless pipe or a device must not fill memory)."""
    data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError(f"{name} holds more than --max-bytes {max_bytes:,} bytes; "
                         "raise the limit with --max-bytes if that is what you meant")
    return data


def read_stdin(key: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Loaded:
    """Standard input: .npy bytes (detected by the magic) or a text matrix."""
    if sys.stdin is None:
        raise InputError("standard input is closed; pipe .npy bytes or a text matrix into poolcli")
    data = _read_limited(sys.stdin.buffer, "standard input", max_bytes)
    if not data:
        raise InputError("standard input is empty; pipe .npy bytes or a text matrix into poolcli")
    if data.startswith(NPY_MAGIC):
        return Loaded(_npy(io.BytesIO(data), "standard input", mmap=False), "-", {"kind": "npy"})
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("standard input is neither .npy bytes nor a text matrix") from None
    if text.lstrip().startswith("{"):
        return Loaded(parse_json(text, "standard input"), "-", {"kind": "json"})
    return Loaded(parse_text(text, "standard input"), "-", {"kind": "text"})


def parse_json(text: str, name: str) -> np.ndarray:
    """The JSON that ``--format json`` writes, ``{"shape": …, "dtype": …, "data": …}``, back as an array
    (null is NaN).

    >>> parse_json('{"shape": [2], "dtype": "float32", "data": [0.5, null]}', "-")
    array([0.5, nan], dtype=float32)
    """
    try:
        doc = json.loads(text)
        data, dtype = doc["data"], np.dtype(doc.get("dtype", "float64"))
        if dtype.kind not in "biuf":
            raise ValueError(f"dtype {dtype} is not a number type")
        array = np.array(data, dtype=object)
        array = np.where(np.equal(array, None), np.nan, array) if dtype.kind == "f" else array
        array = array.astype(dtype)
        if "shape" in doc and tuple(doc["shape"]) != array.shape:
            raise ValueError(f"its data has shape {array.shape}, not the {tuple(doc['shape'])} it says")
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise InputError(f"{name} is not poolcli's JSON ({e}); give {{\"shape\": …, \"dtype\": …, "
                         "\"data\": …} as --format json writes it") from None
    return array


def stdin_npy_shape() -> tuple[int, ...]:
    """The shape in the .npy header on standard input (``poolcli shape -``), reading no further than it."""
    if sys.stdin is None:
        raise InputError("standard input is closed; pipe .npy bytes into poolcli shape -")
    if sys.stdin.isatty():
        raise UsageError("poolcli shape - reads a .npy header from a pipe: cat x.npy | poolcli shape -")
    stream = sys.stdin.buffer
    head = stream.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        raise InputError(f"standard input is not .npy bytes ({_looks_like(head)}); pipe a file saved with numpy.save")
    try:
        return tuple(_read_header(io.BufferedReader(_Prefixed(head, stream)))[0])  # type: ignore[arg-type]
    except (ValueError, EOFError) as e:
        raise InputError(f"standard input holds a broken .npy header ({e})") from None


class _Prefixed(io.RawIOBase):
    """A stream that gives ``head`` first, then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_array(path: Path, key: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Loaded:
    """An array file by its suffix: .npy, .npz or text."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return Loaded(_npy(path, str(path), mmap=True, max_bytes=max_bytes), str(path), {"kind": "npy"})
    if suffix == ".npz":
        return Loaded(_npz(path, key, max_bytes), str(path), {"kind": "npz"})
    try:
        with open(path, "rb") as f:
            text = _read_limited(f, str(path), max_bytes).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a text matrix (it is not UTF-8 text)") from None
    if suffix == ".json":
        return Loaded(parse_json(text, str(path)), str(path), {"kind": "json"})
    return Loaded(parse_text(text, str(path)), str(path), {"kind": "text"})


def _read_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """A .npy header (shape, Fortran order, dtype) from an open file, without reading the data."""
    version = np.lib.format.read_magic(f)
    reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    return reader.get(version, np.lib.format.read_array_header_2_0)(f)


def npy_header_shape(path: Path) -> tuple[int, ...]:
    """The shape stored in a .npy header, without reading the data."""
    try:
        with open(path, "rb") as f:
            return tuple(_read_header(f)[0])
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied") from None
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path} is not a valid .npy file ({e})") from None


def _text_matrix(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim > 2:
        squeezed = array.reshape([n for n in array.shape if n != 1] or [1])
        if squeezed.ndim > 2:
            raise UsageError(
                f"{name} holds a 2-D matrix but the result has shape {array.shape}; write .npy or .npz instead"
            )
        array = squeezed
    return array.reshape(1, -1) if array.ndim < 2 else array


def text_lines(array: np.ndarray, sep: str, name: str) -> str:
    """A matrix as lines of values split by ``sep`` (a 2-D result, or one that squeezes to 2-D)."""
    matrix = _text_matrix(np.asarray(array), name)
    rows = matrix.astype(np.int64) if matrix.dtype == np.bool_ else matrix
    return "\n".join(sep.join(str(v) for v in row) for row in rows) + "\n"


def to_stdout(data: bytes, what: str, example: str) -> None:
    """Binary output (``-o -``) on standard output: refused on a terminal, where it would be noise.

    ``what`` names the bytes (".npy", "PNG"), ``example`` a file name to suggest."""
    if stdout_isatty():
        raise UsageError(f"refusing to write {what} bytes to a terminal; redirect to a file or pipe "
                         f"(-o - > {example})")
    if sys.stdout is None:
        raise OutputError("standard output is closed; give -o FILE")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write to standard output: {describe_os_error(e)}") from None


class NpyOutputs:
    """Result arrays made as memory-mapped .npy files (for ``allocate=`` of the engine), so that an output
    larger than memory is written block by block; each file is written atomically and committed when the
    ``with`` block succeeds (see ``atomic``), else removed.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with NpyOutputs([str(d / "y.npy")]) as outputs:
    ...     outputs.allocate((2, 3), np.dtype(np.int16))[:] = 7
    >>> np.load(d / "y.npy").tolist()
    [[7, 7, 7], [7, 7, 7]]
    """

    def __init__(self, paths: list[str]) -> None:
        self.paths = list(paths)
        self.made: list[np.ndarray] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> NpyOutputs:
        self._stack.__enter__()
        return self

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The next output file, mapped: an array of ``shape`` and ``dtype`` to fill."""
        path = self.paths[len(self.made)]
        f = self._stack.enter_context(atomic_write(Path(path)))
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                  "shape": tuple(int(n) for n in shape)}
        try:
            np.lib.format.write_array_header_1_0(f, header)
            f.flush()
            offset = f.tell()
            size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if size and hasattr(os, "posix_fallocate"):  # the disk space taken now: a full disk is an error
                os.posix_fallocate(f.fileno(), offset, size)  # here, not a SIGBUS when a mapped page is written
            else:
                f.truncate(offset + size)
            array = np.memmap(f, dtype=dtype, mode="r+", offset=offset, shape=tuple(shape)) if size else \
                np.empty(shape, dtype=dtype)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {describe_os_error(e)}") from None
        self.made.append(array)
        return array

    def __exit__(self, *exc: Any) -> bool:
        try:
            for array in self.made:
                if isinstance(array, np.memmap):
                    try:
                        array.flush()
                    except OSError as e:
                        raise OutputError(f"cannot write {self.paths[0]}: {describe_os_error(e)}") from None
        except BaseException as e:  # a failed flush, or a signal while flushing: the files go, as on any failure
            self.made.clear()
            self._stack.__exit__(type(e), e, e.__traceback__)
            raise
        self.made.clear()
        return bool(self._stack.__exit__(*exc))


def write_array(path: str, array: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
    """Write ``array`` to ``path`` by its suffix (atomically), or as .npy bytes to standard output for ``-``.

    A ``.npz`` holds ``array`` as ``output`` plus the ``extra`` named arrays (indices, a second gradient).
    """
    if path == "-":
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        to_stdout(buf.getvalue(), ".npy", "y.npy")
        return
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise UsageError(f"-o {path}: unknown output type {suffix or '(none)'}; use .npy, .npz, .json, .txt or .csv")
    if suffix in TEXT_SUFFIXES:
        matrix = _text_matrix(array, path)
    try:
        with atomic_write(target) as f:
            if suffix == ".npy":
                np.save(f, array, allow_pickle=False)
            elif suffix == ".npz":
                np.savez(f, output=array, **(extra or {}))
            elif suffix == ".json":
                f.write((to_json(array) + "\n").encode())
            else:
                sep = "," if suffix == ".csv" else ("\t" if suffix == ".tsv" else " ")
                f.write(text_lines(matrix, sep, path).encode())
    except OSError as e:
        raise OutputError(f"cannot write {path}: {describe_os_error(e)}") from None


def to_json(array: np.ndarray, **extra: object) -> str:
    """``{"shape": …, "dtype": …, "data": nested lists}``; NaN and ±inf become null (JSON has no such numbers)."""
    array = np.asarray(array)
    dtype = str(array.dtype)
    if array.dtype.kind == "f":
        if array.dtype.itemsize < 8:  # each value as short as its own precision says: 0.1, not 0.10000000149
            array = array.astype(str).astype(np.float64)
        values = np.where(np.isfinite(array), array.astype(object), None).tolist()
    else:
        values = array.tolist()
    return json.dumps({"shape": list(array.shape), "dtype": dtype, **extra, "data": values})
