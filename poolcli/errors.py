"""Errors the user can fix, each knowing its exit status.

>>> GeometryError("axis W: kernel 5 spans 5 cells").exit_code
2
"""

from __future__ import annotations


class PoolcliError(Exception):
    """Base class: a one-line message for the user and an exit status."""

    exit_code: int = 1


class UsageError(PoolcliError):
    """A bad option value or a combination of options that cannot work (exit 2)."""

    exit_code = 2


class GeometryError(UsageError):
    """A window geometry that does not fit the input (exit 2); the message names the axis."""


class InputError(PoolcliError):
    """An input that cannot be read: unreadable, corrupt, pickled or too large (exit 1)."""

    exit_code = 1


class OutputError(PoolcliError):
    """An output that cannot be written (exit 1)."""

    exit_code = 1


class Interrupted(PoolcliError):
    """Ctrl-C (exit 130, as a shell reports SIGINT), or SIGTERM/SIGHUP (143/129) during a batch."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it cleans up as on Ctrl-C (exit 128 + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_exit_code(e: BaseException) -> int:
    """The exit status a shell reports for the signal behind an interruption: 130 for Ctrl-C, 143 for SIGTERM.

    >>> import signal
    >>> signal_exit_code(Terminated(signal.SIGTERM)), signal_exit_code(KeyboardInterrupt())
    (143, 130)
    """
    return 128 + int(getattr(e, "signum", 2))


class CheckFailed(PoolcliError):
    """backward --check found the analytic gradient off by more than the tolerance (exit 1)."""

    exit_code = 1
