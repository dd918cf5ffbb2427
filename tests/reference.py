"""An independent, pure-numpy reference evaluator for :class:`fastrnn.spec.ModelSpec`.

It is deliberately slow and plain: float64 everywhere inside, a loop over time, and the
cell equations written out exactly as in the ``fastrnn.spec`` module docstring.  It shares
no code with the converters or the C++ core; it is validated against PyTorch (and Keras
for the Keras-only semantics) in ``tests/test_reference.py``.

Public API (other tests depend on these names):

* :func:`activation` -- every element-wise activation of ``spec.ACTIVATIONS`` and the
  last-axis ones of ``spec.AXIS_ACTIVATIONS``.
* :func:`run_spec` -- the contract of ``fastrnn.Model.predict``.

Cell equations (one direction; ``act`` = ``activation``, ``ract`` = ``recurrent_activation``;
``W_ih``/``W_hh``/``b_ih``/``b_hh`` in the canonical PyTorch layout)::

    simple_rnn: h' = act(W_ih x + b_ih + W_hh h + b_hh)

    lstm:       i, f, g, o = split4(W_ih x + b_ih + W_hh h + b_hh)
                i, f, o = ract(i), ract(f), ract(o);   g = act(g)
                c' = f * c + i * g
                h' = o * act(c')                 (proj_size = P > 0:  h' = W_hr h', shape [P])

    gru (reset_after=True, PyTorch):
                r = ract(W_ir x + b_ir + W_hr h + b_hr)
                z = ract(W_iz x + b_iz + W_hz h + b_hz)
                n = act(W_in x + b_in + r * (W_hn h + b_hn))
                h' = (1 - z) * n + z * h

    gru (reset_after=False, Keras):   r, z as above (b_h* are zero by validation)
                n = act(W_in x + b_in + W_hn (r * h) + b_hn)
                h' = (1 - z) * n + z * h

Options (ONNX, ``fastrnn.spec`` module doc): every gate pre-activation is clipped to [-clip, clip]
when ``clip`` is set; ``gate_activations`` gives per direction the ONNX functions f (for ract),
g (for act), h (LSTM, for the act of c'); LSTM peepholes p_i, p_f, p_o add p_i*c, p_f*c to the
i, f sums and p_o*c' to o's; ``input_forget``: f = 1 - i.  ``DirectionWeights.h0`` / ``c0``: the
initial state when none is given.

Masks (``valid[b, t]`` True = the step is processed):

* ``lengths``: step ``t`` of row ``b`` is masked when ``t >= lengths[b]``; ``lengths[b] == 0`` is
  allowed and masks every step of the row.  The lengths mask applies to every recurrent layer.
* ``EmbeddingSpec(mask_zero=True)``: id 0 masks the step.  ``MaskingSpec``: a step whose features
  all equal ``mask_value`` is masked *and its values are replaced by 0* (Keras 3 ``Masking.call``
  does ``where(mask, x, 0)``; this only shows when such a step reaches the model output without
  passing through a recurrent layer).  Several mask sources are AND-combined.
* The layer mask propagates like Keras: recurrent layers with ``return_sequences=True`` pass it on
  *unchanged* (also for ``direction="reverse"``, whose output is in processing order -- Keras does
  the same), ``return_sequences=False`` and ``LastStep`` drop it; Dense / Activation keep it.
* A masked step never changes the state.  Its output is zeros (``mask_mode="zero"``) or the last
  output emitted so far by that direction (``"hold"``; zeros before the first valid step, never the
  initial state).  ``return_sequences=False`` returns per direction the output of the last processed
  step under that rule: ``"hold"`` -> last valid output (zeros if none), ``"zero"`` -> final ``h``
  (the initial state when no step is valid).
"""
from __future__ import annotations

import math

import numpy as np

from fastrnn import spec as S

__all__ = ["activation", "onnx_function", "run_spec"]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_LEAKY_RELU_SLOPE = 0.2  # Keras 3 default.  torch.nn.LeakyReLU defaults to 0.01: not the same thing.
_ERF = np.vectorize(math.erf, otypes=[np.float64])


# --------------------------------------------------------------------------- activations
def _sigmoid(x):
    # exp(-softplus(-x)): no overflow for large |x|
    return np.exp(-np.logaddexp(0.0, -x))


def _softplus(x):
    return np.logaddexp(0.0, x)  # = log1p(exp(x)), stable


def _hard_sigmoid(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)  # Keras 3 = relu6(x + 3) / 6 = torch hardsigmoid


def activation(name: str, x: np.ndarray) -> np.ndarray:
    """Apply activation ``name`` (float64 result).

    Element-wise: linear, tanh, sigmoid, relu, relu6 = clip(x, 0, 6),
    hard_sigmoid = clip(x/6 + 0.5, 0, 1) (Keras 3), hard_sigmoid_tf2 = clip(0.2x + 0.5, 0, 1) (tf.keras 2),
    elu (alpha 1), selu (standard constants), softplus = log(1 + e^x), softsign = x / (1 + |x|),
    silu = x * sigmoid(x), hard_silu = x * hard_sigmoid(x), exponential = e^x,
    leaky_relu (negative slope 0.2, the Keras 3 default), gelu = x/2 (1 + erf(x / sqrt 2)),
    gelu_tanh = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), hard_tanh = clip(x, -1, 1),
    mish = x * tanh(softplus(x)), log_sigmoid = -softplus(-x).
    Last axis: softmax, log_softmax, l2_normalize = x / max(||x||_2, 1e-12).
    """
    x = np.asarray(x, dtype=np.float64)
    if name == "linear":
        return x.copy()
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "relu6":
        return np.clip(x, 0.0, 6.0)
    if name == "hard_sigmoid":
        return _hard_sigmoid(x)
    if name == "hard_sigmoid_tf2":
        return np.clip(0.2 * x + 0.5, 0.0, 1.0)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
    if name == "selu":
        return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))
    if name == "softplus":
        return _softplus(x)
    if name == "softsign":
        return x / (1.0 + np.abs(x))
    if name == "silu":
        return x * _sigmoid(x)
    if name == "hard_silu":
        return x * _hard_sigmoid(x)
    if name == "exponential":
        return np.exp(x)
    if name == "leaky_relu":
        return np.where(x >= 0, x, _LEAKY_RELU_SLOPE * x)
    if name == "gelu":
        return 0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "hard_tanh":
        return np.clip(x, -1.0, 1.0)
    if name == "mish":
        return x * np.tanh(_softplus(x))
    if name == "log_sigmoid":
        return -_softplus(-x)
    if name == "softmax":
        e = np.exp(x - np.max(x, axis=-1, keepdims=True))
        return e / np.sum(e, axis=-1, keepdims=True)
    if name == "log_softmax":
        m = np.max(x, axis=-1, keepdims=True)
        return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))
    if name == "l2_normalize":
        return x / np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), 1e-12)
    raise ValueError(f"unknown activation {name!r}")


def onnx_function(name: str, alpha: float, beta: float, x: np.ndarray) -> np.ndarray:
    """ONNX's recurrent activation functions (``spec.GATE_FUNCTIONS``), from the operator spec."""
    x = np.asarray(x, dtype=np.float64)
    table = {
        "Relu": lambda: np.maximum(x, 0.0), "Tanh": lambda: np.tanh(x), "Sigmoid": lambda: _sigmoid(x),
        "Affine": lambda: alpha * x + beta, "LeakyRelu": lambda: np.where(x >= 0, x, alpha * x),
        "ThresholdedRelu": lambda: np.where(x > alpha, x, 0.0), "ScaledTanh": lambda: alpha * np.tanh(beta * x),
        "HardSigmoid": lambda: np.clip(alpha * x + beta, 0.0, 1.0),
        "Elu": lambda: np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
        "Softsign": lambda: x / (1.0 + np.abs(x)), "Softplus": lambda: _softplus(x),
    }
    return table[name]()


# --------------------------------------------------------------------------- cells
def _functions(layer, d):
    """(f, g, h) of direction d: the gates' function, the candidate's, the LSTM output's (each after
    the clip, but h, which takes c' as it is)."""
    clip = layer.clip

    def clipped(fn):
        return fn if clip is None else (lambda v: fn(np.clip(v, -clip, clip)))

    if layer.gate_activations is not None:
        fns = [lambda v, e=e: onnx_function(e[0], np.float64(np.float32(e[1])), np.float64(np.float32(e[2])), v)
               for e in layer.gate_activations[d]]
    elif layer.kind == "simple_rnn":
        fns = [lambda v: activation(layer.activation, v)]
    else:
        fns = [lambda v: activation(layer.recurrent_activation, v)] + [lambda v: activation(layer.activation, v)] * 2
    return [clipped(f) for f in fns[:2]] + fns[2:]


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _cell_step(layer, w, x_t, h, c, fns):
    """One step of one direction for all rows: x_t (B, I), h (B, Hout), c (B, H) or None; fns that
    direction's functions (:func:`_functions`)."""
    H = layer.units
    w_ih, w_hh, b_ih, b_hh = _f64(w.w_ih), _f64(w.w_hh), _f64(w.b_ih), _f64(w.b_hh)
    gi = x_t @ w_ih.T + b_ih  # input part of every gate, (B, G*H)
    if layer.kind == "simple_rnn":
        return fns[0](gi + h @ w_hh.T + b_hh), None
    if layer.kind == "lstm":
        gates = gi + h @ w_hh.T + b_hh
        i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
        p_i, p_f, p_o = _f64(w.peephole) if w.peephole is not None else (0.0, 0.0, 0.0)
        i = fns[0](i + p_i * c)
        f = 1.0 - i if layer.input_forget else fns[0](f + p_f * c)
        c_new = f * c + i * fns[1](g)
        h_new = fns[0](o + p_o * c_new) * fns[2](c_new)
        if layer.proj_size:
            h_new = h_new @ _f64(w.w_hr).T
        return h_new, c_new
    if layer.kind == "gru":
        w_hr, w_hz, w_hn = w_hh[:H], w_hh[H:2 * H], w_hh[2 * H:]
        b_hr, b_hz, b_hn = b_hh[:H], b_hh[H:2 * H], b_hh[2 * H:]
        i_r, i_z, i_n = gi[:, :H], gi[:, H:2 * H], gi[:, 2 * H:]
        r = fns[0](i_r + h @ w_hr.T + b_hr)
        z = fns[0](i_z + h @ w_hz.T + b_hz)
        if layer.reset_after:
            n = fns[1](i_n + r * (h @ w_hn.T + b_hn))
        else:
            n = fns[1](i_n + (r * h) @ w_hn.T + b_hn)
        return (1.0 - z) * n + z * h, None
    raise ValueError(f"unknown recurrent kind {layer.kind!r}")


def _run_direction(layer, w, x, valid, h0, c0, backward, fns):
    """Run one direction over x (B, T, I).

    Returns ``(outs, last, h, c)``: ``outs[:, k]`` is the output after the k-th *processed* step,
    ``last`` the return_sequences=False output, ``h``/``c`` the final state.
    """
    B, T, _ = x.shape
    ho = layer.hidden_out
    h, c = h0.copy(), (None if c0 is None else c0.copy())
    held = np.zeros((B, ho))  # last output emitted so far ("hold"); zeros before the first valid step
    outs = np.zeros((B, T, ho))
    order = range(T - 1, -1, -1) if backward else range(T)
    for k, t in enumerate(order):
        v = valid[:, t][:, None]  # (B, 1)
        h_new, c_new = _cell_step(layer, w, x[:, t], h, c, fns)
        h = np.where(v, h_new, h)  # a masked step never changes the state
        if c is not None:
            c = np.where(v, c_new, c)
        held = np.where(v, h_new, held)
        outs[:, k] = np.where(v, h_new, held if layer.mask_mode == "hold" else 0.0)
    last = held if layer.mask_mode == "hold" else h
    return outs, last, h, c


def _merge(mode, a, b):
    if mode == "concat":
        return np.concatenate([a, b], axis=-1)
    if mode == "sum":
        return a + b
    if mode == "mul":
        return a * b
    if mode == "ave":
        return (a + b) / 2.0
    if mode == "none":
        return (a, b)
    raise ValueError(f"unknown merge_mode {mode!r}")


def _run_recurrent(layer, x, valid, init):
    """Returns ``(y, state)``; y (B, T, F) / (B, F) / a (fwd, bwd) tuple for merge_mode 'none'."""
    B = x.shape[0]
    nd = layer.num_directions
    # the layer's default initial state (DirectionWeights.h0 / c0; zeros without)
    h0 = np.stack([np.broadcast_to(_f64(w.h0) if w.h0 is not None else 0.0, (B, layer.hidden_out))
                   for w in layer.weights])
    c0 = np.stack([np.broadcast_to(_f64(w.c0) if w.c0 is not None else 0.0, (B, layer.units))
                   for w in layer.weights]) if layer.kind == "lstm" else None
    if init is not None:
        if layer.kind == "lstm":
            if not isinstance(init, (tuple, list)) or len(init) != 2:
                raise ValueError(f"layer '{layer.name}': LSTM initial state must be an (h, c) pair")
            h_in, c_in = _f64(init[0]), _f64(init[1])
        else:
            if isinstance(init, (tuple, list)):
                if len(init) != 1:
                    raise ValueError(f"layer '{layer.name}': initial state must be h or a 1-tuple (h,)")
                init = init[0]
            h_in, c_in = _f64(init), None
        if h_in.shape != h0.shape:
            raise ValueError(f"layer '{layer.name}': initial h has shape {h_in.shape}, expected {h0.shape}")
        h0 = h_in
        if c0 is not None:
            if c_in.shape != c0.shape:
                raise ValueError(f"layer '{layer.name}': initial c has shape {c_in.shape}, expected {c0.shape}")
            c0 = c_in

    results = []
    for d in range(nd):
        backward = layer.direction == "reverse" or d == 1
        results.append(_run_direction(layer, layer.weights[d], x, valid, h0[d],
                                      None if c0 is None else c0[d], backward, _functions(layer, d)))

    if layer.kind == "lstm":
        state = (np.stack([r[2] for r in results]), np.stack([r[3] for r in results]))
    else:
        state = np.stack([r[2] for r in results])

    if not layer.return_sequences:
        y = results[0][1] if nd == 1 else _merge(layer.merge_mode, results[0][1], results[1][1])
    elif nd == 1:
        y = results[0][0]  # forward: input order; reverse: processing order (Keras go_backwards)
    else:
        y = _merge(layer.merge_mode, results[0][0], results[1][0][:, ::-1])  # backward re-aligned to input time
    return y, state


# --------------------------------------------------------------------------- model
def _initial_states(initial_state, rec):
    if initial_state is None:
        return [None] * len(rec)
    s = initial_state
    if len(rec) == 1:
        # the bare item: an array (GRU/RNN h), an (h, c) pair, or anything that is not a 1-item list
        if hasattr(s, "shape") or not isinstance(s, (list, tuple)) or len(s) != 1:
            s = [s]
    if not isinstance(s, (list, tuple)) or len(s) != len(rec):
        raise ValueError(f"initial_state must have one item per recurrent layer ({len(rec)})")
    return list(s)


def _to_f32(y):
    if isinstance(y, tuple):
        return tuple(np.asarray(a, dtype=np.float32) for a in y)
    return np.asarray(y, dtype=np.float32)


def run_spec(spec, x, lengths=None, initial_state=None, return_state=False):
    """Evaluate ``spec`` on ``x``; the contract of ``fastrnn.Model.predict`` (see module docstring).

    x: (B, T, F) floats, or (B, T) int ids when the first layer is an EmbeddingSpec.
    lengths: optional (B,) ints in [0, T].
    initial_state: one item per recurrent layer (or the bare item for a single recurrent layer):
      LSTM ``(h, c)`` with h (num_directions, B, hidden_out), c (num_directions, B, units);
      GRU / simple_rnn ``h`` (num_directions, B, units) (or ``(h,)``); None -> zeros.
    Returns float32 ``y`` (a (fwd, bwd) tuple for a final merge_mode='none' layer), or
    ``(y, states)`` with ``return_state=True``: one entry per recurrent layer, LSTM ``(h, c)``,
    others ``h``, each the final state per direction (backward: after processing step 0).
    """
    spec.validate()
    layers = spec.layers
    rec = [l for l in layers if l.kind in S.RECURRENT_KINDS]
    inits = _initial_states(initial_state, rec)

    if spec.takes_ids:
        ids = np.asarray(x)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be a (B, T) integer array, got {ids.dtype} {ids.shape}")
        h = ids
    else:
        h = np.asarray(x, dtype=np.float64)
        if h.ndim != 3 or h.shape[2] != spec.input_features:
            raise ValueError(f"x must be (B, T, {spec.input_features}), got {h.shape}")
    B, T = h.shape[0], h.shape[1]

    len_valid = None
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"lengths must be ({B},) integers, got {lengths.dtype} {lengths.shape}")
        if np.any(lengths < 0) or np.any(lengths > T):
            raise ValueError(f"lengths must lie in [0, {T}], got {lengths}")
        len_valid = np.arange(T)[None, :] < lengths[:, None]

    mask = None  # (B, T) bool, True = valid; the Keras-style mask carried between layers
    states = []
    ri = 0
    for layer in layers:
        kind = layer.kind
        if kind == "embedding":
            emb = _f64(layer.embeddings)
            if np.any(h < 0) or np.any(h >= emb.shape[0]):
                raise ValueError(f"ids must lie in [0, {emb.shape[0]})")
            if layer.mask_zero:
                mask = h != 0
            h = emb[h]
        elif kind == "masking":
            keep = np.any(h != layer.mask_value, axis=-1)
            h = np.where(keep[..., None], h, 0.0)
            mask = keep if mask is None else (mask & keep)
        elif kind in S.RECURRENT_KINDS:
            valid = np.ones((B, h.shape[1]), dtype=bool)
            if mask is not None:
                valid &= mask
            if len_valid is not None:
                valid &= len_valid
            h, st = _run_recurrent(layer, h, valid, inits[ri])
            ri += 1
            states.append(st)
            if not layer.return_sequences:
                mask = None
        elif kind == "dense":
            h = activation(layer.activation, h @ _f64(layer.weight).T + _f64(layer.bias))
        elif kind == "activation":
            h = activation(layer.activation, h)
        elif kind == "last_step":
            h = h[:, -1]
            mask = None
        else:
            raise ValueError(f"unknown layer kind {kind!r}")

    y = _to_f32(h)
    if not return_state:
        return y
    out_states = []
    for st in states:
        out_states.append(tuple(_to_f32(a) for a in st) if isinstance(st, tuple) else _to_f32(st))
    return y, out_states
