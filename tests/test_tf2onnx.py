"""ONNX files written by tf2onnx 1.17 from Keras models (issue 11, item 1: "the graphs exporters really write").

Each model is exported once per module (``tf2onnx.convert.from_function`` on a ``tf.function`` for
Keras 3, whose models ``from_keras`` cannot trace; ``tf2onnx.convert.from_keras`` for tf_keras, Keras 2),
loaded with ``fastrnn.load(path)`` and compared with onnxruntime on the same file and with Keras
(tolerance 1e-5).  tf2onnx rewrites Keras LSTM (and tf_keras GRU with reset_after=True) into ONNX
LSTM / GRU nodes with Transpose / Slice / Squeeze / Concat / Expand around them; what it leaves as an
ONNX ``Loop`` (Keras 3 GRU and SimpleRNN) is refused with the node listed and the way out named.
"""
import os

import numpy as np
import pytest

import fastrnn
from conftest import assert_close, require

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf2onnx = require("tf2onnx")
tf = require("tensorflow")
keras = require("keras")
ort = require("onnxruntime")

T, B, F = 7, 3, 5


def keras3_models():
    L = keras.layers
    keras.utils.set_random_seed(0)
    return {
        # stacked LSTM: sequence output into a last-output LSTM, then Dense (MatMul + Add) and softmax
        "lstm_stack": keras.Sequential([keras.Input((T, F)), L.LSTM(8, return_sequences=True), L.LSTM(6),
                                        L.Dense(4, activation="softmax")]),
        # Bidirectional: one bidirectional ONNX LSTM, each direction sliced out of Y and concatenated
        "bi_lstm": keras.Sequential([keras.Input((T, F)), L.Bidirectional(L.LSTM(8, return_sequences=True))]),
        # without return_sequences: the forward direction's last step and the backward one's first step
        "bi_lstm_last": keras.Sequential([keras.Input((T, F)), L.Bidirectional(L.LSTM(8)), L.Dense(3)]),
        "gru": keras.Sequential([keras.Input((T, F)), L.GRU(8)]),  # left as a Loop by tf2onnx
        # the tutorial text model: Keras 3's Embedding wraps negative ids (Less / Not / Mul / Add before Gather)
        "emb_lstm": keras.Sequential([keras.Input((T,), dtype="int32"), L.Embedding(20, 6), L.LSTM(8),
                                      L.Dense(4, activation="softmax")]),
    }


def tf_keras_model():
    tfk = require("tf_keras")
    tfk.utils.set_random_seed(0)
    L = tfk.layers
    return tfk.Sequential([L.Embedding(20, 6, input_length=T), L.Bidirectional(L.GRU(8, return_sequences=True)),
                           L.GRU(5), L.Dense(3)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (path, input, the Keras output); every model exported once."""
    d = tmp_path_factory.mktemp("tf2onnx")
    x = np.random.default_rng(0).standard_normal((B, T, F)).astype(np.float32)
    out = {}
    ids = np.random.default_rng(1).integers(0, 20, (B, T)).astype(np.int32)
    for name, m in keras3_models().items():
        fn = tf.function(lambda v, m=m: m(v))
        path = str(d / f"{name}.onnx")
        sig = tf.TensorSpec((None, T), tf.int32, name="ids") if name == "emb_lstm" else \
            tf.TensorSpec((None, T, F), tf.float32, name="x")
        tf2onnx.convert.from_function(fn, input_signature=[sig], opset=17, output_path=path)
        inp = ids if name == "emb_lstm" else x
        out[name] = (path, inp, np.asarray(m(inp)))
    m = tf_keras_model()
    path = str(d / "tfk_emb_bigru.onnx")
    tf2onnx.convert.from_keras(m, input_signature=[tf.TensorSpec((None, T), tf.int32, name="ids")], opset=17,
                               output_path=path)
    out["tfk_emb_bigru"] = (path, ids, m(ids).numpy())
    return out


def ort_out(path, x):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", ["lstm_stack", "bi_lstm", "bi_lstm_last", "emb_lstm", "tfk_emb_bigru"])
def test_tf2onnx_export_loads_and_matches(exported, name):
    path, x, want = exported[name]
    got = fastrnn.load(path).predict(x)
    assert got.shape == want.shape
    assert_close(got, ort_out(path, x))
    assert_close(got, want)


def test_tf2onnx_graph_ops(exported):
    """The exports hold the recurrent nodes and the glue the loader must follow (not a one-node graph)."""
    onnx = require("onnx")
    ops = {name: {n.op_type for n in onnx.load(p).graph.node} for name, (p, _, _) in exported.items()}
    assert {"LSTM", "Transpose", "Slice", "Squeeze", "Concat"} <= ops["bi_lstm"]
    assert [a.s for n in onnx.load(exported["bi_lstm"][0]).graph.node if n.op_type == "LSTM"
            for a in n.attribute if a.name == "direction"] == [b"bidirectional"]
    assert {"Gather", "GRU", "MatMul"} <= ops["tfk_emb_bigru"]
    assert {"Less", "Not", "Mul", "Gather", "LSTM"} <= ops["emb_lstm"]
    assert "Loop" in ops["gru"] and "GRU" not in ops["gru"]


def test_tf2onnx_keras3_embedding_ids_out_of_range(exported):
    """Keras wraps negative ids (where(ids < 0, ids + n, ids)); fastrnn's embedding takes 0 <= id < n and
    refuses the rest rather than computing something else."""
    path, ids, _ = exported["emb_lstm"]
    m = fastrnn.load(path)
    bad = ids.copy()
    bad[0, 0] = -1
    with pytest.raises(ValueError):
        m.predict(bad)


def test_tf2onnx_loop_refused_with_the_way_out(exported):
    path, x, want = exported["gru"]
    assert_close(ort_out(path, x), want)  # the graph itself is right: only fastrnn refuses it
    with pytest.raises(fastrnn.UnsupportedLayerError) as e:
        fastrnn.load(path)
    msg = str(e.value)
    assert "(Loop): operator not supported (a loop" in msg
    assert "fastrnn.from_keras" in msg and "tf_keras" in msg
