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
    """Ctrl-C (exit 130, as a shell reports SIGINT)."""

    exit_code = 130


class CheckFailed(PoolcliError):
    """backward --check found the analytic gradient off by more than the tolerance (exit 1)."""

    exit_code = 1
