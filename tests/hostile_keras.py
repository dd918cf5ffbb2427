"""Hostile Keras files (issue 12, items 4 and 10), built here with h5py and a hand-written zip writer
(no Keras needed, a few KB each).

* ``keras_unwritten_dataset``: a kernel that is a chunked dataset declaring 256 MiB .. 64 GiB with no
  chunk written (it reads as zeros: a 10 KB file asks for gigabytes); isolated and in-process.
* ``keras_zip64_junk``: the same 5 GiB never-written kernel plus an unused zip64 member whose
  central directory claims 1 GiB .. 1 TiB (it once lifted the isolated reader's limits to 4 TiB).
* ``keras_many_members``: 25,000 and 100,000 empty members (a central directory of 1.4 and 5.8 MB).
* ``keras_deflate_config``: ``config.json`` stored with deflate, its stream broken (an invalid block
  type) after 0 .. all of the config's bytes; isolated and in-process.
* ``keras_surrogate``: a lone UTF-16 surrogate (``"\\ud800"`` in the JSON) as the model name, a layer
  name, the input layer's name, a config key, ``metadata.json``'s ``keras_version``, and a legacy
  ``.h5``'s model name; isolated and in-process (where it once loaded, and ``save()`` then failed).
"""
from __future__ import annotations

import io
import json
import os
import struct
import zlib

import numpy as np

from hostile_common import Family

UNITS, FEATURES = 4, 3
SURROGATE = "\ud800"


# ----------------------------------------------------------------------------------- builders
def model_config(model_name="seq", lstm_name="lstm", input_name="input_layer", extra_key=None):
    """A Keras 3 Sequential config: Input(None, 3) -> LSTM(4, return_sequences) -> Dense(2)."""
    lstm = {"name": lstm_name, "units": UNITS, "return_sequences": True, "activation": "tanh",
            "recurrent_activation": "sigmoid", "use_bias": True}
    if extra_key is not None:
        lstm[extra_key] = 1
    return {"module": "keras", "class_name": "Sequential", "config": {"name": model_name, "layers": [
        {"module": "keras.layers", "class_name": "InputLayer",
         "config": {"batch_shape": [None, None, FEATURES], "dtype": "float32", "name": input_name}},
        {"module": "keras.layers", "class_name": "LSTM", "config": lstm},
        {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "units": 2,
                                                                     "activation": "linear", "use_bias": True}}]}}


def weights_h5(unwritten_kernel_bytes=0, names=True) -> bytes:
    """The model.weights.h5 of :func:`model_config` (Keras 3 layout); with ``unwritten_kernel_bytes``
    the LSTM kernel is a chunked float32 dataset of about that many bytes with no chunk written;
    ``names=False``: without the layer names (as early Keras 3 versions wrote it)."""
    import h5py

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("vars").attrs["name"] = "seq"
        cell = f.create_group("layers/lstm/cell/vars")
        cell.attrs["name"] = "lstm_cell"
        lstm = f.create_group("layers/lstm/vars")
        if names:
            lstm.attrs["name"] = "lstm"
        if unwritten_kernel_bytes:
            cols = max(1, unwritten_kernel_bytes // (4 * FEATURES))
            cell.create_dataset("0", shape=(FEATURES, cols), dtype="f4", chunks=(1, min(cols, 1 << 16)))
        else:
            cell.create_dataset("0", data=rng.standard_normal((FEATURES, 4 * UNITS)).astype("f4"))
        cell.create_dataset("1", data=rng.standard_normal((UNITS, 4 * UNITS)).astype("f4"))
        cell.create_dataset("2", data=np.zeros(4 * UNITS, "f4"))
        dense = f.create_group("layers/dense/vars")
        dense.attrs["name"] = "dense"
        dense.create_dataset("0", data=rng.standard_normal((UNITS, 2)).astype("f4"))
        dense.create_dataset("1", data=np.zeros(2, "f4"))
    return buf.getvalue()


def zip_bytes(members) -> bytes:
    """A zip archive from ``(name, payload, method, crc, declared_size)`` members, written by hand so
    that a member may declare any size (zip64 fields when it does not fit 32 bits) and carry any
    (e.g. broken) deflate stream.  ``payload`` is the stored / compressed bytes as they go in."""
    out, central = bytearray(), bytearray()
    for name, payload, method, crc, size in members:
        nm = name.encode()
        z64 = size >= 0xFFFFFFFF or len(payload) >= 0xFFFFFFFF
        extra = struct.pack("<HHQQ", 1, 16, size, len(payload)) if z64 else b""
        usize, csize = (0xFFFFFFFF, 0xFFFFFFFF) if z64 else (size, len(payload))
        offset = len(out)
        version = 45 if z64 else 20
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", version, 0, method, 0, 0x21, crc, csize, usize,
                           len(nm), len(extra)) + nm + extra + payload
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", version, version, 0, method, 0, 0x21, crc,
                               csize, usize, len(nm), len(extra), 0, 0, 0, 0, offset) + nm + extra
    cd_offset = len(out)
    out += central
    n = min(len(members), 0xFFFF)  # more: the count is wrong (zipfile reads the central directory by its size)
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(central), cd_offset, 0)
    return bytes(out)


def stored(name, data: bytes, declared=None):
    return (name, data, 0, zlib.crc32(data), len(data) if declared is None else declared)


def deflated(name, data: bytes, break_after=None):
    """``data`` deflated; with ``break_after`` the stream is cut after that many bytes of ``data``
    (a full flush, so they decode) and followed by a block of the invalid type 3: zlib.error."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    if break_after is None:
        payload = c.compress(data) + c.flush()
    else:
        payload = c.compress(data[:break_after]) + c.flush(zlib.Z_FULL_FLUSH) + b"\xff\xff\xff\xff"
    return (name, payload, 8, zlib.crc32(data), len(data))


METADATA = {"keras_version": "3.15.1", "date_saved": "2025-01-01@00:00:00"}


def keras_file(path, config=None, weights=None, metadata=None, extra=(), config_member=None) -> str:
    """A .keras archive (metadata.json, config.json, model.weights.h5, then ``extra`` members)."""
    cfg = json.dumps(config if config is not None else model_config()).encode()
    meta = json.dumps(metadata if metadata is not None else METADATA).encode()
    members = [stored("metadata.json", meta), config_member or stored("config.json", cfg),
               stored("model.weights.h5", weights if weights is not None else weights_h5())] + list(extra)
    with open(path, "wb") as f:
        f.write(zip_bytes(members))
    return path


# ----------------------------------------------------------------------------------- families
def make_unwritten_dataset(d, size):
    return keras_file(os.path.join(d, f"unwritten{size}.keras"), weights=weights_h5(size))


def make_zip64_junk(d, size):
    """A 5 GiB never-written kernel plus an unused zip64 member claiming ``size`` bytes."""
    junk = stored("assets/junk.bin", b"\0" * 16, declared=size)
    return keras_file(os.path.join(d, f"junk{size}.keras"), weights=weights_h5(5 << 30), extra=[junk])


def make_deflate_config(d, size):
    """config.json deflated, its stream broken after ``size`` bytes (capped at the whole config)."""
    cfg = json.dumps(model_config()).encode()
    member = deflated("config.json", cfg, break_after=min(size, len(cfg)))
    return keras_file(os.path.join(d, f"deflate{size}.keras"), config_member=member)


def make_many_members(d, size):
    """A valid .keras plus ``size`` empty members: zipfile parses its whole central directory into one
    object per member (~11 bytes of memory and microseconds of CPU per byte) before anything is read."""
    extra = [stored(f"assets/{i}", b"") for i in range(size)]
    return keras_file(os.path.join(d, f"members{size}.keras"), extra=extra)


SURROGATE_PLACES = ("model_name", "layer_name", "input_name", "config_key", "metadata", "legacy_h5")


def make_surrogate(d, size):
    """A lone surrogate in place ``SURROGATE_PLACES[size]``."""
    place = SURROGATE_PLACES[size]
    if place == "legacy_h5":
        return legacy_h5(os.path.join(d, "surrogate_legacy.h5"), model_config(model_name=SURROGATE))
    kw = {"model_name": {"model_name": SURROGATE}, "layer_name": {"lstm_name": "lstm" + SURROGATE},
          "input_name": {"input_name": SURROGATE}, "config_key": {"extra_key": SURROGATE}}.get(place, {})
    meta = dict(METADATA, keras_version="3" + SURROGATE) if place == "metadata" else None
    return keras_file(os.path.join(d, f"surrogate_{place}.keras"), config=model_config(**kw), metadata=meta,
                      weights=weights_h5(names=place != "layer_name"))


def legacy_h5(path, config) -> str:
    """A legacy full-model .h5 (Keras 3 ``model.save("x.h5")`` layout) of :func:`model_config`."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "3.15.1"
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([b"lstm", b"dense"])
        for layer, shapes in (("lstm", [(FEATURES, 4 * UNITS), (UNITS, 4 * UNITS), (4 * UNITS,)]),
                              ("dense", [(UNITS, 2), (2,)])):
            lg = g.create_group(layer)
            names = [f"{layer}/w{i}" for i in range(len(shapes))]
            lg.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, s in zip(names, shapes):
                lg.create_dataset(n, data=rng.standard_normal(s).astype("f4"))
    return path


IN_PROCESS = {"isolate": False}
_UNWRITTEN = (1 << 28, 3 << 30, 5 << 30, 1 << 36)
_SURROGATES = tuple(range(len(SURROGATE_PLACES)))

FAMILIES = [
    Family("keras_unwritten_dataset", make_unwritten_dataset, _UNWRITTEN, issue_item="#12.4"),
    Family("keras_unwritten_dataset_in_process", make_unwritten_dataset, _UNWRITTEN, IN_PROCESS, cli=False,
           issue_item="#12.4"),
    Family("keras_zip64_junk", make_zip64_junk, (1 << 30, 1 << 34, 1 << 40), issue_item="#12.4"),
    Family("keras_deflate_config", make_deflate_config, (0, 300, 1 << 20), issue_item="#12.10"),
    Family("keras_deflate_config_in_process", make_deflate_config, (0, 1 << 20), IN_PROCESS, cli=False,
           issue_item="#12.10"),
    Family("keras_many_members", make_many_members, (25_000, 100_000), issue_item="#12.4"),
    Family("keras_many_members_in_process", make_many_members, (100_000,), IN_PROCESS, cli=False,
           issue_item="#12.4"),
    Family("keras_surrogate", make_surrogate, _SURROGATES, issue_item="#12.10"),
    Family("keras_surrogate_in_process", make_surrogate, _SURROGATES, IN_PROCESS, cli=False, issue_item="#12.10"),
]
