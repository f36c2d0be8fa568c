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
from collections import deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolcli.engine import Recipe
from poolcli.engine.blocks import default_threads
from poolcli.errors import Interrupted, PoolcliError, UsageError, signal_exit_code
from poolcli.io.arrays import ARRAY_SUFFIXES, DEFAULT_MAX_BYTES
from poolcli.io.atomic import (
    describe_os_error,
    hold_signal,
    outputs_together,
    remove_leftovers,
    remove_temporaries,
)
from poolcli.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to pool one file: picklable, no open handles."""

    recipe: Recipe | str  # arrays: the operator, window, options and extra arrays (or why there is none)
    image_recipe: Recipe | str | None = None  # images (the box filter when no --op was given); None: as arrays
    key: str | None = None  # the array to read from an .npz
    max_bytes: int = DEFAULT_MAX_BYTES
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


def collect(inputs: Iterable[str], out_dir: Path, recursive: bool, image_format: str | None, arrays: bool = False,
            passed: list[Path] | None = None) -> list[tuple[Path, Path]]:
    """(source, destination) pairs for files, folders and glob patterns. A folder or glob yields images only
    (and arrays with ``arrays``); the files it passed over are added to ``passed``. Files named one by one
    are all taken."""
    pairs: list[tuple[Path, Path]] = []
    outputs = Path(os.path.realpath(out_dir))  # resolved, so that ./small and small are the same folder
    wanted = (*IMAGE_SUFFIXES, *(ARRAY_SUFFIXES if arrays else ()))
    passed = [] if passed is None else passed

    def take(files: Iterable[Path]) -> list[Path]:
        found = []
        for p in files:
            if Path(os.path.realpath(p)).is_relative_to(outputs):  # not an earlier run's outputs
                continue
            (found if p.suffix.lower() in wanted else passed).append(p)
        return sorted(found)

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            walk = path.rglob("*") if recursive else path.glob("*")
            pairs += [(p, target(p, path, out_dir, image_format)) for p in take(p for p in walk if p.is_file())]
        elif path.exists():
            pairs.append((path, target(path, None, out_dir, image_format)))
        elif glob.has_magic(raw):
            matches = [Path(m) for m in glob.glob(raw, recursive=recursive) if Path(m).is_file()]
            if not matches:
                raise UsageError(f"{raw} matches no file")
            pairs += [(p, target(p, None, out_dir, image_format)) for p in take(matches)]
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
    from poolcli import imaging
    from poolcli.io import arrays, images

    if not src.exists():
        raise PoolcliError(f"{src}: no such file")
    if src.suffix.lower() in IMAGE_SUFFIXES:
        loaded = images.read_image(src, task.max_pixels)
        recipe = _recipe(task.recipe if task.image_recipe is None else task.image_recipe)
        if dst.suffix.lower() in IMAGE_SUFFIXES or task.image_format is not None:
            imaging.pool_and_write(loaded, recipe, task.linear, str(dst), task.image_format, task.quality)
        else:
            arrays.write_array(str(dst), imaging.pool_as_array(loaded, recipe, task.linear))
        return
    recipe = _recipe(task.recipe)
    loaded = arrays.read_array(src, task.key, task.max_bytes)
    arrays.write_array(str(dst), recipe.forward(loaded.array, recipe.bind(loaded.array.shape)))


def _recipe(recipe: Recipe | str) -> Recipe:
    """The recipe, or the reason this kind of file cannot be pooled with these options."""
    if isinstance(recipe, str):
        raise PoolcliError(recipe)
    return recipe


def _work(src: Path, dst: Path, task: Task) -> tuple[str, str]:
    """One file in a worker: ("done", "") or ("failed", reason); never raises for a user error.

    The file's output is committed as soon as it is written (a batch keeps what it finished).
    """
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with outputs_together():
            pool_file(src, dst, task)
        return "done", ""
    except PoolcliError as e:
        return "failed", str(e)
    except MemoryError:
        return "failed", "out of memory"
    except OSError as e:
        return "failed", describe_os_error(e)
    except Exception as e:  # a bug, reported per file so the batch goes on
        return "failed", f"internal error ({type(e).__name__}: {e})"


def _worker_start() -> None:
    """In each worker: Ctrl-C is the parent's to handle; SIGTERM (also sent when the parent dies) ends the
    worker at once, removing the temporary file of the file in hand. (An exception would not do: the
    executor catches whatever a task raises, and the worker would wait for work that never comes.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def stop(signum: int, frame: object) -> None:
        if hold_signal(signum):  # a temporary file is being made: stop once it is recorded
            return
        remove_temporaries()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    _die_with_parent()


def _die_with_parent() -> None:
    """Ask the kernel to send SIGTERM when the parent process dies (Linux), else watch for it."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGTERM, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the request was made
                os.kill(os.getpid(), signal.SIGTERM)
            return
    except (OSError, AttributeError):
        pass
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


WORKER_DIED = "the worker pooling it died (killed, or out of memory), twice"


def run_batch(pairs: list[tuple[Path, Path]], task: Task, jobs: int, overwrite: bool, console: Any,
              client: Any = None) -> Summary:
    """Pool every pair, ``jobs`` files at a time, showing progress on ``console`` when it is a terminal; with a
    Dask ``client``, one task a file on its cluster instead (the workers must reach the files).

    A worker that dies (killed, out of memory) costs only its files: each is tried once more on its own,
    in a new worker, and reported as failed if that worker dies too; the batch goes on.
    """
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

        try:
            if client is not None:
                _run_on_cluster(todo, task, client, record)
            elif jobs <= 1 or len(todo) <= 1:
                for src, dst in todo:
                    record(src, _work(src, dst, task))
            else:
                _run_parallel(todo, task, jobs, record)
        except KeyboardInterrupt as e:
            done = len(summary.done)
            raise Interrupted(f"interrupted after {done} of {len(todo)} files; every output written is complete, "
                              "and running the same command again skips them", signal_exit_code(e)) from None
    return summary


def _run_on_cluster(todo: list[tuple[Path, Path]], task: Task, client: Any, record: Any) -> None:
    """One Dask task a file, recorded as they finish; a file whose workers all died is reported as failed
    (Dask retries a task whose worker died, then gives up on it), and Ctrl-C cancels what has not run."""
    from distributed import as_completed

    futures = {client.submit(_work, src, dst, task, pure=False): src for src, dst in todo}
    try:
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as e:  # the task never finished: its workers died, or the cluster went away
                result = ("failed", f"the cluster could not pool it ({type(e).__name__}: {e})")
            record(futures[future], result)
    except BaseException:
        client.cancel(list(futures))
        raise


def _run_parallel(todo: list[tuple[Path, Path]], task: Task, jobs: int, record: Any) -> None:
    """Pool ``todo`` on ``jobs`` worker processes, calling ``record(src, result)`` as each file ends."""
    queue = deque(todo)
    suspects: deque[tuple[Path, Path]] = deque()  # in flight when a worker died: retried one at a time
    second_try: set[tuple[Path, Path]] = set()
    pending: dict[Future, tuple[Path, Path]] = {}
    def start() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=min(jobs, len(todo)), initializer=_worker_start)

    executor = start()
    try:
        while queue or suspects or pending:
            if suspects:
                if not pending:
                    item = suspects.popleft()
                    second_try.add(item)
                    pending[executor.submit(_work, *item, task)] = item
            else:
                while queue and len(pending) < 2 * jobs:  # a few files per worker in flight, not the batch
                    item = queue.popleft()
                    pending[executor.submit(_work, *item, task)] = item
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                item = pending.pop(future)
                try:
                    record(item[0], future.result())
                except BrokenProcessPool:
                    broken = True
                    pending[future] = item  # lost with the others
            if broken:  # every file in flight is lost with the pool: retry each alone, or fail the lone one
                lost = list(pending.values())
                pending.clear()
                executor.shutdown(wait=True, cancel_futures=True)
                for item in lost:
                    remove_leftovers(item[1])
                    if item in second_try:
                        record(item[0], ("failed", WORKER_DIED))
                    else:
                        suspects.append(item)
                executor = start()
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group: workers ignore it and finish the file in hand
        # (written atomically), while this process cancels the rest and reports the interruption.
        executor.shutdown(wait=True, cancel_futures=True)
        for future, item in pending.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                record(item[0], future.result())
        raise
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown()


def default_jobs() -> int:
    """All cores this process may use (as many as the engine's threads)."""
    return default_threads()
