"""Convert live PyTorch modules to a :class:`fastrnn.spec.ModelSpec`.

Supported modules (exact classes, or subclasses that do not override ``forward``):

* ``nn.RNN`` (``nonlinearity`` tanh / relu), ``nn.LSTM`` (incl. ``proj_size``), ``nn.GRU`` with any
  ``num_layers`` (one :class:`~fastrnn.spec.RecurrentSpec` per stacked layer, named
  ``"<name>.l0"``, ``"<name>.l1"``...), ``bidirectional``, ``bias=False`` (zero biases) and
  ``batch_first`` True or False.  ``dropout`` between stacked layers is ignored (inference = eval).
  Every recurrent layer uses PyTorch packed-sequence semantics: ``mask_mode="zero"``,
  ``return_sequences=True``, direction ``forward`` / ``bidirectional``.
* ``nn.LSTMCell``, ``nn.GRUCell``, ``nn.RNNCell`` (also inside ``nn.Sequential``; an LSTMCell returns
  ``(h, c)``, so it must be last there): one forward recurrent layer with ``return_sequences=True``.
  ``predict`` over ``(B, T, F)`` equals the cell stepped over time from a zero state (each step's ``h``);
  ``model.stream().step(x_t)`` is one cell call, and ``stream.state`` / ``initial_state`` take the cell's
  state as ``(1, B, H)`` arrays (``(h, c)`` for an LSTMCell).
* Step modules: a custom ``forward(x_t, state=None)`` (traced with ``torch.fx``) that calls one cell
  *once* on a time step ``x_t`` (B, F), with an optional Embedding / Linear / activations before it and
  Linear / activations on its ``h`` after it (``h, c = self.cell(x, state)``; ``self.fc(h)``).  The
  model is that call repeated over time, threading the state: ``predict(x)`` takes ``(B, T, F)``
  (``(B, T)`` ids) and returns each step's output; ``stream().step(x_t)`` is one ``forward`` call.
  The ``state`` argument (a tensor, a tuple, or ``state[0], state[1]``: used only as the cell's state)
  becomes ``predict``'s ``initial_state`` / ``stream.state`` (``(1, B, H)`` arrays, ``(h, c)`` for an
  LSTMCell), zero when not given.  A forward that loops over time in Python around a cell is refused
  (tracing cannot follow a loop over ``x.size(1)``; a constant loop is unrolled into several calls):
  fastrnn runs that loop itself.  Returning the state too (``return self.fc(h), (h, c)``) needs
  several outputs, not supported here: return the output and read the state from
  ``predict(return_state=True)`` / ``stream.state``.
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
* Custom ``nn.Module`` subclasses whose ``forward`` is a static chain of the above: traced with
  ``torch.fx`` (forward parameters defaulting to None are specialized to None) and pattern-matched:
  the recurrent module's ``out`` (``out, _ = self.rnn(x)``), ``out[:, -1]`` / ``out[:, -1, :]``
  (``out[-1]`` for batch_first=False), ``h_n[-1]`` (``_, (h, c) = self.lstm(x); h[-1]``; for a
  bidirectional module that is the *backward* direction of the last layer, expressed exactly by
  zero-widening the following nn.Linear), ``torch.cat((h[-2], h[-1]), dim=1)``, ``h.squeeze(0)``,
  functional / method activations (``torch.relu``, ``F.softmax(x, dim=-1)``...), ``F.normalize(x, dim=-1)``
  (p=2 and the default eps=1e-12, over the last axis: the ``l2_normalize`` activation), dropout / ``.contiguous()``
  no-ops, and ``torch.zeros(...)`` initial states (= no initial state; a ``forward(x, h=None)``
  initial state is None here and goes to ``predict(initial_state=...)``).  Anything else raises
  :class:`~fastrnn.errors.UnsupportedLayerError` listing EVERY unsupported graph node.
* A custom ``forward`` may return a tuple (nested as torch nests it): the end of the chain, the
  output of any earlier module of the chain (``out`` of ``(self.fc(out), out)``), a recurrent
  module's ``h_n`` / ``c_n`` / ``(h_n, c_n)`` (all its layers, torch's ``(layers * directions, B, H)``),
  ``h_n[-1]`` (one direction of its last layer, ``(B, H)``) or the recurrent module's whole
  ``(out, h_n)`` / ``(out, (h_n, c_n))``: ``(logits, h_n)`` of a char LM, ``(out, h_n, c_n)``,
  ``return self.lstm(x)``.  ``predict`` then returns the same (nested) tuple (``ModelSpec.outputs``,
  named ``output_0``...); ``stream().step`` returns the step's data outputs (the logits; the states
  are the stream's ``state``) and ``generate`` samples the first one.
* The torch-layout -> spec logic shared with ``fastrnn.io.torch_file`` (files read without torch):
  :class:`RNNDesc`, :class:`Piece`, :func:`rnn_desc_from_tensors`, :func:`recurrent_specs`, :func:`build_spec`.

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
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import unique_name
from ..errors import ConversionError, UnsupportedLayerError
from ..spec import (AXIS_ACTIVATIONS, GATES, ActivationSpec, DenseSpec, DirectionWeights, EmbeddingSpec, LayerSpec,
                    LastStepSpec, ModelSpec, OutputSpec, RecurrentSpec)

__all__ = ["spec_from_torch", "torch_state_to_fastrnn", "fastrnn_state_to_torch", "RNNDesc", "Piece",
           "rnn_desc_from_tensors", "recurrent_specs", "build_spec", "cell_piece", "CELL_MODES"]

# Softplus: torch returns x itself where beta*x > threshold; log1p(exp(x)) - x = log1p(exp(-x)) <= e^-x,
# so any threshold with e^-threshold <= 1e-5 (threshold >= 11.52) stays within the float32 tolerance.
_SOFTPLUS_MIN_THRESHOLD = -math.log(1e-5)
_LEAKY_RELU_SLOPE = 0.2
_NOOP = "noop"
# torch objects (modules, tensors, torch.fx nodes) are typed Any: torch is imported lazily, only where needed
_Arrays = dict[str, npt.NDArray[np.float32]]  # torch parameter name (without module prefix) -> array
_OutputRef = tuple[Any, ...]  # one build_spec output: ("last",) | ("tap", i) | ("h" | "c", i, direction[, batch_major])
_Structure = Union[int, list["_Structure"]]  # nested output indices (ModelSpec.output_structure)
# one layer's state as fastrnn takes it: h, or (h, c) for an LSTM
_LayerState = Union[npt.NDArray[np.float32], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fastrnn.converters.torch needs PyTorch: pip install torch") from e
    return torch


def _cls(m: Any) -> str:
    t = type(m)
    mod = t.__module__
    return t.__name__ if mod.startswith("torch.nn") else f"{mod}.{t.__qualname__}"


def _where(path: str, m: Any) -> str:
    return f"'{path}' ({_cls(m)})" if path else f"<root> ({_cls(m)})"


def _is(m: Any, base: Any) -> bool:
    """``m`` is ``base`` or a subclass that keeps ``base.forward`` (so it computes the same thing)."""
    return isinstance(m, base) and type(m).forward is base.forward


def _np(t: Any) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(t.detach().to("cpu").float().numpy())


# --------------------------------------------------------------------------- activations
def _activation(m: Any, nn: Any, rank3: bool) -> tuple[Optional[str], Optional[str]]:
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


# --------------------------------------------------------------------------- shared torch layout -> spec
# Both the live-module path (this module) and the file path (``fastrnn.io.torch_file``) describe a model
# as a chain of :class:`Piece` (a module description plus its tensors as numpy arrays, keyed by the
# PyTorch parameter names) and call :func:`build_spec`.  Nothing below imports torch.
# layer indices as PyTorch writes them: no leading zeros (``_l00`` would be a second ``_l0``)
_RNN_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(0|[1-9][0-9]*)(_reverse)?$")
_MAX_LAYER_DIGITS = 9  # layer indices below 10^9 (each layer needs tensors of its own anyway)
_MODES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}
_GATES_BY_MODE = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


@dataclass
class RNNDesc:
    """What a state dict cannot say by itself about an ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``."""

    mode: str  # "LSTM" | "GRU" | "RNN_TANH" | "RNN_RELU" (torch's RNNBase.mode)
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    bias: bool = True
    batch_first: Optional[bool] = None  # None: unknown (a state dict does not record it)
    dropout: float = 0.0
    cell: bool = False  # an nn.LSTMCell / GRUCell / RNNCell, stepped over time


@dataclass
class Piece:
    """One link of a torch model chain.

    tag: ``embedding`` (tensors ``weight``), ``linear`` (``weight``, optional ``bias``), ``rnn``
    (``rnn`` desc, tensors ``weight_ih_l0``...), ``act`` (``act`` = a fastrnn activation name) or
    ``select``: ``select="last_step"`` (``out[:, -1]``) or ``select="final"`` with ``dirs`` the
    directions of the last recurrent layer's final ``h`` that are kept, in order: ``("fwd",)`` for a
    unidirectional ``h_n[-1]``, ``("bwd",)`` for a bidirectional ``h_n[-1]`` (PyTorch orders h_n as
    layer-major, forward then backward, so ``h_n[-1]`` is the *backward* direction of the last layer),
    ``("fwd", "bwd")`` for ``torch.cat((h_n[-2], h_n[-1]), 1)``.
    """

    tag: str
    name: str
    tensors: _Arrays = field(default_factory=dict)
    rnn: Optional[RNNDesc] = None
    act: Optional[str] = None
    select: Optional[str] = None
    dirs: tuple[str, ...] = ()
    where: str = ""


def _names(names: Sequence[str], n: int = 20, width: int = 80) -> str:
    """The first ``n`` of ``names`` for a message, each cut to ``width`` characters, and how many more."""
    shown = [k if len(k) <= width else k[:width] + f"...({len(k):,} characters)" for k in names[:n]]
    return ", ".join(shown) + (f" ... ({len(names) - n:,} more)" if len(names) > n else "")


def rnn_desc_from_tensors(tensors: Mapping[str, npt.ArrayLike], where: str, mode: Optional[str] = None) -> RNNDesc:
    """Infer an :class:`RNNDesc` from parameter names and shapes (keys ``weight_ih_l0``... without prefix).

    ``mode`` (``LSTM``/``GRU``/``RNN_TANH``/``RNN_RELU``) is checked against the gate count when given.
    A gate count of 1 (a plain ``nn.RNN``) needs ``mode``: tanh vs relu cannot be read off shapes.
    The work is proportional to the number of tensors, whatever layer indices their names claim.
    """
    parsed: dict[tuple[str, int, bool], npt.NDArray[Any]] = {}
    bad: list[str] = []
    for k in tensors:
        mt = _RNN_KEY.match(k) if isinstance(k, str) else None
        if not mt or len(mt.group(2)) > _MAX_LAYER_DIGITS:
            bad.append(str(k))
            continue
        parsed[(mt.group(1), int(mt.group(2)), bool(mt.group(3)))] = np.asarray(tensors[k])
    if bad:
        raise ConversionError(f"{where}: not parameters of nn.RNN/LSTM/GRU (or a layer index of more than "
                              f"{_MAX_LAYER_DIGITS} digits): {_names(sorted(bad))}")
    if not parsed:
        raise ConversionError(f"{where}: no recurrent parameters (weight_ih_l0, weight_hh_l0, ...) found")
    L = max(k for _, k, _ in parsed) + 1
    bi = any(r for _, _, r in parsed)
    has_bias = any(n.startswith("bias") for n, _, _ in parsed)
    proj = any(n == "weight_hr" for n, _, _ in parsed)
    need = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if has_bias else []) + (["weight_hr"] if proj else [])
    dirs = (False, True) if bi else (False,)
    n_missing = L * len(dirs) * len(need) - len(parsed)  # every parsed name is one of `need`
    if n_missing:
        missing = []  # the first few, in order: the loop passes at most the layers present, then stops
        for li in range(L):
            missing += [f"{n}_l{li}{'_reverse' if r else ''}" for r in dirs for n in need if (n, li, r) not in parsed]
            if len(missing) >= 20:
                break
        raise ConversionError(f"{where}: incomplete recurrent parameters for {L:,} layer(s), {n_missing:,} missing: "
                              f"{_names(missing)}{' ...' if n_missing > len(missing) else ''}")
    w_ih, w_hh = parsed[("weight_ih", 0, False)], parsed[("weight_hh", 0, False)]
    if w_ih.ndim != 2 or w_hh.ndim != 2:
        raise ConversionError(f"{where}: weight_ih_l0 / weight_hh_l0 must be 2-D, got {w_ih.shape} / {w_hh.shape}")
    if proj:
        w_hr = parsed[("weight_hr", 0, False)]
        if w_hr.ndim != 2:
            raise ConversionError(f"{where}: weight_hr_l0 must be 2-D, got {w_hr.shape}")
        P, H = int(w_hr.shape[0]), int(w_hr.shape[1])
    else:
        P, H = 0, int(w_hh.shape[1])
    rows = int(w_hh.shape[0])
    if H < 1 or rows % H or rows // H not in (1, 3, 4):
        raise ConversionError(f"{where}: weight_hh_l0 {tuple(w_hh.shape)} is not [G*H, H] with G = 1, 3 or 4 gates")
    G = rows // H
    if mode is not None:
        if mode not in _GATES_BY_MODE:
            raise ConversionError(f"{where}: unknown recurrent mode {mode!r}")
        if _GATES_BY_MODE[mode] != G:
            raise ConversionError(f"{where}: the architecture says {mode} ({_GATES_BY_MODE[mode]} gate(s)) but "
                                  f"weight_hh_l0 {tuple(w_hh.shape)} has {G} gate(s) of {H} units")
    elif G == 1:
        raise ConversionError(
            f"{where}: these are nn.RNN parameters (1 gate); tanh and relu nonlinearities have identical shapes, so "
            "say which: architecture='rnn_tanh' or 'rnn_relu' (or {'type': 'rnn', 'nonlinearity': 'relu', ...})")
    else:
        mode = {3: "GRU", 4: "LSTM"}[G]
    if proj and mode != "LSTM":
        raise ConversionError(f"{where}: weight_hr (proj_size) is only valid for an LSTM")
    return RNNDesc(mode=mode, input_size=int(w_ih.shape[1]), hidden_size=H, num_layers=L, bidirectional=bi,
                   proj_size=P, bias=has_bias)


_CELL_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
CELL_MODES = {"lstm_cell": "LSTM", "gru_cell": "GRU", "rnn_cell": None}


def cell_piece(tensors: _Arrays, mode: str, name: str, where: str) -> Piece:
    """An ``nn.LSTMCell`` / ``nn.GRUCell`` / ``nn.RNNCell`` (tensors ``weight_ih``, ``weight_hh``, optional
    ``bias_ih`` / ``bias_hh``: a cell's names, without ``_l0``) as the one-layer, one-direction recurrent
    piece it equals when stepped over time from a zero state (``return_sequences``: each step's ``h``)."""
    bad = sorted(str(k) for k in tensors if k not in _CELL_NAMES)
    if bad:
        raise ConversionError(f"{where}: not parameters of an RNN cell (weight_ih, weight_hh, bias_ih, bias_hh): "
                              f"{_names(bad)}")
    if ("bias_ih" in tensors) != ("bias_hh" in tensors):
        raise ConversionError(f"{where}: a cell has both bias_ih and bias_hh or neither")
    desc = rnn_desc_from_tensors({f"{k}_l0": v for k, v in tensors.items()}, where, mode)
    desc.cell = True
    return Piece("rnn", name, {f"{k}_l0": v for k, v in tensors.items()}, rnn=desc, where=where)


def recurrent_specs(desc: RNNDesc, tensors: Mapping[str, npt.ArrayLike], name: str) -> list[RecurrentSpec]:
    """One :class:`RecurrentSpec` per stacked layer (``"<name>.l0"``...) from torch-named tensors."""
    mode = desc.mode
    if mode == "LSTM":
        kind, act = "lstm", "tanh"
    elif mode == "GRU":
        kind, act = "gru", "tanh"
    elif mode in ("RNN_TANH", "RNN_RELU"):
        kind, act = "simple_rnn", "tanh" if mode == "RNN_TANH" else "relu"
    else:
        raise UnsupportedLayerError(f"{name}: recurrent mode {mode!r} is not supported")
    H, P = int(desc.hidden_size), int(desc.proj_size or 0)
    nd = 2 if desc.bidirectional else 1
    G = GATES[kind]
    hout = P if P else H

    def get(n: str) -> npt.NDArray[np.float32]:
        if n not in tensors:
            raise ConversionError(f"{name}: missing parameter {n}")
        return np.ascontiguousarray(np.asarray(tensors[n], dtype=np.float32))

    layers: list[RecurrentSpec] = []
    for k in range(int(desc.num_layers)):
        ws: list[DirectionWeights] = []
        for d in range(nd):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            w_ih, w_hh = get("weight_ih" + sfx), get("weight_hh" + sfx)
            if desc.bias:
                b_ih, b_hh = get("bias_ih" + sfx), get("bias_hh" + sfx)
            else:
                b_ih = b_hh = np.zeros(G * H, dtype=np.float32)
            ws.append(DirectionWeights(w_ih, w_hh, b_ih, b_hh, get("weight_hr" + sfx) if P else None))
        in_size = int(desc.input_size) if k == 0 else nd * hout
        layers.append(RecurrentSpec(
            kind=kind, name=f"{name}.l{k}", input_size=in_size, units=H, weights=ws, activation=act,
            recurrent_activation="sigmoid", reset_after=True, proj_size=P,
            direction="bidirectional" if nd == 2 else "forward", merge_mode="concat",
            return_sequences=True, mask_mode="zero"))
    return layers


def build_spec(pieces: Sequence[Piece], source: str = "torch", metadata: Optional[Mapping[str, Any]] = None,
               input_features: Optional[int] = None, outputs: Optional[Sequence[_OutputRef]] = None,
               output_structure: Any = None) -> ModelSpec:
    """Assemble a validated :class:`ModelSpec` from a chain of :class:`Piece`.

    Folds an activation into a directly preceding linear; implements ``h_n[...]`` selections (a
    subset / reordering of the last layer's final-state directions) by widening the following linear
    with zero columns -- exact, since adding ``0 * h`` changes no float sum for finite ``h``.
    ``outputs`` (a module returning a tuple): the model outputs in order, each ``("last",)`` (the end
    of the chain), ``("tap", i)`` (the output of piece ``i``) or ``("h" | "c", i, direction[,
    batch_major])`` (the final state of the recurrent piece ``i`` (or pieces, a list): all their layers
    stacked as torch's ``h_n`` when ``direction`` is None, else that direction of the last one,
    ``(B, H)``), nested as
    ``output_structure`` (see :class:`fastrnn.spec.ModelSpec`).
    """
    meta = dict(metadata or {})
    layers: list[LayerSpec] = []
    names: set[str] = set()
    # (dirs, hout, where) of a final-state selection that needs the next linear
    pending: Optional[tuple[tuple[str, ...], int, str]] = None
    tapped = {o[1] for o in outputs or [] if o[0] == "tap"}
    made: list[list[LayerSpec]] = []  # per piece: the layers it made (an activation folded into a linear: none)

    def unique(n: str) -> str:
        return unique_name(n, names)

    rnn_meta: list[dict[str, Any]] = []
    prev_tag: Optional[str] = None
    for i, p in enumerate(pieces):
        made.append([])
        first_new = len(layers)
        if p.tag == "embedding":
            w = np.asarray(p.tensors["weight"], dtype=np.float32)
            layers.append(EmbeddingSpec(name=unique(p.name), embeddings=w, mask_zero=False))
        elif p.tag == "rnn":
            if p.rnn is None:
                raise ConversionError(f"{p.where or p.name}: a recurrent piece needs its RNNDesc (Piece(..., rnn=...))")
            if pending:
                raise UnsupportedLayerError(f"{pending[2]}: a final-state selection cannot feed a recurrent layer")
            for l in recurrent_specs(p.rnn, p.tensors, p.name):
                l.name = unique(l.name)
                layers.append(l)
            if p.rnn.batch_first is not None:
                meta["torch_batch_first"] = bool(p.rnn.batch_first)
            rnn_meta.append({"module": p.name, "mode": p.rnn.mode, "num_layers": int(p.rnn.num_layers),
                             "bidirectional": bool(p.rnn.bidirectional), "dropout_ignored": float(p.rnn.dropout)}
                            | ({"cell": True} if p.rnn.cell else {}))
            if i == 0:
                input_features = int(p.rnn.input_size)
        elif p.tag == "linear":
            w = np.asarray(p.tensors["weight"], dtype=np.float32)
            b = p.tensors.get("bias")
            b = None if b is None else np.asarray(b, dtype=np.float32)
            if pending:
                dirs, hout, _ = pending
                if w.ndim != 2 or w.shape[1] != len(dirs) * hout:
                    raise ConversionError(f"{p.where or p.name}: weight {w.shape} does not take the selected "
                                          f"{len(dirs)} x {hout} final-state features")
                wide = np.zeros((w.shape[0], 2 * hout), dtype=np.float32)
                for j, d in enumerate(dirs):
                    off = 0 if d == "fwd" else hout
                    wide[:, off:off + hout] += w[:, j * hout:(j + 1) * hout]
                w, pending = wide, None
            layers.append(DenseSpec(name=unique(p.name), weight=w, bias=b))
            if i == 0:
                input_features = int(w.shape[1]) if w.ndim == 2 else None
        elif p.tag == "act":
            if p.act is None:
                raise UnsupportedLayerError(f"{p.where or p.name}: an activation piece needs its activation "
                                            "(Piece(..., act=...))")
            if pending and p.act in AXIS_ACTIVATIONS:
                raise UnsupportedLayerError(
                    f"{p.where or p.name}: {p.act} over a subset of the bidirectional final state "
                    f"({pending[2]}) cannot be expressed; apply a linear layer first")
            prev = layers[-1] if layers else None
            if isinstance(prev, DenseSpec) and prev.activation == "linear" and prev_tag == "linear" and \
                    i - 1 not in tapped:  # a linear whose own output is a model output keeps it
                prev.activation = p.act
            else:
                layers.append(ActivationSpec(name=unique(p.name), activation=p.act))
        elif p.tag == "select":
            if p.select == "last_step":
                layers.append(LastStepSpec(name=unique(p.name)))
            elif p.select == "final":
                last = layers[-1] if layers else None
                if not isinstance(last, RecurrentSpec) or prev_tag != "rnn":
                    raise UnsupportedLayerError(
                        f"{p.where or p.name}: a final-state selection (h_n[...]) must directly follow a recurrent layer")
                if i - 1 in tapped:
                    raise UnsupportedLayerError(f"{p.where or p.name}: the recurrent output sequence and its final-state "
                                                "selection cannot both be model outputs")
                last.return_sequences = False
                full = ("fwd", "bwd") if last.num_directions == 2 else ("fwd",)
                if tuple(p.dirs) != full:
                    if last.num_directions == 1 or any(d not in ("fwd", "bwd") for d in p.dirs):
                        raise UnsupportedLayerError(f"{p.where or p.name}: bad final-state selection {p.dirs}")
                    pending = (tuple(p.dirs), last.hidden_out, p.where or p.name)
            else:
                raise ConversionError(f"{p.name}: unknown selection {p.select!r}")
        else:
            raise ConversionError(f"{p.name}: unknown piece {p.tag!r}")
        made[-1] = layers[first_new:]
        prev_tag = p.tag
    if pending:
        dirs, _, where = pending
        raise UnsupportedLayerError(
            f"{where}: selects only the {'backward' if dirs == ('bwd',) else '/'.join(dirs)} direction(s) of a "
            "bidirectional layer's final state (h_n[-1] of a bidirectional module is the backward direction of the "
            "last layer); fastrnn can only express that when an nn.Linear follows (directly or after element-wise "
            "activations). Use torch.cat((h_n[-2], h_n[-1]), 1) or out[:, -1] for both directions")
    if rnn_meta:
        meta["torch_recurrent"] = rnn_meta[0] if len(rnn_meta) == 1 else rnn_meta
    if not layers or (input_features is None and not isinstance(layers[0], EmbeddingSpec)):
        raise ConversionError(
            "cannot determine the input feature size: the first (non no-op) module must be "
            "nn.Linear, nn.Embedding, nn.RNN, nn.LSTM or nn.GRU")
    specs: Optional[list[OutputSpec]] = None
    if outputs:
        specs = []
        for k, o in enumerate(outputs):
            name = f"output_{k}"
            if o[0] == "last":
                specs.append(OutputSpec(name, "output", [layers[-1].name]))
            elif o[0] == "tap":
                src = made[o[1]] or next(m for m in reversed(made[:o[1]]) if m)  # (a folded activation: none)
                specs.append(OutputSpec(name, "output", [src[-1].name]))
            else:
                rnns = [l for i in (o[1] if isinstance(o[1], list) else [o[1]]) for l in made[i]
                        if isinstance(l, RecurrentSpec)]
                if o[2] is None:
                    specs.append(OutputSpec(name, o[0], [l.name for l in rnns], batch_major=len(o) > 3 and o[3]))
                else:
                    specs.append(OutputSpec(name, o[0], [rnns[-1].name], direction=o[2]))
    return ModelSpec(layers=layers, input_features=input_features, source=source, metadata=meta, outputs=specs,
                     output_structure=output_structure).validate()


# --------------------------------------------------------------------------- live modules -> pieces
def _rnn_desc(m: Any) -> RNNDesc:
    return RNNDesc(mode=m.mode, input_size=int(m.input_size), hidden_size=int(m.hidden_size),
                   num_layers=int(m.num_layers), bidirectional=bool(m.bidirectional),
                   proj_size=int(getattr(m, "proj_size", 0) or 0), bias=bool(m.bias),
                   batch_first=bool(m.batch_first), dropout=float(m.dropout))


def _params(m: Any) -> _Arrays:
    return {n: _np(p) for n, p in m.named_parameters(recurse=False)}


def _supported_rnn(m: Any, nn: Any) -> bool:
    return isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)) and type(m).forward in (nn.RNN.forward, nn.LSTM.forward,
                                                                             nn.GRU.forward)


def _flatten(module: Any, nn: Any) -> list[tuple[str, Any]]:
    """[(path, module)] of the chain; nested Sequentials are expanded."""
    out: list[tuple[str, Any]] = []

    def rec(m: Any, path: str) -> None:
        if _is(m, nn.Sequential):
            for child_name, child in m.named_children():
                rec(child, f"{path}.{child_name}" if path else child_name)
        else:
            out.append((path, m))

    rec(module, "")
    return out


def _find_recurrent(module: Any) -> Any:
    torch = _torch()
    nn = torch.nn
    rec = [(p, m) for p, m in _flatten(module, nn) if isinstance(m, nn.RNNBase)]
    if not rec:
        rec = [(p, m) for p, m in module.named_modules() if isinstance(m, nn.RNNBase)] \
            if isinstance(module, nn.Module) else []
    if not rec:
        raise ConversionError(f"{_cls(module)} contains no nn.RNN / nn.LSTM / nn.GRU module")
    if len(rec) > 1:
        raise ConversionError(f"{_cls(module)} contains several recurrent modules; pass the one you mean")
    return rec[0][1]


def _training_sensitive(m: Any, nn: Any) -> str:
    """Why ``m``'s output in training mode differs from inference ('' when it does not)."""
    if isinstance(m, nn.modules.dropout._DropoutNd) and float(m.p) > 0:
        return f"drops activations with p={m.p}"
    if isinstance(m, nn.RNNBase) and float(m.dropout) > 0 and int(m.num_layers) > 1:
        return f"drops between its {m.num_layers} stacked layers with dropout={m.dropout}"
    return ""


def _check_eval_mode(module: Any, nn: Any) -> None:
    """Refuse a module left in training mode when that changes its output: fastrnn computes inference
    (no dropout), so converting it would silently give other numbers than the module gives."""
    found = [f"{_where(p, m)} {why}" for p, m in module.named_modules()
             if m.training and (why := _training_sensitive(m, nn))]
    if found:
        raise ConversionError(
            f"{_cls(module)} is in training mode, where {'; '.join(found[:8])}"
            f"{f' ({len(found) - 8} more)' if len(found) > 8 else ''}: its outputs differ from inference, which is what "
            "fastrnn computes. Call module.eval() before converting (fastrnn.from_torch(module.eval()))")


def _is_plain_torch_class(m: Any) -> bool:
    return type(m).__module__.startswith("torch.")


def spec_from_torch(module: Any) -> ModelSpec:
    """Convert a live ``torch.nn.Module`` (see the module docstring for what is supported).

    Raises :class:`~fastrnn.errors.UnsupportedLayerError` listing every module (or, for a custom
    module traced with torch.fx, every graph node) that cannot be converted, in one message.
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise ConversionError(f"spec_from_torch expects a torch.nn.Module, got {type(module).__name__}")
    _check_eval_mode(module, nn)
    if not _is_plain_torch_class(module) and not isinstance(module, _LEAF_BASES(nn)) \
            and type(module).forward is not nn.Module.forward:
        fx_spec: ModelSpec = _spec_from_fx(module, torch)
        return fx_spec
    chain = _flatten(module, nn)
    if not chain:
        raise ConversionError("the module is an empty nn.Sequential: nothing to convert")
    rank3 = any(isinstance(m, (nn.RNNBase, nn.Embedding)) for _, m in chain)

    problems: list[str] = []
    pieces: list[Piece] = []
    rec_seen: Optional[tuple[str, Any]] = None
    for path, m in chain:
        where = _where(path, m)
        base = path or type(m).__name__.lower()
        if rec_seen is not None:
            problems.append(
                f"{where}: comes after the recurrent module {_where(*rec_seen)}; a PyTorch RNN/LSTM/GRU (and an "
                "LSTMCell) returns a tuple, so inside nn.Sequential it can only be the last module (apply the following "
                "layers to the output yourself, or convert them as a separate Sequential)")
            continue
        if _supported_rnn(m, nn):
            if m.mode not in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU"):
                problems.append(f"{where}: recurrent mode {m.mode!r} is not supported")
            else:
                pieces.append(Piece("rnn", base, _params(m), rnn=_rnn_desc(m), where=where))
            rec_seen = (path, m)
            continue
        cell = next((c for c in (nn.LSTMCell, nn.GRUCell, nn.RNNCell) if _is(m, c)), None)
        if cell is not None:
            mode = {nn.LSTMCell: "LSTM", nn.GRUCell: "GRU"}.get(cell) or \
                ("RNN_TANH" if m.nonlinearity == "tanh" else "RNN_RELU")
            pieces.append(cell_piece(_params(m), mode, base, where))
            if cell is nn.LSTMCell:  # returns (h, c): nothing can follow it in a Sequential
                rec_seen = (path, m)
            continue
        if _is(m, nn.Linear):
            pieces.append(Piece("linear", base, _params(m), where=where))
            continue
        if _is(m, nn.Embedding):
            if m.max_norm is not None:
                problems.append(f"{where}: max_norm={m.max_norm} renormalizes the embedding rows at lookup time; "
                                "not supported (renormalize the weight and set max_norm=None)")
            elif pieces or rec_seen is not None:
                problems.append(f"{where}: an Embedding must be the first module")
            else:
                pieces.append(Piece("embedding", base, _params(m), where=where))
            continue
        act, why = _activation(m, nn, rank3)
        if why:
            problems.append(f"{where}: {why}")
        elif act == _NOOP:
            continue
        elif act is not None:
            pieces.append(Piece("act", base, act=act, where=where))
        else:
            hint = ""
            if isinstance(m, nn.RNNCellBase):
                hint = " (a cell subclass that overrides forward())"
            elif isinstance(m, (nn.ModuleList, nn.ModuleDict)):
                hint = " (only nn.Sequential containers are supported)"
            elif not _is_plain_torch_class(m):
                hint = (" (a custom module's forward() inside nn.Sequential is not converted; convert the custom "
                        "module itself (it is traced with torch.fx) or express it with supported modules)")
            problems.append(f"{where}: not supported{hint}")
    if problems:
        raise UnsupportedLayerError(
            f"cannot convert {_cls(module)}: {len(problems)} unsupported module(s):\n  - " + "\n  - ".join(problems))
    meta = {"framework": "torch", "torch_version": str(torch.__version__), "torch_class": _cls(module)}
    return build_spec(pieces, "torch", meta)


# --------------------------------------------------------------------------- custom modules: torch.fx
def _LEAF_BASES(nn: Any) -> tuple[Any, ...]:
    return (nn.RNNBase, nn.RNNCellBase, nn.Linear, nn.Embedding, nn.Sequential)


def _node_desc(n: Any) -> str:
    tgt = n.target if isinstance(n.target, str) else getattr(n.target, "__qualname__", None) or \
        getattr(n.target, "__name__", None) or repr(n.target)
    mod = getattr(n.target, "__module__", None)
    if not isinstance(n.target, str):
        if str(tgt).startswith("_VariableFunctionsClass."):
            tgt = "torch." + str(tgt).split(".", 1)[1]
        elif mod and mod not in ("builtins", "_operator"):
            tgt = f"{mod}.{tgt}"
    args = ", ".join(_arg_desc(a) for a in n.args)
    kw = ", ".join(f"{k}={_arg_desc(v)}" for k, v in n.kwargs.items())
    return f"node '{n.name}' ({n.op} {tgt}({args}{', ' if args and kw else ''}{kw}))"


def _arg_desc(a: Any) -> str:
    if hasattr(a, "op") and hasattr(a, "name"):
        return str(a.name)
    if isinstance(a, (tuple, list)):
        inner = ", ".join(_arg_desc(x) for x in a)
        return f"({inner})" if isinstance(a, tuple) else f"[{inner}]"
    if isinstance(a, slice):
        def f(v: object) -> str:
            return "" if v is None else str(v)
        return f"{f(a.start)}:{f(a.stop)}" + (f":{a.step}" if a.step is not None else "")
    return repr(a)


_CELL_LOOP_HINT = (
    "fastrnn runs the loop over time itself: convert the cell (fastrnn.from_torch(module.cell)) or a step module "
    "whose forward(x_t, state=None) calls the cell once; predict(x) over (batch, time, features) then equals the "
    "loop, and stream().step(x_t) is one call")


class _V:
    """Abstract value of an fx node.  kind: input, seq (B, T, F), vec (B, F), rnn (the (out, h_n) tuple),
    hn (h_n), hc ((h_n, c_n) tuple), cn, hsel (h_n[i] -> a direction of the last layer), zeros (an initial
    state built with torch.zeros), meta (sizes, devices, dtypes), cellhc (an LSTMCell's (h, c)), state (a
    forward() input used only as a cell's state), bad (already reported)."""

    def __init__(self, kind: str, rnn: Any = None, dirs: tuple[str, ...] = (), data: bool = False, src: Any = None,
                 piece: Optional[int] = None) -> None:
        self.kind, self.rnn, self.dirs, self.data, self.src = kind, rnn, dirs, data, src
        self.piece = piece  # index of the Piece whose output (or, for rnn states, whose state) this is
        self.done = False  # hsel: its "final" Piece was emitted
        self.where = ""  # hsel: the node that selects it (_node_desc), for the "final" Piece


def _spec_from_fx(module: Any, torch: Any) -> ModelSpec:
    import inspect
    import operator

    import torch.fx as fx
    import torch.nn.functional as F

    nn = torch.nn
    leaf_bases = _LEAF_BASES(nn)

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            if isinstance(m, leaf_bases) and not isinstance(m, nn.Sequential):
                return True
            return super().is_leaf_module(m, qualname)

    concrete: dict[str, None] = {}
    try:
        sig = inspect.signature(module.forward)
        params = list(sig.parameters.values())
        for p in params[1:]:
            if p.default is None:
                concrete[p.name] = None
    except (TypeError, ValueError):
        pass
    cls = _cls(module)
    try:
        tracer = _Tracer()
        graph = fx.GraphModule(tracer.root if hasattr(tracer, "root") else module,
                               tracer.trace(module, concrete_args=concrete or None)).graph
    except Exception as e:  # noqa: BLE001 - any tracing failure means "not a static chain"
        cells = [p for p, m in module.named_modules() if isinstance(m, nn.RNNCellBase)]
        raise UnsupportedLayerError(
            f"cannot convert custom module {cls}: torch.fx could not trace its forward() "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); fastrnn converts custom forwards "
            "that are a static chain of embedding / RNN / LSTM / GRU / out[:, -1] / h_n[-1] / linear / activations"
            + (f" (if forward() loops over time in Python around the cell '{cells[0]}': {_CELL_LOOP_HINT})"
               if cells else "")
        ) from None
    graph.eliminate_dead_code()
    mods = dict(module.named_modules())
    nodes = list(graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    cell_types = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
    cell_calls: dict[str, int] = {}  # cell module path -> number of calls (a step module calls its cell once)
    for n in nodes:
        if n.op == "call_module" and any(_is(mods.get(n.target), c) for c in cell_types):
            cell_calls[n.target] = cell_calls.get(n.target, 0) + 1
    step_module = bool(cell_calls)

    def feeds_cell_state(n: Any) -> bool:
        """n (a forward() input, or an item of one) is only used as the state argument of cell calls."""
        for u in n.users:
            if u.op == "call_module" and u.target in cell_calls and u.args[:1] != (n,):
                continue
            if u.op == "call_function" and u.target is operator.getitem and u.args[0] is n and feeds_cell_state(u):
                continue
            return False
        return bool(n.users)
    problems: list[str] = []
    pieces: list[Piece] = []
    vals: dict[Any, _V] = {}  # fx node -> its abstract value
    head: list[Any] = [None]  # the node whose value is the current data head
    rank: list[Optional[int]] = [None]  # rank of the head tensor when known
    batch_first: list[Optional[bool]] = [None]
    names_seen: dict[str, int] = {}

    def bad(n: Any, why: str) -> None:
        problems.append(f"{_node_desc(n)}: {why}")
        vals[n] = _V("bad")

    def take(n: Any, src: Any, what: str = "") -> bool:
        """n consumes the data value src; False (and a report) if src is not the data head."""
        v = vals.get(src)
        if v is None or v.kind == "bad":
            vals[n] = _V("bad")
            return False
        if src is not head[0]:
            bad(n, "the data flow is not a single chain (a value is used twice, or an older value is reused: "
                   "residual connections, concatenation of different tensors and multiple outputs are not supported)")
            return False
        emit_final(v)
        return True

    def emit_final(v: _V) -> None:
        if v.kind == "hsel" and not v.done:
            pieces.append(Piece("select", "h_n_last" if v.dirs in (("bwd",), ("fwd",)) else "h_n_cat",
                                select="final", dirs=v.dirs, where=v.where))
            v.done = True

    def is_node(a: object) -> bool:
        return isinstance(a, fx.Node)

    def meta_ok(a: Any) -> bool:
        """Constant or a meta (size / device / dtype / zeros-state) value."""
        if is_node(a):
            v = vals.get(a)
            return v is not None and v.kind in ("meta", "zeros")
        if isinstance(a, (tuple, list)):
            return all(meta_ok(x) for x in a)
        return True

    def state_ok(a: Any) -> bool:
        """A cell's state argument: None, torch.zeros(...), or (items of) a forward() state input."""
        if is_node(a):
            v = vals.get(a)
            return v is not None and v.kind in ("meta", "zeros", "state")
        if isinstance(a, (tuple, list)):
            return all(state_ok(x) for x in a)
        return a is None

    def piece_name(target: object) -> str:
        base = str(target)
        names_seen[base] = names_seen.get(base, 0) + 1
        return base if names_seen[base] == 1 else f"{base}#{names_seen[base]}"

    def norm_index(idx: Any) -> tuple[Any, ...]:
        return idx if isinstance(idx, tuple) else (idx,)

    def full(s: object) -> bool:
        return isinstance(s, slice) and s == slice(None)

    def act_fn(fn_name: str, n: Any, dim: Any) -> tuple[Optional[str], Optional[str]]:
        if fn_name in AXIS_ACTIVATIONS:
            r = rank[0]
            if dim is None:
                return None, f"{fn_name} without dim: the implicit dim is rank dependent"
            if not (dim == -1 or (r is not None and dim == r - 1)):
                return None, (f"{fn_name}(dim={dim}): fastrnn applies {fn_name} over the last axis only "
                              f"(the tensor here has rank {r if r is not None else 'unknown'})")
        return fn_name, None

    simple_fns = {
        torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", F.tanh: "tanh", torch.sigmoid: "sigmoid",
        F.sigmoid: "sigmoid", F.silu: "silu", F.selu: "selu", torch.selu: "selu", F.softsign: "softsign",
        F.mish: "mish", F.logsigmoid: "log_sigmoid", F.hardsigmoid: "hard_sigmoid", F.hardswish: "hard_silu",
        F.relu6: "relu6", F.elu: "elu", F.gelu: "gelu", F.softplus: "softplus", F.hardtanh: "hard_tanh",
        F.leaky_relu: "leaky_relu",
    }
    axis_fns = {torch.softmax: "softmax", F.softmax: "softmax", torch.log_softmax: "log_softmax",
                F.log_softmax: "log_softmax"}
    simple_methods = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
    noop_methods = {"contiguous", "float", "clone", "detach"}
    meta_methods = {"size", "dim"}

    def fn_act(n: Any, name: str) -> tuple[Optional[str], Optional[str]]:
        """Defaults of the functional forms must match fastrnn's fixed parameters."""
        kw = dict(n.kwargs)
        extra = list(n.args[1:])
        if name == "elu" and (extra[:1] not in ([], [1.0]) or kw.get("alpha", 1.0) != 1.0):
            return None, "elu with alpha != 1"
        if name == "leaky_relu":
            slope = extra[0] if extra else kw.get("negative_slope", 0.01)
            if abs(float(slope) - _LEAKY_RELU_SLOPE) > 1e-12:
                return None, f"leaky_relu(negative_slope={slope}): only {_LEAKY_RELU_SLOPE} is supported"
        if name == "gelu" and kw.get("approximate", "none") == "tanh":
            return "gelu_tanh", None
        if name == "softplus":
            beta = extra[0] if extra else kw.get("beta", 1.0)
            thr = extra[1] if len(extra) > 1 else kw.get("threshold", 20.0)
            if float(beta) != 1.0 or float(thr) < _SOFTPLUS_MIN_THRESHOLD:
                return None, f"softplus(beta={beta}, threshold={thr}) is not supported"
        if name == "hard_tanh":
            lo = extra[0] if extra else kw.get("min_val", -1.0)
            hi = extra[1] if len(extra) > 1 else kw.get("max_val", 1.0)
            if (float(lo), float(hi)) == (0.0, 6.0):
                return "relu6", None
            if (float(lo), float(hi)) != (-1.0, 1.0):
                return None, f"hardtanh({lo}, {hi}) is not supported"
        return name, None

    def add_act(n: Any, src: Any, act: Optional[str], why: Optional[str]) -> None:
        if why:
            bad(n, why)
            return
        if not take(n, src):
            return
        pieces.append(Piece("act", n.name, act=act, where=_node_desc(n)))
        vals[n] = _V(vals[src].kind if vals[src].kind in ("seq", "vec") else "seq", data=True, piece=len(pieces) - 1)
        head[0] = n

    outputs: list[_OutputRef] = []  # several outputs: ("last",) | ("tap", piece) | ("h" / "c", piece, direction)
    structure: Optional[_Structure] = None

    def output_tuple(out: Any) -> tuple[list[_OutputRef], _Structure]:
        """forward()'s returned tuple (nested) as build_spec outputs and their structure; reports what
        is not a chain value, a layer's output or a recurrent state."""
        found: list[_OutputRef] = []

        def leaf(a: Any) -> _Structure:
            if isinstance(a, (tuple, list)):
                return [leaf(x) for x in a]
            v = vals.get(a) if is_node(a) else None
            if v is None or v.kind == "bad":
                if v is None:
                    problems.append(f"forward() returns {_arg_desc(a)}: not a tensor computed from the input")
                return 0
            if a is head[0] and v.kind in ("seq", "vec", "hsel"):
                emit_final(v)
                found.append(("last",))
            elif v.kind in ("seq", "vec") and v.piece is not None:
                found.append(("tap", v.piece))
            elif v.kind in ("hn", "cn"):
                found.append(("h" if v.kind == "hn" else "c", v.piece, None))
            elif v.kind == "hc":
                return [leaf_state("h", v), leaf_state("c", v)]
            elif v.kind == "rnn":
                found.append(("tap", v.piece))
                first = len(found) - 1
                state: _Structure = \
                    [leaf_state("h", v), leaf_state("c", v)] if v.rnn.mode == "LSTM" else leaf_state("h", v)
                return [first, state]
            elif v.kind in ("hdir", "hsel") and len(v.dirs) == 1:
                found.append(("h", v.piece, 0 if v.dirs[0] == "fwd" else 1))
            else:
                problems.append(f"forward() returns {a.name} ({v.kind}): a model output must be a tensor on the "
                                "chain of layers, a layer's output, h_n, c_n or h_n[-1] of a recurrent module")
                return 0
            return len(found) - 1

        def leaf_state(part: str, v: _V) -> int:
            found.append((part, v.piece, None))
            return len(found) - 1

        return found, leaf(out)  # an int: one output, returned bare

    for n in nodes:
        try:
            if n.op == "placeholder":
                if n is placeholders[0]:
                    vals[n] = _V("input", data=True)
                    head[0] = n
                    rank[0] = 2 if step_module else None
                elif step_module and feeds_cell_state(n):
                    vals[n] = _V("state")  # the cell's state: predict's initial_state / the stream's state
                elif n.users:
                    bad(n, "a second forward() input is used; only a single input tensor is supported "
                           "(initial states go to Model.predict(initial_state=...))")
                else:
                    vals[n] = _V("meta")
                continue
            if n.op == "output":
                out = n.args[0]
                v = vals.get(out) if is_node(out) else None
                if v is not None and v.kind == "cellhc":
                    problems.append(f"forward() returns {out.name}, the (h, c) tuple of an LSTMCell: return h (or the "
                                    "layers applied to it); fastrnn returns the cell state with predict(return_state="
                                    "True) and keeps it in stream().state")
                elif v is not None and out is head[0] and v.kind in ("seq", "vec", "hsel"):
                    emit_final(v)  # one tensor: the end of the chain (predict returns it as before)
                elif v is None or v.kind != "bad":
                    outputs, structure = output_tuple(out)
                continue
            if n.op == "get_attr":
                bad(n, "reads a parameter/buffer directly in forward(); only submodule calls are supported")
                continue
            if n.op == "call_module":
                m: Any = mods.get(n.target)  # the called module
                where = f"{_node_desc(n)} [{_cls(m)}]"
                src = n.args[0] if n.args else None
                extra_ok = all(meta_ok(a) for a in n.args[1:]) and all(meta_ok(a) for a in n.kwargs.values())
                cell = next((c for c in cell_types if _is(m, c)), None)
                if cell is not None:
                    if abs(cell_calls[n.target]) > 1:
                        if cell_calls[n.target] > 0:  # reported once, at the first call
                            bad(n, f"the cell is called {cell_calls[n.target]} times in forward() (a Python loop over "
                                   f"time unrolled by tracing?). {_CELL_LOOP_HINT}")
                            cell_calls[n.target] *= -1
                        vals[n] = _V("bad")
                        continue
                    if not all(state_ok(a) for a in list(n.args[1:]) + list(n.kwargs.values())):
                        bad(n, "the state of a cell must be None, torch.zeros(...) or a forward() input used only as "
                               "the cell's state (it becomes Model.predict's initial_state and the stream's state)")
                        continue
                    if not take(n, src):
                        continue
                    mode = {nn.LSTMCell: "LSTM", nn.GRUCell: "GRU"}.get(cell) or \
                        ("RNN_TANH" if m.nonlinearity == "tanh" else "RNN_RELU")
                    pieces.append(cell_piece(_params(m), mode, piece_name(n.target), where))
                    vals[n] = _V("cellhc" if cell is nn.LSTMCell else "vec", data=True)
                    head[0] = n
                    continue
                if step_module and isinstance(m, nn.RNNBase):
                    bad(n, "a step module (its forward() calls a cell on one time step) cannot also call a recurrent "
                           "module")
                    continue
                if _supported_rnn(m, nn):
                    if not extra_ok:
                        bad(n, "the initial state of a recurrent module must be None or torch.zeros(...) "
                               "(pass initial states to Model.predict(initial_state=...))")
                        continue
                    if not take(n, src):
                        continue
                    if batch_first[0] is not None and batch_first[0] != bool(m.batch_first):
                        bad(n, "recurrent modules with different batch_first settings")
                        continue
                    batch_first[0] = bool(m.batch_first)
                    pieces.append(Piece("rnn", piece_name(n.target), _params(m), rnn=_rnn_desc(m), where=where))
                    vals[n] = _V("rnn", rnn=m, data=True, piece=len(pieces) - 1)
                    head[0] = n
                    rank[0] = 3
                    continue
                if _is(m, nn.Linear) or _is(m, nn.Embedding):
                    if _is(m, nn.Embedding) and m.max_norm is not None:
                        bad(n, f"Embedding max_norm={m.max_norm} is not supported")
                        continue
                    if not extra_ok or len(n.args) != 1 or n.kwargs:
                        bad(n, "unexpected extra arguments")
                        continue
                    if not take(n, src):
                        continue
                    if _is(m, nn.Embedding):
                        if vals[src].kind != "input" or pieces:
                            bad(n, "an Embedding must be the first operation")
                            continue
                        pieces.append(Piece("embedding", piece_name(n.target), _params(m), where=where))
                        rank[0] = 2 if step_module else 3
                        vals[n] = _V("seq", data=True, piece=len(pieces) - 1)
                    else:
                        pieces.append(Piece("linear", piece_name(n.target), _params(m), where=where))
                        vals[n] = _V(vals[src].kind if vals[src].kind in ("seq", "vec") else "seq", data=True,
                                     piece=len(pieces) - 1)
                    head[0] = n
                    continue
                if _is(m, nn.Softmax) or _is(m, nn.LogSoftmax):
                    act, why = act_fn("softmax" if _is(m, nn.Softmax) else "log_softmax", n, m.dim)
                else:
                    act, why = _activation(m, nn, rank[0] == 3) if m is not None else (None, None)
                if act is not None or why:
                    if why:
                        bad(n, f"[{_cls(m)}] {why}")
                    elif act == _NOOP:
                        if take(n, src):
                            vals[n] = vals[src]
                            head[0] = n
                    else:
                        add_act(n, src, act, None)
                    continue
                hint = ""
                if isinstance(m, nn.RNNBase):
                    hint = " (a subclass that overrides forward())"
                elif isinstance(m, nn.RNNCellBase):
                    hint = " (a cell subclass that overrides forward())"
                bad(n, f"module {_cls(m)} is not supported{hint}")
                continue
            if n.op in ("call_function", "call_method"):
                tgt = n.target
                src = n.args[0] if n.args else None
                sv = vals.get(src) if is_node(src) else None
                # ---- meta values: sizes, devices, dtypes, zero initial states
                if (n.op == "call_method" and tgt in meta_methods) or (tgt is getattr and len(n.args) == 2 and
                                                                       n.args[1] in ("device", "dtype", "shape")):
                    vals[n] = _V("meta")
                    continue
                if tgt is operator.getitem and sv is not None and sv.kind == "meta":
                    vals[n] = _V("meta")
                    continue
                if n.op == "call_function" and tgt in (torch.zeros,) and meta_ok(list(n.args)) and \
                        meta_ok(list(n.kwargs.values())):
                    vals[n] = _V("zeros")
                    continue
                if n.op == "call_method" and sv is not None and sv.kind == "zeros" and tgt in (
                        "to", "cuda", "cpu", "float", "requires_grad_", "detach", "type_as"):
                    vals[n] = _V("zeros")
                    continue
                if getattr(tgt, "__name__", "") == "_assert_is_none":
                    vals[n] = _V("meta")
                    continue
                # ---- tuple / state selections
                if tgt is operator.getitem and sv is not None and sv.kind == "state":
                    vals[n] = _V("state")
                    continue
                if tgt is operator.getitem and sv is not None and sv.kind == "cellhc":
                    if n.args[1] != 0:
                        bad(n, f"item {n.args[1]!r} of an LSTMCell's (h, c): the cell state c is not a model output "
                               "fastrnn can select (it is predict(return_state=True)'s and the stream's state)")
                    elif take(n, src):
                        vals[n] = _V("vec", data=True)
                        head[0] = n
                    continue
                # A state (h_n, (h_n, c_n), c_n) may also be taken aside as a model output (a tuple returned
                # by forward()): it continues the chain only when it is taken from the chain's head.
                if tgt is operator.getitem and sv is not None and sv.kind == "rnn":
                    idx = n.args[1]
                    if idx == 0:
                        if take(n, src):
                            vals[n] = _V("seq", rnn=sv.rnn, data=True, piece=sv.piece)
                            head[0] = n
                    elif idx == 1:
                        vals[n] = _V("hc" if sv.rnn.mode == "LSTM" else "hn", rnn=sv.rnn, data=True, piece=sv.piece)
                        if head[0] is src:
                            head[0] = n
                    else:
                        bad(n, f"index {idx!r} of the (output, h_n) tuple")
                    continue
                if tgt is operator.getitem and sv is not None and sv.kind == "hc":
                    idx = n.args[1]
                    if idx in (0, 1):
                        vals[n] = _V("hn" if idx == 0 else "cn", rnn=sv.rnn, data=True, piece=sv.piece)
                        if idx == 0 and head[0] is src:
                            head[0] = n
                    else:
                        bad(n, f"index {idx!r} of the (h_n, c_n) tuple")
                    continue
                if tgt is operator.getitem and sv is not None and sv.kind == "hn":
                    r = sv.rnn
                    nd = 2 if r.bidirectional else 1
                    total = int(r.num_layers) * nd
                    idx = norm_index(n.args[1])
                    i0 = idx[0]
                    if not isinstance(i0, int) or not all(full(s) for s in idx[1:]) or len(idx) > 3:
                        bad(n, f"h_n[{_arg_desc(n.args[1])}]: only h_n[i] (one layer/direction) is supported")
                        continue
                    i = i0 + total if i0 < 0 else i0
                    if not 0 <= i < total or i // nd != int(r.num_layers) - 1:
                        bad(n, f"h_n[{i0}] is layer {i // nd} of {int(r.num_layers)}: only the last layer's final "
                               "state can be selected (h_n[-1], and h_n[-2] for the forward direction of a "
                               "bidirectional module)")
                        continue
                    hv = vals.get(head[0])
                    if head[0] is src or (hv is not None and hv.kind == "hsel" and hv.src is src and not hv.done):
                        vals[n] = _V("hsel", rnn=r, dirs=(("fwd", "bwd")[i % nd],), data=True, src=src, piece=sv.piece)
                        vals[n].where = _node_desc(n)
                        if head[0] is src:
                            head[0] = n
                        rank[0] = 2
                    else:  # not on the chain: usable only as a model output (one direction of the final state)
                        vals[n] = _V("hdir", rnn=r, dirs=(("fwd", "bwd")[i % nd],), data=True, piece=sv.piece)
                    continue
                if n.op == "call_method" and tgt == "squeeze" and sv is not None and sv.kind == "hn":
                    r = sv.rnn
                    nd = 2 if r.bidirectional else 1
                    if int(r.num_layers) * nd == 1 and list(n.args[1:]) in ([0], []) and not n.kwargs:
                        if take(n, src):
                            vals[n] = _V("hsel", rnn=r, dirs=("fwd",), data=True, src=src, piece=sv.piece)
                            vals[n].where = _node_desc(n)
                            head[0] = n
                            rank[0] = 2
                    else:
                        bad(n, "h_n.squeeze(...) is only supported as h_n.squeeze(0) of a one-layer unidirectional module")
                    continue
                if tgt is torch.cat and n.args and isinstance(n.args[0], (tuple, list)):
                    parts = n.args[0]
                    dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
                    pv = [vals.get(p) if is_node(p) else None for p in parts]
                    hs = [v for v in pv if v is not None and v.kind == "hsel" and not v.done]
                    if len(hs) == len(pv) and dim in (1, -1) and \
                            len({id(v.src) for v in hs}) == 1 and head[0] in parts and \
                            all(len(p.users) == 1 for p in parts) and len(set(parts)) == len(parts):
                        # each h_n[i] read the same h_n; together they select directions of the last layer
                        dirs = tuple(d for v in hs for d in v.dirs)
                        vals[n] = _V("hsel", rnn=hs[0].rnn, dirs=dirs, data=True, src=hs[0].src)
                        vals[n].where = _node_desc(n)
                        for v in hs:
                            v.done = True
                        head[0] = n
                        continue
                    bad(n, "torch.cat is only supported as torch.cat((h_n[-2], h_n[-1]), dim=1) "
                           "(both directions of the last layer's final state)")
                    continue
                # ---- the step selection out[:, -1]
                if tgt is operator.getitem and sv is not None and sv.kind == "seq" and step_module:
                    bad(n, "indexing in a step module (its tensors are one time step, (batch, features))")
                    continue
                if tgt is operator.getitem and sv is not None and sv.kind == "seq":
                    idx = norm_index(n.args[1])
                    bf = batch_first[0] if batch_first[0] is not None else True
                    ok = False
                    if bf and len(idx) in (2, 3) and full(idx[0]) and idx[1] == -1 and all(full(s) for s in idx[2:]):
                        ok = True
                    if not bf and len(idx) in (1, 2, 3) and idx[0] == -1 and all(full(s) for s in idx[1:]):
                        ok = True
                    if not ok:
                        want = "out[:, -1]" if bf else "out[-1] (batch_first=False)"
                        bad(n, f"indexing [{_arg_desc(n.args[1])}]: only the last-step selection {want} is supported")
                        continue
                    if take(n, src):
                        pieces.append(Piece("select", "last_step", select="last_step", where=_node_desc(n)))
                        vals[n] = _V("vec", data=True, piece=len(pieces) - 1)
                        head[0] = n
                        rank[0] = 2
                    continue
                # ---- no-ops
                if n.op == "call_method" and tgt in noop_methods and sv is not None and len(n.args) == 1:
                    if take(n, src):
                        vals[n] = sv
                        head[0] = n
                    continue
                if n.op == "call_method" and tgt == "to" and sv is not None and all(
                        meta_ok(a) for a in n.args[1:]) and meta_ok(list(n.kwargs.values())):
                    if take(n, src):
                        vals[n] = sv
                        head[0] = n
                    continue
                if tgt in (F.dropout, torch.dropout) or (n.op == "call_method" and tgt == "dropout"):
                    p_drop, train = (list(n.args[1:3]) + [0.5, True][len(n.args[1:3]):])[:2]
                    p_drop = n.kwargs.get("p", p_drop)
                    train = n.kwargs.get("training", n.kwargs.get("train", train))
                    if train is not False and not (isinstance(p_drop, (int, float)) and p_drop == 0):
                        bad(n, f"dropout with p={p_drop!r} and training={train!r} drops activations, so the outputs "
                               "differ from inference; write F.dropout(x, p, training=self.training) and call "
                               "module.eval() before converting")
                        continue
                    if take(n, src):
                        vals[n] = vals[src]  # = sv: take() found it
                        head[0] = n
                    continue
                # ---- activations
                if n.op == "call_function" and tgt in simple_fns:
                    act, why = fn_act(n, simple_fns[tgt])
                    add_act(n, src, act, why)
                    continue
                if n.op == "call_method" and tgt in simple_methods and len(n.args) == 1:
                    add_act(n, src, simple_methods[tgt], None)
                    continue
                if (n.op == "call_function" and tgt in axis_fns) or (
                        n.op == "call_method" and tgt in ("softmax", "log_softmax")):
                    name = axis_fns.get(tgt, tgt)
                    dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
                    act, why = act_fn(name, n, dim)
                    add_act(n, src, act, why)
                    continue
                if n.op == "call_function" and tgt is F.normalize:  # F.normalize(x, p=2.0, dim=1, eps=1e-12)
                    args = dict(zip(("p", "dim", "eps"), n.args[1:]), **n.kwargs)
                    p_norm, eps = float(args.get("p", 2.0)), float(args.get("eps", 1e-12))
                    if p_norm != 2.0 or eps != 1e-12:
                        add_act(n, src, None, f"normalize(p={p_norm}, eps={eps}): only p=2 with eps=1e-12 "
                                              "(the l2_normalize activation) is supported")
                    else:
                        act, why = act_fn("l2_normalize", n, args.get("dim", 1))
                        add_act(n, src, act, why)
                    continue
                bad(n, "operation not supported")
                continue
            bad(n, f"unknown fx node kind {n.op!r}")
        except Exception as e:  # noqa: BLE001 - keep collecting
            bad(n, f"could not be analysed ({type(e).__name__}: {e})")
    if problems:
        raise UnsupportedLayerError(
            f"cannot convert custom module {cls} (custom forward traced with torch.fx): {len(problems)} unsupported "
            "operation(s):\n  - " + "\n  - ".join(problems))
    meta = {"framework": "torch", "torch_version": str(torch.__version__), "torch_class": cls, "torch_fx": True}
    return build_spec(pieces, "torch", meta, outputs=outputs or None, output_structure=structure)


# --------------------------------------------------------------------------- states
def _as_np(a: Any, what: str) -> npt.NDArray[np.float32]:
    if a is None:
        raise ConversionError(f"{what} is None")
    if hasattr(a, "detach"):
        a = a.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def torch_state_to_fastrnn(module: Any, hx: Any) -> list[_LayerState]:
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
    out: list[_LayerState] = []
    for k in range(L):
        sl = [np.ascontiguousarray(p[k * nd:(k + 1) * nd]) for p in parts]
        out.append((sl[0], sl[1]) if lstm else sl[0])
    return out


def fastrnn_state_to_torch(module: Any, states: Any) -> Any:
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
