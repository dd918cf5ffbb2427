"""ONNX import (issue 11, item 1): every model is checked against onnxruntime and/or the onnx reference
evaluator (and the ONNX backend node tests' own expected outputs), tolerance 1e-5.

* the 18 ONNX backend node tests for LSTM / GRU / RNN, regenerated from the installed onnx package's
  own generators: the ones using refused features are refused with the reason, the rest match, and
  every output of every case is also loaded on its own (``output=``) and matched;
* single recurrent nodes over every kind x direction x layout (x GRU linear_before_reset), with
  ``sequence_lens``, activations with alpha/beta, zero peepholes / initial states;
* ``torch.onnx.export`` (the TorchScript exporter, live) of nn.LSTM / GRU / RNN (layers, bidirectional,
  batch_first), Embedding + LSTM + last step + Linear, h_n[-1] -> Linear, cat(h_n[-2], h_n[-1]) -> Linear,
  fixed and dynamic axes; the dynamo exporter's graphs of the same patterns (committed files: it needs
  onnxscript and takes 20-35 s per export);
* ``com.microsoft.DynamicQuantizeLSTM`` from ``onnxruntime.quantization.quantize_dynamic``;
* refusals: one error listing every unsupported node (name, op type, reason);
* files: ``fastrnn.load("m.onnx")``, content detection, ``fastrnn convert``, external data, no onnx.
"""
import importlib
import io
import os
import sys
import warnings

import numpy as np
import pytest

import fastrnn
from conftest import assert_close, require

onnx = require("onnx")
ort = require("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fastrnn.converters.onnx import input_to_fastrnn, output_to_onnx, spec_from_onnx  # noqa: E402

OPSET = 14
FLOAT = TensorProto.FLOAT


# ------------------------------------------------------------------------------------------ helpers
def ort_run(model, feed):
    """onnxruntime's output.  onnxruntime refuses ``layout=1`` recurrent nodes: a one-node graph with
    layout 1 runs as its layout-0 twin on the transposed input (and initial state initializers), the
    output transposed back."""
    node = model.graph.node[0] if len(model.graph.node) == 1 else None
    if node is not None and any(a.name == "layout" and a.i == 1 for a in node.attribute):
        twin = onnx.ModelProto()
        twin.CopyFrom(model)
        next(a for a in twin.graph.node[0].attribute if a.name == "layout").i = 0
        states = set(list(node.input)[5:7]) - {""}
        for t in twin.graph.initializer:
            if t.name in states:
                t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(t).transpose(1, 0, 2)), t.name))
        xdims = next(i for i in twin.graph.input if i.name == "X").type.tensor_type.shape.dim
        d0, d1 = onnx.TensorShapeProto.Dimension(), onnx.TensorShapeProto.Dimension()
        d0.CopyFrom(xdims[0])
        d1.CopyFrom(xdims[1])
        xdims[0].CopyFrom(d1)
        xdims[1].CopyFrom(d0)
        feed = dict(feed, X=np.ascontiguousarray(feed["X"].transpose(1, 0, 2)))
        y = ort_run(twin, feed)
        return np.ascontiguousarray(y.transpose(2, 0, 1, 3) if y.ndim == 4 else y.transpose(1, 0, 2))
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feed)[0]


def ref_run(model, feed):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feed)[0]


def fr_run(model, x, lengths=None, **kw):
    """fastrnn on the graph's own input layout; the output in the graph's own output layout."""
    spec = spec_from_onnx(model, **kw)
    y = fastrnn.Model(spec).predict(input_to_fastrnn(spec, x), lengths=lengths)
    return output_to_onnx(spec, y), spec


def make_model(nodes, inputs, outputs, inits=(), opset=OPSET, extra_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def vi(name, shape, elem=FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def rnn_weights(rng, kind, nd, H, I):
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    return (rng.uniform(-0.6, 0.6, (nd, G * H, I)).astype(np.float32),
            rng.uniform(-0.6, 0.6, (nd, G * H, H)).astype(np.float32),
            rng.uniform(-0.4, 0.4, (nd, 2 * G * H)).astype(np.float32))


def rnn_model(rng, kind, *, direction="forward", layout=0, H=5, I=3, out="Y", lengths=False, extra=None,
              attrs=None, squeeze=False):
    """One recurrent node, weights as initializers, X (and sequence_lens) as graph inputs."""
    nd = 2 if direction == "bidirectional" else 1
    W, R, B = rnn_weights(rng, kind, nd, H, I)
    a = dict(hidden_size=H, direction=direction, **(attrs or {}))
    if layout:
        a["layout"] = layout
    names = ["X", "W", "R", "B", "L" if lengths else ""] + list(extra or {})
    node = helper.make_node(kind, names, ["Y", "Y_h"] + (["Y_c"] if kind == "LSTM" else []), name="rnn", **a)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"), numpy_helper.from_array(B, "B")]
    inits += [numpy_helper.from_array(v, k) for k, v in (extra or {}).items() if k]
    inputs = [vi("X", ["T", "N", I] if layout == 0 else ["N", "T", I])]
    if lengths:
        inputs.append(vi("L", ["N"], TensorProto.INT32))
    return make_model([node], inputs, [vi(out, None)], inits)


# ------------------------------------------------------------------------------------------ node tests
def _node_cases():
    """The LSTM / GRU / RNN cases of ``collect_testcases()``: their generators (importing a generator module
    runs its ``export_*`` functions), without importing the other 1,700 node test modules."""
    import onnx.backend.test.case.node as N

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prev, N._TargetOpType = N._TargetOpType, None
        try:
            for m in ("lstm", "gru", "rnn"):
                importlib.import_module(f"onnx.backend.test.case.node.{m}")
        finally:
            N._TargetOpType = prev
    return {c.name: c for c in N._NodeTestCases if c.model.graph.node[0].op_type in ("LSTM", "GRU", "RNN")}


NODE_CASES = _node_cases()
# the cases the converter refuses, and why
NODE_REFUSED: dict[str, str] = {}  # every backend node test loads (several outputs, peepholes)


def test_all_18_node_tests_are_generated():
    assert len(NODE_CASES) == 18, sorted(NODE_CASES)


def _with_constant_weights(case, zero_peepholes=False):
    """The node test's model with W, R, B (and initial states, P) as initializers of the case's values;
    X and sequence_lens stay graph inputs."""
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    ins = case.data_sets[0][0]
    feed = {i.name: v for i, v in zip(m.graph.input, ins)}
    keep = [i for i in m.graph.input if i.name in ("X", "sequence_lens")]
    if zero_peepholes:
        feed["P"] = np.zeros_like(feed["P"])
    m.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in feed.items() if k not in ("X", "sequence_lens"))
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m, feed


@pytest.mark.parametrize("name", sorted(NODE_CASES))
def test_onnx_node_test(name):
    case = NODE_CASES[name]
    m, feed = _with_constant_weights(case)
    expected = dict(zip([o.name for o in m.graph.output], case.data_sets[0][1]))
    if name in NODE_REFUSED:
        with pytest.raises(fastrnn.UnsupportedLayerError, match=NODE_REFUSED[name]):
            spec_from_onnx(m)
    else:  # every graph output at once (a tuple in the graph's order, states in the graph's layout)
        lens = feed.get("sequence_lens")
        spec = spec_from_onnx(m)
        got = fastrnn.Model(spec).predict(input_to_fastrnn(spec, feed["X"]), lengths=lens)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected)
        for (out, ref), y in zip(expected.items(), got):
            assert_close(output_to_onnx(spec, y, out if len(got) > 1 else None), ref, what=f"{name}:{out}")
    # each output on its own: matched (Y, Y_h), or refused with the reason (Y_c alone; peepholes)
    lens = feed.get("sequence_lens")
    for out, ref in expected.items():
        if out == "Y_c":
            with pytest.raises(fastrnn.UnsupportedLayerError, match="Y_c") as e:
                spec_from_onnx(m, output=out)
            assert "node " in str(e.value) or "graph output" in str(e.value)
            continue
        y, _ = fr_run(m, feed["X"], lengths=lens, output=out)
        assert_close(y, ref, what=f"{name}:{out}")
        ort_feed = {k: v for k, v in feed.items() if k in ("X", "sequence_lens")}
        assert_close(y, ort_run(_only_output(m, out), ort_feed), what=f"{name}:{out} vs onnxruntime")


def _only_output(m, out):
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    keep = [o for o in m2.graph.output if o.name == out]
    del m2.graph.output[:]
    m2.graph.output.extend(keep)
    return m2


def test_node_test_with_zero_peepholes_and_sequence_lens_matches_onnxruntime():
    m, feed = _with_constant_weights(NODE_CASES["test_lstm_with_peepholes"], zero_peepholes=True)
    x, lens = feed["X"], feed["sequence_lens"]
    y, spec = fr_run(m, x, lengths=lens)
    assert spec.metadata["onnx"]["lengths_input"] == "sequence_lens"
    assert_close(y, ort_run(m, {"X": x, "sequence_lens": lens}))


# ------------------------------------------------------------------------------------------ attributes
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_every_kind_direction_layout(kind, direction, layout, rng):
    """Y and Y_h, without and with sequence_lens, against onnxruntime (and the reference evaluator
    without lengths, which ignores sequence_lens)."""
    T, N, I = 6, 4, 3
    x = rng.standard_normal((T, N, I) if layout == 0 else (N, T, I)).astype(np.float32)
    lens = np.array([6, 3, 1, 5], np.int32)
    attrs = {"linear_before_reset": 1} if kind == "GRU" and layout == 0 else {}  # GRU: both reset rules
    for out in ("Y", "Y_h"):
        m = rnn_model(np.random.default_rng(1), kind, direction=direction, layout=layout, out=out, I=I, attrs=attrs)
        y, spec = fr_run(m, x)
        assert_close(y, ort_run(m, {"X": x}), what=f"{out} vs onnxruntime")
        assert_close(y, ref_run(m, {"X": x}), what=f"{out} vs reference evaluator")
        if direction == "reverse":  # Y used: a zero forward direction + the reverse one; Y_h: one reverse layer
            layer = spec.recurrent_layers[0]
            assert (layer.direction, layer.merge_mode) == (("bidirectional", "sum") if out == "Y" else ("reverse", "concat"))
        m = rnn_model(np.random.default_rng(1), kind, direction=direction, layout=layout, out=out, I=I, attrs=attrs,
                      lengths=True)
        y, _ = fr_run(m, x, lengths=lens)
        assert_close(y, ort_run(m, {"X": x, "L": lens}), what=f"{out} with sequence_lens vs onnxruntime")


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_gru_linear_before_reset(lbr, direction, rng):
    x = rng.standard_normal((7, 3, 3)).astype(np.float32)
    m = rnn_model(rng, "GRU", direction=direction, attrs={"linear_before_reset": lbr})
    y, spec = fr_run(m, x)
    assert spec.recurrent_layers[0].reset_after is bool(lbr)
    assert_close(y, ort_run(m, {"X": x}))
    assert_close(y, ref_run(m, {"X": x}))


@pytest.mark.parametrize("kind,acts,alpha,beta,expect", [
    ("RNN", ["Relu"], None, None, ("relu", None)),
    ("RNN", ["Softsign"], None, None, ("softsign", None)),
    ("RNN", ["Affine"], [1.0], [0.0], ("linear", None)),
    ("RNN", ["ScaledTanh"], [1.0], [1.0], ("tanh", None)),
    ("RNN", ["Elu"], None, None, ("elu", None)),
    ("RNN", ["LeakyRelu"], [0.2], None, ("leaky_relu", None)),
    ("LSTM", ["HardSigmoid", "Tanh", "Tanh"], None, None, ("tanh", "hard_sigmoid_tf2")),
    ("LSTM", ["HardSigmoid", "Softsign", "Softsign"], [1 / 6], [0.5], ("softsign", "hard_sigmoid")),
    ("GRU", ["Sigmoid", "Relu"], None, None, ("relu", "sigmoid")),
    ("GRU", ["HardSigmoid", "Softplus"], [0.2], [0.5], ("softplus", "hard_sigmoid_tf2")),
])
def test_activations_with_alpha_beta(kind, acts, alpha, beta, expect, rng):
    attrs = {"activations": acts}
    if alpha:
        attrs["activation_alpha"] = alpha
    if beta:
        attrs["activation_beta"] = beta
    x = rng.standard_normal((6, 3, 3)).astype(np.float32)
    for direction in ("forward", "bidirectional"):
        a = dict(attrs, activations=acts * (2 if direction == "bidirectional" else 1))
        if alpha:
            a["activation_alpha"] = alpha * (2 if direction == "bidirectional" else 1)
        if beta:
            a["activation_beta"] = beta * (2 if direction == "bidirectional" else 1)
        m = rnn_model(rng, kind, direction=direction, attrs=a)
        y, spec = fr_run(m, x)
        layer = spec.recurrent_layers[0]
        assert (layer.activation, layer.recurrent_activation if kind != "RNN" else None) == expect
        assert_close(y, ort_run(m, {"X": x}), what=f"{acts} {direction}")


def test_zero_initial_states_and_peepholes(rng):
    """Zero initializers, ConstantOfShape / Expand of zero over the batch size, zero peepholes."""
    T, N, I, H = 5, 3, 3, 4
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    nodes = [helper.make_node("Shape", ["X"], ["s"]),
             helper.make_node("Gather", ["s", "one"], ["b"], axis=0),
             helper.make_node("Concat", ["d", "b", "h"], ["shape"], axis=0),
             helper.make_node("ConstantOfShape", ["shape"], ["h0"]),
             helper.make_node("Expand", ["zero", "shape"], ["c0"])]
    W, R, B = rnn_weights(rng, "LSTM", 1, H, I)
    consts = {"one": np.array([1], np.int64), "d": np.array([1], np.int64), "h": np.array([H], np.int64),
              "zero": np.zeros((1, 1, 1), np.float32), "P": np.zeros((1, 3 * H), np.float32), "W": W, "R": R, "B": B}
    nodes.append(helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0", "P"], ["Y"], hidden_size=H))
    m = make_model(nodes, [vi("X", ["T", "N", I])], [vi("Y", None)],
                   [numpy_helper.from_array(v, k) for k, v in consts.items()])
    y, _ = fr_run(m, x)
    assert_close(y, ort_run(m, {"X": x}))


# ------------------------------------------------------------------------------------------ refusals
def test_refused_features_are_listed_in_one_error(rng):
    """Every unsupported node of the graph, by name, op type and reason, in one error."""
    H, I = 4, 3
    W, R, B = rnn_weights(rng, "LSTM", 1, H, I)
    Wg, Rg, Bg = rnn_weights(rng, "GRU", 1, H, H)
    consts = {"W": W, "R": R, "B": B, "Wg": Wg, "Rg": Rg, "Bg": Bg,
              "h0": np.arange(2 * H, dtype=np.float32).reshape(1, 2, H), "k": np.array([2.0], np.float32)}
    nodes = [
        helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "", "Pin"], ["Y1"], name="lstm_bad", hidden_size=H,
                         clip=3.0, input_forget=1, activations=["Sigmoid", "Affine", "Relu"]),
        helper.make_node("Squeeze", ["Y1", "ax"], ["s1"], name="sq"),
        helper.make_node("GRU", ["s1", "Wg", "Rg", "Bg", "", "hin"], ["Y2"], name="gru_state_in", hidden_size=H,
                         activations=["Gelu", "Tanh"]),
        helper.make_node("Squeeze", ["Y2", "ax"], ["s2"]),
        helper.make_node("Mul", ["s2", "k"], ["y"], name="scale"),
    ]
    consts["ax"] = np.array([1], np.int64)
    m = make_model(nodes, [vi("X", ["T", 2, I]), vi("hin", [1, 2, H]), vi("Pin", [1, 3 * H])], [vi("y", None)],
                   [numpy_helper.from_array(v, k) for k, v in consts.items()])
    with pytest.raises(fastrnn.UnsupportedLayerError) as e:
        spec_from_onnx(m)
    msg = str(e.value)
    for part in ("node 'lstm_bad' (LSTM)", "peepholes P must be a constant", "initial_h is a constant whose batch rows "
                 "differ", "Affine: needs activation_alpha and activation_beta", "node 'gru_state_in' (GRU)",
                 "'Gelu' is not an ONNX recurrent activation", "node 'scale' (Mul)",
                 "3 unsupported node(s)"):
        assert part in msg, (part, msg)


def test_refused_layouts_and_activations(rng):
    """Softmax over time, a Gather of batch rows, Reshape merging batch and time; a reverse node whose
    output sequence runs as a zero forward direction (with the default functions: sigmoid(0) != 0)
    and the reverse one."""
    w = rng.standard_normal((3, 4)).astype(np.float32)
    c = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0, np.int64), "zero"),
         numpy_helper.from_array(np.array([-1, 4], np.int64), "flat")]
    for nodes, why in (([helper.make_node("Softmax", ["h"], ["y"], axis=1)], "not over the feature axis"),
                       ([helper.make_node("Gather", ["h", "zero"], ["y"], axis=0)], "along axis 0 .*input 'X': batch or time"),
                       ([helper.make_node("Reshape", ["h", "flat"], ["y"])], "merges the batch or time axis")):
        m = make_model([helper.make_node("MatMul", ["X", "w"], ["h"]), *nodes], [vi("X", ["N", "T", 3])],
                       [vi("y", None)], c)
        with pytest.raises(fastrnn.UnsupportedLayerError, match=why):
            spec_from_onnx(m)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    m = rnn_model(rng, "RNN", direction="reverse", attrs={"activations": ["Sigmoid"]})
    y, spec = fr_run(m, x)
    assert spec.recurrent_layers[0].gate_activations == [[["Tanh", 0.0, 0.0]], [["Sigmoid", 0.0, 0.0]]]
    assert_close(y, ort_run(m, {"X": x}))
    m = rnn_model(rng, "RNN", direction="reverse", attrs={"activations": ["Sigmoid"]}, out="Y_h")
    assert_close(fr_run(m, x)[0], ort_run(m, {"X": x}))  # only its final state: one reverse direction


def test_several_outputs_and_y_c_and_unknown_ops(rng):
    m = rnn_model(rng, "LSTM")
    m.graph.output.append(vi("Y_h", None))
    assert [o.name for o in spec_from_onnx(m).outputs] == ["Y", "Y_h"]  # matched in test_multi_output.py
    with pytest.raises(fastrnn.UnsupportedLayerError, match="not a graph output"):
        spec_from_onnx(m, output="nope")
    m = rnn_model(rng, "LSTM", out="Y_c")
    with pytest.raises(fastrnn.UnsupportedLayerError, match="cell state Y_c is a model output only beside"):
        spec_from_onnx(m)
    m = make_model([helper.make_node("Loop", ["", "", "X"], ["y"], name="loop")], [vi("X", ["N", 3])],
                   [vi("y", None)])
    with pytest.raises(fastrnn.UnsupportedLayerError, match=r"node 'loop' \(Loop\): operator not supported"):
        spec_from_onnx(m)


def test_output_to_onnx_of_a_spec_with_a_final_state_output(rng):
    """output_to_onnx(spec, y, name) of a ModelSpec (not a Model) whose output ``name`` is one direction's
    final state (B, F): returned as it is (was an AttributeError: the spec has no ``.spec``)."""
    m = rnn_model(rng, "GRU", out="Y")
    m.graph.node.append(helper.make_node("Squeeze", ["Y_h", "ax0"], ["h"]))
    m.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "ax0"))
    m.graph.output.append(vi("h", None))
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    expected = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})
    spec = spec_from_onnx(m)
    y, h = fastrnn.Model(spec).predict(input_to_fastrnn(spec, x))
    assert_close(output_to_onnx(spec, y, "Y"), expected[0])
    assert_close(output_to_onnx(spec, h, "h"), expected[1])


def test_slicing_the_batch_axis_of_a_final_state_is_refused(rng):
    """Y_h[:, -1:] (the last batch row of a final state) is refused with the reason (was a TypeError)."""
    m = rnn_model(rng, "LSTM", out="y")
    m.graph.node.append(helper.make_node("Slice", ["Y_h", "st", "en", "ax"], ["y"], name="rows"))
    m.graph.initializer.extend([numpy_helper.from_array(np.array([v], np.int64), k)
                                for k, v in (("st", -1), ("en", 2 ** 63 - 1), ("ax", 1))])
    with pytest.raises(fastrnn.UnsupportedLayerError, match=r"node 'rows' \(Slice\): slices part of the B axis of a "
                                                             "final state"):
        spec_from_onnx(m)


def test_concat_of_filled_tensors_along_a_missing_axis_is_malformed():
    """Concat(axis=5) of two rank-2 ConstantOfShape outputs: a ModelFormatError naming the node (was an
    IndexError)."""
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["z"]), helper.make_node("Concat", ["z", "z"], ["zz"], axis=5),
             helper.make_node("Add", ["X", "zz"], ["y"])]
    m = make_model(nodes, [vi("X", ["N", 3])], [vi("y", None)], [numpy_helper.from_array(np.array([1, 3], np.int64), "s")])
    with pytest.raises(fastrnn.ModelFormatError, match=r"node '#1' \(Concat\): axis 5 for rank 2"):
        spec_from_onnx(m)


def test_constant_sequence_lens_is_refused(rng):
    m = rnn_model(rng, "RNN")
    m.graph.node[0].input[4] = "L"
    m.graph.initializer.append(numpy_helper.from_array(np.array([2, 3], np.int32), "L"))
    with pytest.raises(fastrnn.UnsupportedLayerError, match="sequence_lens must be a 1-D integer graph input"):
        spec_from_onnx(m)


def _ort_refuses(m, match):
    with pytest.raises(Exception, match=match):
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def test_attributes_an_op_does_not_define_are_refused_like_onnxruntime(rng):
    """An attribute the op's schema (at the model's opset) does not define: onnxruntime and onnx.checker
    refuse the model; so does fastrnn, naming the node, op and attribute, before converting its value
    (review 2026-12-05, section 3)."""
    m = rnn_model(rng, "LSTM")
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    assert_close(fr_run(m, x)[0], ort_run(m, {"X": x}))  # the model itself loads and matches
    ident = helper.make_node("Identity", ["X0"], ["X"], name="id", junk=[300, 300])
    good = make_model([helper.make_node("Identity", ["X0"], ["X"], name="id"), *m.graph.node],
                      [vi("X0", ["T", "N", 3])], [vi("Y", ["T", 1, "N", 5])], m.graph.initializer)
    onnx.checker.check_model(good)
    bad = make_model([ident, *m.graph.node], [vi("X0", ["T", "N", 3])], [vi("Y", ["T", 1, "N", 5])],
                     m.graph.initializer)
    _ort_refuses(bad, "Unrecognized attribute: junk for operator Identity")
    with pytest.raises(onnx.checker.ValidationError, match="Unrecognized attribute: junk for operator Identity"):
        onnx.checker.check_model(bad)
    assert_close(fr_run(good, x)[0], ort_run(good, {"X0": x}))
    with pytest.raises(fastrnn.ModelFormatError, match=r"node 'id' \(Identity\): attribute 'junk' is not defined "
                                                        r"for Identity \(opset 14; it defines none\)"):
        spec_from_onnx(bad)
    # on the recurrent node itself; and layout, which LSTM defines from opset 14 only
    bad = rnn_model(rng, "LSTM", attrs={"junk": 1.5})
    _ort_refuses(bad, "Unrecognized attribute: junk for operator LSTM")
    with pytest.raises(fastrnn.ModelFormatError, match=r"node 'rnn' \(LSTM\): attribute 'junk' is not defined"):
        spec_from_onnx(bad)
    old = rnn_model(rng, "GRU", layout=1)
    old.opset_import[0].version = 13
    _ort_refuses(old, "Unrecognized attribute: layout for operator GRU")
    with pytest.raises(fastrnn.ModelFormatError, match=r"node 'rnn' \(GRU\): attribute 'layout' is not defined "
                                                        r"for GRU \(opset 13"):
        spec_from_onnx(old)
    # more inputs than the op takes
    two = make_model([helper.make_node("Identity", ["X0", "X0"], ["X"], name="id"), *m.graph.node],
                     [vi("X0", ["T", "N", 3])], [vi("Y", None)], m.graph.initializer)
    _ort_refuses(two, "Identity")
    with pytest.raises(fastrnn.ModelFormatError, match=r"node 'id' \(Identity\): 2 input\(s\): Identity takes 1"):
        spec_from_onnx(two)


def test_node_lists_are_bounded_before_they_are_walked(rng):
    """Inputs + outputs + attributes of a node, and the entries of one attribute, are bounded (4096)
    before anything walks or converts them, for an ``onnx.ModelProto`` too (no pre-scan there); a node
    over 64 KiB in a file or bytes is refused before the protobuf is parsed."""
    m = rnn_model(rng, "LSTM")
    many = make_model([helper.make_node("Concat", ["X0"] * 5000, ["X"], name="cat", axis=2), *m.graph.node],
                      [vi("X0", ["T", "N", 3])], [vi("Y", None)], m.graph.initializer)
    with pytest.raises(fastrnn.ModelFormatError, match=r"<onnx model>: node 'cat' \(Concat\): inputs, outputs and "
                                                        r"attributes: 5,002 is more than fastrnn reads"):
        spec_from_onnx(many)
    del many.graph.node[0].input[:]
    many.graph.node[0].input.extend(["X0"] * 30_000)  # 120 KB
    with pytest.raises(fastrnn.ModelFormatError, match=r"<onnx model>: ONNX node #0 is 120,0\d\d bytes, more than "
                                                        r"fastrnn reads for one node \(at most 65,536"):
        spec_from_onnx(many.SerializeToString())
    alphas = rnn_model(rng, "RNN", attrs={"activations": ["Affine"], "activation_alpha": [1.0] * 5000,
                                          "activation_beta": [0.0]})
    with pytest.raises(fastrnn.ModelFormatError, match=r"node 'rnn' \(RNN\): entries of attribute "
                                                        r"'activation_alpha': 5,000 is more than fastrnn reads"):
        spec_from_onnx(alphas)
    ok = rnn_model(rng, "RNN", attrs={"activations": ["Affine"], "activation_alpha": [1.0], "activation_beta": [0.0]})
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    assert_close(fr_run(ok, x)[0], ort_run(ok, {"X": x}))


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "float_data"])
def test_constant_nodes_over_64_kib_load(raw, rng, tmp_path):
    """Weights in Constant nodes (W 80 KiB, R 83 KiB, as raw_data or packed float_data) are not
    bounded by the per-node byte limit (their tensor data is charged to the budget when materialised):
    the file matches onnxruntime."""
    m = rnn_model(rng, "LSTM", H=72, I=70)
    consts = [helper.make_node("Constant", [], [t.name], name=f"c{t.name}",
                               value=helper.make_tensor(t.name, FLOAT, t.dims, numpy_helper.to_array(t).ravel(),
                                                        raw=raw)) for t in m.graph.initializer]
    m = make_model([*consts, *m.graph.node], list(m.graph.input), list(m.graph.output))
    assert max(n.ByteSize() for n in m.graph.node) > 80_000
    p = str(tmp_path / "c.onnx")
    onnx.save(m, p)
    x = rng.standard_normal((5, 2, 70)).astype(np.float32)
    model = fastrnn.load(p)
    assert_close(output_to_onnx(model.spec, model.predict(input_to_fastrnn(model.spec, x))), ort_run(m, {"X": x}))


# ------------------------------------------------------------------------------------------ ops around
def test_dense_head_ops_against_onnxruntime(rng):
    """Gather last step, Gemm (transA / transB / alpha / beta), MatMul + Add (bias first), Transpose,
    Reshape / Flatten, Slice[-1:], Cast, Dropout, Clip, Elu folded into the dense layers, LogSoftmax."""
    T, N, I, H = 6, 3, 3, 4
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    W, R, B = rnn_weights(rng, "GRU", 2, H, I)
    c = {"W": W, "R": R, "B": B, "w1": rng.standard_normal((2 * H, 5)).astype(np.float32),
         "b1": rng.standard_normal(5).astype(np.float32), "w2": rng.standard_normal((6, 5)).astype(np.float32),
         "b2": rng.standard_normal((1, 6)).astype(np.float32), "perm_last": np.array([-1], np.int64),
         "end": np.array([2 ** 62], np.int64), "ax1": np.array([1], np.int64), "shp": np.array([0, 0, -1], np.int64),
         "lo": np.array(-1.0, np.float32), "hi": np.array(1.0, np.float32)}
    nodes = [
        helper.make_node("Transpose", ["X"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["xt", "W", "R", "B"], ["Y"], hidden_size=H, direction="bidirectional",
                         linear_before_reset=1),
        helper.make_node("Transpose", ["Y"], ["yt"], perm=[2, 0, 1, 3]),  # (N, T, D, H)
        helper.make_node("Reshape", ["yt", "shp"], ["seq"]),  # (N, T, 2H)
        helper.make_node("Dropout", ["seq"], ["seq2"]),
        helper.make_node("MatMul", ["seq2", "w1"], ["mm"]),
        helper.make_node("Add", ["b1", "mm"], ["lin"]),
        helper.make_node("Clip", ["lin", "lo", "hi"], ["cl"]),
        helper.make_node("Slice", ["cl", "perm_last", "end", "ax1"], ["last"]),  # (N, 1, 5)
        helper.make_node("Flatten", ["last"], ["flat"], axis=1),  # (N, 5)
        helper.make_node("Cast", ["flat"], ["f32"], to=FLOAT),
        helper.make_node("Transpose", ["f32"], ["id"], perm=[1, 0]),  # (5, N): Gemm transA takes it back
        helper.make_node("Gemm", ["id", "w2", "b2"], ["g"], transA=1, transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Elu", ["g"], ["e"]),
        helper.make_node("LogSoftmax", ["e"], ["y"], axis=-1),
    ]
    m = make_model(nodes, [vi("X", ["N", "T", I])], [vi("y", None)],
                   [numpy_helper.from_array(v, k) for k, v in c.items()])
    y, spec = fr_run(m, x)
    assert [l.kind for l in spec.layers] == ["gru", "dense", "last_step", "dense", "activation"]
    assert_close(y, ort_run(m, {"X": x}))
    assert_close(y, ref_run(m, {"X": x}))


@pytest.mark.parametrize("op,attrs,act", [
    ("Relu", {}, "relu"), ("Tanh", {}, "tanh"), ("Sigmoid", {}, "sigmoid"), ("Softplus", {}, "softplus"),
    ("Softsign", {}, "softsign"), ("Selu", {}, "selu"), ("Elu", {}, "elu"), ("LeakyRelu", {"alpha": 0.2}, "leaky_relu"),
    ("HardSigmoid", {}, "hard_sigmoid_tf2"), ("HardSigmoid", {"alpha": 1 / 6}, "hard_sigmoid"),
    ("HardSwish", {}, "hard_silu"), ("Mish", {}, "mish"), ("Exp", {}, "exponential"),
    ("Gelu", {}, "gelu"), ("Gelu", {"approximate": "tanh"}, "gelu_tanh"), ("Softmax", {"axis": 2}, "softmax"),
])
def test_elementwise_activation(op, attrs, act, rng):
    x = rng.standard_normal((3, 5, 4)).astype(np.float32) * 2
    w = rng.standard_normal((4, 6)).astype(np.float32) * 0.5
    nodes = [helper.make_node("MatMul", ["X", "w"], ["h"]), helper.make_node(op, ["h"], ["y"], **attrs)]
    m = make_model(nodes, [vi("X", ["N", "T", 4])], [vi("y", None)], [numpy_helper.from_array(w, "w")], opset=20)
    y, spec = fr_run(m, x)
    assert spec.layers[-1].activation == act
    assert_close(y, ort_run(m, {"X": x}), what=op)


def test_reverse_sequence_output_feeds_a_stacked_layer(rng):
    """A reverse node's Y (a sequence) into a second node, then the last step; with sequence_lens."""
    T, N, I, H = 7, 4, 3, 5
    W1, R1, B1 = rnn_weights(rng, "LSTM", 1, H, I)
    W2, R2, B2 = rnn_weights(rng, "RNN", 1, H, H)
    c = {"W1": W1, "R1": R1, "B1": B1, "W2": W2, "R2": R2, "B2": B2, "ax": np.array([1], np.int64),
         "m1": np.array(-1, np.int64)}
    nodes = [helper.make_node("LSTM", ["X", "W1", "R1", "B1", "L"], ["Y1"], hidden_size=H, direction="reverse"),
             helper.make_node("Squeeze", ["Y1", "ax"], ["s1"]),
             helper.make_node("RNN", ["s1", "W2", "R2", "B2", "L"], ["Y2"], hidden_size=H),
             helper.make_node("Squeeze", ["Y2", "ax"], ["s2"]),
             helper.make_node("Gather", ["s2", "m1"], ["y"], axis=0)]
    m = make_model(nodes, [vi("X", ["T", "N", I]), vi("L", ["N"], TensorProto.INT32)], [vi("y", None)],
                   [numpy_helper.from_array(v, k) for k, v in c.items()])
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    lens = np.array([7, 2, 5, 1], np.int32)
    y, spec = fr_run(m, x, lengths=lens)
    assert [l.kind for l in spec.layers] == ["lstm", "simple_rnn", "last_step"]
    assert_close(y, ort_run(m, {"X": x, "L": lens}))
    full = np.full(N, T, np.int32)
    y, _ = fr_run(m, x)
    assert_close(y, ort_run(m, {"X": x, "L": full}))


# ------------------------------------------------------------------------------------------ torch.onnx.export
def _export(module, x, dynamic, **kw):
    torch = require("torch")
    f = io.BytesIO()
    dyn = {"x": {0: "a", 1: "b"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(x),), f, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes=dyn, **kw)
    return onnx.load_from_string(f.getvalue())


def _torch_modules():
    torch = require("torch")
    nn = torch.nn

    class Out(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0]

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.fc = nn.Embedding(20, 6), nn.LSTM(6, 8, num_layers=2, batch_first=True), nn.Linear(8, 5)

        def forward(self, x):
            out, _ = self.rnn(self.emb(x))
            return self.fc(out[:, -1])

    class HLast(nn.Module):
        def __init__(self, cls, bi, cat=False):
            super().__init__()
            self.rnn, self.cat = cls(4, 6, num_layers=2, batch_first=True, bidirectional=bi), cat
            self.fc = nn.Linear(12 if cat else 6, 3)

        def forward(self, x):
            _, h = self.rnn(x)
            h = h[0] if isinstance(h, tuple) else h
            h = torch.cat((h[-2], h[-1]), 1) if self.cat else h[-1]
            return torch.softmax(self.fc(torch.relu(h)), -1)

    return nn, Out, LM, HLast


@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed", "dynamic"])
def test_torch_export_recurrent_modules(dynamic, rng):
    """nn.LSTM / GRU / RNN(relu), 2 layers, bidirectional or not, batch_first or not, exported and
    loaded: equal to onnxruntime and to torch.  Dynamic axes: run at other batch and time sizes."""
    torch = require("torch")
    torch.manual_seed(0)
    nn, Out, _, _ = _torch_modules()
    for cls, kw in ((nn.LSTM, {}), (nn.GRU, {}), (nn.RNN, {"nonlinearity": "relu"})):
        for bi, bf in ((False, True), (True, False), (True, True)):
            mod = Out(cls(4, 6, num_layers=2, bidirectional=bi, batch_first=bf, **kw)).eval()
            shape = (2, 5, 4) if bf else (5, 2, 4)
            m = _export(mod, rng.standard_normal(shape).astype(np.float32), dynamic)
            run_shape = ((3, 9, 4) if bf else (9, 3, 4)) if dynamic else shape
            x = rng.standard_normal(run_shape).astype(np.float32)
            y, spec = fr_run(m, x)
            assert spec.metadata["onnx"]["input_axes"] == ("BTF" if bf else "TBF")
            what = f"{cls.__name__} bi={bi} batch_first={bf}"
            assert_close(y, ort_run(m, {"x": x}), what=what + " vs onnxruntime")
            with torch.no_grad():
                assert_close(y, mod(torch.from_numpy(x)).numpy(), what=what + " vs torch")


def test_torch_export_bare_module_needs_an_output_choice(rng):
    torch = require("torch")
    lstm = torch.nn.LSTM(4, 6, batch_first=True)
    m = _export(lstm, rng.standard_normal((2, 5, 4)).astype(np.float32), True)
    assert len(m.graph.output) == 3  # (out, h_n, c_n): all three load (test_multi_output.py), or one by name
    x = rng.standard_normal((3, 7, 4)).astype(np.float32)
    y, _ = fr_run(m, x, output="y")
    with torch.no_grad():
        assert_close(y, lstm(torch.from_numpy(x))[0].numpy())


@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed", "dynamic"])
def test_torch_export_heads(dynamic, rng):
    """Embedding + LSTM + out[:, -1] + Linear; h_n[-1] -> Linear (unidirectional, and bidirectional =
    the backward direction); cat(h_n[-2], h_n[-1]) -> Linear; batch size 1 when fixed."""
    torch = require("torch")
    torch.manual_seed(1)
    nn, _, LM, HLast = _torch_modules()
    B = 3 if dynamic else 1
    ids = rng.integers(0, 20, (B, 7))
    cases = [("LM", LM(), ids), ("h_n[-1] GRU", HLast(nn.GRU, False), None),
             ("h_n[-1] bi LSTM", HLast(nn.LSTM, True), None), ("cat(h_n[-2], h_n[-1]) bi GRU", HLast(nn.GRU, True, True), None)]
    for what, mod, xin in cases:
        x = xin if xin is not None else rng.standard_normal((B, 7, 4)).astype(np.float32)
        m = _export(mod, x, dynamic)
        if dynamic:
            x = rng.integers(0, 20, (4, 11)) if xin is not None else rng.standard_normal((4, 11, 4)).astype(np.float32)
        y, spec = fr_run(m, x)
        assert_close(y, ort_run(m, {"x": x}), what=what + " vs onnxruntime")
        with torch.no_grad():
            assert_close(y, mod(torch.from_numpy(x)).numpy(), what=what + " vs torch")
        if what == "LM":
            assert [l.kind for l in spec.layers] == ["embedding", "lstm", "lstm", "last_step", "dense"]


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "onnx")
DYNAMO_FIXTURES = {  # file -> (input, time steps the export allows)
    "dynamo_lstm2_bidirectional.onnx": ("float", None),
    "dynamo_embedding_lstm_last_step.onnx": ("ids", 5),  # torch.export specialized the time axis to 5
    "dynamo_gru_bidirectional_h_n_last.onnx": ("float", None),
}


@pytest.mark.parametrize("name", sorted(DYNAMO_FIXTURES))
def test_torch_dynamo_export(name, rng):
    """Graphs written by the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, torch 2.13 +
    onnxscript 0.7.2; 20-35 s per export here, so they are committed: ``python tests/test_onnx.py
    --make-dynamo-fixtures`` rewrites them), loaded from the file at another batch size."""
    path = os.path.join(DATA, name)
    kind, T = DYNAMO_FIXTURES[name]
    x = rng.integers(0, 20, (3, T or 9)) if kind == "ids" else rng.standard_normal((3, T or 9, 4)).astype(np.float32)
    model = fastrnn.load(path)
    y = output_to_onnx(model.spec, model.predict(x))
    m = onnx.load(path)
    assert m.producer_name == "pytorch" and {n.op_type for n in m.graph.node} & {"LSTM", "GRU"}
    assert_close(y, ort_run(m, {"x": x}), what="vs onnxruntime")
    assert_close(y, ref_run(m, {"x": x}), what="vs reference evaluator")


def _make_dynamo_fixtures():  # pragma: no cover - run by hand (needs onnxscript)
    import torch

    nn, Out, LM, HLast = _torch_modules()
    torch.manual_seed(0)
    cases = {"dynamo_lstm2_bidirectional.onnx": (Out(nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)),
                                                 torch.randn(2, 5, 4)),
             "dynamo_embedding_lstm_last_step.onnx": (LM(), torch.randint(0, 20, (2, 5))),
             "dynamo_gru_bidirectional_h_n_last.onnx": (HLast(nn.GRU, True), torch.randn(2, 5, 4))}
    for name, (mod, x) in cases.items():
        prog = torch.onnx.export(mod.eval(), (x,), dynamo=True, input_names=["x"], output_names=["y"],
                                 dynamic_shapes=({0: torch.export.Dim("batch"), 1: torch.export.Dim("time")},))
        m = prog.model_proto
        m.producer_name = "pytorch"
        del m.graph.value_info[:], m.metadata_props[:]
        for n in m.graph.node:
            n.doc_string = ""
            del n.metadata_props[:]
        onnx.save(m, os.path.join(DATA, name))


# ------------------------------------------------------------------------------------------ DynamicQuantizeLSTM
def test_dynamic_quantize_lstm(rng, tmp_path):
    """quantize_dynamic's DynamicQuantizeLSTM: weights dequantized at load.  Exact (1e-5) against the
    reference evaluator running a float LSTM with the same dequantized weights; against onnxruntime
    (which also quantizes the activations at run time) within its own quantization error."""
    torch = require("torch")

    nn, Out, _, _ = _torch_modules()
    torch.manual_seed(2)
    mod = Out(nn.LSTM(4, 8, num_layers=1, bidirectional=True, batch_first=True)).eval()
    x = rng.standard_normal((3, 9, 4)).astype(np.float32)
    src = tmp_path / "f.onnx"
    onnx.save(_export(mod, x, True), str(src))
    for per_channel in (False, True):
        q = tmp_path / f"q{int(per_channel)}.onnx"
        quantize_lstm_int8(src, q, per_channel)
        qm = onnx.load(str(q))
        node = next(n for n in qm.graph.node if n.op_type == "DynamicQuantizeLSTM")
        model = fastrnn.load(str(q))
        y = output_to_onnx(model.spec, model.predict(x))
        # the float twin: LSTM with W = (Wq - zp) * scale, transposed to [D, 4H, I]
        inits = {t.name: numpy_helper.to_array(t) for t in qm.graph.initializer}

        def deq(i):
            w, s, z = (inits[node.input[k]] for k in i)
            nd = w.shape[0]
            return ((w.astype(np.float32) - z.reshape(nd, 1, -1)) * s.reshape(nd, 1, -1)).transpose(0, 2, 1)

        fm = onnx.ModelProto()
        fm.CopyFrom(qm)
        fnode = next(n for n in fm.graph.node if n.op_type == "DynamicQuantizeLSTM")
        fnode.op_type, fnode.domain = "LSTM", ""
        del fnode.input[8:]
        fnode.input[1], fnode.input[2] = "Wf", "Rf"
        fm.graph.initializer.extend([numpy_helper.from_array(deq((1, 8, 9)), "Wf"),
                                     numpy_helper.from_array(deq((2, 10, 11)), "Rf")])
        assert_close(y, ref_run(fm, {"x": x}), what="vs float LSTM with the dequantized weights")
        yq = ort_run(qm, {"x": x})
        with torch.no_grad():
            yt = mod(torch.from_numpy(x)).numpy()
        ort_err, our_err, between = (float(np.abs(a - b).max()) for a, b in ((yq, yt), (y, yt), (y, yq)))
        print(f"per_channel={per_channel}: |ort - float| {ort_err:.3g}, |fastrnn - float| {our_err:.3g}, "
              f"|fastrnn - ort| {between:.3g}")
        assert our_err < ort_err and between <= ort_err + our_err, (ort_err, our_err, between)


# ------------------------------------------------------------------------------------------ files and CLI
def _lstm_file(rng, path, name="m.onnx"):
    m = rnn_model(rng, "LSTM", layout=1, out="Y")
    p = os.path.join(path, name)
    onnx.save(m, p)
    return m, p


def test_load_convert_and_detection(rng, tmp_path, capsys):
    from fastrnn.cli import main
    from fastrnn.io.detect import detect_format

    m, p = _lstm_file(rng, str(tmp_path))
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    ref = ort_run(m, {"X": x})
    assert_close(output_to_onnx(fastrnn.load(p).spec, fastrnn.load(p).predict(x)), ref)
    bare = tmp_path / "model.bin"  # no suffix: told by content
    bare.write_bytes(open(p, "rb").read())
    assert detect_format(str(bare)) == "onnx"
    assert main(["convert", str(bare), str(tmp_path / "m.fastrnn")]) == 0
    again = fastrnn.load(str(tmp_path / "m.fastrnn"))
    assert again.spec.metadata["onnx"]["output_axes"] == "BT1F"
    assert_close(output_to_onnx(again.spec, again.predict(x)), ref)
    # garbage named .onnx: an ONNX error naming the file; other options refused
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(fastrnn.ModelFormatError, match="junk.onnx.*not a readable ONNX model"):
        fastrnn.load(str(junk))
    with pytest.raises(fastrnn.UnsupportedLayerError, match="architecture.*do not apply to an ONNX file"):
        fastrnn.load(p, architecture="lstm")
    assert main(["convert", str(junk), str(tmp_path / "j.fastrnn")]) == 2
    assert "fastrnn: error:" in capsys.readouterr().err


def test_without_the_onnx_package(rng, tmp_path, monkeypatch):
    _, p = _lstm_file(rng, str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(fastrnn.UnsupportedLayerError, match=r'm.onnx.*pip install "fastrnn\[onnx\]"'):
        fastrnn.load(p)


def test_external_data_inside_the_directory_only(rng, tmp_path):
    m, _ = _lstm_file(rng, str(tmp_path))
    d = tmp_path / "ext"
    d.mkdir()
    ext = onnx.ModelProto()
    ext.CopyFrom(m)
    onnx.save(ext, str(d / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    assert_close(output_to_onnx(fastrnn.load(str(d / "m.onnx")).spec, fastrnn.load(str(d / "m.onnx")).predict(x)),
                 ort_run(m, {"X": x}))
    # the same tensors named through a path that leaves the directory (a symlink) are refused
    (d / "w.bin").rename(tmp_path / "w.bin")
    os.symlink(tmp_path / "w.bin", d / "w.bin")
    with pytest.raises(fastrnn.UnsupportedLayerError, match="not a regular file inside the model's directory"):
        fastrnn.load(str(d / "m.onnx"))
    mm = onnx.load(str(d / "m.onnx"), load_external_data=False)
    with pytest.raises(fastrnn.UnsupportedLayerError, match="external data needs the model's file"):
        spec_from_onnx(mm)


if __name__ == "__main__" and "--make-dynamo-fixtures" in sys.argv:  # pragma: no cover
    _make_dynamo_fixtures()


def test_bfloat16_initializers_widen_as_onnx_reads_them():
    """A BFLOAT16 initializer (raw bytes) becomes the float32 that onnx.numpy_helper reads: normal,
    negative, infinite and subnormal bit patterns (quantize.from_bf16, the one widening)."""
    from onnx import TensorProto, helper, numpy_helper

    from fastrnn.converters import onnx as fo
    from fastrnn.io.budget import LoadBudget

    bits = np.array([0x3FC0, 0xC010, 0x7F80, 0x0001, 0x8000, 0x4049], np.uint16)
    t = helper.make_tensor("w", TensorProto.BFLOAT16, [2, 3], bits.tobytes(), raw=True)
    got = fo._Tensors(onnx, LoadBudget.for_bytes(b"\0" * 64, "t"), None, "t").array(t, "w")
    expected = numpy_helper.to_array(t).astype(np.float32)
    assert got.dtype == np.float32 and got.shape == (2, 3)
    np.testing.assert_array_equal(got, expected)


def quantize_lstm_int8(src, dst, per_channel):
    """onnxruntime's quantize_dynamic of the LSTM nodes only (DynamicQuantizeLSTM, QInt8 weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"],
                         per_channel=per_channel)
