"""forward and backward through Dask: ``.zarr`` inputs and outputs, and ``--scheduler`` for a running cluster.

The array is read lazily (a ``.zarr`` array as it is chunked, an ``.npy`` memory-mapped in Dask's automatic
chunks), pooled by ``poolcli.dask`` chunk by chunk, and written chunk by chunk: to a ``.zarr`` made beside
the destination under a temporary name and renamed into place when every chunk is written (a failure or
Ctrl-C removes it), to a memory-mapped ``.npy``, or, without ``-o``, computed and shown. A rich progress bar
counts the chunks written. Nothing here runs unless Dask is installed (``pip install "poolcli[dask]"``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from poolcli.errors import InputError, OutputError, UsageError

EXTRA = 'pip install "poolcli[dask]"'


def is_zarr(path: str | None) -> bool:
    """Whether a path names a Zarr store (``.zarr``, a folder)."""
    return path not in (None, "-") and Path(str(path).rstrip("/")).suffix.lower() == ".zarr"


def _dask() -> tuple[Any, Any]:
    try:
        import dask.array as da

        import poolcli.dask as pooldask
    except ImportError:
        raise UsageError(f".zarr files and --scheduler run on Dask, which is not installed; {EXTRA}") from None
    return da, pooldask


def open_lazy(path: str, key: str | None = None) -> Any:
    """A Dask array over a ``.zarr`` store or a memory-mapped ``.npy`` file."""
    da, _ = _dask()
    if is_zarr(path):
        if not Path(path).is_dir():
            raise InputError(f"cannot read {path}: no such Zarr store")
        try:
            return da.from_zarr(path, component=key)
        except Exception as e:  # zarr raises many kinds for a store it cannot read
            raise InputError(f"cannot read {path}: not a Zarr array ({type(e).__name__}: {e})") from None
    if Path(path).suffix.lower() != ".npy":
        raise UsageError(f"{path}: with Dask (.zarr or --scheduler) the inputs are .zarr stores or .npy files")
    from poolcli.io.arrays import read_array

    return da.from_array(read_array(Path(path)).array, chunks="auto")


@contextlib.contextmanager
def client(scheduler: str | None) -> Iterator[Any]:
    """A distributed client on ``scheduler`` (an address), or None for Dask's local threaded scheduler."""
    if scheduler is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise UsageError(f"--scheduler needs Dask's distributed, which is not installed; {EXTRA}") from None
    try:
        connected = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise UsageError(f"--scheduler {scheduler}: no Dask scheduler answers there ({e})") from None
    with connected:
        yield connected


def _chunk_tasks(y: Any, store: Any) -> list[Any]:
    """One delayed task per output chunk, each writing its chunk into ``store`` and returning nothing big."""
    da, _ = _dask()
    stored = da.store(y, store, lock=False, compute=False, return_stored=True)
    done = stored.map_blocks(lambda b: np.ones((1,) * b.ndim, dtype=bool), chunks=(1,) * y.ndim, dtype=bool)
    return list(done.to_delayed().ravel())


def _run(tasks: list[Any], cluster: Any, what: str) -> None:
    """Compute ``tasks`` (locally, or on ``cluster``, a distributed client) behind a progress bar on standard
    error."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        job = bar.add_task(what, total=len(tasks))
        if cluster is not None:
            from distributed import as_completed

            for future in as_completed(cluster.compute(tasks)):
                future.result()  # a failed chunk raises here
                bar.advance(job)
            return
        import dask
        from dask.callbacks import Callback

        class Advance(Callback):
            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
                if isinstance(result, np.ndarray) and result.dtype == bool and result.size == 1:
                    bar.advance(job)

        with Advance():
            dask.compute(*tasks, scheduler="threads")


def _zarr_output(path: str) -> tuple[Path, Path]:
    target = Path(path.rstrip("/"))
    if not target.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {target.parent} does not exist; create it first")
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot write {path}: it is a file, not a Zarr store")
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    return target, tmp


def _commit(tmp: Path, target: Path) -> None:
    """Put the written store in place: the old one (if any) moved aside first, then removed."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
        os.replace(target, old / "store")
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run(command: str, pooling: Any, source: str, output: str | None, scheduler: str | None,
        grad: str | None = None, fmt: str = "auto", full: bool = False) -> None:
    """``command`` (forward or backward) of ``source`` through Dask, written to ``output``."""
    pooldask = _dask()[1]
    if source in (None, "-"):
        raise UsageError("with Dask (.zarr or --scheduler) the input is a .zarr store or an .npy file")
    if output is not None and is_zarr(output) and Path(output.rstrip("/")).resolve() == Path(source).resolve():
        raise UsageError(f"-o {output} is the input; write the result elsewhere")
    x = open_lazy(source, pooling.key)
    op, spec, params = pooling.op, pooling.spec, pooling.params
    arrays = pooling.arrays()
    if command == "forward":
        y = pooldask.forward(x, op, spec=spec, **params.given, **arrays)
    else:
        upstream = open_lazy(grad) if grad is not None else None
        y = pooldask.backward(x, upstream, op, spec=spec, **params.given, **arrays)
    what = f"{command} {Path(source).name}"
    with client(scheduler) as cluster:
        if output is None or output == "-":
            from poolcli.cli.common import emit

            result = y.compute() if cluster is None else cluster.compute(y).result()
            emit(result, output, full, fmt)
            return
        if is_zarr(output):
            import zarr

            target, tmp = _zarr_output(output)
            try:
                y = y.rechunk(tuple(max(c) for c in y.chunks))  # zarr's chunks are regular
                store = zarr.open_array(str(tmp), mode="w", shape=y.shape, chunks=y.chunksize, dtype=y.dtype)
                _run(_chunk_tasks(y, store), cluster, what)
                _commit(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return
        if Path(output).suffix.lower() != ".npy":
            raise UsageError(f"-o {output}: with Dask the output is a .zarr store or an .npy file")
        from poolcli.io.arrays import NpyOutputs

        if cluster is not None:
            raise UsageError("--scheduler writes .zarr stores (which every worker can reach); give -o out.zarr")
        with NpyOutputs([output]) as files:
            _run(_chunk_tasks(y, files.allocate(y.shape, y.dtype)), cluster, what)


__all__ = ["client", "is_zarr", "open_lazy", "run"]
