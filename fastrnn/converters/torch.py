"""Convert live PyTorch modules to a :class:`fastrnn.spec.ModelSpec`.

Supported modules (exact classes, or subclasses that do not override ``forward``):

* ``nn.RNN`` (``nonlinearity`` tanh / relu), ``nn.LSTM`` (incl. ``proj_size``), ``nn.GRU`` with any
  ``num_layers`` (one :class:`~fastrnn.spec.RecurrentSpec` per stacked layer, named
  ``"<name>.l0"``, ``"<name>.l1"``...), ``bidirectional``, ``bias=False`` (zero biases) and
  ``batch_first`` True or False.  ``dropout`` between stacked layers is ignored (inference = eval).
  Every recurrent layer uses PyTorch packed-sequence semantics: ``mask_mode="zero"``,
  ``return_sequences=True``, direction ``forward`` / ``bidirectional``.
* ``nn.Linear`` -> :class:`~fastrnn.spec.DenseSpec`; an activation module directly after it (no-op
  modules in between are ignored) is folded into the Dense activation.
* ``nn.Embedding`` -> :class:`~fastrnn.spec.EmbeddingSpec` (``padding_idx`` only affects training;
  ``max_norm`` renormalizes the weights at lookup time and is not supported).
* Activation modules: ReLU, ReLU6, Tanh, Sigmoid, Softmax / LogSoftmax over the last axis, ELU(alpha=1),
  SELU, Softplus(beta=1, threshold >= 12), Softsign, SiLU, Hardsigmoid, Hardswish, GELU (``approximate``
  none / tanh), Hardtanh(-1, 1), Mish, LogSigmoid, LeakyReLU(negative_slope=0.2) (fastrnn's
  ``leaky_relu`` is the Keras default slope 0.2; the PyTorch default 0.01 is rejected).
* No-ops: Identity, every Dropout variant (inference never drops).
* ``nn.Sequential`` of the above (nested Sequentials are flattened).

Layout notes:

* ``fastrnn.Model.predict`` is always batch-first: ``x`` is ``(B, T, F)`` (``(B, T)`` ids) whatever
  the module's ``batch_first``; a ``batch_first=False`` module is recorded in
  ``spec.metadata["torch_batch_first"] = False`` and callers must transpose their ``(T, B, F)``
  input.  Initial / final states keep PyTorch's ``(num_directions, B, H)`` orientation.
* ``lengths`` in ``predict`` reproduce ``pack_padded_sequence(..., enforce_sorted=False)`` /
  ``pad_packed_sequence(..., total_length=T)``: outputs are zero past each row's length, the final
  state is the one at the row's last valid step, and the backward direction starts there.
* PyTorch recurrent modules return ``(output, h_n)``; that is why a recurrent module can only be the
  *last* module of an ``nn.Sequential`` (anything after it would receive a tuple).  fastrnn returns
  ``output`` (and, with ``return_state=True``, the states: see :func:`torch_state_to_fastrnn` /
  :func:`fastrnn_state_to_torch` for the conversion to and from PyTorch's ``h_n`` / ``(h_n, c_n)``).

``torch`` is imported lazily: this module (and fastrnn) import without it.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConversionError, UnsupportedLayerError
from ..spec import (ActivationSpec, DenseSpec, DirectionWeights, EmbeddingSpec, ModelSpec,
                    RecurrentSpec)

__all__ = ["spec_from_torch", "torch_state_to_fastrnn", "fastrnn_state_to_torch"]

# Softplus: torch returns x itself where beta*x > threshold; log1p(exp(x)) - x = log1p(exp(-x)) <= e^-x,
# so any threshold with e^-threshold <= 1e-5 (threshold >= 11.52) stays within the float32 tolerance.
_SOFTPLUS_MIN_THRESHOLD = -math.log(1e-5)
_LEAKY_RELU_SLOPE = 0.2
_NOOP = "noop"


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fastrnn.converters.torch needs PyTorch: pip install torch") from e
    return torch


def _cls(m) -> str:
    t = type(m)
    mod = t.__module__
    return t.__name__ if mod.startswith("torch.nn") else f"{mod}.{t.__qualname__}"


def _where(path: str, m) -> str:
    return f"'{path}' ({_cls(m)})" if path else f"<root> ({_cls(m)})"


def _is(m, base) -> bool:
    """``m`` is ``base`` or a subclass that keeps ``base.forward`` (so it computes the same thing)."""
    return isinstance(m, base) and type(m).forward is base.forward


def _np(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu").float().numpy())


# --------------------------------------------------------------------------- activations
def _activation(m, nn, rank3):
    """Return (spec activation name | _NOOP | None if not an activation, problem message | None)."""
    simple = [
        (nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"), (nn.SELU, "selu"),
        (nn.Softsign, "softsign"), (nn.SiLU, "silu"), (nn.Hardsigmoid, "hard_sigmoid"),
        (nn.Hardswish, "hard_silu"), (nn.Mish, "mish"), (nn.LogSigmoid, "log_sigmoid"),
    ]
    for base, name in simple:
        if _is(m, base):
            return name, None
    if _is(m, nn.Identity):
        return _NOOP, None
    dropouts = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
    if isinstance(m, dropouts) and any(type(m).forward is c.forward for c in dropouts):
        return _NOOP, None  # every Dropout variant is the identity at inference
    if _is(m, nn.Hardtanh):  # also nn.ReLU6 (a Hardtanh(0, 6) subclass)
        lo, hi = float(m.min_val), float(m.max_val)
        if (lo, hi) == (-1.0, 1.0):
            return "hard_tanh", None
        if (lo, hi) == (0.0, 6.0):
            return "relu6", None
        return "", f"Hardtanh(min_val={lo}, max_val={hi}): only (-1, 1) (hard_tanh) and (0, 6) (relu6) are supported"
    if _is(m, nn.ELU):
        if float(m.alpha) == 1.0:
            return "elu", None
        return "", f"ELU(alpha={m.alpha}): only alpha=1 is supported"
    if _is(m, nn.LeakyReLU):
        if abs(float(m.negative_slope) - _LEAKY_RELU_SLOPE) < 1e-12:
            return "leaky_relu", None
        return "", (f"LeakyReLU(negative_slope={m.negative_slope}): fastrnn's leaky_relu has the fixed slope "
                    f"{_LEAKY_RELU_SLOPE} (Keras default); other slopes are not supported")
    if _is(m, nn.Softplus):
        if float(m.beta) == 1.0 and float(m.threshold) >= _SOFTPLUS_MIN_THRESHOLD:
            return "softplus", None
        return "", (f"Softplus(beta={m.beta}, threshold={m.threshold}): only beta=1 with threshold >= "
                    f"{_SOFTPLUS_MIN_THRESHOLD:.2f} (e.g. the default 20) is supported")
    if _is(m, nn.GELU):
        if m.approximate == "none":
            return "gelu", None
        if m.approximate == "tanh":
            return "gelu_tanh", None
        return "", f"GELU(approximate={m.approximate!r}) is not supported"
    for base, name in ((nn.Softmax, "softmax"), (nn.LogSoftmax, "log_softmax")):
        if _is(m, base):
            dim = m.dim
            if dim == -1 or (rank3 and dim == 2):
                return name, None
            if dim is None:
                why = "the implicit dim is rank dependent (dim 0 for 3-D input)"
            elif rank3:
                why = "the tensors are (B, T, F) here, so only dim=-1 or dim=2 is the last axis"
            else:
                why = ("without a recurrent or Embedding layer the input rank is not known "
                       "((B, F) or (B, T, F)), so only dim=-1 is unambiguous")
            return "", f"{type(m).__name__}(dim={dim}): fastrnn applies {name} over the last axis only; {why}"
    return None, None


# --------------------------------------------------------------------------- recurrent
def _recurrent(m, name: str, nn):
    mode = m.mode
    if mode == "LSTM":
        kind, act = "lstm", "tanh"
    elif mode == "GRU":
        kind, act = "gru", "tanh"
    elif mode in ("RNN_TANH", "RNN_RELU"):
        kind, act = "simple_rnn", "tanh" if mode == "RNN_TANH" else "relu"
    else:  # pragma: no cover
        raise UnsupportedLayerError(f"{name}: recurrent mode {mode!r} is not supported")
    H = int(m.hidden_size)
    P = int(getattr(m, "proj_size", 0) or 0)
    nd = 2 if m.bidirectional else 1
    G = {"lstm": 4, "gru": 3, "simple_rnn": 1}[kind]
    hout = P if P else H
    layers = []
    for k in range(int(m.num_layers)):
        ws = []
        for d in range(nd):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            try:
                w_ih = _np(getattr(m, "weight_ih" + sfx))
                w_hh = _np(getattr(m, "weight_hh" + sfx))
                if m.bias:
                    b_ih, b_hh = _np(getattr(m, "bias_ih" + sfx)), _np(getattr(m, "bias_hh" + sfx))
                else:
                    b_ih = b_hh = np.zeros(G * H, dtype=np.float32)
                w_hr = _np(getattr(m, "weight_hr" + sfx)) if P else None
            except AttributeError as e:
                raise ConversionError(f"{name}: missing parameter ({e})") from None
            ws.append(DirectionWeights(w_ih, w_hh, b_ih, b_hh, w_hr))
        in_size = int(m.input_size) if k == 0 else nd * hout
        layers.append(RecurrentSpec(
            kind=kind, name=f"{name}.l{k}", input_size=in_size, units=H, weights=ws, activation=act,
            recurrent_activation="sigmoid", reset_after=True, proj_size=P,
            direction="bidirectional" if nd == 2 else "forward", merge_mode="concat",
            return_sequences=True, mask_mode="zero"))
    return layers


# --------------------------------------------------------------------------- main entry
def _flatten(module, nn):
    """[(path, module)] of the chain; nested Sequentials are expanded."""
    out = []

    def rec(m, path):
        if _is(m, nn.Sequential):
            for child_name, child in m.named_children():
                rec(child, f"{path}.{child_name}" if path else child_name)
        else:
            out.append((path, m))

    rec(module, "")
    return out


def _find_recurrent(module):
    torch = _torch()
    nn = torch.nn
    rec = [(p, m) for p, m in _flatten(module, nn) if isinstance(m, nn.RNNBase)]
    if not rec:
        raise ConversionError(f"{_cls(module)} contains no nn.RNN / nn.LSTM / nn.GRU module")
    if len(rec) > 1:  # pragma: no cover - a Sequential cannot chain two of them anyway
        raise ConversionError(f"{_cls(module)} contains several recurrent modules; pass the one you mean")
    return rec[0][1]


def spec_from_torch(module) -> ModelSpec:
    """Convert a live ``torch.nn.Module`` (see the module docstring for what is supported).

    Raises :class:`~fastrnn.errors.UnsupportedLayerError` listing every module that cannot be
    converted (path, class and reason) in one message.
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise ConversionError(f"spec_from_torch expects a torch.nn.Module, got {type(module).__name__}")
    chain = _flatten(module, nn)
    if not chain:
        raise ConversionError("the module is an empty nn.Sequential: nothing to convert")
    rank3 = any(isinstance(m, (nn.RNNBase, nn.Embedding)) for _, m in chain)

    problems = []
    items = []  # (path, module, tag, extra)
    rec_seen = None
    for path, m in chain:
        where = _where(path, m)
        if rec_seen is not None:
            problems.append(
                f"{where}: comes after the recurrent module {_where(*rec_seen)}; a PyTorch RNN/LSTM/GRU returns an "
                "(output, h_n) tuple, so inside nn.Sequential it can only be the last module (apply the following "
                "layers to the output yourself, or convert them as a separate Sequential)")
            continue
        if isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)) and type(m).forward in (nn.RNN.forward, nn.LSTM.forward,
                                                                             nn.GRU.forward):
            if m.mode not in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU"):
                problems.append(f"{where}: recurrent mode {m.mode!r} is not supported")
            items.append((path, m, "rnn", None))
            rec_seen = (path, m)
            continue
        if _is(m, nn.Linear):
            items.append((path, m, "linear", None))
            continue
        if _is(m, nn.Embedding):
            if m.max_norm is not None:
                problems.append(f"{where}: max_norm={m.max_norm} renormalizes the embedding rows at lookup time; "
                                "not supported (renormalize the weight and set max_norm=None)")
            elif items or rec_seen is not None:
                problems.append(f"{where}: an Embedding must be the first module")
            else:
                items.append((path, m, "embedding", None))
            continue
        act, why = _activation(m, nn, rank3)
        if why:
            problems.append(f"{where}: {why}")
        elif act == _NOOP:
            continue
        elif act is not None:
            items.append((path, m, "act", act))
        else:
            hint = ""
            if isinstance(m, nn.RNNCellBase):
                hint = " (single-step cells are not supported; use nn.RNN / nn.LSTM / nn.GRU)"
            elif isinstance(m, (nn.ModuleList, nn.ModuleDict)):
                hint = " (only nn.Sequential containers are supported)"
            elif not type(m).__module__.startswith("torch."):
                hint = (" (a custom module's forward() cannot be converted; express the model as an nn.Sequential "
                        "of supported modules, or convert its supported submodules separately)")
            problems.append(f"{where}: not supported{hint}")
    if problems:
        raise UnsupportedLayerError(
            f"cannot convert {_cls(module)}: {len(problems)} unsupported module(s):\n  - " + "\n  - ".join(problems))

    layers = []
    names = set()

    def unique(n):
        base, i = n, 1
        while n in names:
            n = f"{base}_{i}"
            i += 1
        names.add(n)
        return n

    meta = {"framework": "torch", "torch_version": str(torch.__version__), "torch_class": _cls(module)}
    input_features = None
    for i, (path, m, tag, extra) in enumerate(items):
        base = path or type(m).__name__.lower()
        if tag == "rnn":
            for l in _recurrent(m, base, nn):
                l.name = unique(l.name)
                layers.append(l)
            meta["torch_batch_first"] = bool(m.batch_first)
            meta["torch_recurrent"] = {"module": base, "class": _cls(m), "num_layers": int(m.num_layers),
                                       "bidirectional": bool(m.bidirectional), "dropout_ignored": float(m.dropout)}
            if i == 0:
                input_features = int(m.input_size)
        elif tag == "linear":
            bias = _np(m.bias) if m.bias is not None else None
            layers.append(DenseSpec(name=unique(base), weight=_np(m.weight), bias=bias))
            if i == 0:
                input_features = int(m.in_features)
        elif tag == "embedding":
            layers.append(EmbeddingSpec(name=unique(base), embeddings=_np(m.weight), mask_zero=False))
        else:  # activation: fold into a directly preceding linear Dense
            prev = layers[-1] if layers else None
            if isinstance(prev, DenseSpec) and prev.activation == "linear" and items[i - 1][2] == "linear":
                prev.activation = extra
            else:
                layers.append(ActivationSpec(name=unique(base), activation=extra))
    if not layers or (input_features is None and not isinstance(layers[0], EmbeddingSpec)):
        raise ConversionError(
            f"cannot determine the input feature size of {_cls(module)}: the first (non no-op) module must be "
            "nn.Linear, nn.Embedding, nn.RNN, nn.LSTM or nn.GRU")
    return ModelSpec(layers=layers, input_features=input_features, source="torch", metadata=meta).validate()


# --------------------------------------------------------------------------- states
def _as_np(a, what):
    if a is None:
        raise ConversionError(f"{what} is None")
    if hasattr(a, "detach"):
        a = a.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def torch_state_to_fastrnn(module, hx):
    """PyTorch ``h0`` (num_layers*num_directions, B, H) -- ``(h0, c0)`` for an LSTM -- to fastrnn's
    ``initial_state``: a list with one item per stacked layer, LSTM ``(h, c)`` with h
    (num_directions, B, hidden_out) and c (num_directions, B, hidden), otherwise ``h``
    (num_directions, B, H).  ``module`` is the recurrent module or a Sequential containing it.
    Also converts a returned ``h_n`` / ``(h_n, c_n)`` (same layout).  Returns float32 numpy arrays.
    Unbatched states (num_layers*num_directions, H) get B = 1.
    """
    m = _find_recurrent(module)
    L, nd = int(m.num_layers), 2 if m.bidirectional else 1
    lstm = m.mode == "LSTM"
    if lstm:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ConversionError("an LSTM state must be an (h, c) pair")
        parts = [_as_np(hx[0], "h"), _as_np(hx[1], "c")]
    else:
        if isinstance(hx, (tuple, list)):
            if len(hx) != 1:
                raise ConversionError("a GRU/RNN state must be a single tensor h")
            hx = hx[0]
        parts = [_as_np(hx, "h")]
    for j, p in enumerate(parts):
        if p.ndim == 2:
            p = p[:, None, :]
        if p.ndim != 3 or p.shape[0] != L * nd:
            raise ConversionError(f"state {'hc'[j]} has shape {p.shape}; expected ({L * nd}, B, H)")
        parts[j] = p
    out = []
    for k in range(L):
        sl = [np.ascontiguousarray(p[k * nd:(k + 1) * nd]) for p in parts]
        out.append(tuple(sl) if lstm else sl[0])
    return out


def fastrnn_state_to_torch(module, states):
    """Inverse of :func:`torch_state_to_fastrnn`: fastrnn per-layer states (a list, or the bare item
    for a single-layer module) to PyTorch's ``h`` (num_layers*num_directions, B, H) or ``(h, c)``,
    as float32 ``torch.Tensor``.
    """
    torch = _torch()
    m = _find_recurrent(module)
    L = int(m.num_layers)
    lstm = m.mode == "LSTM"
    s = states
    if L == 1 and (hasattr(s, "shape") or not isinstance(s, (list, tuple)) or len(s) != 1):
        s = [s]  # the bare item of a single-layer module
    if not isinstance(s, (list, tuple)) or len(s) != L:
        raise ConversionError(f"expected {L} per-layer state(s), got {type(states).__name__}")
    if lstm:
        for k, item in enumerate(s):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ConversionError(f"layer {k}: an LSTM state must be an (h, c) pair")
        h = np.concatenate([_as_np(item[0], "h") for item in s], axis=0)
        c = np.concatenate([_as_np(item[1], "c") for item in s], axis=0)
        return torch.from_numpy(h), torch.from_numpy(c)
    items = [item[0] if isinstance(item, (tuple, list)) and len(item) == 1 else item for item in s]
    return torch.from_numpy(np.concatenate([_as_np(it, "h") for it in items], axis=0))
