"""Convert ONNX models (``.onnx`` files, bytes or an ``onnx.ModelProto``) to a :class:`~fastrnn.spec.ModelSpec`.

Needs the ``onnx`` package (``pip install "fastrnn[onnx]"``) to parse the protobuf; onnxruntime is never
needed.  The graph is read by a small *symbolic evaluator*: every tensor becomes an abstract value --
a constant, a shape (whose entries may be the symbolic batch / time sizes), a filled tensor
(``ConstantOfShape`` / ``Expand``: never materialised), the data flowing from the model input (a chain
of fastrnn layers plus the labels of its axes: batch ``B``, time ``T``, features ``F``, directions
``D``, size-one ``1``), or the final states ``Y_h`` of recurrent nodes.  Ops transform these values
(Transpose permutes labels, Reshape merges/splits them, Gemm appends a dense layer...), so the
converter follows what a graph *computes*, not the node pattern of one exporter.  Only the nodes the
chosen graph outputs depend on are evaluated.

Supported (everything else: one :class:`~fastrnn.errors.UnsupportedLayerError` listing every
unsupported node by name, op type and reason):

* ``LSTM`` / ``GRU`` / ``RNN`` (and ``com.microsoft.DynamicQuantizeLSTM``: dequantized to float32 at load;
  with ``weights="int8"`` it keeps its int8 weights as fastrnn's symmetric per-row int8 -- each row
  ``q - zero_point`` with its scale (per tensor or per output channel) where that fits [-127, 127]
  with a scale >= 0, which is exact and is what onnxruntime's ``quantize_dynamic`` writes (int8,
  zero point 0); any other row (uint8 / non-zero zero points out of range, -128) is requantized per
  row from its dequantized values (see :mod:`fastrnn.quantize`)):
  ``direction`` forward / reverse / bidirectional, ``layout`` 0 and 1, GRU ``linear_before_reset`` 1
  (PyTorch, Keras ``reset_after=True``) and 0 (Keras ``reset_after=False``); ``activations`` with
  ``activation_alpha`` / ``activation_beta`` (consumed as onnxruntime does): every ONNX function
  (``Relu``, ``Tanh``, ``Sigmoid``, ``Affine``, ``LeakyRelu``, ``ThresholdedRelu``, ``ScaledTanh``,
  ``HardSigmoid``, ``Elu``, ``Softsign``, ``Softplus``), per direction, an LSTM's g and h apart --
  fastrnn activations where they are exactly one (``Elu`` 1 = ``elu``, ``LeakyRelu`` 0.2 =
  ``leaky_relu``, ``HardSigmoid`` 0.2 / 0.5 = ``hard_sigmoid_tf2``, 1/6 / 0.5 = ``hard_sigmoid``,
  ``Affine`` 1 / 0 = ``linear``, ``ScaledTanh`` 1 / 1 = ``tanh``...), else
  :attr:`RecurrentSpec.gate_activations <fastrnn.spec.RecurrentSpec>`; ``clip``; ``input_forget``;
  peepholes ``P`` (a constant; all zero: none); ``sequence_lens`` from a graph input
  (-> ``predict(lengths=...)``: outputs past a row's length are zero, ``Y_h`` is the state at the last
  valid step, the reverse direction starts there); constant ``initial_h`` / ``initial_c`` (an
  initializer, ``ConstantOfShape`` / ``Expand`` of a value; the same row for every batch row): the
  layer's default initial state (``DirectionWeights.h0`` / ``c0``; ``predict(initial_state=...)``
  replaces it); ``initial_h`` / ``initial_c`` that are graph inputs (``(directions, batch, hidden)``;
  layout 1 batch first): recorded in ``metadata["onnx"]["state_inputs"]``, they are
  ``predict(initial_state=...)`` / ``Stream.state`` (:func:`initial_state_from_onnx` converts the
  graph's feeds); outputs ``Y`` (the sequence), ``Y_h`` (the final state, any direction(s) of the last
  recurrent layer; h_n[-1] of a bidirectional node = the backward direction when a Gemm / MatMul
  follows) and ``Y_c``.  A ``reverse`` node whose ``Y`` is used runs as a bidirectional layer with a
  zero forward direction (exact, twice the work; that direction uses the default functions, so its
  outputs are 0 whatever the node's); when only its ``Y_h`` is used it runs as one reverse direction.
  ``clip``, ``input_forget``, peepholes and ``gate_activations`` run on the core's general recurrent path.
* Several graph outputs (all of them unless ``output="name"`` picks one): ``predict`` returns a tuple
  in the graph's order (``ModelSpec.outputs``, named as the graph names them).  Data outputs lie on one
  chain of layers (the longest one's; the others are taps of it); final states ``Y_h`` / ``Y_c`` of its
  recurrent nodes, stacked ``(S, B, F)`` (layout 1 ``(B, S, F)``; the ``Concat`` of several nodes' as
  torch's ``h_n`` of a stacked module) or one direction ``(B, F)``, come back in the graph's layout;
  ``metadata["onnx"]["outputs"]`` lists each output's axes for :func:`output_to_onnx`.
* ``Gather`` (an embedding from an initializer indexed by the integer model input; index -1 on the
  time axis = last step; one entry of stacked final states), ``Gemm``, ``MatMul`` (+ ``Add`` of the
  bias), ``Transpose``, ``Squeeze``, ``Unsqueeze``, ``Reshape``, ``Flatten``, ``Slice``, ``Concat``,
  ``Shape``, ``ConstantOfShape``, ``Expand``, ``Cast``, ``Identity``, ``Dropout``, ``Constant``;
  element-wise ``Relu``, ``Tanh``, ``Sigmoid``, ``Elu``, ``Selu``, ``LeakyRelu`` (0.2), ``HardSigmoid``,
  ``HardSwish``, ``Softplus``, ``Softsign``, ``Gelu``, ``Mish``, ``Exp``, ``Clip`` (0..6 = relu6,
  -1..1 = hard_tanh, 0.. = relu); ``Softmax`` / ``LogSoftmax`` / ``LpNormalization`` (p=2: ``l2_normalize``)
  over the features.

tf2onnx 1.17 exports of Keras models (``tests/test_tf2onnx.py``) load: its LSTM rewriter (and, from tf_keras,
its GRU rewriter for ``reset_after=True``) writes ONNX LSTM / GRU nodes with Transpose / Slice / Squeeze /
Concat / Expand around them.  A ``Bidirectional`` layer becomes one bidirectional node whose ``Y`` is
sliced per direction (Slice + Squeeze of the ``D`` axis) and concatenated, forward first, along the
features; without ``return_sequences`` the forward direction's last step and the backward direction's
first step are taken, which are their final states (not with ``sequence_lens``).  Keras 3's ``Embedding``
wraps negative ids, ``where(ids < 0, ids + n, ids)`` (Cast, Less, Not, Cast, Mul, Mul, Add before the
Gather): read as the embedding itself, ids outside ``[0, n)`` are refused by ``predict``.  What tf2onnx
leaves as a TensorFlow while loop (Keras 3 GRU, SimpleRNN, ``reset_after=False``, Keras 3
``hard_sigmoid``, masking) is an ONNX ``Loop``: refused, the message naming the way out (load the Keras
model itself, or export a GRU from tf_keras); so is a ``Bidirectional`` ``merge_mode`` other than
``"concat"``.

Refused with a reason: initial states or peepholes computed from the graph's inputs, a constant
initial state whose batch rows differ, ``Y_c`` as the only output or as the input of a layer, several
outputs on branches of the graph (heads off one trunk), the final states of a reverse node whose ``Y``
is used stacked with other nodes' states, external data outside the model's directory.

Layouts: :meth:`fastrnn.Model.predict` is batch-first.  ``spec.metadata["onnx"]`` records the model
input's axes (``"TBF"`` for a time-major input: transpose it to ``(B, T, F)``), the output's axes
(``"1BF"`` for a raw ``Y_h``...), and ``lengths_input`` (the graph input behind ``sequence_lens``);
:func:`input_to_fastrnn` and :func:`output_to_onnx` convert between the two.

Safety: the protobuf is scanned before it is parsed: node, initializer, input and output counts, each
node's size (at most 64 KiB, but for a ``Constant``'s tensor data) and what the parse may cost (tensor
data once, the rest 16 times: protobuf makes one object per repeated entry) against the load budget;
each node's inputs + outputs + attributes and each attribute's entries are bounded (4096) before they
are walked; an attribute its op does not define at the model's opset is refused (as onnxruntime does);
every attribute and tensor the load materialises is charged to a :class:`~fastrnn.io.budget.LoadBudget`
first; filled tensors are never materialised; external data is read only from regular files inside the
model's directory.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, NoReturn, Optional, Sequence, TypeVar, Union, cast

import numpy as np
import numpy.typing as npt

from . import unique_name
from ..errors import ModelFormatError, UnsupportedLayerError
from ..io.budget import LoadBudget
from ..quantize import from_bf16
from ..spec import GATE_FUNCTIONS, MAX_LAYERS, DirectionWeights, ModelSpec, RecurrentSpec
from .torch import Piece, RNNDesc, build_spec

if TYPE_CHECKING:
    from types import ModuleType

    from onnx import GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto

    from ..runtime import Model

__all__ = ["spec_from_onnx", "spec_from_onnx_file", "input_to_fastrnn", "output_to_onnx", "initial_state_from_onnx"]

MAX_NODES = 100_000  # real RNN graphs have hundreds
MAX_NODE_BYTES = 64 << 10  # one node's protobuf bytes (real nodes: under 1 KiB; a Constant's tensor may be larger)
MAX_NODE_ENTRIES = 4096  # a node's inputs + outputs + attributes, and the entries of one attribute (real: < 20)
# protobuf's own parse of a node costs up to ~28 bytes of memory per byte of it (measured: 4M one-field
# attributes, 16 MB -> 446 MiB): the pre-scan charges this many per node byte (a Constant's tensor data: 1)
PARSE_COST = 16
_SCAN_FIELDS = 8  # top-level fields of a node / attribute the pre-scan reads (op_type, name, the value)
_SCAN_TENSOR_FIELDS = 32  # fields of a tensor the pre-scan reads (dims, type, name, data)
_SCAN_FIELD_LIMIT = 1 << 18  # fields all those walks read in one file (then tensors are charged in full)
_GRAPH_FIELD_LIMIT = 8 * MAX_NODES  # fields of the main graph (nodes, initializers, inputs, outputs...)
_CONSTANT_OP = b'"\x08Constant'  # NodeProto.op_type (field 4) = "Constant", as encoded
_ATTR_ENTRY_COST = 64  # bytes of Python objects one attribute entry becomes (an int in a list: ~36)
MAX_RANK = 16
MAX_LISTED = 40  # problems listed in one error message
INSTALL = 'pip install "fastrnn[onnx]"'

# ONNX gate orders -> the spec's (PyTorch's): LSTM i,o,f,c -> i,f,g,o; GRU z,r,h -> r,z,n
_GATE_ORDER = {"lstm": (0, 2, 3, 1), "gru": (1, 0, 2), "simple_rnn": (0,)}
_GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}
_KIND = {"LSTM": "lstm", "GRU": "gru", "RNN": "simple_rnn", "DynamicQuantizeLSTM": "lstm"}
_TORCH_MODE = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN_TANH"}
_DEFAULT_ACTS = {"lstm": ["Sigmoid", "Tanh", "Tanh"], "gru": ["Sigmoid", "Tanh"], "simple_rnn": ["Tanh"]}
# activation -> (uses alpha, uses beta, default alpha, default beta) as onnxruntime consumes the lists
_RNN_ACT_ARGS = {"affine": (1, 1, None, None), "relu": (0, 0, 0, 0), "leakyrelu": (1, 0, 0.01, 0),
                 "thresholdedrelu": (1, 0, 1.0, 0), "tanh": (0, 0, 0, 0), "scaledtanh": (1, 1, None, None),
                 "sigmoid": (0, 0, 0, 0), "hardsigmoid": (1, 1, 0.2, 0.5), "elu": (1, 0, 1.0, 0),
                 "softsign": (0, 0, 0, 0), "softplus": (0, 0, 0, 0)}
# ONNX's function names (lower case) -> RecurrentSpec.gate_activations' (GATE_FUNCTIONS)
_GATE_FN = {f.lower(): f for f in GATE_FUNCTIONS}
# activations f with f(0) == 0: a zero-weight direction then outputs exactly zero
_ZERO_AT_ZERO = {"linear", "tanh", "relu", "relu6", "elu", "selu", "softsign", "silu", "hard_silu", "leaky_relu",
                 "gelu", "gelu_tanh", "hard_tanh", "mish"}
_INT_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # uint8 int8 uint16 int16 int32 int64 uint32 uint64
_FLOAT_TYPES = {1, 10, 11, 16}  # float float16 double bfloat16
_LOOP_REASON = (
    "operator not supported (a loop: probably a recurrent layer that the exporter did not turn into an ONNX "
    "LSTM / GRU / RNN node: tf2onnx rewrites Keras LSTM and, from tf_keras (Keras 2), GRU with reset_after=True, but not Keras 3 GRU, "
    "SimpleRNN, reset_after=False, Keras 3 hard_sigmoid or masking); load the Keras model itself instead "
    "(fastrnn.load of its .keras / .h5 file, or fastrnn.from_keras), or export it from tf_keras with "
    "tf2onnx.convert.from_keras")
_BIG = 1 << 62  # slice ends at or past this mean "to the end"


def _onnx() -> ModuleType:
    try:
        import onnx
    except ImportError:
        raise UnsupportedLayerError(f"reading ONNX models needs the onnx package: {INSTALL}") from None
    return onnx


class _Refuse(Exception):
    """A node fastrnn cannot convert (reason = message)."""


class _Malformed(Exception):
    """A node whose inputs or attributes contradict the ONNX specification."""


# --------------------------------------------------------------------------- abstract values
class _Bad:
    """The output of a node already reported; its consumers are skipped silently."""


_BAD = _Bad()


@dataclass(frozen=True)
class _Unusable:
    reason: str


@dataclass(frozen=True)
class _Const:
    arr: npt.NDArray[Any]


@dataclass(frozen=True)
class _Fill:
    """A tensor of one value; ``shape`` entries are ints or symbolic axis labels. Never materialised."""

    shape: tuple[_Dim, ...]
    value: float


@dataclass(frozen=True)
class _Shape:
    """An int64 shape vector (or scalar) whose entries are ints or symbolic axis labels."""

    dims: tuple[_Dim, ...]
    scalar: bool = False


@dataclass(frozen=True)
class _IntInput:
    """An integer graph input: embedding ids (through Gather) or ``sequence_lens``."""

    name: str
    axes: tuple[str, ...]


@dataclass(frozen=True)
class _IdsExpr:
    """A function of the integer model input ``ids`` on its way to an embedding's Gather: what Keras 3's
    ``Embedding`` computes, ``where(ids < 0, ids + n, ids)``, exported by tf2onnx as Cast, Less, Not,
    Cast, Mul, Mul, Add.  ``form``: ``("shift", c)`` ids + c; ``("float",)`` ids as floats; ``("mask", neg)``
    ids < 0 (neg) or ids >= 0, as 0/1; ``("part", neg, c)`` ids + c where that mask is 1, else 0;
    ``("wrap", n)`` the whole ``where``, which is ``ids`` itself for the ids an ``n``-row table accepts."""

    ids: _IntInput
    form: tuple[Any, ...]  # ("shift", int), ("mask", bool)...: entries of mixed types


@dataclass(frozen=True)
class _Data:
    """Data computed from the model input: ``chain`` (the layers so far), ``axes`` (labels), ``feat``
    (size of the ``F`` axis; per direction when a ``D`` axis is present), ``ids`` (integer ids, no F)."""

    chain: _Chain
    axes: tuple[str, ...]
    feat: int
    src: str
    ids: bool = False

    def __post_init__(self) -> None:
        if len(self.chain) > MAX_LAYERS:  # before a long chain of nodes makes the copies quadratic
            raise _Malformed(f"the model would have more than {MAX_LAYERS:,} layers")


@dataclass(frozen=True)
class _DirPart:
    """Direction ``k`` (ONNX order: 0 forward, 1 backward) of ``data``, a bidirectional sequence output
    with a ``D`` axis; ``axes`` its own labels (the ``D`` axis sliced to ``1``, or squeezed away).  Only a
    Concat of both directions, forward first, along the features turns it back into data (tf2onnx's
    Keras ``Bidirectional`` export: Slice + Squeeze per direction, then Concat)."""

    data: _Data
    k: int
    axes: tuple[str, ...]


@dataclass(frozen=True)
class _Final:
    """Final states of recurrent nodes: ``entries`` ((chain ending at the node, ONNX direction index),
    ...) along the ``S`` axis when present, else concatenated along ``F`` (``feat`` per entry)."""

    entries: tuple[tuple[_Chain, int], ...]
    axes: tuple[str, ...]
    feat: int
    src: str
    part: str = "h"  # "h": Y_h; "c": the LSTM cell state Y_c (a model output only)


@dataclass(frozen=True, eq=False)
class _Pick:
    """A link of a chain: final states of the recurrent node before it, ``dirs`` (ONNX direction indices,
    in order); :meth:`_Converter.build` makes it a ``select="final"`` piece once it knows how that node runs."""

    dirs: tuple[int, ...]
    where: str


@dataclass(eq=False)
class _Rnn:
    """One ONNX recurrent node (weights already in the spec's canonical layout, per ONNX direction)."""

    name: str
    kind: str
    direction: str  # ONNX: forward | reverse | bidirectional
    input_size: int
    units: int
    weights: list[_DirWeights]  # [(w_ih, w_hh, b_ih, b_hh)] per ONNX direction
    activation: Optional[str]  # None (both): gate_acts holds the functions
    recurrent_activation: Optional[str]
    reset_after: bool
    lengths: Optional[str]
    where: str
    int8: Optional[list[_Int8Dir]] = None  # DynamicQuantizeLSTM kept as int8: [(q_ih, s_ih, q_hh, s_hh)] per direction
    # options: the node's functions per ONNX direction as [name, alpha, beta] (RecurrentSpec.gate_activations:
    # used when activation / recurrent_activation, then None, cannot express them); clip; input_forget;
    # peepholes [3, H] (spec order i, f, o), default initial states h0 / c0 [H], per ONNX direction (or None)
    gate_acts: Optional[list[list[list[Any]]]] = None
    clip: Optional[float] = None
    input_forget: bool = False
    peephole: Optional[list[npt.NDArray[np.float32]]] = None
    h0: Optional[list[npt.NDArray[np.float32]]] = None
    c0: Optional[list[npt.NDArray[np.float32]]] = None
    # ((graph input, "h" | "c"), ...): initial_h / initial_c fed by graph inputs
    state_inputs: tuple[tuple[str, str], ...] = ()
    layout: int = 0


# a shape entry: a size, or a symbolic axis label ("B", "T", "?input:axis"...)
_Dim = Union[int, str]
# one link of a chain of layers: a fastrnn piece, an ONNX recurrent node or a pick of its final states
# (both built at the end)
_Link = Union[Piece, _Rnn, _Pick]
_Chain = tuple[_Link, ...]
# an abstract value of the symbolic evaluator (None in a node's inputs: an omitted optional input)
_Value = Union[_Bad, _Unusable, _Const, _Fill, _Shape, _IntInput, _IdsExpr, _Data, _DirPart, _Final]
_Ins = list[Optional[_Value]]  # a node's inputs, and its outputs
_Attrs = dict[str, Any]  # a node's attributes (onnx.helper.get_attribute_value's values)
_F32 = npt.NDArray[np.float32]
_DirWeights = tuple[_F32, _F32, _F32, _F32]  # (w_ih, w_hh, b_ih, b_hh), the spec's layout
_Int8Dir = tuple[npt.NDArray[np.int8], _F32, npt.NDArray[np.int8], _F32]  # (q_ih, s_ih, q_hh, s_hh)
_Int8Rows = tuple[npt.NDArray[np.int16], _F32, npt.NDArray[np.bool_]]  # (q - zero_point, scale, exact) per row
_V = TypeVar("_V")


def _all_of(vals: Sequence[Optional[_Value]], cls: type[_V]) -> Optional[list[_V]]:
    """``vals`` when every one is a ``cls``, else None."""
    out = [v for v in vals if isinstance(v, cls)]
    return out if len(out) == len(vals) else None


# --------------------------------------------------------------------------- protobuf pre-scan
class _WireError(Exception):
    """Malformed protobuf bytes met by the pre-scan (the parser then says precisely what is wrong)."""


def _varint(b: memoryview, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        if i >= len(b) or s > 63:
            raise _WireError("truncated varint")
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _fields(b: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each top-level field of a message."""
    i = start
    while i < end:
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            _, j = _varint(b, i)
            yield f, wt, i, j
            i = j
        elif wt == 1:
            yield f, wt, i, i + 8
            i += 8
        elif wt == 2:
            n, i = _varint(b, i)
            yield f, wt, i, i + n
            i += n
        elif wt == 5:
            yield f, wt, i, i + 4
            i += 4
        else:
            raise _WireError(f"wire type {wt}")
        if i > end:
            raise _WireError("field past the end")


def _prescan(data: bytes, budget: LoadBudget) -> None:
    """Bound the model before the protobuf is parsed.  Counts the main graph's nodes, initializers,
    inputs, outputs and value infos (a 1e6-node graph is refused in milliseconds instead of costing
    hundreds of MiB to parse); refuses a node over :data:`MAX_NODE_BYTES` (not counting a ``Constant``'s
    tensor data); and charges ``budget`` what parsing may cost: tensor data (initializers, ``Constant``
    values) once, every other byte of the graph, its functions and training infos :data:`PARSE_COST`
    times (protobuf makes one object per repeated entry)."""
    b = memoryview(data)
    left = [_SCAN_FIELD_LIMIT]  # fields the per-message walks may still read (then: charged in full)
    try:
        for f, wt, s, e in _fields(b, 0, len(b)):
            if f == 7 and wt == 2:
                counts = {1: 0, 5: 0, 11: 0, 12: 0, 13: 0}  # node, initializer, input, output, value_info
                fields = 0
                for gf, gwt, gs, ge in _fields(b, s, e):
                    fields += 1
                    budget.items(fields, "ONNX graph fields", _GRAPH_FIELD_LIMIT)
                    if gwt != 2:
                        continue
                    if gf in counts:
                        counts[gf] += 1
                        if counts[gf] > MAX_NODES:
                            break
                    if gf == 1:
                        _scan_node(data, b, gs, ge, counts[1] - 1, budget, left)
                    elif gf == 5:
                        d = _tensor_data(b, gs, ge, left)
                        budget.charge(PARSE_COST * (ge - gs - d) + d, f"parsing ONNX initializer #{counts[5] - 1}")
                    elif gf not in (2, 10):  # name, doc_string: one string each
                        budget.charge(PARSE_COST * (ge - gs), f"parsing ONNX graph field {gf}")
                for gf, what in ((1, "ONNX graph nodes"), (5, "ONNX initializers"), (11, "ONNX graph inputs"),
                                 (12, "ONNX graph outputs"), (13, "ONNX value infos")):
                    budget.items(counts[gf], what, MAX_NODES)
            elif wt == 2 and f in (20, 25):  # training_info, functions (never read: parsed all the same)
                budget.charge(PARSE_COST * (e - s), "parsing ONNX " + ("training info" if f == 20 else "functions"))
    except _WireError:
        pass  # malformed: the protobuf parser says precisely what is wrong


def _scan_node(data: bytes, b: memoryview, s: int, e: int, k: int, budget: LoadBudget, left: list[int]) -> None:
    """One NodeProto (bytes ``s:e``, node ``k`` of the graph): refuse it when over MAX_NODE_BYTES (not
    counting a Constant's tensor data), else charge what its parse may cost."""
    tensor = 0
    if data.find(_CONSTANT_OP, s, e) >= 0:  # maybe a Constant (walked only then: nodes may be many)
        name, op, domain, attrs = _node_fields(b, s, e, left)
        if op == "Constant" and domain in ("", "ai.onnx"):
            tensor = sum(_value_data(b, fs, fe, left) for fs, fe in attrs)
    size = e - s - tensor
    cost = PARSE_COST * size + tensor
    what = "parsing ONNX nodes"
    if size > MAX_NODE_BYTES or budget.spent + cost > budget.limit:  # refused: name the node (a short walk)
        name, op, _, _ = _node_fields(b, s, e, [_SCAN_FIELDS])
        what = "ONNX " + (f"node {name!r}" if name else f"node #{k}") + (f" ({op})" if op else "")
        if size > MAX_NODE_BYTES:
            raise ModelFormatError(
                f"{budget.origin}: {what} is {e - s:,} bytes, more than fastrnn reads for one node (at most "
                f"{MAX_NODE_BYTES:,}, but for a Constant's tensor data): a corrupt or hostile file")
        what = "parsing " + what
    budget.charge(cost, what)


def _node_fields(b: memoryview, s: int, e: int,
                 left: list[int]) -> tuple[Optional[str], Optional[str], str, list[tuple[int, int]]]:
    """(name, op_type, domain, [attribute spans]) from a node's first _SCAN_FIELDS fields."""
    name: Optional[str] = None
    op: Optional[str] = None
    domain = ""
    attrs: list[tuple[int, int]] = []
    for n, (f, wt, fs, fe) in enumerate(_fields(b, s, e)):
        left[0] -= 1
        if n >= _SCAN_FIELDS or left[0] < 0:
            return name, None, domain, []  # more fields than a Constant has: not one
        if wt == 2 and f in (3, 4, 7):  # name, op_type, domain
            v = bytes(b[fs:min(fe, fs + 200)]).decode("utf-8", "replace")
            name, op, domain = (v, op, domain) if f == 3 else (name, v, domain) if f == 4 else (name, op, v)
        elif wt == 2 and f == 5:
            attrs.append((fs, fe))
    return name, op, domain, attrs


def _value_data(b: memoryview, s: int, e: int, left: list[int]) -> int:
    """The tensor data bytes of a ``value`` AttributeProto (bytes ``s:e``); 0 for anything else."""
    name: Optional[bytes] = None
    t: Optional[tuple[int, int]] = None
    for n, (f, wt, fs, fe) in enumerate(_fields(b, s, e)):
        left[0] -= 1
        if n >= _SCAN_FIELDS or left[0] < 0:
            return 0
        if wt == 2 and f == 1:
            name = bytes(b[fs:fe])
        elif wt == 2 and f == 5:
            t = (fs, fe)
    return _tensor_data(b, *t, left) if name == b"value" and t is not None else 0


def _tensor_data(b: memoryview, s: int, e: int, left: list[int]) -> int:
    """The bytes of raw_data / float_data / double_data of a TensorProto (bytes ``s:e``): what parsing
    copies once.  0 for a tensor of more than _SCAN_TENSOR_FIELDS fields (strings, unpacked values:
    charged in full) or once the pre-scan's walks have read _SCAN_FIELD_LIMIT fields."""
    data = 0
    for n, (f, wt, fs, fe) in enumerate(_fields(b, s, e)):
        left[0] -= 1
        if n >= _SCAN_TENSOR_FIELDS or left[0] < 0:
            return 0
        if wt == 2 and f in (4, 9, 10):  # float_data (packed), raw_data, double_data (packed)
            data += fe - fs
    return data


# --------------------------------------------------------------------------- tensors
def _np_dtype(onnx: ModuleType, dt: int) -> Union[type[np.generic], str, None]:
    T = onnx.TensorProto
    table = {T.FLOAT: np.float32, T.DOUBLE: np.float64, T.FLOAT16: np.float16, T.INT8: np.int8, T.UINT8: np.uint8,
             T.INT16: np.int16, T.UINT16: np.uint16, T.INT32: np.int32, T.INT64: np.int64, T.UINT32: np.uint32,
             T.UINT64: np.uint64, T.BOOL: np.bool_}
    if dt == T.BFLOAT16:
        return "bfloat16"
    return table.get(dt)


class _Tensors:
    """Materialises TensorProtos (initializers, Constant values) against the load budget."""

    def __init__(self, onnx: ModuleType, budget: LoadBudget, base_dir: Optional[str], origin: str) -> None:
        self.onnx, self.budget, self.base_dir, self.origin = onnx, budget, base_dir, origin

    def array(self, t: TensorProto, what: str) -> npt.NDArray[Any]:
        onnx = self.onnx
        dims = [int(d) for d in t.dims]
        if len(dims) > MAX_RANK or any(d < 0 for d in dims):
            raise _Malformed(f"{what}: bad dimensions {dims[:MAX_RANK + 1]}")
        n = math.prod(dims)
        dt = _np_dtype(onnx, t.data_type)
        if dt is None:
            raise _Refuse(f"{what}: tensor data type {onnx.TensorProto.DataType.Name(t.data_type)} is not supported")
        item = 2 if dt == "bfloat16" else np.dtype(dt).itemsize
        if t.HasField("segment"):
            raise _Refuse(f"{what}: segmented tensors are not supported")
        self.budget.charge(n * max(item, 4), f"{what} ({'x'.join(map(str, dims)) or 'scalar'})")
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raw = self._external(t, n * item, what)
        elif t.HasField("raw_data"):
            raw = t.raw_data
        else:
            raw = None
        if raw is not None:
            if len(raw) != n * item:
                raise _Malformed(f"{what}: {len(raw)} bytes of data for {n} elements of {item} bytes")
            if dt == "bfloat16":
                return from_bf16(np.frombuffer(raw, dtype="<u2")).reshape(dims)
            return np.frombuffer(raw, dtype=np.dtype(dt).newbyteorder("<")).astype(dt).reshape(dims)
        try:
            from onnx import numpy_helper

            a = numpy_helper.to_array(t)
        except Exception as e:  # noqa: BLE001 - the typed fields disagree with dims
            raise _Malformed(f"{what}: cannot read the tensor data ({type(e).__name__}: {e})") from None
        if a.shape != tuple(dims):
            raise _Malformed(f"{what}: data of shape {a.shape} for dims {dims}")
        if a.dtype.kind not in "fiub":
            raise _Refuse(f"{what}: tensor data type {a.dtype} is not supported")
        return a

    def _external(self, t: TensorProto, nbytes: int, what: str) -> bytes:
        if self.base_dir is None:
            raise _Refuse(f"{what}: external data needs the model's file (load the .onnx file by its path)")
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        base = os.path.realpath(self.base_dir)
        if not loc or os.path.isabs(loc) or os.path.splitdrive(loc)[0] or ".." in loc.replace("\\", "/").split("/"):
            raise _Refuse(f"{what}: external data location {loc!r:.200} is not a plain relative path inside the "
                          f"model's directory; refused")
        full = os.path.realpath(os.path.join(base, loc))
        if not full.startswith(base + os.sep) or not os.path.isfile(full):
            raise _Refuse(f"{what}: external data location {loc!r:.200} is not a regular file inside the model's "
                          f"directory {base}; refused")
        try:
            off = int(info.get("offset", "0") or 0)
            length = int(info["length"]) if info.get("length") else nbytes
        except ValueError:
            raise _Malformed(f"{what}: external data offset/length are not integers") from None
        size = os.stat(full).st_size
        if length != nbytes or off < 0 or off + nbytes > size:
            raise _Malformed(f"{what}: external data {loc!r:.200} offset {off} length {length} does not hold the "
                             f"{nbytes} bytes of the tensor (file size {size})")
        with open(full, "rb") as f:
            f.seek(off)
            return f.read(nbytes)


def _external_size(onnx: ModuleType, graph: GraphProto, base_dir: Optional[str]) -> int:
    """Real bytes on disk of the distinct regular files inside ``base_dir`` that initializers name as
    external data (what the load budget may add to the model file's own size)."""
    if base_dir is None:
        return 0
    base = os.path.realpath(base_dir)
    seen: set[str] = set()
    total = 0
    for t in graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        if not loc or os.path.isabs(loc):
            continue
        full = os.path.realpath(os.path.join(base, loc))
        if full in seen or not full.startswith(base + os.sep) or not os.path.isfile(full):
            continue
        seen.add(full)
        total += os.stat(full).st_size
    return total


# --------------------------------------------------------------------------- the converter
def _whole(ks: Union[list[int], str], size: _Dim) -> bool:
    """Whether a Slice's selection ``ks`` of an axis (the indices kept, or "last") keeps all of it."""
    return isinstance(ks, list) and isinstance(size, int) and ks == list(range(size))


def _int_list(v: Optional[_Value], what: str) -> list[int]:
    if isinstance(v, _Const) and v.arr.dtype.kind in "iu" and v.arr.ndim <= 1:
        return [int(x) for x in np.atleast_1d(v.arr)]
    raise _Refuse(f"{what} must be a constant integer list")


def _uniform(arr: npt.NDArray[Any]) -> Optional[float]:
    """The single value of an array whose elements are all equal, else None."""
    if arr.size == 0:
        return None
    f = arr.reshape(-1)
    return float(f[0]) if np.all(f == f[0]) else None


class _Converter:
    def __init__(self, onnx: ModuleType, model: ModelProto, origin: str, budget: LoadBudget, base_dir: Optional[str],
                 output: Optional[str], weights: Optional[str] = None) -> None:
        self.onnx, self.model, self.origin, self.budget = onnx, model, origin, budget
        self.keep_int8 = weights == "int8"  # DynamicQuantizeLSTM keeps its int8 weights
        self.tensors = _Tensors(onnx, budget, base_dir, origin)
        self.output = output
        self.bind: dict[str, str] = {}  # unbound input axis label -> "B" | "T"
        self.known: dict[str, int] = {}  # input axis label -> declared int size
        self.problems: list[str] = []
        self.malformed = False
        self.name = ""  # the node being converted
        self.opset = 0
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                self.opset = int(o.version)

    # ---- labels
    def lab(self, l: str) -> str:
        return self.bind.get(l, l)

    def size(self, v: Union[_Data, _Final], l: str) -> _Dim:
        l = self.lab(l)
        if l == "1":
            return 1
        if l == "D":
            return 2
        if l == "F":
            return v.feat
        if l == "S" and isinstance(v, _Final):  # (data never has an S axis)
            return len(v.entries)
        return l  # symbolic

    def same(self, a: _Dim, b: _Dim) -> bool:
        if isinstance(a, str):
            a = self.lab(a)
        if isinstance(b, str):
            b = self.lab(b)
        if a == b:
            return True
        if isinstance(a, str) and isinstance(b, int):
            return self.known_size(a) == b
        if isinstance(b, str) and isinstance(a, int):
            return self.known_size(b) == a
        return False

    def known_size(self, label: str) -> Optional[int]:
        """The declared (fixed) size of a batch / time / input axis label, else None."""
        return self.known.get(label if label.startswith("?") else self.inv(label))

    def bind_axes(self, axes: Sequence[str], want: Sequence[str], what: str) -> None:
        for l, w in zip(axes, want):
            r = self.lab(l)
            if r == w:
                continue
            if r.startswith("?") and w in ("B", "T") and not any(
                    v == w and k.rsplit(":", 1)[0] == r.rsplit(":", 1)[0] for k, v in self.bind.items()):
                self.bind[r] = w
                continue
            names = {"B": "batch", "T": "time", "F": "feature", "D": "direction", "1": "size-one"}
            raise _Refuse(f"{what}: expects ({', '.join(names[x] for x in want)}) axes but gets "
                          f"({', '.join(names.get(self.lab(x), 'input axis ' + x[1:]) for x in axes)})")

    # ---- entry
    def run(self) -> ModelSpec:
        onnx, g = self.onnx, self.model.graph
        self.budget.items(len(g.node), "ONNX graph nodes", MAX_NODES)
        self.budget.items(len(g.initializer), "ONNX initializers", MAX_NODES)
        if not any(o.domain in ("", "ai.onnx") for o in self.model.opset_import) and len(g.node):
            raise ModelFormatError(f"{self.origin}: the model imports no ai.onnx opset")
        inits = {t.name: t for t in g.initializer}
        outs = [o.name for o in g.output]
        if not outs:
            raise ModelFormatError(f"{self.origin}: the ONNX graph has no output")
        if self.output is not None:
            if self.output not in outs:
                raise UnsupportedLayerError(f"{self.origin}: output={self.output!r} is not a graph output "
                                            f"(outputs: {', '.join(map(repr, outs[:20]))})")
            wanted = [self.output]
        else:
            wanted = list(dict.fromkeys(outs))
        out = wanted[0]
        producer: dict[str, int] = {}
        for k, n in enumerate(g.node):
            self.budget.items(len(n.input) + len(n.output) + len(n.attribute),
                              f"{self.where(n, k)}: inputs, outputs and attributes", MAX_NODE_ENTRIES)
            for o in n.output:
                if o:
                    producer[o] = k
        live = [False] * len(g.node)
        stack = list(wanted)
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen or name not in producer:
                continue
            seen.add(name)
            k = producer[name]
            if not live[k]:
                live[k] = True
                stack.extend(i for i in g.node[k].input if i)
        vals: dict[str, Optional[_Value]] = {}
        for vi in g.input:
            if vi.name in inits:
                continue
            vals[vi.name] = self.graph_input(vi)
        for k, n in enumerate(g.node):
            if not live[k]:
                continue
            self.name = n.name or f"{n.op_type}_{k}"
            where = self.where(n, k)
            if not self.known_op(n):
                self.problem(where, (_LOOP_REASON if n.op_type in ("Loop", "Scan") else "operator not supported")
                             if n.domain in ("", "ai.onnx") else f"operator domain {n.domain!r} is not supported")
                first = vals.get(n.input[0]) if n.input else None
                keep = n.op_type in _SHAPE_KEEPING and isinstance(first, (_Data, _Final))
                for j, o in enumerate(n.output):  # a shape-keeping op passes its input on: its consumers are analysed
                    if o:
                        vals[o] = first if keep and j == 0 else _BAD
                continue
            ins: _Ins = []
            bad = False
            for i in n.input:
                if not i:
                    ins.append(None)
                    continue
                v = vals.get(i)
                if v is None and i in inits:
                    v = vals[i] = self.initializer(inits[i])
                if v is None:
                    self.problem(where, f"input {i!r} is not defined before the node", malformed=True)
                    bad = True
                    break
                if isinstance(v, _Unusable):
                    self.problem(where, f"input {i!r}: {v.reason}")
                    bad = True
                    break
                if v is _BAD:
                    bad = True
                ins.append(v)
            res: Optional[_Ins] = None
            if not bad:
                try:
                    res = self.node(n, ins, where)
                except _Refuse as e:
                    self.problem(where, str(e.args[0]))
                    if e.args[1:] and e.args[1] is not None:
                        res = e.args[1]  # the outputs the node would have: analyse its consumers too
                    elif n.op_type in _SHAPE_KEEPING and ins and isinstance(ins[0], (_Data, _Final)):
                        res = [ins[0]] + [_BAD] * (len(n.output) - 1)
                except _Malformed as e:
                    self.problem(where, str(e), malformed=True)
            if res is None:
                res = [_BAD] * len(n.output)
            for o, v in zip(n.output, res):
                if o:
                    vals[o] = v
        results: list[tuple[str, Optional[_Value]]] = []
        for out in wanted:
            if out not in vals and out in inits:
                vals[out] = self.initializer(inits[out])
            result = vals.get(out)
            results.append((out, result))
            if not self.problems:
                if result is None:
                    raise ModelFormatError(f"{self.origin}: graph output {out!r} is not computed by any node")
                if isinstance(result, _Unusable):
                    self.problem(f"graph output {out!r}", result.reason)
                elif not isinstance(result, (_Data, _Final)) or (isinstance(result, _Data) and not result.chain):
                    self.problem(f"graph output {out!r}", "does not depend on the model input through any layer "
                                                          "fastrnn runs (a constant or the input itself)")
        if self.problems:
            self.raise_problems()
        try:
            if len(results) > 1:
                return self.finish_many(results)
            return self.finish(result, out)
        except _Refuse as e:
            self.problem(f"graph output {out!r}" if len(results) == 1 else "graph outputs", str(e))
            self.raise_problems()

    @staticmethod
    def where(n: NodeProto, k: int) -> str:
        return f"node {n.name or f'#{k}'!r} ({(n.domain + '.') if n.domain not in ('', 'ai.onnx') else ''}{n.op_type})"

    def problem(self, where: str, reason: str, malformed: bool = False) -> None:
        self.problems.append(f"{where}: {reason}")
        self.malformed |= malformed

    def raise_problems(self) -> NoReturn:
        p = self.problems
        shown = p[:MAX_LISTED] + ([f"... and {len(p) - MAX_LISTED} more"] if len(p) > MAX_LISTED else [])
        cls = ModelFormatError if self.malformed else UnsupportedLayerError
        raise cls(f"{self.origin}: cannot convert the ONNX graph: {len(p)} unsupported node(s):\n  - " +
                  "\n  - ".join(shown))

    def graph_input(self, vi: ValueInfoProto) -> _Value:
        onnx = self.onnx
        tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if tt is None:
            return _Unusable(f"graph input {vi.name!r} is not a tensor")
        dims = list(tt.shape.dim) if tt.HasField("shape") else None
        if dims is None:
            return _Unusable(f"graph input {vi.name!r} has no declared rank")
        if len(dims) > MAX_RANK:
            return _Unusable(f"graph input {vi.name!r}: rank {len(dims)}")
        labels = tuple(f"?{vi.name}:{k}" for k in range(len(dims)))
        for l, d in zip(labels, dims):
            if d.HasField("dim_value"):
                self.known[l] = int(d.dim_value)
        if tt.elem_type in _INT_TYPES:
            return _IntInput(vi.name, labels)
        if tt.elem_type not in _FLOAT_TYPES:
            return _Unusable(f"graph input {vi.name!r} has element type "
                             f"{onnx.TensorProto.DataType.Name(tt.elem_type)}")
        if len(dims) < 2:
            return _Unusable(f"graph input {vi.name!r} has rank {len(dims)}: expected (batch, [time,] features)")
        if not dims[-1].HasField("dim_value") or dims[-1].dim_value < 1:
            return _Unusable(f"graph input {vi.name!r}: the feature (last) axis has no fixed size")
        return _Data((), labels[:-1] + ("F",), int(dims[-1].dim_value), vi.name)

    def initializer(self, t: TensorProto) -> _Value:
        try:
            return _Const(self.tensors.array(t, f"initializer {t.name!r}"))
        except _Refuse as e:
            return _Unusable(str(e))
        except _Malformed as e:
            self.problem(f"initializer {t.name!r}", str(e), malformed=True)
            return _BAD

    # ---- dispatch
    def known_op(self, n: NodeProto) -> bool:
        if n.domain == "com.microsoft":
            return n.op_type == "DynamicQuantizeLSTM"
        return n.domain in ("", "ai.onnx") and (n.op_type in ("LSTM", "GRU", "RNN") or n.op_type in _ELEMENTWISE or
                                                hasattr(self, f"op_{n.op_type}"))

    def node(self, n: NodeProto, ins: _Ins, where: str) -> _Ins:
        op, dom = n.op_type, n.domain
        a = self.attributes(n, where)
        if dom == "com.microsoft" and op == "DynamicQuantizeLSTM":
            return self.recurrent(n, ins, a, where, quantized=True)
        if op in ("LSTM", "GRU", "RNN"):
            return self.recurrent(n, ins, a, where)
        if op in _ELEMENTWISE:
            return [self.activation(ins[0], _ELEMENTWISE[op](self, a, ins), where)]
        convert: Callable[[NodeProto, _Ins, _Attrs, str], _Ins] = getattr(self, f"op_{op}")
        return convert(n, ins, a, where)

    def attributes(self, n: NodeProto, where: str) -> _Attrs:
        """The node's attributes as Python values, each checked against the op's schema (an attribute
        the op does not define is refused, as onnxruntime does) and charged to the budget first."""
        names, min_in, max_in, max_out = _schema(self.onnx, n.domain, n.op_type, self.opset)
        if not min_in <= len(n.input) <= max_in:
            raise _Malformed(f"{len(n.input)} input(s): {n.op_type} takes "
                             f"{min_in if min_in == max_in else f'{min_in} to {max_in}'}")
        if len(n.output) > max_out:
            raise _Malformed(f"{len(n.output)} output(s): {n.op_type} has at most {max_out}")
        a: _Attrs = {}
        for x in n.attribute:
            if x.name not in names:
                raise _Malformed(f"attribute {x.name[:100]!r} is not defined for {n.op_type} (opset {self.opset}; "
                                 f"it defines {', '.join(sorted(names)) or 'none'})")
            entries = (len(x.ints) + len(x.floats) + len(x.strings) + len(x.tensors) + len(x.graphs) +
                       len(x.sparse_tensors) + len(x.type_protos))
            self.budget.items(entries, f"{where}: entries of attribute {x.name!r}", MAX_NODE_ENTRIES)
            self.budget.charge(_ATTR_ENTRY_COST * (entries + 1) + len(x.s), f"{where}: attribute {x.name!r}")
            a[x.name] = self.onnx.helper.get_attribute_value(x)
        return a

    def as_data(self, v: Optional[_Value], what: str = "input") -> _Data:
        if isinstance(v, _Final):
            return self.final_to_data(v)
        if isinstance(v, _Data):
            return v
        if isinstance(v, _DirPart):
            raise _Refuse(f"{what} is one direction of a bidirectional sequence output: only the concatenation of "
                          "both directions (forward first, along the features) is supported")
        raise _Refuse(f"{what} must be data computed from the model input")

    def final_to_data(self, v: _Final) -> _Data:
        if v.part == "c":
            raise _Refuse("uses the LSTM cell state Y_c as the input of a layer (Y_c can only be a graph output)")
        chain = v.entries[0][0]
        if any(c is not chain for c, _ in v.entries):
            raise _Refuse("combines final states of several recurrent nodes (only the last recurrent layer's final "
                          "state can be selected)")
        dirs = tuple(d for _, d in v.entries)
        if len(set(dirs)) != len(dirs):
            raise _Refuse(f"repeats a direction of the final state ({dirs})")
        sel = _Pick(dirs, chain[-1].where)
        if "S" in v.axes:
            if len(dirs) > 2:
                raise _Refuse("uses the stacked final states of several layers")
            axes = tuple(("D" if len(dirs) == 2 else "1") if l == "S" else l for l in v.axes)
            return _Data(chain + (sel,), axes, v.feat, v.src)
        return _Data(chain + (sel,), v.axes, v.feat * len(dirs), v.src)

    # ---- recurrent nodes
    def recurrent(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str, quantized: bool = False) -> _Ins:
        op = "LSTM" if quantized else n.op_type
        kind = _KIND[op]
        G = _GATES[kind]
        ins = ins + [None] * (12 - len(ins))
        problems: list[str] = []
        H = int(a.get("hidden_size", 0) or 0)
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        if direction not in ("forward", "reverse", "bidirectional"):
            raise _Malformed(f"direction {direction!r}")
        nd = 2 if direction == "bidirectional" else 1
        layout = int(a.get("layout", 0))
        if layout not in (0, 1):
            raise _Malformed(f"layout {layout}")
        X = self.as_data(ins[0], "X")
        if X.ids or len(X.axes) != 3 or "F" not in X.axes or "D" in X.axes:
            raise _Refuse("X must be a (time, batch, features) tensor computed from the model input")
        self.bind_axes(X.axes, ("T", "B", "F") if layout == 0 else ("B", "T", "F"), "X")
        I = X.feat

        def const(i: int, name: str) -> npt.NDArray[Any]:
            v = ins[i]
            if isinstance(v, _Const):
                return v.arr
            if isinstance(v, (_Data, _IntInput, _Final)):
                raise _Refuse(f"input {name} must be a constant (an initializer), not computed from graph inputs")
            raise _Refuse(f"input {name} must be a constant")

        qW: Optional[_Int8Rows] = None
        qR: Optional[_Int8Rows] = None
        if quantized:
            wq = const(1, "W"), const(8, "W_scale"), const(9, "W_zero_point")
            rq = const(2, "R"), const(10, "R_scale"), const(11, "R_zero_point")
            W = self.dequantize(*wq, "W").transpose(0, 2, 1)
            R = self.dequantize(*rq, "R").transpose(0, 2, 1)
            if self.keep_int8:
                qW, qR = self.int8_rows(*wq), self.int8_rows(*rq)
        else:
            W, R = const(1, "W"), const(2, "R")
        if not H:
            H = int(R.shape[-1]) if R.ndim == 3 else 0
        if W.shape != (nd, G * H, I) or R.shape != (nd, G * H, H) or H < 1:
            raise _Malformed(f"W {W.shape} / R {R.shape} do not match hidden_size={H}, {nd} direction(s), "
                             f"{G} gate(s) and input size {I} (expected {(nd, G * H, I)} / {(nd, G * H, H)})")
        B = const(3, "B") if ins[3] is not None else np.zeros((nd, 2 * G * H), np.float32)
        if B.shape != (nd, 2 * G * H):
            raise _Malformed(f"B {B.shape}: expected {(nd, 2 * G * H)}")
        lengths: Optional[str] = None
        sl = ins[4]
        if sl is not None:
            if isinstance(sl, _IntInput) and len(sl.axes) == 1:
                self.bind_axes(sl.axes, ("B",), "sequence_lens")
                lengths = sl.name
            else:
                problems.append("sequence_lens must be a 1-D integer graph input (fastrnn takes it as "
                                "predict(lengths=...)); a constant or computed sequence_lens is not supported")
        state_names = ["initial_h"] + (["initial_c"] if kind == "lstm" else [])
        # name -> [per ONNX direction: [H] float32] of a constant non-zero initial state
        states: dict[str, list[_F32]] = {}
        state_inputs: list[tuple[str, str]] = []  # (graph input name, "h" | "c"): predict's initial_state of this layer
        for i, name in zip((5, 6), state_names):
            v = ins[i]
            if v is None:
                continue
            if isinstance(v, _Fill) or (isinstance(v, _Const) and v.arr.dtype.kind == "f"):
                self.check_state_shape(v.shape if isinstance(v, _Fill) else v.arr.shape, nd, H, layout, name)
                if isinstance(v, _Fill):
                    if v.value != 0.0:
                        states[name] = [np.full(H, v.value, np.float32)] * nd
                    continue
                arr = v.arr.astype(np.float32) if layout == 0 else v.arr.astype(np.float32).transpose(1, 0, 2)
                if not np.any(arr):
                    continue
                if np.any(arr != arr[:, :1]):
                    problems.append(f"{name} is a constant whose batch rows differ: fastrnn's default initial state "
                                    "is one row per direction (pass the rows as predict(initial_state=...))")
                    continue
                states[name] = [arr[d, 0].copy() for d in range(nd)]
                continue
            if isinstance(v, _Data) and not v.chain and not v.ids:
                try:
                    self.state_input(v, nd, H, layout, name)
                    state_inputs.append((v.src, name[-1]))
                except _Refuse as e:
                    problems.append(str(e))
            else:
                problems.append(f"{name} is computed from the graph's inputs: only constant initial states are "
                                "supported")
        peephole: Optional[list[_F32]] = None
        if kind == "lstm" and ins[7] is not None:
            v = ins[7]
            if isinstance(v, _Fill) and v.value == 0.0:
                pass
            elif isinstance(v, (_Const, _Fill)):
                P = np.full((nd, 3 * H), v.value, np.float32) if isinstance(v, _Fill) else v.arr
                if isinstance(v, _Fill) and tuple(v.shape) != (nd, 3 * H) or P.shape != (nd, 3 * H):
                    raise _Malformed(f"P {tuple(v.shape) if isinstance(v, _Fill) else P.shape}: expected {(nd, 3 * H)}")
                if np.any(P):  # ONNX's order i, o, f -> the spec's i, f, o
                    peephole = [P[d].astype(np.float32).reshape(3, H)[[0, 2, 1]] for d in range(nd)]
            else:
                problems.append("peepholes P must be a constant (an initializer)")
        clip: Optional[float] = None
        if "clip" in a:
            clip = float(a["clip"])
            if not math.isfinite(clip) or clip < 0:
                raise _Malformed(f"clip={a['clip']}: expected a finite threshold >= 0")
        input_forget = bool(int(a.get("input_forget", 0)))
        if input_forget and kind != "lstm":
            raise _Malformed("input_forget is an LSTM attribute")
        reset_after = True
        if kind == "gru":
            reset_after = bool(int(a.get("linear_before_reset", 0)))
        act, ract, gate_acts = self.rnn_activations(kind, a, nd, problems)
        order = list(_GATE_ORDER[kind])
        weights: list[_DirWeights] = []
        for d in range(nd):
            def gates(m: npt.NDArray[Any]) -> _F32:
                return np.concatenate([m[g * H:(g + 1) * H] for g in order], axis=0).astype(np.float32)

            wb, rb = B[d, :G * H], B[d, G * H:]
            w_ih, w_hh, b_ih, b_hh = gates(W[d]), gates(R[d]), gates(wb), gates(rb)
            if kind == "gru" and not reset_after:
                b_ih, b_hh = b_ih + b_hh, np.zeros_like(b_hh)  # r*(R h) + Rb_h: Rb_h lies outside the product
            weights.append((w_ih, w_hh, b_ih, b_hh))
        int8: Optional[list[_Int8Dir]] = None
        if qW is not None and qR is not None:
            # the exact rows of the source, in the spec's gate order
            def rows(q: Sequence[npt.NDArray[Any]], m: _F32) -> tuple[npt.NDArray[np.int8], _F32]:
                v, sc, ok = (np.concatenate([a[g * H:(g + 1) * H] for g in order]) for a in q)
                return _kept_int8(v, sc, ok, m)

            int8 = [rows([a[d] for a in qW], weights[d][0]) + rows([a[d] for a in qR], weights[d][1])
                    for d in range(nd)]
        rnn = _Rnn(self.name, kind, direction, I, H, weights, act, ract, reset_after, lengths, where, int8,
                   state_inputs=tuple(state_inputs), layout=layout, gate_acts=gate_acts, clip=clip,
                   input_forget=input_forget, peephole=peephole, h0=states.get("initial_h"), c0=states.get("initial_c"))
        chain = X.chain + (rnn,)
        y_axes = ("T", "D" if nd == 2 else "1", "B", "F") if layout == 0 else ("B", "T", "D" if nd == 2 else "1", "F")
        s_axes = ("S", "B", "F") if layout == 0 else ("B", "S", "F")
        y = _Data(chain, y_axes, H, X.src)
        yh = _Final(tuple((chain, d) for d in range(nd)), s_axes, H, X.src)
        yc = _Final(tuple((chain, d) for d in range(nd)), s_axes, H, X.src, "c")
        every: _Ins = [y, yh, yc]
        outs = every[:len(n.output)]
        if problems:  # reported; the outputs still let the nodes after this one be analysed
            raise _Refuse("; ".join(problems), outs)
        return outs

    def state_input(self, v: _Data, nd: int, H: int, layout: int, name: str) -> None:
        """A float graph input ``v`` feeding ``initial_h`` / ``initial_c``: ``(directions, batch, H)``
        (``layout=1``: ``(batch, directions, H)``); it becomes this layer's ``predict(initial_state=...)``
        entry (see :func:`initial_state_from_onnx`) and the stream's state."""
        if len(v.axes) != 3 or v.feat != H or self.lab(v.axes[-1]) != "F":
            raise _Refuse(f"{name}: the graph input {v.src!r} must have shape (directions, batch, {H})"
                          f"{' (layout 1: batch first)' if layout else ''}")
        d_axis, b_axis = (v.axes[0], v.axes[1]) if layout == 0 else (v.axes[1], v.axes[0])
        if self.known_size(d_axis) not in (None, nd):
            raise _Refuse(f"{name}: the graph input {v.src!r} has {self.known_size(d_axis)} directions, the node {nd}")
        self.bind_axes((b_axis,), ("B",), name)

    def check_state_shape(self, shape: Sequence[_Dim], nd: int, H: int, layout: int, name: str) -> None:
        want = (nd, "B", H) if layout == 0 else ("B", nd, H)
        ok = len(shape) == 3
        for got, w in zip(shape, want) if ok else ():
            if w == "B":  # the batch size itself, or the input's fixed batch size
                ok &= self.lab(got) == "B" if isinstance(got, str) else self.known_size("B") == got
            else:
                ok &= got == w
        if not ok:
            shown = ", ".join(str(self.lab(x)) if isinstance(x, str) else str(x) for x in list(shape)[:MAX_RANK])
            raise _Malformed(f"{name} has shape ({shown}), expected ({', '.join(map(str, want))})")

    def dequantize(self, q: npt.NDArray[Any], scale: npt.NDArray[Any], zp: npt.NDArray[Any], name: str) -> _F32:
        if q.ndim != 3 or q.dtype not in (np.int8, np.uint8):
            raise _Malformed(f"{name}: expected an int8/uint8 [directions, in, gates] tensor, got {q.dtype} {q.shape}")
        nd, _, cols = q.shape
        if scale.shape not in ((nd,), (nd, cols)) or zp.shape != scale.shape:
            raise _Malformed(f"{name}_scale {scale.shape} / {name}_zero_point {zp.shape}: expected ({nd},) or ({nd}, {cols})")
        self.budget.charge(q.size * 4, f"dequantized {name}")
        s = scale.astype(np.float32).reshape(nd, 1, -1)
        z = zp.astype(np.float32).reshape(nd, 1, -1)
        return (q.astype(np.float32) - z) * s

    def int8_rows(self, q: npt.NDArray[Any], scale: npt.NDArray[Any], zp: npt.NDArray[Any]) -> _Int8Rows:
        """The source's own integers per output row (checked by :meth:`dequantize`), in the spec's row
        layout ``[directions, gates * H, in]``: ``(q - zero_point, scale per row, row is exact)``; a row is
        exact when every ``q - zp`` is in [-127, 127] and its scale is finite and >= 0 (then ``v * scale``
        is what :meth:`dequantize` computed)."""
        nd, _, cols = q.shape
        self.budget.charge(q.size * 3, "int8 weights kept")
        v = (q.astype(np.int16) - zp.astype(np.int16).reshape(nd, 1, -1)).transpose(0, 2, 1)
        s = np.broadcast_to(scale.astype(np.float32).reshape(nd, -1), (nd, cols))
        ok = (np.abs(v) <= 127).all(axis=2) & np.isfinite(s) & (s >= 0)
        return v, s, ok

    def rnn_activations(self, kind: str, a: _Attrs, nd: int, problems: list[str]
                        ) -> tuple[Optional[str], Optional[str], Optional[list[list[list[Any]]]]]:
        names = a.get("activations")
        per = len(_DEFAULT_ACTS[kind])
        if names is None:
            names = _DEFAULT_ACTS[kind] * nd
        names = [x.decode() if isinstance(x, bytes) else str(x) for x in names]
        if len(names) != per * nd:
            raise _Malformed(f"activations: {len(names)} names for {nd} direction(s) of {per} function(s)")
        alphas, betas = list(a.get("activation_alpha", [])), list(a.get("activation_beta", []))
        mapped: list[Optional[str]] = []
        full: list[list[Any]] = []  # per function: [ONNX name, alpha, beta]
        for fn in names:
            key = fn.lower()
            if key not in _RNN_ACT_ARGS:
                problems.append(f"activation {fn!r} is not an ONNX recurrent activation")
                mapped.append(None)
                continue
            ua, ub, da, db = _RNN_ACT_ARGS[key]
            al = alphas.pop(0) if ua and alphas else (da if ua else None)
            be = betas.pop(0) if ub and betas else (db if ub else None)
            if (ua and al is None) or (ub and be is None):
                problems.append(f"activation {fn}: needs activation_alpha{' and activation_beta' if ub else ''}")
                mapped.append(None)
                continue
            full.append([_GATE_FN[key], float(al or 0.0), float(be or 0.0)])
            mapped.append(_rnn_act(key, al, be))
        if len(full) < len(names):  # a problem reported
            return None, None, None
        # fastrnn's own activation names when they say it all (the fused kernels), else gate_activations
        plain = None not in mapped and (nd == 1 or mapped[:per] == mapped[per:]) and (
            kind != "lstm" or mapped[1] == mapped[2])
        per_dir = [full[d * per:(d + 1) * per] for d in range(nd)]
        if not plain:
            return None, None, per_dir
        if kind == "simple_rnn":
            return mapped[0], "sigmoid", per_dir
        return mapped[1], mapped[0], per_dir

    # ---- element-wise activations and softmax
    def activation(self, v: Optional[_Value], act: Optional[str], where: str) -> Optional[_Value]:
        if act is None:
            return v
        d = self.as_data(v)
        if d.ids:
            raise _Refuse("applied to integer ids")
        return _Data(d.chain + (Piece("act", self.name, act=act, where=where),), d.axes, d.feat, d.src)

    def op_Softmax(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str, name: str = "softmax") -> _Ins:
        d = self.as_data(ins[0])
        r = len(d.axes)
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + r if axis < 0 else axis
        if not 0 <= axis < r:
            raise _Malformed(f"axis {a.get('axis')} for rank {r}")
        labels = [self.lab(l) for l in d.axes]
        if "D" in labels:
            raise _Refuse(f"{n.op_type} over features split by direction")
        if labels[axis] != "F" or (self.opset < 13 and any(l != "1" for l in labels[axis + 1:])):
            raise _Refuse(f"{n.op_type}(axis={a.get('axis', 'default')}) is not over the feature axis alone "
                          f"(axes {''.join(labels)}): fastrnn applies {name} over the features")
        return [self.activation(d, name, where)]

    def op_LogSoftmax(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        return self.op_Softmax(n, ins, a, where, "log_softmax")

    def op_LpNormalization(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        # x / ||x||_p over one axis (default -1): p=2 over the features is l2_normalize
        # (x / max(||x||, 1e-12): equal for every row but 0 < ||x|| < 1e-12, where ONNX divides by ||x||;
        # a zero row is 0 in both, as onnxruntime gives).
        if int(a.get("p", 2)) != 2:
            raise _Refuse(f"LpNormalization(p={a.get('p')}): only p=2 (l2_normalize) is supported")
        return self.op_Softmax(n, ins, dict(a, axis=a.get("axis", -1)), where, "l2_normalize")

    # ---- no-ops
    def op_Identity(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        return [ins[0]]

    def op_Dropout(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        if len(ins) > 2 and ins[2] is not None:
            if not (isinstance(ins[2], _Const) and not np.any(ins[2].arr)):
                raise _Refuse("training_mode must be a constant false")
        if int(a.get("is_test", 1)) == 0 and self.opset < 7:
            raise _Refuse("is_test=0 (training mode)")
        return [ins[0], _Unusable("the dropout mask is not a model output")]

    def op_Constant(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        if "value" in a:
            return [_Const(self.tensors.array(a["value"], "value"))]
        for k, dt in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                      ("value_ints", np.int64)):
            if k in a:
                self.budget.charge(8 * len(np.atleast_1d(a[k])), "constant")
                return [_Const(np.asarray(a[k], dtype=dt))]
        raise _Refuse(f"constant kind {', '.join(a) or '(none)'} is not supported")

    def op_Cast(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v, to = ins[0], int(a.get("to", 0))
        dt = _np_dtype(self.onnx, to)
        if isinstance(v, _Const):
            if dt is None or dt == "bfloat16":
                raise _Refuse(f"cast to {to}")
            return [_Const(v.arr.astype(dt))]
        if isinstance(v, _IntInput) and to in _FLOAT_TYPES:
            return [_IdsExpr(v, ("float",))]
        if isinstance(v, _IdsExpr):
            if v.form[0] == "mask" and to in _INT_TYPES | _FLOAT_TYPES:
                return [v]
            raise _Refuse("casts a function of the ids")
        if isinstance(v, (_Shape, _IntInput)):
            if to not in _INT_TYPES:
                raise _Refuse("casts integer data to a non-integer type")
            return [v]
        if isinstance(v, _Fill):
            return [v]
        d = self.as_data(v)
        if d.ids:
            if to not in _INT_TYPES:
                raise _Refuse("casts ids to a non-integer type")
            return [d]
        if to not in (self.onnx.TensorProto.FLOAT, self.onnx.TensorProto.DOUBLE):
            raise _Refuse(f"casts float data to {self.onnx.TensorProto.DataType.Name(to)} (fastrnn computes in float32)")
        return [v]

    # ---- dense layers
    def op_MatMul(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        x, w = ins[0], ins[1]
        if not isinstance(w, _Const):
            raise _Refuse("only data x constant matrix products are supported")
        d = self.as_data(x)
        if w.arr.ndim != 2 or w.arr.dtype.kind != "f":
            raise _Refuse(f"the constant operand must be a float matrix, got {w.arr.dtype} {w.arr.shape}")
        self.check_last_feature(d, "MatMul")
        if w.arr.shape[0] != d.feat:
            raise _Malformed(f"weight {w.arr.shape} takes {w.arr.shape[0]} features, the data has {d.feat}")
        p = Piece("linear", self.name, {"weight": np.ascontiguousarray(w.arr.T, dtype=np.float32)}, where=where)
        return [_Data(d.chain + (p,), d.axes, int(w.arr.shape[1]), d.src)]

    def check_last_feature(self, d: _Data, what: str) -> None:
        labels = [self.lab(l) for l in d.axes]
        if d.ids or not labels or labels[-1] != "F" or "D" in labels:
            raise _Refuse(f"{what} must contract the feature axis of the data, the last one (axes {''.join(labels)})")

    def op_Add(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        x, c = ins
        if isinstance(x, _Const) and not isinstance(c, _Const):
            x, c = c, x
        if isinstance(x, _Const) and isinstance(c, _Const):
            return [self.fold(n.op_type, [x, c])]
        if isinstance(x, (_IntInput, _IdsExpr)) or isinstance(c, (_IntInput, _IdsExpr)):
            return [self.ids_arith(n.op_type, ins)]
        if isinstance(x, _Shape) or isinstance(c, _Shape):
            return [self.shape_arith(n.op_type, ins)]
        if not isinstance(c, _Const):
            raise _Refuse("adds two data tensors (residual connections are not supported)")
        d = self.as_data(x)
        self.check_last_feature(d, "Add")
        b = c.arr
        while b.ndim > 1 and b.shape[0] == 1:
            b = b.reshape(b.shape[1:])
        last = d.chain[-1] if d.chain else None
        if b.ndim > len(d.axes) or b.shape not in ((d.feat,), ()) or not (
                isinstance(last, Piece) and last.tag == "linear" and "bias" not in last.tensors):
            raise _Refuse("adding a constant is only supported as the bias (a vector over the features) right "
                          "after MatMul")
        bias = np.broadcast_to(b.astype(np.float32), (d.feat,)).copy()
        p = Piece("linear", last.name, {"weight": last.tensors["weight"], "bias": bias}, where=last.where)
        return [_Data(d.chain[:-1] + (p,), d.axes, d.feat, d.src)]

    def op_Gemm(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        x, w = ins[0], ins[1]
        c = ins[2] if len(ins) > 2 else None
        if not isinstance(w, _Const) or (c is not None and not isinstance(c, _Const)):
            raise _Refuse("B and C must be constants")
        d = self.as_data(x)
        if len(d.axes) != 2:
            raise _Malformed(f"A has rank {len(d.axes)}")
        axes = d.axes[::-1] if int(a.get("transA", 0)) else d.axes
        self.check_last_feature(_Data(d.chain, axes, d.feat, d.src), "Gemm")
        wm = w.arr if int(a.get("transB", 0)) else w.arr.T
        if wm.ndim != 2 or wm.shape[1] != d.feat:
            raise _Malformed(f"B {w.arr.shape} does not take {d.feat} features")
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        weight = np.ascontiguousarray(wm * np.float32(alpha) if alpha != 1.0 else wm, dtype=np.float32)
        N = weight.shape[0]
        tens = {"weight": weight}
        if c is not None:
            b = c.arr
            while b.ndim > 1 and b.shape[0] == 1:
                b = b.reshape(b.shape[1:])
            if b.shape not in ((N,), (1,), ()):
                raise _Refuse(f"C {c.arr.shape} is not a bias vector over the {N} outputs")
            tens["bias"] = np.broadcast_to(b.astype(np.float32) * np.float32(beta), (N,)).copy()
        return [_Data(d.chain + (Piece("linear", self.name, tens, where=where),), (axes[0], "F"), N, d.src)]

    # ---- gathers: embedding, last step, one final state, shape entries
    def op_Gather(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        data, idx = ins
        axis = int(a.get("axis", 0))
        if isinstance(data, _Const) and isinstance(idx, _IdsExpr) and idx.form == ("wrap", data.arr.shape[0]):
            idx = idx.ids  # where(ids < 0, ids + n, ids) = ids for the ids predict accepts (0 <= id < n)
        if isinstance(data, _Const) and isinstance(idx, _IntInput):
            if axis != 0 or data.arr.ndim != 2 or data.arr.dtype.kind != "f":
                raise _Refuse("an embedding must gather rows (axis 0) of a 2-D float initializer")
            p = Piece("embedding", self.name, {"weight": data.arr.astype(np.float32)}, where=where)
            return [_Data((p,), idx.axes + ("F",), int(data.arr.shape[1]), idx.name)]
        if isinstance(data, _Const) and isinstance(idx, _Const):
            return [self.fold("Gather", [data, idx], axis=axis)]
        if isinstance(data, _Shape):
            ii = idx.arr if isinstance(idx, _Const) and idx.arr.dtype.kind in "iu" else None
            if ii is None or data.scalar or axis != 0:
                raise _Refuse("gathers shape entries with non-constant indices")
            r = len(data.dims)
            try:
                picked = tuple(data.dims[int(k)] for k in ii.reshape(-1))
            except IndexError:
                raise _Malformed(f"index {ii.tolist()} out of range for a shape of {r}") from None
            return [_Shape(picked, scalar=ii.ndim == 0)]
        if not isinstance(idx, _Const) or idx.arr.dtype.kind not in "iu" or idx.arr.size != 1:
            raise _Refuse("only a constant single index is supported")
        k = int(idx.arr.reshape(()))
        keep = idx.arr.ndim == 1
        v = data
        r = len(v.axes) if isinstance(v, (_Data, _Final)) else 0
        if not isinstance(v, (_Data, _Final)):
            raise _Refuse("gathers from an unsupported value")
        axis = axis + r if axis < 0 else axis
        if not 0 <= axis < r:
            raise _Malformed(f"axis {a.get('axis')} for rank {r}")
        lab = self.lab(v.axes[axis])
        if isinstance(v, _Final) and lab == "S":
            e = v.entries
            if not -len(e) <= k < len(e):
                raise _Malformed(f"index {k} out of range for {len(e)} final states")
            axes = v.axes if keep else v.axes[:axis] + v.axes[axis + 1:]
            return [_Final((e[k],), axes, v.feat, v.src, v.part)]
        d = self.as_data(v)
        if lab == "T":
            if k != -1 and not (k >= 0 and self.known_size("T") == k + 1):
                raise _Refuse(f"selects time step {k}: only the last step (index -1) is supported")
            axes = d.axes[:axis] + (("1",) if keep else ()) + d.axes[axis + 1:]
            return [_Data(d.chain + (Piece("select", "last_step", select="last_step", where=where),), axes,
                          d.feat, d.src)]
        if lab == "1" and k in (0, -1):
            return [_Data(d.chain, d.axes if keep else d.axes[:axis] + d.axes[axis + 1:], d.feat, d.src)]
        what = {"D": "one direction of a bidirectional sequence output", "B": "rows of the batch",
                "F": "single features"}.get(lab, f"along axis {axis}")
        if lab.startswith("?"):
            what += f" (axis {lab.rsplit(':', 1)[1]} of input {lab[1:].rsplit(':', 1)[0]!r}: batch or time)"
        raise _Refuse(f"selects {what}: not supported")

    def inv(self, label: str) -> str:
        for k, v in self.bind.items():
            if v == label:
                return k
        return label

    # ---- layout ops
    def op_Transpose(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v = ins[0]
        if isinstance(v, _Const):
            return [self.fold("Transpose", [v], perm=a.get("perm"))]
        if isinstance(v, _Fill):
            perm = a.get("perm") or list(range(len(v.shape)))[::-1]
            self.check_perm(perm, len(v.shape))
            return [_Fill(tuple(v.shape[p] for p in perm), v.value)]
        if isinstance(v, _IntInput):
            return [_IntInput(v.name, self.permuted(v.axes, a))]
        d = self.as_data(v)
        return [_Data(d.chain, self.permuted(d.axes, a), d.feat, d.src, d.ids)]

    def permuted(self, axes: tuple[str, ...], a: _Attrs) -> tuple[str, ...]:
        """``axes`` permuted by Transpose's ``perm`` (default: reversed)."""
        perm = list(a.get("perm") or list(range(len(axes)))[::-1])
        self.check_perm(perm, len(axes))
        return tuple(axes[p] for p in perm)

    @staticmethod
    def check_perm(perm: Sequence[int], r: int) -> None:
        if len(perm) != r or sorted(int(p) for p in perm) != list(range(r)):
            raise _Malformed(f"perm {list(perm)[:MAX_RANK + 1]} for rank {r}")

    def axes_arg(self, ins: _Ins, a: _Attrs, opset_attr: int) -> Optional[list[int]]:
        if self.opset < opset_attr:
            return list(a.get("axes", [])) if "axes" in a else None
        if len(ins) > 1 and ins[1] is not None:
            return _int_list(ins[1], "axes")
        return None

    def op_Squeeze(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v, axes = ins[0], self.axes_arg(ins, a, 13)
        if isinstance(v, _Const):
            return [self.fold("Squeeze", [v], axes=axes)]
        if isinstance(v, _Shape):
            if not v.scalar and len(v.dims) == 1 and axes in (None, [0], [-1]):
                return [_Shape(v.dims, scalar=True)]
            raise _Refuse("squeezes a shape")
        if isinstance(v, _Fill):
            r = len(v.shape)
            ax = self.norm_axes(axes if axes is not None else [i for i, s in enumerate(v.shape) if s == 1], r)
            if any(v.shape[i] != 1 for i in ax):
                raise _Refuse("squeezes an axis whose size is not 1")
            return [_Fill(tuple(s for i, s in enumerate(v.shape) if i not in ax), v.value)]
        if isinstance(v, _Final) and axes is not None:
            r = len(v.axes)
            ax = self.norm_axes(axes, r)
            if all(v.axes[i] == "S" for i in ax) and len(v.entries) == 1 or all(self.lab(v.axes[i]) == "1" for i in ax):
                return [_Final(v.entries, tuple(l for i, l in enumerate(v.axes) if i not in ax), v.feat, v.src, v.part)]
        d = v if isinstance(v, _DirPart) else self.as_data(v)
        r = len(d.axes)
        labels = [self.lab(l) for l in d.axes]
        ax = self.norm_axes(axes, r) if axes is not None else [i for i, l in enumerate(labels) if l == "1"]
        for i in ax:
            if labels[i] != "1":
                raise _Refuse(f"squeezes axis {i} ({labels[i]}), which is not known to have size 1")
        if isinstance(d, _DirPart):
            return [_DirPart(d.data, d.k, tuple(l for i, l in enumerate(d.axes) if i not in ax))]
        return [_Data(d.chain, tuple(l for i, l in enumerate(d.axes) if i not in ax), d.feat, d.src, d.ids)]

    @staticmethod
    def norm_axes(axes: Sequence[int], r: int) -> list[int]:
        out: list[int] = []
        for x in axes:
            x = int(x)
            x = x + r if x < 0 else x
            if not 0 <= x < r or x in out:
                raise _Malformed(f"axes {list(axes)[:MAX_RANK + 1]} for rank {r}")
            out.append(x)
        return out

    def op_Unsqueeze(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v, axes = ins[0], self.axes_arg(ins, a, 13)
        if axes is None:
            raise _Malformed("no axes")
        if isinstance(v, _Const):
            return [self.fold("Unsqueeze", [v], axes=axes)]
        if isinstance(v, _Shape):
            if v.scalar and axes in ([0], [-1]):
                return [_Shape(v.dims)]
            raise _Refuse("unsqueezes a shape")
        if isinstance(v, _Fill):
            shape = list(v.shape)
            for i in sorted(self.norm_axes(axes, len(shape) + len(axes))):
                shape.insert(i, 1)
            return [_Fill(tuple(shape), v.value)]
        if isinstance(v, _Final) and "S" not in v.axes:
            v = self.final_to_data(v)
        d = self.as_data(v)
        new = list(d.axes)
        for i in sorted(self.norm_axes(axes, len(new) + len(axes))):
            new.insert(i, "1")
        return [_Data(d.chain, tuple(new), d.feat, d.src, d.ids)]

    def op_Flatten(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v = ins[0]
        if isinstance(v, _Const):
            return [self.fold("Flatten", [v], axis=int(a.get("axis", 1)))]
        d = self.as_data(v)
        r = len(d.axes)
        ax = int(a.get("axis", 1))
        ax = ax + r if ax < 0 else ax
        if not 0 <= ax <= r:
            raise _Malformed(f"axis {a.get('axis')} for rank {r}")
        left, right = self.merge(d, d.axes[:ax]), self.merge(d, d.axes[ax:])
        return [self.relabel(d, [left, right])]

    def merge(self, d: _Data, group: Sequence[str]) -> tuple[str, ...]:
        """The label of one axis made by merging the ``group`` of adjacent axes (order kept)."""
        labels = [self.lab(l) for l in group if self.lab(l) != "1"]
        if not labels:
            return ("1",)
        if len(labels) == 1:
            return (labels[0],)
        if labels == ["D", "F"]:
            return ("F", "merged")
        raise _Refuse(f"merges axes ({', '.join(labels)}) into one: only the direction and feature axes of a "
                      "bidirectional output (in that order) can be merged")

    def relabel(self, d: _Data, new: Sequence[tuple[str, ...]]) -> _Data:
        """``new``: per output axis, (label,) or ("F", "merged") for a (D, F) merge."""
        axes = tuple(x[0] for x in new)
        merged = any(len(x) == 2 for x in new)
        feat = d.feat * 2 if merged else d.feat
        labels = [self.lab(l) for l in axes]
        if not d.ids and (labels.count("F") != 1 or labels.count("D") > 1):
            raise _Refuse(f"produces axes ({', '.join(labels)}): the features must stay on one axis")
        if merged and "D" in labels:
            raise _Refuse("merges the directions of a bidirectional output twice")
        return _Data(d.chain, axes, feat, d.src, d.ids)

    def op_Reshape(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v, s = ins[0], ins[1]
        allowzero = int(a.get("allowzero", 0))
        target: list[_Dim]
        if isinstance(s, _Const):
            target = list(_int_list(s, "shape"))
        elif isinstance(s, _Shape) and not s.scalar:
            target = list(s.dims)
        else:
            raise _Refuse("the target shape must be a constant or computed from Shape")
        if len(target) > MAX_RANK:
            raise _Malformed(f"target rank {len(target)}")
        if isinstance(v, _Const):
            if not all(isinstance(t, int) for t in target):
                raise _Refuse("reshapes a constant to a symbolic shape")
            return [self.fold("Reshape", [v], shape=target, allowzero=allowzero)]
        d = self.as_data(v)
        sizes = [self.size(d, l) for l in d.axes]
        labels = [self.lab(l) for l in d.axes]
        tgt, copy = [], {}
        for j, e in enumerate(target):
            if isinstance(e, int) and e == 0 and not allowzero:
                if j >= len(sizes):
                    raise _Malformed("0 copies a dimension the input does not have")
                tgt.append(sizes[j])
                copy[j] = j
            elif isinstance(e, int) and e < -1:
                raise _Malformed(f"shape entry {e}")
            else:
                tgt.append(self.lab(e) if isinstance(e, str) else int(e))
        if sum(1 for e in tgt if e == -1) > 1:
            raise _Malformed("more than one -1")
        # symbols balance: -1 may stand for exactly one symbol; a fixed size may be spelled as an int
        sym_in = [x for x in sizes if isinstance(x, str)]
        sym_out = [x for x in tgt if isinstance(x, str)]
        if any(x not in sym_in for x in sym_out):
            raise _Refuse(f"reshape {labels} -> {target} invents a batch or time axis")
        missing = [x for x in sym_in if x not in sym_out]
        ints_in = math.prod(x for x in sizes if isinstance(x, int))
        ints_out = math.prod(x for x in tgt if isinstance(x, int) and x != -1)
        if len(missing) == 1 and -1 in tgt and ints_in == ints_out:
            tgt[tgt.index(-1)] = missing[0]
        elif missing:
            fixed: dict[str, int] = {}
            for x in missing:
                k = self.known_size(x)
                if k is None:
                    raise _Refuse(f"reshape {labels} -> {target} merges the batch or time axis with others")
                fixed[x] = k
            sizes = [fixed[x] if isinstance(x, str) and x in fixed else x for x in sizes]
            ints_in = math.prod(x for x in sizes if isinstance(x, int))
        if -1 in tgt:
            if ints_out == 0 or ints_in % ints_out:
                raise _Malformed(f"reshape {labels} -> {target}: sizes do not divide")
            tgt[tgt.index(-1)] = ints_in // ints_out
        groups = self.group(labels, sizes, tgt, copy)
        new: list[tuple[str, ...]] = []
        for gi, gj in groups:
            if len(gj) == 0:
                if labels[gi[0]] not in ("1",) and sizes[gi[0]] != 1:
                    raise _Refuse(f"drops axis {gi[0]}")
                if labels[gi[0]] in ("B", "T") or labels[gi[0]].startswith("?"):
                    raise _Refuse(f"drops the {labels[gi[0]]} axis")
                continue
            if len(gi) == 0:
                new.extend([("1",)] * len(gj))
                continue
            if len(gj) == 1:
                new.append(self.merge(d, [d.axes[i] for i in gi]))
                continue
            raise _Refuse(f"splits axis {''.join(labels[i] for i in gi)} into {len(gj)} axes")
        return [self.relabel(d, new)]

    def group(self, labels: list[str], sizes: list[_Dim], tgt: list[_Dim], copy: dict[int, int]
              ) -> list[tuple[list[int], list[int]]]:
        n, m = len(sizes), len(tgt)
        i = j = 0
        groups: list[tuple[list[int], list[int]]] = []
        while i < n or j < m:
            if i < n and labels[i] == "1" and copy.get(j) != i:
                groups.append(([i], []))
                i += 1
                continue
            if i < n and j < m and self.same(sizes[i], tgt[j]):
                groups.append(([i], [j]))
                i += 1
                j += 1
                continue
            if j < m and tgt[j] == 1:
                groups.append(([], [j]))
                j += 1
                continue
            if i < n and sizes[i] == 1:
                groups.append(([i], []))
                i += 1
                continue
            si, tj = (sizes[i], tgt[j]) if i < n and j < m else (None, None)
            if not isinstance(si, int) or not isinstance(tj, int):
                raise _Refuse(f"reshape of axes ({', '.join(labels)}) to {tgt} is not a merge or split of "
                              "adjacent feature axes")
            gi, gj, pi, pj = [i], [j], si, tj
            while pi != pj:
                if pi < pj:
                    i += 1
                    si = sizes[i] if i < n else None
                    if not isinstance(si, int):
                        raise _Refuse(f"reshape of axes ({', '.join(labels)}) to {tgt} mixes the batch or time axis")
                    pi *= si
                    gi.append(i)
                else:
                    j += 1
                    tj = tgt[j] if j < m else None
                    if not isinstance(tj, int):
                        raise _Refuse(f"reshape of axes ({', '.join(labels)}) to {tgt} mixes the batch or time axis")
                    pj *= tj
                    gj.append(j)
            groups.append((gi, gj))
            i += 1
            j += 1
        return groups

    def slice_args(self, ins: _Ins, a: _Attrs, r: int) -> list[tuple[int, int, int, int]]:
        if self.opset < 10:
            starts, ends = list(a.get("starts", [])), list(a.get("ends", []))
            axes = list(a.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts, ends = _int_list(ins[1], "starts"), _int_list(ins[2], "ends")
            axes = _int_list(ins[3], "axes") if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
            steps = _int_list(ins[4], "steps") if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise _Malformed("starts / ends / axes / steps differ in length")
        return list(zip(self.norm_axes(axes, r), starts, ends, steps))

    @staticmethod
    def slice_range(size: int, st: int, en: int, step: int) -> range:
        """Python range of a slice over an int size (ONNX clamping rules)."""
        if step == 0:
            raise _Malformed("step 0")
        return range(size)[slice(max(min(st, _BIG), -_BIG), max(min(en, _BIG), -_BIG), step)]

    def op_Slice(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v = ins[0]
        if isinstance(v, _Const):
            r = v.arr.ndim
            sl = [slice(None)] * r
            for ax, st, en, step in self.slice_args(ins, a, r):
                rg = self.slice_range(v.arr.shape[ax], st, en, step)
                sl[ax] = slice(rg.start, rg.stop if rg.stop >= 0 else None, rg.step)
            return [_Const(v.arr[tuple(sl)])]
        if isinstance(v, _Shape):
            if v.scalar:
                raise _Malformed("slices a scalar")
            (ax, st, en, step), = self.slice_args(ins, a, 1) or [(0, 0, _BIG, 1)]
            rg = self.slice_range(len(v.dims), st, en, step)
            return [_Shape(tuple(v.dims[k] for k in rg))]
        if isinstance(v, (_Fill, _Final, _Data)):
            shape = list(v.shape) if isinstance(v, _Fill) else [self.size(v, l) for l in v.axes]
            r = len(shape)
            sel: dict[int, Union[list[int], str]] = {}  # axis -> the indices kept, or "last" (a symbolic axis)
            for ax, st, en, step in self.slice_args(ins, a, r):
                s = shape[ax]
                if isinstance(s, int):
                    sel[ax] = list(self.slice_range(s, st, en, step))
                elif step == 1 and st in (0,) and en >= 2 ** 31 - 1:
                    continue
                elif step == 1 and st == -1 and en >= 2 ** 31 - 1:
                    sel[ax] = "last"
                else:
                    raise _Refuse(f"slices the {self.lab(v.axes[ax]) if not isinstance(v, _Fill) else 'symbolic'} "
                                  f"axis [{st}:{en}:{step}]: only the full range or the last step ([-1:]) is supported")
            if isinstance(v, _Fill):
                if any(x == "last" for x in sel.values()):
                    raise _Refuse("slices a symbolic axis")
                return [_Fill(tuple(len(sel[i]) if i in sel else s for i, s in enumerate(shape)), v.value)]
            return [self.slice_value(v, shape, sel, where)]
        if isinstance(v, _DirPart):
            return [self.slice_direction(v, self.slice_args(ins, a, len(v.axes)))]
        raise _Refuse("slices an unsupported value")

    def slice_direction(self, v: _DirPart, args: list[tuple[int, int, int, int]]) -> _Final:
        """The forward direction's last step or the backward direction's first step of a bidirectional
        output: that direction's final state (Keras ``Bidirectional`` without ``return_sequences``)."""
        rnn = v.data.chain[-1]
        if len(args) == 1 and isinstance(rnn, _Rnn) and rnn.lengths is None and self.lab(v.axes[args[0][0]]) == "T":
            ax, st, en, step = args[0]
            t = self.size(v.data, v.axes[ax])
            steps = list(self.slice_range(t, st, en, step)) if isinstance(t, int) else None
            last = (st == -1 and step == 1 and en >= 2 ** 31 - 1) or (
                steps is not None and isinstance(t, int) and steps == [t - 1])
            first = (st == 0 and en == 1) or (steps is not None and steps == [0])
            if (v.k == 0 and last) or (v.k == 1 and first):
                return _Final(((v.data.chain, v.k),), v.axes[:ax] + ("1",) + v.axes[ax + 1:], v.data.feat, v.data.src)
        raise _Refuse("slices one direction of a bidirectional output: only the forward direction's last step and "
                      "the backward direction's first step (its final state) are supported, without sequence_lens")

    def slice_value(self, v: Union[_Final, _Data], shape: list[_Dim], sel: dict[int, Union[list[int], str]],
                    where: str) -> Union[_Final, _Data, _DirPart]:
        if isinstance(v, _Final):
            for ax, ks in sel.items():
                if self.lab(v.axes[ax]) == "S" and isinstance(ks, list):
                    v = _Final(tuple(v.entries[k] for k in ks), v.axes, v.feat, v.src, v.part)
                elif not _whole(ks, shape[ax]):  # (the last batch row, [-1:], too: was a TypeError)
                    raise _Refuse(f"slices part of the {self.lab(v.axes[ax])} axis of a final state")
            return v
        d = v
        dirs = [(ax, ks[0]) for ax, ks in sel.items()
                if self.lab(d.axes[ax]) == "D" and isinstance(ks, list) and ks in ([0], [1])]
        if dirs and len(sel) == 1:  # one direction of a bidirectional output, the other axes whole
            ax, k = dirs[0]
            return _DirPart(d, k, d.axes[:ax] + ("1",) + d.axes[ax + 1:])
        for ax, ks in sel.items():
            lab = self.lab(d.axes[ax])
            if ks == "last" and lab == "T":
                d = _Data(d.chain + (Piece("select", "last_step", select="last_step", where=where),),
                          d.axes[:ax] + ("1",) + d.axes[ax + 1:], d.feat, d.src)
            elif _whole(ks, shape[ax]):
                continue
            else:
                raise _Refuse(f"slices part of the {lab} axis: only full ranges and the last time step are supported")
        return d

    def op_Concat(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        axis = int(a.get("axis", 0))
        consts = _all_of(ins, _Const)
        if consts is not None:
            return [self.fold("Concat", consts, axis=axis)]
        if all(isinstance(v, (_Const, _Shape)) for v in ins):
            dims: list[_Dim] = []
            for v in ins:
                if isinstance(v, _Shape):
                    if v.scalar:
                        raise _Malformed("concatenates a scalar")
                    dims.extend(v.dims)
                else:
                    dims.extend(_int_list(v, "shape part"))
            return [_Shape(tuple(dims))]
        fills = _all_of(ins, _Fill)
        if fills is not None:
            vals = {v.value for v in fills}
            r = len(fills[0].shape)
            axis = axis + r if axis < 0 else axis
            if not 0 <= axis < r:  # (was an IndexError)
                raise _Malformed(f"axis {a.get('axis', 0)} for rank {r}")
            sizes = [x for v in fills if len(v.shape) == r and isinstance(x := v.shape[axis], int)]
            if len(vals) != 1 or len(sizes) != len(fills):
                raise _Refuse("concatenates filled tensors of different values or along a symbolic axis")
            shape = list(fills[0].shape)
            shape[axis] = sum(sizes)
            return [_Fill(tuple(shape), fills[0].value)]
        finals = _all_of(ins, _Final)
        if finals is not None:
            r = len(finals[0].axes)
            axis = axis + r if axis < 0 else axis
            if any(len(v.axes) != r or [self.lab(x) for x in v.axes] != [self.lab(x) for x in finals[0].axes] or
                   v.feat != finals[0].feat or v.part != finals[0].part for v in finals) or not 0 <= axis < r:
                raise _Refuse("concatenates final states of different layouts")
            lab = self.lab(finals[0].axes[axis])
            if lab == "S" or (lab == "F" and "S" not in finals[0].axes):
                return [_Final(tuple(e for v in finals for e in v.entries), finals[0].axes, finals[0].feat,
                               finals[0].src, finals[0].part)]
        parts = _all_of(ins, _DirPart)
        if parts is not None:
            r = len(parts[0].axes)
            axis = axis + r if axis < 0 else axis
            if [v.k for v in parts] != [0, 1] or parts[1].data is not parts[0].data or \
                    parts[1].axes != parts[0].axes or not 0 <= axis < r or self.lab(parts[0].axes[axis]) != "F":
                raise _Refuse("concatenates directions of a bidirectional output: only both, forward first, along "
                              "the features are supported")
            return [_Data(parts[0].data.chain, parts[0].axes, parts[0].data.feat * 2, parts[0].data.src)]
        raise _Refuse("concatenates data tensors: only shapes, zero states and final states "
                      "(torch.cat((h_n[-2], h_n[-1]), 1)) are supported")

    # ---- shapes and filled tensors
    def op_Shape(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v = ins[0]
        if isinstance(v, _Const):
            dims = list(v.arr.shape)
        elif isinstance(v, _Fill):
            dims = list(v.shape)
        elif isinstance(v, (_Data, _Final, _IntInput)):
            dims = [self.size(v, l) if not isinstance(v, _IntInput) else l for l in v.axes]
        else:
            raise _Refuse("shape of an unsupported value")
        r = len(dims)
        st, en = int(a.get("start", 0)), int(a.get("end", r))
        dims = dims[slice(max(-r, min(st, r)), max(-r, min(en, r)))]
        if all(isinstance(x, int) for x in dims):
            return [_Const(np.asarray(dims, dtype=np.int64))]
        return [_Shape(tuple(dims))]

    def fill_value(self, a: _Attrs) -> float:
        t = a.get("value")
        if t is None:
            return 0.0
        arr = self.tensors.array(t, "value")
        if arr.size != 1:
            raise _Malformed("value must hold one element")
        return float(arr.reshape(-1)[0])

    def op_ConstantOfShape(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        s = ins[0]
        shape: tuple[_Dim, ...]
        if isinstance(s, _Const):
            shape = tuple(_int_list(s, "shape"))
        elif isinstance(s, _Shape) and not s.scalar:
            shape = s.dims
        else:
            raise _Refuse("the shape must be a constant or computed from Shape")
        if len(shape) > MAX_RANK or any(isinstance(x, int) and x < 0 for x in shape):
            raise _Malformed(f"shape {list(shape)[:MAX_RANK + 1]}")
        return [_Fill(tuple(shape), self.fill_value(a))]

    def op_Expand(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v, s = ins
        target: tuple[_Dim, ...]
        shape: tuple[_Dim, ...]
        if isinstance(s, _Const):
            target = tuple(_int_list(s, "shape"))
        elif isinstance(s, _Shape) and not s.scalar:
            target = s.dims
        else:
            raise _Refuse("the shape must be a constant or computed from Shape")
        if isinstance(v, _Const):
            val = _uniform(v.arr)
            if val is None:
                raise _Refuse("expands a non-uniform constant (only zero states are supported)")
            shape = v.arr.shape
        elif isinstance(v, _Fill):
            val, shape = v.value, v.shape
        else:
            raise _Refuse("expands data (only constant fills, e.g. zero initial states, are supported)")
        r = max(len(shape), len(target))
        if r > MAX_RANK:
            raise _Malformed(f"rank {r}")
        sa = (1,) * (r - len(shape)) + tuple(shape)
        ta = (1,) * (r - len(target)) + tuple(target)
        out = []
        for x, y in zip(sa, ta):
            if isinstance(x, int) and x == 1:
                out.append(y)
            elif isinstance(y, int) and y == 1:
                out.append(x)
            elif self.same(x, y):
                out.append(x)
            else:
                raise _Malformed(f"shapes {list(shape)} and {list(target)} do not broadcast")
        if any(isinstance(x, int) and x < 0 for x in out):
            raise _Malformed(f"negative dimension in {out}")
        return [_Fill(tuple(out), val)]

    # ---- constant folding (shape arithmetic, small constant graphs)
    def shape_arith(self, op: str, ins: _Ins) -> _Const:
        vals: list[_Const] = []
        for v in ins:
            if isinstance(v, _Shape) and all(isinstance(x, int) for x in v.dims):
                vals.append(_Const(np.asarray(v.dims, dtype=np.int64).reshape(() if v.scalar else -1)))
            elif isinstance(v, _Const):
                vals.append(v)
            else:
                raise _Refuse(f"{op} on symbolic sizes (batch or time) is not supported")
        return self.fold(op, vals)

    def op_Sub(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        return self._arith(n, ins)

    def op_Mul(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        if any(isinstance(v, (_IntInput, _IdsExpr)) for v in ins):
            return [self.ids_arith("Mul", ins)]
        return self._arith(n, ins)

    def ids_arith(self, op: str, ins: _Ins) -> _IdsExpr:
        """Add / Mul on the ids: only the steps of Keras 3's ``where(ids < 0, ids + n, ids)`` (see _IdsExpr)."""
        vals = [_IdsExpr(v, ("shift", 0)) if isinstance(v, _IntInput) else v for v in ins]
        exprs = [v for v in vals if isinstance(v, _IdsExpr)]
        if all(e.ids == exprs[0].ids for e in exprs):
            forms = sorted((v.form for v in vals if isinstance(v, _IdsExpr)), key=str)
            const = [v.arr for v in vals if isinstance(v, _Const) and v.arr.size == 1 and v.arr.dtype.kind in "iu"]
            if op == "Add" and len(forms) == 1 and forms[0][0] == "shift" and len(const) == 1:
                return _IdsExpr(exprs[0].ids, ("shift", forms[0][1] + int(const[0].reshape(()))))
            if op == "Mul" and len(forms) == 2 and forms[0][0] == "mask" and forms[1][0] == "shift":
                return _IdsExpr(exprs[0].ids, ("part", forms[0][1], forms[1][1]))
            if op == "Add" and len(forms) == 2 and {f[:2] for f in forms} == {("part", False), ("part", True)}:
                pos, neg = sorted(forms, key=lambda f: f[1])
                if pos[2] == 0 and neg[2] > 0:
                    return _IdsExpr(exprs[0].ids, ("wrap", neg[2]))
        raise _Refuse(f"{op} on the model input ids: only Keras' negative-index wrap "
                      "where(ids < 0, ids + n, ids) before an embedding is supported")

    def op_Less(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        x, c = ins
        if isinstance(x, _IntInput):
            x = _IdsExpr(x, ("float",))
        if isinstance(x, _IdsExpr) and x.form == ("float",) and isinstance(c, _Const) and c.arr.size == 1 and \
                float(c.arr.reshape(())) == 0:
            return [_IdsExpr(x.ids, ("mask", True))]
        raise _Refuse("operator not supported (Less is read only as ids < 0, Keras' negative-index wrap before an "
                      "embedding)")

    def op_Not(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        v = ins[0]
        if isinstance(v, _IdsExpr) and v.form[0] == "mask":
            return [_IdsExpr(v.ids, ("mask", not v.form[1]))]
        raise _Refuse("only the negation of ids < 0 (Keras' negative-index wrap before an embedding) is supported")

    def op_Div(self, n: NodeProto, ins: _Ins, a: _Attrs, where: str) -> _Ins:
        return self._arith(n, ins)

    def _arith(self, n: NodeProto, ins: _Ins) -> _Ins:
        consts = _all_of(ins, _Const)
        if consts is not None:
            return [self.fold(n.op_type, consts)]
        if all(isinstance(v, (_Const, _Shape)) for v in ins):
            return [self.shape_arith(n.op_type, ins)]
        raise _Refuse(f"{n.op_type} of data tensors is not supported")

    def fold(self, op: str, vals: Sequence[_Const], **kw: Any) -> _Const:
        arrs = [v.arr for v in vals]
        if op in ("Add", "Sub", "Mul", "Div"):
            shape = np.broadcast_shapes(*(x.shape for x in arrs))
        elif op == "Gather":
            d, i = arrs
            ax = kw["axis"] + d.ndim if kw["axis"] < 0 else kw["axis"]
            if not 0 <= ax < d.ndim:
                raise _Malformed(f"axis {kw['axis']}")
            shape = d.shape[:ax] + i.shape + d.shape[ax + 1:]
        elif op == "Concat":
            shape = (sum(x.size for x in arrs),)
        else:
            shape = (arrs[0].size,)
        item = max(x.dtype.itemsize for x in arrs)
        self.budget.charge(math.prod(shape) * item, f"constant {op}")
        try:
            if op == "Add":
                r = arrs[0] + arrs[1]
            elif op == "Sub":
                r = arrs[0] - arrs[1]
            elif op == "Mul":
                r = arrs[0] * arrs[1]
            elif op == "Div":
                r = (np.trunc(arrs[0] / arrs[1]).astype(np.result_type(*arrs)) if all(x.dtype.kind in "iu" for x in arrs)
                     else arrs[0] / arrs[1])
            elif op == "Gather":
                r = np.take(arrs[0], arrs[1].astype(np.int64), axis=kw["axis"])
            elif op == "Concat":
                r = np.concatenate(arrs, axis=kw["axis"])
            elif op == "Transpose":
                r = np.transpose(arrs[0], kw["perm"])
            elif op == "Squeeze":
                r = np.squeeze(arrs[0], axis=None if kw["axes"] is None else tuple(kw["axes"]))
            elif op == "Unsqueeze":
                r = arrs[0]
                for x in sorted(self.norm_axes(kw["axes"], r.ndim + len(kw["axes"]))):
                    r = np.expand_dims(r, x)
            elif op == "Flatten":
                ax = kw["axis"] + arrs[0].ndim if kw["axis"] < 0 else kw["axis"]
                r = arrs[0].reshape(math.prod(arrs[0].shape[:ax]), -1)
            elif op == "Reshape":
                shp = [arrs[0].shape[j] if (x == 0 and not kw["allowzero"]) else x for j, x in enumerate(kw["shape"])]
                r = arrs[0].reshape(shp)
            else:
                raise _Refuse(f"{op} of constants is not supported")
        except (ValueError, IndexError, ZeroDivisionError, FloatingPointError, TypeError) as e:
            raise _Malformed(f"{op} of constants: {e}") from None
        return _Const(np.asarray(r))

    # ---- the end: the output value -> ModelSpec
    def finish_many(self, results: list[tuple[str, Optional[_Value]]]) -> ModelSpec:
        """Several graph outputs: data outputs on one chain of layers (the longest is the model's chain,
        the others taps of it) and final states (``Y_h`` / ``Y_c``: stacked ``(S, B, F)`` / layout 1
        ``(B, S, F)``, or one direction ``(B, F)``) of its recurrent nodes, in the graph's order."""
        data = [(o, v) for o, v in results if isinstance(v, _Data)]
        if not data:  # only final states: the chain ends at the last recurrent node (its Y, not an output)
            finals = [v for _, v in results if isinstance(v, _Final)]  # (run let only data and final states through)
            chain = max((c for v in finals for c, _ in v.entries), key=len)
            el = chain[-1]
            assert isinstance(el, _Rnn)  # a final state's chain ends at its recurrent node
            d = "D" if el.direction == "bidirectional" else "1"
            data = [("", _Data(chain, ("T", d, "B", "F") if el.layout == 0 else ("B", "T", d, "F"), el.units,
                               finals[0].src))]
        main_out, main = max(data, key=lambda ov: len(ov[1].chain))

        def index_in_main(chain: _Chain, what: str) -> int:
            if len(chain) > len(main.chain) or any(a is not b for a, b in zip(chain, main.chain)):
                raise _Refuse(f"{what} branches off the layers that compute {main_out!r}: several outputs of ONNX "
                              "graphs must lie on one chain of layers (taps and final states of it)")
            return len(chain) - 1

        outputs: list[tuple[Any, ...]] = []  # build_spec's outputs
        axes: list[str] = []
        for o, v in results:
            what = f"graph output {o!r}"
            if isinstance(v, _Data):
                labels = [self.lab(l) for l in v.axes]
                if "B" not in labels or "F" not in labels:
                    raise _Refuse(f"{what} has axes ({', '.join(labels)}): it needs a batch and a feature axis")
                outputs.append(("tap", index_in_main(v.chain, what)))
                axes.append("".join(labels))
                continue
            assert isinstance(v, _Final)  # (run let only data and final states through)
            labels = [self.lab(l) for l in v.axes]
            idx = [index_in_main(c, what) for c, _ in v.entries]
            if labels == ["B", "F"] and len(v.entries) == 1:
                outputs.append((v.part, idx, v.entries[0][1], False))
            elif labels in (["S", "B", "F"], ["B", "S", "F"]):
                groups = list(dict.fromkeys(idx))
                dirs = [main.chain[i] for i in groups]
                want = [(i, d) for i, el in zip(groups, dirs)
                        for d in range(2 if isinstance(el, _Rnn) and el.direction == "bidirectional" else 1)]
                if [(i, d) for i, (_, d) in zip(idx, v.entries)] != want:
                    raise _Refuse(f"{what}: final states stacked in an order other than layer by layer, forward "
                                  "then backward")
                outputs.append((v.part, groups, None, labels[0] == "B"))
            else:
                raise _Refuse(f"{what}: final states with axes ({', '.join(labels)}) (expected (S, B, F), "
                              "(B, S, F) or one direction (B, F))")
            axes.append("".join(labels))
        return self.finish(main, main_out, outputs, [o for o, _ in results], axes)

    def finish(self, result: Optional[_Value], out: str, outputs: Optional[list[tuple[Any, ...]]] = None,
               names: Optional[list[str]] = None, out_axes: Optional[list[str]] = None) -> ModelSpec:
        if isinstance(result, _Final) and result.part == "c" and outputs is None:
            raise _Refuse("the LSTM cell state Y_c is a model output only beside a data output (Y or a layer after "
                          "it): load the graph's outputs together")
        d = self.as_data(result, f"graph output {out!r}")
        labels = [self.lab(l) for l in d.axes]
        src = d.src
        inp = next(vi for vi in self.model.graph.input if vi.name == src)
        ids = inp.type.tensor_type.elem_type in _INT_TYPES
        rank_in = len(inp.type.tensor_type.shape.dim) - (0 if ids else 1)  # a float input's last axis is F
        in_labels = [self.lab(f"?{src}:{k}") for k in range(rank_in)]
        # axes the graph never tied to batch or time: batch first, then time
        free = [l for l in in_labels + labels if l.startswith("?")]
        for l in free:
            if l not in self.bind:
                self.bind[l] = "B" if "B" not in self.bind.values() else "T"
        in_labels = [self.lab(f"?{src}:{k}") for k in range(rank_in)]
        labels = [self.lab(l) for l in d.axes]
        in_axes = "".join(in_labels) + ("" if ids else "F")
        if in_axes not in ("BTF", "TBF", "BT", "TB", "BF", "B"):
            raise _Refuse(f"the model input {src!r} has axes {in_axes}")
        if "B" not in labels or "F" not in labels:
            raise _Refuse(f"the output has axes ({', '.join(labels)}): it needs a batch and a feature axis")
        if labels.count("B") > 1 or labels.count("T") > 1:
            raise _Refuse(f"the output has axes ({', '.join(labels)})")
        rnns = [el for el in d.chain if isinstance(el, _Rnn)]
        lens = {r.lengths for r in rnns}
        if len(lens) > 1:
            raise _Refuse("sequence_lens is given to some recurrent nodes and not to others (or differs): fastrnn "
                          "applies predict's lengths to every recurrent layer")
        lengths = lens.pop() if lens else None
        meta: dict[str, Any] = {"framework": "onnx", "onnx": {
            "input": src, "input_axes": in_axes, "output": out, "output_axes": "".join(labels),
            "lengths_input": lengths, "opset": self.opset, "producer": self.model.producer_name,
            "producer_version": self.model.producer_version}}
        if outputs is not None:
            meta["onnx"]["outputs"] = [{"name": n, "axes": a} for n, a in zip(names or [], out_axes or [])]
        return self.build(d.chain, None if ids else self.input_features(src), meta, outputs, names)

    def input_features(self, src: str) -> int:
        vi = next(vi for vi in self.model.graph.input if vi.name == src)
        return int(vi.type.tensor_type.shape.dim[-1].dim_value)

    def build(self, chain: _Chain, input_features: Optional[int], meta: dict[str, Any],
              outputs: Optional[list[tuple[Any, ...]]] = None, names: Optional[list[str]] = None) -> ModelSpec:
        pieces: list[Piece] = []
        rnns: list[tuple[_Rnn, str]] = []  # (node, how it runs)
        for k, el in enumerate(chain):
            if isinstance(el, _Rnn):
                nxt = chain[k + 1] if k + 1 < len(chain) else None
                only_final = isinstance(nxt, _Pick)
                impl = el.direction
                if el.direction == "reverse" and not only_final:
                    impl = "reverse_as_bidirectional"
                pieces.append(self.rnn_piece(el, impl))
                rnns.append((el, impl))
            elif isinstance(el, _Pick):
                _, impl = rnns[-1]
                if impl == "bidirectional":
                    dirs = tuple(("fwd", "bwd")[d] for d in el.dirs)
                elif impl == "reverse_as_bidirectional":
                    dirs = ("fwd", "bwd")  # zero forward + backward, merged by sum
                else:
                    dirs = ("fwd",)
                pieces.append(Piece("select", "final", select="final", dirs=dirs, where=el.where))
            else:
                pieces.append(el)
        spec = build_spec(pieces, "onnx", meta, input_features=input_features, outputs=outputs)
        for key in ("torch_recurrent", "torch_batch_first"):
            spec.metadata.pop(key, None)
        used = {l.name for l in spec.layers if not hasattr(l, "weights")}
        renamed: dict[str, str] = {}
        states: list[dict[str, Any]] = []
        for layer, (el, impl) in zip(spec.recurrent_layers, rnns):
            old = layer.name
            layer.name = renamed[old] = unique_name(el.name, used)
            for o in spec.outputs or [] if impl == "reverse_as_bidirectional" else []:
                if o.kind == "output" or old not in o.layers:
                    continue
                if len(o.layers) != 1:  # (the zero forward direction is not the graph's)
                    raise _Refuse(f"{el.where}: the final states of a reverse node whose Y is used (it runs as a "
                                  "bidirectional layer) can be a graph output alone, not stacked with others")
                o.keep_axis, o.direction = o.direction is None, 1  # the backward direction: the node's
            states += [{"input": name, "layer": layer.name, "part": part, "layout": el.layout}
                       for name, part in el.state_inputs]
            self.rnn_options(layer, el, impl)
            layer.reset_after = el.reset_after
            if impl == "reverse":
                layer.direction = "reverse"
            elif impl == "reverse_as_bidirectional":  # zero forward direction: outputs exactly 0; sum = backward
                w = layer.weights[0]
                zero = DirectionWeights(np.zeros_like(w.w_ih), np.zeros_like(w.w_hh), np.zeros_like(w.b_ih),
                                        np.zeros_like(w.b_hh),
                                        peephole=None if w.peephole is None else np.zeros_like(w.peephole))
                layer.weights = [zero, w]
                layer.direction, layer.merge_mode = "bidirectional", "sum"
            if el.int8 is not None:  # DynamicQuantizeLSTM kept as int8 (a zero forward direction: q 0, scale 0)
                src = ([(np.zeros_like(el.int8[0][0]), np.zeros_like(el.int8[0][1]),
                         np.zeros_like(el.int8[0][2]), np.zeros_like(el.int8[0][3]))]
                       if impl == "reverse_as_bidirectional" else []) + el.int8
                layer.precision = "int8"
                for w, (q_ih, s_ih, q_hh, s_hh) in zip(layer.weights, src):
                    w.w_ih, w.w_ih_scale, w.w_hh, w.w_hh_scale = q_ih, s_ih, q_hh, s_hh
        for o, name in zip(spec.outputs or [], names or []):
            o.name = name
            o.layers = [renamed.get(n, n) for n in o.layers]
        if states:
            spec.metadata["onnx"]["state_inputs"] = states
        return spec.validate()

    @staticmethod
    def rnn_options(layer: RecurrentSpec, el: _Rnn, impl: str) -> None:
        """The node's activations and options on its RecurrentSpec (weights in ONNX direction order; a
        reverse node run as a zero forward + backward pair gets its zero direction below)."""
        # the zero forward direction outputs exactly 0 when g(0) == 0 (and h(0) == 0): with the node's own
        # functions when they are such, else with the default ones (gate_activations per direction)
        rab = impl == "reverse_as_bidirectional"
        if el.activation is not None and not (rab and el.activation not in _ZERO_AT_ZERO):
            layer.activation = el.activation
            if el.kind != "simple_rnn" and el.recurrent_activation is not None:  # (None only with activation)
                layer.recurrent_activation = el.recurrent_activation
        else:
            zero: list[list[Any]] = [[n, 0.0, 0.0] for n in _DEFAULT_ACTS[el.kind]]
            layer.gate_activations = ([zero] if rab else []) + (el.gate_acts or [])
        layer.clip, layer.input_forget = el.clip, el.input_forget
        for d, w in enumerate(layer.weights):
            w.peephole = None if el.peephole is None else el.peephole[d]
            w.h0 = None if el.h0 is None else el.h0[d]
            w.c0 = None if el.c0 is None else el.c0[d]

    @staticmethod
    def rnn_piece(el: _Rnn, impl: str) -> Piece:
        """A torch-layout piece for build_spec (a reverse node running as a zero forward + backward pair
        is built as one direction, with the sizes that pair has when merged by sum, and patched after)."""
        t: dict[str, _F32] = {}
        ws = el.weights
        for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(ws):
            sfx = "_l0" + ("_reverse" if d else "")
            t["weight_ih" + sfx], t["weight_hh" + sfx], t["bias_ih" + sfx], t["bias_hh" + sfx] = w_ih, w_hh, b_ih, b_hh
        desc = RNNDesc(mode=_TORCH_MODE[el.kind], input_size=el.input_size, hidden_size=el.units, num_layers=1,
                       bidirectional=len(ws) == 2, bias=True)
        return Piece("rnn", el.name, t, rnn=desc, where=el.where)


def _rnn_act(key: str, alpha: Optional[float], beta: Optional[float]) -> Optional[str]:
    """ONNX recurrent activation (lower-case name, alpha, beta) -> the fastrnn activation that is exactly
    it, else None (RecurrentSpec.gate_activations then holds it)."""
    f32 = np.float32
    simple = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "softsign": "softsign", "softplus": "softplus"}
    if key in simple:
        return simple[key]
    same = {("elu", 1.0, None): "elu", ("leakyrelu", 0.2, None): "leaky_relu", ("affine", 1.0, 0.0): "linear",
            ("hardsigmoid", 0.2, 0.5): "hard_sigmoid_tf2", ("hardsigmoid", 1 / 6, 0.5): "hard_sigmoid",
            ("scaledtanh", 1.0, 1.0): "tanh"}
    for (k, al, be), name in same.items():
        if key == k and f32(alpha) == f32(al) and (be is None or f32(beta) == f32(be)):
            return name
    return None


def _elementwise() -> dict[str, _ActFn]:
    f32 = np.float32

    def fixed(name: str) -> _ActFn:
        return lambda self, a, ins: name

    def elu(self: _Converter, a: _Attrs, ins: _Ins) -> str:
        if f32(a.get("alpha", 1.0)) != 1:
            raise _Refuse(f"alpha={a['alpha']}: only alpha=1 is supported")
        return "elu"

    def selu(self: _Converter, a: _Attrs, ins: _Ins) -> str:
        if f32(a.get("alpha", 1.67326319217681884765625)) != f32(1.67326319217681884765625) or \
                f32(a.get("gamma", 1.05070102214813232421875)) != f32(1.05070102214813232421875):
            raise _Refuse("only the default alpha and gamma are supported")
        return "selu"

    def leaky(self: _Converter, a: _Attrs, ins: _Ins) -> str:
        if f32(a.get("alpha", 0.01)) != f32(0.2):
            raise _Refuse(f"alpha={a.get('alpha', 0.01)}: fastrnn's leaky_relu has the fixed slope 0.2 "
                          "(Keras' default); other slopes are not supported")
        return "leaky_relu"

    def hsig(self: _Converter, a: _Attrs, ins: _Ins) -> str:
        al, be = a.get("alpha", 0.2), a.get("beta", 0.5)
        name = _rnn_act("hardsigmoid", al, be)
        if name is None:
            raise _Refuse(f"alpha={al}, beta={be}: only (0.2, 0.5) and (1/6, 0.5) are supported")
        return name

    def gelu(self: _Converter, a: _Attrs, ins: _Ins) -> str:
        ap = a.get("approximate", b"none")
        ap = ap.decode() if isinstance(ap, bytes) else ap
        if ap not in ("none", "tanh"):
            raise _Refuse(f"approximate={ap!r}")
        return "gelu" if ap == "none" else "gelu_tanh"

    def clip(self: _Converter, a: _Attrs, ins: _Ins) -> str:
        if self.opset < 11:
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        else:
            lo = hi = None
            for k, v in ((1, "min"), (2, "max")):
                x = ins[k] if len(ins) > k else None
                if x is not None and not (isinstance(x, _Const) and x.arr.size == 1):
                    raise _Refuse(f"{v} must be a constant scalar")
                val = float(x.arr.reshape(-1)[0]) if x is not None else (-np.inf if k == 1 else np.inf)
                lo, hi = (val, hi) if k == 1 else (lo, val)
        table = {(0.0, 6.0): "relu6", (-1.0, 1.0): "hard_tanh", (0.0, np.inf): "relu"}
        name = table.get((float(lo), float(hi)))
        if name is None:
            raise _Refuse(f"Clip({lo}, {hi}): only (0, 6) = relu6, (-1, 1) = hard_tanh and (0, inf) = relu are supported")
        return name

    return {"Relu": fixed("relu"), "Tanh": fixed("tanh"), "Sigmoid": fixed("sigmoid"), "Softsign": fixed("softsign"),
            "Softplus": fixed("softplus"), "HardSwish": fixed("hard_silu"), "Mish": fixed("mish"),
            "Exp": fixed("exponential"), "Elu": elu, "Selu": selu, "LeakyRelu": leaky, "HardSigmoid": hsig,
            "Gelu": gelu, "Clip": clip}


# an element-wise op's function: (converter, attributes, inputs) -> the fastrnn activation
_ActFn = Callable[[_Converter, _Attrs, _Ins], str]
_ELEMENTWISE = _elementwise()
# ops whose output has the shape of their first input: when refused, their consumers are still analysed
_SHAPE_KEEPING = set(_ELEMENTWISE) | {"Softmax", "LogSoftmax", "Add", "Sub", "Mul", "Div", "Pow", "Neg", "Abs", "Sqrt",
                                      "Log", "Erf", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos",
                                      "ThresholdedRelu", "PRelu", "Celu", "Shrink", "LpNormalization",
                                      "InstanceNormalization", "LayerNormalization", "BatchNormalization", "Dropout"}


# attributes, inputs and outputs of the contrib ops the converter reads (onnxruntime's schemas, version 1)
_CONTRIB = {("com.microsoft", "DynamicQuantizeLSTM"): (
    frozenset({"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
               "input_forget"}), 3, 12, 3)}


@functools.lru_cache(maxsize=None)
def _schema(onnx: ModuleType, domain: str, op: str, opset: int) -> tuple[frozenset[str], int, int, int]:
    """(attribute names, min inputs, max inputs, max outputs) of a supported op at the model's opset (an
    op newer than the opset: its first version)."""
    if (domain, op) in _CONTRIB:
        return _CONTRIB[domain, op]
    try:
        s = onnx.defs.get_schema(op, opset, "")
    except onnx.defs.SchemaError:
        s = onnx.defs.get_schema(op, "")
    return frozenset(s.attributes), s.min_input, s.max_input, s.max_output


# --------------------------------------------------------------------------- public entry points
def _parse(onnx: ModuleType, data: Union[bytes, bytearray, memoryview], origin: str) -> ModelProto:
    m: ModelProto = onnx.ModelProto()
    try:
        m.ParseFromString(bytes(data))
    except Exception as e:  # noqa: BLE001 - DecodeError, RecursionError... from the protobuf runtime
        raise ModelFormatError(f"{origin}: not a readable ONNX model (protobuf: {type(e).__name__}: {e})") from None
    if not m.HasField("graph"):
        raise ModelFormatError(f"{origin}: not an ONNX model (no graph)")
    return m


def spec_from_onnx_file(path: str | os.PathLike[str], output: Optional[str] = None,
                        weights: Optional[str] = None) -> ModelSpec:
    """Read an ``.onnx`` file (see the module doc).  ``output``: the graph output to load when the
    graph has several.  External data is read only from regular files inside the file's directory.
    ``weights="int8"`` keeps the int8 weights of ``DynamicQuantizeLSTM`` nodes (the other layers stay
    as they are: ``fastrnn.load(..., weights=...)`` converts the whole model)."""
    onnx = _onnx()
    p = os.fsdecode(os.fspath(path))
    _check_output_arg(output, p)
    size = os.stat(p).st_size
    pre = LoadBudget.for_file(p)
    with open(p, "rb") as f:
        data = f.read()
    _prescan(data, pre)
    model = _parse(onnx, data, p)
    del data
    base = os.path.dirname(os.path.abspath(p))
    budget = LoadBudget(p, size + _external_size(onnx, model.graph, base))
    spec: ModelSpec = _Converter(onnx, model, p, budget, base, output, _weights_arg(weights)).run()
    return spec


def spec_from_onnx(model: Union[ModelProto, bytes, bytearray, memoryview], output: Optional[str] = None,
                   weights: Optional[str] = None) -> ModelSpec:
    """Convert an ``onnx.ModelProto``, or its serialized bytes (see the module doc).  External data
    is refused here (load the file by its path).  ``weights``: as :func:`spec_from_onnx_file`."""
    onnx = _onnx()
    origin = "<onnx model>"
    _check_output_arg(output, origin)
    if isinstance(model, (bytes, bytearray, memoryview)):
        budget = LoadBudget.for_bytes(model, origin)
        _prescan(bytes(model), budget)
        model = _parse(onnx, model, origin)
    elif isinstance(model, onnx.ModelProto):
        budget = LoadBudget(origin, model.ByteSize())
    else:
        raise UnsupportedLayerError(f"spec_from_onnx takes an onnx.ModelProto or bytes, got {type(model).__name__}")
    return _Converter(onnx, model, origin, budget, None, output, _weights_arg(weights)).run()


def _weights_arg(weights: Optional[str]) -> Optional[str]:
    from ..quantize import precision_arg

    return None if weights is None else precision_arg(weights, "weights")


def _kept_int8(v: npt.NDArray[np.int16], scale: _F32, exact: npt.NDArray[np.bool_],
               values: _F32) -> tuple[npt.NDArray[np.int8], _F32]:
    """One matrix of a DynamicQuantizeLSTM as fastrnn int8 ``[(q, scale)]``: the source's rows where
    ``exact``, the others requantized per row from their dequantized ``values``."""
    from ..quantize import to_int8

    q, s = to_int8(values)
    return (np.where(exact[:, None], v, q).astype(np.int8), np.where(exact, scale, s).astype(np.float32))


def _check_output_arg(output: object, origin: str) -> None:
    if output is not None and not isinstance(output, str):
        from ..errors import ArgumentTypeError

        raise ArgumentTypeError(f"{origin}: output= must be a graph output name (str), got {type(output).__name__}")


# --------------------------------------------------------------------------- layouts
def _spec_of(model: Union[Model, ModelSpec]) -> ModelSpec:
    """The spec of a :class:`fastrnn.Model`; a ModelSpec itself."""
    return cast(ModelSpec, getattr(model, "spec", model))


def _onnx_meta(model: Union[Model, ModelSpec]) -> dict[str, Any]:
    spec = _spec_of(model)
    meta = getattr(spec, "metadata", None) or {}
    m = meta.get("onnx")
    if not isinstance(m, dict):
        raise UnsupportedLayerError("the model was not converted from ONNX (no 'onnx' metadata)")
    return m


def input_to_fastrnn(model: Union[Model, ModelSpec], x: npt.ArrayLike) -> npt.NDArray[Any]:
    """The ONNX graph's model input ``x`` (its own layout, e.g. time-major ``(T, B, F)``) as the
    batch-first array :meth:`fastrnn.Model.predict` takes."""
    axes = _onnx_meta(model)["input_axes"]
    x = np.asarray(x)
    want = [c for c in "BTF" if c in axes]
    return np.transpose(x, [axes.index(c) for c in want]) if list(axes) != want else x


def initial_state_from_onnx(
        model: Union[Model, ModelSpec], feeds: Mapping[str, npt.ArrayLike]
) -> list[Union[None, npt.NDArray[np.float32], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]]:
    """``predict(initial_state=...)`` (and ``Stream.state``) from the ONNX feeds of the graph inputs that
    carry states (``initial_h`` / ``initial_c`` fed by graph inputs: ``metadata["onnx"]["state_inputs"]``):
    ``feeds`` maps input names to arrays in the graph's layout; a layer none of whose states is fed
    gets None (zeros).  An LSTM fed only one of ``h`` / ``c`` gets zeros for the other."""
    spec = _spec_of(model)
    meta = _onnx_meta(model)
    fed: dict[tuple[str, str], _F32] = {}
    for st in meta.get("state_inputs") or []:
        if st["input"] in feeds:
            a = np.asarray(feeds[st["input"]], dtype=np.float32)
            fed[(st["layer"], st["part"])] = a.transpose(1, 0, 2) if st["layout"] else a
    out: list[Union[None, _F32, tuple[_F32, _F32]]] = []
    for layer in spec.recurrent_layers:
        h, c = fed.get((layer.name, "h")), fed.get((layer.name, "c"))
        if layer.num_directions == 2:  # a reverse node run as a bidirectional layer: a zero forward direction
            h, c = (a if a is None or a.shape[0] == 2 else np.concatenate([np.zeros_like(a), a]) for a in (h, c))
        ref = h if h is not None else c
        if ref is None:  # neither fed
            out.append(None)
            continue
        if layer.kind != "lstm":
            out.append(h)
            continue
        zeros = np.zeros(ref.shape[:2] + (layer.hidden_out if h is None else layer.units,), np.float32)
        out.append((zeros if h is None else h, zeros if c is None else c))
    return out


def output_to_onnx(model: Union[Model, ModelSpec], y: npt.ArrayLike, output: Optional[str] = None) -> npt.NDArray[Any]:
    """``predict``'s output (batch-first, features last) rearranged to the ONNX graph output's layout
    (``metadata["onnx"]["output_axes"]``: e.g. ``"TBF"``, ``"1BF"`` for a raw ``Y_h``, ``"TDBF"`` for a
    raw bidirectional ``Y``).  A model with several outputs: ``output`` names the graph output ``y``
    is (its final states are already in the graph's layout and come back unchanged)."""
    meta = _onnx_meta(model)
    axes = meta["output_axes"]
    if output is not None:
        found = [o["axes"] for o in meta.get("outputs") or [] if o["name"] == output]
        if not found:
            raise UnsupportedLayerError(f"output_to_onnx: {output!r} is not an output of the model")
        axes = found[0]
        outs = _spec_of(model).outputs or []  # (was model.spec: an AttributeError for a ModelSpec)
        if "S" in axes or axes == "BF" and any(o.name == output and o.kind != "output" for o in outs):
            return np.asarray(y)
    y = np.asarray(y)
    core = [c for c in "BT" if c in axes]
    if "D" in axes:
        y = y.reshape(y.shape[:-1] + (2, y.shape[-1] // 2))
        core += ["D", "F"]
    else:
        core += ["F"]
    order = [c for c in axes if c != "1"]
    y = np.transpose(y, [core.index(c) for c in order])
    return y.reshape([1 if c == "1" else y.shape[order.index(c)] for c in axes])
