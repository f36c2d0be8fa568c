"""Atomic writes: a temporary file in the destination's folder, renamed over it on success.

Inside ``outputs_together()`` (every command runs in one) the renames wait until the whole command
has succeeded, so a run that fails half way leaves none of its outputs: all are committed
together, after every one of them was written. Replacing a file keeps its permissions (and its
owner where allowed), and a file the user may not write is refused, as ``cp`` refuses it.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_write(d / "out.txt") as f:
...     _ = f.write(b"ok")
>>> (d / "out.txt").read_bytes()
b'ok'
>>> with outputs_together():
...     with atomic_write(d / "a.txt") as f:
...         _ = f.write(b"a")
...     (d / "a.txt").exists()  # not yet: committed when the block succeeds
False
>>> (d / "a.txt").read_bytes()
b'a'
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from poolcli.errors import OutputError


@dataclass
class _Group:
    """Temporary files written so far, each waiting to replace its destination."""

    pid: int
    staged: list[tuple[str, Path]] = field(default_factory=list)


_local = threading.local()  # each thread its own group: a Dask worker pools several files at once in threads


def _current() -> _Group | None:
    group = getattr(_local, "group", None)
    return group if group is not None and group.pid == os.getpid() else None
_temporaries: set[str] = set()  # every temporary file this process has open or staged
_creating = 0  # >0 while a temporary file is made and not yet in _temporaries
_held: list[int] = []  # signals that came in meanwhile


def hold_signal(signum: int) -> bool:
    """For a signal handler: True (and the signal is raised again later) while a temporary file is
    being created and not yet recorded, so that stopping then cannot leave it behind."""
    if _creating:
        _held.append(signum)
        return True
    return False


@contextlib.contextmanager
def _recording() -> Iterator[None]:
    """A window in which a signal handler waits (see ``hold_signal``); the held signal is raised after it."""
    global _creating
    _creating += 1
    try:
        yield
    finally:
        _creating -= 1
        if not _creating and _held:
            signum = _held[0]
            _held.clear()
            signal.raise_signal(signum)


@contextlib.contextmanager
def outputs_together() -> Iterator[None]:
    """Hold back every atomic write in this block; rename them all when it succeeds, remove them if it fails."""
    outer = getattr(_local, "group", None)
    group = _local.group = _Group(os.getpid())
    try:
        yield
    except BaseException:
        discard(group.staged)
        raise
    finally:
        _local.group = outer
    try:
        for tmp, path in group.staged:
            os.replace(tmp, path)
            _temporaries.discard(tmp)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {describe_os_error(e)}") from None
    finally:
        discard(group.staged)  # whatever was not renamed (a rename that failed, and those after it)


def discard(staged: list[tuple[str, Path]]) -> None:
    """Remove temporary files (those already renamed are gone, and skipped)."""
    for tmp, _ in staged:
        _temporaries.discard(tmp)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    staged.clear()


def remove_temporaries() -> None:
    """Remove every temporary file of this process: for a signal handler that must exit at once."""
    for tmp in list(_temporaries):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _temporaries.clear()


def _temporary_prefix(path: Path) -> str:
    """The name every temporary file for ``path`` starts with."""
    return f".{path.name}."


_TEMPORARY_SUFFIX = ".tmp"


def remove_leftovers(path: str | os.PathLike) -> None:
    """Remove temporary files that another process (a killed batch worker) left for ``path``."""
    path = Path(path)
    for leftover in path.parent.glob(f"{glob.escape(_temporary_prefix(path))}*{_TEMPORARY_SUFFIX}"):
        with contextlib.suppress(OSError):
            leftover.unlink()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on failure it vanishes."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: folder {folder} does not exist; create it first")
    keep = _existing(path)
    made: list[tuple[int, str]] = []
    try:
        with _recording():  # a signal held in here is raised as it ends: the file is then removed below
            try:
                made.append(tempfile.mkstemp(dir=folder, prefix=_temporary_prefix(path), suffix=_TEMPORARY_SUFFIX))
            except OSError as e:
                raise OutputError(f"cannot write {path}: {describe_os_error(e)}") from None
            _temporaries.add(made[0][1])
    except BaseException:
        for fd, tmp in made:
            _temporaries.discard(tmp)
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    fd, tmp = made[0]
    group = _current()
    try:
        with os.fdopen(fd, "w+b") as f:  # read too: a multi-page TIFF is appended to in place
            yield f
        _settle(tmp, keep)
        if group is not None:
            group.staged.append((tmp, path))
        else:
            os.replace(tmp, path)
            _temporaries.discard(tmp)
    except BaseException:
        _temporaries.discard(tmp)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _existing(path: Path) -> os.stat_result | None:
    """The file about to be replaced, if any; refuse one the user may not write (as cp does)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write {path}: it is a folder")
    if not os.access(path, os.W_OK):
        raise OutputError(f"cannot write {path}: permission denied (the file is write-protected); "
                          "change its permissions or write elsewhere")
    return st if stat.S_ISREG(st.st_mode) else None


def _settle(tmp: str, keep: os.stat_result | None) -> None:
    """Give the new file the replaced file's mode and owner, or the usual mode for a new file."""
    if keep is None:
        os.chmod(tmp, 0o666 & ~_umask())
        return
    os.chmod(tmp, stat.S_IMODE(keep.st_mode))
    with contextlib.suppress(OSError):  # only root may give a file away; a normal user keeps their own
        os.chown(tmp, keep.st_uid, keep.st_gid)


def describe_os_error(e: OSError) -> str:
    """An OSError in a few plain words: disk full and permission problems said as such.

    >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device"))
    'no space left on the device (disk full)'
    """
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device (disk full)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "the file system is read-only"
    return (e.strerror or str(e)).lower() if e.strerror else str(e)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
