"""The environment of the fresh processes the benchmarks start."""
from __future__ import annotations

import os


def child_env(base=None, **extra) -> dict:
    """``base`` (default: this environment) with the directory of the imported fastrnn first on
    PYTHONPATH (a child imports the same fastrnn), TF_CPP_MIN_LOG_LEVEL=2 unless set, and ``extra``."""
    import fastrnn

    base = dict(os.environ if base is None else base)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    base["PYTHONPATH"] = os.pathsep.join(p for p in (parent, base.get("PYTHONPATH")) if p)
    base.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    base.update(extra)
    return base
