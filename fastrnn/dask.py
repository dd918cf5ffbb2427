"""Batch scoring with `Dask <https://dask.org>`_: ``predict_dask`` (arrays) and ``predict_dask_frame``
(long-format dataframes, one output row per sequence id).  Needs ``pip install "fastrnn[dask]"``;
dask is imported only when these functions run.

How the model travels: the graph holds ONE task whose value is a small :class:`ModelRef` (the
model's ``.fastrnn`` bytes and their SHA-256); every block task depends on that key.  With
``dask.distributed`` the bytes go to the scheduler once, to one worker with that task, and from
there to each other worker once (a worker fetches a dependency once and keeps it while tasks need
it); each worker process then builds the C++ model once (a per-process cache keyed by the hash, so
later graphs with the same model reuse it).  With the local threaded scheduler the caller's
``Model`` itself is used, never copied.  Nothing is pickled but the bytes (checked by the native
reader on arrival).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Sequence, cast

import numpy as np

from .errors import ModelFormatError, ShapeError, UnsupportedLayerError
from .runtime import Model

__all__ = ["predict_dask", "predict_dask_frame", "ModelRef"]

_CACHE_SIZE = 4
_CACHE: "OrderedDict[str, Model]" = OrderedDict()  # per process: sha256 -> Model
_LOCK = threading.Lock()
STATS = {"models_built": 0}  # per process: how many times bytes were turned into a Model here


def _import_dask() -> tuple[Any, Any]:
    try:
        import dask
        import dask.array as da
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"fastrnn.dask needs dask: pip install 'fastrnn[dask]' ({e})") from None
    return dask, da


class ModelRef:
    """A model as its ``.fastrnn`` bytes plus their SHA-256, built into a :class:`Model` at most once
    per process (:meth:`model`).  Pickles as ``(key, bytes)`` only."""

    __slots__ = ("key", "data", "_local")

    def __init__(self, key: str, data: bytes, _local: Model | None = None) -> None:
        self.key, self.data, self._local = key, data, _local

    @classmethod
    def of(cls, model: Model) -> "ModelRef":
        if not isinstance(model, Model):
            raise TypeError(f"expected a fastrnn.Model, got {type(model).__name__}")
        data = model.to_bytes()
        return cls(hashlib.sha256(data).hexdigest(), data, model)

    def model(self) -> Model:
        if self._local is not None:
            return self._local
        # The key is trusted only once it is the hash of these bytes: a ref with key A and bytes B
        # must never fill the cache under A (honest refs to A would then get model B).
        if not isinstance(self.data, (bytes, bytearray, memoryview)) or not isinstance(self.key, str) or \
                hashlib.sha256(self.data).hexdigest() != self.key:
            raise ModelFormatError(f"fastrnn.dask.ModelRef {str(self.key)[:12]!r}: the SHA-256 of its bytes does not "
                                   "match its key (corrupted or forged model reference); refusing to build it")
        with _LOCK:
            m = _CACHE.get(self.key)
            if m is None:
                m = Model.from_bytes(self.data, f"<fastrnn model {self.key[:12]}>")
                STATS["models_built"] += 1
                _CACHE[self.key] = m
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
            else:
                _CACHE.move_to_end(self.key)
        self._local = m  # not pickled (see __reduce__)
        return m

    def __reduce__(self) -> tuple[type[ModelRef], tuple[str, bytes]]:
        return (ModelRef, (self.key, self.data))

    def __dask_tokenize__(self) -> tuple[str, str]:
        return ("fastrnn.ModelRef", self.key)

    def __repr__(self) -> str:
        return f"<fastrnn.dask.ModelRef {self.key[:12]} {len(self.data)} bytes>"


def _model_task(model: Model) -> Any:
    """The one graph key holding the model (same model -> same key: dask merges them)."""
    dask, _ = _import_dask()
    ref = ModelRef.of(model)
    return dask.delayed(ref, name=f"fastrnn-model-{ref.key[:32]}", pure=True, traverse=False)


def _probe(model: Model, x_shape: Sequence[int], takes_ids: bool) -> tuple[int, ...]:
    """The output shape after the batch axis, from one zero row (cost: one sequence)."""
    probe = np.zeros((1,) + tuple(x_shape[1:]), np.int64 if takes_ids else np.float32)
    y = model.predict(probe)
    if isinstance(y, tuple):
        raise UnsupportedLayerError("predict_dask: the model returns several arrays (a bidirectional layer with "
                                    "merge_mode=None); use a merge mode, or map_blocks with model.predict yourself")
    return tuple(y.shape[1:])


def _predict_block(x: np.ndarray, lengths: np.ndarray | None, ref: ModelRef) -> np.ndarray:
    lens = None if lengths is None else np.asarray(lengths).reshape(-1)
    out: np.ndarray = ref.model().predict(x, lengths=lens)
    return out


def predict_dask(model: Model | ModelRef, x: Any, lengths: Any = None) -> Any:
    """``model.predict`` over a Dask array, block by block: a lazy Dask array of the outputs.

    ``x``: ``(batch, time, features)`` floats (or ``(batch, time)`` ids for an Embedding model), a
    dask array (a numpy array is wrapped with dask's automatic chunks).  Blocks are split along the
    batch axis only: when time or features are split too, ``x`` is rechunked to whole sequences
    (batch chunk chosen by dask to keep blocks near ``array.chunk-size``), a shuffle of ``x``.
    ``lengths``: optional ``(batch,)`` ints (numpy or dask), aligned to ``x``'s batch chunks.
    Equal to ``model.predict(x.compute(), lengths)``; compute with any scheduler (threads,
    processes, ``dask.distributed``).  The model is sent once per worker (see the module doc).
    """
    if isinstance(model, ModelRef):
        model = model.model()
    if not isinstance(model, Model):
        raise TypeError(f"predict_dask: expected a fastrnn.Model, got {type(model).__name__}")
    _, da = _import_dask()
    takes_ids = model.spec.takes_ids
    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x))
    want = (2,) if takes_ids else ((3,) if model._needs_seq else (2, 3))
    if x.ndim not in want:
        shape = "(batch, time)" if takes_ids else f"(batch, time, {model.spec.input_features})"
        raise ShapeError(f"predict_dask: x must have shape {shape}, got {x.shape}")
    if any(np.isnan(d) for d in x.shape):
        raise ShapeError("predict_dask: x has unknown chunk sizes; call x.compute_chunk_sizes() first")
    if any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk({0: "auto", **{i: -1 for i in range(1, x.ndim)}})
    trailing = _probe(model, x.shape, takes_ids)
    args = [x]
    if lengths is not None:
        if not isinstance(lengths, da.Array):
            lengths = np.asarray(lengths)
            if lengths.shape != (x.shape[0],):
                raise ShapeError(f"predict_dask: lengths must have shape ({x.shape[0]},), got {lengths.shape}")
            lengths = da.from_array(lengths, chunks=(x.chunks[0],))
        elif lengths.shape != (x.shape[0],):
            raise ShapeError(f"predict_dask: lengths must have shape ({x.shape[0]},), got {lengths.shape}")
        else:
            lengths = lengths.rechunk((x.chunks[0],))
        args.append(lengths.reshape((x.shape[0],) + (1,) * (x.ndim - 1)).rechunk(
            (x.chunks[0],) + ((1,),) * (x.ndim - 1)))
    else:
        args.append(None)
    out_ndim = 1 + len(trailing)
    kw = {}
    if out_ndim < x.ndim:
        kw["drop_axis"] = list(range(out_ndim, x.ndim))
    elif out_ndim > x.ndim:
        kw["new_axis"] = list(range(x.ndim, out_ndim))
    return da.map_blocks(_predict_block, *args, _model_task(model), dtype=np.float32,
                         chunks=(x.chunks[0],) + tuple((d,) for d in trailing),
                         meta=np.empty((0,) * out_ndim, np.float32), token="fastrnn-predict", **kw)


# --------------------------------------------------------------------------------- dataframes
def _frame_block(pdf: Any, ref: ModelRef, id_column: str, time_column: str, feature_columns: list[str],
                 out_columns: list[str], id_dtype: Any) -> Any:
    import pandas as pd

    model = ref.model()
    if len(pdf) == 0:
        return pd.DataFrame({c: np.empty(0, np.float32) for c in out_columns},
                            index=pd.Index([], dtype=id_dtype, name=id_column))
    pdf = pdf.sort_values([id_column, time_column], kind="stable")
    ids, starts, lengths = np.unique(pdf[id_column].to_numpy(), return_index=True, return_counts=True)
    n, steps = len(ids), int(lengths.max())
    pos = np.arange(len(pdf)) - np.repeat(starts, lengths)  # step index within the sequence
    row = np.repeat(np.arange(n), lengths)
    if model.spec.takes_ids:
        x = np.zeros((n, steps), np.int64)
        x[row, pos] = pdf[feature_columns[0]].to_numpy()
    else:
        x = np.zeros((n, steps, len(feature_columns)), np.float32)
        x[row, pos] = pdf[feature_columns].to_numpy(np.float32)
    y = model.predict(x, lengths=lengths)
    if y.ndim == 3:  # per-step outputs: the output at each sequence's last step
        y = y[np.arange(n), lengths - 1]
    return pd.DataFrame(y.reshape(n, -1), columns=out_columns, index=pd.Index(ids, dtype=id_dtype, name=id_column))


def predict_dask_frame(model: Model | ModelRef, df: Any, id_column: str, time_column: str,
                       feature_columns: str | Sequence[str], prefix: str = "y", shuffle: bool = True) -> Any:
    """Score a long-format Dask DataFrame: one row per (sequence id, time step) -> one row per id.

    Each id's rows, ordered by ``time_column``, form one sequence of ``feature_columns`` (for an
    Embedding model: one column of integer ids).  Sequences may have different lengths: they are
    padded and run with ``lengths=`` (so the padding never changes a result).  The result, indexed by
    id, holds the model's output at each sequence's LAST step (the last-step output for a model that
    returns one step), in float32 columns ``{prefix}0 .. {prefix}{n-1}`` -- what
    ``model.predict(seq[None])[0, -1]`` gives for each sequence alone.

    ``shuffle=True`` first moves all rows of an id into one partition (``df.shuffle(on=id_column)``);
    pass ``shuffle=False`` when the data is already partitioned by id (each id in one partition).
    Row order of the result is not defined; sort it if needed.
    """
    if isinstance(model, ModelRef):
        model = model.model()
    if not isinstance(model, Model):
        raise TypeError(f"predict_dask_frame: expected a fastrnn.Model, got {type(model).__name__}")
    _import_dask()
    import pandas as pd

    feature_columns = [feature_columns] if isinstance(feature_columns, str) else list(feature_columns)
    spec = model.spec
    if spec.takes_ids and len(feature_columns) != 1:
        raise ShapeError(f"predict_dask_frame: the model takes ids: give one id column, got {feature_columns}")
    if not spec.takes_ids and len(feature_columns) != spec.input_features:
        raise ShapeError(f"predict_dask_frame: the model expects {spec.input_features} features, got "
                         f"{len(feature_columns)} columns {feature_columns}")
    missing = [c for c in [id_column, time_column, *feature_columns] if c not in df.columns]
    if missing:
        raise ShapeError(f"predict_dask_frame: column(s) {missing} not in the dataframe")
    shape: tuple[int, ...] = (1, 2) if spec.takes_ids else (1, 2, cast(int, spec.input_features))
    dtype: type[np.generic] = np.int64 if spec.takes_ids else np.float32
    probe = np.zeros(shape, dtype)
    y = model.predict(probe)
    if isinstance(y, tuple):
        raise UnsupportedLayerError("predict_dask_frame: the model returns several arrays (merge_mode=None)")
    n_out = int(np.prod(y.shape[2:] if y.ndim == 3 else y.shape[1:]))
    out_columns = [f"{prefix}{i}" for i in range(n_out)]
    id_dtype = df[id_column].dtype
    meta = pd.DataFrame({c: np.empty(0, np.float32) for c in out_columns},
                        index=pd.Index([], dtype=id_dtype, name=id_column))
    frame = df[[id_column, time_column, *feature_columns]]
    if shuffle:
        frame = frame.shuffle(on=id_column)
    return frame.map_partitions(_frame_block, _model_task(model), id_column, time_column, feature_columns,
                                out_columns, id_dtype, meta=meta, align_dataframes=False)
