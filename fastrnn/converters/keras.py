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
* Keras mask quirks that no spec can express, refused when a mask is active:
  an RNN called with ``initial_state`` tensors gets *no* mask (``Layer.__call__`` fills
  ``mask=`` only for single-tensor calls) although later layers stay masked -- pass
  ``mask=`` explicitly; a nested model masks inside but drops the mask at its output;
  ``Masking`` after another mask source replaces the mask (fastrnn ANDs them).

Every unsupported layer / option of the model is collected and reported in one
:class:`~fastrnn.errors.UnsupportedLayerError`.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConversionError, UnsupportedLayerError
from ..spec import (ActivationSpec, DenseSpec, DirectionWeights, EmbeddingSpec, LastStepSpec, MaskingSpec, ModelSpec,
                    RecurrentSpec)

__all__ = ["spec_from_keras"]

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


def _rnn_options(ctx, layer, mask_active):
    """Check the options of one Keras RNN layer; return its mask_mode (or None on a problem)."""
    ok = True
    if getattr(layer, "stateful", False):
        ctx.problem(layer, "stateful=True is not supported (pass initial_state / return_state instead)")
        ok = False
    if getattr(layer, "time_major", False):
        ctx.problem(layer, "time_major=True is not supported")
        ok = False
    zero = bool(getattr(layer, "zero_output_for_mask", False))
    if zero and not layer.return_sequences:
        if mask_active:
            ctx.problem(layer, "zero_output_for_mask=True with return_sequences=False and a mask: Keras then returns "
                               "zeros when the last processed step is masked, which fastrnn cannot express")
            ok = False
        return "hold" if ok else None
    return ("zero" if zero else "hold") if ok else None


def _direction_weights(ctx, layer, kind, cell):
    keras = ctx.keras
    if not getattr(cell, "built", False) or getattr(cell, "kernel", None) is None:
        raise ConversionError(f"layer '{layer.name}' ({_cls(layer)}) is not built (no weights)")
    units = int(cell.units)
    k = _np(keras, cell.kernel).T  # [G*H, I]
    r = _np(keras, cell.recurrent_kernel).T  # [G*H, H]
    g = {"simple_rnn": 1, "lstm": 4, "gru": 3}[kind]
    bias = None if (not cell.use_bias or getattr(cell, "bias", None) is None) else _np(keras, cell.bias)
    zeros = np.zeros(g * units, np.float32)
    if kind == "gru":
        def perm(a):
            blocks = np.split(a, 3, axis=0)
            return np.concatenate([blocks[i] for i in _GRU_PERM], axis=0)

        k, r = perm(k), perm(r)
        if bias is None:
            b_ih, b_hh = zeros, zeros.copy()
        elif cell.reset_after:
            if bias.shape != (2, 3 * units):
                raise ConversionError(f"layer '{layer.name}': GRU reset_after bias has shape {bias.shape}, "
                                      f"expected {(2, 3 * units)}")
            b_ih, b_hh = perm(bias[0]), perm(bias[1])
        else:
            b_ih, b_hh = perm(bias.reshape(-1)), zeros
    else:
        b_ih = zeros if bias is None else bias.reshape(-1)
        b_hh = zeros.copy() if bias is None else zeros
    return DirectionWeights(w_ih=k, w_hh=r, b_ih=b_ih, b_hh=b_hh), units, int(k.shape[1])


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
    b = _np(ctx.keras, layer.bias) if layer.use_bias and layer.bias is not None else None
    if act is None:
        return None
    return DenseSpec(name=name, weight=w.T, bias=b, activation=act)


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
        n, k = base, 1
        while n in used:
            n = f"{base}_{k}"
            k += 1
        used.add(n)
        return n

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


def spec_from_keras(model) -> ModelSpec:
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
    spec = ModelSpec(layers=layers, input_features=input_features, source="keras", metadata=meta)
    return spec.validate()
