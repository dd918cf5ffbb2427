"""fastrnn.Model: validate inputs, convert once, hand over to the C++ core."""
from __future__ import annotations

import operator
import os
from types import ModuleType
from typing import Any, Callable, SupportsIndex, cast

import numpy as np
import numpy.typing as npt

from .errors import ArgumentError, ArgumentTypeError, CoreNotBuiltError, ShapeError, UnsupportedLayerError
from .spec import EmbeddingSpec, ModelSpec, RecurrentSpec

# Bounds of the API's counts (far beyond any real use; the core also refuses a stream whose
# buffers would not fit in this machine's memory, with OutOfMemoryError).
MAX_STREAM_ROWS = 1 << 40
MAX_GENERATED = 1 << 31  # ids one generate() call returns (batch x steps)

_core_module: ModuleType | None = None


def core() -> ModuleType:
    """The compiled extension, or a clear error saying how to get it."""
    global _core_module
    if _core_module is not None:
        return _core_module
    # The bundled OpenBLAS starts its worker threads when it is loaded and lets them spin for
    # ~0.1 s; ours split the work and call it single-threaded, so it is told to start none.  Only
    # for the duration of the import, and never over a value the user set.
    import os

    unset = "OPENBLAS_NUM_THREADS" not in os.environ
    if unset:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        from . import _core
    except ImportError as e:
        raise CoreNotBuiltError(_core_import_error(e)) from e
    finally:
        if unset:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
    _core_module = _core
    return _core


def _core_import_error(e: ImportError) -> str:
    """Why ``fastrnn._core`` did not import, and what to run: the imported package's directory,
    whether it is a source checkout without a build (often the checkout shadowing an installed
    fastrnn because Python was started inside it), or an installed copy that is broken."""
    import importlib.machinery
    import importlib.metadata
    import json
    import os
    import sys

    pkg = os.path.dirname(os.path.abspath(__file__))
    parent = os.path.dirname(pkg)
    built = sorted(f for f in os.listdir(pkg) if f.startswith("_core.") and not f.endswith((".pyi", ".py")))
    checkout = os.path.isfile(os.path.join(parent, "setup.py")) and os.path.isdir(os.path.join(parent, "src", "bindings"))
    msg = f"fastrnn._core cannot be imported ({e}).\nfastrnn was imported from {pkg}"
    if built:
        msg += (f", which holds {', '.join(built)} (this Python loads extension modules named "
                f"_core{' / _core'.join(importlib.machinery.EXTENSION_SUFFIXES)})")
    if not checkout:
        return msg + (".\nThis installed copy is incomplete or was built for another Python or platform: reinstall "
                      "it (pip install --force-reinstall <the wheel or the source checkout>).")
    # A source checkout.  Which sys.path entry picked it, and is fastrnn installed somewhere else?
    here = os.path.realpath(parent)
    entry = next((p for p in sys.path if os.path.realpath(p or os.getcwd()) == here), None)
    elsewhere = []
    for p in sys.path:
        d = os.path.realpath(p or os.getcwd())
        if d != here and os.path.isfile(os.path.join(d, "fastrnn", "__init__.py")):
            elsewhere.append(os.path.join(d, "fastrnn"))
    for dist in importlib.metadata.distributions(name="fastrnn"):
        url = json.loads(dist.read_text("direct_url.json") or "{}")
        if url.get("dir_info", {}).get("editable") and url.get("url", "").startswith("file://"):
            src = os.path.realpath(url["url"][len("file://"):])
            if src != here:
                elsewhere.append(f"{os.path.join(src, 'fastrnn')} (editable install)")
    elsewhere = sorted(set(elsewhere))
    where = "the current directory" if entry == "" else repr(entry)
    msg += (f", a source checkout{' with no compiled core (no fastrnn/_core.*.so)' if not built else ''}, "
            f"found first on sys.path through {where}.")
    if elsewhere:
        msg += (f"\nAn installed fastrnn exists at {', '.join(elsewhere)}, but Python imports this checkout first "
                f"({where} comes earlier on sys.path). Start Python outside the checkout to use the installed "
                f"package, or build the core in place: cd {parent} && pip install -e .")
    else:
        msg += (f"\nBuild the core in place (a C++17 compiler is needed): cd {parent} && pip install -e .  "
                "(a plain `pip install .` installs a copy in site-packages, which Python started inside the "
                "checkout does not import).")
    return msg


def int_arg(value: Any, what: str, lo: int, hi: int | None = None) -> int:
    """The one rule for the int arguments of the API (thread counts, batch sizes, steps, top_k...):
    a Python or numpy int (anything with ``__index__``, never a bool or a float) in ``[lo, hi]``
    (``hi=None``: no upper bound).
    A wrong type raises :class:`ArgumentTypeError` (a ``TypeError``), a value out of range
    :class:`ArgumentError` (a ``ValueError``); both name the argument and the range."""
    if isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{what} must be an int, got a bool ({value!r})")
    try:
        n = operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"{what} must be an int, got {type(value).__name__} {value!r:.40}") from None
    if n < lo or (hi is not None and n > hi):
        raise ArgumentError(f"{what} must be {f'in [{lo:,}, {hi:,}]' if hi is not None else f'>= {lo:,}'}, got {n:,}")
    return n


def ids_array(x: npt.ArrayLike, what: str) -> np.ndarray:
    """The one rule for ids (``predict``, ``generate`` prompts; the core applies the same rule to
    ``Stream.step`` / ``run``): an integer array, or floats that are all integral (``1.0`` is id 1,
    ``1.7`` is refused, never truncated); bools, strings and objects are refused.  Returns the
    array as it is (the caller checks shape and range, then converts)."""
    arr = _asarray(x, what)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ShapeError(f"{what}: expects integer ids, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise ShapeError(f"{what}: ids must be integers, got non-integral floats")
    return arr


def _asarray(x: object, what: str) -> np.ndarray:
    """np.asarray that turns numpy's complaints (ragged lists, odd objects) into a ShapeError."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (ValueError, TypeError, OverflowError) as e:
        raise ShapeError(f"{what}: cannot be read as a rectangular array ({e})") from None


def _as_float_array(x: object, what: str) -> npt.NDArray[np.float32]:
    if type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous:
        return x  # the common case: nothing to convert
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise ShapeError(f"{what}: cannot be read as a rectangular array ({e})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ShapeError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ShapeError(f"{what}: complex input is not supported")
    return np.ascontiguousarray(arr, dtype=np.float32)


class Model:
    """A compiled, immutable RNN model.  Thread-safe: ``predict`` may be called concurrently.

    >>> m = fastrnn.from_torch(torch.nn.LSTM(8, 16, batch_first=True))
    >>> y = m.predict(np.zeros((4, 10, 8), np.float32))          # (4, 10, 16)
    >>> y, states = m.predict(x, lengths=[10, 7, 3, 1], return_state=True)
    """

    def __init__(self, spec: ModelSpec) -> None:
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"Model() takes a fastrnn.spec.ModelSpec, got {type(spec).__name__}")
        spec.validate()
        self.spec = spec
        header, tensors = spec.to_core()
        self._core = core().Model(header, tensors)
        self._rnns = spec.recurrent_layers
        if spec.precision != "f32" and getattr(self._core, "precisions", None) != [l.precision for l in self._rnns]:
            raise CoreNotBuiltError("the compiled core (fastrnn._core) is older than this fastrnn and does not run bf16 / "
                                    "int8 weights; rebuild it (pip install -e . in the checkout)")
        self._needs_seq = any(isinstance(l, RecurrentSpec) or l.kind in ("last_step", "masking") for l in spec.layers)
        self._takes_ids = spec.takes_ids  # fixed with the core built above; read on every call

    def __repr__(self) -> str:
        kinds = ", ".join(f"{l.name}:{l.kind}" for l in self.spec.layers)
        return f"<fastrnn.Model [{kinds}] source={self.spec.source or '?'} weights={self.precision}>"

    @property
    def precision(self) -> str:
        """The precision of the recurrent weights: ``"f32"`` (exact, the default), ``"bf16"``, ``"int8"``
        (or ``"mixed"`` for a hand-built spec whose layers differ).  Only recurrent weights are ever
        reduced; Dense / Embedding weights, activations, states and sums stay float32."""
        return self.spec.precision

    def with_weights(self, precision: str) -> "Model":
        """A new Model whose recurrent weights are in ``precision`` (``"f32"``, ``"bf16"``, ``"int8"``; aliases
        ``"float32"``, ``"bfloat16"``); this model is unchanged (the same precision returns it as is).

        Converted from the weights this model holds (see :mod:`fastrnn.quantize`): from float32 the
        rounding happens once; from a reduced model the stored weights are dequantized first, so
        ``bf16 -> int8`` and ``int8 -> bf16`` add both roundings, and ``-> "f32"`` runs the dequantized
        weights in float32 (it cannot bring back the original weights)."""
        from .quantize import convert_spec, precision_arg

        p = precision_arg(precision, "with_weights: precision")
        if p == self.precision:
            return self
        return Model(convert_spec(self.spec, p))

    # ---- input checks -------------------------------------------------------------------
    def _input(self, x: npt.ArrayLike) -> np.ndarray:
        spec = self.spec
        first: Any = spec.layers[0]  # an EmbeddingSpec when the model takes ids
        needs_seq = self._needs_seq
        if self._takes_ids:
            arr = ids_array(x, f"layer '{first.name}' (embedding)")
            if arr.ndim != 2:
                raise ShapeError(f"layer '{first.name}' (embedding): ids must have shape (batch, time), got {arr.shape}")
            vocab = first.embeddings.shape[0]
            if arr.size and (arr.min() < 0 or arr.max() >= vocab):
                bad = arr[(arr < 0) | (arr >= vocab)].flat[0]
                raise ShapeError(f"layer '{first.name}' (embedding): id {bad} is outside [0, {vocab})")
            return np.ascontiguousarray(arr, dtype=np.int64)
        arr = _as_float_array(x, "x")
        want = 3 if needs_seq else (2, 3)
        if (arr.ndim != want) if isinstance(want, int) else (arr.ndim not in want):
            hint = " (for a single sequence use x[None])" if arr.ndim == 2 else ""
            raise ShapeError(f"x: expected shape (batch, time, {spec.input_features}), got {arr.shape}{hint}")
        if arr.shape[-1] != spec.input_features:
            raise ShapeError(
                f"x: layer '{first.name}' ({first.kind}) expects {spec.input_features} features, got shape {arr.shape}")
        return arr

    def _lengths(self, lengths: npt.ArrayLike | None, batch: int, steps: int) -> npt.NDArray[np.int64] | None:
        if lengths is None:
            return None
        try:
            arr = np.asarray(lengths)
        except (ValueError, TypeError) as e:
            raise ShapeError(f"lengths: cannot be read as a 1-D integer array ({e})") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ShapeError(f"lengths: expected integers, got dtype {arr.dtype}")
        if arr.shape != (batch,):
            raise ShapeError(f"lengths: expected shape ({batch},), got {arr.shape}")
        if np.issubdtype(arr.dtype, np.floating) and np.any(arr != np.round(arr)):
            raise ShapeError("lengths: expected integers")
        if arr.size and (arr.min() < 0 or arr.max() > steps):
            raise ShapeError(f"lengths: values must be in [0, {steps}] (the time axis), got min {arr.min()} max {arr.max()}")
        return np.ascontiguousarray(arr, dtype=np.int64)

    def _states(self, initial_state: Any, batch: int) -> list[Any]:
        if initial_state is None:
            return []
        rnns = self._rnns
        if not rnns:
            raise ShapeError("initial_state given but the model has no recurrent layer")
        items = initial_state
        if len(rnns) == 1 and not (isinstance(initial_state, list) and len(initial_state) == 1
                                   and isinstance(initial_state[0], (tuple, list, np.ndarray))
                                   and not _is_state_item(initial_state, rnns[0])):
            items = [initial_state]
        if not isinstance(items, (list, tuple)) or len(items) != len(rnns):
            raise ShapeError(f"initial_state: expected a list with one entry per recurrent layer ({len(rnns)}), "
                             f"each (h, c) for LSTM or h for GRU/SimpleRNN")
        out: list[tuple[np.ndarray | None, ...] | None] = []
        for layer, item in zip(rnns, items):
            if item is None:
                out.append(None)
                continue
            lstm = layer.kind == "lstm"
            parts = tuple(item) if isinstance(item, (tuple, list)) else (item,)
            if len(parts) != (2 if lstm else 1):
                raise ShapeError(f"initial_state for layer '{layer.name}' ({layer.kind}): expected "
                                 f"{'(h, c)' if lstm else 'h'}, got {len(parts)} array(s)")
            nd = layer.num_directions
            shapes = [(nd, batch, layer.hidden_out)] + ([(nd, batch, layer.units)] if lstm else [])
            arrs = []
            for name, p, shape in zip("hc", parts, shapes):
                if p is None:
                    raise ShapeError(f"initial_state for layer '{layer.name}' ({layer.kind}): {name} is None "
                                     "(pass None for the whole entry to start from zeros)")
                a = _as_float_array(p, f"initial_state['{layer.name}'].{name}")
                if a.ndim == 2 and nd == 1:
                    a = a[None]
                if a.shape != shape:
                    raise ShapeError(f"initial_state for layer '{layer.name}' ({layer.kind}): {name} must have shape "
                                     f"{shape} (directions, batch, units), got {np.shape(p)}")
                arrs.append(a)
            out.append(tuple(arrs) if lstm else (arrs[0], None))
        return out

    # ---- the API ------------------------------------------------------------------------
    def predict(self, x: npt.ArrayLike, lengths: npt.ArrayLike | None = None, initial_state: Any = None,
                return_state: bool = False) -> Any:
        """Run the model on a batch.

        x: (batch, time, features) floats (any float/int dtype or nested lists; converted once to
        float32), or (batch, time) integer ids when the first layer is an Embedding.
        lengths: (batch,) valid steps per row (steps at or past the length are masked, with the
        source framework's semantics: PyTorch packed sequences or Keras masking).
        initial_state: one entry per recurrent layer (the bare entry for a single-layer model):
        LSTM (h, c) with h (directions, batch, hidden) and c (directions, batch, units); GRU /
        SimpleRNN h (directions, batch, units).
        x is read in place when it is already a C-contiguous float32 array (never written), and the
        output array is the buffer the core wrote (no copy; the array owns it).
        Returns float32 outputs; with return_state=True, (outputs, states) with states in the
        initial_state format (always a list, one entry per recurrent layer).  A model with several
        outputs (``spec.outputs``: a torch module returning ``(logits, h_n)``, a Keras model with
        several outputs or ``return_state=True``, an ONNX graph with several outputs) returns a tuple
        in the framework's order (nested like torch's ``(out, (h, c))``), its states in the
        framework's layout.
        """
        xi = self._input(x)
        batch = xi.shape[0]
        takes_ids = self._takes_ids
        steps = xi.shape[1] if xi.ndim >= (2 if takes_ids else 3) else 1
        if xi.ndim >= 2 and steps < 1 and (takes_ids or xi.ndim == 3):
            raise ShapeError(f"x: the time axis is empty (shape {xi.shape})")
        lens = self._lengths(lengths, batch, steps)
        states = self._states(initial_state, batch)
        if self.spec.outputs is None:
            return self._core.predict(xi, lens, states, bool(return_state))
        ys, finals = self._core.predict(xi, lens, states, True)
        out = self._assemble(ys, finals)
        return (out, finals) if return_state else out

    def _assemble(self, ys: tuple[np.ndarray, ...], finals: list[Any]) -> Any:
        """The model's outputs (``spec.outputs``, nested as ``spec.output_structure``) from the core's
        outputs ``ys`` (``spec.data_outputs`` order) and the per-recurrent-layer final states ``finals``
        (predict's ``return_state`` format), in the framework's layout (see fastrnn.spec)."""
        spec = self.spec
        data = spec.data_outputs
        rnn_index = {l.name: i for i, l in enumerate(self._rnns)}
        flat: list[np.ndarray] = []
        for o in spec.outputs or []:
            if o.kind == "output":
                flat.append(ys[data.index(o.layers[0])])
                continue
            part = 0 if o.kind == "h" else 1
            arrs = []
            for name in o.layers:
                f = finals[rnn_index[name]]
                arrs.append(f[part] if isinstance(f, tuple) else f)
            if o.direction is not None:
                a = arrs[0][o.direction:o.direction + 1] if o.keep_axis else arrs[0][o.direction]
            else:
                a = arrs[0] if len(arrs) == 1 else np.concatenate(arrs, axis=0)
            flat.append(np.ascontiguousarray(a.transpose(1, 0, 2)) if o.batch_major else a)
        if spec.output_structure is None:
            return tuple(flat)

        def nest(st: Any) -> Any:
            return tuple(nest(v) for v in st) if isinstance(st, list) else flat[st]

        return nest(spec.output_structure)

    __call__ = predict

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to a ``.fastrnn`` file (atomically; see :mod:`fastrnn.io.native`).
        Read it back with ``fastrnn.load(path)``."""
        from .io.native import save_spec

        save_spec(self.spec, path)

    def to_bytes(self) -> bytes:
        """The model as the bytes of a ``.fastrnn`` file (what :meth:`save` writes); back with
        :meth:`Model.from_bytes`.  This is also what ``pickle`` carries (see ``__reduce__``)."""
        from .io.native import dumps_spec

        return dumps_spec(self.spec)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, name: str = "<bytes>") -> "Model":
        """A Model from :meth:`to_bytes` output (or a ``.fastrnn`` file's content), with every check
        of the file reader (:func:`fastrnn.io.native.loads_spec`); errors name ``name``."""
        from .errors import file_errors
        from .io.native import loads_spec

        if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
            raise ArgumentTypeError(f"Model.from_bytes() takes bytes (the content of a .fastrnn file), "
                                    f"got {type(data).__name__}")
        if not isinstance(name, str):
            raise ArgumentTypeError(f"Model.from_bytes(): name must be a str, got {type(name).__name__}")
        with file_errors(name, "read"):  # every error names the origin, whatever raised it
            return cls(loads_spec(data, name))

    def __reduce__(self) -> tuple[Callable[[bytes], Model], tuple[bytes]]:
        # Pickle (multiprocessing, Dask, joblib...) as the native bytes: no pickled arrays or
        # classes, ~ the .fastrnn file's size, read back through the checked native reader.
        return (_model_from_bytes, (self.to_bytes(),))

    @property
    def stateful(self) -> bool:
        """True for a Keras model with ``stateful=True`` layers: its natural use is ``stream()``
        (each ``run``/``step`` continues from the previous call, as Keras does; ``predict`` stays
        stateless and starts from zeros or ``initial_state``)."""
        meta = self.spec.metadata.get("layer_metadata") or {}
        return any(isinstance(v, dict) and v.get("stateful") for v in meta.values())

    def stream(self, batch_size: SupportsIndex | None = None) -> "Stream":
        """A stateful stream of ``batch_size`` sessions: ``step(x_t)``, ``run(chunk)``, ``reset()``.

        The weights stay shared in this Model; each Stream owns only its state, so many streams
        of one model may run at once (one thread per stream).  Forward-only models stream;
        bidirectional and go_backwards layers raise UnsupportedLayerError.
        """
        if batch_size is None:  # a stateful Keras model knows its batch size (checked at load: spec.validate)
            meta = self.spec.metadata.get("layer_metadata") or {}
            sizes: set[Any] = {v.get("batch_size") for v in meta.values() if isinstance(v, dict) and v.get("stateful")}
            sizes.discard(None)
            batch_size = sizes.pop() if len(sizes) == 1 else 1
        return Stream(self, batch_size)

    def generate(self, prompt_ids: npt.ArrayLike, steps: SupportsIndex, temperature: float = 1.0,
                 top_k: SupportsIndex | None = None, seed: SupportsIndex | None = None, greedy: bool = False, *,
                 initial_state: Any = None, stop_ids: npt.ArrayLike | None = None, return_logits: bool = False,
                 beam_width: SupportsIndex = 1, length_penalty: float = 1.0) -> Any:
        """Generate up to ``steps`` ids after each prompt, the whole decoding loop in C++.

        For a language model or a decoder (Embedding -> recurrent layers -> Dense over the
        vocabulary, with or without a softmax / log_softmax): feed the prompt, pick the next id,
        feed it back.

        prompt_ids: (batch, time >= 1) ids, or one prompt (time,).
        steps: the most ids generated per row.
        Picking: ``greedy=True`` takes the argmax (the first maximum); ``beam_width > 1`` runs a beam
        search; otherwise a sample from softmax(logits / ``temperature``), optionally among the
        ``top_k`` largest, deterministic for a ``seed``.
        initial_state: the state to start from, in ``predict``'s ``initial_state`` format (for
        instance an encoder's states from ``predict(..., return_state=True)``); zeros when None.
        stop_ids: an id or a list of ids: a row stops after it emits one of them (the stop id is
        included); its later positions hold -1 (and NaN in the logits).  The loop ends early once
        every row has stopped.
        return_logits: also return the scores each id was picked from, (batch, steps, vocab)
        float32: the model's output at that step, as ``predict`` gives it (logits, or the
        probabilities of a softmax head).
        beam_width: > 1 keeps that many hypotheses per row, expanded by log-probabilities
        (log_softmax of the logits); a stop id ranked among the ``beam_width`` best candidates ends a
        hypothesis; a row is done once ``beam_width`` hypotheses ended, and the loop after ``steps``
        ids.  The returned hypothesis of each row is the one with the best
        ``sum(log p) / len ** length_penalty`` (``len``: its ids, the stop id included; as Hugging
        Face's ``length_penalty`` with ``early_stopping=True``): 0 ranks by the plain sum, > 0
        favours longer sequences.  Beam search is deterministic: ``temperature``, ``top_k``,
        ``seed`` and ``greedy`` are refused with it.  ``greedy=True`` is the beam search of width 1.

        Returns the ids, (batch, steps) int64 (or (steps,) for a single prompt), or with
        ``return_logits`` ``(ids, logits)``.
        """
        p, single = _prompt(self, prompt_ids, None)
        stream = self._core.stream(p.shape[0])
        if initial_state is not None:  # a layer given None keeps the new stream's state (as predict starts it)
            fresh = [f if isinstance(f, tuple) else (f, None) for f in stream.get_state()]
            stream.set_state([f if e is None else e for e, f in zip(self._states(initial_state, p.shape[0]), fresh)])
        return _generate(self, stream, p, single, steps, temperature, top_k, seed, greedy, stop_ids, return_logits,
                         beam_width, length_penalty)


def _prompt(model: Model, prompt_ids: npt.ArrayLike, batch: int | None) -> tuple[np.ndarray, bool]:
    """The prompt of ``generate`` as (batch, time) int64 ids checked against the vocabulary, and
    whether it was a single (time,) prompt.  ``batch``: the rows it must have (a stream's), or None."""
    spec = model.spec
    if not spec.takes_ids:
        raise ShapeError("generate: the model must start with an Embedding (it takes ids)")
    p = ids_array(prompt_ids, "generate: prompt_ids")
    single = p.ndim == 1
    p = p[None] if single else p
    if p.ndim != 2 or p.shape[1] < 1 or p.shape[0] < 1 or (batch is not None and p.shape[0] != batch):
        rows = "batch" if batch is None else f"{batch}" + (" (the stream's batch_size)" if batch != 1 else "")
        raise ShapeError(f"generate: prompt_ids must be integer ids of shape ({rows}, time >= 1)"
                         f"{' or (time,)' if batch in (None, 1) else ''}, got {np.shape(prompt_ids)}")
    vocab = cast(EmbeddingSpec, spec.layers[0]).embeddings.shape[0]
    if p.min() < 0 or p.max() >= vocab:
        raise ShapeError(f"generate: prompt id outside [0, {vocab})")
    return np.ascontiguousarray(p, dtype=np.int64), single


def _generate(model: Model, stream: Any, p: np.ndarray, single: bool, steps: SupportsIndex, temperature: float,
              top_k: SupportsIndex | None, seed: SupportsIndex | None, greedy: bool, stop_ids: npt.ArrayLike | None,
              return_logits: bool, beam_width: SupportsIndex, length_penalty: float) -> Any:
    """Check the arguments of ``Model.generate`` / ``Stream.generate`` and run the loop on a core
    stream (which continues from its state)."""
    steps = int_arg(steps, "generate: steps", 0, MAX_GENERATED // p.shape[0])
    temperature = _float_arg(temperature, "generate: temperature")
    if not greedy and not (temperature > 0 and np.isfinite(temperature)):
        raise ArgumentError(f"generate: temperature must be a finite number > 0, got {temperature!r}")
    # seeds: any int (taken modulo 2**64); top_k: at most the vocabulary (larger means all of it)
    seed = None if seed is None else int_arg(seed, "generate: seed", -(1 << 63), (1 << 64) - 1)
    top_k = None if top_k is None else int_arg(top_k, "generate: top_k", 1, 1 << 62)
    last = model.spec.main_output
    act = getattr(last, "activation", "linear")
    kind = {"softmax": 1, "log_softmax": 2}.get(act, 0)
    if act not in ("linear", "softmax", "log_softmax"):
        raise UnsupportedLayerError(f"generate: the last layer '{last.name}' applies {act!r}; "
                                    "expected logits (linear), softmax or log_softmax over the vocabulary")
    vocab = int(stream.output_size)
    beam_width = int_arg(beam_width, "generate: beam_width", 1, vocab)
    length_penalty = _float_arg(length_penalty, "generate: length_penalty")
    if not np.isfinite(length_penalty):
        raise ArgumentError(f"generate: length_penalty must be finite, got {length_penalty!r}")
    if beam_width > 1:
        refused = [name for name, given in (("greedy=True", greedy), (f"temperature={temperature!r}", temperature != 1.0),
                                            (f"top_k={top_k}", top_k is not None), (f"seed={seed}", seed is not None))
                   if given]
        if refused:
            raise ArgumentError(f"generate: beam search (beam_width={beam_width}) is deterministic and does not sample: "
                                f"drop {', '.join(refused)}")
    if not isinstance(return_logits, (bool, np.bool_)):
        raise ArgumentTypeError(f"generate: return_logits must be a bool, got {type(return_logits).__name__}")
    stops = None
    if stop_ids is not None:
        arr = _asarray(stop_ids, "generate: stop_ids")
        if arr.size == 0 and arr.ndim == 1:  # [] : no stop id
            arr = arr.astype(np.int64)
        if arr.dtype == object or arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer) or arr.ndim > 1:
            raise ArgumentTypeError(f"generate: stop_ids must be an id or a list of integer ids, got {stop_ids!r:.60}")
        arr = arr.reshape(-1)
        bad = arr[(arr < 0) | (arr >= vocab)]
        if bad.size:
            raise ArgumentError(f"generate: stop id {bad[0]} is outside [0, {vocab}) (the model's {vocab} outputs)")
        stops = np.ascontiguousarray(arr, dtype=np.int64)
    if seed is None:
        seed = int(cast(int, np.random.SeedSequence().entropy) % (1 << 64))
    out = stream.generate(p, steps, kind, bool(greedy), temperature, min(top_k or 0, 1 << 31), seed % (1 << 64),
                          stops, beam_width, length_penalty, bool(return_logits))
    if single:
        return (out[0][0], out[1][0]) if return_logits else out[0]
    return out


def _float_arg(value: Any, what: str) -> float:
    """A float argument (any real number; a bool, a string or bytes is refused with ArgumentTypeError)."""
    try:
        if isinstance(value, (str, bytes, bool, np.bool_)):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{what} must be a number, got {value!r:.40}") from None


class Stream:
    """Stateful step-by-step inference.

    ``step(x, out=None)``: x ``(batch, features)`` (or ``(batch,)`` ids) -> the model's output
    for this step ``(batch, outputs)``; allocation-free in C++ (pass ``out=`` to reuse a buffer).
    ``run(chunk)``: ``(batch, time, features)`` -> what ``predict`` returns for the chunk,
    continuing from the current state.  Stepping a sequence through ``step``/``run`` in any
    split equals ``predict`` on the whole sequence.  ``reset()`` returns every row to the initial
    state (zeros, or a layer's default initial state), ``reset(rows)`` only those.  ``state`` gets/sets the state of every recurrent layer in the
    ``predict(initial_state=...)`` format (LSTM ``(h, c)``, else ``h``; ``(1, batch, units)``).

    A model with several outputs (``spec.outputs``): the state outputs are the stream's ``state``;
    ``step`` returns the step's value of the other (data) outputs: the bare array when there is one
    (the main output: the logits of a ``(logits, h_n)`` char LM), else a tuple in the model's output
    order; ``run`` returns what ``predict`` returns (every output, the state outputs being the
    states after the chunk).
    """

    def __init__(self, model: Model, batch_size: SupportsIndex = 1) -> None:
        self.model = model
        self._s = model._core.stream(int_arg(batch_size, "stream batch_size", 1, MAX_STREAM_ROWS))
        self.run: Callable[[npt.ArrayLike], Any] = self._s.run
        self.step: Callable[..., Any] = self._s.step
        if model.spec.outputs is not None:
            self.run = self._run_outputs
            data = model.spec.data_outputs
            if len(data) > 1:
                # the core's step outputs (data_outputs order) -> the model's data outputs, found once
                self._picks = tuple(data.index(o.layers[0]) for o in model.spec.outputs if o.kind == "output")
                self.step = self._step_outputs
                return
        # The hot calls go straight to compiled code (no Python frame in between): the thin
        # Cython entry point when it was built (measured faster than pybind11), else pybind11.
        try:
            from ._step import FastStep

            self.step = FastStep(self._s)
        except ImportError:
            pass

    def _step_outputs(self, x: npt.ArrayLike, out: None = None) -> tuple[np.ndarray, ...]:
        if out is not None:
            raise ArgumentError("step: out= is not supported for a model with several outputs (step returns a tuple)")
        ys = self._s.step_all(x)
        return tuple(ys[k] for k in self._picks)

    def _run_outputs(self, x: npt.ArrayLike) -> Any:
        ys = self._s.run(x)
        return self.model._assemble(ys, list(self._s.get_state()))  # the states after the chunk

    @property
    def batch_size(self) -> int:
        return int(self._s.batch_size)

    def reset(self, rows: npt.ArrayLike | None = None) -> None:
        if rows is not None:
            rows = np.atleast_1d(_asarray(rows, "reset: rows"))
            if rows.dtype == bool:
                rows = np.flatnonzero(rows)
            if not np.issubdtype(rows.dtype, np.integer):
                raise ShapeError(f"reset: rows must be integer indices, got dtype {rows.dtype}")
            if rows.size and (rows.min() < 0 or rows.max() >= self.batch_size):
                bad = rows[(rows < 0) | (rows >= self.batch_size)].flat[0]
                raise ShapeError(f"reset: row {bad} is outside [0, {self.batch_size})")
        self._s.reset(rows)

    @property
    def state(self) -> list[Any]:
        return list(self._s.get_state())

    @state.setter
    def state(self, value: Any) -> None:
        checked = self.model._states(value, self.batch_size)
        if not checked:
            raise ShapeError("state: expected one entry per recurrent layer")
        if any(c is None for c in checked):
            raise ShapeError("state: every recurrent layer needs an entry (None is not allowed here)")
        self._s.set_state([(h, c) for h, c in checked])

    def generate(self, prompt_ids: npt.ArrayLike, steps: SupportsIndex, temperature: float = 1.0,
                 top_k: SupportsIndex | None = None, seed: SupportsIndex | None = None, greedy: bool = False, *,
                 stop_ids: npt.ArrayLike | None = None, return_logits: bool = False, beam_width: SupportsIndex = 1,
                 length_penalty: float = 1.0) -> Any:
        """:meth:`Model.generate` continuing from this stream's state (set ``state`` first to start
        from, say, an encoder's states).  ``prompt_ids``: (batch_size, time >= 1), or (time,) for a
        stream of one row.  Afterwards each row holds the state after its prompt and every id it
        returned but the last (a stop id, or the last of ``steps``; with beam search, of the returned
        hypothesis): feeding that id as the next prompt continues the sequence, so greedy
        decoding in several calls equals one call."""
        p, single = _prompt(self.model, prompt_ids, self.batch_size)
        return _generate(self.model, self._s, p, single, steps, temperature, top_k, seed, greedy, stop_ids,
                         return_logits, beam_width, length_penalty)


def _ndim(obj: Any) -> int:
    try:
        return np.ndim(obj)
    except (ValueError, TypeError):  # ragged: not an array at all
        return -1


def _is_state_item(obj: Any, layer: RecurrentSpec) -> bool:
    """True when ``obj`` looks like one layer's state rather than a list of per-layer states."""
    if layer.kind == "lstm":
        return len(obj) == 2 and all(_ndim(p) in (2, 3) for p in obj)
    return _ndim(obj) in (2, 3)


def _model_from_bytes(data: bytes) -> Model:
    """Unpickle a :class:`Model` (``Model.__reduce__``): the checked native reader, nothing else."""
    return Model.from_bytes(data, "<pickled fastrnn.Model>")
