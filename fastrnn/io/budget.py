"""One resource budget per load: what a model file may cost, computed from its real size on disk.

A reader makes one :class:`LoadBudget` for the file it reads and charges every allocation or
expansion it is about to make (materialising a tensor, expanding a stride-0 view, converting
float16 to float32, the buffers a header implies) *before* making it.  The budget is
``FACTOR x (real bytes on disk) + ALLOWANCE``: a real model costs at most a few times its size
(float16 -> float32 doubles it), while a hostile file that declares gigabytes in a few bytes
(zero strides, zero-width tensors, declared-but-absent zip members, huge layer indices) is refused
with a :class:`~fastrnn.errors.ModelFormatError` naming the file, before anything is allocated.

Sizes declared *inside* the file (zip member sizes, element counts, shapes) never raise the budget:
only ``os.fstat`` of the file does.

>>> b = LoadBudget.for_file(path)
>>> b.charge(n_elements * 4, f"tensor {name!r}")      # raises ModelFormatError when over budget
"""
from __future__ import annotations

import os
from typing import Sized, SupportsInt

from ..errors import ModelFormatError

__all__ = ["LoadBudget", "FACTOR", "ALLOWANCE", "MAX_ITEMS"]

FACTOR = 4  # bytes of memory per byte of file
ALLOWANCE = 64 << 20  # plus this, whatever the file size (small files, fixed costs)
MAX_ITEMS = 1 << 20  # names, layers, members, keys a file may make a reader walk through


class LoadBudget:
    """Bytes (and items) one load may still spend; ``charge`` before allocating."""

    __slots__ = ("origin", "file_size", "limit", "spent")

    def __init__(self, origin: str, file_size: int, factor: int = FACTOR, allowance: int = ALLOWANCE) -> None:
        self.origin = origin
        self.file_size = max(0, int(file_size))
        self.limit = factor * self.file_size + allowance
        self.spent = 0

    @classmethod
    def for_file(cls, path: str | os.PathLike[str], origin: str | None = None, **kw: int) -> "LoadBudget":
        """The budget of the file at ``path`` (its real size on disk: ``os.stat``)."""
        p = os.fspath(path)
        try:
            size = os.stat(p).st_size
        except OSError:
            size = 0
        return cls(os.fsdecode(origin if origin is not None else p), size, **kw)

    @classmethod
    def for_bytes(cls, data: Sized, origin: str, **kw: int) -> "LoadBudget":
        return cls(origin, len(data), **kw)

    def check(self, nbytes: SupportsInt, what: str) -> None:
        """Refuse ``nbytes`` more (without spending them) if they do not fit."""
        n = int(nbytes)
        if n < 0 or self.spent + n > self.limit:
            raise ModelFormatError(
                f"{self.origin}: {what} would need {n:,} bytes, more than a {self.file_size:,}-byte file may cost "
                f"({self.limit:,} bytes in all, {self.spent:,} already used): a corrupt or hostile file")

    def charge(self, nbytes: SupportsInt, what: str) -> None:
        """Spend ``nbytes`` (after :meth:`check`)."""
        self.check(nbytes, what)
        self.spent += int(nbytes)

    def items(self, n: SupportsInt, what: str, limit: int = MAX_ITEMS) -> None:
        """Refuse a count of names / layers / entries beyond ``limit`` (work a reader would loop over)."""
        if int(n) > limit:
            raise ModelFormatError(f"{self.origin}: {what}: {int(n):,} is more than fastrnn reads (at most {limit:,}): "
                                   "a corrupt or hostile file")
