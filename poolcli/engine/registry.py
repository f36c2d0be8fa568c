"""Every operator, in the order users see them; the one line to add an operator to.

Everything else (the command line's options and help, the library's keywords, what images,
visualize and ``--check`` do) is asked of the operators here.

>>> get_op("mean").name
'avg'
>>> [op.name for op in declaring("alpha")]
['mixed', 'lrn']
>>> [op.name for op in declaring("p")]
['lp', 'gem']
"""

from __future__ import annotations

from poolcli.engine.avgmax import AvgMax
from poolcli.engine.base import TIES_OPTION, Op, Option, Params
from poolcli.engine.bilinear import BilinearPool
from poolcli.engine.deconv import Deconv
from poolcli.engine.fractional import Fractional
from poolcli.engine.gem import GeM
from poolcli.engine.kmax import KMax
from poolcli.engine.lrn import LRN
from poolcli.engine.median import Median
from poolcli.engine.mode import Mode
from poolcli.engine.ops import Avg, Lp, Max, Min, Mixed
from poolcli.engine.quantile import Quantile
from poolcli.engine.softpool import SoftPool
from poolcli.engine.spp import SPP
from poolcli.engine.stochastic import Stochastic
from poolcli.engine.unpool import Unpool
from poolcli.engine.upsample import Upsample
from poolcli.errors import UsageError

OPERATORS: tuple[Op, ...] = (
    Max(), Min(), Avg(), Lp(), Mixed(), GeM(), SoftPool(), Stochastic(), Fractional(), Median(), Quantile(), Mode(),
    AvgMax(), KMax(), Unpool(), Upsample(), Deconv(), LRN(), BilinearPool(), SPP(),
)

DEFAULT = OPERATORS[0].name  # the operator when none is named
OPS: dict[str, Op] = {op.name: op for op in OPERATORS}
ALIASES: dict[str, str] = {alias: op.name for op in OPERATORS for alias in op.aliases}


def _options() -> dict[str, tuple[Option, ...]]:
    found: dict[str, list[Option]] = {}
    for op in OPERATORS:
        for option in op.options:
            same = found.setdefault(option.name, [])
            if option not in same:
                same.append(option)
    found[TIES_OPTION.name] = [TIES_OPTION]
    return {name: tuple(options) for name, options in found.items()}


OPTIONS: dict[str, tuple[Option, ...]] = _options()  # each option name, with every declaration of it
Params.declare(OPTIONS)


def declaring(name: str) -> list[Op]:
    """The operators that take option ``name``."""
    return [op for op in OPERATORS if any(o.name == name for o in op.options)]


def declared_by(op: str | None, name: str) -> Option | None:
    """Option ``name`` as operator ``op`` (a name or alias) declares it, or None when ``op`` is no operator or
    does not take it (a name may be a number for one operator and a file for another, as ``bias``).

    >>> declared_by("deconv", "bias").kind, declared_by("lrn", "bias").kind, declared_by("max", "bias")
    ('array', <class 'float'>, None)
    """
    pool = OPS.get(ALIASES.get(op, op)) if op is not None else None
    return next((o for o in pool.options if o.name == name), None) if pool is not None else None


def get_op(name: str) -> Op:
    """The operator called ``name`` (or an alias such as ``mean``)."""
    key = ALIASES.get(name, name)
    if key not in OPS:
        raise UsageError(f"--op {name}: not an operator; give one of {', '.join(OPS)}")
    return OPS[key]
