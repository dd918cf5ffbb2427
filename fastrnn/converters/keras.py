"""Keras -> :class:`fastrnn.spec.ModelSpec`: one path, a model *configuration* plus its weight arrays.

:func:`spec_from_keras_config` converts the configuration of a ``Sequential`` or functional model
(the JSON of ``model.to_json()``, ``config.json`` of a ``.keras`` file, ``model_config`` of an
``.h5`` file; Keras 2 or 3) plus a callback giving each layer's weight arrays, without importing
Keras.  Nothing in a configuration is ever deserialized into code: layer classes are only compared
by name (a Lambda or a custom class is reported, never executed).  The files
(:mod:`fastrnn.io.keras_file`) and live models go through it:

:func:`spec_from_keras` turns a *live* Keras 3 model into exactly that: ``model.to_json()`` and
the variables of each layer (``layer.weights``: the arrays, in the order, that a ``.keras`` file
stores).  What it adds is only what a configuration cannot carry: the refusal of subclassed and
unbuilt models, the backend name and the layers' compute dtypes in ``spec.metadata``.

The model is a chain from one sequence input, or a tree of chains sharing a trunk: a functional
model may have several outputs (``ModelSpec.outputs``, in the model's output order): layer
outputs, inner layers' outputs, heads on one trunk (``ModelSpec.layer_inputs``) and the states of
``return_state=True`` layers (LSTM ``[out, h, c]``, GRU / SimpleRNN ``[out, h]``, Bidirectional
``[out, h_fwd, c_fwd, h_bwd, c_bwd]``, each ``(B, units)``); ``predict`` then returns a tuple.  A
single output stays a bare array (or the two outputs of a final ``Bidirectional(merge_mode=None)``).
Extra ``keras.Input`` tensors are allowed as ``initial_state`` of recurrent layers; ``x[:, -1]``
is the one ``keras.ops`` operation; nested ``Sequential`` / functional models are flattened.

Everything Keras-specific is fixed here:

* weights: ``kernel [I, G*H]`` / ``recurrent_kernel [H, G*H]`` are transposed to
  ``[G*H, I]`` / ``[G*H, H]``; LSTM gates ``i, f, c, o`` are already canonical; GRU gates
  ``z, r, h`` become ``r, z, n``; GRU ``reset_after=True`` bias ``(2, 3H)`` is
  ``(input bias, recurrent bias)``; single biases go to ``b_ih`` with ``b_hh = 0``.
* ``go_backwards=True`` -> direction ``"reverse"`` (output in processing order, as Keras).
* mask semantics (measured with Keras 3.15 on the TensorFlow backend; pinned by
  ``tests/test_keras.py``): a masked step never changes the state.  A plain recurrent layer
  (forward or ``go_backwards``) outputs at a masked step the last output emitted so far, zeros
  before the first valid step (also with an initial_state) -> ``mask_mode="hold"``;
  ``go_backwards`` keeps its output in processing order and the mask is passed on unreversed.
  ``Bidirectional`` forces ``zero_output_for_mask = return_sequences`` on both of its layers, so
  with ``return_sequences=True`` masked steps output zeros in both directions -> ``"zero"``;
  with ``return_sequences=False`` each direction returns its last valid output (zeros if none,
  even with an initial_state) -> ``"hold"``.  A plain layer built with
  ``zero_output_for_mask=True`` -> ``"zero"`` when it returns sequences; with
  ``return_sequences=False`` Keras returns zeros when the last processed step is masked, which
  no ``mask_mode`` expresses: refused when a mask reaches the layer.
* ``stateful=True`` layers are converted (a call starts from reset states, or the given
  initial_state) and recorded as ``spec.metadata["layer_metadata"][name] = {"stateful": True,
  "batch_size": N}`` for streaming.
* Keras mask quirks that no spec can express, refused when a mask is active: an RNN called with
  ``initial_state`` tensors gets *no* mask (``Layer.__call__`` fills ``mask=`` only for
  single-tensor calls; a Keras 3 functional config records the ``mask`` a call received) although
  later layers stay masked -- pass ``mask=`` explicitly; a nested model masks inside but drops the
  mask at its output; ``Masking`` after another mask source replaces the mask (fastrnn ANDs them).

Every unsupported layer / option of the model is collected and reported in one
:class:`~fastrnn.errors.UnsupportedLayerError`.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any, Callable, Iterator, Literal, Optional, Sequence, TypedDict

import numpy as np
import numpy.typing as npt

from . import unique_name
from ..errors import ConversionError, ConversionWarning, ModelFormatError, UnsupportedLayerError
from ..spec import (GATES, ActivationSpec, DenseSpec, DirectionWeights, EmbeddingSpec, LastStepSpec, LayerSpec,
                    MaskingSpec, ModelSpec, OutputSpec, RecurrentSpec)

__all__ = ["spec_from_keras", "spec_from_keras_config"]

# Keras activation name -> spec name.  Every entry is checked numerically in tests/test_keras.py.
_ACTIVATION_NAMES = {
    "linear": "linear",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "relu": "relu",
    "relu6": "relu6",
    "hard_sigmoid": "hard_sigmoid",  # Keras 3: relu6(x + 3) / 6
    "elu": "elu",
    "selu": "selu",
    "softplus": "softplus",
    "softsign": "softsign",
    "silu": "silu",
    "swish": "silu",
    "hard_silu": "hard_silu",
    "hard_swish": "hard_silu",
    "exponential": "exponential",
    "leaky_relu": "leaky_relu",  # keras.activations.leaky_relu default negative_slope=0.2
    "gelu": "gelu",  # keras.activations.gelu default approximate=False (erf form)
    "hard_tanh": "hard_tanh",
    "mish": "mish",
    "log_sigmoid": "log_sigmoid",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
}
_LEAKY_RELU_SLOPE = 0.2  # the only slope spec's "leaky_relu" has (the Keras 3 activation default)

_NOOP_LAYERS = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                "ActivityRegularization", "Identity")
_RNN_LAYERS = {"SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}
_RNN_CELLS = {"SimpleRNNCell": "simple_rnn", "LSTMCell": "lstm", "GRUCell": "gru"}
_GRU_PERM = (1, 0, 2)  # Keras z, r, h -> canonical r, z, n
# Keras 2 (standalone 2.x and tf.keras / tf_keras 2.x) activation name -> spec name.  Differs from
# Keras 3 where the definition differs: hard_sigmoid is clip(0.2x + 0.5, 0, 1) in Keras 2.
# Checked numerically against tf_keras in tests/test_keras_files.py.
_ACTIVATION_NAMES_K2 = {
    "linear": "linear", "tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "hard_sigmoid": "hard_sigmoid_tf2",
    "elu": "elu", "selu": "selu", "softplus": "softplus", "softsign": "softsign", "swish": "silu", "silu": "silu",
    "exponential": "exponential", "gelu": "gelu", "mish": "mish", "softmax": "softmax",
}

_OP_MODULE_PREFIXES = ("keras.src.ops", "keras.ops")
_OP_NAMES = ("GetItem", "NotEqual", "Any")  # the operations of x[:, -1] and of the masks Keras computes
_OP_MODULE_PREFIXES = ("keras.src.ops", "keras.ops")
_OP_NAMES = ("GetItem", "NotEqual", "Any")  # the operations of x[:, -1] and of the masks Keras computes
_RECURRENT_CLASSES = tuple(_RNN_LAYERS) + ("RNN", "Bidirectional")

# A serialized tensor's keras_history (layer name, node index, tensor index), as read from the config.
_History = tuple[Any, ...]
# One functional call of a layer: (layer name, node index).
_CallKey = tuple[str, int]
# The weights callback of spec_from_keras_config: (layer names from the top model down, weight-file keys,
# entry) -> the layer's arrays in Keras weight order (None: none).
_WeightsFn = Callable[[tuple[str, ...], tuple[Optional[str], ...], "_CfgLayer"], Optional[Sequence[npt.ArrayLike]]]
_Arrays = Sequence[npt.ArrayLike]


# =========================================================================== live models
def _import_keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras  # noqa: F401  (lazy: fastrnn must import without keras)

    return keras


def spec_from_keras(model: Any) -> ModelSpec:
    """Convert a live Keras 3 model (Sequential or chain functional) into a validated :class:`ModelSpec`.

    The model's configuration (``model.to_json()``) and its layers' variables go through
    :func:`spec_from_keras_config`, the path of the model files.  Raises
    :class:`~fastrnn.errors.UnsupportedLayerError` listing every unsupported layer / option of the
    model (also for a subclassed model, which has no layer graph to convert),
    :class:`~fastrnn.errors.ConversionError` for an unbuilt model or an object that is no model.

    ``spec.metadata["keras_state_inputs"]`` lists the model inputs that are ``initial_state``
    of a recurrent layer: ``{"input": index in model.inputs, "name", "layer": spec layer name,
    "recurrent_index": index among the spec's recurrent layers, "position": index in that
    layer's Keras initial_state list}`` (Keras order: ``[h, c]`` per direction, forward first).
    """
    keras = _import_keras()
    if not isinstance(model, keras.Model):
        raise ConversionError(f"expected a keras.Model, got {type(model).__module__}.{type(model).__name__}")
    from keras.src.models.functional import Functional

    if not isinstance(model, (keras.Sequential, Functional)):
        raise UnsupportedLayerError(f"cannot convert Keras model '{model.name}' (1 problem):\n  - model: subclassed "
                                    f"Keras model '{model.name}' ({type(model).__name__}) cannot be converted: only "
                                    "Sequential and functional models are supported")
    try:
        built = bool(model.built and model.inputs and model.outputs)
    except (AttributeError, ValueError):  # a Sequential without an Input has no inputs yet
        built = False
    if not built:
        raise ConversionError(f"Keras model '{model.name}' is not built: give it an Input or call it on data first")
    try:
        config = json.loads(model.to_json())
    except (TypeError, ValueError, NotImplementedError) as e:  # a custom layer without get_config
        raise UnsupportedLayerError(f"cannot convert Keras model '{model.name}': its configuration cannot be "
                                    f"serialized ({type(e).__name__}: {str(e)[:300]})") from None

    def weights(names: tuple[str, ...], keys: tuple[str | None, ...], entry: _CfgLayer
                ) -> list[npt.NDArray[np.float32]]:
        layer: Any = model
        for name in names:
            layer = layer.get_layer(name)
        return [np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float32) for v in layer.weights]

    spec = spec_from_keras_config(config, weights, keras_version=keras.__version__)
    spec.metadata["keras_backend"] = keras.backend.backend()
    # fastrnn computes in float32; a mixed-precision Keras model (float16 / bfloat16 compute) agrees
    # only to its own precision.  Recorded, not refused.
    dtypes = sorted({str(getattr(getattr(l, "dtype_policy", None), "compute_dtype", "float32"))
                     for l in model._flatten_layers(include_self=False)} - {"float32"})
    if dtypes:
        spec.metadata["keras_compute_dtypes"] = dtypes
    return spec


# =========================================================================== weight arrays
def _mask_mode(zero_output_for_mask: bool, return_sequences: bool, mask_active: bool) -> tuple[str | None, str | None]:
    """``(mask_mode, problem)`` of one Keras recurrent layer.

    Plain layers hold the last output at masked steps; ``zero_output_for_mask`` (forced to
    ``return_sequences`` by ``Bidirectional``) outputs zeros.  With ``return_sequences=False``
    both give the last valid output, except that ``zero_output_for_mask=True`` returns zeros when
    the last processed step is masked -- no mask_mode expresses that (a problem when masked)."""
    if zero_output_for_mask and not return_sequences:
        if mask_active:
            return None, ("zero_output_for_mask=True with return_sequences=False and a mask: Keras then returns "
                          "zeros when the last processed step is masked, which fastrnn cannot express")
        return "hold", None
    return ("zero" if zero_output_for_mask else "hold"), None


def _rnn_direction_from_arrays(where: str, kind: str, units: int, arrays: _Arrays, use_bias: bool,
                               reset_after: bool) -> tuple[DirectionWeights, int]:
    """Keras weight arrays of one direction (``[kernel [I, G*H], recurrent_kernel [H, G*H], bias]``,
    the order of ``layer.get_weights()`` / the weight file) -> canonical :class:`DirectionWeights`.

    Transposes; GRU gates ``z, r, h`` -> ``r, z, n``; GRU ``reset_after=True`` bias ``(2, 3H)`` =
    (input bias, recurrent bias); a single bias goes to ``b_ih`` with ``b_hh = 0``.
    Returns ``(DirectionWeights, input_size)``; wrong counts / shapes raise ModelFormatError."""
    g = GATES[kind]
    names = ["kernel", "recurrent_kernel"] + (["bias"] if use_bias else [])
    if len(arrays) != len(names):
        raise ModelFormatError(f"{where}: expected {len(names)} weight arrays ({', '.join(names)}), got {len(arrays)}")
    arrs = [np.asarray(a, dtype=np.float32) for a in arrays]
    k, r = arrs[0], arrs[1]
    if k.ndim != 2 or k.shape[1] != g * units or k.shape[0] < 1:
        raise ModelFormatError(f"{where}: kernel has shape {k.shape}, expected (input_size, {g * units})")
    if r.shape != (units, g * units):
        raise ModelFormatError(f"{where}: recurrent_kernel has shape {r.shape}, expected {(units, g * units)}")
    k, r = k.T, r.T
    bias = arrs[2] if use_bias else None
    zeros = np.zeros(g * units, np.float32)
    if kind == "gru":
        def perm(a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            blocks = np.split(a, 3, axis=0)
            return np.concatenate([blocks[i] for i in _GRU_PERM], axis=0)

        k, r = perm(k), perm(r)
        if bias is None:
            b_ih, b_hh = zeros, zeros.copy()
        elif reset_after:
            if bias.shape != (2, 3 * units):
                raise ModelFormatError(f"{where}: GRU reset_after=True bias has shape {bias.shape}, expected {(2, 3 * units)}")
            b_ih, b_hh = perm(bias[0]), perm(bias[1])
        else:
            if bias.shape != (3 * units,):
                raise ModelFormatError(f"{where}: GRU reset_after=False bias has shape {bias.shape}, expected {(3 * units,)}")
            b_ih, b_hh = perm(bias), zeros
    else:
        if bias is not None and bias.shape != (g * units,):
            raise ModelFormatError(f"{where}: bias has shape {bias.shape}, expected {(g * units,)}")
        b_ih = zeros if bias is None else bias
        b_hh = zeros.copy()
    return DirectionWeights(w_ih=k, w_hh=r, b_ih=b_ih, b_hh=b_hh), int(k.shape[1])


def _dense_from_arrays(where: str, arrays: _Arrays, use_bias: bool, units: int | None = None
                       ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
    """Keras Dense ``[kernel [I, O], bias [O]]`` -> ``(weight [O, I], bias or None)``."""
    names = ["kernel"] + (["bias"] if use_bias else [])
    if len(arrays) != len(names):
        raise ModelFormatError(f"{where}: expected {len(names)} weight arrays ({', '.join(names)}), got {len(arrays)}")
    w = np.asarray(arrays[0], dtype=np.float32)
    if w.ndim != 2 or (units is not None and w.shape[1] != units):
        raise ModelFormatError(f"{where}: kernel has shape {w.shape}, expected (input_size, {units})")
    b = None
    if use_bias:
        b = np.asarray(arrays[1], dtype=np.float32)
        if b.shape != (w.shape[1],):
            raise ModelFormatError(f"{where}: bias has shape {b.shape}, expected {(w.shape[1],)}")
    return w.T, b


def _stateful_metadata(names: list[str], batch_size: object) -> dict[str, dict[str, Any]]:
    """``spec.metadata["layer_metadata"]``: ``{spec layer name: {"stateful": True, "batch_size": N}}``."""
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        d: dict[str, Any] = {"stateful": True}
        if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0:
            d["batch_size"] = batch_size
        out[n] = d
    return out


def _last_step_key(key: object) -> bool:
    """True for ``x[:, -1]`` / ``x[:, -1, :]`` (also with ``...`` as the last item)."""
    if isinstance(key, list):
        key = tuple(key)
    if not isinstance(key, tuple) or len(key) not in (2, 3):
        return False

    def full(s: object) -> bool:
        return isinstance(s, slice) and s == slice(None) or s is Ellipsis

    return (isinstance(key[0], slice) and key[0] == slice(None) and isinstance(key[1], int)
            and not isinstance(key[1], bool) and key[1] == -1 and (len(key) == 2 or full(key[2])))


# =========================================================================== configurations
def keras_writer_family(version: object) -> str:
    """``"keras3"`` | ``"tf_keras2"`` (tf.keras 2.x / Keras >= 2.4) | ``"keras2"`` (multi-backend Keras
    2.0-2.3) | ``"keras1"`` (unsupported) | ``"unknown"`` from a ``keras_version`` string."""
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    if not isinstance(version, str) or not version.strip():
        return "unknown"
    v = version.strip()
    parts = v.split("-")[0].split(".")
    try:
        major = int(parts[0])
        minor = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except ValueError:
        return "unknown"
    if major >= 3:
        return "keras3"
    if major == 2:
        return "tf_keras2" if (minor >= 4 or v.endswith("-tf")) else "keras2"
    return "keras1"


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case (the .keras weight-file keys)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _CfgLayer:
    """One layer entry of a model config (Keras 2 or 3 flavour), read defensively."""

    def __init__(self, entry: object, where: str) -> None:
        if not isinstance(entry, dict):
            raise ModelFormatError(f"{where}: a layer entry is not a JSON object")
        self.entry: dict[str, Any] = entry
        class_name = entry.get("class_name")
        if not isinstance(class_name, str):
            raise ModelFormatError(f"{where}: a layer entry has no class_name")
        self.class_name: str = class_name
        cfg = entry.get("config", {})
        self.config: dict[str, Any] = cfg if isinstance(cfg, dict) else {}
        name = entry.get("name", self.config.get("name"))
        self.name: str = name if isinstance(name, str) else f"<unnamed {self.class_name}>"
        self.module: object = entry.get("module")
        self.registered_name: object = entry.get("registered_name")

    @property
    def is_op(self) -> bool:
        """A ``keras.ops`` operation (a legacy .h5 file written by Keras 3 records no module: known by name)."""
        if self.module is None:
            return self.class_name in _OP_NAMES
        return isinstance(self.module, str) and self.module.startswith(_OP_MODULE_PREFIXES)

    @property
    def is_model(self) -> bool:
        return self.class_name in ("Sequential", "Functional", "Model")

    def builtin(self, cls: str) -> bool:
        """The built-in Keras class ``cls`` (not a custom class that happens to share the name)."""
        if self.class_name != cls:
            return False
        mod_ok = self.module is None or (isinstance(self.module, str) and self.module.split(".")[0] in ("keras", "tf_keras"))
        reg_ok = self.registered_name in (None, cls) or (isinstance(self.registered_name, str)
                                                          and self.registered_name.endswith(">" + cls)
                                                          and self.registered_name.startswith("keras"))
        return mod_ok and reg_ok


class _Ctx:
    """Collects problems while walking the model; names activations by the writer's Keras family."""

    def __init__(self, family: str, origin: str) -> None:
        self.family = family
        self.origin = origin
        self.problems: list[str] = []
        self.stateful_layers: list[str] = []
        # several outputs: (call key, tensor index, name), see _functional_steps
        self.outputs: list[tuple[_CallKey, int, str]] = []

    def problem(self, layer: _CfgLayer | None, msg: str) -> None:
        where = f"layer '{layer.name}' ({layer.class_name})" if layer is not None else "model"
        self.problems.append(f"{where}: {msg}")

    def activation(self, layer: _CfgLayer, value: object, what: str = "activation") -> str | None:
        if value is None:
            return "linear"
        table = _ACTIVATION_NAMES if self.family == "keras3" else _ACTIVATION_NAMES_K2
        name = value
        if isinstance(value, dict):  # a serialized function / object (Keras 3): never deserialized
            inner = value.get("config")
            name = inner if (value.get("class_name") == "function" and value.get("module") == "keras.activations"
                             and isinstance(inner, str)) else None
            inner_desc = value.get("config")
            desc = inner_desc if isinstance(inner_desc, str) else (value.get("registered_name") or value.get("class_name")
                                                                   or "<serialized Python code / lambda>")
        else:
            desc = value
        if self.family == "unknown" and name == "hard_sigmoid":
            self.problem(layer, f"{what} 'hard_sigmoid' is defined differently by Keras 2 and Keras 3 and the writer's "
                                "Keras version is unknown: pass keras_version='2.x' or '3.x'")
            return None
        if isinstance(name, str) and name in table:
            return table[name]
        self.problem(layer, f"{what} {desc!r} is not supported (custom or unsupported activation; supported: "
                            f"{', '.join(sorted(table))})")
        return None


def _cfg_int(layer: _CfgLayer, key: str, cfg: dict[str, Any] | None = None) -> int:
    v = (cfg if cfg is not None else layer.config).get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ModelFormatError(f"layer '{layer.name}' ({layer.class_name}): config '{key}' must be a positive int, got {v!r}")
    return v


def _quantized(layer: _CfgLayer) -> bool:
    if layer.config.get("quantization_config") is not None or layer.config.get("quantization_mode"):
        return True
    d = layer.config.get("dtype")
    if isinstance(d, dict):
        if "Quantiz" in str(d.get("class_name", "")):
            return True
        inner = d.get("config")
        d = inner.get("name") if isinstance(inner, dict) else None
    return isinstance(d, str) and ("int8" in d or "int4" in d or "float8" in d) and "_from_" in d


def _rnn_cell_cfg(ctx: _Ctx, layer: _CfgLayer, sub: _CfgLayer) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(kind, cell config, rnn config) of a SimpleRNN / LSTM / GRU / RNN(cell) config entry ``sub``; None
    (a problem) when it is not supported."""
    for cname, kind in _RNN_LAYERS.items():
        if sub.builtin(cname):
            return kind, sub.config, sub.config
    if sub.builtin("RNN"):
        cell = sub.config.get("cell")
        if isinstance(cell, dict):
            c = _CfgLayer(cell, ctx.origin)
            for cname, kind in _RNN_CELLS.items():
                if c.builtin(cname):
                    return kind, c.config, sub.config
            ctx.problem(layer, f"cell {c.class_name} is not supported (supported: SimpleRNNCell, LSTMCell, GRUCell"
                               + ("; for a stack of cells use one RNN layer per cell, return_sequences=True below the "
                                  "last" if c.class_name == "StackedRNNCells" else "") + ")")
        else:
            ctx.problem(layer, "RNN with a list of cells (StackedRNNCells) is not supported: use one RNN layer per "
                               "cell, return_sequences=True below the last")
        return None
    ctx.problem(layer, f"recurrent layer class {sub.class_name} is not supported")
    return None


class _Direction(TypedDict):
    """One converted direction of a recurrent layer (:func:`_cfg_rnn_direction`)."""

    kind: str
    activation: str
    recurrent_activation: str
    reset_after: bool
    w: DirectionWeights
    units: int
    in_size: int
    mode: str
    return_sequences: bool
    go_backwards: bool
    stateful: bool


def _cfg_rnn_direction(ctx: _Ctx, layer: _CfgLayer, sub: _CfgLayer, arrays: _Arrays, mask_active: bool,
                       zero_output: bool | None) -> _Direction | None:
    """Convert one direction.  Returns dict(kind, cfg..., w, units, in_size, mode) or None."""
    found = _rnn_cell_cfg(ctx, layer, sub)
    if found is None:
        return None
    kind, cell, rnn = found
    ok = True
    if rnn.get("time_major"):
        ctx.problem(layer, "time_major=True is not supported")
        ok = False
    if zero_output is None:
        zero_output = bool(rnn.get("zero_output_for_mask", False))
    rs = bool(rnn.get("return_sequences", False))
    mode, msg = _mask_mode(zero_output, rs, mask_active)
    if msg:
        ctx.problem(layer, msg)
        ok = False
    units = _cfg_int(layer, "units", cell)
    act = ctx.activation(layer, cell.get("activation", "tanh"))
    ract: str | None
    if kind == "simple_rnn":
        ract = "sigmoid"
    else:
        default_ract = "hard_sigmoid" if ctx.family == "keras2" else "sigmoid"
        ract = ctx.activation(layer, cell.get("recurrent_activation", default_ract), "recurrent_activation")
    reset_after = bool(cell.get("reset_after", ctx.family in ("keras3", "tf_keras2"))) if kind == "gru" else True
    use_bias = bool(cell.get("use_bias", True))
    if act is None or ract is None or mode is None or not ok:  # mode is None only with a problem (not ok)
        return None
    w, in_size = _rnn_direction_from_arrays(f"layer '{layer.name}' ({layer.class_name})", kind, units, arrays,
                                            use_bias, reset_after)
    return {"kind": kind, "activation": act, "recurrent_activation": ract, "reset_after": reset_after, "w": w,
            "units": units, "in_size": in_size, "mode": mode, "return_sequences": rs,
            "go_backwards": bool(rnn.get("go_backwards", False)), "stateful": bool(rnn.get("stateful", False))}


def _n_rnn_arrays(ctx: _Ctx, layer: _CfgLayer, sub: _CfgLayer) -> int | None:
    found = _rnn_cell_cfg(_Ctx(ctx.family, ctx.origin), layer, sub)
    return (3 if bool(found[1].get("use_bias", True)) else 2) if found else None


def _cfg_bidirectional(ctx: _Ctx, layer: _CfgLayer, name: str, arrays: _Arrays, mask_active: bool
                       ) -> RecurrentSpec | None:
    fwd_entry = layer.config.get("layer")
    if not isinstance(fwd_entry, dict):
        raise ModelFormatError(f"layer '{layer.name}' (Bidirectional): config has no wrapped 'layer'")
    fw = _CfgLayer(fwd_entry, ctx.origin)
    bwd_entry = layer.config.get("backward_layer")
    if isinstance(bwd_entry, dict):
        bw = _CfgLayer(bwd_entry, ctx.origin)
    else:  # derived as Keras does: the same config with go_backwards flipped
        bcfg = dict(fw.config)
        bcfg["go_backwards"] = not bool(bcfg.get("go_backwards", False))
        bw = _CfgLayer(dict(fwd_entry, config=bcfg), ctx.origin)
    n_problems = len(ctx.problems)
    nf, nb = _n_rnn_arrays(ctx, layer, fw), _n_rnn_arrays(ctx, layer, bw)
    if nf is None or nb is None:
        _rnn_cell_cfg(ctx, layer, fw if nf is None else bw)
        return None
    if len(arrays) != nf + nb:
        raise ModelFormatError(f"layer '{layer.name}' (Bidirectional): expected {nf + nb} weight arrays "
                               f"(forward {nf} + backward {nb}), got {len(arrays)}")
    rs = bool(fw.config.get("return_sequences", False))
    zero = rs  # Bidirectional forces zero_output_for_mask = return_sequences (Keras 3 and tf.keras 2)
    if ctx.family == "keras2" and rs and mask_active:
        ctx.problem(layer, "a mask reaching a Bidirectional(return_sequences=True) saved by multi-backend Keras 2 "
                           "(< 2.4): its masked-step outputs are not pinned by fastrnn's tests; re-save the model "
                           "with tf.keras / Keras 3")
        return None
    f = _cfg_rnn_direction(ctx, layer, fw, arrays[:nf], mask_active, zero)
    b = _cfg_rnn_direction(ctx, layer, bw, arrays[nf:], mask_active, zero)
    if f is None or b is None:
        return None
    if f["go_backwards"] or not b["go_backwards"]:
        ctx.problem(layer, f"forward layer go_backwards={f['go_backwards']} / backward layer go_backwards="
                           f"{b['go_backwards']}: only a forward layer with go_backwards=False (and its backward twin) "
                           "is supported")
    label = {"kind": "cell", "in_size": "input size"}
    compared: tuple[Literal["kind", "units", "in_size", "activation", "return_sequences"], ...] = (
        "kind", "units", "in_size", "activation", "return_sequences")
    diffs = [f"{label.get(k, k)} {f[k]} vs {b[k]}" for k in compared if f[k] != b[k]]
    if f["kind"] == b["kind"] != "simple_rnn" and f["recurrent_activation"] != b["recurrent_activation"]:
        diffs.append(f"recurrent_activation {f['recurrent_activation']} vs {b['recurrent_activation']}")
    if f["kind"] == b["kind"] == "gru" and f["reset_after"] != b["reset_after"]:
        diffs.append(f"reset_after {f['reset_after']} vs {b['reset_after']}")
    if diffs:
        ctx.problem(layer, "the backward layer differs from the forward layer (" + "; ".join(diffs) + ")")
    if len(ctx.problems) != n_problems:
        return None
    merge = layer.config.get("merge_mode", "concat")
    merge = "none" if merge is None else merge
    if merge not in ("concat", "sum", "mul", "ave", "none"):
        ctx.problem(layer, f"merge_mode {merge!r} is not supported")
        return None
    if f["stateful"] or b["stateful"]:
        ctx.stateful_layers.append(name)
    return RecurrentSpec(kind=f["kind"], name=name, input_size=f["in_size"], units=f["units"], weights=[f["w"], b["w"]],
                         activation=f["activation"], recurrent_activation=f["recurrent_activation"],
                         reset_after=f["reset_after"], direction="bidirectional", merge_mode=merge,
                         return_sequences=rs, mask_mode=f["mode"])


# ---- the chain of calls
class _Step:
    """One call of the chain: a layer (or ``keras.ops`` operation) entry and how it is called.

    ``names`` / ``keys``: the layer's path from the top model (layer names; weight-file keys) for the
    weights callback.  ``gets_mask``: whether Keras passes a mask to the call (a Keras 3 functional
    config records it; None = follow the mask of the chain).  ``init``: the model-input indices
    given as its initial_state.  ``op_args``: the call arguments of an operation.  ``marker``:
    ``"nested_start"`` / ``"nested_end"`` around the layers of a nested model (Keras masks inside a
    nested model but its output carries no mask)."""

    def __init__(self, layer: _CfgLayer, names: tuple[str, ...], keys: tuple[str | None, ...],
                 gets_mask: bool | None = None, init: list[int] | None = None, op_args: list[Any] | None = None,
                 marker: str | None = None) -> None:
        self.layer = layer
        self.names = names
        self.keys = keys
        self.gets_mask = gets_mask
        self.init = init
        self.op_args = op_args
        self.marker = marker
        self.call: _CallKey | None = None  # the last step of a functional call: its (layer name, node index)
        # the first step of a further output's chain: the call whose output it reads
        self.branch: _CallKey | None = None


# _model_steps' steps_of: (entry, gets_mask, initial_state input indices, op_args) -> the steps of one call
_StepsOf = Callable[[_CfgLayer, Optional[bool], Optional[list[int]], Optional[list[Any]]], list[_Step]]
# One call on the walk from a model output back to its input (see _functional_steps' walk).
_Call = tuple[_CallKey, _CfgLayer, int, Optional[bool], Optional[list[int]], list[Any], Optional[_History],
              Optional[_History]]


def _model_parts(model_config: dict[str, Any], where: str) -> tuple[str, dict[str, Any], list[_CfgLayer]]:
    """``(class name, config dict, layer entries)`` of a (possibly nested) model config."""
    cfg = model_config.get("config")
    if isinstance(cfg, list):
        cfg = {"layers": cfg}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
        raise ModelFormatError(f"{where}: the model config has no layer list")
    return model_config["class_name"], cfg, [_CfgLayer(e, where) for e in cfg["layers"]]


def _weight_keys(entries: list[_CfgLayer], sequential: bool) -> dict[int, str]:
    """``{id(entry): key}``: the .keras weight-file key of each layer, snake_case(class) made unique in
    ``model.layers`` order (a Sequential does not list its InputLayer; operations have no weights)."""
    used: dict[str, int] = {}
    keys: dict[int, str] = {}
    for e in entries:
        if e.is_op or (sequential and e.class_name == "InputLayer"):
            continue
        base = _snake(e.class_name)
        if base in used:
            used[base] += 1
            keys[id(e)] = f"{base}_{used[base]}"
        else:
            used[base] = 0
            keys[id(e)] = base
    return keys


def _model_steps(ctx: _Ctx, cls: str, cfg: dict[str, Any], entries: list[_CfgLayer], names: tuple[str, ...] = (),
                 keys: tuple[str | None, ...] = ()) -> tuple[list[_Step], object, dict[int, str]]:
    """The steps of one model: ``(steps, input batch shape, {model-input index: name} of the initial_state
    inputs)``; ``names`` / ``keys``: the path of a nested model."""
    sequential = cls == "Sequential"
    wkeys = _weight_keys(entries, sequential)

    def steps_of(e: _CfgLayer, gets_mask: bool | None = None, init: list[int] | None = None,
                 op_args: list[Any] | None = None) -> list[_Step]:
        path = (names + (e.name,), keys + (wkeys.get(id(e)),))
        if not (e.is_model and e.builtin(e.class_name)):
            return [_Step(e, *path, gets_mask=gets_mask, init=init, op_args=op_args)]
        sub_cls, sub_cfg, sub_entries = _model_parts(e.entry, ctx.origin)
        if sub_cls not in ("Sequential", "Functional", "Model"):
            ctx.problem(e, f"nested model class {sub_cls!r} is not supported")
            return []
        sub, _, sub_states = _model_steps(ctx, sub_cls, sub_cfg, sub_entries, *path)
        if sub_states:
            ctx.problem(e, "state inputs of a nested model are not supported")
        for s in sub:
            s.gets_mask = None  # recorded while building the nested model, not where it is called
        return [_Step(e, *path, gets_mask=gets_mask, marker="nested_start"), *sub, _Step(e, *path, marker="nested_end")]

    if sequential:
        return [s for e in entries for s in steps_of(e)], cfg.get("build_input_shape"), {}
    return _functional_steps(ctx, cfg, entries, steps_of, top=not names)


def _node_inputs(layer: _CfgLayer, node_index: object) -> tuple[_History | None, list[_History | None] | None,
                                                                list[_History], dict[str, Any], list[Any]]:
    """``(main input history, initial_state items or None, other input histories, kwargs, args)`` of one
    call of a functional layer; an initial_state item is a history, or None for a constant."""
    nodes = layer.entry.get("inbound_nodes") or []
    if not isinstance(nodes, list) or not isinstance(node_index, int) or not 0 <= node_index < len(nodes):
        raise ModelFormatError(f"layer '{layer.name}': inbound node {node_index!r} does not exist")
    node = nodes[node_index]
    if isinstance(node, dict):  # Keras 3
        args, kwargs = node.get("args") or [], node.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ModelFormatError(f"layer '{layer.name}': malformed inbound node")
        main = _history(args[0]) if args else None
        rest, init = args[1:], None
        if layer.class_name in _RECURRENT_CLASSES:
            src = kwargs.get("initial_state")
            if src is None and rest:
                src, rest = rest[0], rest[1:]
            if src is not None:
                init = [_history(x) for x in (src if isinstance(src, list) else [src])]
        other = {k: v for k, v in kwargs.items() if k not in ("mask", "initial_state")}
        return main, init, _histories([rest, other]), kwargs, args
    if isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        hist: list[_History] = []
        kwargs = {}
        for item in node:
            if not isinstance(item, (list, tuple)) or len(item) < 3:
                raise ModelFormatError(f"layer '{layer.name}': malformed inbound node")
            hist.append(tuple(item[:3]))
            if len(item) > 3 and isinstance(item[3], dict):
                kwargs.update(item[3])
        if not hist:
            raise ModelFormatError(f"layer '{layer.name}': empty inbound node")
        return hist[0], None, hist[1:], kwargs, []
    raise ModelFormatError(f"layer '{layer.name}': malformed inbound node")


def _histories(x: object) -> list[_History]:
    """The keras_history of every serialized tensor in the structure ``x``."""
    out: list[_History] = []
    stack = [x]
    while stack:
        v = stack.pop()
        h = _history(v)
        if h is not None:
            out.append(h)
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
        elif isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
    return out


def _history(t: object) -> _History | None:
    """keras_history ``(layer name, node index, tensor index)`` of a serialized tensor, or None."""
    if isinstance(t, dict) and t.get("class_name") == "__keras_tensor__":
        h = (t.get("config") or {}).get("keras_history")
        if isinstance(h, (list, tuple)) and len(h) == 3:
            return tuple(h)
    return None


def _io_list(v: object) -> list[_History]:
    """input_layers / output_layers: ``[name, n, t]`` or ``[[name, n, t], ...]``."""
    if isinstance(v, list) and len(v) == 3 and isinstance(v[0], str):
        return [tuple(v)]
    if isinstance(v, list) and all(isinstance(x, list) and len(x) == 3 for x in v):
        return [tuple(x) for x in v]
    if isinstance(v, dict):
        return _io_list(list(v.values()))
    raise ModelFormatError(f"malformed input_layers / output_layers {str(v)[:100]!r}")


def _is_mask_of(by_name: dict[str, _CfgLayer], mh: _History, src: _History | None, value: object) -> bool:
    """Whether the tensor ``mh`` is the mask Keras computes for a mask source whose input is ``src``:
    ``not_equal(x, 0)`` (Embedding mask_zero) or ``any(not_equal(x, mask_value), axis=-1)`` (Masking)."""
    for _ in range(2):
        producer = by_name.get(mh[0])
        if producer is None or producer.class_name not in ("NotEqual", "Any"):
            return False
        try:
            main, _, _, _, args = _node_inputs(producer, mh[1])
        except ModelFormatError:
            return False
        if producer.class_name == "NotEqual" and (len(args) < 2 or args[1] != value):
            return False
        if main == src:
            return True
        if main is None:
            return False
        mh = main
    return False


def _functional_steps(ctx: _Ctx, cfg: dict[str, Any], entries: list[_CfgLayer], steps_of: _StepsOf, top: bool = True
                      ) -> tuple[list[_Step], object, dict[int, str]]:
    """Walk a functional config from each output back to its sequence input (see :func:`_model_steps`).

    Several outputs (``top`` model only): each output's chain is walked; the chains form a tree rooted
    at the sequence input (every call has one main input), laid out trunk first, each further chain
    from where it leaves the ones before (its first step's ``branch``: the call it reads).  The outputs
    (``(call key, tensor index, name)``; tensor index > 0: a returned state) go to ``ctx.outputs``."""
    by_name: dict[str, _CfgLayer] = {}
    for e in entries:
        by_name.setdefault(e.name, e)
    outs = _io_list(cfg.get("output_layers"))
    ins = _io_list(cfg.get("input_layers"))
    in_index = {tuple(h): i for i, h in enumerate(ins)}
    merge_none = (len(outs) == 2 and outs[0][0] == outs[1][0] and outs[0][1] == outs[1][1]
                  and (outs[0][2], outs[1][2]) == (0, 1) and outs[0][0] in by_name
                  and by_name[outs[0][0]].class_name == "Bidirectional"
                  and by_name[outs[0][0]].config.get("merge_mode", "concat") is None)
    multi = len(outs) != 1 and not merge_none
    if multi and not top:
        ctx.problem(None, f"a nested model with {len(outs)} outputs is not supported")
        return [], None, {}
    states: dict[int, str] = {}
    seq: int | None = None
    layer: _CfgLayer | None = None

    def walk(h: _History, out_ok: bool) -> list[_Call] | None:
        """The calls from the sequence input to the tensor ``h``: [(key, layer, node index, gets_mask, init
        indices, args, main, mask history)]."""
        nonlocal seq, layer
        calls: list[_Call] = []
        seen = 0
        while True:
            seen += 1
            if seen > len(entries) + 1:
                raise ModelFormatError("the layer graph has a cycle")
            lname, node_index, tensor_index = h
            layer = by_name.get(lname)
            if layer is None:
                raise ModelFormatError(f"the config refers to an unknown layer {lname!r}")
            if layer.class_name == "InputLayer":
                seq = in_index.get(tuple(h))
                if seq is None:
                    ctx.problem(layer, "the chain starts at an Input that is not a model input")
                break
            if tensor_index != 0 and not out_ok:
                ctx.problem(layer, f"the model uses its output #{tensor_index} (a returned state?) as the input of "
                                   "another layer: only the main output of each layer can feed the chain")
            out_ok = False
            main, init, extra, kwargs, args = _node_inputs(layer, node_index)
            if main is None:
                ctx.problem(layer, "takes its input in a structure: the model is not a linear chain (merges and "
                                   "multiple inputs are not supported)")
                return None
            mask = kwargs.get("mask")
            # a Keras 3 node records the mask its call received; Keras 2 nodes do not
            gets_mask = True if mask is not None else (False if isinstance(layer.entry["inbound_nodes"][node_index], dict)
                                                       else None)
            idx: list[int] | None = None
            if init is not None:
                idx = []
                for st in init:
                    i = in_index.get(st) if st is not None else None
                    if st is None:
                        ctx.problem(layer, "initial_state must be model Inputs (got a constant)")
                    elif i is None:
                        ctx.problem(layer, "initial_state computed inside the model is not supported (pass it as a "
                                           "keras.Input of the model)")
                    else:
                        idx.append(i)
                        states[i] = ins[i][0]
            if extra and layer.class_name in _RECURRENT_CLASSES and init is None:
                ctx.problem(layer, "initial_state tensors in a Keras 2 model config are not supported (convert the "
                                   "model with Keras 3)")
            elif extra:
                ctx.problem(layer, f"takes {1 + len(extra)} tensors: the model is not a linear chain (merges and "
                                   "multiple inputs are not supported)")
            calls.insert(0, ((lname, node_index), layer, node_index, gets_mask, idx, args, main, _history(mask)))
            h = main
        # (input, compared value) of the active mask source (Embedding mask_zero / Masking)
        src: tuple[_History | None, object] | None = None
        for _, layer_, _, _, _, _, main, mh in calls:
            if mh is not None and src is not None and not _is_mask_of(by_name, mh, *src):
                ctx.problem(layer_, "an explicit mask= argument is not supported")
            if layer_.class_name == "Embedding" and layer_.config.get("mask_zero"):
                src = (main, 0)
            elif layer_.class_name == "Masking":
                src = (main, layer_.config.get("mask_value", 0.0))
        return calls

    steps: list[_Step] = []
    placed: list[_CallKey] = []  # call keys in step order
    outputs: list[tuple[_CallKey, int, str]] = []
    for k, out in enumerate(outs if multi else outs[:1]):
        calls = walk(out, multi or merge_none)
        if calls is None:
            return [], None, {}
        prev: _CallKey | None = None
        for key, layer_, node_index, gets_mask, idx, args, _, _ in calls:
            if key in placed:
                prev = key
                continue
            new = steps_of(layer_, gets_mask, idx, args if layer_.is_op else None)
            if not new:
                continue
            if placed and prev != placed[-1]:
                if prev is None:
                    ctx.problem(layer_, "starts a second branch at the model input: only heads that share the "
                                        "first layer are supported")
                new[0].branch = prev
            new[-1].call = key
            steps.extend(new)
            placed.append(key)
            prev = key
        if multi:
            if not calls:
                ctx.problem(None, f"output #{k} is a model input")
            else:
                outputs.append((calls[-1][0], out[2], out[0] if out[2] == 0 else f"{out[0]}:{out[2]}"))
    if top:
        ctx.outputs = outputs
    for i, x in enumerate(ins):
        if i != seq and i not in states:
            ctx.problem(None, f"model input #{i} ('{x[0]}') is neither the sequence input nor an initial_state: "
                              "the model is not a linear chain")
    if seq in states:
        ctx.problem(None, "the sequence input is also used as an initial_state")
    if layer is None:  # no output was walked: the config lists none
        raise ModelFormatError(f"{ctx.origin}: the model config lists no outputs (output_layers is empty)")
    shape = layer.config.get("batch_shape", layer.config.get("batch_input_shape"))
    return steps, shape, states


# ---- the converter
def spec_from_keras_config(model_config: object, weights: _WeightsFn, *, keras_version: str | bytes | None = None,
                           origin: str | None = None) -> ModelSpec:
    """Convert a Keras model config + weight arrays into a validated :class:`ModelSpec` (no Keras needed).

    ``model_config``: ``{"class_name": "Sequential" | "Functional" | "Model", "config": {...}}`` as in
    ``model.to_json()`` (Keras 2 or 3), or the bare Keras 2.0/2.1 Sequential layer list.
    ``weights(names, keys, entry) -> list of arrays`` in Keras weight order (``layer.weights``) for one
    layer: ``names`` are the layer names from the top model down to it (one name for a layer of the
    top model, more in a nested model), ``keys`` the same path in .keras weight-file keys,
    ``entry`` its :class:`_CfgLayer`.
    ``keras_version``: the version of the Keras that wrote the model (activation / default
    semantics differ between Keras 2 and 3; guessed from the config when None).
    ``origin`` names the file in error messages.
    """
    where = origin or "Keras model"
    if isinstance(model_config, list):  # Keras 2.0/2.1 Sequential
        model_config = {"class_name": "Sequential", "config": {"layers": model_config}}
    if not isinstance(model_config, dict) or not isinstance(model_config.get("class_name"), str):
        raise ModelFormatError(f"{where}: the model config is not a Keras model configuration")
    family = keras_writer_family(keras_version if keras_version is not None else model_config.get("keras_version"))
    cls, cfg, entries = _model_parts(model_config, where)
    if family == "unknown":
        family = _guess_family(model_config, entries)
    if keras_version is not None and family == "keras2":
        _warn_default_drift(model_config, entries, keras_version, where)
    ctx = _Ctx(family, where)
    model_name = cfg.get("name") if isinstance(cfg.get("name"), str) else "?"
    if family == "keras1":
        raise UnsupportedLayerError(f"{where}: Keras 1 model files are not supported (re-save the model with Keras 2 or 3)")
    if cls not in ("Sequential", "Functional", "Model"):
        raise UnsupportedLayerError(f"{where}: model class {cls!r} is not supported (only Sequential and functional "
                                    "models can be converted: subclassed models store no architecture)")
    steps, in_shape, state_inputs = _model_steps(ctx, cls, cfg, entries)
    layer_inputs: dict[str, str] = {}
    at_call: dict[_CallKey, tuple[str | None, _Step]] = {}
    layers, rec_steps, in_shape = _convert_steps(ctx, steps, weights, in_shape, layer_inputs, at_call)
    outputs = _outputs(ctx, layers, at_call) if ctx.outputs else None

    ctx.problems = list(dict.fromkeys(ctx.problems))  # several outputs walk a shared trunk once per output
    if ctx.problems:
        lines = "\n".join(f"  - {p}" for p in ctx.problems)
        n = len(ctx.problems)
        raise UnsupportedLayerError(f"{origin + ': ' if origin else ''}cannot convert Keras model '{model_name}' "
                                    f"({n} problem{'s' if n > 1 else ''}):\n{lines}")
    if not layers:
        raise ModelFormatError(f"{where}: Keras model '{model_name}' has no layers to convert")
    input_features: int | None = None
    if not isinstance(layers[0], EmbeddingSpec):
        if isinstance(in_shape, (list, tuple)) and len(in_shape) == 3 and isinstance(in_shape[-1], int):
            input_features = int(in_shape[-1])
        else:  # no recorded input shape: the first layer with weights tells the feature size
            for l in layers:
                if isinstance(l, RecurrentSpec):
                    input_features = l.input_size
                    break
                if isinstance(l, DenseSpec):
                    input_features = int(np.shape(l.weight)[1])
                    break
    meta: dict[str, Any] = {"keras_writer": family, "model_name": model_name}
    if keras_version is not None or model_config.get("keras_version"):
        v = keras_version if keras_version is not None else model_config.get("keras_version")
        meta["keras_version"] = v.decode() if isinstance(v, bytes) else str(v)
    states = [{"input": i, "name": state_inputs[i], "layer": name, "recurrent_index": ri, "position": pos}
              for ri, (step, name) in enumerate(rec_steps) for pos, i in enumerate(step.init or [])]
    if states:
        meta["keras_state_inputs"] = states
    if ctx.stateful_layers:
        batch = in_shape[0] if isinstance(in_shape, (list, tuple)) and in_shape else None
        meta["layer_metadata"] = _stateful_metadata(ctx.stateful_layers, batch)
    spec = ModelSpec(layers=layers, input_features=input_features, source="keras", metadata=meta,
                     layer_inputs=layer_inputs, outputs=outputs)
    try:
        return spec.validate()
    except ModelFormatError as e:
        raise ModelFormatError(f"{where}: {e}") from None


# Keras return_state: the tensors a recurrent layer returns after its output, as (state, direction).
_STATE_TENSORS = {"LSTM": (("h", 0), ("c", 0)), "GRU": (("h", 0),), "SimpleRNN": (("h", 0),)}


def _outputs(ctx: _Ctx, layers: list[LayerSpec], at_call: dict[_CallKey, tuple[str | None, _Step]]
             ) -> list[OutputSpec] | None:
    """The :class:`OutputSpec` list of a model with several outputs (``ctx.outputs``), None on a problem:
    a layer's output, or a state it returns (``return_state=True``: LSTM ``[out, h, c]``, GRU /
    SimpleRNN ``[out, h]``, Bidirectional ``[out, h_fwd(, c_fwd), h_bwd(, c_bwd)]``, each ``(B, units)``)."""
    by_name = {l.name: l for l in layers}
    specs: list[OutputSpec] = []
    used: set[str] = set()
    for key, t, name in ctx.outputs:
        spec_name, step = at_call.get(key, (None, None))
        layer = step.layer if step is not None else None
        if spec_name is None or layer is None:  # layer is None only with spec_name (no step at the call)
            ctx.problem(layer, "a model output that no converted layer computes")
            return None
        name = unique_name(name, used)
        if t == 0:
            specs.append(OutputSpec(name, "output", [spec_name]))
            continue
        cls = layer.class_name
        inner = layer.config.get("layer") if cls == "Bidirectional" else layer.entry
        inner_cls = inner.get("class_name") if isinstance(inner, dict) else None
        per_dir = _STATE_TENSORS.get(inner_cls) if isinstance(inner_cls, str) and cls in (
            "Bidirectional", "LSTM", "GRU", "SimpleRNN") else None
        rnn = by_name.get(spec_name)
        ndir = 2 if cls == "Bidirectional" else 1
        if per_dir is None or not isinstance(rnn, RecurrentSpec) or not 1 <= t <= ndir * len(per_dir) or \
                (cls == "Bidirectional" and layer.config.get("merge_mode", "concat") is None):
            ctx.problem(layer, f"output #{t} of this layer is not a state fastrnn returns (return_state of LSTM / GRU / "
                               "SimpleRNN / Bidirectional with a merge mode)")
            return None
        part, _ = per_dir[(t - 1) % len(per_dir)]
        specs.append(OutputSpec(name, part, [spec_name], direction=(t - 1) // len(per_dir)))
    return specs


def _guess_family(model_config: dict[str, Any], entries: list[_CfgLayer]) -> str:
    """The writer's Keras major version from the shape of the config (when no version is recorded)."""
    def layer_dicts(e: _CfgLayer) -> Iterator[dict[str, Any]]:
        yield e.config
        for k in ("layer", "backward_layer", "cell"):
            v = e.config.get(k)
            if isinstance(v, dict) and isinstance(v.get("config"), dict):
                yield v["config"]

    k3 = k2 = False
    for e in entries:
        if isinstance(e.module, str) and e.module.startswith("keras.src"):
            k3 = True
        for c in layer_dicts(e):
            if isinstance(c.get("dtype"), dict) or "batch_shape" in c:
                k3 = True
            if "batch_input_shape" in c or "time_major" in c or "implementation" in c:
                k2 = True
    if k3 and not k2:
        return "keras3"
    if k2 and not k3:
        return "tf_keras2" if any(e.module is not None for e in entries) else "keras2"
    return "unknown"


def _warn_default_drift(model_config: dict[str, Any], entries: list[_CfgLayer], keras_version: str | bytes,
                        where: str) -> None:
    """Warn when a config written by a newer Keras (3, or tf.keras 2.x) describes weights written by
    Keras 2.0-2.3: its recurrent layers record the newer defaults explicitly (recurrent_activation
    'sigmoid', GRU reset_after=True) where the model that wrote the weights most likely had Keras 2.2's
    defaults ('hard_sigmoid', reset_after=False) -- converting would silently give other numbers."""
    own = keras_writer_family(model_config.get("keras_version"))
    if own == "unknown":
        own = _guess_family(model_config, entries)
    if own not in ("keras3", "tf_keras2"):
        return
    found: list[str] = []

    def walk(v: object, depth: int = 0) -> None:
        if depth > 64 or len(found) >= 20:
            return
        if isinstance(v, dict):
            cls, cfg = v.get("class_name"), v.get("config")
            if cls in ("LSTM", "GRU", "LSTMCell", "GRUCell") and isinstance(cfg, dict):
                what = [s for s, bad in (("recurrent_activation='sigmoid'", cfg.get("recurrent_activation",
                                                                                     "sigmoid") == "sigmoid"),
                                         ("reset_after=True", cls.startswith("GRU") and cfg.get("reset_after", True)
                                          is True)) if bad]
                if what:
                    found.append(f"'{cfg.get('name', '?')}' ({cls}) {', '.join(what)}")
            for x in v.values():
                walk(x, depth + 1)
        elif isinstance(v, list):
            for x in v:
                walk(x, depth + 1)

    walk(model_config)
    if found:
        v = keras_version.decode("utf-8", "replace") if isinstance(keras_version, bytes) else str(keras_version)
        warnings.warn(
            f"{where}: the architecture is a {'Keras 3' if own == 'keras3' else 'tf.keras 2'} config but the weights "
            f"were written by Keras {v}, whose recurrent layers default to recurrent_activation='hard_sigmoid' "
            "(Keras 2: clip(0.2 x + 0.5, 0, 1)) and GRU reset_after=False, where the newer Keras defaults (written "
            f"into its config) are 'sigmoid' and reset_after=True: the config sets {'; '.join(found)}. If the Keras "
            f"{v} model used the defaults, put recurrent_activation='hard_sigmoid' (read with Keras {v}'s "
            "definition) and reset_after=False into the architecture; if it really used these values, ignore this "
            "warning", ConversionWarning, stacklevel=3)


def _decode_key(v: object) -> object:
    """A serialized ``x[key]`` index (Keras 3): lists, ``__slice__`` / ``__ellipsis__`` objects, ints."""
    if isinstance(v, list):
        return tuple(_decode_key(x) for x in v)
    if isinstance(v, dict):
        cfg = v.get("config")
        c = cfg if isinstance(cfg, dict) else {}
        if v.get("class_name") == "__slice__":
            return slice(c.get("start"), c.get("stop"), c.get("step"))
        if v.get("class_name") == "__ellipsis__":
            return Ellipsis
    return v


def _convert_steps(ctx: _Ctx, steps: list[_Step], weights: _WeightsFn, in_shape: object,
                   layer_inputs: dict[str, str] | None = None,
                   at_call: dict[_CallKey, tuple[str | None, _Step]] | None = None
                   ) -> tuple[list[LayerSpec], list[tuple[_Step, str]], object]:
    """Map the steps to spec layers: ``(layers, [(recurrent step, spec name)], input batch shape)``.

    Several outputs: ``layer_inputs`` receives ``{spec layer: spec layer it reads}`` for the first layer
    of each branch, ``at_call`` ``{call key: (spec layer whose output the call's output is, step)}``."""
    out: list[LayerSpec] = []
    rec: list[tuple[_Step, str]] = []
    snap: dict[_CallKey, tuple[str | None, bool, bool, int]] = {}  # call key -> (spec layer name of its output,
    #                                                                 mask_active, keras_mask, rank)
    current: str | None = None  # the spec layer whose output the chain holds now
    used: set[str] = set()
    mask_active = False  # the mask as fastrnn sees it (every mask source until a sequence is reduced)
    keras_mask = False  # the mask as Keras sees it (also dropped at the end of a nested model)
    rank = len(in_shape) if isinstance(in_shape, (list, tuple)) else 3
    first_real = True

    def uname(base: str) -> str:
        return unique_name(base, used)

    def arrays_of(step: _Step) -> list[npt.ArrayLike]:
        got = weights(step.names, step.keys, step.layer)
        return list(got) if got is not None else []

    def _convert_step(step: _Step) -> None:
        nonlocal mask_active, keras_mask, rank, first_real, in_shape
        layer = step.layer
        cls = layer.class_name
        if step.marker == "nested_end":
            keras_mask = False
            return
        receives = keras_mask if step.gets_mask is None else step.gets_mask
        if receives and not mask_active:
            ctx.problem(layer, "Keras gives this layer a mask whose source fastrnn does not know")
        if step.marker == "nested_start":
            first_real = False
            return
        if layer.is_op:
            args = step.op_args or []
            if cls == "GetItem" and len(args) >= 2 and _last_step_key(_decode_key(args[1])) and rank == 3:
                out.append(LastStepSpec(name=uname(layer.name)))
                mask_active = keras_mask = False
                rank = 2
            else:
                ctx.problem(layer, "unsupported keras.ops operation in the chain (only x[:, -1] is supported)")
            return
        if layer.builtin("InputLayer"):
            shp = layer.config.get("batch_shape", layer.config.get("batch_input_shape"))
            if isinstance(shp, list):
                in_shape = shp
                rank = len(shp)
            return
        if first_real:
            shp = layer.config.get("batch_input_shape", layer.config.get("batch_shape"))
            if in_shape is None and isinstance(shp, list):
                in_shape, rank = shp, len(shp)
        if cls == "Lambda":
            ctx.problem(layer, "Lambda layers are not supported (their code is never loaded)")
            first_real = False
            return
        if not layer.builtin(cls):
            ctx.problem(layer, f"custom layer class {cls!r} (module {layer.module!r}) is not supported")
            first_real = False
            return
        if _quantized(layer):
            ctx.problem(layer, "quantized layers are not supported")
            return
        if cls in _NOOP_LAYERS:
            first_real = False
            return
        if cls == "Flatten":
            if rank != 2:
                ctx.problem(layer, "Flatten of a sequence is not supported (only the no-op Flatten of a (batch, "
                                   "features) tensor)")
            return
        if cls == "Embedding":
            if not first_real:
                ctx.problem(layer, "Embedding must be the first layer")
            mask_zero = bool(layer.config.get("mask_zero", False))
            arrs = arrays_of(step)
            if len(arrs) != 1 or np.ndim(arrs[0]) != 2:
                raise ModelFormatError(f"layer '{layer.name}' (Embedding): expected one 2-D embeddings array, got "
                                       f"{[np.shape(a) for a in arrs]}")
            emb = np.asarray(arrs[0], np.float32)
            dims = (layer.config.get("input_dim"), layer.config.get("output_dim"))
            if all(isinstance(d, int) for d in dims) and emb.shape != dims:
                raise ModelFormatError(f"layer '{layer.name}' (Embedding): embeddings have shape {emb.shape}, the config "
                                       f"says {dims}")
            out.append(EmbeddingSpec(name=uname(layer.name), embeddings=emb, mask_zero=mask_zero))
            mask_active = keras_mask = mask_active or mask_zero
            rank = 3
            first_real = False
            return
        first_real = False
        if cls == "Masking":
            if mask_active:
                ctx.problem(layer, "a Masking layer after another mask source (Embedding mask_zero / Masking) is not "
                                   "supported: Keras replaces the incoming mask, fastrnn combines them")
            mv = layer.config.get("mask_value", 0.0)
            if not isinstance(mv, (int, float)) or isinstance(mv, bool):
                raise ModelFormatError(f"layer '{layer.name}' (Masking): mask_value {mv!r} is not a number")
            out.append(MaskingSpec(name=uname(layer.name), mask_value=float(mv)))
            mask_active = keras_mask = True
            return
        if cls in _RECURRENT_CLASSES:
            name = uname(layer.name)
            if cls == "Bidirectional":
                spec = _cfg_bidirectional(ctx, layer, name, arrays_of(step), mask_active)
                inner = layer.config.get("layer")
                rs = isinstance(inner, dict) and bool((inner.get("config") or {}).get("return_sequences", False))
            else:
                d = _cfg_rnn_direction(ctx, layer, layer, arrays_of(step), mask_active, None)
                spec = None if d is None else RecurrentSpec(
                    kind=d["kind"], name=name, input_size=d["in_size"], units=d["units"], weights=[d["w"]],
                    activation=d["activation"], recurrent_activation=d["recurrent_activation"],
                    reset_after=d["reset_after"], direction="reverse" if d["go_backwards"] else "forward",
                    return_sequences=d["return_sequences"], mask_mode=d["mode"])
                if d is not None and d["stateful"]:
                    ctx.stateful_layers.append(name)
                rs = bool(layer.config.get("return_sequences", False))
            if mask_active and not receives:
                ctx.problem(layer, "called with initial_state tensors while a mask (Embedding mask_zero / Masking) is "
                                   "active: Keras 3 then does not pass the mask to the layer (it runs every step "
                                   "unmasked, while later layers stay masked), which fastrnn cannot express; pass "
                                   "mask= explicitly to the layer call to get masked behaviour" if step.init else
                                   "Keras gives this layer no mask although one is active upstream (a nested model "
                                   "drops the mask at its output), which fastrnn cannot express")
            rec.append((step, name))
            if spec is not None:
                out.append(spec)
            if not rs:
                mask_active = keras_mask = False
                rank = 2
            return
        if cls in ("Dense", "TimeDistributed"):
            inner = layer
            if cls == "TimeDistributed":
                sub = layer.config.get("layer")
                if not isinstance(sub, dict):
                    raise ModelFormatError(f"layer '{layer.name}' (TimeDistributed): config has no wrapped 'layer'")
                inner = _CfgLayer(sub, ctx.origin)
                if inner.builtin("Activation"):
                    a = ctx.activation(layer, inner.config.get("activation"))
                    if a is not None:
                        out.append(ActivationSpec(name=uname(layer.name), activation=a))
                    return
                if inner.class_name in _NOOP_LAYERS and inner.builtin(inner.class_name):
                    return
                if not inner.builtin("Dense"):
                    ctx.problem(layer, f"TimeDistributed({inner.class_name}) is not supported (only Dense, Activation, "
                                       "dropout/noise)")
                    return
                if _quantized(inner):
                    ctx.problem(layer, "quantized layers are not supported")
                    return
            act = ctx.activation(layer, inner.config.get("activation"))
            units = _cfg_int(inner, "units")
            w, b = _dense_from_arrays(f"layer '{layer.name}' ({cls})", arrays_of(step),
                                      bool(inner.config.get("use_bias", True)), units)
            if act is not None:
                out.append(DenseSpec(name=uname(layer.name), weight=w, bias=b, activation=act))
            return
        if cls == "Activation":
            a = ctx.activation(layer, layer.config.get("activation"))
            if a is not None:
                out.append(ActivationSpec(name=uname(layer.name), activation=a))
            return
        if cls == "ReLU":
            mv, ns, th = (layer.config.get(k) for k in ("max_value", "negative_slope", "threshold"))
            if (ns in (None, 0, 0.0)) and (th in (None, 0, 0.0)) and mv in (None, 6, 6.0):
                out.append(ActivationSpec(name=uname(layer.name), activation="relu" if mv is None else "relu6"))
            else:
                ctx.problem(layer, f"ReLU(max_value={mv}, negative_slope={ns}, threshold={th}) is not supported "
                                   "(only ReLU() and ReLU(6))")
            return
        if cls == "LeakyReLU":
            slope = layer.config.get("negative_slope", layer.config.get("alpha", 0.3))
            if isinstance(slope, (int, float)) and abs(float(slope) - _LEAKY_RELU_SLOPE) < 1e-12:
                out.append(ActivationSpec(name=uname(layer.name), activation="leaky_relu"))
            else:
                ctx.problem(layer, f"negative_slope={slope} is not supported (fastrnn's leaky_relu has slope "
                                   f"{_LEAKY_RELU_SLOPE})")
            return
        if cls == "ELU":
            alpha = layer.config.get("alpha", 1.0)
            if alpha in (1, 1.0):
                out.append(ActivationSpec(name=uname(layer.name), activation="elu"))
            else:
                ctx.problem(layer, f"alpha={alpha} is not supported (only alpha=1)")
            return
        if cls == "Softmax":
            axis = layer.config.get("axis", -1)
            last = axis == -1 or axis == [-1] or axis == rank - 1
            if not last:
                ctx.problem(layer, f"axis={axis} is not supported (only the last axis)")
            elif mask_active or receives:
                ctx.problem(layer, "Softmax layer receiving a mask is not supported (Keras applies the mask inside the "
                                   "softmax)")
            else:
                out.append(ActivationSpec(name=uname(layer.name), activation="softmax"))
            return
        if cls == "UnitNormalization":  # x * min(rsqrt(sum x^2), 1e12) = x / max(||x||, 1e-12): l2_normalize
            axis = layer.config.get("axis", -1)
            if axis == -1 or axis == [-1] or axis == rank - 1 or axis == [rank - 1]:
                out.append(ActivationSpec(name=uname(layer.name), activation="l2_normalize"))
            else:
                ctx.problem(layer, f"axis={axis} is not supported (only the last axis)")
            return
        ctx.problem(layer, f"unsupported layer class {cls}")

    for step in steps:
        if step.branch is not None:
            current, mask_active, keras_mask, rank = snap[step.branch]
        before = len(out)
        _convert_step(step)
        if len(out) > before:
            if current is not None and (before == 0 or out[before - 1].name != current) and layer_inputs is not None:
                layer_inputs[out[before].name] = current
            current = out[-1].name
        if step.call is not None:
            snap[step.call] = (current, mask_active, keras_mask, rank)
            if at_call is not None:
                at_call[step.call] = (current, step)
    return out, rec, in_shape

