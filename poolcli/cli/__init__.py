"""The command line: options -> engine -> io/render, one module per command; ``main`` is the one error boundary.

>>> main(["shape", "4,4", "-k", "2"])
(4, 4) → (2, 2)
axis  size  output size
H        4  floor((4 + 0 + 0 - 1·(2-1) - 1) / 2) + 1 = 2
W        4  floor((4 + 0 + 0 - 1·(2-1) - 1) / 2) + 1 = 2
0
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from poolcli.cli import backward, forward, shape, visualize  # noqa: F401  (each registers its command)
from poolcli.cli.common import app
from poolcli.errors import PoolcliError

__all__ = ["app", "main", "run"]


def _version(value: bool) -> None:
    if value:
        from poolcli import __version__

        print(f"poolcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the Python traceback of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Pooling operators of convolutional networks, forward and backward, on NumPy arrays and images."""


def fail(message: str, code: int) -> int:
    """Print one plain line on standard error and return the exit status."""
    message = " ".join(str(message).split())
    print(f"poolcli: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status. The one place errors become messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if not argv:
        argv = ["--help"]
    try:
        result = app(args=argv, prog_name="poolcli", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return fail("interrupted", 130)
    except typer.TyperException as e:  # unknown option, bad number, missing argument
        ctx = getattr(e, "ctx", None)
        where = f"poolcli {ctx.info_name}" if ctx is not None and ctx.parent is not None else "poolcli"
        return fail(f"{e.format_message()} (see {where} --help)", e.exit_code)
    except PoolcliError as e:
        if debug:
            raise
        return fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head); nothing more to say
        return 141
    except MemoryError:
        if debug:
            raise
        return fail("out of memory; pool a smaller input, or fewer planes at a time", 1)
    except Exception as e:  # a bug: say so in one line, the traceback is behind --debug
        if debug:
            raise
        return fail(f"internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback", 1)
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
