"""Weights from any container, with the architecture list of :mod:`fastrnn.io.torch_file`.

>>> fastrnn.load("cell.safetensors", architecture=[{"type": "lstm_cell", "key": "cell"}])
>>> fastrnn.load("seq2seq.npz", architecture=[...])
>>> fastrnn.load("ckpt.pt", architecture="gru", key="model_state")     # a checkpoint nesting several dicts
>>> fastrnn.from_state_dict({"weight_ih_l0": w_ih, ...}, architecture="gru")   # numpy arrays or torch tensors

Every container becomes a dict of numpy arrays and goes through the one state dict -> spec path
(:func:`fastrnn.io.torch_file.spec_from_tensors`): the same architecture list, ``strict`` and ``key``.

* a plain ``.safetensors`` file: the header is parsed and checked by :mod:`fastrnn.io.native` (the same
  reader as ``.fastrnn`` files: sizes, offsets in bounds, no overlap, no hole, the JSON parse charged to
  the :class:`~fastrnn.io.budget.LoadBudget` before it runs); every real dtype (F64, F32, F16, BF16,
  integers, BOOL) is read and converted to float32, each tensor charged before it is read.
* a ``.npz`` file (``numpy.savez`` / ``savez_compressed``): members ``<name>.npy``; each member's ``.npy``
  header (shape, dtype, order) is read and checked first -- object arrays are refused (nothing is
  unpickled), the declared size must fit the budget and the member's declared uncompressed size, and a
  compressed member may expand at most :data:`~fastrnn.io.detect.MAX_DEFLATE_RATIO` times (deflate's own limit); then
  exactly that many bytes are read.
* an in-memory dict (:func:`spec_from_state_dict`): numpy arrays, or torch tensors (read with
  ``.detach().cpu()``; torch is never imported here).
"""
from __future__ import annotations

import ast
import os
import zipfile
from typing import IO, Any, Callable, Iterator, Mapping

import numpy as np

from ..errors import ArgumentTypeError, ConversionError, ModelFormatError, file_errors
from ..quantize import from_bf16
from .budget import LoadBudget
from .detect import MAX_DEFLATE_RATIO, check_path
from .native import read_safetensors_header
from ..spec import ModelSpec
from .torch_file import Architecture, reader_options, spec_from_tensors

__all__ = ["spec_from_safetensors_file", "spec_from_npz_file", "spec_from_state_dict", "read_safetensors",
           "read_npz", "MAX_DEFLATE_RATIO"]

# safetensors dtype -> (numpy dtype, bytes per element); BF16 is read as 2-byte voids and widened to float32
_SAFETENSORS_DTYPES: dict[str, tuple[np.dtype[Any], int]] = {
    "F64": (np.dtype("<f8"), 8), "F32": (np.dtype("<f4"), 4), "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("V2"), 2), "I64": (np.dtype("<i8"), 8), "I32": (np.dtype("<i4"), 4),
    "I16": (np.dtype("<i2"), 2), "I8": (np.dtype("i1"), 1), "U64": (np.dtype("<u8"), 8),
    "U32": (np.dtype("<u4"), 4), "U16": (np.dtype("<u2"), 2), "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("?"), 1),
}
MAX_MEMBERS = 10_000  # arrays in one .npz (an RNN state dict holds tens; each member costs ~0.2 ms to check)
_MAX_NPY_HEADER = 1 << 16
_KINDS = {"safetensors": "a plain safetensors file", "npz": "a numpy .npz archive"}


def _from_file(path: str | os.PathLike[str], read: Callable[[str, LoadBudget], dict[str, np.ndarray]],
               architecture: Architecture, options: dict[str, Any], kind: str) -> ModelSpec:
    path = os.fspath(path)
    strict, key = reader_options(options, path, _KINDS[kind])
    with file_errors(path):
        path = check_path(path)
        budget = LoadBudget.for_file(path)
        tensors = read(path, budget)
        try:
            return spec_from_tensors(tensors, architecture, strict, path, budget, key=key,
                                     meta={"framework": "torch", "container": kind,
                                           "source_file": os.path.basename(path)})
        except ConversionError as e:
            if architecture is not None or key is not None:
                raise
            raise ModelFormatError(  # weights only: say what the file is and what it needs
                f"{path}: {_KINDS[kind]} of weights (without fastrnn metadata) whose tensors are not a single "
                f"nn.RNN/LSTM/GRU ({str(e).removeprefix(path + ': ')}); describe the model with architecture=[...] "
                "(see fastrnn.io.torch_file)") from None


def spec_from_safetensors_file(path: str | os.PathLike[str], architecture: Architecture = None,
                               **options: Any) -> ModelSpec:
    """A :class:`~fastrnn.spec.ModelSpec` from a plain safetensors file; options ``strict``, ``key``."""
    return _from_file(path, read_safetensors, architecture, options, "safetensors")


def spec_from_npz_file(path: str | os.PathLike[str], architecture: Architecture = None, **options: Any) -> ModelSpec:
    """A :class:`~fastrnn.spec.ModelSpec` from a numpy ``.npz`` file; options ``strict``, ``key``."""
    return _from_file(path, read_npz, architecture, options, "npz")


def read_safetensors(path: str, budget: LoadBudget) -> dict[str, np.ndarray]:
    """``{name: numpy array}`` of a plain safetensors file (checked header, every tensor charged)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        entries, start = read_safetensors_header(f, size, path, budget, _SAFETENSORS_DTYPES)
        budget.items(len(entries), "tensors")
        out: dict[str, np.ndarray] = {}
        for name, (dt, shape, b, e) in entries.items():
            budget.charge(e - b, f"tensor {name[:80]!r}")
            f.seek(start + b)
            raw = f.read(e - b)
            if len(raw) != e - b:
                raise ModelFormatError(f"{path}: the file is truncated (short read of tensor {name[:80]!r})")
            a = np.frombuffer(raw, dt).reshape(shape)
            if dt.kind == "V":  # bfloat16: the high half of a float32
                budget.charge(a.size * 4, f"tensor {name[:80]!r} as float32")
                a = from_bf16(a.view("<u2"))
            out[name] = a
    return out


def read_npz(path: str, budget: LoadBudget) -> dict[str, np.ndarray]:
    """``{name: numpy array}`` of a ``.npz`` file: ``.npy`` headers checked before any data is read."""
    from .detect import check_zip_directory, check_zip_members

    check_zip_directory(path, MAX_MEMBERS)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise ModelFormatError(f"{path}: not a readable zip archive ({e})") from None
    with z:
        infos = z.infolist()
        budget.items(len(infos), "archive members", limit=MAX_MEMBERS)
        check_zip_members(z, path, budget.file_size)
        out: dict[str, np.ndarray] = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                raise ModelFormatError(f"{path}: member {name[:80]!r} is not a .npy array (a .npz holds only those)")
            budget.charge(min(info.file_size, _MAX_NPY_HEADER + 128), f"member {name[:80]!r} header")
            with z.open(info) as m:
                dtype, shape, fortran, hlen = _npy_header(m, name, path)
                count = 1
                for d in shape:
                    count *= d
                nbytes = count * dtype.itemsize
                if hlen + nbytes != info.file_size:
                    raise ModelFormatError(f"{path}: member {name[:80]!r} declares shape {shape} {dtype} "
                                           f"({nbytes:,} bytes) but holds {info.file_size - hlen:,}")
                budget.charge(nbytes, f"member {name[:80]!r} ({shape} {dtype})")
                raw = m.read(nbytes)
            if len(raw) != nbytes:
                raise ModelFormatError(f"{path}: member {name[:80]!r} is truncated")
            a = np.frombuffer(raw, dtype)
            out[name[:-4]] = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
    return out


def _npy_header(m: IO[bytes], name: str, path: str) -> tuple[np.dtype[Any], tuple[int, ...], bool, int]:
    """(dtype, shape, fortran_order, header bytes) of the .npy stream ``m``, parsed with ``ast.literal_eval``."""
    def bad(why: str) -> ModelFormatError:
        return ModelFormatError(f"{path}: member {name[:80]!r}: {why}")

    head = m.read(10)
    if len(head) < 10 or head[:6] != b"\x93NUMPY":
        raise bad("not a .npy array (no \\x93NUMPY magic)")
    major = head[6]
    if major == 1:
        hlen, pre = int.from_bytes(head[8:10], "little"), 10
    elif major in (2, 3):
        head += m.read(2)
        hlen, pre = int.from_bytes(head[8:12], "little"), 12
    else:
        raise bad(f".npy format version {major} is not supported")
    if hlen > _MAX_NPY_HEADER:
        raise bad(f"a {hlen:,}-byte .npy header (at most {_MAX_NPY_HEADER:,})")
    text = m.read(hlen)
    if len(text) != hlen:
        raise bad("truncated .npy header")
    try:
        d = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin1"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as e:
        raise bad(f"unreadable .npy header ({type(e).__name__})") from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise bad("the .npy header is not a dict of descr, fortran_order, shape")
    shape = d["shape"]
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(type(x) is int and x >= 0 for x in shape):
        raise bad(f"bad .npy shape {str(shape)[:80]}")
    if not isinstance(d["descr"], str):
        raise bad(f"dtype {str(d['descr'])[:80]} is not a plain numeric type (structured arrays are not weights)")
    try:
        dtype = np.dtype(d["descr"])
    except (TypeError, ValueError) as e:
        raise bad(f"bad dtype {d['descr'][:40]!r} ({e})") from None
    if dtype.kind not in "fiub" or dtype.hasobject:
        raise bad(f"dtype {dtype} is not real numbers (object arrays are never unpickled)")
    return dtype, shape, bool(d["fortran_order"]), pre + hlen


def _to_numpy(v: Any, name: str, memo: dict[int, Any] | None = None, active: set[int] | None = None) -> Any:
    """``v`` with torch tensors as numpy arrays; each container once (``memo``: shared references stay
    shared); a container that holds itself is refused (``active``: the containers being converted)."""
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor, without importing torch
        t = v.detach().cpu()
        if str(getattr(t, "dtype", "")) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    if not isinstance(v, (dict, list, tuple)):
        return v
    memo = {} if memo is None else memo
    active = set() if active is None else active
    if id(v) in memo:
        return memo[id(v)]
    if id(v) in active:
        raise ConversionError(f"state dict: {name or 'the top level'} holds itself (a cycle); a state dict is a "
                              "tree of dicts of arrays")
    active.add(id(v))
    if isinstance(v, dict):
        out: Any = {k: _to_numpy(x, f"{name}.{k}" if name else str(k), memo, active) for k, x in v.items()}
    else:
        out = type(v)(_to_numpy(x, f"{name}.{i}" if name else str(i), memo, active) for i, x in enumerate(v))
    active.discard(id(v))
    memo[id(v)] = out
    return out


def spec_from_state_dict(d: Mapping[str, Any], architecture: Architecture = None, strict: bool = True,
                         key: str | None = None) -> ModelSpec:
    """A :class:`~fastrnn.spec.ModelSpec` from an in-memory state dict of numpy arrays or torch tensors
    (or a checkpoint dict nesting one: ``key`` names it), through the same path as files."""
    if not isinstance(d, dict):
        raise ArgumentTypeError(f"from_state_dict takes a dict of arrays (a state dict), got {type(d).__name__}")
    try:
        obj = _to_numpy(d, "")
    except RecursionError:
        raise ConversionError("state dict: nested too deeply (a state dict is a few levels of dicts)") from None
    total = sum(v.nbytes for v in _arrays(obj))
    budget = LoadBudget("state dict", total)
    return spec_from_tensors(obj, architecture, strict, "state dict", budget, key=key,
                             meta={"framework": "torch", "container": "state_dict"})


def _arrays(o: Any) -> Iterator[np.ndarray]:
    """Every distinct array in ``o`` (each container and array once)."""
    stack, seen = [o], set()
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            yield o
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
