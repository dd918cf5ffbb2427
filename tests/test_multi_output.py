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
    with pytest.raises(ModelFormatError, match="needs model format 3"):
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
