"""Batch pooling: many files (images or arrays) into ``--out-dir``, on all cores, with a progress bar.

Output names mirror the input tree under the output folder; a failed file never stops the
batch; existing outputs are skipped unless ``overwrite``.

>>> from pathlib import Path
>>> target(Path("photos/2024/a.jpg"), Path("photos"), Path("small"), None)
PosixPath('small/2024/a.jpg')
"""

from __future__ import annotations

import glob
import os
import signal
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolcli.errors import Interrupted, PoolcliError, UsageError
from poolcli.io.arrays import ARRAY_SUFFIXES
from poolcli.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to pool one file: picklable, no open handles."""

    pooling: Any
    linear: bool = False
    quality: int | None = None
    image_format: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def target(src: Path, root: Path | None, out_dir: Path, image_format: str | None) -> Path:
    """Where the result of ``src`` goes: its path below ``root`` (or its name), under ``out_dir``."""
    rel = src.relative_to(root) if root is not None else Path(src.name)
    dst = out_dir / rel
    if image_format and src.suffix.lower() in IMAGE_SUFFIXES:
        dst = dst.with_suffix("." + image_format.lower().replace("jpeg", "jpg"))
    return dst


def collect(inputs: Iterable[str], out_dir: Path, recursive: bool, image_format: str | None) -> list[tuple[Path, Path]]:
    """(source, destination) pairs for files, folders (images and arrays inside) and glob patterns."""
    pairs: list[tuple[Path, Path]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            walk = path.rglob("*") if recursive else path.glob("*")
            files = sorted(p for p in walk if p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, *ARRAY_SUFFIXES))
            pairs += [(p, target(p, path, out_dir, image_format)) for p in files]
        elif path.exists():
            pairs.append((path, target(path, None, out_dir, image_format)))
        elif glob.has_magic(raw):
            matches = sorted(Path(m) for m in glob.glob(raw, recursive=recursive) if Path(m).is_file())
            if not matches:
                raise UsageError(f"{raw} matches no file")
            pairs += [(p, target(p, None, out_dir, image_format)) for p in matches]
        else:
            pairs.append((path, target(path, None, out_dir, image_format)))  # fails in the batch, with a reason
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        if dst in seen and seen[dst] != src:
            raise UsageError(f"{seen[dst]} and {src} would both be written to {dst}; pool them into different folders")
        seen[dst] = src
    return pairs


def pool_file(src: Path, dst: Path, task: Task) -> None:
    """Read, pool and write one file (images stay images, arrays stay arrays)."""
    from poolcli.engine import run_forward
    from poolcli.io import arrays, images

    if not src.exists():
        raise PoolcliError(f"{src}: no such file")
    if src.suffix.lower() in IMAGE_SUFFIXES:
        loaded = images.read_image(src, task.max_pixels)
        as_image = dst.suffix.lower() in IMAGE_SUFFIXES or task.image_format is not None
        y = images.pool_image(loaded, task.pooling, task.linear, keep_pil=as_image)
        if as_image:
            images.write_image(str(dst), y, loaded.meta, task.image_format, task.quality)
        else:
            arrays.write_array(str(dst), y)
        return
    loaded = arrays.read_array(src, task.pooling.key)
    g = task.pooling.bind(loaded.array.shape)
    arrays.write_array(str(dst), run_forward(loaded.array, g, task.pooling.op, task.pooling.params))


def _work(src: Path, dst: Path, task: Task) -> tuple[str, str]:
    """One file in a worker: ("done", "") or ("failed", reason); never raises for a user error."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        pool_file(src, dst, task)
        return "done", ""
    except PoolcliError as e:
        return "failed", str(e)
    except MemoryError:
        return "failed", "out of memory"
    except Exception as e:  # a bug, reported per file so the batch goes on
        return "failed", f"internal error ({type(e).__name__}: {e})"


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_batch(pairs: list[tuple[Path, Path]], task: Task, jobs: int, overwrite: bool, console: Any) -> Summary:
    """Pool every pair, ``jobs`` files at a time, showing progress on ``console`` when it is a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    summary = Summary()
    todo = []
    for src, dst in pairs:
        if dst.exists() and not overwrite:
            summary.skipped.append(src)
        else:
            todo.append((src, dst))
    columns = (TextColumn("[bold]pooling"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as progress:
        bar = progress.add_task("pool", total=len(todo), rate="")

        def record(src: Path, result: tuple[str, str]) -> None:
            status, reason = result
            if status == "done":
                summary.done.append(src)
            else:
                summary.failed.append((src, reason))
            elapsed = progress.tasks[0].elapsed or 0
            count = len(summary.done) + len(summary.failed)
            progress.update(bar, advance=1, rate=f"{count / elapsed:.1f} files/s" if elapsed else "")

        if jobs <= 1 or len(todo) <= 1:
            for src, dst in todo:
                record(src, _work(src, dst, task))
            return summary
        # Ctrl-C reaches the whole process group: workers ignore it and finish the file in hand
        # (written atomically), while this process cancels the rest and reports the interruption.
        executor = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), initializer=_ignore_interrupts)
        pending: dict[Future, Path] = {}
        try:
            queue = iter(todo)
            for src, dst in queue:  # keep a few files per worker in flight, not the whole batch
                pending[executor.submit(_work, src, dst, task)] = src
                if len(pending) >= 2 * jobs:
                    break
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    record(pending.pop(future), future.result())
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending[executor.submit(_work, *nxt, task)] = nxt[0]
        except KeyboardInterrupt:
            executor.shutdown(wait=True, cancel_futures=True)  # the files in hand finish; none is left half-written
            finished = [f for f in pending if f.done() and not f.cancelled() and f.exception() is None]
            done = len(summary.done) + sum(1 for f in finished if f.result()[0] == "done")
            raise Interrupted(f"interrupted after {done} of {len(todo)} files; every output written is complete, "
                              "and running the same command again skips them") from None
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        executor.shutdown()
    return summary


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
