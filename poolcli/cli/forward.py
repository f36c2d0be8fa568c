"""``poolcli forward``: pool one array or image, or a batch of them into --out-dir.

>>> from poolcli.cli import main
>>> main(["forward", "--matrix", "1 2; 3 4", "--format", "json"])
{"shape": [1, 1], "dtype": "int64", "data": [[4]]}
0
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from poolcli.cli import scale
from poolcli.cli.common import (
    BATCH,
    IMAGE_SUFFIX_SET,
    OUTPUT,
    BlockOpt,
    FormatOpt,
    FullOpt,
    InPlaceOpt,
    OutputOpt,
    Pooling,
    SchedulerOpt,
    ThreadsOpt,
    block_bytes,
    check_blocks,
    check_format,
    emit,
    guard,
    npy_file,
    pooling_options,
)
from poolcli.errors import UsageError
from poolcli.io.images import DEFAULT_MAX_PIXELS

EPILOG = (
    "Examples:\n"
    "poolcli forward x.npy -k 3 -s 2 -p 1 -o y.npy\n"
    "poolcli forward photos/ -k 4 --out-dir small/"
)  # one example a line, as typed


@pooling_options
def forward(
    inputs: Annotated[list[str] | None, typer.Argument(metavar="INPUT...", show_default=False,
                                                       help="Array files, images, folders or globs; - for stdin.")]
    = None,
    output: OutputOpt = None,
    indices: Annotated[str | None, typer.Option("--indices", rich_help_panel=OUTPUT, metavar="IDX.npy",
                                                help="Save max/min arg-max indices too.")] = None,
    full: FullOpt = False,
    fmt: FormatOpt = None,
    in_place: InPlaceOpt = False,
    threads: ThreadsOpt = None,
    block_mb: BlockOpt = None,
    scheduler: SchedulerOpt = None,
    out_dir: Annotated[str | None, typer.Option("--out-dir", rich_help_panel=BATCH, metavar="DIR",
                                                help="Pool every input into DIR.")]
    = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", rich_help_panel=BATCH,
                                            help="Into sub-folders too.")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", rich_help_panel=BATCH, metavar="N", min=1,
                                             help="Worker processes (all cores).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=BATCH,
                                            help="Replace outputs that exist.")] = False,
    with_arrays: Annotated[bool, typer.Option("--arrays", rich_help_panel=BATCH,
                                              help="Folders yield arrays too.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=BATCH,
                                        help="Say only what failed.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", rich_help_panel=BATCH,
                                          help="A line per file.")] = False,
    linear: Annotated[bool, typer.Option("--linear", rich_help_panel=BATCH,
                                         help="Average in linear light.")] = False,
    quality: Annotated[int | None, typer.Option("--quality", rich_help_panel=BATCH, min=1, max=100, metavar="Q",
                                                help="JPEG/WebP quality (the input's).")] = None,
    max_pixels: Annotated[int, typer.Option("--max-pixels", rich_help_panel=BATCH, metavar="N", min=1,
                                            help="Refuse larger images.", show_default=False)]
    = DEFAULT_MAX_PIXELS,
    pool: Any = None,
) -> None:
    """Pool arrays and images; images keep their mode, depth and format."""
    from poolcli.engine import run_forward, run_indices
    from poolcli.io import arrays

    pooling = Pooling(pool, threads=threads)
    terminal, image_format = check_format(fmt)
    sources = inputs or []
    if len(sources) <= 1 and out_dir is None and (scheduler is not None or scale.is_zarr(output)
                                                  or scale.is_zarr(sources[0] if sources else None)):
        if indices is not None:
            raise UsageError("--indices goes with arrays in memory or .npy files; Dask runs write one output")
        return scale.run("forward", pooling, sources[0] if sources else None, output, scheduler, fmt=terminal,
                         full=full)
    if out_dir is not None or len(sources) > 1 or any(Path(s).is_dir() for s in sources):
        if quiet and verbose:
            raise UsageError("--quiet and --verbose say opposite things; give one")
        if scheduler is not None and jobs is not None:
            raise UsageError("--jobs sets this machine's worker processes; with --scheduler the cluster's workers "
                             "pool the files: drop one")
        return _batch(sources, out_dir, output, indices, recursive, jobs, overwrite, pooling,
                      dict(linear=linear, quality=quality, image_format=image_format, max_pixels=max_pixels),
                      with_arrays, "quiet" if quiet else "verbose" if verbose else "", scheduler)
    for flag, given in (("--recursive", recursive), ("--jobs", jobs is not None), ("--overwrite", overwrite),
                        ("--arrays", with_arrays), ("--quiet", quiet), ("--verbose", verbose)):
        if given:
            raise UsageError(f"{flag} goes with a batch (--out-dir, a folder or several inputs); "
                             "one input is written with -o")
    _check_image_output(output, image_format, quality)
    written = guard(pooling, sources[0] if sources else None, {"-o": output, "--indices": indices}, in_place)
    output, indices = written.get("-o", output), written.get("--indices", indices)
    loaded = pooling.read(sources[0] if sources else None, main=True, max_pixels=max_pixels, frames=True)
    if loaded.meta.get("kind") == "image":
        if indices is not None:
            raise UsageError("--indices works on arrays; convert the image with -o x.npy first")
        from poolcli import imaging

        if output is not None and (Path(output).suffix.lower() in IMAGE_SUFFIX_SET or image_format):
            imaging.pool_and_write(loaded, pooling.recipe(), linear, output, image_format, quality)
            return None
        return emit(imaging.pool_as_array(loaded, pooling.recipe(), linear), output, full, terminal)
    g = pooling.bind(loaded.array.shape)
    if indices is not None and (indices == "-" or Path(indices).suffix.lower() != ".npy"):
        raise UsageError(f"--indices {indices}: give a .npy file name")
    run = dict(threads=threads, block_bytes=block_bytes(block_mb))
    if npy_file(output):  # written block by block into the mapped file: an output larger than memory fits
        check_blocks(pooling.op, g, loaded.array.dtype, block_mb)
        with arrays.NpyOutputs([output] + ([indices] if indices is not None else [])) as files:
            if indices is not None:
                run_indices(loaded.array, g, pooling.op, allocate=files.allocate, params=pooling.params, **run)
            else:
                run_forward(loaded.array, g, pooling.op, pooling.params, allocate=files.allocate, **run)
        return None
    idx = None
    if indices is not None:
        y, idx = run_indices(loaded.array, g, pooling.op, params=pooling.params, **run)
    else:
        y = run_forward(loaded.array, g, pooling.op, pooling.params, **run)
    npz = idx is not None and output is not None and output.lower().endswith(".npz")
    emit(y, output, full, terminal, {"indices": idx} if npz else None)
    if idx is not None:
        arrays.write_array(indices, idx)
    return None


def _check_image_output(output: str | None, image_format: str | None, quality: int | None) -> None:
    """Refuse image options that would be ignored: --format with no -o, a suffix --format contradicts,
    --quality for a format without one."""
    from poolcli.io.images import format_name, pil_format

    named = pil_format(Path(output).suffix) if output not in (None, "-") else None
    if image_format is not None:
        if output is None:
            raise UsageError(f"--format {image_format} writes an image: give -o FILE, or -o - for standard output")
        wanted = format_name("-", image_format)
        if named is not None and named != wanted:
            raise UsageError(f"-o {output} names a {named} file but --format {image_format} asks for "
                             f"{wanted}; drop --format, or give the file its suffix")
    kind = format_name("-", image_format) if image_format else named
    if quality is not None and kind not in ("JPEG", "WEBP"):
        raise UsageError(f"--quality sets JPEG and WebP quality; {kind or 'this output'} has none "
                         "(PNG, TIFF and the others are lossless)")


def _batch(sources: list[str], out_dir: str | None, output: str | None, indices: str | None, recursive: bool,
           jobs: int | None, overwrite: bool, pooling: Pooling, images: dict[str, Any], with_arrays: bool,
           talk: str, scheduler: str | None = None) -> int:
    """forward over many files into --out-dir; exit 1 if any failed."""
    from rich.console import Console

    from poolcli import batch

    if out_dir is None:
        if len(sources) == 1:
            raise UsageError(f"{sources[0]} is a folder: its files are pooled as a batch; "
                             "name a folder for the results with --out-dir")
        raise UsageError(f"{len(sources)} inputs given; name a folder for the results with --out-dir")
    if output is not None or indices is not None:
        raise UsageError("--out-dir writes one file per input; drop -o/--indices")
    if "-" in sources or pooling.matrix is not None:
        raise UsageError("a batch reads files; standard input and --matrix take one array, without --out-dir")
    pooling.threads = pooling.threads or 1  # the worker processes share the cores
    recipes = _recipe_or_reason(pooling), _recipe_or_reason(pooling, image=True)
    if all(isinstance(r, str) for r in recipes):  # neither arrays nor images can be pooled so
        raise UsageError(recipes[1])
    task = batch.Task(*recipes, pooling.key, pooling.max_bytes, **images)
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more worker processes")
    if not sources:
        raise UsageError("no input; give image or array files, folders or globs")
    folder = Path(out_dir)
    if folder.is_symlink() and not folder.exists():
        raise UsageError(f"--out-dir {out_dir} is a link to {os.readlink(folder)}, which does not exist")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out-dir {out_dir} is a file, not a folder")
    cores = batch.default_jobs()
    if jobs is not None and jobs > cores:
        print(f"poolcli: warning: --jobs {jobs} is more than the {cores} cores here; "
              "extra workers only share them", file=sys.stderr)
    outputs = Path(os.path.realpath(folder))
    for source in sources:  # a folder of inputs inside the out-dir would be skipped whole as earlier outputs
        if Path(source).is_dir() and Path(os.path.realpath(source)).is_relative_to(outputs):
            raise UsageError(f"--out-dir {out_dir} holds the input folder {source}; its outputs would replace "
                             "the inputs: choose another folder")
    passed: list[Path] = []
    pairs = batch.collect(sources, folder, recursive, task.image_format, with_arrays, passed)
    if not pairs:
        what = "images or arrays" if with_arrays else "images"
        raise UsageError(f"no {what} found in {', '.join(sources)}"
                         + ("" if recursive else "; add --recursive to look in sub-folders")
                         + (f" ({len(passed)} other files passed over; --arrays takes arrays too)" if passed else ""))
    for src, dst in pairs:
        if src.exists() and dst.exists() and os.path.samefile(src, dst):
            raise UsageError(f"--out-dir {out_dir} would overwrite the input {src}; choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True, quiet=talk == "quiet")
    with scale.client(scheduler) as client:
        summary = batch.run_batch(pairs, task, min(jobs or cores, len(pairs)), overwrite, console, client)
    if talk == "verbose":
        where = dict(pairs)
        for src in summary.done:
            print(f"poolcli: wrote {where[src]} (from {src})", file=sys.stderr)
        for src in summary.skipped:
            print(f"poolcli: skipped {where[src]} (exists)", file=sys.stderr)
        for src in passed:
            why = "neither an image nor an array" if with_arrays else "not an image; --arrays takes arrays too"
            print(f"poolcli: passed over {src} ({why})", file=sys.stderr)
    for src, reason in summary.failed:
        reason = reason.removeprefix(f"{src}: ")  # said once
        print(f"poolcli: failed: {src}: {reason}", file=sys.stderr)
    if talk != "quiet" or summary.failed:
        skipped = f", skipped {len(summary.skipped)} (exist; --overwrite replaces them)" if summary.skipped else ""
        other = (f", passed over {len(passed)} other files" + ("" if with_arrays else " (--arrays takes arrays too)")
                 if passed else "")
        print(f"poolcli: done {len(summary.done)}{skipped}, failed {len(summary.failed)}{other} → {folder}",
              file=sys.stderr)
    return 1 if summary.failed else 0


def _recipe_or_reason(pooling: Pooling, image: bool = False) -> Any:
    """The recipe for arrays (or, with ``image``, for images), or why these options cannot pool them."""
    import copy

    try:
        if image:
            pooling = copy.copy(pooling)
            pooling.for_image()
        return pooling.recipe()
    except UsageError as e:
        return str(e)


