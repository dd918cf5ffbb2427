"""Tell a model file's format by its content (the suffix is only a hint in messages), then read it.

=============== ================================================================================ ===================================
format          recognised by                                                                    reader
=============== ================================================================================ ===================================
``fastrnn``     u64 LE header length + ``{`` (safetensors layout, fastrnn metadata)              :func:`fastrnn.io.native.load_spec`
``keras``       zip archive holding ``config.json`` (+ ``model.weights.h5``)                     ``fastrnn.io.keras_file``
``keras_h5``    HDF5 signature ``\\x89HDF\\r\\n\\x1a\\n`` (at 0 or a 512·2^k user block)              ``fastrnn.io.keras_file``
``torch``       zip archive holding ``<dir>/data.pkl``, or a pickle (``\\x80`` + protocol)        ``fastrnn.io.torch_file``
``safetensors`` u64 LE header length + ``{`` without fastrnn metadata (a plain safetensors file) ``fastrnn.io.containers``
``npz``         zip archive whose members are all ``.npy`` arrays (``numpy.savez``)              ``fastrnn.io.containers``
``onnx``        protobuf ``ModelProto`` (no magic: ``ir_version`` field first, then another      ``fastrnn.converters.onnx``
                ModelProto field), or any other content in a ``.onnx`` file
=============== ================================================================================ ===================================

Nothing here unpickles or executes anything: sniffing reads bytes and zip directory entries only.
"""
from __future__ import annotations

import importlib
import os
import re
from typing import Any, Callable

from ..errors import (ArgumentTypeError, ModelFileNotFoundError, ModelFormatError, UnsupportedLayerError,
                      UnsupportedOptionError, file_errors)
from ..spec import ModelSpec

__all__ = ["detect_format", "spec_from_file", "check_path", "check_zip_directory", "check_zip_members",
           "read_zip_member", "MAX_DEFLATE_RATIO", "refuse_options"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_TORCH_PKL = re.compile(r"^(?:[^/]+/)?data\.pkl$")


def check_path(path: object) -> str:
    """``path`` as a str once it names a regular file (symlinks resolved), checked before anything reads
    it: a missing path raises :class:`ModelFileNotFoundError`; a directory, a FIFO (a read blocks for
    ever), a device (``/dev/zero`` reads without end) or a socket raise :class:`ModelFormatError`.  Every
    reader's :class:`~fastrnn.io.budget.LoadBudget` is the file's size on disk, which only a regular
    file has."""
    import errno
    import stat

    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"expected a path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise ModelFileNotFoundError(errno.ENOENT, "no such model file", path) from None
    except (OSError, ValueError) as e:  # permissions, a symlink loop, a NUL in the name ...
        raise ModelFormatError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISDIR(mode):
        raise ModelFormatError(
            f"{path}: is a directory, expected a model file (.fastrnn, .keras, .h5, .pt/.pth); a TensorFlow "
            "SavedModel directory is not supported: load it in Keras and save it as .keras")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode) else
                "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        link = f", through the link to {os.path.realpath(path)}" if os.path.islink(path) else ""
        raise ModelFormatError(f"{path}: not a regular file ({kind}{link}); fastrnn reads model files only")
    return path


MAX_ZIP_MEMBERS = 100_000  # far above any model archive (a .keras holds 3 members, a torch zip one per storage)
ZIP_ENTRY_BYTES = 46  # the fixed part of one central-directory entry: the least a member costs there


def check_zip_directory(path: str, max_members: int = MAX_ZIP_MEMBERS) -> None:
    """The one guard of every zip reader (torch, npz, .keras, and format detection), run before
    ``zipfile.ZipFile`` opens ``path``: refuse an archive whose central directory could hold more than
    ``max_members`` members.  zipfile builds one object per entry (10^6 members cost ~0.5 GB and
    minutes) and walks the directory by its BYTE SIZE from the end record (zip64 record included),
    never by the member count the record declares (a lie costs nothing): so the bound is on that size,
    read exactly as zipfile reads it, at :data:`ZIP_ENTRY_BYTES` bytes per entry at least."""
    import zipfile  # here, not at import: ~30 ms of imports a .fastrnn load never needs

    try:
        with open(path, "rb") as f:
            end = zipfile._EndRecData(f)  # type: ignore[attr-defined]  # noqa: SLF001 - what zipfile reads first
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return  # zipfile reports the archive as unreadable itself
    if end is None:
        return
    size = int(end[zipfile._ECD_SIZE])  # type: ignore[attr-defined]  # noqa: SLF001 (private: no stub)
    if size > max_members * ZIP_ENTRY_BYTES:
        raise ModelFormatError(
            f"{path}: a zip archive whose central directory is {size:,} bytes (room for up to "
            f"{size // ZIP_ENTRY_BYTES:,} members); model files hold far fewer (at most {max_members:,} are read): "
            "a corrupt or hostile file")


MAX_DEFLATE_RATIO = 1100  # deflate expands at most ~1032:1; more declared means a corrupt or hostile member


def check_zip_members(zf: Any, where: str, file_size: int, names: Any = None) -> None:
    """The one member-size policy of every zip reader (torch, npz, .keras), after
    :func:`check_zip_directory` and before any member is read: each member's declared sizes against the
    REAL file (``where``: the file, as messages name it).  Its compressed bytes lie inside the file; a stored member holds exactly its declared
    size; a compressed one expands at most :data:`MAX_DEFLATE_RATIO` times (deflate's own bound: more is
    a zip bomb or a lie).  ``names``: only these members (those the reader will read; default all).
    :func:`read_zip_member` then charges what it reads to the load budget."""
    import zipfile

    for info in (zf.infolist() if names is None else [zf.getinfo(n) for n in names]):
        name = repr(info.filename[:80])
        if info.header_offset + info.compress_size > file_size:
            raise ModelFormatError(f"{where}: member {name} claims {info.compress_size:,} bytes but the file has "
                                   f"{file_size:,} (corrupt or hostile zip headers)")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise ModelFormatError(f"{where}: stored member {name} claims {info.file_size:,} bytes but holds "
                                       f"{info.compress_size:,} (corrupt zip headers)")
        elif info.file_size > MAX_DEFLATE_RATIO * max(1, info.compress_size):
            raise ModelFormatError(
                f"{where}: member {name} declares {info.file_size:,} bytes from {info.compress_size:,} compressed "
                "(more than deflate's ~1032:1): a corrupt or hostile archive (a zip bomb)")


def read_zip_member(zf: Any, name: str, budget: Any, where: str, n: int | None = None) -> bytes:
    """The first ``n`` bytes (default: all) of member ``name`` of an archive :func:`check_zip_members`
    passed, charged to ``budget`` (a :class:`~fastrnn.io.budget.LoadBudget`) before the read; never
    more than the member declares, and a member shorter than it declares is refused."""
    info = zf.getinfo(name)
    n = info.file_size if n is None else min(n, info.file_size)
    budget.charge(n, f"zip member {name[:80]!r}")
    with zf.open(info) as fh:
        data: bytes = fh.read(n)
    if len(data) != n:
        raise ModelFormatError(f"{where}: member {name[:80]!r} holds {len(data):,} bytes, not the {n:,} it declares "
                               "(truncated or corrupt archive)")
    return data


def _zip_format(path: str) -> str:
    check_zip_directory(path)
    try:
        import zipfile  # here, not at import: ~30 ms of imports a .fastrnn load never needs

        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as e:
        raise ModelFormatError(f"{path}: starts like a zip archive but cannot be read as one ({e})") from None
    if "config.json" in names:
        return "keras"
    if any(_TORCH_PKL.match(n) for n in names):
        return "torch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    raise ModelFormatError(
        f"{path}: a zip archive ({shown or 'empty'}) that is neither a Keras .keras file (config.json + "
        "model.weights.h5), a PyTorch file (<dir>/data.pkl) nor a numpy .npz archive (.npy members)")


_FASTRNN_META = re.compile(rb'"format"\s*:\s*"fastrnn"')


def _native_kind(path: str) -> str:
    """``"fastrnn"`` or ``"safetensors"`` for a file with a safetensors-style prefix: fastrnn metadata
    (which fastrnn writes first) in the header's first MiB, or a ``.fastrnn`` name, says fastrnn."""
    if path.endswith(".fastrnn"):
        return "fastrnn"
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        head = f.read(min(n, 1 << 20))
    return "fastrnn" if _FASTRNN_META.search(head) else "safetensors"


def _looks_like_onnx(head: bytes) -> bool:
    """A serialized ``onnx.ModelProto``: field 1 (``ir_version``, a varint < 128) first, then another
    ModelProto field (producer_name 2 ... graph 7, opset_import 8, metadata_props 14, training_info 20,
    functions 25, configuration 26)."""
    return (len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 0x7F and
            head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA, 0xD2))


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"fastrnn" | "keras" | "keras_h5" | "torch" | "safetensors" | "npz" | "onnx"`` from the content of ``path``, else ModelFormatError."""
    from .native import is_native_file

    path = check_path(path)
    with open(path, "rb") as f:
        head = f.read(16)
        size = os.fstat(f.fileno()).st_size
        hdf5 = head[:8] == HDF5_SIGNATURE
        off = 512
        while not hdf5 and off + 8 <= size and off <= 1 << 20:  # HDF5 may sit after a user block
            f.seek(off)
            hdf5 = f.read(8) == HDF5_SIGNATURE
            off *= 2
    if not head and not path.endswith(".fastrnn"):
        raise ModelFormatError(f"{path}: the file is empty")
    if is_native_file(path):  # first: a header length of 0x0280 would also start like a pickle
        return _native_kind(path)
    if head[:4] in ZIP_SIGNATURES:
        return _zip_format(path)
    if hdf5:
        return "keras_h5"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch"
    if _looks_like_onnx(head) or path.lower().endswith(".onnx"):
        return "onnx"
    if path.endswith(".fastrnn"):  # unknown content: the native reader says precisely what is wrong
        return "fastrnn"
    if head.startswith(b"\x93NUMPY"):
        raise ModelFormatError(f"{path}: a numpy .npy array, not a model")
    raise ModelFormatError(
        f"{path}: unknown model file format (first bytes {head!r}); fastrnn reads .fastrnn files, Keras "
        ".keras / .h5 files, PyTorch .pt / .pth files, ONNX .onnx files, and weights in .safetensors / .npz files")


def refuse_options(options: Any, where: str, what: str, takes: str) -> None:
    """The one refusal of the options a reader (or :func:`fastrnn.load` for an object) does not take:
    :class:`UnsupportedOptionError` naming ``where`` (the file), the options (also as its ``options``
    attribute), ``what`` it is and what it ``takes``; nothing when ``options`` is empty."""
    if options:
        names = sorted(map(str, options))
        e = UnsupportedOptionError(f"{where}: option(s) {', '.join(names)} do not apply to {what} (it takes {takes})")
        e.options = tuple(names)  # the refused keywords (the CLI names its flags for them)
        raise e


def _reader(module: str, func: str, what: str) -> Callable[..., ModelSpec]:
    try:
        mod = importlib.import_module(f"fastrnn.io.{module}")
    except ImportError as e:
        if getattr(e, "name", None) == f"fastrnn.io.{module}":
            raise UnsupportedLayerError(f"support for {what} files is not available in this fastrnn") from None
        raise UnsupportedLayerError(f"support for {what} files is not available: {e} "
                                    f"(install the missing package)") from None
    fn: Callable[..., ModelSpec] | None = getattr(mod, func, None)
    if fn is None:
        raise UnsupportedLayerError(f"support for {what} files is not available in this fastrnn")
    return fn


def spec_from_file(path: str | os.PathLike[str], **options: Any) -> tuple[ModelSpec, str]:
    """Read any supported model file into a validated ModelSpec; ``(spec, format)``.

    ``isolate`` (default ``True``) is accepted for every format: HDF5 content (Keras ``.keras`` /
    ``.h5``) is then parsed in a separate, resource-limited process (:mod:`fastrnn.io.isolate`; a
    dict ``{"memory": bytes, "cpu": s, "wall": s}`` overrides the limits); ``isolate=False`` parses
    trusted files in this process.  ``.fastrnn`` and PyTorch files are read
    by Python code with bounded checks and no C parser, in this process either way.
    ``weights`` (``"f32"`` / ``"bf16"`` / ``"int8"``, every format) converts the recurrent weights to that
    precision (:func:`fastrnn.quantize.convert_spec`); the ONNX reader takes it too, to keep the int8
    weights of a ``DynamicQuantizeLSTM``.
    """
    p = check_path(path)
    weights = options.pop("weights", None)
    if weights is not None:  # every format: the recurrent weights in this precision (fastrnn.quantize)
        from ..quantize import precision_arg

        weights = precision_arg(weights, "weights")
    with file_errors(p, "load"):  # the one exception boundary of every reader: FastRNNError naming the file
        spec, fmt = _spec_from_file(p, weights, **options)
        if weights is not None:
            from ..quantize import convert_spec

            spec = convert_spec(spec, weights)
        return spec, fmt


def _spec_from_file(path: str, weights: str | None, **options: Any) -> tuple[ModelSpec, str]:
    fmt = detect_format(path)
    if "isolate" in options:  # checked here for every format, passed on to the Keras reader only
        from .isolate import check_isolate

        check_isolate(options["isolate"])
    isolate = {"isolate": options.pop("isolate")} if "isolate" in options else {}
    if fmt == "fastrnn":
        from .native import load_spec

        refuse_options(set(options) - {"mmap"}, path, "a .fastrnn file",
                       "mmap= and weights= only: the file already holds the whole model")
        return load_spec(path, **options), fmt
    if fmt == "onnx":
        from ..converters.onnx import spec_from_onnx_file  # needs the onnx package: says how to install it

        refuse_options(set(options) - {"output"}, path, "an ONNX file", "output='<graph output name>' and weights=")
        return spec_from_onnx_file(path, **options, **({"weights": weights} if weights else {})), fmt
    if fmt in ("safetensors", "npz"):
        from .containers import spec_from_npz_file, spec_from_safetensors_file

        read = spec_from_safetensors_file if fmt == "safetensors" else spec_from_npz_file
        return read(path, **options), fmt
    if fmt in ("keras", "keras_h5"):
        return _reader("keras_file", "spec_from_keras_file", "Keras")(path, **isolate, **options), fmt
    return _reader("torch_file", "spec_from_torch_file", "PyTorch")(path, **options), fmt
