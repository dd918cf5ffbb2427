"""Validate the numpy reference (tests/reference.py) itself.

Against PyTorch: nn.RNN (tanh/relu), nn.LSTM (incl. proj_size), nn.GRU; uni/bidirectional,
num_layers 1-2 as stacked specs, initial states, packed sequences (enforce_sorted=False),
merge modes, return_sequences=False, Dense/LastStep heads and the activation formulas.
Against Keras: the Keras-only semantics ("hold" masks, go_backwards, GRU reset_after=False,
Embedding mask_zero, Masking, Bidirectional with a mask, Keras activations).

Specs are built by hand from the framework weights here; no converter module is used.
"""
import numpy as np
import pytest

from conftest import ATOL_F32, RTOL_F32, assert_close, require
from fastrnn import spec as S
from reference import activation, run_spec

SHAPES = [(1, 1, 3, 5), (7, 13, 17, 33), (3, 40, 8, 16)]  # (B, T, I, H)


@pytest.fixture(scope="module")
def torch():
    t = require("torch")
    t.set_num_threads(1)
    return t


@pytest.fixture(scope="module")
def keras():
    return require("keras")


# =========================================================================== torch helpers
TORCH_KINDS = {"rnn_tanh": "simple_rnn", "rnn_relu": "simple_rnn", "lstm": "lstm", "gru": "gru"}


def make_torch(torch, kind, I, H, num_layers=1, bidirectional=False, proj_size=0, seed=0):
    torch.manual_seed(seed)
    nn = torch.nn
    if kind.startswith("rnn"):
        return nn.RNN(I, H, num_layers=num_layers, nonlinearity=kind[4:], bidirectional=bidirectional, batch_first=True)
    if kind == "lstm":
        return nn.LSTM(I, H, num_layers=num_layers, bidirectional=bidirectional, proj_size=proj_size, batch_first=True)
    return nn.GRU(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)


def torch_layer_specs(mod, kind, *, merge_mode="concat", return_sequences=True, mask_mode="zero"):
    """One RecurrentSpec per torch layer, built directly from weight_ih_l{k}[_reverse] etc."""
    nd = 2 if mod.bidirectional else 1
    proj = getattr(mod, "proj_size", 0) or 0
    hout = proj or mod.hidden_size
    specs = []
    for k in range(mod.num_layers):
        ws = []
        for sfx in ("", "_reverse")[:nd]:
            g = lambda n: getattr(mod, f"{n}_l{k}{sfx}").detach().numpy().copy()  # noqa: E731
            ws.append(S.DirectionWeights(g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh"),
                                         g("weight_hr") if proj else None))
        last = k == mod.num_layers - 1
        specs.append(S.RecurrentSpec(
            kind=TORCH_KINDS[kind], name=f"rnn{k}",
            input_size=mod.input_size if k == 0 else hout * nd, units=mod.hidden_size, weights=ws,
            activation=(kind[4:] if kind.startswith("rnn") else "tanh"), recurrent_activation="sigmoid",
            reset_after=True, proj_size=proj, direction="bidirectional" if nd == 2 else "forward",
            merge_mode=merge_mode if last else "concat", return_sequences=return_sequences or not last,
            mask_mode=mask_mode))
    return specs


def torch_model_spec(mod, kind, **kw):
    return S.ModelSpec(layers=torch_layer_specs(mod, kind, **kw), input_features=mod.input_size)


def packed_lengths(B, T, rng):
    """Lengths in [1, T] with a length-1 row and a full-length row when B allows."""
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = 1
    if B > 1:
        lengths[-1] = T
    return lengths


def run_torch(torch, mod, x, lengths=None, h0=None, c0=None):
    """Returns (y (B, T, D) with zeros at padded steps, h_n, c_n or None) as float32 numpy."""
    xt = torch.from_numpy(x)
    hx = None
    if h0 is not None:
        hx = (torch.from_numpy(h0), torch.from_numpy(c0)) if c0 is not None else torch.from_numpy(h0)
    with torch.no_grad():
        if lengths is not None:
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.as_tensor(lengths, dtype=torch.int64), batch_first=True, enforce_sorted=False)
            out, st = mod(packed, hx)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        else:
            out, st = mod(xt, hx)
    if isinstance(st, tuple):
        return out.numpy(), st[0].numpy(), st[1].numpy()
    return out.numpy(), st.numpy(), None


def split_layers(a, num_layers, nd):
    """torch (num_layers*nd, B, X) -> [ (nd, B, X) ] per layer."""
    return [a[k * nd:(k + 1) * nd] for k in range(num_layers)]


def initial_items(kind, h0, c0, num_layers, nd):
    hs = split_layers(h0, num_layers, nd)
    if kind == "lstm":
        return [(h, c) for h, c in zip(hs, split_layers(c0, num_layers, nd))]
    return hs


def compare_states(kind, states, h_n, c_n, num_layers, nd, what):
    assert len(states) == num_layers
    for k, (st, h) in enumerate(zip(states, split_layers(h_n, num_layers, nd))):
        if kind == "lstm":
            assert isinstance(st, tuple) and len(st) == 2
            assert_close(st[0], h, what=f"{what} h layer {k}")
            assert_close(st[1], split_layers(c_n, num_layers, nd)[k], what=f"{what} c layer {k}")
        else:
            assert_close(st, h, what=f"{what} h layer {k}")


# =========================================================================== torch: activations
TORCH_ACTS = {
    "tanh": lambda t, F, x: t.tanh(x),
    "sigmoid": lambda t, F, x: t.sigmoid(x),
    "relu": lambda t, F, x: F.relu(x),
    "relu6": lambda t, F, x: F.relu6(x),
    "hard_sigmoid": lambda t, F, x: F.hardsigmoid(x),
    "elu": lambda t, F, x: F.elu(x, alpha=1.0),
    "selu": lambda t, F, x: F.selu(x),
    "softplus": lambda t, F, x: F.softplus(x, beta=1.0, threshold=1000.0),
    "softsign": lambda t, F, x: F.softsign(x),
    "silu": lambda t, F, x: F.silu(x),
    "hard_silu": lambda t, F, x: F.hardswish(x),
    "exponential": lambda t, F, x: t.exp(x),
    "leaky_relu": lambda t, F, x: F.leaky_relu(x, negative_slope=0.2),
    "gelu": lambda t, F, x: F.gelu(x, approximate="none"),
    "gelu_tanh": lambda t, F, x: F.gelu(x, approximate="tanh"),
    "hard_tanh": lambda t, F, x: F.hardtanh(x),
    "mish": lambda t, F, x: F.mish(x),
    "log_sigmoid": lambda t, F, x: F.logsigmoid(x),
    "softmax": lambda t, F, x: F.softmax(x, dim=-1),
    "log_softmax": lambda t, F, x: F.log_softmax(x, dim=-1),
    "l2_normalize": lambda t, F, x: F.normalize(x, dim=-1),
}


def _act_inputs(rng):
    x = rng.normal(0.0, 4.0, size=(6, 50))
    x[0, :9] = [-30, -6, -3, -1, 0, 1, 3, 6, 30]  # the kinks of the hard/piecewise activations
    return x


@pytest.mark.parametrize("name", sorted(TORCH_ACTS))
def test_activation_vs_torch(torch, name, rng):
    x = _act_inputs(rng)
    want = TORCH_ACTS[name](torch, torch.nn.functional, torch.from_numpy(x)).numpy()  # float64 torch
    got = activation(name, x)
    assert got.dtype == np.float64 and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)
    # float32 input gives the same numbers (computed in float64 inside)
    assert_close(activation(name, x.astype(np.float32)).astype(np.float32),
                 TORCH_ACTS[name](torch, torch.nn.functional, torch.from_numpy(x.astype(np.float32))).numpy(),
                 what=name)


def test_activation_formulas_without_torch_equivalent(rng):
    x = _act_inputs(rng)
    np.testing.assert_array_equal(activation("linear", x), x)
    np.testing.assert_allclose(activation("hard_sigmoid_tf2", x), np.clip(0.2 * x + 0.5, 0, 1), rtol=0, atol=0)
    # torch's LeakyReLU default slope (0.01) is NOT the reference's (Keras 3: 0.2)
    assert activation("leaky_relu", np.array([-1.0]))[0] == pytest.approx(-0.2)
    np.testing.assert_allclose(activation("hard_silu", x), x * np.clip(x / 6 + 0.5, 0, 1))


def test_every_spec_activation_is_implemented():
    x = np.linspace(-5, 5, 24).reshape(2, 12)
    for name in S.ACTIVATIONS + S.AXIS_ACTIVATIONS:
        y = activation(name, x)
        assert y.shape == x.shape and np.all(np.isfinite(y)), name
    assert set(TORCH_ACTS) | {"linear", "hard_sigmoid_tf2"} == set(S.ACTIVATIONS + S.AXIS_ACTIVATIONS)
    with pytest.raises(ValueError):
        activation("swishy", x)


def test_activation_extremes_are_stable():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        for name in ("sigmoid", "softplus", "log_sigmoid", "silu", "mish", "softmax", "log_softmax", "tanh"):
            assert np.all(np.isfinite(activation(name, x))), name


# =========================================================================== torch: recurrent layers
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(TORCH_KINDS))
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_recurrent_vs_torch(torch, kind, bidirectional, num_layers, shape, packed, rng):
    B, T, I, H = shape
    nd = 2 if bidirectional else 1
    mod = make_torch(torch, kind, I, H, num_layers, bidirectional)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = packed_lengths(B, T, rng) if packed else None
    y_t, h_n, c_n = run_torch(torch, mod, x, lengths)
    spec = torch_model_spec(mod, kind)
    y, states = run_spec(spec, x, lengths=lengths, return_state=True)
    assert_close(y, y_t, what="output")
    compare_states(kind, states, h_n, c_n, num_layers, nd, "state")
    if packed:
        assert np.all(y[np.arange(T)[None, :] >= lengths[:, None]] == 0)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(TORCH_KINDS))
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_initial_state_vs_torch(torch, kind, bidirectional, shape, packed, rng):
    B, T, I, H = shape
    nd, L = (2 if bidirectional else 1), 2
    mod = make_torch(torch, kind, I, H, L, bidirectional, seed=1)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    h0 = rng.standard_normal((L * nd, B, H)).astype(np.float32)
    c0 = rng.standard_normal((L * nd, B, H)).astype(np.float32) if kind == "lstm" else None
    lengths = packed_lengths(B, T, rng) if packed else None
    y_t, h_n, c_n = run_torch(torch, mod, x, lengths, h0, c0)
    y, states = run_spec(torch_model_spec(mod, kind), x, lengths=lengths,
                         initial_state=initial_items(kind, h0, c0, L, nd), return_state=True)
    assert_close(y, y_t, what="output")
    compare_states(kind, states, h_n, c_n, L, nd, "state")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_lstm_proj_size_vs_torch(torch, bidirectional, num_layers, shape, packed, rng):
    B, T, I, H = shape
    P = max(1, H // 3)
    nd = 2 if bidirectional else 1
    mod = make_torch(torch, "lstm", I, H, num_layers, bidirectional, proj_size=P, seed=2)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    h0 = rng.standard_normal((num_layers * nd, B, P)).astype(np.float32)
    c0 = rng.standard_normal((num_layers * nd, B, H)).astype(np.float32)
    lengths = packed_lengths(B, T, rng) if packed else None
    spec = torch_model_spec(mod, "lstm")
    assert spec.layers[0].hidden_out == P

    y_t, h_n, c_n = run_torch(torch, mod, x, lengths)
    y, states = run_spec(spec, x, lengths=lengths, return_state=True)
    assert y.shape == (B, T, nd * P)
    assert_close(y, y_t, what="output")
    compare_states("lstm", states, h_n, c_n, num_layers, nd, "state")

    y_t, h_n, c_n = run_torch(torch, mod, x, lengths, h0, c0)
    y, states = run_spec(spec, x, lengths=lengths, initial_state=initial_items("lstm", h0, c0, num_layers, nd),
                         return_state=True)
    assert_close(y, y_t, what="output with initial state")
    compare_states("lstm", states, h_n, c_n, num_layers, nd, "state with initial state")


@pytest.mark.parametrize("kind", list(TORCH_KINDS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_return_sequences_false_is_final_state_in_zero_mode(torch, kind, bidirectional, rng):
    """mask_mode 'zero' + return_sequences=False = torch h_n of the last layer ([fwd, bwd] for bi)."""
    B, T, I, H = 5, 11, 6, 9
    mod = make_torch(torch, kind, I, H, 2, bidirectional, seed=3)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array([11, 1, 4, 7, 2])
    _, h_n, _ = run_torch(torch, mod, x, lengths)
    y = run_spec(torch_model_spec(mod, kind, return_sequences=False), x, lengths=lengths)
    want = np.concatenate([h_n[-2], h_n[-1]], axis=-1) if bidirectional else h_n[-1]
    assert_close(y, want, what="last output")


@pytest.mark.parametrize("merge_mode", ["sum", "mul", "ave", "none"])
def test_merge_modes_vs_torch(torch, merge_mode, rng):
    B, T, I, H = 4, 9, 5, 7
    mod = make_torch(torch, "gru", I, H, 1, True, seed=4)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array([9, 3, 1, 6])
    y_t, _, _ = run_torch(torch, mod, x, lengths)
    fwd, bwd = y_t[..., :H], y_t[..., H:]
    want = {"sum": fwd + bwd, "mul": fwd * bwd, "ave": (fwd + bwd) / 2, "none": (fwd, bwd)}[merge_mode]
    y = run_spec(torch_model_spec(mod, "gru", merge_mode=merge_mode), x, lengths=lengths)
    if merge_mode == "none":
        assert isinstance(y, tuple) and len(y) == 2
        assert_close(y[0], want[0], what="fwd")
        assert_close(y[1], want[1], what="bwd")
    else:
        assert_close(y, want, what=merge_mode)


def test_dense_and_last_step_heads_vs_torch(torch, rng):
    """LSTM -> Dense(relu) -> LastStep -> Dense(softmax) == the same torch composition."""
    B, T, I, H = 3, 8, 4, 6
    mod = make_torch(torch, "lstm", I, H, 1, False, seed=5)
    torch.manual_seed(6)
    lin1, lin2 = torch.nn.Linear(H, 10), torch.nn.Linear(10, 3)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    with torch.no_grad():
        out, _ = mod(torch.from_numpy(x))
        want = torch.softmax(lin2(torch.relu(lin1(out))[:, -1]), dim=-1).numpy()
        seq_want = torch.log_softmax(lin1(out), dim=-1).numpy()
    g = lambda p: p.detach().numpy().copy()  # noqa: E731
    spec = S.ModelSpec(layers=torch_layer_specs(mod, "lstm") + [
        S.DenseSpec("d1", g(lin1.weight), g(lin1.bias), "relu"), S.LastStepSpec("last"),
        S.DenseSpec("d2", g(lin2.weight), g(lin2.bias)), S.ActivationSpec("sm", "softmax")], input_features=I)
    assert_close(run_spec(spec, x), want, what="head")
    spec2 = S.ModelSpec(layers=torch_layer_specs(mod, "lstm") + [
        S.DenseSpec("d1", g(lin1.weight), g(lin1.bias), "log_softmax")], input_features=I)
    assert_close(run_spec(spec2, x), seq_want, what="time-distributed dense")


# =========================================================================== reference-only semantics
def _tiny_spec(kind="gru", mask_mode="zero", direction="forward", return_sequences=True, seed=0, H=3, I=2):
    r = np.random.default_rng(seed)
    g = S.GATES[kind]
    nd = 2 if direction == "bidirectional" else 1
    ws = [S.DirectionWeights(r.normal(size=(g * H, I)), r.normal(size=(g * H, H)), r.normal(size=g * H),
                             r.normal(size=g * H)) for _ in range(nd)]
    return S.ModelSpec([S.RecurrentSpec(kind, "r", I, H, ws, direction=direction, mask_mode=mask_mode,
                                        return_sequences=return_sequences)], input_features=I)


@pytest.mark.parametrize("mask_mode", ["zero", "hold"])
def test_zero_length_rows(mask_mode, rng):
    spec = _tiny_spec("lstm", mask_mode, "bidirectional")
    x = rng.standard_normal((2, 5, 2)).astype(np.float32)
    h0 = rng.standard_normal((2, 2, 3)).astype(np.float32)
    c0 = rng.standard_normal((2, 2, 3)).astype(np.float32)
    y, [(h, c)] = run_spec(spec, x, lengths=np.array([0, 5]), initial_state=(h0, c0), return_state=True)
    assert np.all(y[0] == 0)  # zeros in both modes: "hold" starts from zeros, not from the initial state
    assert_close(h[:, 0], h0[:, 0], atol=0, rtol=0, what="untouched h")
    assert_close(c[:, 0], c0[:, 0], atol=0, rtol=0, what="untouched c")
    spec.layers[0].return_sequences = False
    y_last = run_spec(spec, x, lengths=np.array([0, 5]), initial_state=(h0, c0))
    want = np.concatenate([h0[0, 0], h0[1, 0]]) if mask_mode == "zero" else np.zeros(6)
    assert_close(y_last[0], want.astype(np.float32), what="last output of an empty row")


def test_hold_and_reverse_order_by_hand(rng):
    """'hold' repeats the last valid output; 'reverse' emits in processing order."""
    x = rng.standard_normal((1, 6, 2)).astype(np.float32)
    lengths = np.array([4])
    fwd = run_spec(_tiny_spec(mask_mode="hold"), x, lengths=lengths)
    full = run_spec(_tiny_spec(mask_mode="hold"), x[:, :4])
    assert_close(fwd[:, :4], full, what="valid steps")
    assert_close(fwd[:, 4], full[:, 3], what="held")
    assert_close(fwd[:, 5], full[:, 3], what="held")
    rev = run_spec(_tiny_spec(mask_mode="hold", direction="reverse"), x, lengths=lengths)
    rev_valid = run_spec(_tiny_spec(mask_mode="hold"), x[:, 3::-1])  # steps 3, 2, 1, 0 processed forward
    assert np.all(rev[:, :2] == 0)  # processing order starts at t=5, 4: masked, nothing emitted yet
    assert_close(rev[:, 2:], rev_valid, what="reverse = forward over the reversed valid steps")


def test_input_checks(rng):
    spec = _tiny_spec()
    x = rng.standard_normal((2, 4, 2)).astype(np.float32)
    for bad in (np.array([5, 1]), np.array([-1, 1]), np.array([1, 2, 3])):
        with pytest.raises(ValueError):
            run_spec(spec, x, lengths=bad)
    with pytest.raises(ValueError):
        run_spec(spec, x[..., :1])
    with pytest.raises(ValueError):
        run_spec(spec, x, initial_state=np.zeros((1, 3, 3)))
    y = run_spec(spec, x, initial_state=(np.zeros((1, 2, 3)),))  # a 1-tuple is accepted for GRU
    assert_close(y, run_spec(spec, x), atol=0, rtol=0)


# =========================================================================== keras helpers
def _keras_dir(kind, weights, reset_after=True):
    """Keras cell weights -> DirectionWeights in the canonical layout (GRU: z,r,h -> r,z,n)."""
    k, rk, b = (np.asarray(w, dtype=np.float32) for w in weights)
    H = rk.shape[0]
    if kind == "gru":
        perm = np.concatenate([np.arange(H, 2 * H), np.arange(0, H), np.arange(2 * H, 3 * H)])
        k, rk = k[:, perm], rk[:, perm]
        if reset_after:
            return S.DirectionWeights(k.T, rk.T, b[0][perm], b[1][perm])
        return S.DirectionWeights(k.T, rk.T, b[perm], np.zeros(3 * H, np.float32))
    return S.DirectionWeights(k.T, rk.T, b, np.zeros_like(b))


def _keras_rec_spec(kind, layer, name, input_size, weights, **kw):
    units = layer.units
    act = layer.activation.__name__
    ract = getattr(layer, "recurrent_activation", None)
    extra = {"recurrent_activation": ract.__name__} if ract is not None else {}
    return S.RecurrentSpec(kind, name, input_size, units, weights, activation=act,
                           reset_after=getattr(layer, "reset_after", True), **extra, **kw)


def _k(y):
    return np.asarray(y)


def _masked_ids(rng, B, T, V):
    ids = rng.integers(1, V, size=(B, T))
    ids[0, 3:] = 0  # post padding
    ids[1, :2] = 0  # pre padding
    ids[2, 2] = 0  # a hole
    ids[2, 5] = 0
    ids[3, :] = 0  # all masked
    return ids


# =========================================================================== keras: semantics
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_v1", "simple_rnn"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "go_backwards"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
def test_keras_embedding_mask_hold(keras, kind, go_backwards, return_sequences, rng):
    B, T, V, D, H = 5, 7, 11, 4, 6
    L = keras.layers
    cls = {"lstm": L.LSTM, "gru": L.GRU, "gru_v1": L.GRU, "simple_rnn": L.SimpleRNN}[kind]
    extra = {"reset_after": False} if kind == "gru_v1" else {}
    if kind != "simple_rnn":
        extra["recurrent_activation"] = "sigmoid"
    keras.utils.set_random_seed(7)
    emb = L.Embedding(V, D, mask_zero=True)
    rnn = cls(H, return_sequences=return_sequences, go_backwards=go_backwards, return_state=True,
              bias_initializer="random_normal", **extra)
    inp = keras.Input((T,), dtype="int32")
    out = rnn(emb(inp))
    model = keras.Model(inp, out)
    ids = _masked_ids(rng, B, T, V)
    ks = [_k(o) for o in model(ids)]
    base = "gru" if kind.startswith("gru") else kind
    rspec = _keras_rec_spec(base, rnn, "r", D, [_keras_dir(base, rnn.get_weights(), reset_after=extra.get("reset_after", True))], direction="reverse" if go_backwards else "forward",
        return_sequences=return_sequences, mask_mode="hold")
    spec = S.ModelSpec([S.EmbeddingSpec("e", _k(emb.embeddings), mask_zero=True), rspec])
    y, [st] = run_spec(spec, ids, return_state=True)
    assert_close(y, ks[0], what="output")
    if base == "lstm":
        assert_close(st[0][0], ks[1], what="h")
        assert_close(st[1][0], ks[2], what="c")
    else:
        assert_close(st[0], ks[1], what="h")


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
def test_keras_masking_bidirectional(keras, merge_mode, return_sequences, rng):
    """Keras Bidirectional forces zero_output_for_mask=return_sequences: 'zero' for sequences,
    'hold' (last valid output) for return_sequences=False."""
    B, T, F, H = 4, 6, 3, 5
    L = keras.layers
    keras.utils.set_random_seed(8)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    x[0, 4:] = 0.0
    x[1, 0] = 0.0
    x[2, 2:4] = 0.0
    x[3, :] = 0.0
    masking = L.Masking(0.0)
    bi = L.Bidirectional(L.LSTM(H, return_sequences=return_sequences, bias_initializer="random_normal"),
                         merge_mode=merge_mode)
    inp = keras.Input((T, F))
    model = keras.Model(inp, bi(masking(inp)))
    want = model(x)
    ws = [_keras_dir("lstm", bi.forward_layer.get_weights()), _keras_dir("lstm", bi.backward_layer.get_weights())]
    rspec = S.RecurrentSpec("lstm", "bi", F, H, ws, direction="bidirectional", merge_mode=merge_mode or "none",
                            return_sequences=return_sequences, mask_mode="zero" if return_sequences else "hold")
    y = run_spec(S.ModelSpec([S.MaskingSpec("m", 0.0), rspec], input_features=F), x)
    if merge_mode is None:
        assert isinstance(y, tuple)
        assert_close(y[0], _k(want[0]), what="fwd")
        assert_close(y[1], _k(want[1]), what="bwd")
    else:
        assert_close(y, _k(want), what=str(merge_mode))


def test_keras_masking_reverse_stack_and_dense(keras, rng):
    """Masking(0.5) -> LSTM(go_backwards, seq) -> GRU(seq) -> Dense(softmax): the mask passes through the
    reversed layer unchanged (not re-ordered), and masked steps are replaced by 0 by Masking."""
    B, T, F, H = 3, 6, 4, 5
    L = keras.layers
    keras.utils.set_random_seed(9)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    x[0, 4:] = 0.5
    x[1, 1] = 0.5
    inp = keras.Input((T, F))
    m = L.Masking(0.5)
    l1 = L.LSTM(H, return_sequences=True, go_backwards=True, bias_initializer="random_normal")
    l2 = L.GRU(H, return_sequences=True, bias_initializer="random_normal")
    d = L.Dense(3, activation="softmax")
    model = keras.Model(inp, d(l2(l1(m(inp)))))
    spec = S.ModelSpec([
        S.MaskingSpec("m", 0.5),
        _keras_rec_spec("lstm", l1, "l1", F, [_keras_dir("lstm", l1.get_weights())], direction="reverse",
                        mask_mode="hold"),
        _keras_rec_spec("gru", l2, "l2", H, [_keras_dir("gru", l2.get_weights())], mask_mode="hold"),
        S.DenseSpec("d", _k(d.kernel).T, _k(d.bias), "softmax")], input_features=F)
    assert_close(run_spec(spec, x), _k(model(x)), what="stack")

    # Masking alone then Dense: a masked step reaches the output as Dense(0)
    d2 = L.Dense(3, activation="tanh", bias_initializer="random_normal")
    model2 = keras.Model(inp, d2(m(inp)))
    spec2 = S.ModelSpec([S.MaskingSpec("m", 0.5), S.DenseSpec("d", _k(d2.kernel).T, _k(d2.bias), "tanh")],
                        input_features=F)
    assert_close(run_spec(spec2, x), _k(model2(x)), what="masking values")


KERAS_ACTS = {
    "linear": lambda A, x: A.linear(x),
    "tanh": lambda A, x: A.tanh(x),
    "sigmoid": lambda A, x: A.sigmoid(x),
    "relu": lambda A, x: A.relu(x),
    "relu6": lambda A, x: A.relu6(x),
    "hard_sigmoid": lambda A, x: A.hard_sigmoid(x),
    "elu": lambda A, x: A.elu(x),
    "selu": lambda A, x: A.selu(x),
    "softplus": lambda A, x: A.softplus(x),
    "softsign": lambda A, x: A.softsign(x),
    "silu": lambda A, x: A.silu(x),
    "hard_silu": lambda A, x: A.hard_silu(x),
    "exponential": lambda A, x: A.exponential(x),
    "leaky_relu": lambda A, x: A.leaky_relu(x),
    "gelu": lambda A, x: A.gelu(x, approximate=False),
    "gelu_tanh": lambda A, x: A.gelu(x, approximate=True),
    "mish": lambda A, x: A.mish(x),
    "log_sigmoid": lambda A, x: A.log_sigmoid(x),
    "softmax": lambda A, x: A.softmax(x, axis=-1),
    "log_softmax": lambda A, x: A.log_softmax(x, axis=-1),
}


@pytest.mark.parametrize("name", sorted(KERAS_ACTS))
def test_activation_vs_keras(keras, name, rng):
    x = _act_inputs(rng).astype(np.float32)
    want = _k(KERAS_ACTS[name](keras.activations, keras.ops.convert_to_tensor(x)))
    assert_close(activation(name, x).astype(np.float32), want, atol=ATOL_F32, rtol=RTOL_F32, what=name)
