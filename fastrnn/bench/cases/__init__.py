"""The cases `fastrnn bench` knows: one module per family in this package.

A case module defines ``CASES`` (a list of :class:`Case`) and optionally ``ORDER`` (where its
cases come in listings and in the default run; lower first), ``QUICK`` (names that ``--quick``
runs), ``DEFAULT = False`` (reachable by name only, not in the default run) and ``RUN_NOTE`` (a
line printed with any run that includes one of its cases).  Adding a case = adding one module.
"""
from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from types import ModuleType
from typing import Iterable

from ._case import CHECK_STEPS, GATES, Case, flops, make_input, step_weight_bytes

__all__ = ["CASES", "CHECK_STEPS", "GATES", "GRID", "LEGACY", "QUICK", "RUN_NOTES", "WORKLOADS", "Case", "flops",
           "make_input", "select_cases", "step_weight_bytes"]


def _modules() -> list[ModuleType]:
    mods = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
            if not m.name.startswith("_")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


CASES: dict[str, Case] = {}
GRID: list[str] = []       # the 33-case grid (cases/grid.py)
WORKLOADS: list[str] = []  # the named real workloads of the default run
LEGACY: list[Case] = []     # Case objects reachable by name only
QUICK: list[str] = []      # what --quick runs
RUN_NOTES: dict[str, str] = {}  # case name -> note printed with a run that includes it

for _mod in _modules():
    for _c in _mod.CASES:
        if _c.name in CASES:
            raise ValueError(f"case {_c.name!r} is defined twice ({_mod.__name__})")
        CASES[_c.name] = _c
        if getattr(_mod, "RUN_NOTE", None):
            RUN_NOTES[_c.name] = _mod.RUN_NOTE
    _names = [c.name for c in _mod.CASES]
    if not getattr(_mod, "DEFAULT", True):
        LEGACY += _mod.CASES
    elif getattr(_mod, "IS_GRID", False):
        GRID += _names
    else:
        WORKLOADS += _names
    QUICK += [n for n in getattr(_mod, "QUICK", ()) if n in _names]

#: the default run: the grid, then the named workloads
DEFAULT_RUN = GRID + WORKLOADS


def select_cases(patterns: Iterable[str] | None = None, quick: bool = False) -> list[str]:
    """Case names for positional names / glob patterns (default: the grid and the workloads, or QUICK).
    With ``quick``, a glob keeps only its QUICK matches (all its matches when none is quick)."""
    if not patterns:
        return list(QUICK if quick else DEFAULT_RUN)
    names = []
    for p in patterns:
        hits = [n for n in CASES if fnmatch.fnmatchcase(n, p)]
        if quick and any(ch in p for ch in "*?["):
            hits = [n for n in hits if n in QUICK] or hits
        if not hits:
            raise ValueError(f"no case matches {p!r}; cases: {', '.join(DEFAULT_RUN)} "
                             f"(and {', '.join(c.name for c in LEGACY)})")
        names += [n for n in hits if n not in names]
    return names
