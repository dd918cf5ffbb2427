"""Framework converters: each translates a framework model into a fastrnn ModelSpec."""
from __future__ import annotations


def unique_name(base: str, used: set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``... : the first not in ``used`` (which it joins)."""
    n, k = base, 1
    while n in used:
        n = f"{base}_{k}"
        k += 1
    used.add(n)
    return n
