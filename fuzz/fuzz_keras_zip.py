"""Fuzz the .keras (zip) reader in this process: the function the isolated child runs,
``spec_from_keras_file(path, isolate=False)`` (zip, JSON, config -> ModelSpec, HDF5 weights), so
that libFuzzer sees its coverage.  ``fastrnn.load`` would parse in a child process (no coverage
feedback): that path, the containment, is the ``keras_isolated`` target (fuzz_keras_isolated.py),
with the same inputs.

Input: one selector byte, then
  * selector < 0x80: the ``config.json`` bytes; the harness builds a .keras archive (config.json +
    metadata.json + a *valid* ``fuzz/data/keras/<KERAS_WEIGHTS[selector % 4]>.weights.h5``);
  * selector >= 0x80: a whole ``.keras`` file (zip structure, member sizes, compression, metadata
    and weights all fuzzed; the seeds include the hostile files of tests/hostile_keras.py).

A model that loads is built (the C++ core), runs one predict and is serialised (``to_bytes``: a
loaded model that cannot be saved, e.g. a name with no UTF-8 form, is a finding).  A libhdf5 crash on
a corrupted ``model.weights.h5`` kills this process (fuzz_h5.py is where whole HDF5 files go);
whole-archive inputs mostly fail the zip CRC before HDF5 sees them.
"""
from __future__ import annotations

import io
import os
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastrnn  # noqa: E402
from fastrnn.io.keras_file import spec_from_keras_file  # noqa: E402
from _harness import contract, predict_probe, KERAS_WEIGHTS, KERAS_WEIGHTS_DIR, write_tmp  # noqa: E402

WHOLE_FILE = 0x80  # selector bit: the rest of the input is a whole .keras file
# imported inside functions by the code under test: run.py imports them while atheris instruments
LAZY_IMPORTS = ("fastrnn.converters.keras", "fastrnn.io.isolate", "fastrnn.io.native")
_WEIGHTS = {}


def _weights(i):
    if i not in _WEIGHTS:
        with open(os.path.join(KERAS_WEIGHTS_DIR, f"{KERAS_WEIGHTS[i]}.weights.h5"), "rb") as f:
            _WEIGHTS[i] = f.read()
    return _WEIGHTS[i]


def _archive(config: bytes, weights: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", '{"keras_version": "3.15.1", "date_saved": "2025-01-01@00:00:00"}')
        z.writestr("config.json", config)
        z.writestr("model.weights.h5", weights)
    return buf.getvalue()


def input_file(data: bytes):
    """The .keras file an input stands for (written to a private temporary file), or None."""
    if not data:
        return None
    if data[0] & WHOLE_FILE:
        return write_tmp("input.keras", data[1:])
    return write_tmp("input.keras", _archive(data[1:], _weights(data[0] % len(KERAS_WEIGHTS))))


def exercise(model) -> None:
    """What a model that loaded must also do: run, and serialise."""
    predict_probe(model)
    model.to_bytes()


def test_one_input(data: bytes) -> None:
    path = input_file(data)
    if path is None:
        return
    with contract():
        exercise(fastrnn.Model(spec_from_keras_file(path, isolate=False)))


TestOneInput = test_one_input

if __name__ == "__main__":
    from run import main

    sys.exit(main(["keras_zip"] + sys.argv[1:]))
