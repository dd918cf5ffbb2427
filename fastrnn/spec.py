"""ModelSpec: the one framework-neutral description of a model.

Converters (``fastrnn.converters.torch`` / ``.keras``) translate a framework model into a
:class:`ModelSpec`; the C++ core only ever sees ``ModelSpec.to_core()``.  Every framework
quirk (transposes, gate order, bias pairs, mask semantics) is fixed *before* a spec exists.

Canonical layouts (PyTorch/ONNX orientation, one direction; ``G`` gates, ``H`` units):

=========== ============ ===================== ===================================
cell        gates        w_ih / w_hh            biases
=========== ============ ===================== ===================================
simple_rnn  (h)          [H, I] / [H, H]        b_ih [H], b_hh [H]
lstm        i, f, g, o   [4H, I] / [4H, Hout]   b_ih [4H], b_hh [4H]; w_hr [P, H] if proj_size=P
gru         r, z, n      [3H, I] / [3H, H]      b_ih [3H], b_hh [3H]
=========== ============ ===================== ===================================

Cell equations (``act`` = ``activation``, ``ract`` = ``recurrent_activation``)::

    simple_rnn: h' = act(W_ih x + b_ih + W_hh h + b_hh)
    lstm:       i,f,g,o = split(W_ih x + b_ih + W_hh h + b_hh)
                i,f,o = ract(i), ract(f), ract(o);  g = act(g)
                c' = f*c + i*g;  h' = o*act(c')  (then h' = W_hr h' when proj_size > 0)
    gru, reset_after=True  (PyTorch, Keras reset_after=True):
                r = ract(W_ir x + b_ir + W_hr h + b_hr);  z = ract(W_iz x + b_iz + W_hz h + b_hz)
                n = act(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1-z)*n + z*h
    gru, reset_after=False (Keras reset_after=False; b_hh must be zero):
                r, z as above;  n = act(W_in x + b_in + W_hn (r*h));  h' = (1-z)*n + z*h

Options (ONNX's RNN / GRU / LSTM attributes; rare: a layer with any of them runs on the core's
general path, not the fused kernels).  With ``a`` the summed pre-activation of a gate as above,
``clip(v) = min(max(v, -clip), clip)`` when ``clip`` is set (else ``v``), and ``f``, ``g``, ``h``
the cell's functions (``gate_activations``, else ``f = ract``, ``g = h = act``)::

    lstm:       i = f(clip(a_i + p_i*c));  f_ = 1 - i if input_forget else f(clip(a_f + p_f*c))
                c' = f_*c + i*g(clip(a_g));  o = f(clip(a_o + p_o*c'));  h' = o*h(c')
    gru:        r = f(clip(a_r)), z = f(clip(a_z)), n = g(clip(<n's sum as above>))
    simple_rnn: h' = f(clip(a))

``p_i, p_f, p_o`` are the rows of ``DirectionWeights.peephole`` ([3, H], in the spec's order
i, f, o; ONNX's ``P`` holds i, o, f); ``gate_activations`` lists, per direction, ONNX functions
with ONNX's alpha / beta (:data:`GATE_FUNCTIONS`).  ``DirectionWeights.h0`` / ``c0`` are the
layer's default initial state (one row, used for every batch row when a call gives none).

Directions: ``forward``; ``reverse`` = Keras ``go_backwards`` (steps are processed from the
last to the first and the output sequence stays in *processing* order); ``bidirectional`` =
forward + a backward pass whose outputs are aligned to input time, merged by ``merge_mode``
(``concat`` | ``sum`` | ``mul`` | ``ave`` | ``none``; ``none`` returns the two directions as
separate outputs and must be the last layer of a model without an ``outputs`` list).

Several outputs (format 3).  By default a model is a chain: each layer reads the output of the
layer before it in ``layers`` and ``predict`` returns the last layer's output.  Two optional fields
of :class:`ModelSpec` describe more:

* ``layer_inputs``: ``{layer name: earlier layer name}`` for a layer that reads the output of an
  earlier layer other than the one just before it (a second head on a trunk: ``lstm -> dense_a``,
  ``lstm -> dense_b`` is ``layers=[lstm, dense_a, dense_b]``, ``layer_inputs={"dense_b": "lstm"}``).
  The core keeps the outputs (and masks) of the layers that are read this way; every layer still
  runs once, in list order.
* ``outputs``: a list of :class:`OutputSpec`, the model's outputs in the framework's order.  Each is
  a layer's output (``kind="output"``: computed in C++, taps of inner layers included) or a final
  state of recurrent layers (``kind="h"`` / ``"c"``: the core's per-layer final states, arranged in
  the framework's layout in Python: torch / ONNX ``(layers * directions, B, units)``, ONNX
  ``layout=1`` ``(B, layers * directions, units)``, Keras one direction ``(B, units)``).
  ``output_structure`` optionally nests them (torch ``(out, (h, c))`` is ``[0, [1, 2]]``; ``0``
  alone: the one output, bare, as a torch forward returning ``h_n`` alone).
  ``Model.predict`` then returns a tuple (nested as given) in that order; ``outputs=None`` keeps the
  single output (or the two of a final ``merge_mode="none"`` layer) exactly as before.
  A stream's state is the recurrent layers' state, so state outputs are what ``Stream.state``
  holds; ``Stream.step`` returns the step's value of the *data* outputs (``kind="output"``): the
  bare array when there is one (the main output, e.g. the logits of a ``(logits, h_n)`` char LM,
  which ``generate`` samples from), a tuple in ``outputs`` order when there are several;
  ``generate`` always samples the first data output.

A spec with ``layer_inputs`` or ``outputs`` needs model format ``GRAPH_FORMAT`` (3); every other
spec is written in the lowest version that holds it (1, or 2 for bf16 / int8 weights), so older
fastrnn versions keep reading those files and refuse a version 3 file with their "upgrade" message.

Masks: a step is *masked* for a row when it lies past ``lengths[b]`` or when an Embedding
(``mask_zero``) / Masking layer marks it.  A masked step never changes the state.  Its output
is set by ``mask_mode``: ``"zero"`` (PyTorch packed sequences: zeros) or ``"hold"`` (Keras:
the last output emitted so far, zeros before the first valid step).  With
``return_sequences=False`` the layer returns, per direction, the output of its last processed
step under that rule ("hold": the last valid output; "zero": the final state ``h``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Union

import numpy as np

from .errors import ModelFormatError, UnsupportedLayerError
from .quantize import PRECISIONS

FORMAT_VERSION = 3  # the newest model description this fastrnn reads and writes
# Version 2 added RecurrentSpec.precision (bf16 / int8 weights, see fastrnn.quantize).  to_core writes
# the lowest version that describes a spec: 1 (no "precision" keys) when every layer is float32, so
# an older fastrnn still reads the .fastrnn files of float32 models.
PRECISION_FORMAT = 2
# Version 3 (one release) added the recurrent options (clip, input_forget, gate_activations; peephole and
# default initial state tensors), written only by a spec that uses one (RecurrentSpec.has_options), and
# ModelSpec.layer_inputs / outputs / output_structure (several outputs, branches): a version 3 reader
# reads both.
OPTIONS_FORMAT = 3
OPTION_FIELDS = ("clip", "input_forget", "gate_activations")
GRAPH_FORMAT = 3
OUTPUT_KINDS = ("output", "h", "c")

LAYER_KINDS = ("embedding", "masking", "simple_rnn", "lstm", "gru", "dense", "activation", "last_step")
RECURRENT_KINDS = ("simple_rnn", "lstm", "gru")
DIRECTIONS = ("forward", "reverse", "bidirectional")
MERGE_MODES = ("concat", "sum", "mul", "ave", "none")
MASK_MODES = ("zero", "hold")
# Element-wise activations usable everywhere (cells, Dense, Activation).
# hard_sigmoid = Keras 3 relu6(x+3)/6; hard_sigmoid_tf2 = tf.keras 2 clip(0.2x+0.5, 0, 1).
ACTIVATIONS = (
    "linear", "tanh", "sigmoid", "relu", "relu6", "hard_sigmoid", "hard_sigmoid_tf2",
    "elu", "selu", "softplus", "softsign", "silu", "hard_silu", "exponential",
    "leaky_relu", "gelu", "gelu_tanh", "hard_tanh", "mish", "log_sigmoid",
)
# Activations over the last axis (Dense / Activation only); l2_normalize = x / max(||x||_2, 1e-12)
# (torch F.normalize, Keras UnitNormalization).
AXIS_ACTIVATIONS = ("softmax", "log_softmax", "l2_normalize")
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
# ONNX's recurrent activation functions (RecurrentSpec.gate_activations), with ONNX's alpha / beta:
# Affine alpha*x + beta, LeakyRelu x >= 0 ? x : alpha*x, ThresholdedRelu x > alpha ? x : 0,
# ScaledTanh alpha*tanh(beta*x), HardSigmoid clip(alpha*x + beta, 0, 1), Elu x >= 0 ? x : alpha*(e^x - 1);
# the others take neither.
GATE_FUNCTIONS = ("Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid",
                  "Elu", "Softsign", "Softplus")
# functions per direction in gate_activations: f (gates), g (candidate; the simple RNN's one), h (LSTM output)
GATE_ROLES = {"simple_rnn": 1, "gru": 2, "lstm": 3}
# Limits a model description must respect whatever its source (a file cannot raise them).
MAX_LAYERS = 4096  # far beyond any real RNN; each layer costs validation and build time
MAX_STATEFUL_BATCH = 1 << 16  # a stateful layer's recorded batch size (what stream() allocates)


def _check_text(s: object, what: str) -> None:
    """``s`` must be a str that is real Unicode (encodable as UTF-8: no lone surrogate, which JSON's
    ``\\ud800`` escape can produce), so that the model can be saved, pickled and printed."""
    if not isinstance(s, str):
        raise ModelFormatError(f"{what} must be a string, got {type(s).__name__}")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ModelFormatError(f"{what} {s!r} is not valid Unicode ({e.reason} at position {e.start}): "
                               "a corrupt or hostile model description") from None


def _check_metadata(metadata: object) -> None:
    """``metadata``: a dict whose strings are real Unicode; ``layer_metadata`` (what ``Model.stateful``
    and ``Model.stream()`` read) maps layer names to ``{"stateful": bool, "batch_size": int}``."""
    if not isinstance(metadata, dict):
        raise ModelFormatError(f"model metadata must be a dict, got {type(metadata).__name__}")
    stack = [(metadata, "metadata")]
    while stack:  # iterative: metadata read from a file may nest deeply
        v, where = stack.pop()
        if isinstance(v, str):
            _check_text(v, f"{where}: string")
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str):
                    _check_text(k, f"{where}: key")
                stack.append((item, f"{where}[{k!r:.40}]"))
        elif isinstance(v, (list, tuple)):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(v))
    lm = metadata.get("layer_metadata")
    if lm is None:
        return
    if not isinstance(lm, dict):
        raise ModelFormatError(f"metadata 'layer_metadata' must map layer names to objects, got a {type(lm).__name__}")
    for name, d in lm.items():
        where = f"metadata 'layer_metadata' of layer {name!r:.60}"
        if not isinstance(name, str) or not isinstance(d, dict):
            raise ModelFormatError(f"{where}: must map a layer name to an object, got {type(d).__name__}")
        if "stateful" in d and not isinstance(d["stateful"], bool):
            raise ModelFormatError(f"{where}: 'stateful' must be true or false, got {d['stateful']!r:.40}")
        if "batch_size" in d:
            b = d["batch_size"]
            if not isinstance(b, (int, np.integer)) or isinstance(b, (bool, np.bool_)) or not 1 <= b <= MAX_STATEFUL_BATCH:
                raise ModelFormatError(f"{where}: 'batch_size' must be an int in [1, {MAX_STATEFUL_BATCH}] (the rows "
                                       f"stream() allocates), got {b!r:.40}")


def _f32(name: str, a: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    if arr.shape != tuple(shape):
        raise ModelFormatError(f"tensor '{name}': expected shape {tuple(shape)}, got {arr.shape}")
    return arr


@dataclass
class DirectionWeights:
    """Weights of one direction of a recurrent layer, canonical layout (see module doc)."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    w_hr: Optional[np.ndarray] = None  # LSTM projection [P, H]
    # int8 only: the float32 row scales of w_ih / w_hh / w_hr (see fastrnn.quantize)
    w_ih_scale: Optional[np.ndarray] = None
    w_hh_scale: Optional[np.ndarray] = None
    w_hr_scale: Optional[np.ndarray] = None
    peephole: Optional[np.ndarray] = None  # LSTM [3, H]: p_i, p_f, p_o (see the module doc)
    h0: Optional[np.ndarray] = None  # default initial state [Hout] (None: zeros)
    c0: Optional[np.ndarray] = None  # LSTM default initial cell state [H] (None: zeros)

    TENSORS: ClassVar[tuple[str, ...]] = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "w_ih_scale", "w_hh_scale", "w_hr_scale",
                                          "peephole", "h0", "c0")
    OPTION_TENSORS: ClassVar[tuple[str, ...]] = ("peephole", "h0", "c0")  # float32, from format 3


@dataclass
class EmbeddingSpec:
    """ids (B, T) int -> (B, T, D).  ``mask_zero``: id 0 masks the step (Keras)."""

    name: str
    embeddings: np.ndarray  # [V, D]
    mask_zero: bool = False
    kind: ClassVar[str] = "embedding"

    def validate(self, features: int | None) -> tuple[int | None, bool | None]:
        if features is not None:
            raise ModelFormatError(f"layer '{self.name}' (embedding): must be the first layer")
        self.embeddings = _f32(f"{self.name}.embeddings", self.embeddings, np.shape(self.embeddings))
        if self.embeddings.ndim != 2:
            raise ModelFormatError(f"layer '{self.name}' (embedding): embeddings must be 2-D, got {self.embeddings.shape}")
        if 0 in self.embeddings.shape:
            raise ModelFormatError(f"layer '{self.name}' (embedding): embeddings {self.embeddings.shape} have a "
                                   "zero-sized dimension (an Embedding needs at least one id and one feature)")
        return int(self.embeddings.shape[1]), True


@dataclass
class MaskingSpec:
    """Keras Masking: a step whose features all equal ``mask_value`` is masked, and (as Keras does)
    its values are replaced by zeros.  The mask is ANDed with any mask already present."""

    name: str
    mask_value: float = 0.0
    kind: ClassVar[str] = "masking"

    def validate(self, features: int | None) -> tuple[int | None, bool | None]:
        return features, True


@dataclass
class RecurrentSpec:
    """A SimpleRNN / LSTM / GRU layer, one or two directions (see module doc)."""

    kind: str  # "simple_rnn" | "lstm" | "gru"
    name: str
    input_size: int
    units: int
    weights: list[DirectionWeights]  # (1, or 2 for bidirectional: forward, backward)
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"  # lstm / gru only
    reset_after: bool = True  # gru only
    proj_size: int = 0  # lstm only
    direction: str = "forward"
    merge_mode: str = "concat"  # bidirectional only
    return_sequences: bool = True
    mask_mode: str = "zero"
    # weights of w_ih / w_hh / w_hr as stored: "f32" | "bf16" (uint16 bits) | "int8" (+ row scales);
    # see fastrnn.quantize.  Biases are float32 in every precision.
    precision: str = "f32"
    # Options (format 3; see the module doc): clip the gate pre-activations to [-clip, clip]; LSTM
    # coupled input-forget gate (f = 1 - i); per direction the cell's ONNX functions [name, alpha, beta]
    # (f, g[, h]; names in GATE_FUNCTIONS), replacing activation / recurrent_activation (which must
    # then keep their defaults).
    clip: Optional[float] = None
    input_forget: bool = False
    gate_activations: Optional[list[list[list[Any]]]] = None

    @property
    def has_options(self) -> bool:
        """True when the layer uses an option of model format 3 (clip, input_forget, gate_activations,
        peepholes or a default initial state)."""
        return (self.clip is not None or self.input_forget or self.gate_activations is not None
                or any(getattr(w, t) is not None for w in self.weights for t in DirectionWeights.OPTION_TENSORS))

    @property
    def num_directions(self) -> int:
        return 2 if self.direction == "bidirectional" else 1

    @property
    def hidden_out(self) -> int:
        """Size of h (and of each direction's output)."""
        return self.proj_size if self.proj_size else self.units

    @property
    def output_size(self) -> int:
        if self.direction == "bidirectional" and self.merge_mode == "concat":
            return 2 * self.hidden_out
        return self.hidden_out

    def validate(self, features: int | None) -> tuple[int | None, bool | None]:
        where = f"layer '{self.name}' ({self.kind})"
        problems = []
        if self.kind not in RECURRENT_KINDS:
            raise UnsupportedLayerError(f"{where}: unknown recurrent kind")
        if features is not None and features != self.input_size:
            problems.append(f"input size {self.input_size} but the previous layer gives {features}")
        if self.direction not in DIRECTIONS:
            problems.append(f"direction {self.direction!r} not in {DIRECTIONS}")
        if self.merge_mode not in MERGE_MODES:
            problems.append(f"merge_mode {self.merge_mode!r} not in {MERGE_MODES}")
        if self.mask_mode not in MASK_MODES:
            problems.append(f"mask_mode {self.mask_mode!r} not in {MASK_MODES}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} not in {PRECISIONS}")
        acts = [self.activation] + ([self.recurrent_activation] if self.kind != "simple_rnn" else [])
        for a in acts:
            if a not in ACTIVATIONS:
                raise UnsupportedLayerError(f"{where}: activation {a!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
        if self.proj_size and self.kind != "lstm":
            problems.append("proj_size is only valid for lstm")
        problems += self._option_problems()
        if self.units < 1 or self.input_size < 1 or self.proj_size < 0:
            problems.append(f"bad sizes units={self.units} input_size={self.input_size} proj_size={self.proj_size}")
        if len(self.weights) != self.num_directions:
            problems.append(f"{len(self.weights)} weight sets for {self.num_directions} direction(s)")
        if problems:
            raise ModelFormatError(f"{where}: " + "; ".join(problems))
        g, h, i, ho = GATES[self.kind], self.units, self.input_size, self.hidden_out
        for d, w in enumerate(self.weights):
            p = f"{self.name}.{('forward', 'backward')[d]}"
            w.w_ih, w.w_ih_scale = self._matrix(w, "w_ih", f"{p}.w_ih", (g * h, i))
            w.w_hh, w.w_hh_scale = self._matrix(w, "w_hh", f"{p}.w_hh", (g * h, ho))
            w.b_ih = _f32(f"{p}.b_ih", w.b_ih, (g * h,))
            w.b_hh = _f32(f"{p}.b_hh", w.b_hh, (g * h,))
            if self.proj_size:
                w.w_hr, w.w_hr_scale = self._matrix(w, "w_hr", f"{p}.w_hr", (self.proj_size, h))
            elif w.w_hr is not None or w.w_hr_scale is not None:
                raise ModelFormatError(f"{where}: w_hr given without proj_size")
            if self.kind == "gru" and not self.reset_after and np.any(w.b_hh != 0):
                raise ModelFormatError(f"{where}: reset_after=False takes a single (input) bias; b_hh must be zero")
            if (w.peephole is None) != (self.weights[0].peephole is None):
                raise ModelFormatError(f"{where}: peepholes given for one direction only (zeros for the other)")
            if w.peephole is not None:
                w.peephole = _f32(f"{p}.peephole", w.peephole, (3, h))
            if w.h0 is not None:
                w.h0 = _f32(f"{p}.h0", w.h0, (ho,))
            if w.c0 is not None:
                w.c0 = _f32(f"{p}.c0", w.c0, (h,))
            for t in DirectionWeights.OPTION_TENSORS:
                a = getattr(w, t)
                if a is not None and not np.all(np.isfinite(a)):
                    raise ModelFormatError(f"{where}: tensor '{p}.{t}' holds non-finite values")
        return self.output_size, self.return_sequences

    def _option_problems(self) -> list[str]:
        problems = []
        if self.clip is not None:
            c = self.clip
            if isinstance(c, bool) or not isinstance(c, (int, float, np.floating, np.integer)) or not np.isfinite(c) or c < 0:
                problems.append(f"clip must be None or a finite number >= 0, got {c!r:.40}")
            else:
                self.clip = float(c)
        if not isinstance(self.input_forget, (bool, np.bool_)):
            problems.append(f"input_forget must be true or false, got {self.input_forget!r:.40}")
        elif self.input_forget and self.kind != "lstm":
            problems.append("input_forget is only valid for lstm")
        for w in self.weights:
            if self.kind != "lstm" and (w.peephole is not None or w.c0 is not None):
                problems.append("peephole / c0 are only valid for lstm")
                break
        ga = self.gate_activations
        if ga is None:
            return problems
        per = GATE_ROLES.get(self.kind, 0)
        if (self.activation, self.recurrent_activation) != ("tanh", "sigmoid"):
            problems.append("gate_activations replaces activation / recurrent_activation: leave those at their "
                            "defaults ('tanh', 'sigmoid')")
        if not isinstance(ga, (list, tuple)) or len(ga) != self.num_directions or not all(
                isinstance(d, (list, tuple)) and len(d) == per for d in ga):
            problems.append(f"gate_activations must hold {self.num_directions} list(s) (one per direction) of {per} "
                            "[name, alpha, beta] entries")
            return problems
        out = []
        for d in ga:
            row = []
            for e in d:
                ok = isinstance(e, (list, tuple)) and len(e) == 3 and e[0] in GATE_FUNCTIONS and all(
                    isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and np.isfinite(v)
                    for v in e[1:])
                if not ok:
                    problems.append(f"gate_activations entry {e!r:.60} is not [name, alpha, beta] with name in "
                                    f"{', '.join(GATE_FUNCTIONS)} and finite alpha / beta")
                    return problems
                row.append([str(e[0]), float(e[1]), float(e[2])])
            out.append(row)
        self.gate_activations = out
        return problems

    def _matrix(self, w: DirectionWeights, t: str, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
        """A weight matrix in this layer's precision and its int8 row scales (None otherwise), checked:
        float32 (converted), uint16 bf16 bits or int8 in [-127, 127] with finite scales >= 0."""
        a, scale = getattr(w, t), getattr(w, f"{t}_scale")
        where = f"layer '{self.name}' ({self.kind}, precision {self.precision})"
        if self.precision == "f32":
            if scale is not None:
                raise ModelFormatError(f"{where}: tensor '{name}_scale' given, but only int8 weights have scales")
            if isinstance(a, np.ndarray) and a.dtype.kind in "iub":
                raise ModelFormatError(f"{where}: tensor '{name}' holds {a.dtype} values; float32 weights must be "
                                       "floats (reduced weights need precision 'bf16' / 'int8')")
            return _f32(name, a, shape), None
        want = np.dtype(np.uint16 if self.precision == "bf16" else np.int8)
        if not isinstance(a, np.ndarray) or a.dtype != want:
            got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise ModelFormatError(f"{where}: tensor '{name}' must be {want} (the stored {self.precision} form, made by "
                                   f"fastrnn.quantize / Model.with_weights), got {got}")
        if a.shape != tuple(shape):
            raise ModelFormatError(f"{where}: tensor '{name}': expected shape {tuple(shape)}, got {a.shape}")
        a = np.ascontiguousarray(a)
        if self.precision == "bf16":
            if scale is not None:
                raise ModelFormatError(f"{where}: tensor '{name}_scale' given, but only int8 weights have scales")
            return a, None
        if a.size and a.min() < -127:
            raise ModelFormatError(f"{where}: tensor '{name}' holds -128; int8 weights are symmetric, in [-127, 127]")
        if scale is None:
            raise ModelFormatError(f"{where}: tensor '{name}_scale' (the row scales of the int8 weights) is missing")
        if not isinstance(scale, np.ndarray) or scale.dtype.kind != "f":
            raise ModelFormatError(f"{where}: tensor '{name}_scale' must be float32 row scales, got "
                                   f"{getattr(scale, 'dtype', type(scale).__name__)}")
        if scale.shape != (shape[0],):
            raise ModelFormatError(f"{where}: tensor '{name}_scale': expected shape {(shape[0],)}, got {scale.shape}")
        scale = _f32(f"{name}_scale", scale, (shape[0],))
        if not np.all(np.isfinite(scale)) or (scale.size and scale.min() < 0):
            raise ModelFormatError(f"{where}: tensor '{name}_scale' must hold finite scales >= 0")
        return a, scale


@dataclass
class DenseSpec:
    """y = act(x W^T + b) over the last axis (Dense, TimeDistributed(Dense), nn.Linear)."""

    name: str
    weight: np.ndarray  # [O, I]
    bias: Optional[np.ndarray] = None  # [O]
    activation: str = "linear"
    kind: ClassVar[str] = "dense"

    def validate(self, features: int | None) -> tuple[int | None, bool | None]:
        w = np.asarray(self.weight)
        if w.ndim != 2:
            raise ModelFormatError(f"layer '{self.name}' (dense): weight must be 2-D, got {w.shape}")
        if 0 in w.shape:
            raise ModelFormatError(f"layer '{self.name}' (dense): weight {w.shape} has a zero-sized dimension "
                                   "(a Dense layer needs at least one input and one output)")
        if features is not None and features != w.shape[1]:
            raise ModelFormatError(
                f"layer '{self.name}' (dense): weight {w.shape} takes {w.shape[1]} features but the previous layer gives {features}")
        self.weight = _f32(f"{self.name}.weight", w, w.shape)
        self.bias = _f32(f"{self.name}.bias", np.zeros(w.shape[0]) if self.bias is None else self.bias, (w.shape[0],))
        _check_activation(self.name, self.kind, self.activation, allow_axis=True)
        return int(w.shape[0]), None


@dataclass
class ActivationSpec:
    name: str
    activation: str
    kind: ClassVar[str] = "activation"

    def validate(self, features: int | None) -> tuple[int | None, bool | None]:
        _check_activation(self.name, self.kind, self.activation, allow_axis=True)
        return features, None


@dataclass
class LastStepSpec:
    """(B, T, F) -> (B, F): the output at the last time index (``x[:, -1]``)."""

    name: str
    kind: ClassVar[str] = "last_step"

    def validate(self, features: int | None) -> tuple[int | None, bool | None]:
        return features, False


LayerSpec = Union[EmbeddingSpec, MaskingSpec, RecurrentSpec, DenseSpec, ActivationSpec, LastStepSpec]


def _check_activation(name: str, kind: str, act: str, allow_axis: bool = False) -> None:
    ok = ACTIVATIONS + (AXIS_ACTIVATIONS if allow_axis else ())
    if act not in ok:
        raise UnsupportedLayerError(f"layer '{name}' ({kind}): activation {act!r} is not supported (supported: {', '.join(ok)})")


@dataclass
class OutputSpec:
    """One model output (see the module doc, "Several outputs").

    ``name``: the framework's name for it (a Keras output layer, an ONNX graph output; ``output_<i>``
    for torch), used by ``fastrnn predict`` to name the arrays it writes.  ``kind``: ``"output"``, the
    output of ``layers[0]`` (as ``predict`` would return it were that layer last); ``"h"`` / ``"c"``
    (LSTM only): the final states of ``layers`` (recurrent, equal state sizes), stacked as
    ``(len(layers) * directions, B, units)`` in list order, forward before backward (the torch
    ``h_n`` / ONNX ``Y_h`` layout); ``batch_major``: ``(B, len(layers) * directions, units)``
    instead (ONNX ``layout=1``); ``direction``: one layer's one direction only, ``(B, units)``
    (Keras ``return_state``: 0 forward, 1 backward); with ``keep_axis`` as ``(1, B, units)`` (``(B, 1,
    units)`` when ``batch_major``: the ONNX ``Y_h`` of a reverse node that runs as a bidirectional layer
    with a zero forward direction)."""

    name: str
    kind: str
    layers: list[str]
    direction: Optional[int] = None
    batch_major: bool = False
    keep_axis: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "layers": list(self.layers), "direction": self.direction,
                "batch_major": self.batch_major, "keep_axis": self.keep_axis}

    @classmethod
    def from_json(cls, d: Any, i: int) -> "OutputSpec":
        keys = {"name", "kind", "layers", "direction", "batch_major", "keep_axis"}
        if not isinstance(d, dict) or set(d) - keys:
            raise ModelFormatError(f"output {i}: must be an object with keys {', '.join(sorted(keys))}")
        layers = d.get("layers")
        if not isinstance(layers, list):
            raise ModelFormatError(f"output {i}: 'layers' must be a list of layer names")
        if not isinstance(d.get("name"), str) or not isinstance(d.get("kind"), str):
            raise ModelFormatError(f"output {i}: 'name' and 'kind' must be strings")
        return cls(name=d["name"], kind=d["kind"], layers=list(layers), direction=d.get("direction"),
                   batch_major=d.get("batch_major", False), keep_axis=d.get("keep_axis", False))


def _check_structure(st: Any, n: int) -> None:
    """``st``: nested lists of the output indices 0..n-1, each exactly once (or the bare index 0: the
    model returns its one output as an array, not a 1-tuple)."""
    seen: list[int] = []
    stack = [st]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            if len(seen) + len(stack) > n:
                break
            stack.extend(v)
        elif isinstance(v, int) and not isinstance(v, bool):
            seen.append(v)
        else:
            raise ModelFormatError(f"output_structure: holds {v!r:.40}; expected nested lists of output indices")
    if sorted(seen) != list(range(n)) or (not isinstance(st, list) and n != 1):
        raise ModelFormatError(f"output_structure must be nested lists holding each output index 0..{n - 1} once "
                               f"(or the index 0 of a model that returns its one output bare), got {st!r:.80}")


@dataclass
class ModelSpec:
    """Layers run in list order, each reading the previous layer's output (or the one ``layer_inputs``
    names); ``outputs`` lists the model's outputs (None: the last layer's).  ``input_features`` is
    None for id input (first layer Embedding).  See the module doc, "Several outputs"."""

    layers: list[LayerSpec]
    input_features: Optional[int] = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    layer_inputs: dict[str, str] = field(default_factory=dict)
    outputs: Optional[list[OutputSpec]] = None
    output_structure: Any = None  # nested lists of output indices, or 0 (see _check_structure)

    @property
    def data_outputs(self) -> list[str]:
        """The layers whose outputs the core returns, in order (each once): the ``"output"`` entries of
        ``outputs`` (empty when ``outputs`` is None)."""
        seen: list[str] = []
        for o in self.outputs or []:
            if o.kind == "output" and o.layers[0] not in seen:
                seen.append(o.layers[0])
        return seen

    @property
    def main_output(self) -> LayerSpec:
        """The layer of the main output: the first data output (what ``Stream.step`` returns first and
        ``generate`` samples from), else the last layer."""
        names = self.data_outputs
        if names:
            return next(l for l in self.layers if l.name == names[0])
        return self.layers[-1]

    @property
    def takes_ids(self) -> bool:
        return bool(self.layers) and isinstance(self.layers[0], EmbeddingSpec)

    @property
    def recurrent_layers(self) -> list[RecurrentSpec]:
        return [l for l in self.layers if isinstance(l, RecurrentSpec)]

    @property
    def precision(self) -> str:
        """The precision of the recurrent weights: ``"f32"`` (also with no recurrent layer), ``"bf16"``,
        ``"int8"``, or ``"mixed"`` when layers differ (a hand-built spec; see each layer's ``precision``)."""
        found = {l.precision for l in self.recurrent_layers} or {"f32"}
        return found.pop() if len(found) == 1 else "mixed"

    @property
    def format_version(self) -> int:
        """The lowest model description version that holds this spec: 1 when every layer is float32
        (readable by every fastrnn), ``PRECISION_FORMAT`` for bf16 / int8 weights, 3 (``OPTIONS_FORMAT`` =
        ``GRAPH_FORMAT``) when a recurrent layer has options (:attr:`RecurrentSpec.has_options`) or the
        spec has ``layer_inputs`` / ``outputs``."""
        if any(l.has_options for l in self.recurrent_layers):
            return OPTIONS_FORMAT
        if self.layer_inputs or self.outputs is not None:
            return GRAPH_FORMAT
        return 1 if all(l.precision == "f32" for l in self.recurrent_layers) else PRECISION_FORMAT

    def validate(self) -> "ModelSpec":
        """Check every layer and the chain of feature sizes; return self (normalized to float32)."""
        if not self.layers:
            raise ModelFormatError("model has no layers")
        if len(self.layers) > MAX_LAYERS:
            raise ModelFormatError(f"model has {len(self.layers):,} layers, more than fastrnn runs ({MAX_LAYERS:,})")
        names = set()
        feats = None if self.takes_ids else self.input_features
        if not self.takes_ids and (not isinstance(feats, int) or feats < 1):
            raise ModelFormatError(f"model input_features must be a positive int, got {feats!r}")
        seq = True
        reads = self.layer_inputs
        if not isinstance(reads, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in reads.items()):
            raise ModelFormatError("layer_inputs must map layer names to layer names")
        produced: dict[str, tuple[int | None, bool]] = {}  # layer name -> (features, seq) of its output
        for i, layer in enumerate(self.layers):
            _check_text(layer.name, f"layer {i} ({getattr(layer, 'kind', '?')}): name")
            if layer.name in names:
                raise ModelFormatError(f"duplicate layer name '{layer.name}'")
            names.add(layer.name)
            src = reads.get(layer.name)
            if src is not None:
                if src not in produced or isinstance(layer, EmbeddingSpec):
                    raise ModelFormatError(f"layer_inputs: layer '{layer.name}' reads '{src:.80}', which is not an "
                                           "earlier layer")
                feats, seq = produced[src]
            if isinstance(layer, (RecurrentSpec, LastStepSpec, MaskingSpec)) and not seq:
                raise ModelFormatError(f"layer '{layer.name}' ({layer.kind}) needs a sequence input, but the previous layer returns one step")
            if isinstance(layer, RecurrentSpec) and layer.direction == "bidirectional" and layer.merge_mode == "none" \
                    and (i != len(self.layers) - 1 or reads or self.outputs is not None):
                raise ModelFormatError(f"layer '{layer.name}': merge_mode 'none' must be the last layer (of a model "
                                       "without layer_inputs / outputs)")
            feats, s = layer.validate(feats)
            if s is not None:
                seq = s
            produced[layer.name] = (feats, seq)
        unknown = sorted(set(reads) - names)
        if unknown:
            raise ModelFormatError(f"layer_inputs names unknown layer(s): {', '.join(unknown[:5]):.200}")
        self._validate_outputs()
        _check_text(self.source or "", "model source")
        _check_metadata(self.metadata)
        return self

    def _validate_outputs(self) -> None:
        if self.outputs is None:
            if self.output_structure is not None:
                raise ModelFormatError("output_structure given without outputs")
            return
        if not isinstance(self.outputs, list) or not self.outputs or \
                not all(isinstance(o, OutputSpec) for o in self.outputs):
            raise ModelFormatError("outputs must be a non-empty list of OutputSpec (or None)")
        by_name = {l.name: l for l in self.layers}
        seen: set[str] = set()
        for i, o in enumerate(self.outputs):
            _check_text(o.name, f"output {i}: name")
            where = f"output {i} ('{o.name}')"
            if o.name in seen:
                raise ModelFormatError(f"{where}: duplicate output name")
            seen.add(o.name)
            if o.kind not in OUTPUT_KINDS:
                raise ModelFormatError(f"{where}: kind {o.kind!r:.40} not in {OUTPUT_KINDS}")
            if not isinstance(o.layers, list) or not o.layers or not all(isinstance(n, str) for n in o.layers):
                raise ModelFormatError(f"{where}: 'layers' must be a non-empty list of layer names")
            missing = [n for n in o.layers if n not in by_name]
            if missing:
                raise ModelFormatError(f"{where}: unknown layer '{missing[0]:.80}'")
            d = o.direction
            if d is not None and (not isinstance(d, int) or isinstance(d, bool)):
                raise ModelFormatError(f"{where}: direction must be an int or None, got {d!r:.40}")
            if not isinstance(o.batch_major, bool) or not isinstance(o.keep_axis, bool):
                raise ModelFormatError(f"{where}: batch_major and keep_axis must be true or false")
            if o.keep_axis and d is None:
                raise ModelFormatError(f"{where}: keep_axis needs a direction")
            if o.kind == "output":
                if len(o.layers) != 1 or d is not None or o.batch_major:
                    raise ModelFormatError(f"{where}: an 'output' names exactly one layer (no direction / batch_major)")
                continue
            rnns = [by_name[n] for n in o.layers]
            if not all(isinstance(l, RecurrentSpec) for l in rnns):
                raise ModelFormatError(f"{where}: the state '{o.kind}' of a layer that is not recurrent")
            rs = [l for l in rnns if isinstance(l, RecurrentSpec)]
            if o.kind == "c" and any(l.kind != "lstm" for l in rs):
                raise ModelFormatError(f"{where}: a cell state 'c' of a layer that is not an LSTM")
            if len({l.units if o.kind == "c" else l.hidden_out for l in rs}) != 1:
                raise ModelFormatError(f"{where}: states of different sizes cannot be stacked")
            if d is not None and (len(rs) != 1 or not 0 <= d < rs[0].num_directions or (o.batch_major and not o.keep_axis)):
                raise ModelFormatError(f"{where}: direction {d} needs one layer that has that direction "
                                       "(and batch_major only with keep_axis)")
        if self.output_structure is not None:
            _check_structure(self.output_structure, len(self.outputs))

    # ---- the (header, tensors) pair: the payload of a .fastrnn file and the input of _core.Model
    def to_core(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Return ``(header: dict, tensors: {name: C-contiguous ndarray})``: float32 tensors, but for the
        stored matrices of bf16 (uint16) / int8 (int8, plus float32 ``*_scale``) layers.  The header's
        ``format`` is :attr:`format_version`; from version 2 every recurrent layer has ``"precision"``."""
        self.validate()
        version = self.format_version
        tensors: dict[str, np.ndarray] = {}
        layers: list[dict[str, Any]] = []
        for i, layer in enumerate(self.layers):
            d: dict[str, Any] = {"kind": layer.kind}
            refs: dict[str, str] = {}
            for f in dataclasses.fields(layer):
                v = getattr(layer, f.name)
                if f.name == "weights":
                    for di, w in enumerate(v):
                        dname = ("forward", "backward")[di]
                        for t in DirectionWeights.TENSORS:
                            a = getattr(w, t)
                            if a is not None:
                                key = f"layers.{i}.{dname}.{t}"
                                tensors[key] = a
                                refs[f"{dname}.{t}"] = key
                elif isinstance(v, np.ndarray):
                    key = f"layers.{i}.{f.name}"
                    tensors[key] = v
                    refs[f.name] = key
                elif f.name in OPTION_FIELDS:
                    if version >= OPTIONS_FORMAT:
                        d[f.name] = v
                elif f.name != "precision" or version >= PRECISION_FORMAT:
                    d[f.name] = v
            d["tensors"] = refs
            layers.append(d)
        header = {"format": version, "input_features": self.input_features, "takes_ids": self.takes_ids,
                  "source": self.source, "metadata": dict(self.metadata), "layers": layers}
        if version >= GRAPH_FORMAT:
            header["layer_inputs"] = dict(self.layer_inputs)
            header["outputs"] = None if self.outputs is None else [o.to_json() for o in self.outputs]
            header["output_structure"] = self.output_structure
        return header, tensors

    @classmethod
    def from_core(cls, header: dict[str, Any], tensors: dict[str, np.ndarray]) -> "ModelSpec":
        """Inverse of :meth:`to_core` (used by the native file reader)."""
        if not isinstance(header, dict):
            raise ModelFormatError("header must be a JSON object")
        ver = header.get("format")
        if not isinstance(ver, int) or ver > FORMAT_VERSION or ver < 1:
            raise ModelFormatError(
                f"model format version {ver!r} is not supported by this fastrnn (reads versions 1..{FORMAT_VERSION}); "
                "upgrade fastrnn or re-convert the model with this version")
        kinds = {c.kind: c for c in (EmbeddingSpec, MaskingSpec, DenseSpec, ActivationSpec, LastStepSpec)}
        layers: list[LayerSpec] = []
        for i, d in enumerate(header.get("layers") or []):
            if not isinstance(d, dict) or "kind" not in d:
                raise ModelFormatError(f"layer {i}: not an object with a 'kind'")
            d = dict(d)
            kind = d.pop("kind")
            refs = d.pop("tensors", {})

            def get(ref: str, stored: bool = False) -> np.ndarray:
                """The tensor behind ``ref``; a float tensor unless ``stored`` (a matrix of a bf16 / int8
                layer: validate checks its dtype), so integer data is never read as float weights."""
                if ref not in refs or refs[ref] not in tensors:
                    raise ModelFormatError(f"layer {i} ({kind}): missing tensor '{ref}'")
                a = tensors[refs[ref]]
                if not stored and getattr(getattr(a, "dtype", None), "kind", "f") in "iub":
                    raise ModelFormatError(f"layer {i} ({kind}): tensor '{ref}' holds {a.dtype} values where float32 "
                                           "is expected")
                return a

            try:
                if kind in RECURRENT_KINDS:
                    if ver < PRECISION_FORMAT and d.get("precision", "f32") != "f32":
                        raise ModelFormatError(f"layer {i} ({kind}): precision {d['precision']!r:.20} needs model "
                                               f"format {PRECISION_FORMAT}, the header says {ver}")
                    if ver >= PRECISION_FORMAT and "precision" not in d:
                        raise ModelFormatError(f"layer {i} ({kind}): missing 'precision' (required from model format "
                                               f"{PRECISION_FORMAT})")
                    if ver < OPTIONS_FORMAT and (any(k in d for k in OPTION_FIELDS) or any(
                            r.endswith(tuple(f".{t}" for t in DirectionWeights.OPTION_TENSORS)) for r in refs)):
                        raise ModelFormatError(f"layer {i} ({kind}): options ({', '.join(OPTION_FIELDS)}, peepholes, "
                                               f"initial states) need model format {OPTIONS_FORMAT}, the header says {ver}")
                    reduced = d.get("precision", "f32") != "f32"
                    ndir = 2 if d.get("direction") == "bidirectional" else 1
                    ws = []
                    for dname in ("forward", "backward")[:ndir]:
                        opt = {t: get(f"{dname}.{t}", t in ("w_ih", "w_hh", "w_hr") and reduced)
                               for t in ("w_ih", "w_hh", "w_hr", "w_ih_scale", "w_hh_scale", "w_hr_scale")
                               + DirectionWeights.OPTION_TENSORS
                               if f"{dname}.{t}" in refs}
                        for t in ("w_ih", "w_hh"):
                            if t not in opt:
                                get(f"{dname}.{t}")  # raises, naming the missing tensor
                        ws.append(DirectionWeights(b_ih=get(f"{dname}.b_ih"), b_hh=get(f"{dname}.b_hh"), **opt))
                    layers.append(RecurrentSpec(kind=kind, weights=ws, **d))
                elif kind in kinds:
                    c = kinds[kind]
                    for f in dataclasses.fields(c):
                        if f.name in refs:
                            d[f.name] = get(f.name)
                    layers.append(c(**d))
                else:
                    raise UnsupportedLayerError(f"layer {i}: unknown layer kind {kind!r}")
            except TypeError as e:
                raise ModelFormatError(f"layer {i} ({kind}): {e}") from None
        graph = [k for k in ("layer_inputs", "outputs", "output_structure") if header.get(k) is not None]
        if graph and ver < GRAPH_FORMAT:
            raise ModelFormatError(f"'{graph[0]}' needs model format {GRAPH_FORMAT}, the header says {ver}")
        reads = header.get("layer_inputs") or {}
        if not isinstance(reads, dict):
            raise ModelFormatError("'layer_inputs' must map layer names to layer names")
        outs = header.get("outputs")
        if outs is not None and not isinstance(outs, list):
            raise ModelFormatError("'outputs' must be a list of output objects or null")
        outputs = None if outs is None else [OutputSpec.from_json(d, i) for i, d in enumerate(outs)]
        return cls(layers=layers, input_features=header.get("input_features"), source=header.get("source", ""),
                   metadata=dict(header.get("metadata") or {}), layer_inputs=dict(reads), outputs=outputs,
                   output_structure=header.get("output_structure")).validate()
