"""Keras 3 -> :class:`fastrnn.spec.ModelSpec`.

:func:`spec_from_keras` converts a *live* Keras 3 model: a ``keras.Sequential`` or a
functional ``keras.Model`` whose graph is a linear chain (one sequence input, one output;
extra ``keras.Input`` tensors are allowed only as ``initial_state`` of recurrent layers).
Keras is imported lazily, so ``fastrnn`` imports without it.

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
* Keras mask quirks that no spec can express, refused when a mask is active:
  an RNN called with ``initial_state`` tensors gets *no* mask (``Layer.__call__`` fills
  ``mask=`` only for single-tensor calls) although later layers stay masked -- pass
  ``mask=`` explicitly; a nested model masks inside but drops the mask at its output;
  ``Masking`` after another mask source replaces the mask (fastrnn ANDs them).

Every unsupported layer / option of the model is collected and reported in one
:class:`~fastrnn.errors.UnsupportedLayerError`.

:func:`spec_from_keras_config` converts a model *configuration* plus its weight arrays (the file
path, :mod:`fastrnn.io.keras_file`; no Keras import) with the same weight / mask / activation
helpers; see the section "config + arrays" below.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import unique_name
from ..errors import ConversionError, ModelFormatError, UnsupportedLayerError
from ..spec import (GATES, ActivationSpec, DenseSpec, DirectionWeights, EmbeddingSpec, LastStepSpec, MaskingSpec,
                    ModelSpec, RecurrentSpec)

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


def _import_keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras  # noqa: F401  (lazy: fastrnn must import without keras)

    return keras


def _cls(obj) -> str:
    return type(obj).__name__


def _is_keras_class(obj, name, keras) -> bool:
    """``type(obj) is keras.layers.<name>``: subclasses may override ``call`` and are refused."""
    c = getattr(keras.layers, name, None)
    return c is not None and type(obj) is c


def _np(keras, v) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float32)


class _Ctx:
    """Collects problems while walking the model."""

    def __init__(self, keras, model):
        self.keras = keras
        self.model = model
        self.problems: list[str] = []
        self.stateful_layers: list = []  # spec names of stateful=True recurrent layers
        self._act_by_id = None

    def problem(self, layer, msg):
        where = f"layer '{layer.name}' ({_cls(layer)})" if layer is not None else "model"
        self.problems.append(f"{where}: {msg}")

    def activation(self, layer, fn, what="activation"):
        """The spec name of a Keras activation function, or None (and a problem)."""
        if self._act_by_id is None:
            self._act_by_id = {id(None): (None, "linear")}
            for kname, sname in _ACTIVATION_NAMES.items():
                try:
                    f = self.keras.activations.get(kname)
                except Exception:  # pragma: no cover - keras version without it
                    continue
                self._act_by_id.setdefault(id(f), (f, sname))  # keep f alive: ids stay unique
        hit = self._act_by_id.get(id(fn))
        name = hit[1] if hit is not None and hit[0] is fn else None
        if name is None:
            desc = getattr(fn, "__name__", repr(fn))
            self.problem(layer, f"{what} {desc!r} is not supported (custom or unsupported activation; "
                                f"supported Keras activations: {', '.join(sorted(_ACTIVATION_NAMES))})")
        return name


# --------------------------------------------------------------------------- graph -> chain
class _Call:
    """One layer call of the chain: the layer and the model inputs given as its initial_state."""

    def __init__(self, layer, initial_state=None, op_args=None, gets_mask=None, nested_end=False):
        self.layer = layer
        self.initial_state = initial_state  # list of model-input indices, or None
        self.op_args = op_args  # (args, kwargs) for non-Layer operations (keras.ops)
        # Whether Keras passes a mask to call() (known for the calls of a top-level functional
        # model, None = follow the mask of the chain).  Layer.__call__ fills `mask=` only for a call
        # with a single tensor argument, so an RNN called with initial_state tensors runs unmasked
        # (its output still carries the mask to the next layers).
        self.gets_mask = gets_mask
        # A marker after the layers of a nested model: Keras masks inside a nested model but its
        # output carries no mask ("this layer does not support masking and will destroy the mask").
        self.nested_end = nested_end


def _is_model(keras, obj) -> bool:
    return isinstance(obj, keras.Model)


def _is_sequential(keras, obj) -> bool:
    return isinstance(obj, keras.Sequential)


def _is_functional(obj) -> bool:
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover
        return _cls(obj) == "Functional"
    return isinstance(obj, Functional)


def _linearize(ctx, model, top):
    """Return ``(calls, input_tensor_shape, state_inputs)`` for a Sequential / chain Functional.

    ``state_inputs``: ``{model-input index: name}`` of the inputs used as initial states
    (top-level model only).  Problems are recorded in ``ctx``.
    """
    keras = ctx.keras
    if _is_sequential(keras, model):
        try:
            inputs = model.inputs
        except Exception:
            inputs = None
        if not model.built or not inputs:
            raise ConversionError(f"Keras model '{model.name}' is not built: give it an Input or call it on data first")
        calls = []
        for layer in model.layers:
            if _is_model(keras, layer):
                calls.extend(_nested(ctx, layer))
            else:
                calls.append(_Call(layer))
        return calls, tuple(inputs[0].shape), {}
    if not _is_functional(model):
        ctx.problem(None, f"subclassed Keras model '{model.name}' ({_cls(model)}) cannot be converted: "
                          "only Sequential and functional models are supported")
        return [], None, {}

    inputs = list(model.inputs)
    outputs = list(model.outputs)
    if not outputs:
        raise ConversionError(f"Keras model '{model.name}' has no outputs (not built?)")
    in_index = {id(t): i for i, t in enumerate(inputs)}

    # The output: one tensor, or the two outputs of a final Bidirectional(merge_mode=None).
    out = outputs[0]
    if len(outputs) > 1:
        hist = [t._keras_history for t in outputs]
        op = hist[0][0]
        ok = (len(outputs) == 2 and _is_keras_class(op, "Bidirectional", keras) and op.merge_mode is None
              and hist[1][0] is op and hist[0][1] == hist[1][1] and (hist[0][2], hist[1][2]) == (0, 1))
        if not ok:
            ctx.problem(None, f"model '{model.name}' has {len(outputs)} outputs: only a chain with one output "
                              "(or the two outputs of a final Bidirectional(merge_mode=None)) is supported")
            return [], None, {}

    calls = []
    state_inputs = {}
    t = out
    first = True
    while True:
        op, node_index, tensor_index = t._keras_history
        if _is_keras_class(op, "InputLayer", keras) or (isinstance(op, keras.layers.InputLayer)):
            if id(t) not in in_index:
                ctx.problem(op, "the chain starts at an Input that is not a model input")
            seq_input = t
            break
        node = op._inbound_nodes[node_index]
        args, kwargs = node.arguments.args, node.arguments.kwargs
        layer_name = f"'{getattr(op, 'name', '?')}' ({_cls(op)})"
        # tensor_index > 0: a state output (return_state=True) or the second output of merge_mode=None
        if tensor_index != 0 and not (first and len(outputs) == 2):
            ctx.problems.append(f"layer {layer_name}: the model uses its output #{tensor_index} "
                                "(a returned state?): only the main output of each layer can feed the chain")
        first = False
        seq = args[0] if args else None
        if not isinstance(seq, keras.KerasTensor):
            n = len(node.arguments.keras_tensors)
            ctx.problems.append(f"layer {layer_name}: takes {n} tensor{'s' if n != 1 else ''} in a structure: the model "
                                "is not a linear chain (merges and multiple inputs are not supported)")
            return [], None, {}
        init_idx = None
        # Keras records the implicit mask of `seq` as a `mask=` call argument: that one is fine.
        implicit_mask = getattr(seq, "_keras_mask", None)
        mask_arg = kwargs.get("mask")
        if mask_arg is not None and mask_arg is not implicit_mask:
            ctx.problems.append(f"layer {layer_name}: an explicit mask= argument is not supported")
        extra = [x for x in node.arguments.keras_tensors if x is not seq and x is not mask_arg]
        is_rnn = _is_rnn_like(keras, op)
        if is_rnn:
            init = kwargs.get("initial_state", args[1] if len(args) > 1 else None)
            init_list = [] if init is None else (list(init) if isinstance(init, (list, tuple)) else [init])
            if init_list:
                init_idx = []
                for s in init_list:
                    if not isinstance(s, keras.KerasTensor):
                        ctx.problems.append(f"layer {layer_name}: initial_state must be model Inputs (got a constant)")
                        init_idx = None
                        break
                    sop = s._keras_history[0]
                    if not isinstance(sop, keras.layers.InputLayer) or id(s) not in in_index:
                        ctx.problems.append(f"layer {layer_name}: initial_state computed inside the model is not "
                                            "supported (pass it as a keras.Input of the model)")
                        init_idx = None
                        break
                    init_idx.append(in_index[id(s)])
                    state_inputs[in_index[id(s)]] = s.name
            extra = [x for x in extra if not any(x is s for s in init_list)]
        if extra:
            ctx.problems.append(f"layer {layer_name}: takes {1 + len(extra)} tensors: the model is not a linear "
                                "chain (merges, multiple inputs or explicit masks are not supported)")
        if isinstance(op, keras.layers.Layer):
            if _is_model(keras, op):
                calls[0:0] = _nested(ctx, op)
            else:
                calls.insert(0, _Call(op, init_idx, gets_mask=mask_arg is not None))
        else:  # a keras.ops operation
            calls.insert(0, _Call(op, None, (args, kwargs)))
        t = seq

    for i, x in enumerate(inputs):
        if x is not seq_input and i not in state_inputs:
            ctx.problem(None, f"model input #{i} ('{x.name}') is neither the sequence input nor an initial_state: "
                              "the model is not a linear chain")
    if seq_input is not None and in_index.get(id(seq_input)) in state_inputs:
        ctx.problem(None, "the sequence input is also used as an initial_state")
    return calls, tuple(seq_input.shape), state_inputs


def _nested(ctx, model):
    sub, _, sub_states = _linearize(ctx, model, top=False)
    if sub_states:
        ctx.problems.append(f"nested model '{model.name}': state inputs of a nested model are not supported")
    for c in sub:
        c.gets_mask = None  # recorded while building the nested model, not where it is called
    return sub + [_Call(model, nested_end=True)]


def _is_rnn_like(keras, layer) -> bool:
    return isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))


# --------------------------------------------------------------------------- recurrent layers
def _rnn_kind(ctx, layer):
    """(kind, cell) of a SimpleRNN / LSTM / GRU / RNN(known cell), or (None, None) + a problem."""
    keras = ctx.keras
    for cname, kind in _RNN_LAYERS.items():
        if _is_keras_class(layer, cname, keras):
            return kind, layer.cell
    if _is_keras_class(layer, "RNN", keras):
        cell = layer.cell
        for cname, kind in _RNN_CELLS.items():
            if _is_keras_class(cell, cname, keras):
                return kind, cell
        ctx.problem(layer, f"cell {_cls(cell)} is not supported (supported: SimpleRNNCell, LSTMCell, GRUCell)")
        return None, None
    ctx.problem(layer, "unsupported recurrent layer class (subclasses of Keras RNN layers are not supported)")
    return None, None


def _mask_mode(zero_output_for_mask, return_sequences, mask_active):
    """``(mask_mode, problem)`` of one Keras recurrent layer (shared by the live and the file path).

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


def _rnn_options(ctx, layer, mask_active):
    """Check the options of one Keras RNN layer; return its mask_mode (or None on a problem)."""
    ok = True
    if getattr(layer, "time_major", False):
        ctx.problem(layer, "time_major=True is not supported")
        ok = False
    mode, msg = _mask_mode(bool(getattr(layer, "zero_output_for_mask", False)), bool(layer.return_sequences),
                           mask_active)
    if msg:
        ctx.problem(layer, msg)
        ok = False
    return mode if ok else None


def _rnn_direction_from_arrays(where, kind, units, arrays, use_bias, reset_after, err=ModelFormatError):
    """Keras weight arrays of one direction (``[kernel [I, G*H], recurrent_kernel [H, G*H], bias]``,
    the order of ``layer.get_weights()`` / the weight file) -> canonical :class:`DirectionWeights`.

    Transposes; GRU gates ``z, r, h`` -> ``r, z, n``; GRU ``reset_after=True`` bias ``(2, 3H)`` =
    (input bias, recurrent bias); a single bias goes to ``b_ih`` with ``b_hh = 0``.
    Returns ``(DirectionWeights, input_size)``; wrong counts / shapes raise ``err``."""
    g = GATES[kind]
    names = ["kernel", "recurrent_kernel"] + (["bias"] if use_bias else [])
    if len(arrays) != len(names):
        raise err(f"{where}: expected {len(names)} weight arrays ({', '.join(names)}), got {len(arrays)}")
    arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    k, r = arrays[0], arrays[1]
    if k.ndim != 2 or k.shape[1] != g * units or k.shape[0] < 1:
        raise err(f"{where}: kernel has shape {k.shape}, expected (input_size, {g * units})")
    if r.shape != (units, g * units):
        raise err(f"{where}: recurrent_kernel has shape {r.shape}, expected {(units, g * units)}")
    k, r = k.T, r.T
    bias = arrays[2] if use_bias else None
    zeros = np.zeros(g * units, np.float32)
    if kind == "gru":
        def perm(a):
            blocks = np.split(a, 3, axis=0)
            return np.concatenate([blocks[i] for i in _GRU_PERM], axis=0)

        k, r = perm(k), perm(r)
        if bias is None:
            b_ih, b_hh = zeros, zeros.copy()
        elif reset_after:
            if bias.shape != (2, 3 * units):
                raise err(f"{where}: GRU reset_after=True bias has shape {bias.shape}, expected {(2, 3 * units)}")
            b_ih, b_hh = perm(bias[0]), perm(bias[1])
        else:
            if bias.shape != (3 * units,):
                raise err(f"{where}: GRU reset_after=False bias has shape {bias.shape}, expected {(3 * units,)}")
            b_ih, b_hh = perm(bias), zeros
    else:
        if bias is not None and bias.shape != (g * units,):
            raise err(f"{where}: bias has shape {bias.shape}, expected {(g * units,)}")
        b_ih = zeros if bias is None else bias
        b_hh = zeros.copy()
    return DirectionWeights(w_ih=k, w_hh=r, b_ih=b_ih, b_hh=b_hh), int(k.shape[1])


def _dense_from_arrays(where, arrays, use_bias, units=None, err=ModelFormatError):
    """Keras Dense ``[kernel [I, O], bias [O]]`` -> ``(weight [O, I], bias or None)``."""
    names = ["kernel"] + (["bias"] if use_bias else [])
    if len(arrays) != len(names):
        raise err(f"{where}: expected {len(names)} weight arrays ({', '.join(names)}), got {len(arrays)}")
    w = np.asarray(arrays[0], dtype=np.float32)
    if w.ndim != 2 or (units is not None and w.shape[1] != units):
        raise err(f"{where}: kernel has shape {w.shape}, expected (input_size, {units})")
    b = None
    if use_bias:
        b = np.asarray(arrays[1], dtype=np.float32)
        if b.shape != (w.shape[1],):
            raise err(f"{where}: bias has shape {b.shape}, expected {(w.shape[1],)}")
    return w.T, b


def _direction_weights(ctx, layer, kind, cell):
    keras = ctx.keras
    if not getattr(cell, "built", False) or getattr(cell, "kernel", None) is None:
        raise ConversionError(f"layer '{layer.name}' ({_cls(layer)}) is not built (no weights)")
    units = int(cell.units)
    use_bias = bool(cell.use_bias) and getattr(cell, "bias", None) is not None
    arrays = [_np(keras, cell.kernel), _np(keras, cell.recurrent_kernel)] + ([_np(keras, cell.bias)] if use_bias else [])
    w, in_size = _rnn_direction_from_arrays(f"layer '{layer.name}'", kind, units, arrays, use_bias,
                                            bool(getattr(cell, "reset_after", True)), err=ConversionError)
    return w, units, in_size


def _cell_config(ctx, layer, kind, cell):
    act = ctx.activation(layer, cell.activation)
    ract = ctx.activation(layer, cell.recurrent_activation, "recurrent_activation") if kind != "simple_rnn" else "sigmoid"
    return {"activation": act, "recurrent_activation": ract,
            "reset_after": bool(getattr(cell, "reset_after", True)) if kind == "gru" else True}


def _convert_rnn(ctx, layer, name, mask_active):
    kind, cell = _rnn_kind(ctx, layer)
    mode = _rnn_options(ctx, layer, mask_active)
    if kind is None:
        return None
    cfg = _cell_config(ctx, layer, kind, cell)
    w, units, in_size = _direction_weights(ctx, layer, kind, cell)
    if mode is None or cfg["activation"] is None or cfg["recurrent_activation"] is None:
        return None
    if getattr(layer, "stateful", False):
        ctx.stateful_layers.append(name)
    return RecurrentSpec(kind=kind, name=name, input_size=in_size, units=units, weights=[w],
                         direction="reverse" if layer.go_backwards else "forward",
                         return_sequences=bool(layer.return_sequences), mask_mode=mode, **cfg)


def _convert_bidirectional(ctx, layer, name, mask_active):
    fw, bw = layer.forward_layer, layer.backward_layer
    n_problems = len(ctx.problems)
    kf, cf = _rnn_kind(ctx, fw)
    kb, cb = _rnn_kind(ctx, bw)
    mf = _rnn_options(ctx, fw, mask_active)
    mb = _rnn_options(ctx, bw, mask_active)
    if fw.go_backwards or not bw.go_backwards:
        ctx.problem(layer, f"forward layer go_backwards={fw.go_backwards} / backward layer "
                           f"go_backwards={bw.go_backwards}: only a forward layer with go_backwards=False "
                           "(and its backward twin) is supported")
    if kf is None or kb is None:
        return None
    cfg_f = _cell_config(ctx, fw, kf, cf)
    cfg_b = _cell_config(ctx, bw, kb, cb)
    wf, uf, i_f = _direction_weights(ctx, fw, kf, cf)
    wb, ub, i_b = _direction_weights(ctx, bw, kb, cb)
    diffs = []
    if kf != kb:
        diffs.append(f"cell {kf} vs {kb}")
    if uf != ub:
        diffs.append(f"units {uf} vs {ub}")
    if i_f != i_b:
        diffs.append(f"input size {i_f} vs {i_b}")
    for key in ("activation", "recurrent_activation", "reset_after"):
        if kf == kb and cfg_f[key] != cfg_b[key] and not (key != "activation" and kf == "simple_rnn"):
            diffs.append(f"{key} {cfg_f[key]} vs {cfg_b[key]}")
    if mf != mb:
        diffs.append(f"zero_output_for_mask {fw.zero_output_for_mask} vs {bw.zero_output_for_mask}")
    if fw.return_sequences != bw.return_sequences:
        diffs.append(f"return_sequences {fw.return_sequences} vs {bw.return_sequences}")
    if diffs:
        ctx.problem(layer, "the backward layer differs from the forward layer (" + "; ".join(diffs) + ")")
    if len(ctx.problems) != n_problems:
        return None
    merge = "none" if layer.merge_mode is None else layer.merge_mode
    if getattr(fw, "stateful", False) or getattr(bw, "stateful", False):
        ctx.stateful_layers.append(name)
    return RecurrentSpec(kind=kf, name=name, input_size=i_f, units=uf, weights=[wf, wb], direction="bidirectional",
                         merge_mode=merge, return_sequences=bool(fw.return_sequences), mask_mode=mf, **cfg_f)


# --------------------------------------------------------------------------- other layers
def _check_quantized(ctx, layer):
    mode = getattr(layer, "quantization_mode", None)
    if mode:
        ctx.problem(layer, f"quantized layers (quantization_mode={mode!r}) are not supported")
        return False
    return True


def _convert_dense(ctx, layer, name):
    if not _check_quantized(ctx, layer):
        return None
    if not layer.built:
        raise ConversionError(f"layer '{layer.name}' (Dense) is not built (no weights)")
    act = ctx.activation(layer, layer.activation)
    w = _np(ctx.keras, layer.kernel)
    if w.ndim != 2:
        ctx.problem(layer, f"kernel of shape {w.shape} is not supported")
        return None
    use_bias = bool(layer.use_bias) and layer.bias is not None
    arrays = [w] + ([_np(ctx.keras, layer.bias)] if use_bias else [])
    wt, b = _dense_from_arrays(f"layer '{layer.name}'", arrays, use_bias, err=ConversionError)
    if act is None:
        return None
    return DenseSpec(name=name, weight=wt, bias=b, activation=act)


def _last_step_key(key) -> bool:
    """True for ``x[:, -1]`` / ``x[:, -1, :]`` (also with ``...`` as the last item)."""
    if isinstance(key, list):
        key = tuple(key)
    if not isinstance(key, tuple) or len(key) not in (2, 3):
        return False
    full = lambda s: isinstance(s, slice) and s == slice(None) or s is Ellipsis  # noqa: E731
    return (isinstance(key[0], slice) and key[0] == slice(None) and isinstance(key[1], int)
            and not isinstance(key[1], bool) and key[1] == -1 and (len(key) == 2 or full(key[2])))


def _convert_chain(ctx, calls, first_shape):
    """Map calls to spec layers.  Returns (layers, recurrent call list)."""
    keras = ctx.keras
    out = []
    rec_calls = []
    used = set()
    mask_active = False  # the mask as fastrnn sees it (every mask source until a sequence is reduced)
    keras_mask = False  # the mask as Keras sees it (also dropped at the end of a nested model)
    rank = len(first_shape) if first_shape is not None else None

    def uname(base):
        return unique_name(base, used)

    def mask_problem(layer, call, receives):
        if receives == mask_active:
            return False
        if mask_active and call.initial_state:
            ctx.problem(layer, "called with initial_state tensors while a mask (Embedding mask_zero / Masking) is "
                               "active: Keras 3 then does not pass the mask to the layer (it runs every step "
                               "unmasked, while later layers stay masked), which fastrnn cannot express; pass "
                               "mask= explicitly to the layer call to get masked behaviour")
        elif mask_active:
            ctx.problem(layer, "Keras gives this layer no mask although one is active upstream (a nested model "
                               "drops the mask at its output), which fastrnn cannot express")
        else:
            ctx.problem(layer, "Keras gives this layer a mask whose source fastrnn does not know")
        return True

    for ci, call in enumerate(calls):
        layer = call.layer
        cls = _cls(layer)
        receives = keras_mask if call.gets_mask is None else call.gets_mask
        if call.nested_end:
            keras_mask = False
            continue
        if call.op_args is not None:  # keras.ops operation
            args, kwargs = call.op_args
            if cls == "GetItem" and len(args) >= 2 and _last_step_key(args[1]) and rank == 3:
                out.append(LastStepSpec(name=uname(getattr(layer, "name", "last_step"))))
                mask_active = keras_mask = False
                rank = 2
            else:
                ctx.problems.append(f"operation '{getattr(layer, 'name', '?')}' ({cls}): unsupported keras.ops "
                                    "operation in the chain (only x[:, -1] is supported)")
            continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if cls in _NOOP_LAYERS and _is_keras_class(layer, cls, keras):
            continue  # inference no-ops
        if _is_keras_class(layer, "Flatten", keras):
            if rank == 2:
                continue
            ctx.problem(layer, "Flatten of a sequence is not supported (only the no-op Flatten of a (batch, features) "
                               "tensor)")
            continue
        if _is_keras_class(layer, "Embedding", keras):
            if not _check_quantized(ctx, layer):
                continue
            if ci != next(i for i, c in enumerate(calls) if not isinstance(c.layer, keras.layers.InputLayer)):
                ctx.problem(layer, "Embedding must be the first layer")
            if not layer.built:
                raise ConversionError(f"layer '{layer.name}' (Embedding) is not built (no weights)")
            out.append(EmbeddingSpec(name=uname(layer.name), embeddings=_np(keras, layer.embeddings),
                                     mask_zero=bool(layer.mask_zero)))
            mask_active = keras_mask = mask_active or bool(layer.mask_zero)
            rank = 3
            continue
        if _is_keras_class(layer, "Masking", keras):
            if mask_active:
                ctx.problem(layer, "a Masking layer after another mask source (Embedding mask_zero / Masking) is "
                                   "not supported: Keras replaces the incoming mask, fastrnn combines them")
            out.append(MaskingSpec(name=uname(layer.name), mask_value=float(layer.mask_value)))
            mask_active = keras_mask = True
            continue
        if isinstance(layer, keras.layers.Bidirectional) or isinstance(layer, keras.layers.RNN):
            if _is_keras_class(layer, "Bidirectional", keras):
                spec = _convert_bidirectional(ctx, layer, uname(layer.name), mask_active)
            elif isinstance(layer, keras.layers.Bidirectional):
                ctx.problem(layer, "subclasses of Bidirectional are not supported")
                spec = None
            else:
                spec = _convert_rnn(ctx, layer, uname(layer.name), mask_active)
            if mask_problem(layer, call, receives):
                spec = None
            rec_calls.append(call)
            if spec is not None:
                out.append(spec)
                if not spec.return_sequences:
                    mask_active = keras_mask = False
                    rank = 2
            continue
        if _is_keras_class(layer, "Dense", keras):
            d = _convert_dense(ctx, layer, uname(layer.name))
            if d is not None:
                out.append(d)
            continue
        if _is_keras_class(layer, "TimeDistributed", keras):
            inner = layer.layer
            icls = _cls(inner)
            if _is_keras_class(inner, "Dense", keras):
                d = _convert_dense(ctx, inner, uname(layer.name))
                if d is not None:
                    out.append(d)
            elif _is_keras_class(inner, "Activation", keras):
                a = ctx.activation(inner, inner.activation)
                if a is not None:
                    out.append(ActivationSpec(name=uname(layer.name), activation=a))
            elif icls in _NOOP_LAYERS and _is_keras_class(inner, icls, keras):
                pass
            else:
                ctx.problem(layer, f"TimeDistributed({icls}) is not supported (only Dense, Activation, dropout/noise)")
            continue
        if _is_keras_class(layer, "Activation", keras):
            a = ctx.activation(layer, layer.activation)
            if a is not None:
                out.append(ActivationSpec(name=uname(layer.name), activation=a))
            continue
        if _is_keras_class(layer, "ReLU", keras):
            mv = layer.max_value
            mv = None if mv is None else float(np.asarray(mv))
            if float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0 and mv in (None, 6.0):
                out.append(ActivationSpec(name=uname(layer.name), activation="relu" if mv is None else "relu6"))
            else:
                ctx.problem(layer, f"ReLU(max_value={layer.max_value}, negative_slope={layer.negative_slope}, "
                                   f"threshold={layer.threshold}) is not supported (only ReLU() and ReLU(6))")
            continue
        if _is_keras_class(layer, "LeakyReLU", keras):
            if abs(float(layer.negative_slope) - _LEAKY_RELU_SLOPE) < 1e-12:
                out.append(ActivationSpec(name=uname(layer.name), activation="leaky_relu"))
            else:
                ctx.problem(layer, f"negative_slope={layer.negative_slope} is not supported "
                                   f"(fastrnn's leaky_relu has slope {_LEAKY_RELU_SLOPE})")
            continue
        if _is_keras_class(layer, "ELU", keras):
            if float(layer.alpha) == 1.0:
                out.append(ActivationSpec(name=uname(layer.name), activation="elu"))
            else:
                ctx.problem(layer, f"alpha={layer.alpha} is not supported (only alpha=1)")
            continue
        if _is_keras_class(layer, "Softmax", keras):
            axis = layer.axis
            last = axis == -1 or (isinstance(axis, (list, tuple)) and list(axis) == [-1]) \
                or (rank is not None and axis == rank - 1)
            if not last:
                ctx.problem(layer, f"axis={axis} is not supported (only the last axis)")
            elif mask_active or receives:
                ctx.problem(layer, "Softmax layer receiving a mask is not supported (Keras applies the mask inside "
                                   "the softmax)")
            else:
                out.append(ActivationSpec(name=uname(layer.name), activation="softmax"))
            continue
        ctx.problem(layer, f"unsupported layer class {cls}")
    return out, rec_calls


def _stateful_metadata(names, batch_size):
    """``spec.metadata["layer_metadata"]``: ``{spec layer name: {"stateful": True, "batch_size": N}}``."""
    out = {}
    for n in names:
        d = {"stateful": True}
        if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0:
            d["batch_size"] = batch_size
        out[n] = d
    return out


def spec_from_keras(model: Any) -> ModelSpec:
    """Convert a live Keras 3 model (Sequential or chain functional) into a validated :class:`ModelSpec`.

    Raises :class:`~fastrnn.errors.UnsupportedLayerError` listing every unsupported layer /
    option of the model, :class:`~fastrnn.errors.ConversionError` for an unbuilt model.

    ``spec.metadata["keras_state_inputs"]`` lists the model inputs that are ``initial_state``
    of a recurrent layer: ``{"input": index in model.inputs, "name", "layer": spec layer name,
    "recurrent_index": index among the spec's recurrent layers, "position": index in that
    layer's Keras initial_state list}`` (Keras order: ``[h, c]`` per direction, forward first).
    """
    keras = _import_keras()
    if not isinstance(model, keras.Model):
        raise ConversionError(f"expected a keras.Model, got {type(model).__module__}.{_cls(model)}")
    ctx = _Ctx(keras, model)
    calls, in_shape, _ = _linearize(ctx, model, top=True)
    layers, rec_calls = _convert_chain(ctx, calls, in_shape) if in_shape is not None else ([], [])

    input_features = None
    if in_shape is not None and not (layers and isinstance(layers[0], EmbeddingSpec)):
        if len(in_shape) != 3:
            ctx.problem(None, f"model input shape {in_shape}: expected (batch, time, features) "
                              "(or (batch, time) ids for an Embedding first layer)")
        elif in_shape[-1] is None:
            ctx.problem(None, f"model input shape {in_shape}: the feature size must be known")
        else:
            input_features = int(in_shape[-1])
    elif in_shape is not None and len(in_shape) != 2:
        ctx.problem(None, f"model input shape {in_shape}: an Embedding first layer takes (batch, time) ids")

    if ctx.problems:
        lines = "\n".join(f"  - {p}" for p in ctx.problems)
        raise UnsupportedLayerError(f"cannot convert Keras model '{model.name}' "
                                    f"({len(ctx.problems)} problem{'s' if len(ctx.problems) > 1 else ''}):\n{lines}")
    if not layers:
        raise ConversionError(f"Keras model '{model.name}' has no layers to convert")

    state_inputs = []
    rec_names = [l.name for l in layers if isinstance(l, RecurrentSpec)]
    for ri, call in enumerate(rec_calls):
        for pos, idx in enumerate(call.initial_state or []):
            state_inputs.append({"input": idx, "name": model.inputs[idx].name, "layer": rec_names[ri],
                                 "recurrent_index": ri, "position": pos})
    meta = {"keras_version": keras.__version__, "keras_backend": keras.backend.backend(), "model_name": model.name}
    # fastrnn computes in float32; a mixed-precision Keras model (float16 / bfloat16 compute) agrees
    # only to its own precision.  Recorded, not refused.
    dtypes = sorted({str(getattr(getattr(c.layer, "dtype_policy", None), "compute_dtype", "float32"))
                     for c in calls if c.op_args is None and c.layer is not None} - {"float32"})
    if dtypes:
        meta["keras_compute_dtypes"] = dtypes
    if state_inputs:
        meta["keras_state_inputs"] = state_inputs
    if ctx.stateful_layers:
        batch = in_shape[0] if in_shape is not None else None
        meta["layer_metadata"] = _stateful_metadata(ctx.stateful_layers, batch)
    spec = ModelSpec(layers=layers, input_features=input_features, source="keras", metadata=meta)
    return spec.validate()


# =========================================================================== config + arrays
# The file path (fastrnn.io.keras_file) converts a Keras model *configuration* (the JSON of
# ``model.to_json()`` / ``get_config()``, ``config.json`` of a .keras file, ``model_config`` of an
# .h5 file) plus its weight arrays, without importing Keras.  Weights are looked up per layer by a
# callback returning the arrays in Keras weight order (``layer.get_weights()``); the per-layer
# semantics (weight layouts, mask modes, activation names) are the helpers shared with the live
# path above.  Nothing in the configuration is ever deserialized into code: layer classes are
# only compared by name (a Lambda or a custom class is reported, never executed).

# Keras 2 (standalone 2.x and tf.keras / tf_keras 2.x) activation name -> spec name.  Differs from
# Keras 3 where the definition differs: hard_sigmoid is clip(0.2x + 0.5, 0, 1) in Keras 2.
# Checked numerically against tf_keras in tests/test_keras_files.py.
_ACTIVATION_NAMES_K2 = {
    "linear": "linear", "tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "hard_sigmoid": "hard_sigmoid_tf2",
    "elu": "elu", "selu": "selu", "softplus": "softplus", "softsign": "softsign", "swish": "silu", "silu": "silu",
    "exponential": "exponential", "gelu": "gelu", "mish": "mish", "softmax": "softmax",
}

_OP_MODULE_PREFIXES = ("keras.src.ops", "keras.ops")


def keras_writer_family(version) -> str:
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
    import re

    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _CfgLayer:
    """One layer entry of a model config (Keras 2 or 3 flavour), read defensively."""

    def __init__(self, entry, where):
        if not isinstance(entry, dict):
            raise ModelFormatError(f"{where}: a layer entry is not a JSON object")
        self.entry = entry
        self.class_name = entry.get("class_name")
        if not isinstance(self.class_name, str):
            raise ModelFormatError(f"{where}: a layer entry has no class_name")
        cfg = entry.get("config", {})
        self.config = cfg if isinstance(cfg, dict) else {}
        name = entry.get("name", self.config.get("name"))
        self.name = name if isinstance(name, str) else f"<unnamed {self.class_name}>"
        self.module = entry.get("module")
        self.registered_name = entry.get("registered_name")

    @property
    def is_op(self) -> bool:
        return isinstance(self.module, str) and self.module.startswith(_OP_MODULE_PREFIXES)

    @property
    def is_model(self) -> bool:
        return self.class_name in ("Sequential", "Functional", "Model")

    def builtin(self, cls) -> bool:
        """The built-in Keras class ``cls`` (not a custom class that happens to share the name)."""
        if self.class_name != cls:
            return False
        mod_ok = self.module is None or (isinstance(self.module, str) and self.module.split(".")[0] in ("keras", "tf_keras"))
        reg_ok = self.registered_name in (None, cls) or (isinstance(self.registered_name, str)
                                                          and self.registered_name.endswith(">" + cls)
                                                          and self.registered_name.startswith("keras"))
        return mod_ok and reg_ok


class _FileCtx:
    def __init__(self, family, origin):
        self.family = family
        self.origin = origin
        self.problems: list[str] = []
        self.stateful_layers: list = []

    def problem(self, layer, msg):
        where = f"layer '{layer.name}' ({layer.class_name})" if layer is not None else "model"
        self.problems.append(f"{where}: {msg}")

    def activation(self, layer, value, what="activation"):
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


def _cfg_get(layer, key, default=None, types=None):
    v = layer.config.get(key, default)
    if types is not None and not isinstance(v, types):
        raise ModelFormatError(f"layer '{layer.name}' ({layer.class_name}): config '{key}' has an invalid value {v!r}")
    return v


def _cfg_int(layer, key, cfg=None):
    v = (cfg if cfg is not None else layer.config).get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ModelFormatError(f"layer '{layer.name}' ({layer.class_name}): config '{key}' must be a positive int, got {v!r}")
    return v


def _quantized(layer) -> bool:
    if layer.config.get("quantization_config") is not None or layer.config.get("quantization_mode"):
        return True
    d = layer.config.get("dtype")
    if isinstance(d, dict):
        if "Quantiz" in str(d.get("class_name", "")):
            return True
        inner = d.get("config")
        d = inner.get("name") if isinstance(inner, dict) else None
    return isinstance(d, str) and ("int8" in d or "int4" in d or "float8" in d) and "_from_" in d


def _rnn_cell_cfg(ctx, layer, sub):
    """(kind, cell config, rnn config) of a SimpleRNN / LSTM / GRU / RNN(cell) config entry ``sub``."""
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
            ctx.problem(layer, f"cell {c.class_name} is not supported (supported: SimpleRNNCell, LSTMCell, GRUCell)")
        else:
            ctx.problem(layer, "RNN with a list of cells (StackedRNNCells) is not supported")
        return None, None, None
    ctx.problem(layer, f"recurrent layer class {sub.class_name} is not supported")
    return None, None, None


def _cfg_rnn_direction(ctx, layer, sub, arrays, mask_active, zero_output):
    """Convert one direction.  Returns dict(kind, cfg..., w, units, in_size, mode) or None."""
    kind, cell, rnn = _rnn_cell_cfg(ctx, layer, sub)
    if kind is None:
        return None
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
    if kind == "simple_rnn":
        ract = "sigmoid"
    else:
        default_ract = "hard_sigmoid" if ctx.family == "keras2" else "sigmoid"
        ract = ctx.activation(layer, cell.get("recurrent_activation", default_ract), "recurrent_activation")
    reset_after = bool(cell.get("reset_after", ctx.family in ("keras3", "tf_keras2"))) if kind == "gru" else True
    use_bias = bool(cell.get("use_bias", True))
    if act is None or ract is None or not ok:
        return None
    w, in_size = _rnn_direction_from_arrays(f"layer '{layer.name}' ({layer.class_name})", kind, units, arrays,
                                            use_bias, reset_after)
    return {"kind": kind, "activation": act, "recurrent_activation": ract, "reset_after": reset_after, "w": w,
            "units": units, "in_size": in_size, "mode": mode, "return_sequences": rs,
            "go_backwards": bool(rnn.get("go_backwards", False)), "stateful": bool(rnn.get("stateful", False))}


def _n_rnn_arrays(ctx, layer, sub):
    kind, cell, _ = _rnn_cell_cfg(_FileCtx(ctx.family, ctx.origin), layer, sub)
    return (3 if bool(cell.get("use_bias", True)) else 2) if kind else None


def _cfg_bidirectional(ctx, layer, name, arrays, mask_active):
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
    diffs = [f"{k} {f[k]} vs {b[k]}" for k in ("kind", "units", "in_size", "activation", "return_sequences")
             if f[k] != b[k]]
    if f["kind"] == b["kind"] != "simple_rnn":
        diffs += [f"{k} {f[k]} vs {b[k]}" for k in ("recurrent_activation",) if f[k] != b[k]]
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


# ---- functional graphs
def _history(t):
    """keras_history ``(layer name, node index, tensor index)`` of a serialized tensor, or None."""
    if isinstance(t, dict) and t.get("class_name") == "__keras_tensor__":
        h = (t.get("config") or {}).get("keras_history")
        if isinstance(h, (list, tuple)) and len(h) == 3:
            return tuple(h)
    return None


def _node_inputs(layer, node_index):
    """``(main input history, extra tensor histories, kwargs)`` of one call of a functional layer."""
    nodes = layer.entry.get("inbound_nodes") or []
    if not isinstance(nodes, list) or not isinstance(node_index, int) or not 0 <= node_index < len(nodes):
        raise ModelFormatError(f"layer '{layer.name}': inbound node {node_index!r} does not exist")
    node = nodes[node_index]
    if isinstance(node, dict):  # Keras 3
        args, kwargs = node.get("args") or [], node.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ModelFormatError(f"layer '{layer.name}': malformed inbound node")
        tensors = []

        def walk(x):
            h = _history(x)
            if h is not None:
                tensors.append(h)
            elif isinstance(x, (list, tuple)):
                for y in x:
                    walk(y)
            elif isinstance(x, dict):
                for y in x.values():
                    walk(y)

        main = _history(args[0]) if args else None
        for a in args[1:]:
            walk(a)
        if main is None and args:
            walk(args[0])
        for k, v in kwargs.items():
            if k != "mask":
                walk(v)
        return main, tensors, kwargs
    if isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        hist = []
        kwargs = {}
        for item in node:
            if not isinstance(item, (list, tuple)) or len(item) < 3:
                raise ModelFormatError(f"layer '{layer.name}': malformed inbound node")
            hist.append(tuple(item[:3]))
            if len(item) > 3 and isinstance(item[3], dict):
                kwargs.update(item[3])
        if not hist:
            raise ModelFormatError(f"layer '{layer.name}': empty inbound node")
        return hist[0], hist[1:], kwargs
    raise ModelFormatError(f"layer '{layer.name}': malformed inbound node")


def _io_list(v):
    """input_layers / output_layers: ``[name, n, t]`` or ``[[name, n, t], ...]``."""
    if isinstance(v, list) and len(v) == 3 and isinstance(v[0], str):
        return [tuple(v)]
    if isinstance(v, list) and all(isinstance(x, list) and len(x) == 3 for x in v):
        return [tuple(x) for x in v]
    if isinstance(v, dict):
        return _io_list(list(v.values()))
    raise ModelFormatError(f"malformed input_layers / output_layers {str(v)[:100]!r}")


def _functional_chain(ctx, cfg, entries):
    """Walk a functional config from its output back to its input: ``([(layer, has_mask_kwarg)], input layer)``."""
    by_name = {}
    for e in entries:
        by_name.setdefault(e.name, e)
    outs = _io_list(cfg.get("output_layers"))
    ins = _io_list(cfg.get("input_layers"))
    if len(ins) != 1:
        ctx.problem(None, f"the model has {len(ins)} inputs: only a chain with one input is supported "
                          "(initial_state inputs are not supported in model files)")
        return None, None
    if len(outs) != 1:
        ok = (len(outs) == 2 and outs[0][0] == outs[1][0] and outs[0][1] == outs[1][1]
              and (outs[0][2], outs[1][2]) == (0, 1) and outs[0][0] in by_name
              and by_name[outs[0][0]].class_name == "Bidirectional"
              and by_name[outs[0][0]].config.get("merge_mode", "concat") is None)
        if not ok:
            ctx.problem(None, f"the model has {len(outs)} outputs: only a chain with one output (or the two outputs of "
                              "a final Bidirectional(merge_mode=None)) is supported")
            return None, None
    chain = []
    h = outs[0]
    first = True
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
            if (lname, node_index, tensor_index) != tuple(ins[0]):
                ctx.problem(layer, "the chain starts at an Input that is not the model input")
            return chain, layer
        if tensor_index != 0 and not (first and len(outs) == 2):
            ctx.problem(layer, f"the model uses its output #{tensor_index} (a returned state?): only the main output "
                               "of each layer can feed the chain")
        first = False
        main, extra, kwargs = _node_inputs(layer, node_index)
        if main is None:
            ctx.problem(layer, "takes its input in a structure: the model is not a linear chain (merges and multiple "
                               "inputs are not supported)")
            return None, None
        if "initial_state" in kwargs or (extra and layer.class_name in ("SimpleRNN", "LSTM", "GRU", "RNN",
                                                                         "Bidirectional")):
            ctx.problem(layer, "initial_state tensors are not supported in model files (convert the live model with "
                               "fastrnn.from_keras instead)")
        elif extra:
            ctx.problem(layer, f"takes {1 + len(extra)} tensors: the model is not a linear chain (merges and multiple "
                               "inputs are not supported)")
        chain.insert(0, (layer, kwargs.get("mask") is not None))
        h = main


# ---- the converter
def spec_from_keras_config(model_config, weights, *, keras_version=None, origin="Keras model") -> ModelSpec:
    """Convert a Keras model config + weight arrays into a validated :class:`ModelSpec` (no Keras needed).

    ``model_config``: ``{"class_name": "Sequential" | "Functional" | "Model", "config": {...}}`` as in
    ``model.to_json()`` (Keras 2 or 3), or the bare Keras 2.0/2.1 Sequential layer list.
    ``weights(layer_name, key, entry) -> list of arrays`` in Keras weight order for the top-level
    layer ``layer_name`` (``key``: its .keras weight-file key, ``entry``: its :class:`_CfgLayer`).
    ``keras_version``: the version of the Keras that wrote the model (activation / default
    semantics differ between Keras 2 and 3; guessed from the config when None).
    ``origin`` names the file in error messages.
    """
    if isinstance(model_config, list):  # Keras 2.0/2.1 Sequential
        model_config = {"class_name": "Sequential", "config": {"layers": model_config}}
    if not isinstance(model_config, dict) or not isinstance(model_config.get("class_name"), str):
        raise ModelFormatError(f"{origin}: the model config is not a Keras model configuration")
    family = keras_writer_family(keras_version if keras_version is not None else model_config.get("keras_version"))
    cls = model_config["class_name"]
    cfg = model_config.get("config")
    if isinstance(cfg, list):
        cfg = {"layers": cfg}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
        raise ModelFormatError(f"{origin}: the model config has no layer list")
    entries = [_CfgLayer(e, origin) for e in cfg["layers"]]
    if family == "unknown":
        family = _guess_family(model_config, entries)
    ctx = _FileCtx(family, origin)
    model_name = cfg.get("name") if isinstance(cfg.get("name"), str) else "?"
    if family == "keras1":
        raise UnsupportedLayerError(f"{origin}: Keras 1 model files are not supported (re-save the model with Keras 2 or 3)")

    # weight-file keys (.keras / Keras 3 weights.h5): snake_case(class) made unique, in model.layers order
    used: dict[Any, Any] = {}
    keys: dict[Any, Any] = {}
    sequential = cls == "Sequential"
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

    in_shape = None
    if sequential:
        chain = [(e, None) for e in entries]
        in_shape = cfg.get("build_input_shape")
    elif cls in ("Functional", "Model"):
        chain, inp = _functional_chain(ctx, cfg, entries)
        if inp is not None:
            in_shape = inp.config.get("batch_shape", inp.config.get("batch_input_shape"))
    else:
        raise UnsupportedLayerError(f"{origin}: model class {cls!r} is not supported (only Sequential and functional "
                                    "models can be loaded from a file; subclassed models store no architecture)")
    layers = []
    if chain is not None:
        layers, in_shape = _cfg_convert_chain(ctx, chain, weights, keys, in_shape)

    if ctx.problems:
        lines = "\n".join(f"  - {p}" for p in ctx.problems)
        n = len(ctx.problems)
        raise UnsupportedLayerError(f"{origin}: cannot convert Keras model '{model_name}' "
                                    f"({n} problem{'s' if n > 1 else ''}):\n{lines}")
    if not layers:
        raise ModelFormatError(f"{origin}: Keras model '{model_name}' has no layers to convert")
    input_features = None
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
    meta = {"keras_writer": family, "model_name": model_name}
    if keras_version is not None or model_config.get("keras_version"):
        v = keras_version if keras_version is not None else model_config.get("keras_version")
        meta["keras_version"] = v.decode() if isinstance(v, bytes) else str(v)
    if ctx.stateful_layers:
        batch = in_shape[0] if isinstance(in_shape, (list, tuple)) and in_shape else None
        meta["layer_metadata"] = _stateful_metadata(ctx.stateful_layers, batch)
    spec = ModelSpec(layers=layers, input_features=input_features, source="keras", metadata=meta)
    try:
        return spec.validate()
    except ModelFormatError as e:
        raise ModelFormatError(f"{origin}: {e}") from None


def _guess_family(model_config, entries) -> str:
    """The writer's Keras major version from the shape of the config (when no version is recorded)."""
    def layer_dicts(e):
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


def _cfg_convert_chain(ctx, chain, weights, keys, in_shape):
    out = []
    used = set()
    mask_active = False
    rank = len(in_shape) if isinstance(in_shape, (list, tuple)) else 3
    first_real = True

    def uname(base):
        return unique_name(base, used)

    def arrays_of(layer):
        got = weights(layer.name, keys.get(id(layer)), layer)
        return list(got) if got is not None else []

    for layer, has_mask_kwarg in chain:
        cls = layer.class_name
        if layer.is_op:
            ctx.problem(layer, "unsupported operation in the chain (keras.ops operations are not supported in model files)")
            continue
        if layer.builtin("InputLayer"):
            shp = layer.config.get("batch_shape", layer.config.get("batch_input_shape"))
            if isinstance(shp, list):
                in_shape = shp
                rank = len(shp)
            continue
        if first_real:
            shp = layer.config.get("batch_input_shape", layer.config.get("batch_shape"))
            if in_shape is None and isinstance(shp, list):
                in_shape, rank = shp, len(shp)
        if has_mask_kwarg and not mask_active:
            ctx.problem(layer, "receives a mask whose source fastrnn does not know")
        if layer.is_model:
            ctx.problem(layer, "nested models are not supported in model files (flatten the model, or convert the live "
                               "model with fastrnn.from_keras)")
            first_real = False
            continue
        if cls == "Lambda":
            ctx.problem(layer, "Lambda layers are not supported (their code is never loaded)")
            first_real = False
            continue
        if not layer.builtin(cls):
            ctx.problem(layer, f"custom layer class {cls!r} (module {layer.module!r}) is not supported")
            first_real = False
            continue
        if _quantized(layer):
            ctx.problem(layer, "quantized layers are not supported")
            continue
        if cls in _NOOP_LAYERS:
            first_real = False
            continue
        if cls == "Flatten":
            if rank != 2:
                ctx.problem(layer, "Flatten of a sequence is not supported (only the no-op Flatten of a (batch, "
                                   "features) tensor)")
            continue
        if cls == "Embedding":
            if not first_real:
                ctx.problem(layer, "Embedding must be the first layer")
            mask_zero = bool(layer.config.get("mask_zero", False))
            arrs = arrays_of(layer)
            if len(arrs) != 1 or np.ndim(arrs[0]) != 2:
                raise ModelFormatError(f"layer '{layer.name}' (Embedding): expected one 2-D embeddings array, got "
                                       f"{[np.shape(a) for a in arrs]}")
            emb = np.asarray(arrs[0], np.float32)
            dims = (layer.config.get("input_dim"), layer.config.get("output_dim"))
            if all(isinstance(d, int) for d in dims) and emb.shape != dims:
                raise ModelFormatError(f"layer '{layer.name}' (Embedding): embeddings have shape {emb.shape}, the config "
                                       f"says {dims}")
            out.append(EmbeddingSpec(name=uname(layer.name), embeddings=emb, mask_zero=mask_zero))
            mask_active = mask_active or mask_zero
            rank = 3
            first_real = False
            continue
        first_real = False
        if cls == "Masking":
            if mask_active:
                ctx.problem(layer, "a Masking layer after another mask source (Embedding mask_zero / Masking) is not "
                                   "supported: Keras replaces the incoming mask, fastrnn combines them")
            mv = layer.config.get("mask_value", 0.0)
            if not isinstance(mv, (int, float)) or isinstance(mv, bool):
                raise ModelFormatError(f"layer '{layer.name}' (Masking): mask_value {mv!r} is not a number")
            out.append(MaskingSpec(name=uname(layer.name), mask_value=float(mv)))
            mask_active = True
            continue
        if cls in _RNN_LAYERS or cls == "RNN":
            name = uname(layer.name)
            d = _cfg_rnn_direction(ctx, layer, layer, arrays_of(layer), mask_active, None)
            if d is not None:
                if d["stateful"]:
                    ctx.stateful_layers.append(name)
                out.append(RecurrentSpec(kind=d["kind"], name=name, input_size=d["in_size"], units=d["units"],
                                         weights=[d["w"]], activation=d["activation"],
                                         recurrent_activation=d["recurrent_activation"], reset_after=d["reset_after"],
                                         direction="reverse" if d["go_backwards"] else "forward",
                                         return_sequences=d["return_sequences"], mask_mode=d["mode"]))
            if not bool(layer.config.get("return_sequences", False)):
                mask_active = False
                rank = 2
            continue
        if cls == "Bidirectional":
            spec = _cfg_bidirectional(ctx, layer, uname(layer.name), arrays_of(layer), mask_active)
            if spec is not None:
                out.append(spec)
            inner = layer.config.get("layer")
            if isinstance(inner, dict) and not bool((inner.get("config") or {}).get("return_sequences", False)):
                mask_active = False
                rank = 2
            continue
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
                    continue
                if inner.class_name in _NOOP_LAYERS and inner.builtin(inner.class_name):
                    continue
                if not inner.builtin("Dense"):
                    ctx.problem(layer, f"TimeDistributed({inner.class_name}) is not supported (only Dense, Activation, "
                                       "dropout/noise)")
                    continue
                if _quantized(inner):
                    ctx.problem(layer, "quantized layers are not supported")
                    continue
            act = ctx.activation(layer, inner.config.get("activation"))
            units = _cfg_int(inner, "units")
            w, b = _dense_from_arrays(f"layer '{layer.name}' ({cls})", arrays_of(layer),
                                      bool(inner.config.get("use_bias", True)), units)
            if act is not None:
                out.append(DenseSpec(name=uname(layer.name), weight=w, bias=b, activation=act))
            continue
        if cls == "Activation":
            a = ctx.activation(layer, layer.config.get("activation"))
            if a is not None:
                out.append(ActivationSpec(name=uname(layer.name), activation=a))
            continue
        if cls == "ReLU":
            mv, ns, th = (layer.config.get(k) for k in ("max_value", "negative_slope", "threshold"))
            if (ns in (None, 0, 0.0)) and (th in (None, 0, 0.0)) and mv in (None, 6, 6.0):
                out.append(ActivationSpec(name=uname(layer.name), activation="relu" if mv is None else "relu6"))
            else:
                ctx.problem(layer, f"ReLU(max_value={mv}, negative_slope={ns}, threshold={th}) is not supported "
                                   "(only ReLU() and ReLU(6))")
            continue
        if cls == "LeakyReLU":
            slope = layer.config.get("negative_slope", layer.config.get("alpha", 0.3))
            if isinstance(slope, (int, float)) and abs(float(slope) - _LEAKY_RELU_SLOPE) < 1e-12:
                out.append(ActivationSpec(name=uname(layer.name), activation="leaky_relu"))
            else:
                ctx.problem(layer, f"negative_slope={slope} is not supported (fastrnn's leaky_relu has slope "
                                   f"{_LEAKY_RELU_SLOPE})")
            continue
        if cls == "ELU":
            alpha = layer.config.get("alpha", 1.0)
            if alpha in (1, 1.0):
                out.append(ActivationSpec(name=uname(layer.name), activation="elu"))
            else:
                ctx.problem(layer, f"alpha={alpha} is not supported (only alpha=1)")
            continue
        if cls == "Softmax":
            axis = layer.config.get("axis", -1)
            last = axis == -1 or axis == [-1] or axis == rank - 1
            if not last:
                ctx.problem(layer, f"axis={axis} is not supported (only the last axis)")
            elif mask_active:
                ctx.problem(layer, "Softmax layer receiving a mask is not supported (Keras applies the mask inside the "
                                   "softmax)")
            else:
                out.append(ActivationSpec(name=uname(layer.name), activation="softmax"))
            continue
        ctx.problem(layer, f"unsupported layer class {cls}")
    return out, in_shape
