"""The engines `fastrnn bench` times: one module per engine in this package.

An engine module defines ``ORDER`` (its column; fastrnn is 0, the reference the others are
compared with), ``REQUIRES`` (the modules it needs; missing -> skipped with a note),
``sequence(ctx) -> f(x)`` (x (batch, time, features) -> the output sequence as a numpy array)
and ``step(ctx) -> Stepper`` (one step per call, state carried; see :class:`..models.Stepper`).
``ctx`` is the case's :class:`..models.Context`.  Adding an engine = adding one module.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil

__all__ = ["ENGINES", "FACTORIES", "FRAMEWORKS", "STEP_FACTORIES", "missing_modules", "select_engines"]

_MODS = sorted((importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_")), key=lambda m: (m.ORDER, m.__name__))

ENGINES = tuple(m.__name__.rsplit(".", 1)[1] for m in _MODS)
FRAMEWORKS = tuple(e for e in ENGINES if e != "fastrnn")
#: engine -> sequence(ctx) (whole-sequence cases)
FACTORIES = {e: m.sequence for e, m in zip(ENGINES, _MODS)}
#: engine -> step(ctx) (one-step-per-call cases)
STEP_FACTORIES = {e: m.step for e, m in zip(ENGINES, _MODS) if hasattr(m, "step")}
#: engine -> modules it needs (all weights come from the torch module, so every framework needs torch)
_REQUIRES = {e: tuple(m.REQUIRES) for e, m in zip(ENGINES, _MODS)}


def select_engines(spec: str | list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Engine names from 'fastrnn,torch,...' (default: all), validated."""
    if not spec:
        return list(ENGINES)
    names = [s.strip() for s in (",".join(spec) if isinstance(spec, (list, tuple)) else spec).split(",") if s.strip()]
    bad = [n for n in names if n not in ENGINES]
    if bad:
        raise ValueError(f"unknown engine(s) {', '.join(bad)}; engines: {', '.join(ENGINES)}")
    return list(dict.fromkeys(names))


def missing_modules(engine: str) -> list[str]:
    return [m for m in _REQUIRES[engine] if importlib.util.find_spec(m) is None]
