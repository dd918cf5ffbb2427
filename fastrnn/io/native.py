"""The native ``.fastrnn`` file: save and load a :class:`~fastrnn.spec.ModelSpec` (no pickle, numpy only).

Layout (a valid `safetensors <https://github.com/huggingface/safetensors>`_ file)::

    [0:8)        N, the header length: unsigned 64-bit little-endian
    [8:8+N)      the header: UTF-8 JSON, right-padded with spaces so that 8 + N is a multiple of 64
    [8+N:)       the data section: tensors as raw little-endian values, each starting 64-byte aligned

The header maps every tensor name to ``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}``
(offsets relative to the start of the data section, ``end - begin == prod(shape) * itemsize``) and holds
``"__metadata__": {"format": "fastrnn", "fastrnn_format_version": "1", "spec": "<JSON>"}`` where
``spec`` is the header of :meth:`ModelSpec.to_core` (layer kinds, sizes, options and the names of
their tensors).  safetensors requires metadata values to be strings, hence the JSON in a string.

Versions: ``1`` holds float32 tensors only.  ``2`` adds reduced-precision recurrent weights
(:mod:`fastrnn.quantize`): ``BF16`` (bfloat16, read as uint16 bit patterns) and ``I8`` matrices, the
``F32`` row scales of the int8 ones (``<direction>.w_ih_scale``...), and ``"precision"`` in every
recurrent layer of the model description.  ``3`` adds the recurrent options (ONNX's ``clip``,
``input_forget``, ``gate_activations`` in the layer's description; the ``F32`` tensors
``<direction>.peephole`` and the default initial state ``<direction>.h0`` / ``.c0``) and several
outputs (``layer_inputs``, ``outputs`` and ``output_structure`` in the model description: see
:mod:`fastrnn.spec`, "Several outputs").  The writer writes the lowest version that holds the model
(:attr:`ModelSpec.format_version`: 1 whenever every layer is float32 without options or several
outputs), so older fastrnn keeps reading the models it can run; a file of a version newer than this
reader is refused with an "upgrade fastrnn" message.

safetensors also requires the data section to be covered by tensors without holes, so the bytes
that align the next tensor to 64 are declared as a padding entry ``"__pad__.<k>"`` (dtype ``U8``,
shape ``[n]``, zeros).  Readers ignore ``__pad__.*`` entries; tools that list every tensor
(``safetensors.numpy.load_file``) show them as small uint8 arrays.

Reading with numpy alone::

    n = int.from_bytes(raw[:8], "little"); header = json.loads(raw[8:8 + n])
    b, e = header["layers.0.forward.w_ih"]["data_offsets"]
    w = np.frombuffer(raw, "<f4", (e - b) // 4, 8 + n + b).reshape(header[...]["shape"])

:func:`load_spec` checks everything before trusting a byte: size, header length, JSON, format
name and version, dtype (``F32``; from version 2 also ``BF16`` / ``I8``; ``U8`` for padding), shapes, offsets in bounds, sizes,
no overlap and no hole; then :meth:`ModelSpec.from_core` and ``validate`` check the model itself.
Before parsing the JSON and before building anything it charges what the header implies against
the file's :class:`~fastrnn.io.budget.LoadBudget` (4 x the real file size + 64 MiB): the parse
(per JSON token and byte), the data section, and what the core will allocate for each layer
(copies and 32-row packed panels of every weight matrix, a zero bias for a Dense layer without
one); at most ``spec.MAX_LAYERS`` layers.  Zero-sized Embedding / Dense dimensions are refused.
Every problem is a :class:`~fastrnn.errors.ModelFormatError` naming the file.

:func:`dumps_spec` / :func:`loads_spec` give and take the same bytes in memory (what ``pickle`` of a
:class:`~fastrnn.Model` carries); they share the writer and the reader, with every check, with
:func:`save_spec` / :func:`load_spec`.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Any, Callable, Mapping, Union

import numpy as np

from ..errors import ArgumentTypeError, FastRNNError, ModelFormatError
from ..spec import (MAX_LAYERS, ActivationSpec, DenseSpec, EmbeddingSpec, LastStepSpec, MaskingSpec, ModelSpec,
                    RecurrentSpec)
from .budget import LoadBudget

__all__ = ["FILE_FORMAT_VERSION", "FORMAT_NAME", "ALIGNMENT", "MAX_HEADER_BYTES", "save_spec", "load_spec",
           "dumps_spec", "loads_spec", "is_native_file", "read_header", "read_safetensors_header"]

# {name: (dtype, shape, begin, end)} of a checked header; the builder of the error naming the origin
Entries = dict[str, tuple[np.dtype[Any], tuple[int, ...], int, int]]
Bad = Callable[[str], ModelFormatError]
Chunks = list[Union[np.ndarray, int]]  # arrays, and padding sizes
Dtypes = Mapping[str, tuple[np.dtype[Any], int]]

FORMAT_NAME = "fastrnn"
FILE_FORMAT_VERSION = 3  # the newest this reads; bump when a reader of this version could misread a newer file
ALIGNMENT = 64  # data section start and every tensor
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
MAX_RANK = 8
PAD_PREFIX = "__pad__."
# dtype name -> (numpy dtype, bytes per element), per file version.  Version 1: float32 only.  Version 2
# adds the stored matrices of bf16 / int8 layers (BF16 is read as its uint16 bit patterns; which
# tensor may have which dtype is ModelSpec.from_core's and validate's check).  F16/F64 would need a
# conversion policy and are refused.  U8 is accepted only for padding entries.
_F32: Dtypes = {"F32": (np.dtype("<f4"), 4)}
_TENSOR_DTYPES: dict[int, Dtypes] = {1: _F32, 2: {**_F32, "BF16": (np.dtype("<u2"), 2), "I8": (np.dtype("i1"), 1)}}
_TENSOR_DTYPES[3] = _TENSOR_DTYPES[2]  # version 3 (recurrent options, several outputs) adds no tensor type
_DTYPE_NAMES = {np.dtype("<f4"): "F32", np.dtype("<u2"): "BF16", np.dtype("i1"): "I8"}
_PAD_DTYPES: Dtypes = {"U8": (np.dtype("u1"), 1)}

_LAYER_CLASSES: dict[str, type] = {c.kind: c for c in (EmbeddingSpec, MaskingSpec, DenseSpec, ActivationSpec, LastStepSpec)}
# Parsing a JSON header costs at most JSON_BYTES_PER_TOKEN per '{', '[', ',' or ':' (containers and
# their slots; "[{},{},...]" measured 48 per token) plus JSON_BYTES_PER_BYTE per byte (the raw bytes,
# the decoded text, the spec string inside it and the strings in the spec: 13 at worst, astral text).
JSON_BYTES_PER_TOKEN = 64
JSON_BYTES_PER_BYTE = 16
PANEL_ROWS = 32  # the core packs every weight matrix in panels of 32 rows (src/fastrnn/cpu/kernels.h kPanel)
# bf16 / int8 matrices: one copy, rows padded to QPAD elements and the row count to QROWS
# (src/fastrnn/cpu/kernels.h kQPad, kQRows)
QPAD, QROWS = 64, 4
_SCALAR_TYPES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}


# --------------------------------------------------------------------------------- writing
def _json_default(o: object) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _pad(n: int) -> int:
    return (-n) % ALIGNMENT


def _layout(spec: ModelSpec) -> tuple[bytes, Chunks]:
    """(header bytes, [(array or padding size, ...)]) for ``spec``."""
    core_header, tensors = spec.to_core()
    try:
        spec_json = json.dumps(core_header, separators=(",", ":"), default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"cannot save the model: its description is not JSON-serializable ({e}); "
                               "spec.metadata must hold only JSON values (str, numbers, bools, lists, dicts)") from None
    # the file's version is the model description's: 1 for a float32 model (ModelSpec.format_version)
    header: dict[str, Any] = {"__metadata__": {"format": FORMAT_NAME, "fastrnn_format_version": str(core_header["format"]),
                               "spec": spec_json}}
    chunks: Chunks = []
    offset = 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)  # little-endian on any host
        header[name] = {"dtype": _DTYPE_NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        chunks.append(a)
        offset += a.nbytes
        pad = _pad(offset)
        if pad:
            header[f"{PAD_PREFIX}{len(chunks)}"] = {"dtype": "U8", "shape": [pad], "data_offsets": [offset, offset + pad]}
            chunks.append(pad)
            offset += pad
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * _pad(8 + len(raw))
    return raw, chunks


def _check_spec(spec: object, fn: str) -> None:
    if not isinstance(spec, ModelSpec):
        raise ArgumentTypeError(f"{fn}() takes a ModelSpec, got {type(spec).__name__}")


def _write(f: io.BufferedIOBase, header: bytes, chunks: Chunks) -> None:
    """The one writer: length, header, tensors and padding, to a binary file object."""
    f.write(len(header).to_bytes(8, "little"))
    f.write(header)
    for c in chunks:
        # (numpy's stubs give ndarray the buffer protocol on Python >= 3.12 only)
        f.write(bytes(c) if isinstance(c, int) else memoryview(c).cast("B"))  # type: ignore[arg-type]


def save_spec(spec: ModelSpec, path: str | os.PathLike[str]) -> None:
    """Write ``spec`` to ``path`` atomically: a temporary file in the same directory, fsync, rename.

    On any error the temporary file is removed and an existing ``path`` is left untouched.
    """
    _check_spec(spec, "save_spec")
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise ArgumentTypeError(f"save_spec() takes a path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    header, chunks = _layout(spec)
    import uuid

    tmp = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "xb") as f:
            _write(f, header, chunks)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def dumps_spec(spec: ModelSpec) -> bytes:
    """The bytes :func:`save_spec` would write for ``spec`` (same writer); read back with :func:`loads_spec`."""
    _check_spec(spec, "dumps_spec")
    header, chunks = _layout(spec)
    buf = io.BytesIO()
    _write(buf, header, chunks)
    return buf.getvalue()


def _fsync_dir(d: str) -> None:
    try:  # make the rename durable (POSIX); not possible / not needed everywhere
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------- reading
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_native_file(path: str | os.PathLike[str]) -> bool:
    """Cheap sniff: a safetensors-style prefix (sane header length, then ``{``).  :func:`load_spec`
    then tells a fastrnn file from another safetensors file (no fastrnn metadata)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{"


def read_header(path: str | os.PathLike[str], _f: io.BufferedIOBase | None = None) -> tuple[dict[str, Any], Entries, int, int]:
    """Parse and check the header of a ``.fastrnn`` file without reading any tensor data.

    Returns ``(spec_header: dict, entries: {name: (dtype, shape, begin, end)}, data_start, file_size)``
    (padding entries excluded).  Raises :class:`ModelFormatError` naming the file and the problem.
    """
    path = os.fspath(path)
    if _f is not None:
        return _parse_header(_f, os.fstat(_f.fileno()).st_size, path)
    with open(path, "rb") as f:
        return _parse_header(f, os.fstat(f.fileno()).st_size, path)


def _parse_header(f: io.BufferedIOBase, size: int, path: str,
                  budget: LoadBudget | None = None) -> tuple[dict[str, Any], Entries, int, int]:
    """The one header reader (files and bytes): ``f`` positioned at 0, ``size`` its true size in bytes,
    ``path`` the name used in messages; ``budget`` (a :class:`LoadBudget`, by default one for ``size``
    bytes) is charged for parsing the JSON before it is parsed.  See :func:`read_header`."""
    budget = budget if budget is not None else LoadBudget(path, size)

    def bad(msg: str) -> ModelFormatError:
        return ModelFormatError(f"{path}: {msg}")

    header, data_start = _json_header(f, size, budget, bad, "a fastrnn model file")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise bad("a safetensors-style file without fastrnn metadata (__metadata__.format != 'fastrnn'): "
                  "not a fastrnn model; convert the original Keras/PyTorch model with `fastrnn convert`")
    ver = meta.get("fastrnn_format_version")
    try:
        ver = int(ver) if isinstance(ver, (str, int)) and not isinstance(ver, bool) else None
    except ValueError:
        ver = None
    if ver is None or ver < 1:
        raise bad(f"bad fastrnn_format_version {meta.get('fastrnn_format_version')!r} in the metadata")
    if ver > FILE_FORMAT_VERSION:
        raise bad(f"written by a newer fastrnn (format version {ver}; this fastrnn reads versions up to "
                  f"{FILE_FORMAT_VERSION}); upgrade fastrnn (pip install -U fastrnn) or re-export the model "
                  "with this version")
    spec_json = meta.get("spec")
    if not isinstance(spec_json, str):
        raise bad("the metadata has no 'spec' string (the model description)")
    try:
        spec_header = json.loads(spec_json, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as e:
        raise bad(f"the model description (__metadata__.spec) is not valid JSON ({e})") from None
    if not isinstance(spec_header, dict):
        raise bad("the model description (__metadata__.spec) is not a JSON object")
    entries = _tensor_entries(header, data_start, size, bad, _TENSOR_DTYPES[ver], _PAD_DTYPES)
    return spec_header, entries, data_start, size


def read_safetensors_header(f: io.BufferedIOBase, size: int, path: str, budget: LoadBudget,
                            dtypes: Dtypes) -> tuple[Entries, int]:
    """The header of a plain safetensors file (any ``__metadata__`` of strings, tensors of ``dtypes``:
    {name: (numpy dtype, bytes per element)}), with every check of :func:`read_header`:
    ``(entries: {name: (dtype, shape, begin, end)}, data_start)``."""
    def bad(msg: str) -> ModelFormatError:
        return ModelFormatError(f"{path}: {msg}")

    header, data_start = _json_header(f, size, budget, bad, "a safetensors file")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict):
        raise bad("__metadata__ is not a JSON object")
    return _tensor_entries(header, data_start, size, bad, dtypes, {}), data_start


def _json_header(f: io.BufferedIOBase, size: int, budget: LoadBudget, bad: Bad, what: str) -> tuple[dict[str, Any], int]:
    """The length-prefixed JSON object at the start of ``f`` (budget charged before parsing)."""
    if size < 8:
        raise bad(f"not {what}: {size} bytes, too short to hold a header "
                  "(empty or truncated file)")
    n = int.from_bytes(f.read(8), "little")
    if n > MAX_HEADER_BYTES:
        raise bad(f"not {what}: the header length field says {n} bytes "
                  f"(more than the {MAX_HEADER_BYTES} allowed)")
    if n > size - 8:
        raise bad(f"the header length field says {n} bytes but only {size - 8} follow: "
                  f"the file is truncated or not {what}")
    raw = f.read(n)
    if len(raw) != n:
        raise bad("the file is truncated (short read of the header)")
    # both parses (the header, then the model description inside it), before either runs
    tokens = sum(raw.count(c) for c in (b"{", b"[", b",", b":"))
    budget.charge(JSON_BYTES_PER_TOKEN * tokens + JSON_BYTES_PER_BYTE * n, f"parsing the {n:,}-byte header")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(f"not {what}: the header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad(f"not {what}: the header is a JSON {type(header).__name__}, not an object")
    return header, 8 + n


def _tensor_entries(header: dict[str, Any], data_start: int, size: int, bad: Bad, dtypes: Dtypes,
                    pad_dtypes: Dtypes) -> Entries:
    """Check every tensor entry of a parsed header (dtype, shape, offsets in bounds, sizes, no overlap,
    no hole): ``{name: (dtype, shape, begin, end)}``, padding entries left out."""
    data_size = size - data_start
    entries: Entries = {}
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        where = f"tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"{where}: expected an object with exactly 'dtype', 'shape', 'data_offsets'")
        pad = bool(pad_dtypes) and name.startswith(PAD_PREFIX)
        allowed = pad_dtypes if pad else dtypes
        dtype = info["dtype"]
        if not isinstance(dtype, str) or dtype not in allowed:
            raise bad(f"{where}: dtype {dtype!r} is not supported (supported: {', '.join(allowed)})")
        shape = info["shape"]
        if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_int(d) and d >= 0 for d in shape):
            raise bad(f"{where}: shape {str(shape)[:80]} must be a list of at most {MAX_RANK} non-negative ints")
        if pad and len(shape) != 1:
            raise bad(f"{where}: a padding entry must be 1-D")
        offs = info["data_offsets"]
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) for o in offs)):
            raise bad(f"{where}: data_offsets {str(offs)[:80]} must be [begin, end] ints")
        b, e = offs
        if not 0 <= b <= e:
            raise bad(f"{where}: data_offsets [{b}, {e}] are not 0 <= begin <= end")
        if e > data_size:
            raise bad(f"{where}: data_offsets [{b}, {e}] run past the end of the data section ({data_size} bytes): "
                      "the file is truncated or corrupt")
        count = 0 if 0 in shape else 1
        for d in shape if count else ():  # python ints: no overflow; stop as soon as it cannot match
            count *= d
            if count * allowed[dtype][1] > data_size:
                break
        nbytes = count * allowed[dtype][1]
        if nbytes != e - b:
            raise bad(f"{where}: shape {shape} ({dtype}) needs {nbytes} bytes but data_offsets [{b}, {e}] "
                      f"hold {e - b}")
        spans.append((b, e, name))
        if not pad:
            entries[name] = (allowed[dtype][0], tuple(shape), b, e)
    spans.sort()
    pos, prev = 0, None
    for b, e, name in spans:
        if b < pos:
            raise bad(f"tensors {prev!r} and {name!r} overlap (data_offsets end {pos} > begin {b})")
        if b > pos:
            raise bad(f"a hole of {b - pos} bytes before tensor {name!r} (data_offsets must cover the data section)")
        pos, prev = e, name
    if pos != data_size:
        raise bad(f"{data_size - pos} bytes after the last tensor: the file is corrupt or has trailing data")
    return entries


def _check_spec_header(h: Any) -> list[str]:
    """Types of the model description before the dataclasses see it (the JSON is untrusted)."""
    problems = []
    if not _is_int(h.get("format")):
        problems.append("'format' must be an int")
    if not isinstance(h.get("layers"), list):
        problems.append("'layers' must be a list")
    if h.get("input_features") is not None and not _is_int(h.get("input_features")):
        problems.append("'input_features' must be an int or null")
    if not isinstance(h.get("source", ""), str) or not isinstance(h.get("metadata", {}), dict):
        problems.append("'source' must be a string and 'metadata' an object")
    for i, d in enumerate(h.get("layers") if isinstance(h.get("layers"), list) else []):
        if not isinstance(d, dict) or not isinstance(d.get("kind"), str):
            problems.append(f"layer {i}: not an object with a string 'kind'")
            continue
        if not isinstance(d.get("tensors", {}), dict) or not all(
                isinstance(v, str) for v in d.get("tensors", {}).values()):
            problems.append(f"layer {i}: 'tensors' must map names to tensor names")
        cls = RecurrentSpec if d["kind"] in ("simple_rnn", "lstm", "gru") else _LAYER_CLASSES.get(d["kind"])
        if cls is None:
            continue  # from_core names the unknown kind
        for f in dataclasses.fields(cls):
            want = _SCALAR_TYPES.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
            if want and f.name in d:
                v = d[f.name]
                if not isinstance(v, want) or (bool not in want and isinstance(v, bool)):
                    problems.append(f"layer {i} ({d['kind']}): '{f.name}' must be {f.type}, got {v!r:.40}")
    return problems


def _build_bytes(layer: dict[str, Any], entries: Entries) -> int:
    """Bytes building ``layer`` (a checked layer of the model description) will cost, from the shapes
    and dtypes its header declares: the core copies every float32 tensor and packs every float32
    weight matrix in panels of ``PANEL_ROWS`` rows (a [1, K] matrix costs 32 x its bytes); a bf16 /
    int8 matrix is kept once, in its own element size, its rows padded to ``QPAD`` elements and their
    count to ``QROWS`` (a [N, 1] int8 matrix costs 64 x its bytes); a Dense layer without a bias gets
    a zero one.  Charged against the file's budget before anything is built."""
    shapes = {ref: (entries[t][1], entries[t][0].itemsize) for ref, t in layer.get("tensors", {}).items()
              if t in entries}
    cost = 0
    for shape, size in shapes.values():
        n = int(np.prod(shape, dtype=object))
        if len(shape) == 2 and size < 4:  # a bf16 / int8 matrix
            rows, cols = shape
            cost += size * (-(-rows // QROWS) * QROWS) * (-(-cols // QPAD) * QPAD)
            continue
        cost += size * n
        if len(shape) == 2 and layer["kind"] != "embedding":  # a weight matrix: packed panels too
            rows, cols = shape
            cost += size * cols * (-(-rows // PANEL_ROWS) * PANEL_ROWS)
    weight: tuple[int, ...] = shapes["weight"][0] if "weight" in shapes else ()
    if layer["kind"] == "dense" and "bias" not in shapes and len(weight) == 2:
        cost += 12 * weight[0]  # np.zeros (float64), then float32
    return cost


def load_spec(path: str | os.PathLike[str], mmap: bool = False) -> ModelSpec:
    """Read a ``.fastrnn`` file into a validated :class:`ModelSpec` (see the module doc for the checks).

    ``mmap=True`` maps the file read-only instead of reading it (the arrays then view the mapping).
    """
    from .detect import check_path  # a missing path: ModelFileNotFoundError; a FIFO or device: refused

    path = check_path(path)
    with open(path, "rb") as f:
        return _read_spec(f, os.fstat(f.fileno()).st_size, path, mmap)


def loads_spec(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> ModelSpec:
    """Read the bytes of a ``.fastrnn`` file (:func:`dumps_spec`, or a file's content) into a validated
    :class:`ModelSpec`: the reader and every check of :func:`load_spec`; errors name ``name``.

    ``data``: ``bytes``, ``bytearray`` or a contiguous ``memoryview``; the tensors are copied into
    64-byte aligned memory owned by the spec (``data`` is not kept).
    """
    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
        raise ArgumentTypeError(f"loads_spec() takes bytes (the content of a .fastrnn file), got {type(data).__name__}")
    mv = memoryview(data)
    if not mv.contiguous:
        raise ArgumentTypeError("loads_spec() takes a contiguous buffer")
    mv = mv.cast("B")
    with io.BytesIO(mv) as f:
        return _read_spec(f, mv.nbytes, str(name), False)


def _read_spec(f: io.BufferedIOBase, size: int, path: str, mmap: bool) -> ModelSpec:
    """The one reader (files and bytes): ``f`` a binary file object at 0 holding ``size`` bytes."""
    budget = LoadBudget(path, size)
    spec_header, entries, data_start, size = _parse_header(f, size, path, budget)
    budget.items(len(spec_header["layers"]) if isinstance(spec_header.get("layers"), list) else 0, "layers",
                 limit=MAX_LAYERS)
    problems = _check_spec_header(spec_header)
    if problems:
        raise ModelFormatError(f"{path}: bad model description: " + "; ".join(problems))
    budget.charge(size - data_start, "the data section")
    for i, d in enumerate(spec_header["layers"]):
        budget.charge(_build_bytes(d, entries), f"layer {i} ({d['kind']}: the weights the core builds)")
    if mmap and size > data_start:
        buf: np.ndarray = np.memmap(f, dtype=np.uint8, mode="r", offset=data_start, shape=(size - data_start,))
    else:
        # One read into a 64-byte aligned buffer (size is bounded by the real file size).
        store = np.empty(size - data_start + ALIGNMENT, dtype=np.uint8)
        skip = (-store.ctypes.data) % ALIGNMENT
        buf = store[skip:skip + size - data_start]
        f.seek(data_start)
        got = f.readinto(buf.data)
        if got != buf.size:
            raise ModelFormatError(f"{path}: the file is truncated (short read of the data section)")
    tensors = {name: buf[b:e].view(dt).reshape(shape) for name, (dt, shape, b, e) in entries.items()}
    try:
        spec = ModelSpec.from_core(spec_header, tensors)
    except FastRNNError as e:
        raise type(e)(f"{path}: {e}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ModelFormatError(f"{path}: bad model description ({type(e).__name__}: {e})") from None
    used = set()
    for d in spec_header["layers"]:
        used.update(d.get("tensors", {}).values())
    unused = sorted(set(entries) - used)
    if unused:
        raise ModelFormatError(f"{path}: tensor(s) not used by any layer: {', '.join(unused[:5])}")
    return spec
