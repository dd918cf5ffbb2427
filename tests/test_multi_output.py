"""Several outputs and state outputs: predict returns the framework's tuple (in its order and layout),
checked against real PyTorch / Keras / onnxruntime outputs; stream / generate / save keep working."""
import numpy as np
import pytest

import fastrnn
from conftest import assert_close, require
from fastrnn.errors import ModelFormatError
from fastrnn.spec import DenseSpec, ModelSpec, OutputSpec


def _close(got, expected, what=""):
    """``got`` has exactly the (nested) tuple structure of ``expected``, every array within 1e-5."""
    if isinstance(expected, (tuple, list)):
        assert isinstance(got, tuple) and len(got) == len(expected), f"{what}: {type(got).__name__} vs {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            _close(g, e, f"{what}[{i}]")
        return
    e = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    assert isinstance(got, np.ndarray) and got.shape == e.shape, f"{what}: {getattr(got, 'shape', got)} vs {e.shape}"
    assert_close(got, e, what=what)


# ----------------------------------------------------------------------------- torch
def _torch_modules():
    torch = require("torch")
    nn = torch.nn

    class CharLM(nn.Module):  # the tutorial char LM: forward(x, h=None) -> (logits, h_n)
        def __init__(self, vocab=13, emb=8, hidden=24):
            super().__init__()
            self.embed = nn.Embedding(vocab, emb)
            self.lstm = nn.LSTM(emb, hidden, num_layers=2, batch_first=True)
            self.fc = nn.Linear(hidden, vocab)

        def forward(self, x, h=None):
            out, h = self.lstm(self.embed(x), h)
            return self.fc(out), h

    class OutHC(nn.Module):  # (out, h_n, c_n), stacked and bidirectional
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)

        def forward(self, x):
            out, (h, c) = self.lstm(x)
            return out, h, c

    class Nested(nn.Module):  # (out, (h, c)): what nn.LSTM itself returns
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 6, batch_first=True)

        def forward(self, x):
            return self.lstm(x)

    class Heads(nn.Module):  # a tap of an inner layer, the head, and one direction of h_n
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(4, 6, batch_first=True)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            out, h = self.gru(x)
            y = self.fc(out)
            return torch.softmax(y, -1), y, h[-1]

    class GruLM(nn.Module):  # (logits, h_n) of a GRU, the initial state defaulting to None
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(13, 5)
            self.gru = nn.GRU(5, 7, num_layers=2, batch_first=True)
            self.fc = nn.Linear(7, 13)

        def forward(self, x, h=None):
            out, h = self.gru(self.embed(x), h)
            return self.fc(out), h

    return {"char_lm": CharLM, "out_h_c": OutHC, "nested": Nested, "heads": Heads, "gru_lm": GruLM}


def _torch_case(name, seed=0):
    torch = require("torch")
    torch.manual_seed(seed)
    m = _torch_modules()[name]().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 13, size=(3, 9)) if name in ("char_lm", "gru_lm") else \
        rng.standard_normal((3, 9, 4)).astype(np.float32)
    return m, x


@pytest.mark.parametrize("name", ["char_lm", "out_h_c", "nested", "heads", "gru_lm"])
def test_torch_tuple_outputs_equal_torch(name):
    torch = require("torch")
    m, x = _torch_case(name)
    model = fastrnn.from_torch(m)
    with torch.no_grad():
        expected = m(torch.as_tensor(x))
    got = model.predict(x)
    _close(got, expected, name)
    # the states returned with return_state are the ones the state outputs were built from
    got2, states = model.predict(x, return_state=True)
    _close(got2, expected, name)
    assert len(states) == len(model.spec.recurrent_layers)


def test_torch_initial_state_goes_through_predict():
    torch = require("torch")
    from fastrnn.converters.torch import torch_state_to_fastrnn

    m, x = _torch_case("char_lm", seed=1)
    rng = np.random.default_rng(1)
    h0 = torch.as_tensor(rng.standard_normal((2, 3, 24)).astype(np.float32))
    c0 = torch.as_tensor(rng.standard_normal((2, 3, 24)).astype(np.float32))
    with torch.no_grad():
        expected = m(torch.as_tensor(x), (h0, c0))
    model = fastrnn.from_torch(m)
    _close(model.predict(x, initial_state=torch_state_to_fastrnn(m.lstm, (h0, c0))), expected)


def _torch_greedy(m, prompt, steps):
    torch = require("torch")
    with torch.no_grad():
        logits, h = m(torch.as_tensor(prompt))
        ids = []
        for _ in range(steps):
            nxt = logits[:, -1].argmax(dim=-1)
            ids.append(nxt)
            logits, h = m(nxt[:, None], h)
        return torch.stack(ids, dim=1).numpy()


@pytest.mark.parametrize("name", ["char_lm", "gru_lm"])
def test_tuple_char_lm_generate_equals_torch_greedy_loop(name):
    m, _ = _torch_case(name, seed=2)
    model = fastrnn.from_torch(m)
    prompt = np.random.default_rng(2).integers(0, 13, size=(4, 6))
    got = model.generate(prompt, 30, greedy=True)
    np.testing.assert_array_equal(got, _torch_greedy(m, prompt, 30))


def test_tuple_char_lm_stream_state_is_the_state_output():
    torch = require("torch")
    m, x = _torch_case("char_lm", seed=3)
    model = fastrnn.from_torch(m)
    s = model.stream(batch_size=3)
    steps = [s.step(x[:, t]) for t in range(x.shape[1])]
    with torch.no_grad():
        logits, (h, c) = m(torch.as_tensor(x))
    # step returns the main output only (the logits); the (h, c) state output is the stream's state
    for t, y in enumerate(steps):
        assert isinstance(y, np.ndarray)
        assert_close(y, logits[:, t].numpy())
    state = s.state
    assert_close(np.concatenate([st[0] for st in state]), h.numpy())
    assert_close(np.concatenate([st[1] for st in state]), c.numpy())
    # run returns what predict returns, continuing the state: its state outputs are the states after the chunk
    s.reset()
    first = s.run(x[:, :4])
    second = s.run(x[:, 4:])
    assert_close(np.concatenate([first[0], second[0]], axis=1), logits.numpy())
    _close(second[1], (h, c))


def test_several_data_outputs_stream_step_returns_a_tuple():
    torch = require("torch")
    m, x = _torch_case("heads", seed=4)
    model = fastrnn.from_torch(m)
    s = model.stream(batch_size=3)
    with torch.no_grad():
        probs, logits, _ = m(torch.as_tensor(x))
    for t in range(x.shape[1]):
        y = s.step(x[:, t])
        assert isinstance(y, tuple) and len(y) == 2  # the data outputs; h[-1] is the stream's state
        assert_close(y[0], probs[:, t].numpy())
        assert_close(y[1], logits[:, t].numpy())


def test_multi_output_save_load_round_trip(tmp_path):
    torch = require("torch")
    m, x = _torch_case("out_h_c", seed=5)
    model = fastrnn.from_torch(m)
    path = tmp_path / "m.fastrnn"
    model.save(path)
    back = fastrnn.load(path)
    with torch.no_grad():
        expected = m(torch.as_tensor(x))
    _close(back.predict(x), expected)
    assert back.spec.outputs == model.spec.outputs and back.spec.output_structure == model.spec.output_structure
    header, _ = model.spec.to_core()
    assert header["format"] == 3  # needs the new fields: a version older fastrnn refuses ("upgrade")
    # a single-output model still writes the oldest version, and predict still returns a bare array
    single = fastrnn.from_torch(m.lstm)
    assert single.spec.to_core()[0]["format"] == 1
    assert isinstance(single.predict(x), np.ndarray)
    # a format 2 header cannot carry outputs
    header["format"] = 2
    with pytest.raises(ModelFormatError, match="model format 3"):  # (options or outputs: both need 3)
        ModelSpec.from_core(header, model.spec.to_core()[1])


def test_branch_spec_validation():
    m, _ = _torch_case("heads")
    spec = fastrnn.from_torch(m).spec
    with pytest.raises(ModelFormatError, match="not an earlier layer"):
        ModelSpec(layers=spec.layers, input_features=4, layer_inputs={spec.layers[0].name: spec.layers[-1].name}).validate()
    with pytest.raises(ModelFormatError, match="unknown layer"):
        ModelSpec(layers=spec.layers, input_features=4, outputs=[OutputSpec("y", "output", ["nope"])]).validate()
    with pytest.raises(ModelFormatError, match="not an LSTM"):
        ModelSpec(layers=spec.layers, input_features=4, outputs=[OutputSpec("c", "c", [spec.layers[0].name])]).validate()
    with pytest.raises(ModelFormatError, match="each output index"):
        ModelSpec(layers=spec.layers, input_features=4, outputs=[OutputSpec("y", "output", [spec.layers[-1].name])],
                  output_structure=[0, 0]).validate()
    dense = DenseSpec("d", np.ones((2, 6), np.float32))
    with pytest.raises(ModelFormatError, match="takes 6 features but the previous layer gives 3"):
        ModelSpec(layers=spec.layers + [dense], input_features=4).validate()
    # the same Dense reading the recurrent layer (a second head) is valid
    ModelSpec(layers=spec.layers + [dense], input_features=4, layer_inputs={"d": spec.layers[0].name}).validate()


# ----------------------------------------------------------------------------- keras
def _keras_models():
    keras = require("keras")
    L = keras.layers
    i = keras.Input((7, 4))
    models = {}
    o, h, c = L.LSTM(5, return_sequences=True, return_state=True)(i)
    models["lstm_state"] = keras.Model(i, [o, h, c])
    o, h = L.GRU(5, return_state=True)(i)
    models["gru_state_last"] = keras.Model(i, [o, h])
    o, fh, fc, bh, bc = L.Bidirectional(L.LSTM(5, return_state=True))(i)
    models["bidi_lstm_state"] = keras.Model(i, [o, fh, fc, bh, bc])
    o, fh, bh = L.Bidirectional(L.GRU(5, return_sequences=True, return_state=True), merge_mode="sum")(i)
    models["bidi_gru_state"] = keras.Model(i, [o, fh, bh])
    t = L.LSTM(6)(i)
    models["two_heads"] = keras.Model(i, [L.Dense(3, activation="softmax")(t), L.Dense(1, activation="sigmoid")(t)])
    t = L.LSTM(6, return_sequences=True)(i)
    a = L.Dense(3, activation="softmax")(t)
    b = L.TimeDistributed(L.Dense(2, activation="tanh"))(L.Dropout(0.1)(t))
    models["trunk_and_heads"] = keras.Model(i, [t, a, b])
    ids = keras.Input((7,), dtype="int32")
    e = L.Embedding(11, 4, mask_zero=True)(ids)
    seq, h, c = L.LSTM(6, return_sequences=True, return_state=True)(e)
    models["masked_lm_state"] = keras.Model(ids, [L.Dense(11)(seq), h, c])
    return models


def _keras_x(name, rng):
    if name == "masked_lm_state":
        x = rng.integers(1, 11, size=(3, 7))
        x[1, 4:] = 0  # a padded row: states and outputs follow Keras' mask
        return x
    return rng.standard_normal((3, 7, 4)).astype(np.float32)


@pytest.mark.parametrize("name", ["lstm_state", "gru_state_last", "bidi_lstm_state", "bidi_gru_state", "two_heads",
                                  "trunk_and_heads", "masked_lm_state"])
def test_keras_several_outputs_equal_keras(name, tmp_path):
    m = _keras_models()[name]
    x = _keras_x(name, np.random.default_rng(6))
    expected = [np.asarray(a) for a in m(x)]
    model = fastrnn.from_keras(m)
    _close(model.predict(x), expected, name)
    # the file path is the same conversion: a .keras file and a .fastrnn round trip give the same outputs
    m.save(tmp_path / "m.keras")
    _close(fastrnn.load(tmp_path / "m.keras").predict(x), expected, f"{name} (.keras)")
    model.save(tmp_path / "m.fastrnn")
    _close(fastrnn.load(tmp_path / "m.fastrnn").predict(x), expected, f"{name} (.fastrnn)")


def test_keras_heads_stream_step_returns_each_head():
    m = _keras_models()["trunk_and_heads"]
    x = _keras_x("trunk_and_heads", np.random.default_rng(7))
    trunk, a, b = (np.asarray(v) for v in m(x))
    model = fastrnn.from_keras(m)
    assert model.spec.layer_inputs  # the second head reads the trunk, computed in the core
    s = model.stream(batch_size=3)
    for t in range(x.shape[1]):
        y = s.step(x[:, t])
        _close(y, (trunk[:, t], a[:, t], b[:, t]), f"step {t}")


def test_keras_return_state_stream_state_is_the_state_output():
    m = _keras_models()["lstm_state"]
    x = _keras_x("lstm_state", np.random.default_rng(8))
    out, h, c = (np.asarray(v) for v in m(x))
    model = fastrnn.from_keras(m)
    s = model.stream(batch_size=3)
    for t in range(x.shape[1]):
        y = s.step(x[:, t])  # one data output: the bare per-step output
        assert_close(y, out[:, t])
    (sh, sc), = s.state
    assert_close(sh[0], h)
    assert_close(sc[0], c)


def test_keras_state_output_feeding_a_layer_is_refused():
    keras = require("keras")
    i = keras.Input((7, 4))
    _, h, _ = keras.layers.LSTM(5, return_state=True)(i)
    m = keras.Model(i, keras.layers.Dense(2)(h))
    with pytest.raises(fastrnn.errors.UnsupportedLayerError, match="only the main output of each layer"):
        fastrnn.from_keras(m)


# ----------------------------------------------------------------------------- onnx
def _lstm_graph(rng, direction, layout, kind="LSTM", I=3, H=5):
    """One recurrent node whose initial_h (/ initial_c) are graph inputs and whose Y, Y_h (, Y_c) are all
    graph outputs."""
    require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nd = 2 if direction == "bidirectional" else 1
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    W = (rng.standard_normal((nd, G * H, I)) * 0.5).astype(np.float32)
    R = (rng.standard_normal((nd, G * H, H)) * 0.5).astype(np.float32)
    B = (rng.standard_normal((nd, 2 * G * H)) * 0.1).astype(np.float32)
    lstm = kind == "LSTM"
    node = helper.make_node(kind, ["X", "W", "R", "B", "", "h0"] + (["c0"] if lstm else []),
                            ["Y", "Y_h"] + (["Y_c"] if lstm else []), hidden_size=H, direction=direction, layout=layout)
    xs = ["T", "N", I] if layout == 0 else ["N", "T", I]
    hs = [nd, "N", H] if layout == 0 else ["N", nd, H]
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(n, f, s) for n, s in [("X", xs), ("h0", hs)] + ([("c0", hs)] if lstm else [])]
    outputs = [helper.make_tensor_value_info(n, f, None) for n in node.output]
    g = helper.make_graph([node], "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in
                                                        (("W", W), ("R", R), ("B", B))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    return m


def _onnx_reference(m, feed, layout):
    """onnxruntime's outputs (it refuses layout=1: the onnx reference evaluator there)."""
    if layout == 0:
        ort = require("onnxruntime")
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(m).run(None, feed)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_onnx_state_inputs_and_every_output(kind, direction, layout):
    from fastrnn.converters.onnx import initial_state_from_onnx, input_to_fastrnn, output_to_onnx, spec_from_onnx

    rng = np.random.default_rng(9)
    m = _lstm_graph(rng, direction, layout, kind)
    nd = 2 if direction == "bidirectional" else 1
    x = rng.standard_normal((6, 2, 3) if layout == 0 else (2, 6, 3)).astype(np.float32)
    st = (nd, 2, 5) if layout == 0 else (2, nd, 5)
    feed = {"X": x, "h0": rng.standard_normal(st).astype(np.float32)}
    if kind == "LSTM":
        feed["c0"] = rng.standard_normal(st).astype(np.float32)
    expected = _onnx_reference(m, feed, layout)
    model = fastrnn.Model(spec_from_onnx(m))
    names = [o.name for o in model.spec.outputs]
    assert names == [o.name for o in m.graph.output]
    got = model.predict(input_to_fastrnn(model, x), initial_state=initial_state_from_onnx(model, feed))
    assert len(got) == len(expected)
    for name, g, e in zip(names, got, expected):
        assert_close(output_to_onnx(model, g, name), e, what=name)
    if direction != "forward":
        return
    # the stream: its state is the graph's state inputs; stepping gives Y step by step, and its state Y_h / Y_c
    s = model.stream(batch_size=2)
    s.state = initial_state_from_onnx(model, feed)
    xb = input_to_fastrnn(model, x)
    ys = np.stack([s.step(xb[:, t]) for t in range(xb.shape[1])], axis=1)
    assert_close(output_to_onnx(model, ys, "Y"), expected[0])
    state = s.state[0]
    h = state[0] if kind == "LSTM" else state
    assert_close(h if layout == 0 else h.transpose(1, 0, 2), expected[1])


def test_onnx_torch_export_char_lm_outputs_and_generate():
    torch = require("torch")
    ort = require("onnxruntime")
    import io
    import warnings

    from fastrnn.converters.onnx import spec_from_onnx

    class ExportLM(torch.nn.Module):  # what torch.onnx.export sees: (logits, h_n, c_n)
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, x):
            logits, (h, c) = self.lm(x)
            return logits, h, c

    m, x = _torch_case("char_lm", seed=10)
    f = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's tracer warnings (errors under pytest's filters)
        warnings.simplefilter("ignore")
        torch.onnx.export(ExportLM(m), (torch.as_tensor(x),), f, input_names=["x"], output_names=["logits", "h", "c"],
                          dynamic_axes={"x": {0: "b", 1: "t"}}, dynamo=False)
    expected = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    model = fastrnn.Model(spec_from_onnx(f.getvalue()))
    _close(model.predict(x), expected)
    prompt = np.random.default_rng(10).integers(0, 13, size=(2, 5))
    np.testing.assert_array_equal(model.generate(prompt, 20, greedy=True), _torch_greedy(m, prompt, 20))
