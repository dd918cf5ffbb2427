"""Read PyTorch ``torch.save`` files WITHOUT importing (or needing) torch.

>>> spec = spec_from_torch_file("lstm.pt")                              # a bare nn.LSTM/GRU state dict
>>> spec = spec_from_torch_file("rnn.pt", architecture="rnn_relu")      # nn.RNN: say the nonlinearity
>>> spec = spec_from_torch_file("clf.pt", architecture=[
...     {"type": "embedding", "key": "emb"},
...     {"type": "lstm", "key": "rnn", "num_layers": 2, "bidirectional": True},
...     {"type": "last_step"},
...     {"type": "linear", "key": "fc", "activation": "softmax"}])

File formats
------------
* the zip format (``torch.save`` default since 1.6): ``<dir>/data.pkl`` + ``<dir>/data/<key>`` raw
  storages + ``<dir>/byteorder`` (little / big);
* the legacy format (``_use_new_zipfile_serialization=False``, and files written before 1.6): magic
  number, protocol version, sys_info, the object pickle (storages as persistent ids), the list of
  storage keys, then each storage as an 8-byte element count + raw data.
* Refused: the pre-0.4 tar format, TorchScript archives (``torch.jit.save``), whole pickled
  ``nn.Module`` objects (those need code execution: save ``model.state_dict()`` instead).

Safety: the pickles are read by a restricted unpickler whose ``find_class`` allows ONLY
``collections.OrderedDict``, ``torch._utils._rebuild_tensor`` / ``_rebuild_tensor_v2`` /
``_rebuild_parameter`` / ``_rebuild_parameter_with_state``, ``torch._tensor._rebuild_from_type_v2``
(with ``torch.Tensor`` / ``torch.nn.parameter.Parameter`` as the type) and the ``torch.*Storage`` /
``torch.cuda.*Storage`` type *names* (mapped to numpy dtypes; no torch object is ever created -- the
fastrnn replacements only record (storage, offset, size, stride)).  Any other global raises
:class:`~fastrnn.errors.ModelFormatError` ("refusing to load global 'os.system' ..."): fastrnn never
executes code from a model file.  Each global is handed to the pickle as a fresh object whose
attributes cannot be set (a BUILD opcode aimed at one changes nothing of fastrnn).  Before any pickle
is unpickled, :func:`_scan_pickle` simulates its stack and refuses nesting deeper than 64 (a tuple's
hash recurses in C: a deep key would crash the process), objects filled after they are held, BUILD on
anything but a call's result, and memo indices, frames or lengths beyond the data.  What a file may
cost is bounded by its real size (:class:`~fastrnn.io.budget.LoadBudget`): every zip member, legacy
storage, materialised tensor (a stride-0 view expands) and float32 copy is charged before it is made;
declared sizes are checked against the real bytes, sizes multiply as Python ints (at most 32
dimensions).  Any bad content raises a :class:`~fastrnn.errors.FastRNNError` naming the file.
Tensors of any dtype (float16 / bfloat16 / float64 are converted to float32 for weights), strided
views (bounds-checked against the storage) and shared storages are supported; the device a tensor
was saved on (``cuda:0``...) is ignored: everything is read to the CPU.

The object may be a state dict (a dict of tensors), or a checkpoint nesting one anywhere in dicts,
lists and tuples: the one dict of tensors found is taken on its own (other entries -- epoch, config
-- are ignored).  When there are several (an optimizer state, an EMA copy...), the one under
``"state_dict"`` / ``"model_state_dict"`` / ``"model"`` / ``"net"`` / ``"module"`` at the top level is
taken, else the error lists their dotted paths and ``key="model_state"`` (a top-level key) or
``key="train.model_state"`` (a dotted path; list items by index) names one.  A ``module.`` prefix on
every key (``nn.DataParallel``) is stripped.

The same state dict -> spec path (:func:`spec_from_tensors`), architecture list, ``strict`` and ``key``
serve every container (:mod:`fastrnn.io.containers`): ``fastrnn.load("w.safetensors" / "w.npz",
architecture=...)`` and ``fastrnn.from_state_dict(d, architecture=...)`` for an in-memory dict of numpy
arrays or torch tensors.

Architecture (``architecture=``)
--------------------------------
A state dict has weights but no forward(), so fastrnn must be told the chain -- except for the one
obvious case:

* ``None``: the state dict must be a single ``nn.LSTM`` / ``nn.GRU`` (keys ``weight_ih_l{k}``,
  ``weight_hh_l{k}``, ``bias_*``, ``*_reverse``, ``weight_hr_l{k}``, optionally under one prefix).
  num_layers, bidirectional, proj_size, bias, input and hidden sizes come from names and shapes; the
  cell from the gate count (4H rows: LSTM, 3H: GRU -- PyTorch has only the reset-after GRU).  A gate
  count of 1 (``nn.RNN``) is refused: tanh and relu have identical shapes, so pass
  ``architecture="rnn_tanh"`` or ``"rnn_relu"``.
* a string ``"lstm"`` / ``"gru"`` / ``"rnn_tanh"`` / ``"rnn_relu"``: the same, with the cell stated.
* a list (or ``{"layers": [...]}``, or that as a JSON string / path to a ``.json`` file) of entries,
  applied in order (``key`` = the state-dict prefix of the module, ``"rnn"`` for ``rnn.weight_ih_l0``;
  sizes always come from the tensor shapes; size fields you give are checked against them):

  - ``{"type": "embedding", "key": K}`` -- ``K.weight`` [V, D]; must come first; input = (B, T) ids.
  - ``{"type": "lstm" | "gru" | "rnn", "key": K, "nonlinearity": "tanh" | "relu" (rnn: required),
    "num_layers", "bidirectional", "proj_size", "input_size", "hidden_size", "bias" (checked if given),
    "batch_first" (recorded in metadata only: fastrnn.predict is always batch-first)}`` --
    outputs the sequence ``out`` (B, T, D*H).
  - ``{"type": "lstm_cell" | "gru_cell" | "rnn_cell", "key": K, "nonlinearity": "tanh" | "relu" (rnn_cell:
    required), "input_size", "hidden_size", "bias" (checked if given)}`` -- an ``nn.LSTMCell`` / ``GRUCell``
    / ``RNNCell``: keys ``K.weight_ih``, ``K.weight_hh``, optional ``K.bias_ih`` / ``K.bias_hh`` (no ``_l0``
    suffix).  One forward recurrent layer that outputs each step's ``h`` (B, T, H): the cell stepped over
    time from a zero state; ``stream().step(x_t)`` is one cell call.
  - ``{"type": "linear", "key": K, "activation": A}`` -- ``K.weight`` [O, I], ``K.bias`` optional;
    ``activation`` optional (a fastrnn activation name, e.g. relu, tanh, softmax, log_softmax).
  - ``{"type": "activation", "activation": A}`` or just ``{"type": A}`` / the string ``A``;
    ``{"type": "l2_normalize"}`` / ``"l2_normalize"`` is ``F.normalize(x, dim=-1)``: x / max(||x||_2, 1e-12)
    over the features.
  - ``{"type": "dropout"}`` / ``"identity"``: no-ops at inference.
  - selections after a recurrent entry, with PyTorch's exact semantics:
      ``"last_step"`` (alias ``"out[:, -1]"``): the output at the last time step (for a
      bidirectional module: forward state at T-1 concatenated with the backward output at T-1);
      ``"h_n_last"`` (alias ``"h_n[-1]"``): the last layer's final hidden state -- for a
      bidirectional module that is the BACKWARD direction only (h_n is ordered layer-major, forward
      then backward), which fastrnn expresses by widening the following linear with zero columns,
      so a linear must follow (element-wise activations in between are fine);
      ``"h_n_cat"`` (alias ``"cat(h_n[-2], h_n[-1])"``): both directions of the last layer's final
      state, ``torch.cat((h_n[-2], h_n[-1]), dim=1)``.  With ``lengths`` the final-state selections
      give the state at each row's last valid step (packed-sequence semantics).
* a fastrnn ModelSpec JSON (a dict with ``"format"`` and ``"layers"``, the header of
  :meth:`fastrnn.spec.ModelSpec.to_core`) whose tensor references are state-dict keys: built with
  :meth:`ModelSpec.from_core` (canonical layouts are PyTorch's, so no transposes are needed).

Every state-dict entry must be used by the architecture (a leftover usually means a wrong
architecture); pass ``strict=False`` to ignore leftovers.  Options: ``architecture``, ``strict``, ``key``.
"""
from __future__ import annotations

import collections
import io
import json
import math
import mmap
import os
import pickle
import struct
import zipfile
import zlib
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Mapping, NoReturn, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from ..converters.torch import CELL_MODES, Piece, RNNDesc, build_spec, cell_piece, rnn_desc_from_tensors
from ..errors import ArgumentTypeError, ConversionError, FastRNNError, ModelFormatError, UnsupportedLayerError, file_errors
from ..quantize import from_bf16
from ..spec import ACTIVATIONS, AXIS_ACTIVATIONS, ModelSpec
from .budget import LoadBudget
from .detect import check_path, check_zip_directory, check_zip_members, read_zip_member, refuse_options

if TYPE_CHECKING:
    from typing import TypeGuard  # Python 3.10+

__all__ = ["spec_from_torch_file", "spec_from_tensors", "read_torch_file", "is_torch_file"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# storage class name -> (numpy dtype string (little endian), element size)
_STORAGES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "b1", "ComplexFloatStorage": "c8", "ComplexDoubleStorage": "c16",
}
_MAX_DEPTH = 64  # nesting depth of anything a pickle builds (a state dict or checkpoint: < 10)
_MAX_RANK = 32  # dimensions of one tensor (numpy's own limit is 64; RNN weights have 1 or 2)
_MAX_INDEX = 1 << 62  # each size, stride and offset (in elements)


def _short(v: object, n: int = 120) -> str:
    """``repr(v)``, cut to ``n`` characters (file content quoted in messages)."""
    r = repr(v) if not isinstance(v, str) else v
    return r if len(r) <= n else r[:n] + f"... ({len(r):,} characters)"


class _Frozen:
    """Base of every object a pickle is handed (globals, storages, tensors): nothing from outside can
    set or delete an attribute, so a BUILD opcode aimed at one fails and no file changes fastrnn's
    state (the module's functions are never handed out: :class:`_Global` wraps them, fresh per use)."""

    __slots__ = ()

    def __init__(self, **fields: Any) -> None:
        self._set(**fields)

    def _set(self, **fields: Any) -> None:
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: object) -> None:
        raise ModelFormatError(f"refusing to set attribute {_short(name)} of a {type(self).__name__[1:]} object (a "
                               "BUILD opcode aimed at a global or a tensor): not a torch.save state dict")

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)


class _StorageType(_Frozen):
    """Stands for ``torch.FloatStorage`` etc.: a name and a dtype, nothing callable."""

    __slots__ = ("name", "dtype")
    name: str
    dtype: str  # a numpy dtype string, or "bf16" / "b1"

    def __init__(self, name: str) -> None:
        super().__init__(name=name, dtype=_STORAGES[name])

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bf16" else (1 if self.dtype == "b1" else np.dtype(self.dtype).itemsize)

    def __repr__(self) -> str:
        return f"<storage type {self.name}>"


class _TypeMarker(_Frozen):
    """Stands for ``torch.Tensor`` / ``torch.nn.parameter.Parameter`` in ``_rebuild_from_type_v2``."""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        super().__init__(name=name)


class _Global(_Frozen):
    """An allowed global as the pickle sees it: a call forwards to ``fn``; a fresh one per lookup."""

    __slots__ = ("fn", "name")
    fn: Callable[..., Any]
    name: str

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        super().__init__(fn=fn, name=name)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"<global {self.name}>"


class _Storage(_Frozen):
    __slots__ = ("key", "stype", "numel", "location", "data")
    key: str
    stype: _StorageType
    numel: int
    location: str
    data: Any  # the storage's bytes once read (None before)

    def __init__(self, key: str, stype: _StorageType, numel: int, location: str) -> None:
        super().__init__(key=key, stype=stype, numel=numel, location=location, data=None)  # data: once read


class _TensorRef(_Frozen):
    __slots__ = ("storage", "offset", "size", "stride")
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        super().__init__(storage=storage, offset=offset, size=size, stride=stride)


def _ints(v: object, what: str) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or not all(type(x) is int for x in v):
        raise ModelFormatError(f"tensor {what} must be a tuple of ints, got {_short(v)}")
    if len(v) > _MAX_RANK:
        raise ModelFormatError(f"tensor {what} has {len(v)} dimensions (at most {_MAX_RANK} are read)")
    if not all(0 <= x < _MAX_INDEX for x in v):
        raise ModelFormatError(f"tensor {what} {_short(v)} has a negative or impossibly large entry")
    return tuple(v)


def _rebuild_tensor(storage: object, storage_offset: object, size: object, stride: object,
                    *_ignored: object) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise ModelFormatError(f"tensor storage is not a storage reference ({type(storage).__name__})")
    if type(storage_offset) is not int or not 0 <= storage_offset < _MAX_INDEX:
        raise ModelFormatError(f"tensor storage offset must be a non-negative int, got {_short(storage_offset)}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise ModelFormatError(f"tensor size {size} and stride {stride} differ in rank")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage: object, storage_offset: object, size: object, stride: object,
                       requires_grad: object = False, backward_hooks: object = None,
                       metadata: object = None) -> _TensorRef:
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: object, requires_grad: object = False, backward_hooks: object = None,
                       *_state: object) -> _TensorRef:
    if not isinstance(data, _TensorRef):
        raise ModelFormatError("a Parameter must wrap a tensor")
    return data


def _rebuild_from_type_v2(func: object, new_type: object, args: object, state: object) -> Any:
    if not (isinstance(func, _Global) and func.fn in (_rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter)) \
            or not isinstance(new_type, _TypeMarker):
        raise ModelFormatError("unsupported tensor subclass reconstruction")
    if not isinstance(args, tuple):
        raise ModelFormatError("bad tensor reconstruction arguments")
    return func(*args)


_FUNCTIONS: dict[tuple[str, str], Callable[..., _TensorRef]] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
}
_TYPES = {("torch", "Tensor"): "torch.Tensor", ("torch.nn.parameter", "Parameter"): "torch.nn.parameter.Parameter"}


class _RestrictedUnpickler(pickle.Unpickler):
    """Only the globals above, each handed out as a fresh :class:`_Frozen` object; run it only on a
    pickle :func:`_scan_pickle` has passed."""

    def __init__(self, f: IO[bytes], path: str, persistent: Callable[[Any], Any] | None = None, size: int = 0) -> None:
        super().__init__(f)
        self._path = path
        self._persistent = persistent
        self._copy_limit = max(1 << 16, size)  # OrderedDict items copied, in all (a memoized list reused)

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _FUNCTIONS:
            return _Global(_FUNCTIONS[key], f"{module}.{name}")
        if key == ("collections", "OrderedDict"):
            return _Global(self._ordered_dict, "collections.OrderedDict")
        if key in _TYPES:
            return _TypeMarker(_TYPES[key])
        if module in ("torch", "torch.cuda") and name in _STORAGES:
            return _StorageType(name)
        glob = _short(f"{module}.{name}", 200)
        msg = (f"refusing to load global '{glob}' from {self._path}: fastrnn never executes code from a model "
               "file (only state dicts of tensors are read)")
        if module.startswith("torch.nn") or module == "__main__" or module.startswith("__torch__"):
            msg += ("; this file seems to hold a whole pickled model object (or a TorchScript archive), whose "
                    "loading needs code execution -- save the weights instead: torch.save(model.state_dict(), path)")
        raise ModelFormatError(msg)

    def _ordered_dict(self, *args: Any) -> collections.OrderedDict[Any, Any]:
        """``OrderedDict()`` (what torch.save writes) or ``OrderedDict(items)``, whose copies are counted:
        one memoized list of pairs turned into a dict again and again would cost its size each time."""
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict))):
            raise ModelFormatError(f"{self._path}: bad OrderedDict arguments")
        items = args[0] if args else ()
        self._copy_limit -= len(items)
        if self._copy_limit < 0:
            raise ModelFormatError(f"{self._path}: the pickle copies more OrderedDict items than it holds "
                                   "(a memoized list reused again and again): a corrupt or hostile file")
        return collections.OrderedDict(items)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise ModelFormatError(f"{self._path}: unexpected persistent id in a plain pickle")
        return self._persistent(pid)


# --------------------------------------------------------------------------- the pickle pre-scan
# Opcodes of pickle protocols 0-5 (pickletools.opcodes) by what their argument is ...
_ARG_FIXED = {b"J": 4, b"K": 1, b"M": 2, b"h": 1, b"j": 4, b"q": 1, b"r": 4, b"\x80": 1, b"\x95": 8, b"G": 8,
              b"\x82": 1, b"\x83": 2, b"\x84": 4}
_ARG_COUNTED = {b"U": "<B", b"T": "<i", b"C": "<B", b"B": "<I", b"\x8e": "<Q", b"\x8c": "<B", b"X": "<I",
                b"\x8d": "<Q", b"\x96": "<Q", b"\x8a": "<B", b"\x8b": "<i"}  # length, then that many bytes
_ARG_LINES = {b"I": 1, b"L": 1, b"F": 1, b"S": 1, b"V": 1, b"g": 1, b"p": 1, b"P": 1, b"c": 2, b"i": 2}
# ... and by what they do to the stack (kinds of objects: 0 scalar, 1 list/dict/set, 2 tuple/frozenset,
# 3 global, 4 persistent object, 5 the result of a call)
(_PUSH, _PUT, _GET, _MARK, _NEW, _FROM_MARK, _TUPLE_N, _INTO, _INTO_MARK, _BUILD, _POP, _POP_MARK, _DUP,
 _GLOBAL, _STACK_GLOBAL, _CALL, _CALL_MARK, _PERSID, _BINPERSID, _STOP, _NOP, _EXT, _MEMOIZE, _FRAME) = range(24)
_OPS = {
    **dict.fromkeys(b"IJKMLFGSTUBC\x8e\x96\x97NV\x8c\x8d\x88\x89X\x8a\x8b", (_PUSH, 0)),
    **dict.fromkeys(b"pqr", (_PUT, 0)), **dict.fromkeys(b"ghj", (_GET, 0)), ord("\x94"): (_MEMOIZE, 0),
    ord("("): (_MARK, 0), ord("]"): (_NEW, 1), ord("}"): (_NEW, 1), ord("\x8f"): (_NEW, 1), ord(")"): (_NEW, 2),
    ord("l"): (_FROM_MARK, 1), ord("d"): (_FROM_MARK, 1), ord("t"): (_FROM_MARK, 2), ord("\x91"): (_FROM_MARK, 2),
    ord("\x85"): (_TUPLE_N, 1), ord("\x86"): (_TUPLE_N, 2), ord("\x87"): (_TUPLE_N, 3),
    ord("a"): (_INTO, 1), ord("s"): (_INTO, 2), ord("e"): (_INTO_MARK, 0), ord("u"): (_INTO_MARK, 0),
    ord("\x90"): (_INTO_MARK, 0), ord("b"): (_BUILD, 0), ord("0"): (_POP, 0), ord("1"): (_POP_MARK, 0),
    ord("2"): (_DUP, 0), ord("c"): (_GLOBAL, 0), ord("\x93"): (_STACK_GLOBAL, 0), ord("R"): (_CALL, 2),
    ord("\x81"): (_CALL, 2), ord("\x92"): (_CALL, 3), ord("i"): (_CALL_MARK, 0), ord("o"): (_CALL_MARK, 0),
    ord("P"): (_PERSID, 0), ord("Q"): (_BINPERSID, 0), ord("."): (_STOP, 0), ord("\x80"): (_NOP, 0),
    ord("\x95"): (_FRAME, 0), ord("\x98"): (_NOP, 0), **dict.fromkeys(b"\x82\x83\x84", (_EXT, 0)),
}
_TABLE = [_OPS[c] + (_ARG_FIXED.get(bytes([c])), _ARG_COUNTED.get(bytes([c])), _ARG_LINES.get(bytes([c])))
          if c in _OPS else None for c in range(256)]  # opcode -> (kind, count, fixed, counted, lines)
_SCALAR = (0, False, 0, "")  # an object is [depth, held (by a container or a call), kind, global name]


def _scan_pickle(data: bytes | mmap.mmap, start: int, path: str) -> int:
    """Check the pickle at ``data[start:]`` BEFORE it is unpickled, by simulating its stack (no object is
    built).  Refused with :class:`ModelFormatError`:

    * anything nested more than ``_MAX_DEPTH`` deep (a tuple's hash, and repr, recurse in C without a
      recursion check: 10^6 nested tuples used as a dict key crash the process).  The depth of each
      object is exact because no object may be filled (APPEND, SETITEM(S), ADDITEMS, BUILD) once it is
      held by another one -- the pickler always finishes an object before using it; only cycles need
      that, and a state dict has none -- so the memo cannot hide depth;
    * BUILD on anything but the result of a call (a global, a storage, a container);
    * memo indices beyond the pickle's size (C pickle grows its memo to the largest index: a 10-byte
      LONG_BINPUT could ask for 16 GiB), a FRAME or an argument longer than the data, copyreg extensions.

    Returns the offset just past the pickle's STOP."""
    n = len(data)
    limit = max(1024, n - start)
    stack: list[Any]  # objects: [depth, held, kind, global name] lists (or the shared _SCALAR tuple)
    marks: list[int]
    memo: dict[int, Any]
    stack, marks, memo = [], [], {}
    unpack = struct.unpack_from
    pos = start

    def fail(why: str) -> NoReturn:
        raise ModelFormatError(f"{path}: {why}")

    def contain(parent: list[Any], children: list[Any]) -> list[Any]:
        """``parent`` now holds ``children``: they are held, and it is deeper than each of them."""
        d = parent[0]
        for c in children:
            if c[2] in (0, 3, 4):  # scalars, globals, persistent objects: depth 0, never filled
                continue
            if c is parent:
                fail("refusing a pickle with an object that holds itself (a state dict has no cycles)")
            c[1] = True
            if c[0] >= d:
                d = c[0] + 1
        if d > _MAX_DEPTH:
            fail(f"pickle nested more than {_MAX_DEPTH} deep (a state dict is a few levels deep): a corrupt or "
                 "hostile file")
        parent[0] = d
        return parent

    def underflow() -> NoReturn:
        fail("corrupt pickle (stack underflow)")

    def target(kinds: tuple[int, ...], op: str) -> Any:
        if len(stack) <= (marks[-1] if marks else 0):
            underflow()
        t = stack[-1]
        if t[2] not in kinds:
            what = {0: "a scalar", 1: "a container", 2: "a tuple", 3: f"the global {_short(t[3], 200)}",
                    4: "a storage"}.get(t[2], "an object")
            fail(f"refusing a pickle whose {op} opcode modifies {what} (a torch.save state dict never does)")
        if t[1]:
            fail(f"refusing a pickle whose {op} opcode fills an object already held by another one (torch.save "
                 "finishes each object before using it; only cycles need this)")
        return t

    def pop_mark() -> list[Any]:
        if not marks:
            fail("corrupt pickle (no MARK)")
        k = marks.pop()
        items = stack[k:]
        del stack[k:]
        return items

    def pop(k: int) -> list[Any]:
        if len(stack) - (marks[-1] if marks else 0) < k:
            underflow()
        items = stack[len(stack) - k:]
        del stack[len(stack) - k:]
        return items

    while True:
        if pos >= n:
            fail("truncated pickle (no STOP)")
        c = data[pos]
        op = _TABLE[c]
        if op is None:
            fail(f"corrupt pickle (unknown opcode {bytes([c])!r} at offset {pos - start})")
        kind, k, fixed, counted, lines = op
        arg_at = pos = pos + 1
        if fixed:
            pos += fixed
        elif counted:
            size = struct.calcsize(counted)
            if pos + size > n:
                fail("truncated pickle")
            (length,) = unpack(counted, data, pos)
            if length < 0:
                fail("corrupt pickle (negative length)")
            arg_at = pos = pos + size
            pos += length
        elif lines:
            for _ in range(lines):
                nl = data.find(b"\n", pos)
                if nl < 0:
                    fail("truncated pickle")
                pos = nl + 1
        if pos > n:
            fail("truncated pickle")
        if kind == _PUSH:
            stack.append(_SCALAR)
        elif kind == _PUT or kind == _GET or kind == _MEMOIZE:
            if kind == _MEMOIZE:
                idx = len(memo)
            elif fixed:
                idx = int.from_bytes(data[arg_at:pos], "little")
            else:
                try:
                    idx = int(data[arg_at:pos - 1])
                except ValueError:
                    fail("corrupt pickle (bad memo key)")
            if not 0 <= idx <= limit:
                fail(f"corrupt pickle (memo index {idx} in a {limit}-byte pickle)")
            if kind == _GET:
                if idx not in memo:
                    fail(f"corrupt pickle (memo entry {idx} read before it is written)")
                stack.append(memo[idx])
            else:
                if len(stack) <= (marks[-1] if marks else 0):
                    underflow()
                memo[idx] = stack[-1]
        elif kind == _MARK:
            marks.append(len(stack))
        elif kind == _NEW:
            stack.append([1, False, k, ""])
        elif kind == _FROM_MARK:
            stack.append(contain([1, False, k, ""], pop_mark()))
        elif kind == _TUPLE_N:
            stack.append(contain([1, False, 2, ""], pop(k)))
        elif kind == _INTO:
            items = pop(k)
            contain(target((1, 5), "APPEND/SETITEM"), items)
        elif kind == _INTO_MARK:
            items = pop_mark()
            contain(target((1, 5), "APPENDS/SETITEMS/ADDITEMS"), items)
        elif kind == _BUILD:
            state = pop(1)
            contain(target((5,), "BUILD"), state)
        elif kind == _CALL:
            stack.append(contain([1, False, 5, ""], pop(k)))
        elif kind == _CALL_MARK:
            stack.append(contain([1, False, 5, ""], pop_mark()))
        elif kind == _GLOBAL:
            stack.append([0, False, 3, data[arg_at:pos - 1].decode("utf-8", "replace").replace("\n", ".")])
        elif kind == _STACK_GLOBAL:
            pop(2)
            stack.append([0, False, 3, "(a stack global)"])
        elif kind == _POP:
            if marks and marks[-1] == len(stack):
                marks.pop()
            else:
                pop(1)
        elif kind == _POP_MARK:
            pop_mark()
        elif kind == _DUP:
            stack.extend(pop(1) * 2)
        elif kind == _PERSID or kind == _BINPERSID:
            if kind == _BINPERSID:
                pop(1)
            stack.append([0, False, 4, ""])
        elif kind == _STOP:
            pop(1)
            return pos
        elif kind == _FRAME:  # the unpickler reads (allocates) the whole frame at once: it must be there
            if int.from_bytes(data[arg_at:pos], "little") > n - pos:
                fail("truncated pickle (a frame longer than the data)")
        elif kind == _EXT:
            fail("refusing a pickle that uses the copyreg extension registry (not a torch.save file)")


def _load_pickle(data_or_file: bytes | bytearray | IO[bytes], path: str,
                 persistent: Callable[[Any], Any] | None = None) -> Any:
    """Unpickle the bytes, or the file from its position (legacy format), after :func:`_scan_pickle`."""
    f: IO[bytes]
    if isinstance(data_or_file, (bytes, bytearray)):
        data = bytes(data_or_file)
        _scan_pickle(data, 0, path)
        f, size = io.BytesIO(data), len(data)
    else:
        f = data_or_file
        start = f.tell()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            size = _scan_pickle(mm, start, path) - start
        f.seek(start)
    try:
        return _RestrictedUnpickler(f, path, persistent, size).load()
    except ModelFormatError as e:
        if path in str(e):
            raise
        raise ModelFormatError(f"{path}: {e}") from None
    except RecursionError:
        raise ModelFormatError(f"{path}: pickle nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - a malformed pickle can raise nearly anything
        raise ModelFormatError(f"{path}: corrupt or truncated pickle ({type(e).__name__}: {_short(str(e))})") \
            from None


def _storage_pid(pid: object, storages: dict[str, _Storage], path: str) -> _Storage | tuple[str, _Storage, int, int]:
    """('storage', storage_type, key, location, numel[, view_metadata])."""
    if not isinstance(pid, tuple) or not pid:
        raise ModelFormatError(f"{path}: bad persistent id {_short(pid)}")
    tag = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
    if tag != "storage" or len(pid) not in (5, 6):
        raise ModelFormatError(f"{path}: unsupported persistent id {_short(tag)} (only tensor storages are read)")
    stype, key, location, numel = pid[1:5]
    view = pid[5] if len(pid) == 6 else None
    if not isinstance(stype, _StorageType):
        raise ModelFormatError(f"{path}: persistent id names no storage type ({_short(stype)})")
    if not isinstance(key, str) or type(numel) is not int or not 0 <= numel < _MAX_INDEX:
        raise ModelFormatError(f"{path}: bad storage key/size {_short(key)}/{_short(numel)}")
    st = storages.get(key)
    if st is None:
        st = storages[key] = _Storage(key, stype, numel, location)
    elif st.stype.dtype != stype.dtype:
        raise ModelFormatError(f"{path}: storage {_short(key)} is used with two dtypes")
    if view is not None:  # legacy storage view: (view_key, offset, view_size), in elements
        if not (isinstance(view, tuple) and len(view) == 3 and type(view[1]) is int and type(view[2]) is int and
                0 <= view[1] < _MAX_INDEX and 0 <= view[2] < _MAX_INDEX):
            raise ModelFormatError(f"{path}: bad storage view {_short(view)}")
        return ("view", st, view[1], view[2])
    return st


# --------------------------------------------------------------------------- the two containers
def _read_zip(path: str, budget: LoadBudget) -> tuple[Any, str]:
    try:
        check_zip_directory(path)
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise ModelFormatError(f"{path}: not a readable zip archive (truncated or corrupt torch file: {e})") from None
    with zf:
        names = zf.namelist()
        budget.items(len(names), "zip members")
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1] or \
            [n for n in names if n == "data.pkl"]
        if not pkls:
            if any(n.endswith("/constants.pkl") for n in names):
                raise ModelFormatError(f"{path}: a TorchScript archive (torch.jit.save); fastrnn reads state dicts: "
                                       "torch.save(model.state_dict(), path)")
            raise ModelFormatError(f"{path}: a zip archive without data.pkl: not a torch.save file")
        prefix = pkls[0][:-len("data.pkl")]
        if any(n.startswith(prefix + "code/") for n in names):
            raise ModelFormatError(f"{path}: a TorchScript archive (torch.jit.save); fastrnn reads state dicts: "
                                   "torch.save(model.state_dict(), path)")
        try:
            check_zip_members(zf, path, budget.file_size)
            byteorder = read_zip_member(zf, prefix + "byteorder", budget, path, 16).decode("ascii", "replace").strip() \
                if prefix + "byteorder" in names else "little"
            if byteorder not in ("little", "big"):
                raise ModelFormatError(f"{path}: unknown byteorder {_short(byteorder)}")
            storages: dict[str, _Storage] = {}
            obj = _load_pickle(read_zip_member(zf, pkls[0], budget, path), path,
                               lambda pid: _storage_pid(pid, storages, path))
            for key, st in storages.items():
                name = f"{prefix}data/{key}"
                if name not in names:
                    raise ModelFormatError(f"{path}: storage {_short(key)} is missing from the archive")
                info = zf.getinfo(name)
                need = st.numel * st.stype.itemsize
                if info.file_size < need:
                    raise ModelFormatError(f"{path}: storage {_short(key)} has {info.file_size} bytes but "
                                           f"{st.numel} x {st.stype.itemsize} are declared (truncated file)")
                st._set(data=read_zip_member(zf, name, budget, path, need))
        except ModelFormatError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, zlib.error, NotImplementedError,
                RuntimeError) as e:
            raise ModelFormatError(f"{path}: truncated or corrupt torch zip file ({type(e).__name__}: "
                                   f"{_short(str(e))})") from None
    return obj, byteorder


def _read_legacy(path: str, budget: LoadBudget) -> tuple[Any, str]:
    with open(path, "rb") as f:
        magic = _load_pickle(f, path)
        if magic != _LEGACY_MAGIC:
            raise ModelFormatError(f"{path}: not a torch.save file (bad magic number)")
        proto = _load_pickle(f, path)
        if proto != _LEGACY_PROTOCOL:
            raise ModelFormatError(f"{path}: unsupported legacy torch protocol version {_short(proto)}")
        sys_info = _load_pickle(f, path)
        little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        storages: dict[str, _Storage] = {}
        views: list[tuple[_Storage, _Storage, int]] = []

        def pl(pid: object) -> _Storage:
            r = _storage_pid(pid, storages, path)
            if isinstance(r, tuple):  # a view of a root storage
                _, root, off, n = r
                v = _Storage(f"{root.key}[{off}:{off + n}]", root.stype, n, root.location)
                views.append((v, root, off))
                return v
            return r

        obj = _load_pickle(f, path, pl)
        keys = _load_pickle(f, path)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ModelFormatError(f"{path}: bad storage key list")
        budget.items(len(keys), "storages")
        end = "<" if little else ">"
        for key in keys:
            st = storages.get(key)
            if st is None:
                raise ModelFormatError(f"{path}: storage {_short(key)} is listed but never used")
            head = f.read(8)
            if len(head) < 8:
                raise ModelFormatError(f"{path}: truncated legacy torch file (storage {_short(key)} header)")
            (n,) = struct.unpack(end + "q", head)
            nbytes = n * st.stype.itemsize
            left = budget.file_size - f.tell()  # the real bytes, never the declared count
            if n < 0 or nbytes > left:
                raise ModelFormatError(f"{path}: storage {_short(key)} claims {n:,} elements ({nbytes:,} bytes) but "
                                       f"{max(left, 0):,} bytes are left in the file (truncated or corrupt)")
            budget.charge(nbytes, f"storage {_short(key)}")
            st._set(data=f.read(nbytes), numel=n)
            if len(st.data) < nbytes:
                raise ModelFormatError(f"{path}: truncated legacy torch file (storage {_short(key)}: "
                                       f"{len(st.data)} of {nbytes} bytes)")
        for v, root, off in views:  # a view shares its root's bytes (no copy: many views cost nothing)
            if root.data is None:
                raise ModelFormatError(f"{path}: storage view of a missing storage")
            isz = root.stype.itemsize
            if off + v.numel > root.numel:
                raise ModelFormatError(f"{path}: storage view out of bounds")
            v._set(data=memoryview(root.data)[off * isz:(off + v.numel) * isz])
    missing = [k for k, s in storages.items() if s.data is None]
    if missing:
        raise ModelFormatError(f"{path}: storages {_short(missing)} have no data (truncated file)")
    return obj, "little" if little else "big"


def _materialize(t: _TensorRef, byteorder: str, path: str, name: str, budget: LoadBudget) -> npt.NDArray[Any]:
    st = t.storage
    if st.data is None:
        raise ModelFormatError(f"{path}: tensor '{name}': storage {_short(st.key)} has no data")
    dt = st.stype.dtype
    isz = st.stype.itemsize
    numel = min(st.numel, len(st.data) // isz)
    size, stride, off = t.size, t.stride, t.offset  # checked by _rebuild_tensor: ranks, ranges
    count = math.prod(size)  # Python ints: no int64 wrap
    # what the array costs once expanded (a zero stride repeats one element); bfloat16 is read as float32
    budget.charge(count * (4 if dt == "bf16" else isz), f"tensor '{name}' (size {_short(size)}, {count:,} elements)")
    end = "<" if byteorder == "little" else ">"
    if dt == "bf16":
        base = np.frombuffer(st.data, dtype=end + "u2", count=numel)
    elif dt == "b1":
        base = np.frombuffer(st.data, dtype=np.bool_, count=numel)
    else:
        base = np.frombuffer(st.data, dtype=np.dtype(end + dt if isz > 1 else dt), count=numel)
    if count == 0:
        if math.prod(max(n, 1) for n in size) >= _MAX_INDEX:
            raise ModelFormatError(f"{path}: tensor '{name}': impossible size {_short(size)}")
        arr = np.zeros(size, dtype=base.dtype)
    else:
        last = off + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= numel:
            raise ModelFormatError(
                f"{path}: tensor '{name}' (size {size}, stride {stride}, offset {off}) reaches element {last} but its "
                f"storage holds {numel}: the storage is shorter than the tensor claims (corrupt file)")
        arr = np.lib.stride_tricks.as_strided(base[off:], shape=size,
                                              strides=[s * isz if n > 1 else 0 for n, s in zip(size, stride)],
                                              writeable=False).copy()
    if dt == "bf16":
        arr = from_bf16(arr)
    return arr.astype(arr.dtype.newbyteorder("=")) if arr.dtype.byteorder == ">" else arr


def _convert(obj: Any, byteorder: str, path: str, budget: LoadBudget) -> Any:
    """``obj`` with every tensor reference materialised.  Each pickled object is converted ONCE (memo by
    ``id``; the graph is acyclic: :func:`_scan_pickle`): a pickle may reference one object many times
    (memo GET, DUP), and a walk by paths would expand ``t_k = (t_{k-1}, t_{k-1})`` -- 2 bytes a level --
    into 2^n objects.  The work is then bounded by the pickle's size; distinct objects are counted."""
    memo: dict[int, Any] = {}

    def conv(o: Any, name: str, depth: int) -> Any:
        if not isinstance(o, (_TensorRef, dict, list, tuple, _Frozen)):
            return o
        got = memo.get(id(o), memo)
        if got is not memo:
            return got
        if depth > 50:
            raise ModelFormatError(f"{path}: object nested too deeply")
        out: Any
        if isinstance(o, _TensorRef):
            out = _materialize(o, byteorder, path, name, budget)
        elif isinstance(o, dict):
            items = ((k, conv(v, f"{name}.{k}" if name else str(k), depth + 1)) for k, v in o.items())
            out = collections.OrderedDict(items) if isinstance(o, collections.OrderedDict) else dict(items)
        elif isinstance(o, (list, tuple)):
            out = type(o)(conv(v, f"{name}[{i}]", depth + 1) for i, v in enumerate(o))
        else:
            raise ModelFormatError(f"{path}: '{_short(name)}' is a bare storage/type object, not a tensor")
        memo[id(o)] = out
        budget.items(len(memo), "objects in the pickle")
        return out

    return conv(obj, "", 0)


def is_torch_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` starts like a torch.save file (zip or legacy pickle)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_torch_file(path: str | os.PathLike[str]) -> Any:
    """The object stored by ``torch.save`` with every tensor as a numpy array (no torch needed).

    Whatever the content, a bad file raises a :class:`~fastrnn.errors.FastRNNError` naming it, and the
    memory spent is bounded by :class:`~fastrnn.io.budget.LoadBudget` (the file's real size)."""
    path = os.fspath(path)
    with file_errors(path):
        path = check_path(path)
        return _read(path, LoadBudget.for_file(path))


def _read(path: str, budget: LoadBudget) -> Any:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise ModelFormatError(f"{path}: cannot read ({e})") from None
    if head.startswith(b"PK"):
        obj, order = _read_zip(path, budget)
    elif head[:1] == b"\x80":
        obj, order = _read_legacy(path, budget)
    elif len(head) >= 262 and head[257:262] == b"ustar":
        raise ModelFormatError(f"{path}: the pre-0.4 torch tar format is not supported; re-save with a recent torch")
    else:
        raise ModelFormatError(f"{path}: not a torch.save file (neither a zip archive nor a legacy torch pickle)")
    return _convert(obj, order, path, budget)


# --------------------------------------------------------------------------- state dict -> spec
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "module")
_RNN_TYPES = {"lstm": "LSTM", "gru": "GRU", "rnn": None, "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}
_SELECT_ALIASES = {
    "last_step": "last_step", "out[:, -1]": "last_step", "out[:,-1]": "last_step", "out[:, -1, :]": "last_step",
    "h_n_last": "h_n_last", "h_n[-1]": "h_n_last", "h[-1]": "h_n_last",
    "h_n_cat": "h_n_cat", "cat(h_n[-2], h_n[-1])": "h_n_cat",
}
_NOOPS = ("dropout", "identity")


def _is_tensor_dict(d: object) -> TypeGuard[dict[str, npt.NDArray[Any]]]:
    return isinstance(d, dict) and bool(d) and all(isinstance(k, str) for k in d) and \
        all(isinstance(v, np.ndarray) for v in d.values())


def _tensor_dicts(obj: Any, budget: LoadBudget) -> list[tuple[str, dict[str, npt.NDArray[Any]]]]:
    """``[(dotted path, dict)]`` of every dict of tensors nested in ``obj`` (dicts, lists, tuples), outermost
    first; a dict of tensors is not searched further.  Iterative: no recursion, whatever the nesting; each
    object once (shared references and cycles are not walked again)."""
    found: list[tuple[Any, dict[str, npt.NDArray[Any]]]]
    stack: list[tuple[Any, Any]]  # (where, object); where: None or (parent's where, key)
    visited: set[int]
    items: Iterable[tuple[Any, Any]]
    found, stack, seen, visited = [], [(None, obj)], 0, set()
    while stack:
        where, o = stack.pop()  # where: None (the top) or (parent's where, key): joined only when found
        if id(o) in visited:  # an object held twice (a DAG): searched once, at its first path
            continue
        visited.add(id(o))
        seen += 1
        if not seen & 0xFFF:
            budget.items(seen, "nested containers")
        if isinstance(o, dict):
            if o and all(isinstance(v, np.ndarray) for v in o.values()) and all(isinstance(k, str) for k in o):
                found.append((where, o))
                continue
            items = o.items()
        elif isinstance(o, (list, tuple)):
            items = enumerate(o)
        else:
            continue
        kids = [((where, k), v) for k, v in items if isinstance(v, (dict, list, tuple))]
        kids.reverse()
        stack.extend(kids)
    return [(_dotted(w), o) for w, o in found]


def _dotted(where: Any) -> str:
    parts = []
    while where is not None:
        where, k = where
        parts.append(str(k))
    return ".".join(reversed(parts))


def _at_key(obj: Any, key: str, path: str) -> Any:
    """The object at ``key`` in ``obj``: a top-level key, or a dotted path ``"a.b.0"`` (a key holding dots
    is matched whole first)."""
    walked: list[str]
    o, rest, walked = obj, key, []
    while rest:
        if isinstance(o, dict):
            cut = next((i for i in [len(rest)] + [i for i in range(len(rest) - 1, 0, -1) if rest[i] == "."]
                        if rest[:i] in o), None)
            if cut is None:
                near = ", ".join(_short(k, 60) for k in list(o)[:12])
                raise ConversionError(f"{path}: key={key!r}: no {rest!r} under "
                                      f"{'.'.join(walked) or 'the top level'} (keys: {near})")
            walked.append(rest[:cut])
            o, rest = o[rest[:cut]], rest[cut + 1:]
        elif isinstance(o, (list, tuple)):
            head, _, rest2 = rest.partition(".")
            if not head.isdigit() or int(head) >= len(o):
                raise ConversionError(f"{path}: key={key!r}: {'.'.join(walked)} is a list of {len(o)}; "
                                      f"{head!r} is not an index in it")
            walked.append(head)
            o, rest = o[int(head)], rest2
        else:
            raise ConversionError(f"{path}: key={key!r}: {'.'.join(walked)} is a {type(o).__name__}, not a dict")
    return o


def _state_dict(obj: Any, path: str, key: str | None = None,
                budget: LoadBudget | None = None) -> dict[str, npt.NDArray[Any]]:
    """The state dict in a loaded object: ``obj`` itself when it is a dict of tensors; else the one dict
    of tensors nested in it (under ``key``, a key or dotted path, when given); several: the one under a
    usual checkpoint name at the top level (``state_dict``, ``model_state_dict``...), else an error
    listing their dotted paths."""
    budget = budget or LoadBudget(path, 0)
    if key is not None:
        if not isinstance(key, str) or not key:
            raise ArgumentTypeError(f"key must be a non-empty str (a key or a dotted path), got {key!r:.60}")
        obj = _at_key(obj, key, path)
        if not _is_tensor_dict(obj):
            raise ConversionError(f"{path}: key={key!r} holds a {type(obj).__name__}, not a dict of tensors")
    if _is_tensor_dict(obj):
        sd = dict(obj)
    else:
        found = _tensor_dicts(obj, budget)
        top = [(w, d) for w, d in found if isinstance(obj, dict) and w in _WRAPPERS and obj.get(w) is d]
        if len(found) == 1 or (len(found) > 1 and len(top) == 1):
            sd = dict((top or found)[0][1])
        elif found:
            shown = ", ".join(_short(w, 80) for w, _ in found[:20]) + (" ..." if len(found) > 20 else "")
            raise ConversionError(f"{path}: holds {len(found)} dicts of tensors ({shown}); name the one to load "
                                  f"with key=, e.g. key={found[0][0]!r} (command line: --state-key {found[0][0]})")
        elif isinstance(obj, dict):
            keys = ", ".join(_short(k, 80) for k in list(obj)[:12])
            raise ModelFormatError(f"{path}: holds no dict of tensors (a state dict), nested or not (keys: {keys})")
        else:
            raise ModelFormatError(f"{path}: holds a {type(obj).__name__}, not a state dict; save "
                                   "model.state_dict() with torch.save")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _float(a: npt.NDArray[Any], key: str, budget: LoadBudget) -> npt.NDArray[np.float32]:
    if a.dtype.kind not in "fiub":
        raise ConversionError(f"tensor '{key}' has dtype {a.dtype}; weights must be real numbers")
    if a.dtype != np.float32 or not a.flags.c_contiguous:  # a copy: charged like the tensor itself
        budget.charge(a.size * 4, f"tensor '{_short(key)}' as float32")
    return np.ascontiguousarray(a, dtype=np.float32)


class _Dict:
    """The state dict with use tracking; ``float(key)``: a tensor as float32, charged to the load's budget."""

    used: set[str]

    def __init__(self, sd: dict[str, npt.NDArray[Any]], budget: LoadBudget) -> None:
        self.sd, self.used, self.budget = sd, set(), budget

    def float(self, key: str) -> npt.NDArray[np.float32]:
        return _float(self.sd[key], key, self.budget)

    def sub(self, prefix: str) -> dict[str, str]:
        p = f"{prefix}." if prefix else ""
        out = {k[len(p):]: k for k in self.sd if k.startswith(p)}
        return out

    def take(self, prefix: str, names: Sequence[str], where: str,
             optional: Sequence[str] = ()) -> dict[str, npt.NDArray[np.float32]]:
        p = f"{prefix}." if prefix else ""
        out = {}
        for n in names:
            k = p + n
            if k in self.sd:
                out[n] = self.float(k)
                self.used.add(k)
            elif n not in optional:
                near = sorted(self.sub(prefix))[:8]
                raise ConversionError(f"{where}: state dict has no '{k}'" +
                                      (f" (keys under '{prefix}': {near})" if near else
                                       f" (no key starts with '{p}'; keys: {sorted(self.sd)[:12]})"))
        return out


# What ``architecture=`` takes (see the module docstring): None, a cell name, a list of layer entries
# (or ``{"layers": [...]}``, a ModelSpec JSON header), or that as JSON text / a path to a .json file.
Architecture = Union[None, str, "os.PathLike[str]", Sequence[Mapping[str, Any]], Mapping[str, Any]]


def _parse_arch(architecture: Architecture, path: str) -> str | list[Any] | dict[str, Any]:
    a = architecture
    if isinstance(a, (str, os.PathLike)):
        s = os.fspath(a)
        if s.strip().lower() in _RNN_TYPES:
            return s.strip().lower()
        if s.lstrip().startswith(("[", "{")):
            try:
                a = json.loads(s)
            except ValueError as e:
                raise ConversionError(f"architecture: invalid JSON ({e})") from None
        elif os.path.isfile(s):
            try:
                with open(s) as f:
                    a = json.load(f)
            except (OSError, ValueError) as e:
                raise ConversionError(f"architecture file {s}: {e}") from None
        else:
            raise ConversionError(f"architecture {s!r}: not one of {sorted(_RNN_TYPES)}, JSON, or a JSON file")
    if isinstance(a, ModelSpec):
        raise ConversionError("architecture: pass the ModelSpec JSON header (dict with 'format' and 'layers'), "
                              "not a ModelSpec object")
    if isinstance(a, dict) and "format" in a:
        return a
    if isinstance(a, dict) and "layers" in a:
        a = a["layers"]
    if isinstance(a, dict):
        a = [a]
    if not isinstance(a, (list, tuple)):
        raise ConversionError(f"architecture must be a list of layer entries, got {type(a).__name__}")
    return list(a)


def _infer_single_rnn(d: _Dict, where: str, mode: str | None = None,
                      path: str = "") -> tuple[str, RNNDesc, dict[str, npt.NDArray[np.float32]]]:
    prefixes = {k.rsplit(".", 1)[0] if "." in k else "" for k in d.sd}
    if len(prefixes) != 1:
        groups = sorted(prefixes)
        raise ConversionError(
            f"{path}: the state dict is not a single nn.RNN/LSTM/GRU (module prefixes: {_short(groups, 400)}); "
            "describe the model with architecture=[...], e.g. [{'type': 'embedding', 'key': 'emb'}, "
            "{'type': 'lstm', 'key': 'rnn'}, {'type': 'last_step'}, {'type': 'linear', 'key': 'fc'}] "
            "(see fastrnn.io.torch_file)")
    prefix = prefixes.pop()
    p = f"{prefix}." if prefix else ""
    tensors = {k[len(p):]: d.float(k) for k in d.sd}
    desc = rnn_desc_from_tensors(tensors, where + (f" ('{prefix}')" if prefix else ""), mode)
    return prefix, desc, tensors


def _check(where: str, given: object, got: object, what: str) -> None:
    if given is not None and given != got:
        raise ConversionError(f"{where}: architecture says {what}={given!r} but the tensors give {got!r}")


def _pieces_from_arch(arch: Sequence[Any], d: _Dict, path: str) -> list[Piece]:
    pieces = []
    for i, e in enumerate(arch):
        if isinstance(e, str):
            e = {"type": e}
        if not isinstance(e, dict) or "type" not in e:
            raise ConversionError(f"architecture[{i}]: an entry must be a dict with a 'type' (or a string)")
        e = dict(e)
        t = str(e.pop("type")).strip()
        tl = t.lower()
        key = e.pop("key", None)
        where = f"architecture[{i}] ({t}{', key ' + repr(key) if key is not None else ''})"
        name = key if key else t
        if tl == "embedding":
            tens = d.take(key or "", ["weight"], where)
            pieces.append(Piece("embedding", name, tens, where=where))
            _check(where, e.pop("num_embeddings", None), tens["weight"].shape[0], "num_embeddings")
            _check(where, e.pop("embedding_dim", None), tens["weight"].shape[1], "embedding_dim")
        elif tl in _RNN_TYPES:
            mode = _mode(tl, _RNN_TYPES[tl], e, where, "rnn", "nn.RNN")
            names = d.sub(key or "")
            rnn_names = {n: k for n, k in names.items() if "." not in n}
            if not rnn_names:
                p = f"{key}." if key else ""
                raise ConversionError(f"{where}: state dict has no '{p}weight_ih_l0' (no recurrent parameters under "
                                      f"'{key or ''}'; keys: {sorted(d.sd)[:12]})")
            tensors = {n: d.float(k) for n, k in rnn_names.items()}
            desc = rnn_desc_from_tensors(tensors, where, mode)
            d.used.update(rnn_names.values())
            for f in ("num_layers", "bidirectional", "proj_size", "input_size", "hidden_size", "bias"):
                _check(where, e.pop(f, None), getattr(desc, f), f)
            bf = e.pop("batch_first", None)
            desc.batch_first = None if bf is None else bool(bf)
            e.pop("dropout", None)
            pieces.append(Piece("rnn", name, tensors, rnn=desc, where=where))
        elif tl in CELL_MODES:
            mode = _mode(tl, CELL_MODES[tl], e, where, "rnn_cell", "nn.RNNCell")
            tens = d.take(key or "", ["weight_ih", "weight_hh", "bias_ih", "bias_hh"], where,
                          optional=("bias_ih", "bias_hh"))
            piece = cell_piece(tens, mode, name, where)
            for f in ("input_size", "hidden_size", "bias"):
                _check(where, e.pop(f, None), getattr(piece.rnn, f), f)
            pieces.append(piece)
        elif tl in ("linear", "dense"):
            act = e.pop("activation", None) or "linear"
            tens = d.take(key or "", ["weight", "bias"], where, optional=("bias",))
            pieces.append(Piece("linear", name, tens, where=where))
            if act != "linear":
                _act_ok(act, where)
                pieces.append(Piece("act", f"{name}.activation", act=act, where=where))
        elif tl == "activation" or tl in ACTIVATIONS or tl in AXIS_ACTIVATIONS:
            act = e.pop("activation", None) if tl == "activation" else tl
            _act_ok(act, where)
            pieces.append(Piece("act", act if tl != "activation" else "activation", act=act, where=where))
        elif tl in _NOOPS:
            e.pop("p", None)
        elif t in _SELECT_ALIASES or tl in _SELECT_ALIASES:
            sel = _SELECT_ALIASES.get(t) or _SELECT_ALIASES[tl]
            prev_rnn = next((p for p in reversed(pieces) if p.tag == "rnn"), None)
            if sel == "last_step":
                pieces.append(Piece("select", "last_step", select="last_step", where=where))
            else:
                if prev_rnn is None:
                    raise ConversionError(f"{where}: needs a recurrent entry before it")
                assert prev_rnn.rnn is not None  # an "rnn" piece always holds its RNNDesc
                bi = prev_rnn.rnn.bidirectional
                dirs: tuple[str, ...]
                if sel == "h_n_last":
                    dirs = ("bwd",) if bi else ("fwd",)
                else:
                    if not bi:
                        raise ConversionError(f"{where}: h_n_cat needs a bidirectional recurrent module "
                                              "(use h_n_last for a unidirectional one)")
                    dirs = ("fwd", "bwd")
                pieces.append(Piece("select", sel, select="final", dirs=dirs, where=where))
        else:
            raise UnsupportedLayerError(
                f"{where}: unknown type {t!r} (known: embedding, lstm, gru, rnn, rnn_tanh, rnn_relu, lstm_cell, "
                f"gru_cell, rnn_cell, linear, "
                f"activation, <activation name>, dropout, identity, {', '.join(sorted(set(_SELECT_ALIASES)))})")
        if e:
            raise ConversionError(f"{where}: unknown field(s) {sorted(e)}")
    return pieces


def _mode(tl: str, mode: str | None, e: dict[str, Any], where: str, plain: str, cls: str) -> str:
    """The recurrent mode of an entry: ``mode``, or for type ``plain`` (an nn.RNN / nn.RNNCell) the one its
    required "nonlinearity" field names (tanh and relu weights look alike)."""
    nl = e.pop("nonlinearity", None)
    if tl == plain:
        if nl not in ("tanh", "relu"):
            raise ConversionError(f"{where}: an {cls} entry needs \"nonlinearity\": \"tanh\" or \"relu\" "
                                  "(it cannot be inferred from the weights)")
        return "RNN_TANH" if nl == "tanh" else "RNN_RELU"
    if nl is not None:
        raise ConversionError(f"{where}: 'nonlinearity' only applies to type '{plain}'")
    assert mode is not None  # only the plain types (rnn, rnn_cell) map to None, handled above
    return mode


def _act_ok(act: object, where: str) -> None:
    if act not in ACTIVATIONS + AXIS_ACTIVATIONS:
        raise UnsupportedLayerError(f"{where}: activation {act!r} is not supported "
                                    f"(supported: {', '.join(ACTIVATIONS + AXIS_ACTIVATIONS)})")


def reader_options(options: dict[str, Any], path: str, what: str) -> tuple[bool, str | None]:
    """``(strict, key)`` of the state-dict readers (torch, safetensors, npz files); any other option is
    refused (:func:`fastrnn.io.detect.refuse_options`)."""
    strict = options.pop("strict", True)
    key = options.pop("key", None)
    refuse_options(options, path, what, "architecture=, strict=, key= and weights=")
    return strict, key


def spec_from_torch_file(path: str | os.PathLike[str], architecture: Architecture = None, **options: Any) -> ModelSpec:
    """Build a :class:`ModelSpec` from a ``torch.save`` file without torch (see the module docstring).

    Options: ``strict`` (default True: every state-dict tensor must be used by the architecture),
    ``key`` (the key or dotted path of the state dict inside a checkpoint holding several).
    """
    path = os.fspath(path)
    strict, key = reader_options(options, path, "a PyTorch file")
    with file_errors(path):  # whatever the content: a FastRNNError naming the file
        path = check_path(path)
        budget = LoadBudget.for_file(path)
        return spec_from_tensors(_read(path, budget), architecture, strict, path, budget, key=key,
                                 meta={"framework": "torch", "source_file": os.path.basename(path)})


def spec_from_tensors(obj: Any, architecture: Architecture, strict: bool, origin: str, budget: LoadBudget,
                      key: str | None = None, meta: dict[str, Any] | None = None) -> ModelSpec:
    """The one state dict -> spec path of every container (torch files, safetensors, npz, in-memory dicts):
    ``obj`` holds numpy arrays (a state dict, or a checkpoint nesting one: see :func:`_state_dict`);
    ``origin`` names it in messages; every float32 copy is charged to ``budget``."""
    sd = _state_dict(obj, origin, key, budget)
    path = origin
    meta = dict(meta or {"framework": "torch"})
    d = _Dict(sd, budget)
    arch = None if architecture is None else _parse_arch(architecture, path)
    if isinstance(arch, dict):  # a fastrnn ModelSpec JSON referring to state-dict keys
        spec, tensors = _spec_from_json_arch(arch, d)
        d.used.update(tensors)
        _leftovers(d, strict, path)
        spec.source = spec.source or "torch"
        spec.metadata = {**meta, **spec.metadata}
        return spec
    if arch is None or isinstance(arch, str):
        mode = None if arch is None else _RNN_TYPES[arch]
        if arch == "rnn":
            raise ConversionError("architecture='rnn' is ambiguous: say 'rnn_tanh' or 'rnn_relu'")
        prefix, desc, tensors = _infer_single_rnn(d, "state dict", mode, path)
        d.used.update(sd)
        pieces = [Piece("rnn", prefix or desc.mode.split("_")[0].lower(), tensors, rnn=desc, where=path)]
        meta["inferred_architecture"] = True
    else:
        pieces = _pieces_from_arch(arch, d, path)
        _leftovers(d, strict, path)
    return build_spec(pieces, "torch", meta)


def _spec_from_json_arch(arch: dict[str, Any], d: _Dict) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """A ModelSpec JSON given as ``architecture=`` (untrusted: user JSON), checked by the validator of the
    ``.fastrnn`` header (:func:`fastrnn.io.native._check_spec_header`) before anything walks it; every
    problem is the argument's: ``ConversionError("architecture: ...")``."""
    from .native import _check_spec_header

    problems = _check_spec_header(arch)
    if problems:
        raise ConversionError("architecture: bad ModelSpec JSON: " + "; ".join(problems))
    for i, layer in enumerate(arch["layers"]):
        missing = sorted(set(layer.get("tensors", {}).values()) - set(d.sd))
        if missing:
            raise ConversionError(f"architecture: layer {i} ({layer['kind']}) refers to {_short(missing, 200)}, "
                                  f"not in the state dict (keys: {_short(sorted(d.sd)[:12], 400)})")
    tensors = {k: d.float(k) for l in arch["layers"] for k in l.get("tensors", {}).values()}
    try:
        return ModelSpec.from_core(arch, tensors), tensors
    except (FastRNNError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise ConversionError(f"architecture: {e}") from None


def _leftovers(d: _Dict, strict: bool, path: str) -> None:
    left = sorted(set(d.sd) - d.used)
    if left and strict:
        raise ConversionError(f"{path}: state-dict entries not used by the architecture: {', '.join(left[:20])}"
                              f"{' ...' if len(left) > 20 else ''} (wrong architecture? pass strict=False to ignore)")
