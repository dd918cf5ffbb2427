"""Keras model files -> :class:`fastrnn.spec.ModelSpec`, with h5py only (TensorFlow / Keras are never imported).

Formats (detected from the content, not the file name):

* Keras 3 ``.keras``: a zip of ``config.json`` + ``model.weights.h5`` (+ ``metadata.json``).
  Weights are keyed ``layers/<key>/vars/<i>`` where ``key`` is ``snake_case(class)`` made unique in
  ``model.layers`` order (nested: ``.../cell/vars``, ``.../forward_layer/cell/vars``,
  ``.../backward_layer/cell/vars``, ``.../layer/vars``; a layer of a nested model:
  ``layers/<model key>/layers/<key>/...``), mapped from the config.
* legacy full-model HDF5 (``model.save("x.h5")`` by Keras 3, tf.keras 2.x or Keras 2.x): root
  attribute ``model_config`` (JSON), ``keras_version``, group ``model_weights`` with
  ``layer_names`` and per-layer ``weight_names`` (attributes possibly chunked as ``name0``,
  ``name1``...), weights in Keras order.
* weights-only HDF5 (Keras 3 ``*.weights.h5``, Keras 2 ``save_weights`` ``.h5``) together with
  ``architecture=``: a Keras config (JSON string / dict from ``model.to_json()`` /
  ``model.get_config()``), or a :class:`ModelSpec` whose tensors are filled by layer name.

Options: ``architecture``; ``keras_version`` (the writer's Keras version, e.g. ``"2.2.4"``: the
meaning of ``hard_sigmoid`` and some defaults depend on it; read from the file when omitted);
``isolate`` (default ``True``: the file is parsed in a separate, resource-limited process, see
:mod:`fastrnn.io.isolate`; a dict of limits; ``False`` for trusted files, in this process).

Problems with the file raise :class:`~fastrnn.errors.ModelFormatError` naming the file;
unsupported layers / options one :class:`~fastrnn.errors.UnsupportedLayerError` listing them all.
Nothing in a file is executed: layer classes (Lambda, custom layers) are only compared by name.
"""
from __future__ import annotations

import copy
import io
import json
import os
import re
import zipfile
import zlib
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import numpy.typing as npt

from ..errors import FastRNNError, ModelFormatError, UnsupportedLayerError
from ..spec import DenseSpec, EmbeddingSpec, ModelSpec, RecurrentSpec
from .budget import LoadBudget
from .detect import check_zip_directory, check_zip_members, read_zip_member

__all__ = ["spec_from_keras_file"]

_MAX_JSON_BYTES = 64 << 20
_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class _Entry(Protocol):
    """What the weights callback reads of a config layer entry (``fastrnn.converters.keras._CfgLayer``)."""

    class_name: str


# The weights callback of :func:`fastrnn.converters.keras.spec_from_keras_config`: (layer names from the top
# model down, weight-file keys, entry) -> the layer's arrays in Keras weight order.
_Weights = Callable[[Sequence[str], Sequence["str | None"], _Entry], "list[npt.NDArray[np.float32]]"]


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading Keras .keras / .h5 files needs h5py: pip install 'fastrnn[keras]'") from e
    return h5py


class _Fail(Exception):
    """Internal: a problem with the file (becomes ModelFormatError with the file name)."""


class _BadText(_Fail):
    """Internal: JSON text holding a string that is not valid Unicode."""


def _parse_json(text: object, what: str) -> Any:
    if isinstance(text, (bytes, bytearray, np.bytes_)):
        if len(text) > _MAX_JSON_BYTES:
            raise _Fail(f"{what} is larger than {_MAX_JSON_BYTES >> 20} MiB")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise _Fail(f"{what} is not UTF-8 text") from None
    if isinstance(text, np.ndarray) and text.shape == ():
        return _parse_json(text[()], what)
    if not isinstance(text, str):
        raise _Fail(f"{what} is not a JSON string (got {type(text).__name__})")
    if len(text) > _MAX_JSON_BYTES:
        raise _Fail(f"{what} is larger than {_MAX_JSON_BYTES >> 20} MiB")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _Fail(f"{what} is not valid JSON ({str(e)[:120]})") from None
    if _may_hold_surrogates(text):
        _check_text(obj, what)
    return obj


def _may_hold_surrogates(text: str) -> bool:
    """False when no string parsed from the JSON ``text`` can hold a lone surrogate: none is in the
    text itself and no ``\\uD800``-``\\uDFFF`` escape is either (a cheap test before :func:`_check_text`)."""
    if _SURROGATE_ESCAPE.search(text):
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _bad_text(obj: object) -> str | None:
    """None, or a piece of text around the first string of ``obj`` (keys included) that is not valid
    Unicode.  At C speed (json.dumps) for JSON data; a walk for anything else (no recursion)."""
    try:
        text = json.dumps(obj, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # not plain JSON data (an architecture= argument)
        stack = [obj]
        while stack:
            v = stack.pop()
            if isinstance(v, str):
                if not v.isascii() and _bad_text(v) is not None:
                    return v
            elif isinstance(v, dict):
                stack.extend(v.keys())
                stack.extend(v.values())
            elif isinstance(v, (list, tuple)):
                stack.extend(v)
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return text[max(0, e.start - 60):e.start + 1]
    return None


def _check_text(obj: object, what: str) -> None:
    """Refuse a lone UTF-16 surrogate in any string (key or value) of the parsed JSON ``obj``: Keras
    never writes one, and as a layer / model name it would make the model unsavable (no UTF-8
    form).  The message names the layer it is in and shows the text before it."""
    bad = _bad_text(obj)
    if bad is None:
        return
    where = ""
    layers = obj
    for key in ("config", "layers"):
        if isinstance(layers, dict):
            layers = layers.get(key, layers)
    if isinstance(layers, list):
        for i, entry in enumerate(layers):
            if isinstance(entry, dict) and _bad_text(entry) is not None:
                inner = entry["config"] if isinstance(entry.get("config"), dict) else {}
                name, cls = entry.get("name", inner.get("name")), entry.get("class_name")
                where = f" in layer {i} {ascii(name)} ({ascii(cls)[1:-1] if isinstance(cls, str) else '?'})"
                break
    raise _BadText(f"{what}: text that is not valid Unicode (a lone UTF-16 surrogate){where}, at ...{ascii(bad)[1:-1]}: "
                   "refused")


def _attr_str(v: object) -> str | None:
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _attr_str(v[()])
    return v if isinstance(v, str) else None


def _attr_list(group: Any, name: str) -> list[str] | None:
    """An h5 attribute holding a list of strings, possibly chunked as name0, name1, ... (Keras)."""
    if name in group.attrs:
        raw = [group.attrs[name]]
    else:
        raw, i = [], 0
        while f"{name}{i}" in group.attrs:
            raw.append(group.attrs[f"{name}{i}"])
            i += 1
        if not raw:
            return None
    out = []
    for chunk in raw:
        arr = np.asarray(chunk)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.size == 0:
            continue
        for x in arr.reshape(-1):
            s = _attr_str(x)
            if s is None:
                raise _Fail(f"attribute '{name}' of '{group.name}' is not a list of strings")
            out.append(s)
    return out


def _read_dataset(ds: Any, what: str, budget: LoadBudget) -> npt.NDArray[np.float32]:
    h5py = _h5py()
    if not isinstance(ds, h5py.Dataset):
        raise _Fail(f"{what} is not a dataset")
    if ds.dtype.kind not in "fiu":
        raise _Fail(f"{what} has dtype {ds.dtype}, not a number")
    # before reading: a chunked dataset may declare gigabytes that no chunk in the file backs (it reads as
    # zeros); what it may cost is bounded by the file's real size (read as stored, plus a float32 copy)
    per = ds.dtype.itemsize + (0 if ds.dtype == np.float32 else 4)
    budget.charge(int(ds.size) * per, f"{what} (shape {ds.shape}, {ds.dtype})")
    try:
        return np.asarray(ds[()], dtype=np.float32)
    except (OSError, ValueError, TypeError) as e:
        raise _Fail(f"cannot read {what} ({e})") from None
    except MemoryError:
        # e.g. a chunked dataset declaring a huge shape in a tiny file (chunks never written)
        raise _Fail(f"{what} declares shape {ds.shape} ({ds.size * ds.dtype.itemsize / 2**30:.1f} GiB): more "
                    "memory than this process can allocate") from None


# --------------------------------------------------------------------------- weight stores
class _V3Store:
    """Keras 3 weights (model.weights.h5 in a .keras, or a *.weights.h5): ``layers/<key>/.../vars/<i>``."""

    def __init__(self, f: Any, budget: LoadBudget) -> None:
        self.f = f
        self.budget = budget
        self.root = f["layers"] if "layers" in f else None

    def _vars(self, grp: Any, path: str) -> list[npt.NDArray[np.float32]]:
        h5py = _h5py()
        if "vars" not in grp:
            return []
        v = grp["vars"]
        if not isinstance(v, h5py.Group):
            raise _Fail(f"'{path}/vars' is not a group")
        n = len(v.keys())
        for i in range(n):
            if str(i) not in v:
                raise _Fail(f"'{path}/vars' lacks variable {i} (has {sorted(v.keys())})")
        return [_read_dataset(v[str(i)], f"weight '{path}/vars/{i}'", self.budget) for i in range(n)]

    def _sub(self, grp: Any, path: str, name: str, required: bool = True) -> Any:
        if name not in grp:
            if required:
                raise _Fail(f"weights '{path}/{name}' are missing")
            return None
        return grp[name]

    def arrays(self, grp: Any, path: str, class_name: str) -> list[npt.NDArray[np.float32]]:
        """The variables of one layer group in Keras weight order, by the layer's class."""
        if class_name in ("SimpleRNN", "LSTM", "GRU", "RNN"):
            return self._vars(self._sub(grp, path, "cell"), f"{path}/cell")
        if class_name == "Bidirectional":
            out = []
            for side in ("forward_layer", "backward_layer"):
                s = self._sub(grp, path, side)
                out += self._vars(self._sub(s, f"{path}/{side}", "cell"), f"{path}/{side}/cell")
            return out
        if class_name == "TimeDistributed":
            return self._vars(self._sub(grp, path, "layer"), f"{path}/layer")
        return self._vars(grp, path)

    def _name_of(self, grp: Any) -> str | None:
        if "vars" in grp:
            return _attr_str(grp["vars"].attrs.get("name"))
        return None

    def by_key(self, layer_name: str, keys: Sequence[str | None], class_name: str) -> list[npt.NDArray[np.float32]]:
        """The variables of the layer at weight-file key path ``keys`` (one key per model level: a layer of a
        nested model sits at ``layers/<model key>/layers/<key>``)."""
        if None in keys:
            return []
        path = "layers/" + "/layers/".join(k for k in keys if k is not None)  # (no None: checked above)
        grp = self.f
        for part in path.split("/"):
            grp = grp[part] if isinstance(grp, _h5py().Group) and part in grp else None
            if grp is None:
                if class_name in ("InputLayer",) or class_name in _NO_WEIGHTS:
                    return []
                raise _Fail(f"weights for layer '{layer_name}' ({class_name}) are missing (no group '{path}')")
        stored = self._name_of(grp)
        if stored is not None and stored != layer_name:
            raise _Fail(f"weight group '{path}' belongs to layer '{stored}', but the config puts layer '{layer_name}' "
                        "there: the weights do not match the architecture")
        return self.arrays(grp, path, class_name)

    def by_name(self, layer_name: str, class_name: str) -> list[npt.NDArray[np.float32]]:
        """For a ModelSpec architecture: find the group whose recorded layer name matches."""
        if self.root is None:
            raise _Fail("no 'layers' group: not a Keras 3 weights file")
        for key in self.root:
            grp = self.root[key]
            if self._name_of(grp) == layer_name:
                # the spec does not know the Keras class: the group's structure tells where the variables are
                cls = ("Bidirectional" if "forward_layer" in grp else "RNN" if "cell" in grp
                       else "TimeDistributed" if "layer" in grp else class_name)
                return self.arrays(grp, f"layers/{key}", cls)
        raise _Fail(f"no weights for layer '{layer_name}' (Keras 3 weight groups record layer names only since "
                    "Keras 3.x; pass the Keras config as architecture= instead)")


_NO_WEIGHTS = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Activation",
               "ActivityRegularization", "Identity", "Masking", "Flatten", "ReLU", "LeakyReLU", "ELU", "Softmax",
               "UnitNormalization")


class _LegacyStore:
    """Keras 2 / legacy h5 weights: a group with ``layer_names``, one group per layer with ``weight_names``."""

    def __init__(self, grp: Any, budget: LoadBudget) -> None:
        self.grp = grp
        self.budget = budget
        names = _attr_list(grp, "layer_names")
        if names is None:
            raise _Fail("the weights group has no 'layer_names' attribute")
        self.layer_names = names

    def by_path(self, names: Sequence[str], keys: Sequence[str | None], entry: _Entry) -> list[npt.NDArray[np.float32]]:
        """The weights callback of :func:`spec_from_keras_config` (layers of the top model only)."""
        if len(names) > 1:
            raise UnsupportedLayerError(f"layer '{names[0]}': nested models in legacy HDF5 files are not supported "
                                        "(re-save the model as .keras)")
        return self.by_name(names[0], entry.class_name)

    def by_name(self, layer_name: str, class_name: str | None = None) -> list[npt.NDArray[np.float32]]:
        h5py = _h5py()
        if layer_name not in self.layer_names or layer_name not in self.grp:
            if class_name in ("InputLayer",) or class_name in _NO_WEIGHTS:
                return []
            raise _Fail(f"weights for layer '{layer_name}' are missing")
        g = self.grp[layer_name]
        if not isinstance(g, h5py.Group):
            raise _Fail(f"'{g.name}' is not a group")
        wnames = _attr_list(g, "weight_names")
        if wnames is None:
            raise _Fail(f"layer group '{layer_name}' has no 'weight_names' attribute")
        out = []
        for wn in wnames:
            if wn not in g:
                raise _Fail(f"weight '{wn}' of layer '{layer_name}' is listed but missing")
            out.append(_read_dataset(g[wn], f"weight '{layer_name}/{wn}'", self.budget))
        return out


# --------------------------------------------------------------------------- entry point
def spec_from_keras_file(path: str | os.PathLike[str], architecture: Any = None, **options: Any) -> ModelSpec:
    """Load a Keras ``.keras`` / ``.h5`` / ``.weights.h5`` file into a validated :class:`ModelSpec`.

    ``architecture``: required for weights-only files (a Keras config as JSON text or dict, or a
    :class:`ModelSpec` to fill); for full-model files it replaces the stored configuration.
    ``keras_version``: the Keras version that wrote the model, when the file does not record it.
    ``isolate`` (default ``True``): parse the file (zip, JSON and HDF5) in a separate, resource-limited
    process (:mod:`fastrnn.io.isolate`), so that a corrupted HDF5 file that crashes or hangs the HDF5
    C library raises :class:`ModelFormatError` instead of killing or blocking the caller; a dict such
    as ``{"cpu": 5, "wall": 15, "memory": 1 << 30}`` isolates with those limits instead of the defaults;
    ``False`` parses in this process (faster, for trusted files).
    """
    keras_version = options.pop("keras_version", None)
    isolate = options.pop("isolate", True)
    if options:
        raise TypeError(f"spec_from_keras_file: unknown option(s) {', '.join(sorted(options))}")
    from .isolate import check_isolate

    limits = check_isolate(isolate)
    origin = f"'{os.fspath(path)}'" if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
    if limits is not None and isinstance(path, (str, bytes, os.PathLike)):
        from importlib.util import find_spec

        if find_spec("h5py") is None:
            _h5py()  # the ImportError saying how to install it, without starting a process
        from .isolate import spec_isolated

        return spec_isolated(path, origin, architecture, keras_version, limits=limits)
    try:
        spec: ModelSpec = _load(path, architecture, keras_version, origin)
        return spec
    except _Fail as e:
        raise ModelFormatError(f"{origin}: {e}") from None
    except FastRNNError as e:
        msg = str(e)
        if origin not in msg:
            raise type(e)(f"{origin}: {msg}") from None
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RecursionError, EOFError,
            zipfile.BadZipFile, RuntimeError, OverflowError, zlib.error) as e:
        raise ModelFormatError(f"{origin}: not a readable Keras model file ({type(e).__name__}: {str(e)[:200]})") from None


def _load(path: str | os.PathLike[str], architecture: Any, keras_version: str | None, origin: str) -> ModelSpec:
    h5py = _h5py()
    p = os.fspath(path)
    if os.path.isdir(p):
        raise _Fail("is a directory (TensorFlow SavedModel directories are not supported; save a .keras or .h5 file)")
    with open(p, "rb") as fh:
        head = fh.read(8)
    budget = LoadBudget.for_file(p, origin)  # what this load may allocate: from the real size on disk
    if head[:4] == b"PK\x03\x04" or (zipfile.is_zipfile(p) and head[:8] != _H5_SIGNATURE):
        return _load_keras_zip(p, architecture, keras_version, origin, budget)
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        if head.startswith(b"PK"):
            raise _Fail("is a damaged zip (.keras) file") from None
        raise _Fail(f"is neither a .keras (zip) nor an HDF5 (.h5) file ({str(e)[:120]})") from None
    with f:
        return _load_h5(f, architecture, keras_version, origin, budget)


def _arch_config(architecture: object) -> tuple[dict[str, Any] | list[Any] | None, ModelSpec | None]:
    """``architecture`` -> (model config dict or None, ModelSpec or None)."""
    if architecture is None:
        return None, None
    if isinstance(architecture, ModelSpec):
        return None, architecture
    if isinstance(architecture, (str, bytes)):
        architecture = _parse_json(architecture, "architecture JSON")
    elif isinstance(architecture, (dict, list)):
        _check_text(architecture, "architecture")
    if isinstance(architecture, dict) and "class_name" not in architecture and isinstance(architecture.get("layers"), list):
        # model.get_config() of a Sequential / functional model: the inner config
        cls = "Functional" if "output_layers" in architecture else "Sequential"
        architecture = {"class_name": cls, "config": architecture}
    if not isinstance(architecture, (dict, list)):
        raise _Fail(f"architecture must be a Keras config (JSON text or dict) or a ModelSpec, got "
                    f"{type(architecture).__name__}")
    return architecture, None


def _read_member(z: zipfile.ZipFile, name: str, limit: int, budget: LoadBudget, where: str) -> bytes:
    """The bytes of archive member ``name`` (sizes checked by ``check_zip_members``), refused when it
    declares more than ``limit`` bytes, read and charged to ``budget`` by the one zip member reader."""
    size = z.getinfo(name).file_size
    if size > limit:
        raise _Fail(f"{name} in the archive is larger than {limit:,} bytes: a corrupt or hostile archive")
    try:
        return read_zip_member(z, name, budget, where)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError, NotImplementedError) as e:
        # zlib.error: a broken deflate stream; RuntimeError: an encrypted member; NotImplementedError:
        # a compression method zipfile lacks
        raise _Fail(f"{name} in the archive cannot be read: the archive is damaged ({type(e).__name__}: "
                    f"{str(e)[:160]})") from None


_READ_MEMBERS = {"metadata.json", "config.json", "model.weights.h5"}
_MAX_MEMBERS = 20_000  # a .keras file holds 3 members, plus its assets


def _load_keras_zip(p: str, architecture: Any, keras_version: str | None, origin: str, budget: LoadBudget) -> ModelSpec:
    h5py = _h5py()
    check_zip_directory(p, _MAX_MEMBERS)  # before zipfile parses the directory (one object per member)
    try:
        z = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise _Fail(f"is not a valid .keras (zip) file ({e})") from None
    with z:
        names = set(z.namelist())
        if "model.weights.h5" not in names:
            raise _Fail("the .keras archive has no model.weights.h5 (sharded or npz weights are not supported)")
        check_zip_members(z, origin, budget.file_size, sorted(names & _READ_MEMBERS))  # assets are never read
        meta: dict[str, Any] = {}
        if "metadata.json" in names:
            raw = _read_member(z, "metadata.json", _MAX_JSON_BYTES, budget, origin)
            try:
                meta = _parse_json(raw, "metadata.json")
            except _BadText:  # garbage is ignored (nothing needs it), text Keras never writes is not
                raise
            except _Fail:
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
        cfg, spec = _arch_config(architecture)
        if cfg is None and spec is None:
            if "config.json" not in names:
                raise _Fail("the .keras archive has no config.json")
            cfg = _parse_json(_read_member(z, "config.json", _MAX_JSON_BYTES, budget, origin), "config.json")
        data = _read_member(z, "model.weights.h5", budget.limit, budget, origin)
    version = keras_version or meta.get("keras_version") or "3"
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except (OSError, OverflowError, ValueError) as e:
        # OverflowError: h5py's file-object driver asked for an offset past ssize_t (corrupted superblock)
        raise _Fail(f"model.weights.h5 in the archive is not a valid HDF5 file ({str(e)[:120]})") from None
    with f:
        store = _V3Store(f, budget)
        if spec is not None:
            return _fill_spec(spec, lambda n, c: store.by_name(n, c), origin)
        return _convert(cfg, lambda names, keys, e: store.by_key(names[-1], keys, e.class_name), version, origin)


def _convert(cfg: dict[str, Any] | list[Any] | None, weights: _Weights, version: str | None, origin: str) -> ModelSpec:
    from ..converters.keras import spec_from_keras_config

    return spec_from_keras_config(cfg, weights, keras_version=version, origin=origin)


def _load_h5(f: Any, architecture: Any, keras_version: str | None, origin: str, budget: LoadBudget) -> ModelSpec:
    h5py = _h5py()
    cfg, spec = _arch_config(architecture)
    root_version = _attr_str(f.attrs.get("keras_version"))
    store: _LegacyStore | _V3Store
    if "model_config" in f.attrs:  # legacy full model
        if cfg is None and spec is None:
            cfg = _parse_json(f.attrs["model_config"], "attribute 'model_config'")
        if "model_weights" not in f or not isinstance(f["model_weights"], h5py.Group):
            raise _Fail("the model file has no 'model_weights' group (saved without weights?)")
        store = _LegacyStore(f["model_weights"], budget)
        version = keras_version or root_version or _attr_str(f["model_weights"].attrs.get("keras_version"))
    elif _attr_list(f, "layer_names") is not None:  # Keras 2 save_weights
        store = _LegacyStore(f, budget)
        version = keras_version or root_version
    elif "layers" in f or "vars" in f:  # Keras 3 *.weights.h5
        store = _V3Store(f, budget)
        version = keras_version or "3"
        if cfg is None and spec is None:
            raise _Fail("is a weights-only file: pass architecture= (the model's Keras config JSON or a ModelSpec)")
        if spec is not None:
            return _fill_spec(spec, lambda n, c: store.by_name(n, c), origin)
        return _convert(cfg, lambda names, keys, e: store.by_key(names[-1], keys, e.class_name), version, origin)
    else:
        raise _Fail("is an HDF5 file but not a Keras model or weights file (no model_config, layer_names or layers)")
    if cfg is None and spec is None:
        raise _Fail("is a weights-only file: pass architecture= (the model's Keras config JSON or a ModelSpec)")
    if spec is not None:
        return _fill_spec(spec, lambda n, c: store.by_name(n, c), origin)
    if isinstance(cfg, dict) and version is None:
        version = cfg.get("keras_version")
    return _convert(cfg, store.by_path, version, origin)


# --------------------------------------------------------------------------- ModelSpec architecture
def _fill_spec(spec: ModelSpec, get: Callable[[str, str], list[npt.NDArray[np.float32]]], origin: str) -> ModelSpec:
    """Copy ``spec`` with every tensor replaced by the file's weights of the layer of the same name."""
    from ..converters.keras import _dense_from_arrays, _rnn_direction_from_arrays

    spec = copy.deepcopy(spec)
    for layer in spec.layers:
        where = f"layer '{layer.name}' ({layer.kind})"
        if isinstance(layer, EmbeddingSpec):
            arrs = get(layer.name, "Embedding")
            if len(arrs) != 1 or arrs[0].shape != np.shape(layer.embeddings):
                raise _Fail(f"{where}: the file's weights {[a.shape for a in arrs]} do not match "
                            f"embeddings {np.shape(layer.embeddings)}")
            layer.embeddings = arrs[0]
        elif isinstance(layer, DenseSpec):
            arrs = get(layer.name, "Dense")
            w, b = _dense_from_arrays(where, arrs, len(arrs) == 2)
            if w.shape != np.shape(layer.weight):
                raise _Fail(f"{where}: the file's kernel gives weight {w.shape}, the spec has {np.shape(layer.weight)}")
            layer.weight, layer.bias = w, b
        elif isinstance(layer, RecurrentSpec):
            if layer.proj_size:
                raise UnsupportedLayerError(f"{where}: LSTM projections do not exist in Keras")
            cls = "Bidirectional" if layer.direction == "bidirectional" else {
                "simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}[layer.kind]
            arrs = get(layer.name, cls)
            nd = layer.num_directions
            if len(arrs) % nd or len(arrs) // nd not in (2, 3):
                raise _Fail(f"{where}: {len(arrs)} weight arrays in the file for {nd} direction(s)")
            per = len(arrs) // nd
            ws = []
            for d in range(nd):
                dw, in_size = _rnn_direction_from_arrays(where, layer.kind, layer.units, arrs[d * per:(d + 1) * per],
                                                         per == 3, layer.reset_after)
                if in_size != layer.input_size:
                    raise _Fail(f"{where}: the file's kernel takes {in_size} features, the spec {layer.input_size}")
                ws.append(dw)
            layer.weights = ws
    return spec.validate()
