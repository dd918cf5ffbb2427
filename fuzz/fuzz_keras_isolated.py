"""Fuzz the containment of the .keras reader: ``fastrnn.load(path)`` (the default isolated reader,
:mod:`fastrnn.io.isolate`), with the inputs of the ``keras_zip`` target (its corpus and dictionary).

What this checks beyond ``keras_zip`` (which runs the same reader in-process, with coverage): the
child / parent protocol.  The child's limits (from the file's real size), its reply, and the parent
rebuilding the child's error: a FastRNNError with its class, anything else a ModelFormatError naming
the file.  A refusal saying that a non-FastRNNError escaped the reader in the child is a finding
(_harness.check_isolated), as is anything but a FastRNNError reaching the caller.

One Python process per execution (~2-3 executions/s), no coverage feedback: ``fuzz/run.py`` runs this
target with its mutation fuzzer.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastrnn  # noqa: E402
from _harness import check_isolated, contract  # noqa: E402
from fuzz_keras_zip import exercise, input_file  # noqa: E402

LIMITS = {"cpu": 4, "wall": 15}  # tighter than the defaults: a hang ends well within run.py's timeout
STATS = {"executions": 0, "loaded": 0, "refused": 0}


def _refused(e):
    STATS["refused"] += 1
    check_isolated(e)


def test_one_input(data: bytes) -> None:
    path = input_file(data)
    if path is None:
        return
    STATS["executions"] += 1
    with contract(on_refused=_refused):
        model = fastrnn.load(path, isolate=LIMITS)
        STATS["loaded"] += 1
        exercise(model)


TestOneInput = test_one_input

if __name__ == "__main__":
    from run import main

    sys.exit(main(["keras_isolated"] + sys.argv[1:]))
