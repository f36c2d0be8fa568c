"""poolcli: pooling operators of convolutional networks, forward and backward, on NumPy arrays.

>>> import numpy as np, poolcli
>>> x = np.arange(1, 17.0).reshape(4, 4)
>>> poolcli.forward(x, "avg", kernel=2)
array([[ 3.5,  5.5],
       [11.5, 13.5]])
>>> poolcli.forward(x, kernel=3, stride=2, padding=1).tolist()
[[6.0, 8.0], [14.0, 16.0]]
>>> float(poolcli.backward(x, op="max", kernel=2).sum())
4.0

Window options are those of :class:`WindowSpec`; operator options are those the operators
declare (``OPTIONS``: ``count_pad``, ``p``, ``mean``, ``alpha``, ``ties``, ``k``, ``axis``, …);
``unpool`` takes ``indices=``, ``bilinear`` an optional ``other=``.

>>> poolcli.forward(np.array([[1, 3], [4, 2]]), "kmax", k=1)
array([[3],
       [4]])
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any


def _quiet_while_loading() -> None:
    """Run as the ``poolcli`` command, a Ctrl-C while NumPy, Typer and Rich load ends the process with status
    130 and no Python traceback (the command's own handlers take over once it runs). A library import is left
    alone."""
    main = os.path.basename(getattr(sys.modules.get("__main__"), "__file__", None) or "")
    if main in ("poolcli", "poolcli.exe", "poolcli-script.py") and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_loading)


def _interrupted_while_loading(signum: int, frame: object) -> None:
    """The one line the command prints when interrupted, then status 130; nothing was started to clean up."""
    os.write(2, b"poolcli: error: interrupted\n")
    os._exit(130)


_quiet_while_loading()

import numpy as np  # noqa: E402

from poolcli.engine import (  # noqa: E402
    DEFAULT,
    OPERATORS,
    OPS,
    OPTIONS,
    WINDOW_OPTIONS,
    AdaptiveAxis,
    Axis,
    Geometry,
    Params,
    WindowSpec,
    bind,
    declared_by,
    run_backward,
    run_forward,
    run_indices,
    run_more_gradients,
)
from poolcli.errors import GeometryError, InputError, PoolcliError, UsageError  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "OPERATORS", "OPS", "OPTIONS", "AdaptiveAxis", "Axis", "Geometry", "GeometryError", "InputError", "Params",
    "PoolcliError",
    "UsageError", "WindowSpec", "backward", "forward", "geometry", "gradients",
]

PARAM_OPTIONS = tuple(name for name, declared in OPTIONS.items() if any(d.kind != "array" for d in declared))
ARRAY_OPTIONS = tuple(name for name, declared in OPTIONS.items()
                      if any(d.kind == "array" for d in declared))  # indices, weights, bias (deconv's), …


# Synonyms a PyTorch user types, and the keyword each means here.
_SYNONYMS = {"kernel_size": "kernel", "pad": "padding", "ceil_mode": "ceil", "count_include_pad": "count_pad",
             "return_indices": "return_indices", "scale_factor": "scale", "norm_type": "p"}


def _split(options: dict[str, Any], op: str | None = None) -> tuple[WindowSpec | None, Params]:
    """The window, and the operator options (without the extra input arrays ``_arrays`` takes for ``op``)."""
    options = {k: v for k, v in options.items() if not _is_array(k, op)}
    known = [*WINDOW_OPTIONS, *PARAM_OPTIONS, *ARRAY_OPTIONS, "spec"]
    for name in options:
        if name not in known:
            import difflib

            close = [_SYNONYMS[name]] if name in _SYNONYMS else difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; the options are {', '.join(known)}"
            raise TypeError(f"unknown option {name}{hint}")
    spec = options.get("spec") or WindowSpec(**{k: v for k, v in options.items() if k in WINDOW_OPTIONS})
    return spec, Params(**{k: v for k, v in options.items() if k in PARAM_OPTIONS})


def _is_array(name: str, op: str | None) -> bool:
    """Whether keyword ``name`` is an extra input array for ``op``: as ``op`` declares it, else as every operator
    that takes it does (lrn's ``bias`` is a number, deconv's an array)."""
    declared = OPTIONS.get(name, ())
    own = declared_by(op, name)
    if own is not None:
        return own.kind == "array"
    return bool(declared) and all(d.kind == "array" for d in declared)


def _arrays(options: dict[str, Any], op: str) -> dict[str, np.ndarray | None]:
    """The extra input arrays among the keywords (``samples=`` for fractional, ``weights=``, …), as arrays;
    the engine refuses one its operator does not take."""
    return {name: _array(v) for name, v in options.items() if name not in ("indices", "other") and _is_array(name, op)}


@contextlib.contextmanager
def _python_words() -> Iterator[None]:
    """The engine's messages name command-line flags; from Python they name keywords (``--k 0`` -> ``k=0``).

    >>> _pythonic("-k/--kernel 9 is too large; give --output-size or --no-count-pad; use -k 4 or less")
    'kernel=9 is too large; give output_size or count_pad=False; use kernel=4 or less'
    """
    try:
        yield
    except PoolcliError as e:
        raise type(e)(_pythonic(str(e))) from None


_FLAGS = {"--from-indices": "indices", "--with": "other", "--global": "global_pool"}


def _pythonic(message: str) -> str:
    import re

    def keyword(m: re.Match) -> str:
        flag, value = m.group(1), m.group(2)
        name = _FLAGS.get(flag) or _SHORT.get(flag) or flag.lstrip("-").replace("-", "_")
        if flag.startswith("--no-"):
            return f"{name[3:]}=False"
        if value and value[0].isupper():  # a placeholder such as IDX.npy: an array, from Python
            value = "…"
        return f"{name}={value}" if value else name

    flag = r"(?<![\w-])(?:-[a-z]/)?(--[a-z][a-z-]*|-[a-z](?= ))"
    return re.sub(flag + r"(?: (-?\d[\w.,]*|[a-z]+(?=:)|[A-Z][\w.]*))?", keyword, message)


_SHORT = {"-k": "kernel", "-s": "stride", "-p": "padding", "-d": "dilation", "-o": "output"}


def geometry(shape: tuple[int, ...], **options: Any) -> Geometry:
    """The window geometry for an input shape.

    >>> geometry((1, 3, 224, 224), kernel=3, stride=2, padding=1).out_shape
    (1, 3, 112, 112)
    """
    return WindowSpec(**options).bind(shape)


def forward(x: np.ndarray, op: str = DEFAULT, *, return_indices: bool = False, indices: np.ndarray | None = None,
            other: np.ndarray | None = None, threads: int | None = None, **options: Any):
    """Pool ``x`` with operator ``op``; with ``return_indices`` (max, min) also the flat per-plane arg-max.
    ``threads``: how many threads pool the planes (default: every core; the result does not depend on it).

    >>> y, idx = forward(np.array([[1, 5], [3, 2]]), kernel=2, return_indices=True)
    >>> y, idx
    (array([[5]]), array([[1]]))
    >>> forward(y, "unpool", indices=idx, kernel=2)
    array([[0, 5],
           [0, 0]])
    """
    x = np.asarray(x)
    spec, params = _split(options, op)
    with _python_words():
        g = bind(op, x.shape, spec, params, indices=_array(indices), other=_array(other), **_arrays(options, op))
        if return_indices:
            return run_indices(x, g, op, threads, params=params)
        return run_forward(x, g, op, params, threads)


def _array(a: Any) -> np.ndarray | None:
    return None if a is None else np.asarray(a)


def backward(x: np.ndarray, grad: np.ndarray | None = None, op: str = DEFAULT, *, indices: np.ndarray | None = None,
             other: np.ndarray | None = None, threads: int | None = None, **options: Any) -> Any:
    """Gradient of the pooling with respect to ``x`` for upstream ``grad`` (default: ones);
    for ``bilinear`` with ``other``, the pair (to x, to other). ``threads`` as for ``forward``.

    >>> backward(np.array([[1.0, 5.0], [5.0, 2.0]]), op="max", kernel=2, ties="split")
    array([[0. , 0.5],
           [0.5, 0. ]])
    """
    x = np.asarray(x)
    spec, params = _split(options, op)
    with _python_words():
        g = bind(op, x.shape, spec, params, indices=_array(indices), other=_array(other), **_arrays(options, op))
        upstream = None if grad is None else np.asarray(grad)
        dx = run_backward(x, g, upstream, op, params, threads)
        if other is not None:
            return dx, run_more_gradients(x, g, upstream, op, params)["with"]
        return dx


def gradients(x: np.ndarray, grad: np.ndarray | None = None, op: str = DEFAULT, *, indices: np.ndarray | None = None,
              other: np.ndarray | None = None, threads: int | None = None, **options: Any) -> dict[str, np.ndarray]:
    """Every gradient backward gives, by name: ``x`` (as ``backward``), and ``with`` (bilinear with ``other``)
    or ``p`` (gem's exponent), as ``backward -o grads.npz`` writes them.

    >>> sorted(gradients(np.array([[1.0, 2.0], [3.0, 4.0]]), op="gem", global_pool=True))
    ['p', 'x']
    """
    x = np.asarray(x)
    spec, params = _split(options, op)
    with _python_words():
        g = bind(op, x.shape, spec, params, indices=_array(indices), other=_array(other), **_arrays(options, op))
        upstream = None if grad is None else np.asarray(grad)
        return {"x": run_backward(x, g, upstream, op, params, threads),
                **run_more_gradients(x, g, upstream, op, params)}
