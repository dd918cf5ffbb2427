"""The ``l2_normalize`` activation (issue 11, Deliver 4): y = x / max(||x||_2, 1e-12) over the last axis,
from every source -- a torch module with ``F.normalize``, a state dict with an architecture list, Keras
``UnitNormalization``, ONNX ``LpNormalization`` -- each checked against its framework (1e-5), on every ISA;
streaming steps equal predict, a zero row gives 0 as torch does."""
import os

import numpy as np
import pytest

import fastrnn
import reference
from conftest import assert_close, require
from fastrnn import spec as S
from fastrnn.errors import UnsupportedLayerError

torch = require("torch")
F = torch.nn.functional


class _LSTMNorm(torch.nn.Module):
    def __init__(self, dim=-1, last=False, **kw):
        super().__init__()
        self.rnn = torch.nn.LSTM(5, 7, batch_first=True)
        self.fc = torch.nn.Linear(7, 6)
        self.dim, self.last, self.kw = dim, last, kw

    def forward(self, x):
        out, _ = self.rnn(x)
        if self.last:
            return F.normalize(self.fc(out[:, -1]), dim=self.dim, **self.kw)
        return F.normalize(self.fc(out), dim=self.dim, **self.kw)


def _x(B=3, T=8, I=5, seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, I)).astype(np.float32)


def _torch(m, x):
    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("dim,last", [(-1, False), (2, False), (-1, True), (1, True)])
def test_torch_module_normalize_matches_torch(dim, last, isa):
    torch.manual_seed(0)
    m = _LSTMNorm(dim, last).eval()
    x = _x()
    model = fastrnn.from_torch(m)
    assert model.spec.layers[-1].activation == "l2_normalize"
    assert_close(model.predict(x), _torch(m, x), atol=1e-5, rtol=1e-5, what=f"normalize(dim={dim})")


@pytest.mark.parametrize("kw,why", [({"p": 1.0}, "p=1.0"), ({"eps": 1e-6}, "eps=1e-06")])
def test_torch_normalize_other_p_or_eps_refused(kw, why):
    with pytest.raises(UnsupportedLayerError, match=why):
        fastrnn.from_torch(_LSTMNorm(**kw).eval())


def test_torch_normalize_over_time_refused():
    with pytest.raises(UnsupportedLayerError, match="last axis"):
        fastrnn.from_torch(_LSTMNorm(dim=1).eval())  # (B, T, F): dim=1 is time, torch's default


@pytest.mark.parametrize("entry", [{"type": "l2_normalize"}, "l2_normalize",
                                   {"type": "activation", "activation": "l2_normalize"}])
def test_state_dict_architecture_list(tmp_path, entry):
    torch.manual_seed(1)
    m = _LSTMNorm(-1, True).eval()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    arch = [{"type": "lstm", "key": "rnn"}, "last_step", {"type": "linear", "key": "fc"}, entry]
    model = fastrnn.load(tmp_path / "m.pt", architecture=arch)
    x = _x(seed=2)
    assert_close(model.predict(x), _torch(m, x), atol=1e-5, rtol=1e-5, what=str(entry))


def test_streaming_step_equals_predict():
    torch.manual_seed(2)
    m = _LSTMNorm(-1, False).eval()
    model = fastrnn.from_torch(m)
    x = _x(B=2, T=6, seed=3)
    stream = model.stream(2)
    steps = np.stack([stream.step(x[:, t]) for t in range(x.shape[1])], axis=1)
    assert_close(steps, model.predict(x), atol=1e-6, rtol=1e-6, what="stream")
    assert_close(steps, _torch(m, x), atol=1e-5, rtol=1e-5, what="stream vs torch")


def test_zero_and_tiny_rows_as_torch(isa):
    x = np.random.default_rng(4).standard_normal((2, 3, 9)).astype(np.float32)
    x[0, 1] = 0.0  # norm 0: torch gives 0 (x / eps)
    x[1, 2] = 1e-20  # norm 3e-20 < 1e-12: x / 1e-12
    x[1, 0] *= 1e30  # sum of squares 1e60 overflows float (torch float32 gives 0): accumulated in double
    model = fastrnn.Model(S.ModelSpec(layers=[S.ActivationSpec(name="n", activation="l2_normalize")],
                                      input_features=9))
    got = model.predict(x)
    want = F.normalize(torch.from_numpy(x).double(), dim=-1).float().numpy()
    assert np.all(got[0, 1] == 0.0)
    assert_close(got, want, atol=1e-5, rtol=1e-5, what="zero / tiny / huge rows")
    assert_close(got, reference.activation("l2_normalize", x).astype(np.float32), atol=1e-6, rtol=1e-6)


def test_dense_activation_and_not_a_cell_activation():
    rng = np.random.default_rng(5)
    w, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    spec = S.ModelSpec(layers=[S.DenseSpec(name="d", weight=w, bias=b, activation="l2_normalize")], input_features=3)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    want = F.normalize(torch.from_numpy(x) @ torch.from_numpy(w).T + torch.from_numpy(b), dim=-1).numpy()
    assert_close(fastrnn.Model(spec).predict(x), want, atol=1e-5, rtol=1e-5)
    z = np.zeros(4, np.float32)
    cell = S.RecurrentSpec(kind="simple_rnn", name="r", input_size=3, units=4, activation="l2_normalize",
                           weights=[S.DirectionWeights(rng.standard_normal((4, 3)).astype(np.float32),
                                                       np.eye(4, dtype=np.float32), z, z)])
    with pytest.raises(UnsupportedLayerError, match="'l2_normalize' is not supported"):
        fastrnn.Model(S.ModelSpec(layers=[cell], input_features=3))


def test_keras_unit_normalization(isa):
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = require("keras")
    if keras.backend.backend() != "tensorflow":  # pragma: no cover - keras imported earlier elsewhere
        pytest.skip(f"keras was already imported with the {keras.backend.backend()!r} backend")
    keras.utils.set_random_seed(3)
    net = keras.Sequential([keras.Input((None, 5)), keras.layers.LSTM(7, return_sequences=True),
                            keras.layers.Dense(4), keras.layers.UnitNormalization(axis=-1),
                            keras.layers.LSTM(6), keras.layers.UnitNormalization()])
    x = _x(seed=6)
    x[1] = 0.0  # an all-zero sequence: Dense(0-state LSTM output) = bias, then a normalized LSTM state
    assert_close(fastrnn.from_keras(net).predict(x), np.asarray(net(x)), atol=1e-5, rtol=1e-5, what="keras")
    masked = keras.Sequential([keras.Input((None, 5)), keras.layers.Masking(0.0),
                               keras.layers.LSTM(7, return_sequences=True), keras.layers.UnitNormalization(),
                               keras.layers.LSTM(3, return_sequences=True), keras.layers.UnitNormalization()])
    x[0, 5:] = 0.0  # masked tail steps: held states, normalized as Keras does
    assert_close(fastrnn.from_keras(masked).predict(x), np.asarray(masked(x)), atol=1e-5, rtol=1e-5, what="masked")
    bad = keras.Sequential([keras.Input((4, 5)), keras.layers.LSTM(7, return_sequences=True),
                            keras.layers.UnitNormalization(axis=1)])
    with pytest.raises(UnsupportedLayerError, match="axis"):
        fastrnn.from_keras(bad)


def test_onnx_lp_normalization(isa):
    require("onnx")
    ort = require("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from fastrnn.converters.onnx import input_to_fastrnn, output_to_onnx, spec_from_onnx

    rng = np.random.default_rng(7)
    H, I = 6, 5
    W = rng.uniform(-0.6, 0.6, (1, 4 * H, I)).astype(np.float32)
    R = rng.uniform(-0.6, 0.6, (1, 4 * H, H)).astype(np.float32)
    B = rng.uniform(-0.4, 0.4, (1, 8 * H)).astype(np.float32)

    def model(p, axis):
        nodes = [helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=H),
                 helper.make_node("Squeeze", ["Y", "ax"], ["S"]),  # (T, 1, N, H) -> (T, N, H)
                 helper.make_node("LpNormalization", ["S"], ["Z"], p=p, axis=axis)]
        inits = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax"))
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "N", I])],
                              [helper.make_tensor_value_info("Z", TensorProto.FLOAT, None)], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])

    x = rng.standard_normal((7, 3, I)).astype(np.float32)  # (T, N, I)
    for axis in (-1, 2):
        m = model(2, axis)
        spec = spec_from_onnx(m)
        got = output_to_onnx(spec, fastrnn.Model(spec).predict(input_to_fastrnn(spec, x)))
        want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
        assert_close(got, want, atol=1e-5, rtol=1e-5, what=f"LpNormalization(axis={axis})")
    with pytest.raises(UnsupportedLayerError, match="p=1"):
        spec_from_onnx(model(1, -1))
    with pytest.raises(UnsupportedLayerError, match="feature axis"):
        spec_from_onnx(model(2, 0))
