"""The hostile-file test generator's building blocks (see test_hostile_files.py).

Each ``tests/hostile_<source>.py`` module lists ``FAMILIES``: a :class:`Family` builds one class of
hostile file (a deep pickle, a stride-0 tensor, a zero-width tensor, ...) at several sizes, so that
the next variant of an attack is caught by the mechanism, not only the example that was reported.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence


@dataclasses.dataclass(frozen=True)
class Family:
    """``make(dir, size) -> path`` writes one hostile file into ``dir`` (the name is its choice)
    and returns its path; ``load_kwargs`` go to ``fastrnn.load``; ``sizes`` are the variants
    (nesting depths, element counts, ...), from harmless-looking to extreme; ``cli`` also runs
    ``fastrnn convert`` on the largest one (exit 2, ``fastrnn: error:``, no traceback)."""

    name: str
    make: Callable[[str, int], str]
    sizes: Sequence[int]
    load_kwargs: Optional[dict] = None
    cli: bool = True
    issue_item: str = ""  # where the family comes from (e.g. "#12.1")
