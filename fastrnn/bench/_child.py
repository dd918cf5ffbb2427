"""The environment of the fresh processes the benchmarks start."""
from __future__ import annotations

import os
from typing import Mapping


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default: this environment) with the directory of the imported fastrnn first on
    PYTHONPATH (a child imports the same fastrnn), TF_CPP_MIN_LOG_LEVEL=2 unless set, and ``extra``."""
    import fastrnn

    env = dict(os.environ if base is None else base)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (parent, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env
