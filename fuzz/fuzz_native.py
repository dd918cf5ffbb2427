"""Fuzz the native .fastrnn reader: bytes -> a temporary file -> format detection, load_spec
(plain read or mmap), Model construction (the C++ core), one predict and one stream step, and a
save/load round trip.

Input: the file's bytes, or (when it starts with '{') the JSON header alone: the harness then adds
the length prefix and a data section as long as the header's largest data_offsets end, so that
mutations of the header need not keep the length field and the data size consistent.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn.errors import FastRNNError  # noqa: E402
from fastrnn.io.detect import detect_format  # noqa: E402
from fastrnn.io.native import load_spec  # noqa: E402
from _harness import contract, native_file_from_header, tmpdir, write_tmp  # noqa: E402

MAX_FEATURES = 1 << 14


def _exercise(model):
    spec = model.spec
    if spec.takes_ids:
        x = np.zeros((2, 3), np.int64)
        x[1, :] = spec.layers[0].embeddings.shape[0] - 1
        xt = x[:, 0].copy()
    else:
        f = spec.input_features
        if not isinstance(f, int) or not 0 < f <= MAX_FEATURES:
            return
        x = np.linspace(-1, 1, 2 * 3 * f, dtype=np.float32).reshape(2, 3, f)
        xt = np.ascontiguousarray(x[:, 0])
    y = model.predict(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32, (type(y), getattr(y, "dtype", None))
    model.predict(x, lengths=[3, 1], return_state=True)
    try:
        s = model.stream(2)
    except FastRNNError:
        return
    s.step(xt)


def test_one_input(data: bytes) -> None:
    if data[:1] == b"{":
        data = native_file_from_header(data)
    path = write_tmp("input.fastrnn", data)
    with contract():
        if detect_format(path) == "fastrnn":
            model = fastrnn.Model(load_spec(path, mmap=bool(len(data) & 1)))
        else:
            model = fastrnn.load(path)
        _exercise(model)
        out = os.path.join(tmpdir(), "roundtrip.fastrnn")
        model.save(out)
        again = fastrnn.load(out)
        assert [l.kind for l in again.spec.layers] == [l.kind for l in model.spec.layers]


TestOneInput = test_one_input

if __name__ == "__main__":
    from run import main

    sys.exit(main(["native"] + sys.argv[1:]))
