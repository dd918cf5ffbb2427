"""Hostile ``.fastrnn`` files (issue 12, items 5, 6, 11 and 14), written by hand: a header of a
few hundred bytes (up to a few MB for the header and layer-count bombs), tensors of zeros.

* ``native_zero_width``: an Embedding [1, 0] and a Dense weight [N, 0] without a bias: no data
  bytes, but N = 2^28 took 2.1 GB (the implied zero bias) and N = 2^33 a bare MemoryError.
* ``native_zero_dim``: the other zero-sized dimensions a layer cannot take (vocabulary 0, Dense
  outputs 0, zero width with a real bias).
* ``native_narrow_dense``: a Dense [1, K] weight: the core packs weights in panels of 32 rows, so
  its build costs 33 x its bytes (the work a header implies, budgeted against the file size).
* ``native_many_layers``: thousands to a million parameter-free layers (validation and build time).
* ``native_json_bomb``: a header of nested empty lists (24 bytes of Python objects per byte).
* ``native_stateful_batch``: a stateful layer whose recorded batch size is 10^5 .. 2^80
  (``model.stream()`` allocated that many rows: 4*10^6 -> 414 MB, 10^9 -> std::bad_alloc).
* ``native_bad_metadata``: ``layer_metadata`` as a list, an unhashable or bool ``batch_size``, ...
  (loaded, then ``model.stream()`` / ``model.stateful`` raised AttributeError / TypeError).
* ``native_surrogate``: a lone UTF-16 surrogate in a layer name, the source or the metadata
  (``ModelFormatError(": 'name' has the wrong type")`` without the file, or a model that cannot
  be saved or pickled).
"""
from __future__ import annotations

import itertools
import json
import os

from hostile_common import Family


def write_native(path, layers, tensors, input_features=None, metadata=None, source="hostile", header_extra=()):
    """A ``.fastrnn`` file: ``layers`` (the model description's layer objects, any iterable),
    ``tensors`` ({name: shape}, written as float32 zeros back to back, no padding entries),
    ``header_extra`` (more bytes of JSON members for the header).  Written piece by piece: a
    million layers or a 64 MB header never sit in this process's memory (the hostile-file test
    measures its children's peak RSS, which on Linux starts from this process's own)."""
    spec = json.dumps({"format": 1, "input_features": input_features, "takes_ids": input_features is None,
                       "source": source, "metadata": metadata or {}})

    def esc(text):  # the spec is a JSON string inside the header JSON
        return json.dumps(text)[1:-1].encode()

    entries, offset = {}, 0
    for name, shape in tensors.items():
        n = 4
        for d in shape:
            n *= d
        entries[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    with open(path, "wb") as f:
        f.write(bytes(8))
        f.write(b'{"__metadata__": {"format": "fastrnn", "fastrnn_format_version": "1", "spec": "')
        f.write(esc(spec[:-1] + ', "layers": ['))
        batch = []
        for i, layer in enumerate(layers):
            batch.append(esc((", " if i else "") + json.dumps(layer)))
            if len(batch) == 4096:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch) + esc("]}") + b'"}')
        for name, info in entries.items():
            f.write(b", " + json.dumps(name).encode() + b": " + json.dumps(info).encode())
        for chunk in header_extra:
            f.write(chunk)
        n = f.tell() - 8 + 1
        f.write(b"}" + b" " * ((-(8 + n)) % 64))
        n = f.tell() - 8
        f.truncate(8 + n + offset)  # zeros (sparse where the file system allows)
        f.seek(0)
        f.write(n.to_bytes(8, "little"))
    return str(path)


def embedding(name, ref, mask_zero=False):
    return {"kind": "embedding", "name": name, "mask_zero": mask_zero, "tensors": {"embeddings": ref}}


def dense(name, weight, bias=None, activation="linear"):
    refs = {"weight": weight, **({"bias": bias} if bias else {})}
    return {"kind": "dense", "name": name, "activation": activation, "tensors": refs}


def gru(name, input_size, units):
    refs = {f"forward.{t}": f"{name}.{t}" for t in ("w_ih", "w_hh", "b_ih", "b_hh")}
    layer = {"kind": "gru", "name": name, "input_size": input_size, "units": units, "activation": "tanh",
             "recurrent_activation": "sigmoid", "reset_after": True, "proj_size": 0, "direction": "forward",
             "merge_mode": "concat", "return_sequences": True, "mask_mode": "zero", "tensors": refs}
    shapes = {f"{name}.w_ih": (3 * units, input_size), f"{name}.w_hh": (3 * units, units),
              f"{name}.b_ih": (3 * units,), f"{name}.b_hh": (3 * units,)}
    return layer, shapes


def gru_model(path, metadata=None, name="g", source="hostile"):
    """A valid GRU(3 -> 4) model file, with ``metadata`` (and the layer's ``name``) as given."""
    layer, shapes = gru(name, 3, 4)
    return write_native(path, [layer], shapes, input_features=3, metadata=metadata, source=source)


# ---------------------------------------------------------------------------------- item 5
def zero_width(d, n):
    return write_native(os.path.join(d, f"zero_width_{n}.fastrnn"),
                        [embedding("e", "e.table"), dense("fc", "fc.weight")], {"e.table": (1, 0), "fc.weight": (n, 0)})


def zero_dim(d, variant):
    p = os.path.join(d, f"zero_dim_{variant}.fastrnn")
    if variant == 0:  # a vocabulary of no ids
        return write_native(p, [embedding("e", "e.t"), dense("fc", "fc.w", "fc.b")],
                            {"e.t": (0, 4), "fc.w": (2, 4), "fc.b": (2,)})
    if variant == 1:  # a Dense layer with no outputs, then one with no inputs
        return write_native(p, [dense("a", "a.w", "a.b"), dense("b", "b.w", "b.b")],
                            {"a.w": (0, 3), "a.b": (0,), "b.w": (5, 0), "b.b": (5,)}, input_features=3)
    # zero width with its bias written out: 4 MB of bias, a [2^20, 0] weight
    return write_native(p, [embedding("e", "e.t"), dense("fc", "fc.w", "fc.b")],
                        {"e.t": (1, 0), "fc.w": (1 << 20, 0), "fc.b": (1 << 20,)})


def narrow_dense(d, k):
    return write_native(os.path.join(d, f"narrow_dense_{k}.fastrnn"),
                        [embedding("e", "e.t"), dense("fc", "fc.w", "fc.b")],
                        {"e.t": (1, k), "fc.w": (1, k), "fc.b": (1,)})


def many_layers(d, n):
    layers = itertools.chain([dense("d", "d.w", "d.b")],
                             ({"kind": "activation", "name": f"a{i}", "activation": "relu"} for i in range(n)))
    return write_native(os.path.join(d, f"many_layers_{n}.fastrnn"), layers, {"d.w": (2, 3), "d.b": (2,)},
                        input_features=3)


def json_bomb(d, nbytes):
    pieces = nbytes // 3
    chunk = b",[]" * 65536
    extra = itertools.chain([b', "x": [[]'], itertools.repeat(chunk, pieces // 65536), [b"]"])
    return write_native(os.path.join(d, f"json_bomb_{nbytes}.fastrnn"), [dense("d", "d.w", "d.b")],
                        {"d.w": (2, 3), "d.b": (2,)}, input_features=3, header_extra=extra)


# ---------------------------------------------------------------------------------- items 6, 11, 14
def stateful_batch(d, n):
    return gru_model(os.path.join(d, f"stateful_batch_{n}.fastrnn"),
                     {"layer_metadata": {"g": {"stateful": True, "batch_size": n}}})


BAD_METADATA = [
    {"layer_metadata": [{"stateful": True, "batch_size": 2}]},  # a list, not {layer: {...}}
    {"layer_metadata": {"g": {"stateful": True, "batch_size": [2]}}},  # unhashable batch size
    {"layer_metadata": {"g": {"stateful": True, "batch_size": True}}},
    {"layer_metadata": {"g": {"stateful": True, "batch_size": 2.0}}},
    {"layer_metadata": {"g": {"stateful": "yes", "batch_size": 2}}},
    {"layer_metadata": {"g": [True, 2]}},
    {"layer_metadata": "g"},
]


def bad_metadata(d, variant):
    return gru_model(os.path.join(d, f"bad_metadata_{variant}.fastrnn"), BAD_METADATA[variant])


def surrogate(d, variant):
    p = os.path.join(d, f"surrogate_{variant}.fastrnn")
    if variant == 0:
        return gru_model(p, name="\ud800")
    if variant == 1:
        return gru_model(p, name="gru\udfff")
    if variant == 2:
        return gru_model(p, source="keras\udc80")
    if variant == 3:
        return gru_model(p, metadata={"vocab": ["a", "b\ud83d"]})
    return gru_model(p, metadata={"k\udead": 1})


FAMILIES = [
    Family("native_zero_width", zero_width, (2 ** 10, 2 ** 28, 2 ** 33, 2 ** 40), issue_item="#12.5"),
    Family("native_zero_dim", zero_dim, (0, 1, 2), issue_item="#12.5"),
    Family("native_narrow_dense", narrow_dense, (1 << 20, 1 << 22), issue_item="#12.5"),
    Family("native_many_layers", many_layers, (5000, 10 ** 5, 10 ** 6), issue_item="#12.5"),
    Family("native_json_bomb", json_bomb, (1 << 20, 16 << 20, 64 << 20), issue_item="#12.5"),
    Family("native_stateful_batch", stateful_batch, (10 ** 5, 4 * 10 ** 6, 10 ** 9, 2 ** 63, 2 ** 80),
           issue_item="#12.6"),
    Family("native_bad_metadata", bad_metadata, tuple(range(len(BAD_METADATA))), issue_item="#12.11"),
    Family("native_surrogate", surrogate, (0, 1, 2, 3, 4), issue_item="#12.14"),
]
