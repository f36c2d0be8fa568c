"""The command line: options -> engine -> io/render, one module per command; ``main`` is the one error boundary.

>>> main(["shape", "4,4", "-k", "2"])
(4, 4) → (2, 2)
axis  size  output size
H        4  floor((4 + 0 + 0 - 1·(2-1) - 1) / 2) + 1 = 2
W        4  floor((4 + 0 + 0 - 1·(2-1) - 1) / 2) + 1 = 2
0
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Annotated, NoReturn

import typer

from poolcli.cli import backward, forward, shape, visualize
from poolcli.cli.common import app, focus_help
from poolcli.errors import OutputError, PoolcliError, Terminated, signal_exit_code
from poolcli.io.atomic import describe_os_error, hold_signal, outputs_together

__all__ = ["app", "main", "run"]

for _command in (forward, backward, shape, visualize):  # the commands, composed onto the app in help order
    app.command(epilog=_command.EPILOG)(getattr(_command, _command.__name__.rsplit(".", 1)[1]))


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


def fail(message: str, code: int, traceback: BaseException | None = None) -> int:
    """Print one plain line on standard error (after the traceback of ``traceback``, for --debug) and
    return the exit status: --debug shows more, and changes nothing else."""
    if traceback is not None:
        import traceback as tb

        tb.print_exception(traceback, file=sys.stderr)
    message = " ".join(str(message).split())
    print(f"poolcli: error: {message}", file=sys.stderr)
    return code


class _ClosedOutput(io.TextIOBase):
    """Standard output when the shell closed it: a command that prints fails with one line (exit 1);
    one that writes only files (-o) runs as usual."""

    def write(self, text: str) -> int:
        raise OutputError("standard output is closed; give -o FILE")

    @property
    def buffer(self) -> NoReturn:
        raise OutputError("standard output is closed; give -o FILE")

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status. The one place errors become messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)  # after --, --debug would be a file name
    debug = "--debug" in argv[:end]
    argv = [a for a in argv[:end] if a != "--debug"] + argv[end:]  # anywhere: before or after the command
    if not argv:
        argv = ["--help"]
    _plain_if_ascii()
    focus_help(argv)
    if sys.stdout is None:  # started with standard output closed (>&-): writing to it is an error, as for cat
        sys.stdout = _ClosedOutput()
    with _signals_raise() as caught, _warnings_once():
        try:
            with outputs_together():  # every output of the command is committed together, or none
                result = app(args=argv, prog_name="poolcli", standalone_mode=False)
                if sys.stdout is not None:
                    sys.stdout.flush()  # a full disk or a closed pipe is reported here, not at exit
        except typer.Exit as e:
            return e.exit_code
        except typer.Abort:
            return fail("interrupted", 130)
        except typer.TyperException as e:  # unknown option, bad number, missing argument
            ctx = getattr(e, "ctx", None)
            where = f"poolcli {ctx.info_name}" if ctx is not None and ctx.parent is not None else "poolcli"
            return fail(f"{e.format_message()} (see {where} --help)", e.exit_code)
        except PoolcliError as e:
            return fail(str(e), e.exit_code, e if debug else None)
        except KeyboardInterrupt as e:
            return _interrupted(e)
        except BrokenPipeError:
            sys.stderr.close()  # the reader went away (| head); nothing more to say
            return 141
        except OSError as e:  # standard output on a full disk, a device that went away
            where = f"{e.filename}: " if e.filename else "cannot write the output: "
            return fail(where + describe_os_error(e), 1, e if debug else None)
        except MemoryError as e:
            return fail("out of memory; pool a smaller input, or fewer planes at a time", 1, e if debug else None)
        except Exception as e:  # a bug: say so in one line, the traceback is behind --debug
            return fail(f"internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback", 1,
                        e if debug else None)
    if caught and result == 130:  # typer turns an interruption inside a command into a bare 130
        return _interrupted(Terminated(caught[-1]))
    return result if isinstance(result, int) else 0


@contextlib.contextmanager
def _warnings_once() -> Iterator[None]:
    """Python warnings (numpy's overflow, Pillow's) said once each, in one line, without source lines."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            said = set()
            for w in seen:
                text = " ".join(str(w.message).split())
                if issubclass(w.category, (ResourceWarning, DeprecationWarning, PendingDeprecationWarning)):
                    continue  # about poolcli's own code, not the user's data
                if text not in said:
                    said.add(text)
                    print(f"poolcli: warning: {text}", file=sys.stderr)


_PLAIN = {"→": "->", "·": "*", "…": "...", "×": "x", "⋮": ":", "⋯": "...", "—": "-", "–": "-", "≤": "<=", "≥": ">="}


def _plain_characters(error: UnicodeError) -> tuple[str, int]:
    bad = error.object[error.start : error.end]  # type: ignore[attr-defined]
    return "".join(_PLAIN.get(c, "?") for c in bad), error.end  # type: ignore[attr-defined]


def _plain_if_ascii() -> None:
    """On a terminal or pipe that cannot take Unicode (PYTHONIOENCODING=ascii), write plain characters."""
    import codecs

    codecs.register_error("poolcli-plain", _plain_characters)
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        if encoding and hasattr(stream, "reconfigure"):
            try:
                "→┃".encode(encoding)
            except UnicodeEncodeError:
                stream.reconfigure(errors="poolcli-plain")
            except LookupError:
                pass


def _interrupted(e: BaseException) -> int:
    code = signal_exit_code(e)
    what = "interrupted" if code == 130 else f"stopped by {signal.Signals(code - 128).name}"
    return fail(f"{what}; no output was written", code)


@contextlib.contextmanager
def _signals_raise() -> Iterator[list[int]]:
    """SIGINT, SIGTERM and SIGHUP raise where the program is, so that no temporary file is left;
    yields the signals caught."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def stop(signum: int, frame: object) -> None:
        if hold_signal(signum):  # a temporary file is being made: raise once it is recorded
            return
        caught.append(signum)
        raise Terminated(signum)

    wanted = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    old = {s: signal.signal(s, stop) for s in wanted}
    try:
        yield caught
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run() -> None:
    """Console-script entry point. Once ``main`` has returned, its outputs are committed and its status is
    final: a Ctrl-C while Python shuts down (which resets a handled SIGINT to the default, a silent kill) is
    ignored rather than turning a finished run into a killed one."""
    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(status)
