"""Hostile ``.onnx`` files (issue 11, item 1: the ONNX reader's safety), written by hand field by
field in the protobuf wire format (no onnx package needed to build them; milliseconds to ~2 s each).

Each file is a real-looking LSTM graph with one hostile part:

* ``onnx_huge_fill``: ``ConstantOfShape`` / ``Expand`` declaring 2^20 .. 2^62 elements (as an
  initial state, or as a weight); fills are never materialised.
* ``onnx_huge_initializer``: a weight whose dims declare 2^26 .. 2^124 elements over a few bytes
  (also as a ``Constant`` node value): charged to the load budget before any conversion.
* ``onnx_external_path``: external data at ``../../etc/passwd``, ``/etc/passwd``, ``a/../../x``, or
  a symlink leaving the model's directory.
* ``onnx_truncated``: a valid model cut at 10% .. 99% of its bytes.
* ``onnx_deep_subgraph``: ``If`` nodes nested 10 .. 10,000 deep (then_branch inside then_branch).
* ``onnx_many_nodes``: a chain of 5,000 .. 1,000,000 Relu nodes (the protobuf is pre-scanned:
  a graph beyond 100,000 nodes is refused before it is parsed).
* ``onnx_long_lists``: a Transpose ``perm`` of 10^3 .. 10^6 entries, and as many graph outputs
  (the pre-scan also counts inputs, outputs and value infos).

Review 2026-12-05, section 3 (node attributes and inputs were walked and materialised without a
budget; unknown attributes were accepted):

* ``onnx_junk_attribute``: a live Identity node before the LSTM carrying an attribute Identity does
  not define (onnxruntime refuses it): 2 .. 10^6 packed INTS entries, then 10^4 / 10^5 empty STRINGS
  (a node over 64 KiB is refused before parsing).
* ``onnx_many_inputs``: a live Identity node with 2 .. 2x10^6 inputs all named ``X0`` (Identity takes one;
  beyond 4096 entries a node is refused whatever its op), and a Concat of 10^4 + 1 / 10^6 + 1 inputs
  (refused before the fix too, but only after walking them: 8x10^6 took 15.7 s / 453 MiB).
* ``onnx_junk_nodes``: 8 .. 400 live Identity nodes of ~60 KiB each (just under the per-node byte
  bound), each a 30,000-entry empty STRINGS attribute: protobuf's parse costs ~14 bytes a byte, so
  the pre-scan charges every node's bytes to the load budget.
* ``onnx_parse_bomb``: parts the converter never reads but protobuf parses entry by entry: an unused
  initializer of 4x10^6 / 8x10^6 empty strings, a model-local function whose node has as many attributes.
"""
from __future__ import annotations

import os

import numpy as np

from hostile_common import Family


# ------------------------------------------------------------------------------ wire format
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64: ten bytes of two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field: int, wt: int) -> bytes:
    return varint(field << 3 | wt)


def ln(field: int, payload: bytes) -> bytes:
    return key(field, 2) + varint(len(payload)) + payload


def num(field: int, n: int) -> bytes:
    return key(field, 0) + varint(n)


def text(field: int, s: str) -> bytes:
    return ln(field, s.encode())


FLOAT, INT32, INT64 = 1, 6, 7


def tensor(name: str, dims, data_type=FLOAT, raw: bytes = b"", external=None) -> bytes:
    """TensorProto: dims 1, data_type 2, name 8, raw_data 9, external_data 13, data_location 14."""
    b = b"".join(num(1, d) for d in dims) + num(2, data_type) + text(8, name)
    if external is not None:
        b += b"".join(ln(13, text(1, k) + text(2, v)) for k, v in external.items()) + num(14, 1)
    else:
        b += ln(9, raw)
    return b


def arr(name: str, a: np.ndarray) -> bytes:
    dt = {np.float32: FLOAT, np.int64: INT64, np.int32: INT32}[a.dtype.type]
    return tensor(name, a.shape, dt, a.astype(a.dtype.newbyteorder("<")).tobytes())


def attr_int(name: str, v: int) -> bytes:
    return text(1, name) + num(20, 2) + num(3, v)


def attr_tensor(name: str, t: bytes) -> bytes:
    return text(1, name) + num(20, 4) + ln(5, t)


def node(op: str, inputs, outputs, attrs=(), name: str = "") -> bytes:
    """NodeProto: input 1, output 2, name 3, op_type 4, attribute 5."""
    return (b"".join(text(1, i) for i in inputs) + b"".join(text(2, o) for o in outputs) +
            (text(3, name) if name else b"") + text(4, op) + b"".join(ln(5, a) for a in attrs))


def value_info(name: str, dims, elem=FLOAT) -> bytes:
    """ValueInfoProto{name, TypeProto{tensor_type{elem_type, shape{dim{dim_value | dim_param}}}}}."""
    shape = b"".join(ln(1, num(1, d) if isinstance(d, int) else text(2, d)) for d in dims)
    return text(1, name) + ln(2, ln(1, num(1, elem) + ln(2, shape)))


def graph(nodes, inits=(), inputs=(), outputs=()) -> bytes:
    """GraphProto: node 1, name 2, initializer 5, input 11, output 12."""
    return (b"".join(ln(1, n) for n in nodes) + text(2, "g") + b"".join(ln(5, t) for t in inits) +
            b"".join(ln(11, i) for i in inputs) + b"".join(ln(12, o) for o in outputs))


def model(g: bytes, opset: int = 14) -> bytes:
    """ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8."""
    return num(1, 8) + text(2, "hostile") + ln(7, g) + ln(8, text(1, "") + num(2, opset))


# ------------------------------------------------------------------------------ a real-looking LSTM
H, I = 4, 3


def lstm_parts(rng=None, *, w=None, extra_nodes=(), extra_inits=(), h0="", out="y", x_dims=("T", "N", I)):
    rng = rng or np.random.default_rng(0)
    W = rng.standard_normal((1, 4 * H, I)).astype(np.float32)
    R = rng.standard_normal((1, 4 * H, H)).astype(np.float32)
    inits = [w if w is not None else arr("W", W), arr("R", R), arr("ax", np.array([1], np.int64)), *extra_inits]
    nodes = [*extra_nodes, node("LSTM", ["X", "W", "R", "", "", h0], ["Y"], [attr_int("hidden_size", H)], "lstm"),
             node("Squeeze", ["Y", "ax"], [out], name="sq")]
    return graph(nodes, inits, [value_info("X", list(x_dims))], [value_info(out, ["T", "N", H])])


def write(d: str, name: str, data: bytes) -> str:
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


# ------------------------------------------------------------------------------ families
def make_huge_fill(d, size):
    """size = log2 of the declared element count.  Even exponents: a ConstantOfShape zero initial
    state (1, 2^k, H) for a dynamic batch; odd: Expand of a constant to (2^k, 4H, I) used as W."""
    n = 1 << size
    if size % 2 == 0:
        extra = [node("ConstantOfShape", ["shape"], ["h0"], [attr_tensor("value", arr("", np.zeros(1, np.float32)))])]
        g = lstm_parts(extra_nodes=extra, extra_inits=[arr("shape", np.array([1, n, H], np.int64))], h0="h0")
    else:
        extra = [node("Expand", ["one", "shape"], ["W"], name="expand")]
        g = lstm_parts(w=arr("one", np.ones((1, 1, 1), np.float32)), extra_nodes=extra,
                       extra_inits=[arr("shape", np.array([n, 4 * H, I], np.int64))])
    return write(d, f"fill{size}.onnx", model(g))


def make_huge_initializer(d, size):
    """W declares 2^size elements (dims split so each fits int64) over 64 bytes of raw data; odd
    sizes put the tensor in a Constant node instead of an initializer."""
    dims = [1, 1 << min(size, 62)] + ([1 << (size - 62)] if size > 62 else [])
    t = tensor("W", dims, FLOAT, b"\0" * 64)
    if size % 2:
        g = lstm_parts(w=arr("unused", np.zeros(1, np.float32)),
                       extra_nodes=[node("Constant", [], ["W"], [attr_tensor("value", t)], "const")])
    else:
        g = lstm_parts(w=t)
    return write(d, f"init{size}.onnx", model(g))


_EXTERNAL = ["../../etc/passwd", "/etc/passwd", "a/../../x", "symlink"]


def make_external(d, size):
    loc = _EXTERNAL[size]
    sub = os.path.join(d, f"ext{size}")
    os.makedirs(sub, exist_ok=True)
    if loc == "symlink":
        outside = write(d, "outside.bin", b"\0" * (4 * 4 * H * I))
        os.symlink(outside, os.path.join(sub, "w.bin"))
        loc = "w.bin"
    w = tensor("W", [1, 4 * H, I], FLOAT, external={"location": loc, "offset": "0", "length": str(4 * 4 * H * I)})
    return write(sub, "m.onnx", model(lstm_parts(w=w)))


def make_truncated(d, size):
    data = model(lstm_parts())
    return write(d, f"cut{size}.onnx", data[:max(1, len(data) * size // 100)])


def make_deep_subgraph(d, size):
    """``If`` whose then_branch holds an ``If`` ... ``size`` deep, written as prefixes only (each nested
    message is the last field of its parent), so building stays linear in the depth."""
    inner = graph([node("Identity", ["X"], ["y"])], outputs=[value_info("y", ["N", I])])
    prefixes, length = [], len(inner)
    for _ in range(size):
        g_field = key(6, 2) + varint(length)  # AttributeProto.g
        a_head = text(1, "then_branch") + num(20, 5)
        a_len = len(a_head) + len(g_field) + length
        n_head = text(1, "c") + text(2, "y") + text(4, "If")
        a_field = key(5, 2) + varint(a_len)
        n_len = len(n_head) + len(a_field) + a_len
        gr_field = key(1, 2) + varint(n_len)  # GraphProto.node
        prefixes.append(gr_field + n_head + a_field + a_head + g_field)
        length = len(gr_field) + n_len
    body = b"".join(reversed(prefixes)) + inner
    head = ln(11, value_info("X", ["N", I])) + ln(11, value_info("c", [], 9)) + ln(12, value_info("y", ["N", I]))
    g = head + body  # the outer graph's nested If node comes last
    return write(d, f"deep{size}.onnx", num(1, 8) + ln(8, text(1, "") + num(2, 14)) + ln(7, g))


def _chain_nodes(n: int) -> bytes:
    """``n`` Relu nodes X -> t0000001 -> ... (fixed-width names: one template, no per-node encoding)."""
    def name(k):
        return b"X0000000" if k == 0 else b"t%07d" % k

    body = ln(1, b"N" * 8) + ln(2, b"M" * 8) + text(4, "Relu")
    head = key(1, 2) + varint(len(body))
    pre, mid = body.split(b"N" * 8)
    mid, post = mid.split(b"M" * 8)
    return b"".join(head + pre + name(k) + mid + name(k + 1) + post for k in range(n))


def make_many_nodes(d, size):
    g = (_chain_nodes(size) + text(2, "g") + ln(11, value_info("X0000000", ["N", I])) +
         ln(12, value_info("t%07d" % size, ["N", I])))
    return write(d, f"nodes{size}.onnx", model(g))


def make_long_lists(d, size):
    """Even sizes: a Transpose perm of 10^k entries on the LSTM input; odd: 10^k more graph outputs."""
    n = 10 ** (size // 2)
    if size % 2 == 0:
        perm = text(1, "perm") + num(20, 7) + ln(8, b"\0" * n)  # n packed zeros: the length is the attack
        g = lstm_parts(extra_nodes=[node("Transpose", ["X0"], ["X"], [perm], "tr")])
        g = g.replace(ln(11, value_info("X", ["T", "N", I])), ln(11, value_info("X0", ["T", "N", I])))
    else:
        vi = ln(12, value_info("o0000000", [1]))
        pre, post = vi.split(b"o0000000")
        g = lstm_parts() + b"".join(pre + b"o%07d" % k + post for k in range(n))
    return write(d, f"lists{size}.onnx", model(g))


def attr_ints_packed(name: str, n: int, value: int = 300) -> bytes:
    """An INTS attribute (type 7, ints 8) of ``n`` packed entries (``value``: 2 bytes each for 300)."""
    return text(1, name) + num(20, 7) + ln(8, varint(value) * n)


def attr_strings(name: str, n: int) -> bytes:
    """A STRINGS attribute (type 8, strings 9) of ``n`` empty strings (2 bytes each)."""
    return text(1, name) + num(20, 8) + ln(9, b"") * n


def _identity_before_lstm(d, fname, ident: bytes) -> str:
    """``X0 -> ident -> X -> LSTM``: a loadable LSTM but for the Identity node ``ident`` (its bytes)."""
    g = lstm_parts()
    g = g.replace(ln(11, value_info("X", ["T", "N", I])), ln(11, value_info("X0", ["T", "N", I])))
    return write(d, fname, model(ln(1, ident) + g))


def make_junk_attribute(d, size):
    """Sizes up to 10^6: an INTS attribute of ``size`` entries; 10^7 + k: k empty STRINGS."""
    a = attr_strings("junk", size - 10 ** 7) if size > 10 ** 7 else attr_ints_packed("junk", size)
    return _identity_before_lstm(d, f"junk{size}.onnx", node("Identity", ["X0"], ["X"], [a], "id"))


def make_many_inputs(d, size):
    """Even sizes: an Identity of ``size`` inputs; odd: a Concat of ``size`` inputs feeding the LSTM."""
    op = "Identity" if size % 2 == 0 else "Concat"
    attrs = [attr_int("axis", 2)] if op == "Concat" else []
    many = text(1, "X0") * size + node(op, [], ["X"], attrs, "many")  # (repeating one encoded field: fast)
    return _identity_before_lstm(d, f"inputs{size}.onnx", many)


def make_junk_nodes(d, size):
    """``size`` Identity nodes X0 -> x1 -> ... -> X, each with a 30,000-entry STRINGS attribute."""
    junk = attr_strings("junk", 30_000)
    names = ["X0"] + [f"x{k}" for k in range(1, size)] + ["X"]
    nodes = b"".join(ln(1, node("Identity", [names[k]], [names[k + 1]], [junk], f"id{k}")) for k in range(size))
    g = lstm_parts()
    g = g.replace(ln(11, value_info("X", ["T", "N", I])), ln(11, value_info("X0", ["T", "N", I])))
    return write(d, f"junknodes{size}.onnx", model(nodes + g))


def make_parse_bomb(d, size):
    """Bytes the converter never reads but protobuf parses into one object per entry: even sizes, an
    unused STRING initializer of ``size`` empty strings; odd, a model-local function (ModelProto.functions)
    whose one node has ``size`` one-field attributes."""
    if size % 2 == 0:
        strings = tensor("unused", [size], 8)[:-2] + ln(6, b"") * size  # (drops the empty raw_data)
        g = lstm_parts(extra_inits=[strings])
        return write(d, f"strings{size}.onnx", model(g))
    fn_node = ln(5, text(1, "a")) * size + text(2, "y") + text(4, "Relu")
    fn = text(1, "f") + text(4, "x") + text(5, "y") + ln(7, fn_node) + text(10, "local")
    return write(d, f"function{size}.onnx", model(lstm_parts()) + ln(25, fn))


FAMILIES = [
    Family("onnx_huge_fill", make_huge_fill, [20, 31, 40, 62], issue_item="#11.1"),
    Family("onnx_huge_initializer", make_huge_initializer, [26, 33, 62, 124], issue_item="#11.1"),
    Family("onnx_external_path", make_external, [0, 1, 2, 3], issue_item="#11.1"),
    Family("onnx_truncated", make_truncated, [10, 50, 90, 99], issue_item="#11.1"),
    Family("onnx_deep_subgraph", make_deep_subgraph, [10, 100, 1000, 10_000], issue_item="#11.1"),
    Family("onnx_many_nodes", make_many_nodes, [5_000, 100_001, 1_000_000], issue_item="#11.1"),
    Family("onnx_long_lists", make_long_lists, [6, 7, 12, 13], issue_item="#11.1"),
    Family("onnx_junk_attribute", make_junk_attribute, [2, 10 ** 4, 10 ** 6, 10 ** 7 + 10 ** 4, 10 ** 7 + 10 ** 5],
           issue_item="#11.1"),
    Family("onnx_many_inputs", make_many_inputs, [2, 5_000, 10_001, 10 ** 6 + 1, 2 * 10 ** 6], issue_item="#11.1"),
    Family("onnx_junk_nodes", make_junk_nodes, [8, 100, 400], issue_item="#11.1"),
    Family("onnx_parse_bomb", make_parse_bomb, [4 * 10 ** 6, 4 * 10 ** 6 + 1, 8 * 10 ** 6, 8 * 10 ** 6 + 1],
           issue_item="#11.1"),
]
