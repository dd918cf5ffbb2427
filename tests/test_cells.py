"""RNN cells (issue 11 item 3): torch step modules (a forward that calls a cell once), Keras cells inside
``keras.layers.RNN`` (live, .keras, .h5), the ``lstm_cell`` / ``gru_cell`` / ``rnn_cell`` architecture
entries from every weights container, streaming one step per call, the refusals; and item 6's Keras 2.2
trap (a Keras 3 config as ``architecture=`` for Keras 2.2 weights).  The oracle is always the framework's
own cell called step by step.  Bare torch cells and cells in ``nn.Sequential``: tests/test_torch.py."""
import json
import os
import warnings

import numpy as np
import pytest

import fastrnn
from conftest import ATOL_F32, assert_close, require
from fastrnn.errors import ConversionWarning, ModelFormatError, UnsupportedLayerError
from test_keras import get_keras, randomize

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "keras")
KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


@pytest.fixture(scope="module")
def torch():
    return require("torch")


def _torch_cell(torch, kind, i, h, bias=True):
    nn = torch.nn
    return {"lstm": lambda: nn.LSTMCell(i, h, bias=bias), "gru": lambda: nn.GRUCell(i, h, bias=bias),
            "rnn_tanh": lambda: nn.RNNCell(i, h, bias=bias),
            "rnn_relu": lambda: nn.RNNCell(i, h, bias=bias, nonlinearity="relu")}[kind]()


def _to_fastrnn_state(kind, s):
    """A torch cell state ((B, H), or (h, c)) in predict's initial_state / stream.state format: (1, B, H)."""
    return tuple(a.detach().numpy()[None] for a in s) if kind == "lstm" else s.detach().numpy()[None]


# --------------------------------------------------------------------------- torch step modules
def _step_module(torch, kind, embed=False):
    """A silero-vad-like step module: forward(x_t, state) calls the cell once, then a head on h."""
    nn = torch.nn

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            if embed:
                self.emb = nn.Embedding(11, 6)
            self.pre = nn.Linear(6, 5)
            self.cell = _torch_cell(torch, kind, 5, 8)
            self.head = nn.Sequential(nn.Dropout(0.1), nn.ReLU(), nn.Linear(8, 3), nn.Sigmoid())

        def forward(self, x, state):
            if embed:
                x = self.emb(x)
            x = torch.tanh(self.pre(x))
            if kind == "lstm":
                h, c = self.cell(x, (state[0], state[1]))
            else:
                h = self.cell(x, state)
            return self.head(h)

    return Step().eval()


@pytest.mark.parametrize("embed", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_step_module_predict_stream_and_save(torch, kind, embed, tmp_path):
    """predict over (B, T, F) = the step module called once per step, threading the cell's state (from
    zero, and from an initial_state); stream().step = one forward call; the same through a .fastrnn file."""
    torch.manual_seed(3)
    m = _step_module(torch, kind, embed)
    B, T = 2, 7
    x = torch.randint(0, 11, (B, T)) if embed else torch.randn(B, T, 6)
    s0 = (torch.randn(B, 8), torch.randn(B, 8)) if kind == "lstm" else torch.randn(B, 8)

    def loop(state):
        outs = []
        with torch.no_grad():
            for t in range(T):
                outs.append(m(x[:, t], state).numpy())
                xt = torch.tanh(m.pre(m.emb(x[:, t]) if embed else x[:, t]))
                state = m.cell(xt, state)
        return np.stack(outs, 1), state

    zero = (torch.zeros(B, 8), torch.zeros(B, 8)) if kind == "lstm" else torch.zeros(B, 8)
    fm = fastrnn.from_torch(m)
    want0, _ = loop(zero)
    assert_close(fm.predict(x.numpy()), want0, ATOL_F32, what="from zero")
    want, final = loop(s0)
    got, states = fm.predict(x.numpy(), initial_state=_to_fastrnn_state(kind, s0), return_state=True)
    assert_close(got, want, ATOL_F32, what="from s0")
    want_final = _to_fastrnn_state(kind, final)
    for g, w in zip(states[0] if kind == "lstm" else [states[0]], want_final if kind == "lstm" else [want_final]):
        assert_close(g, w, ATOL_F32, what="final state")
    fm.save(tmp_path / "step.fastrnn")
    for model in (fm, fastrnn.load(tmp_path / "step.fastrnn")):
        st = model.stream(batch_size=B)
        st.state = _to_fastrnn_state(kind, s0)
        for t in range(T):  # one forward() call per step
            assert_close(st.step(x[:, t].numpy()), want[:, t], ATOL_F32, what=f"step {t}")


def test_step_module_variants(torch):
    """The state as forward(x, h, c), unpacked inside forward, or absent (None / zeros); a GRUCell step
    module returning h itself."""
    nn = torch.nn
    torch.manual_seed(4)
    x = torch.randn(3, 5, 4)

    class HC(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell, self.fc = nn.LSTMCell(4, 6), nn.Linear(6, 2)

        def forward(self, x, h, c):
            h, c = self.cell(x, (h, c))
            return self.fc(h)

    class Unpack(HC):
        def forward(self, x, state):
            h, c = state
            h, c = self.cell(x, (h, c))
            return torch.log_softmax(self.fc(h), dim=1)

    class NoState(HC):
        def forward(self, x, state=None):
            h, _ = self.cell(x, state)
            return self.fc(h)

    class Zeros(HC):
        def forward(self, x):
            z = torch.zeros((x.size(0), 6))  # torch.fx 2.13 cannot trace zeros(x.size(0), 6)
            return self.fc(self.cell(x, (z, z))[0])

    class GruH(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(4, 6)

        def forward(self, x, h=None):
            return self.cell(x, h)

    for cls in (HC, Unpack, NoState, Zeros, GruH):
        m = cls().eval()
        fm = fastrnn.from_torch(m)
        state, outs = None, []
        with torch.no_grad():
            for t in range(x.shape[1]):
                h0 = state if state is not None else (torch.zeros(3, 6), torch.zeros(3, 6))
                if cls is HC:
                    outs.append(m(x[:, t], *h0).numpy())
                elif cls is GruH:
                    outs.append(m(x[:, t], state).numpy())
                elif cls is Zeros:
                    outs.append(m.fc(m.cell(x[:, t], h0)[0]).numpy())
                else:
                    outs.append(m(x[:, t], h0).numpy())
                state = m.cell(x[:, t], state)
        assert_close(fm.predict(x.numpy()), np.stack(outs, 1), ATOL_F32, what=cls.__name__)


def test_cell_usage_errors(torch):
    """A Python loop over time around a cell, a cell called several times, an LSTMCell's (h, c) or c as
    the output, a state input used for something else: each refused with what to do instead."""
    nn = torch.nn

    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(3, 4)

        def forward(self, x):
            h, outs = None, []
            for t in range(x.size(1)):
                h = self.cell(x[:, t], h)
                outs.append(h)
            return torch.stack(outs, 1)

    class Unrolled(Loop):
        def forward(self, x):
            h = None
            for _ in range(3):
                h = self.cell(x, h)
            return h

    class ReturnsHC(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.LSTMCell(3, 4)

        def forward(self, x, state=None):
            return self.cell(x, state)

    class ReturnsC(ReturnsHC):
        def forward(self, x, state=None):
            return self.cell(x, state)[1]

    class StateTwice(Loop):
        def forward(self, x, h):
            return self.cell(x, h) + h

    loop_hint = r"fastrnn runs the loop over time itself: convert the cell \(fastrnn\.from_torch\(module\.cell\)\)"
    with pytest.raises(UnsupportedLayerError, match=r"could not trace.*if forward\(\) loops over time in "
                                                    r"Python around the cell 'cell': " + loop_hint):
        fastrnn.from_torch(Loop())
    with pytest.raises(UnsupportedLayerError, match=r"(?s)1 unsupported.*the cell is called 3 times in forward\(\).*"
                                                    + loop_hint):
        fastrnn.from_torch(Unrolled())
    with pytest.raises(UnsupportedLayerError, match=r"returns cell, the \(h, c\) tuple of an LSTMCell: return h"):
        fastrnn.from_torch(ReturnsHC())
    with pytest.raises(UnsupportedLayerError, match=r"item 1 of an LSTMCell's \(h, c\): the cell state c"):
        fastrnn.from_torch(ReturnsC())
    with pytest.raises(UnsupportedLayerError, match=r"placeholder h\(\).*a second forward\(\) input is used"):
        fastrnn.from_torch(StateTwice())
    with pytest.raises(UnsupportedLayerError, match=r"'1' \(Linear\): comes after the recurrent module '0' "
                                                    r"\(LSTMCell\)"):
        fastrnn.from_torch(nn.Sequential(nn.LSTMCell(3, 4), nn.Linear(4, 2)))


# --------------------------------------------------------------------------- Keras cells in RNN
@pytest.fixture(scope="module")
def keras():
    return get_keras()


def _keras_cell(keras, kind, units):
    L = keras.layers
    return {"lstm": lambda: L.LSTMCell(units), "gru": lambda: L.GRUCell(units),
            "gru_reset_before": lambda: L.GRUCell(units, reset_after=False),
            "simple_rnn": lambda: L.SimpleRNNCell(units, activation="relu")}[kind]()


@pytest.mark.parametrize("wrap", ["forward", "go_backwards", "bidirectional"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before", "simple_rnn"])
def test_keras_cells_in_rnn_live_and_files(keras, kind, wrap, tmp_path):
    """RNN(cell) and Bidirectional(RNN(cell)) between Dense layers: live model, .keras and .h5 files all
    equal Keras's output."""
    L = keras.layers
    rnn = L.RNN(_keras_cell(keras, kind, 5), return_sequences=True, go_backwards=wrap == "go_backwards")
    layer = L.Bidirectional(rnn) if wrap == "bidirectional" else rnn
    model = randomize(keras.Sequential([keras.Input((6, 3)), layer, L.Dense(2, activation="tanh")]), seed=7)
    x = np.random.default_rng(1).standard_normal((4, 6, 3)).astype(np.float32)
    want = np.asarray(model(x))
    assert_close(fastrnn.from_keras(model).predict(x), want, ATOL_F32, what="live")
    for ext in ("keras", "h5"):
        p = tmp_path / f"m.{ext}"
        model.save(p)
        assert_close(fastrnn.load(p).predict(x), want, ATOL_F32, what=ext)


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before", "simple_rnn"])
def test_keras_cell_streams_one_step_per_call(keras, kind, tmp_path):
    """stream().step(x_t) of a model holding RNN(cell) equals the Keras cell called by hand on x_t with
    the state it returned last; predict with that initial_state equals it over the whole sequence."""
    import tensorflow as tf

    L = keras.layers
    cell = _keras_cell(keras, kind, 4)
    model = randomize(keras.Sequential([keras.Input((5, 3)), L.RNN(cell, return_sequences=True)]), seed=11)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    s0 = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(2 if kind == "lstm" else 1)]
    model.save(tmp_path / "m.keras")
    for fm in (fastrnn.from_keras(model), fastrnn.load(tmp_path / "m.keras")):
        st = fm.stream(batch_size=2)
        st.state = (s0[0][None], s0[1][None]) if kind == "lstm" else s0[0][None]
        states = [tf.constant(s) for s in s0]
        outs = []
        for t in range(5):
            out, states = cell(tf.constant(x[:, t]), states)
            states = list(states) if isinstance(states, (list, tuple)) else [states]
            outs.append(np.asarray(out))
            assert_close(st.step(x[:, t]), outs[-1], ATOL_F32, what=f"step {t}")
        init = (s0[0][None], s0[1][None]) if kind == "lstm" else s0[0][None]
        assert_close(fm.predict(x, initial_state=init), np.stack(outs, 1), ATOL_F32)


def test_keras_stacked_cells_refused_by_name(keras, tmp_path):
    L = keras.layers
    model = keras.Sequential([keras.Input((5, 3)), L.RNN([L.LSTMCell(4), L.GRUCell(3)], return_sequences=True)])
    model.save(tmp_path / "s.keras")
    for src in (lambda: fastrnn.from_keras(model), lambda: fastrnn.load(tmp_path / "s.keras")):
        with pytest.raises(UnsupportedLayerError, match=r"\(RNN\): cell StackedRNNCells is not supported.*one RNN "
                                                        r"layer per cell"):
            src()


# --------------------------------------------------------------------------- architecture-list cells
def _write(container, sd, tmp_path):
    """``sd`` (numpy arrays) as a state dict in memory, an .npz file or a .safetensors file."""
    if container == "state_dict":
        return sd
    if container == "npz":
        np.savez(tmp_path / "w.npz", **sd)
        return tmp_path / "w.npz"
    st = require("safetensors.numpy")
    st.save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    return tmp_path / "w.safetensors"


@pytest.mark.parametrize("container", ["state_dict", "npz", "safetensors"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_entries_from_every_container(torch, kind, container, tmp_path):
    """A Linear -> cell -> Linear decoder described by the architecture list (keys without _l0), read from
    an in-memory dict, .npz and .safetensors: predict and stream equal torch's cell stepped by hand; the
    .fastrnn copy too."""
    torch.manual_seed(8)
    nn = torch.nn
    pre, cell, fc = nn.Linear(3, 4), _torch_cell(torch, kind, 4, 5, bias=kind != "gru"), nn.Linear(5, 2)
    sd = {f"{p}.{k}": v.detach().numpy() for p, mod in (("pre", pre), ("dec.cell", cell), ("fc", fc))
          for k, v in mod.state_dict().items()}
    entry = {"type": "rnn_cell" if kind.startswith("rnn") else f"{kind}_cell", "key": "dec.cell"}
    if kind.startswith("rnn"):
        entry["nonlinearity"] = kind.split("_")[1]
    arch = [{"type": "linear", "key": "pre", "activation": "tanh"}, entry, {"type": "linear", "key": "fc"}]
    src = _write(container, sd, tmp_path)
    m = fastrnn.from_state_dict(src, architecture=arch) if container == "state_dict" else \
        fastrnn.load(src, architecture=json.dumps(arch))
    x = torch.randn(3, 6, 3)
    state, want = None, []
    with torch.no_grad():
        for t in range(6):
            state = cell(torch.tanh(pre(x[:, t])), state)
            want.append(fc(state[0] if kind == "lstm" else state).numpy())
    want = np.stack(want, 1)
    m.save(tmp_path / "c.fastrnn")
    for model in (m, fastrnn.load(tmp_path / "c.fastrnn")):
        assert_close(model.predict(x.numpy()), want, ATOL_F32)
        st = model.stream(batch_size=3)
        for t in range(6):
            assert_close(st.step(x[:, t].numpy()), want[:, t], ATOL_F32)


# --------------------------------------------------------------------------- issue 11 item 6: the Keras 2.2 trap
def test_keras3_architecture_for_keras22_weights_warns(keras):
    """keras22_lstm.h5 was written by Keras 2.2.4 (LSTM with its default recurrent_activation,
    hard_sigmoid).  A Keras 3 config rebuilt with the defaults says 'sigmoid': it converts, with a
    ConversionWarning naming the layer and both defaults (the numbers then differ from the Keras 2.2
    model); with recurrent_activation='hard_sigmoid' there is no warning and the outputs equal Keras 2.2's.
    The warning crosses the isolated reader process.  A GRU's reset_after default is named too."""
    L = keras.layers
    fx = np.load(os.path.join(DATA, "expected.npz"))
    p = os.path.join(DATA, "keras22_lstm.h5")

    def arch(ract):
        return keras.Sequential([keras.Input((7, 3)), L.LSTM(5, name="lstm_1", recurrent_activation=ract),
                                 L.Dense(4, activation="softmax", name="dense_1")]).to_json()

    for isolate in (True, False):
        with pytest.warns(ConversionWarning, match=r"keras22_lstm\.h5.*Keras 3 config but the weights were written "
                                                   r"by Keras 2\.2\.4.*'hard_sigmoid'.*'lstm_1' \(LSTM\) "
                                                   r"recurrent_activation='sigmoid'"):
            m = fastrnn.load(p, architecture=arch("sigmoid"), isolate=isolate)
        assert np.abs(m.predict(fx["keras22_lstm.x"]) - fx["keras22_lstm.y"]).max() > 1e-3  # the trap is real
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConversionWarning)
            m = fastrnn.load(p, architecture=arch("hard_sigmoid"), isolate=isolate)
        assert_close(m.predict(fx["keras22_lstm.x"]), fx["keras22_lstm.y"], what=f"isolate={isolate}")
    # the file's own Keras 2.2 config: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)
        assert_close(fastrnn.load(p).predict(fx["keras22_lstm.x"]), fx["keras22_lstm.y"])
    inp = keras.Input((8,), dtype="int32")
    y = L.Embedding(9, 4, mask_zero=True, name="embedding_1")(inp)
    y = L.GRU(6, return_sequences=True, go_backwards=True, name="gru_1", recurrent_activation="hard_sigmoid")(y)
    y = L.Dense(2, name="dense_1")(L.GRU(3, name="gru_2", recurrent_activation="hard_sigmoid")(y))
    with pytest.warns(ConversionWarning, match=r"'gru_1' \(GRU\) reset_after=True; 'gru_2' \(GRU\) reset_after=True"):
        with pytest.raises(ModelFormatError, match=r"gru_1.*reset_after=True bias has shape \(18,\)"):
            fastrnn.load(os.path.join(DATA, "keras22_gru.h5"), architecture=keras.Model(inp, y).to_json())
