"""Fuzz the .keras (zip) reader through its config.json -> ModelSpec path, with VALID weights.

Input: one selector byte (which fuzz/data/keras/<name>.weights.h5, mod 4), then the config.json
bytes.  The harness builds a .keras archive (config.json + metadata.json + model.weights.h5) and
loads it with fastrnn.load, then runs one predict on the model when it loads.

The HDF5 payload itself is never mutated: a corrupted HDF5 file can crash inside the HDF5 C
library (a known limitation, see tests/test_keras_files.py::test_corrupted_bytes_never_crash), so
raw .h5 files are out of scope here.
"""
from __future__ import annotations

import io
import os
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastrnn  # noqa: E402
from _harness import contract, predict_probe, KERAS_WEIGHTS, KERAS_WEIGHTS_DIR, write_tmp  # noqa: E402

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


def test_one_input(data: bytes) -> None:
    if not data:
        return
    path = write_tmp("input.keras", _archive(data[1:], _weights(data[0] % len(KERAS_WEIGHTS))))
    with contract():
        model = fastrnn.load(path)
        predict_probe(model)


TestOneInput = test_one_input

if __name__ == "__main__":
    from run import main

    sys.exit(main(["keras_zip"] + sys.argv[1:]))
