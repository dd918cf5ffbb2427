"""fastrnn.converters.torch against real PyTorch modules (torch is the oracle).

Every numeric case is checked twice: through the runtime (``fastrnn.from_torch(m).predict``) and
through the numpy reference (``reference.run_spec(spec_from_torch(m), ...)``) -- the ``backend``
parameter.  Expected values come from the torch module itself (packed sequences for ``lengths``).
"""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
import reference
from conftest import ATOL_F32, assert_close, require, child_env, CHILD_CWD
from fastrnn.converters.torch import fastrnn_state_to_torch, spec_from_torch, torch_state_to_fastrnn
from fastrnn.errors import ConversionError, UnsupportedLayerError
from fastrnn.spec import ActivationSpec, DenseSpec, EmbeddingSpec, RecurrentSpec

BACKENDS = ["fastrnn", "reference"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def torch():
    t = require("torch")
    t.manual_seed(0)
    return t


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def predict(backend, m, x, **kw):
    if backend == "fastrnn":
        return fastrnn.from_torch(m).predict(x, **kw)
    return reference.run_spec(spec_from_torch(m), x, **kw)


# --------------------------------------------------------------------------- torch helpers
def make_rnn(torch, cell, bidirectional, num_layers, input_size, hidden, bias=True, batch_first=True, seed=0):
    nn = torch.nn
    torch.manual_seed(seed)
    kw = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
              dropout=0.25 if num_layers > 1 else 0.0)
    if cell in ("rnn_tanh", "rnn_relu"):
        m = nn.RNN(input_size, hidden, nonlinearity=cell[4:], **kw)
    elif cell == "lstm":
        m = nn.LSTM(input_size, hidden, **kw)
    elif cell == "lstm_proj":
        m = nn.LSTM(input_size, hidden, proj_size=max(1, hidden // 2), **kw)
    elif cell == "gru":
        m = nn.GRU(input_size, hidden, **kw)
    else:
        raise ValueError(cell)
    return m.eval()


def torch_rnn(torch, m, x, lengths=None, hx=None):
    """Run a bare torch recurrent module on batch-first numpy x: (y (B, T, D*Hout) numpy, h_n)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    bf = m.batch_first
    xt = torch.from_numpy(np.ascontiguousarray(x))
    inp = xt if bf else xt.transpose(0, 1)
    with torch.no_grad():
        if lengths is None:
            y, hn = m(inp, hx)
        else:
            packed = pack_padded_sequence(inp, torch.as_tensor(np.asarray(lengths), dtype=torch.int64),
                                          batch_first=bf, enforce_sorted=False)
            out, hn = m(packed, hx)
            y, _ = pad_packed_sequence(out, batch_first=bf, total_length=x.shape[1])
    if not bf:
        y = y.transpose(0, 1)
    return y.contiguous().numpy(), hn


def mixed_lengths(rng, B, T):
    """Random lengths in [1, T] with a length-1 row and (B > 1) a full-length row."""
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = 1
    if B > 1:
        lengths[-1] = T
    return lengths.astype(np.int64)


def random_state(torch, rng, m, B):
    nd = 2 if m.bidirectional else 1
    L, H = m.num_layers, m.hidden_size
    hout = getattr(m, "proj_size", 0) or H
    h = torch.from_numpy((0.5 * rng.standard_normal((L * nd, B, hout))).astype(np.float32))
    if m.mode == "LSTM":
        c = torch.from_numpy((0.5 * rng.standard_normal((L * nd, B, H))).astype(np.float32))
        return (h, c)
    return h


def assert_states(got, m, hn, what=""):
    expected = torch_state_to_fastrnn(m, hn)
    assert isinstance(got, (list, tuple)) and len(got) == len(expected), f"{what}: {len(got)} states"
    for k, (g, e) in enumerate(zip(got, expected)):
        if isinstance(e, tuple):
            assert len(g) == 2, f"{what}: layer {k} LSTM state is not an (h, c) pair"
            assert_close(g[0], e[0], what=f"{what} layer {k} h")
            assert_close(g[1], e[1], what=f"{what} layer {k} c")
        else:
            assert_close(g, e, what=f"{what} layer {k} h")


# --------------------------------------------------------------------------- the pairwise case grid
SIZES = [(1, 1, 3, 5), (7, 13, 17, 33), (3, 50, 8, 16), (40, 6, 5, 9)]
FACTORS = {
    "cell": ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"],
    "direction": ["uni", "bi"],
    "num_layers": [1, 2],
    "sizes": SIZES,
    "lengths": ["none", "mixed"],
    "init": ["none", "random"],
    "bias": [True, False],
    "batch_first": [True, False],
}


def _targets(row):
    t = {(a, row[a], b, row[b]) for a, b in itertools.combinations(range(len(row)), 2)}
    t.add(("cell-direction-layers", row[0], row[1], row[2]))  # all 20 module shapes
    t.add(("cell-sizes-lengths", row[0], row[3], row[4]))
    t.add(("cell-direction-init", row[0], row[1], row[5]))
    return t


def _covering_rows():
    """Greedy covering array: every pair of factor values at least once, plus every combination of
    cell x direction x num_layers, cell x sizes x lengths and cell x direction x init.
    Deterministic (the first best candidate wins)."""
    cands = [(r, _targets(r)) for r in itertools.product(*(range(len(v)) for v in FACTORS.values()))]
    uncovered = set().union(*(t for _, t in cands))
    rows = []
    while uncovered:
        row, t = max(cands, key=lambda c: len(c[1] & uncovered))
        rows.append(row)
        uncovered -= t
    return [dict(zip(FACTORS, (vals[i] for vals, i in zip(FACTORS.values(), r)))) for r in rows]


CASES = _covering_rows()


def _case_id(c):
    B, T, I, H = c["sizes"]
    return (f"{c['cell']}-{c['direction']}-L{c['num_layers']}-B{B}T{T}I{I}H{H}-len_{c['lengths']}"
            f"-init_{c['init']}{'' if c['bias'] else '-nobias'}{'' if c['batch_first'] else '-tbf'}")


def test_case_grid_is_pairwise():
    keys = list(FACTORS)
    for a, b in itertools.combinations(keys, 2):
        for va, vb in itertools.product(FACTORS[a], FACTORS[b]):
            assert any(c[a] == va and c[b] == vb for c in CASES), f"{a}={va} with {b}={vb} missing"
    for cell, d, n in itertools.product(FACTORS["cell"], FACTORS["direction"], FACTORS["num_layers"]):
        assert any((c["cell"], c["direction"], c["num_layers"]) == (cell, d, n) for c in CASES)


def run_case(torch, backend, case, seed):
    rng = np.random.default_rng(seed)
    B, T, I, H = case["sizes"]
    m = make_rnn(torch, case["cell"], case["direction"] == "bi", case["num_layers"], I, H,
                 bias=case["bias"], batch_first=case["batch_first"], seed=seed)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = mixed_lengths(rng, B, T) if case["lengths"] == "mixed" else None
    hx = random_state(torch, rng, m, B) if case["init"] == "random" else None
    init = None
    if hx is not None:
        init = torch_state_to_fastrnn(m, hx)
        if case["num_layers"] == 1:
            init = init[0]  # the bare item is accepted for a single recurrent layer
    y_exp, hn = torch_rnn(torch, m, x, lengths, hx)
    y, states = predict(backend, m, x, lengths=lengths, initial_state=init, return_state=True)
    assert_close(y, y_exp, what="output")
    assert_states(states, m, hn, what="final state")
    if lengths is not None:
        for b, n in enumerate(lengths):
            assert not np.any(y[b, n:]), "outputs past the length must be zero"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_recurrent(torch, backend, case):
    run_case(torch, backend, case, seed=CASES.index(case))


@pytest.mark.parametrize("cell", FACTORS["cell"])
def test_recurrent_isa_ends(torch, isa_ends, cell):
    case = dict(cell=cell, direction="bi", num_layers=2, sizes=(7, 13, 17, 33), lengths="mixed", init="random",
                bias=True, batch_first=True)
    run_case(torch, "fastrnn", case, seed=100)
    run_case(torch, "fastrnn", dict(case, direction="uni", sizes=(40, 6, 5, 9), init="none"), seed=101)


def test_long_lstm_t1000(torch, backend):
    rng = np.random.default_rng(7)
    m = make_rnn(torch, "lstm", False, 1, 8, 32, seed=7)
    x = rng.standard_normal((2, 1000, 8)).astype(np.float32)
    lengths = np.array([1000, 613])
    hx = random_state(torch, rng, m, 2)
    y_exp, hn = torch_rnn(torch, m, x, lengths, hx)
    y, states = predict(backend, m, x, lengths=lengths, initial_state=torch_state_to_fastrnn(m, hx),
                        return_state=True)
    assert_close(y, y_exp, atol=ATOL_F32, what="T=1000 output")
    assert_states(states, m, hn, what="T=1000 state")


def test_return_state_false_returns_array(torch, backend):
    m = make_rnn(torch, "gru", True, 2, 4, 6)
    x = np.random.default_rng(1).standard_normal((3, 5, 4)).astype(np.float32)
    y = predict(backend, m, x)
    assert isinstance(y, np.ndarray) and y.shape == (3, 5, 12)
    assert_close(y, torch_rnn(torch, m, x)[0])


def test_dropout_between_layers_is_ignored(torch):
    m = make_rnn(torch, "lstm", True, 3, 4, 6)
    m.dropout = 0.9
    x = np.random.default_rng(2).standard_normal((2, 5, 4)).astype(np.float32)
    spec = spec_from_torch(m)
    assert [l.name for l in spec.layers] == ["lstm.l0", "lstm.l1", "lstm.l2"]
    assert spec.metadata["torch_recurrent"]["dropout_ignored"] == 0.9
    assert_close(reference.run_spec(spec, x), torch_rnn(torch, m, x)[0])


def test_double_precision_module(torch, backend):
    m = make_rnn(torch, "lstm", False, 1, 4, 6).double()
    x = np.random.default_rng(3).standard_normal((2, 5, 4))
    with torch.no_grad():
        y_exp = m(torch.from_numpy(x))[0].numpy().astype(np.float32)
    assert_close(predict(backend, m, x.astype(np.float32)), y_exp)


# --------------------------------------------------------------------------- spec structure
def test_recurrent_spec_fields(torch):
    m = make_rnn(torch, "lstm_proj", True, 2, 5, 8, bias=False, batch_first=False)
    spec = spec_from_torch(m)
    assert spec.input_features == 5 and not spec.takes_ids
    assert spec.metadata["torch_batch_first"] is False
    l0, l1 = spec.layers
    for l in (l0, l1):
        assert isinstance(l, RecurrentSpec)
        assert (l.kind, l.units, l.proj_size, l.direction, l.mask_mode, l.return_sequences) == \
            ("lstm", 8, 4, "bidirectional", "zero", True)
        for w in l.weights:
            assert not np.any(w.b_ih) and not np.any(w.b_hh)
    assert (l0.input_size, l1.input_size) == (5, 8)  # 2 directions x proj 4
    np.testing.assert_array_equal(l1.weights[1].w_hr, m.weight_hr_l1_reverse.detach().numpy())
    rnn = spec_from_torch(make_rnn(torch, "rnn_relu", False, 1, 3, 4))
    assert rnn.layers[0].kind == "simple_rnn" and rnn.layers[0].activation == "relu"


def test_state_helpers(torch):
    rng = np.random.default_rng(4)
    m = make_rnn(torch, "lstm_proj", True, 2, 3, 6)
    h, c = random_state(torch, rng, m, 5)
    st = torch_state_to_fastrnn(m, (h, c))
    assert len(st) == 2
    for k in range(2):
        assert st[k][0].shape == (2, 5, 3) and st[k][1].shape == (2, 5, 6)
        for d in range(2):
            np.testing.assert_array_equal(st[k][0][d], h[k * 2 + d].numpy())
            np.testing.assert_array_equal(st[k][1][d], c[k * 2 + d].numpy())
    h2, c2 = fastrnn_state_to_torch(m, st)
    assert torch.equal(h2, h) and torch.equal(c2, c)
    # GRU, one layer: list or bare item; Sequential containing the module
    g = make_rnn(torch, "gru", False, 1, 3, 4)
    hg = random_state(torch, rng, g, 2)
    stg = torch_state_to_fastrnn(torch.nn.Sequential(torch.nn.Linear(2, 3), g), hg)
    assert len(stg) == 1 and stg[0].shape == (1, 2, 4)
    assert torch.equal(fastrnn_state_to_torch(g, stg), hg)
    assert torch.equal(fastrnn_state_to_torch(g, stg[0]), hg)
    l1 = make_rnn(torch, "lstm", False, 1, 3, 4)
    hc = random_state(torch, rng, l1, 2)
    bare = torch_state_to_fastrnn(l1, hc)[0]
    assert all(torch.equal(a, b) for a, b in zip(fastrnn_state_to_torch(l1, bare), hc))
    with pytest.raises(ConversionError):
        torch_state_to_fastrnn(m, h)  # an LSTM needs (h, c)
    with pytest.raises(ConversionError):
        torch_state_to_fastrnn(g, torch.zeros(3, 2, 4))  # wrong num_layers*dirs
    with pytest.raises(ConversionError):
        torch_state_to_fastrnn(torch.nn.Linear(2, 3), hg)


# --------------------------------------------------------------------------- Sequential models
def test_embedding_lstm(torch, backend):
    nn = torch.nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(5)
    emb = nn.Embedding(20, 6, padding_idx=0)
    lstm = nn.LSTM(6, 8, batch_first=True, bidirectional=True, num_layers=2)
    m = nn.Sequential(emb, lstm).eval()
    spec = spec_from_torch(m)
    assert spec.takes_ids and spec.input_features is None
    assert isinstance(spec.layers[0], EmbeddingSpec) and not spec.layers[0].mask_zero
    assert [l.name for l in spec.layers] == ["0", "1.l0", "1.l1"]
    rng = np.random.default_rng(5)
    B, T = 6, 9
    ids = rng.integers(0, 20, size=(B, T)).astype(np.int64)
    lengths = mixed_lengths(rng, B, T)
    with torch.no_grad():
        e = emb(torch.from_numpy(ids))
        y_full, hn_full = m(torch.from_numpy(ids))
        out, hn = lstm(pack_padded_sequence(e, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False))
        y_exp = pad_packed_sequence(out, batch_first=True, total_length=T)[0].numpy()
    y, states = predict(backend, m, ids, lengths=lengths, return_state=True)
    assert_close(y, y_exp)
    assert_states(states, m, hn)
    y2, states2 = predict(backend, m, ids, return_state=True)
    assert_close(y2, y_full.numpy())
    assert_states(states2, m, hn_full)


def _mlp(torch):
    nn = torch.nn
    torch.manual_seed(6)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 4), nn.Softmax(dim=-1)).eval()


def test_mlp_structure(torch):
    spec = spec_from_torch(_mlp(torch))
    assert spec.input_features == 5
    assert [(type(l), l.activation) for l in spec.layers] == [(DenseSpec, "relu"), (DenseSpec, "softmax")]
    assert [l.name for l in spec.layers] == ["0", "2"]


def test_mlp_3d(torch, backend):
    m = _mlp(torch)
    x = np.random.default_rng(6).standard_normal((3, 7, 5)).astype(np.float32)
    with torch.no_grad():
        y_exp = m(torch.from_numpy(x)).numpy()
    assert_close(predict(backend, m, x), y_exp)


def test_mlp_2d(torch, backend):
    m = _mlp(torch)
    x = np.random.default_rng(6).standard_normal((4, 5)).astype(np.float32)
    with torch.no_grad():
        y_exp = m(torch.from_numpy(x)).numpy()
    if backend == "reference":  # the numpy reference takes (B, T, F) only
        y = reference.run_spec(spec_from_torch(m), x[:, None, :])[:, 0]
    else:
        y = fastrnn.from_torch(m).predict(x)
    assert_close(y, y_exp)


def test_linear_then_recurrent_nested(torch, backend):
    nn = torch.nn
    torch.manual_seed(8)
    m = nn.Sequential(
        nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Tanh()),
        nn.Sequential(nn.Identity(), nn.GRU(8, 6, batch_first=True, bidirectional=True)),
    ).eval()
    spec = spec_from_torch(m)
    assert [(l.name, l.kind) for l in spec.layers] == [("0.0", "dense"), ("1.1.l0", "gru")]
    assert spec.layers[0].activation == "tanh"
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    with torch.no_grad():
        y_exp, hn = m(torch.from_numpy(x))
    y, states = predict(backend, m, x, return_state=True)
    assert_close(y, y_exp.numpy())
    assert_states(states, m, hn)


def test_embedding_dense_softmax_dim2(torch, backend):
    nn = torch.nn
    torch.manual_seed(9)
    m = nn.Sequential(nn.Embedding(11, 4), nn.Linear(4, 5), nn.LogSoftmax(dim=2)).eval()
    ids = np.random.default_rng(9).integers(0, 11, size=(3, 4))
    with torch.no_grad():
        y_exp = m(torch.from_numpy(ids)).numpy()
    assert_close(predict(backend, m, ids), y_exp)


# --------------------------------------------------------------------------- activations
ACTIVATIONS = [
    ("ReLU", lambda nn: nn.ReLU(), "relu"),
    ("ReLU6", lambda nn: nn.ReLU6(), "relu6"),
    ("Tanh", lambda nn: nn.Tanh(), "tanh"),
    ("Sigmoid", lambda nn: nn.Sigmoid(), "sigmoid"),
    ("Softmax", lambda nn: nn.Softmax(dim=-1), "softmax"),
    ("LogSoftmax", lambda nn: nn.LogSoftmax(dim=-1), "log_softmax"),
    ("ELU", lambda nn: nn.ELU(), "elu"),
    ("SELU", lambda nn: nn.SELU(), "selu"),
    ("Softplus", lambda nn: nn.Softplus(), "softplus"),
    ("Softsign", lambda nn: nn.Softsign(), "softsign"),
    ("SiLU", lambda nn: nn.SiLU(), "silu"),
    ("Hardsigmoid", lambda nn: nn.Hardsigmoid(), "hard_sigmoid"),
    ("Hardswish", lambda nn: nn.Hardswish(), "hard_silu"),
    ("GELU", lambda nn: nn.GELU(), "gelu"),
    ("GELU_tanh", lambda nn: nn.GELU(approximate="tanh"), "gelu_tanh"),
    ("Hardtanh", lambda nn: nn.Hardtanh(), "hard_tanh"),
    ("Hardtanh06", lambda nn: nn.Hardtanh(0.0, 6.0), "relu6"),
    ("Mish", lambda nn: nn.Mish(), "mish"),
    ("LogSigmoid", lambda nn: nn.LogSigmoid(), "log_sigmoid"),
    ("LeakyReLU0.2", lambda nn: nn.LeakyReLU(0.2), "leaky_relu"),
]


def _act_input(torch, rng):
    """Linear(4, 6) whose outputs span about [-30, 30] (softplus' linear region above 20 included)."""
    lin = torch.nn.Linear(4, 6)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy((3.0 * rng.standard_normal((6, 4))).astype(np.float32)))
        lin.bias.copy_(torch.from_numpy(rng.standard_normal(6).astype(np.float32)))
    x = (2.5 * rng.standard_normal((3, 40, 4))).astype(np.float32)
    return lin, x


@pytest.mark.parametrize("name,make,expected", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_folded(torch, backend, name, make, expected):
    rng = np.random.default_rng(10)
    lin, x = _act_input(torch, rng)
    m = torch.nn.Sequential(lin, make(torch.nn)).eval()
    spec = spec_from_torch(m)
    assert len(spec.layers) == 1 and spec.layers[0].activation == expected
    with torch.no_grad():
        pre = lin(torch.from_numpy(x)).numpy()
        y_exp = m(torch.from_numpy(x)).numpy()
    assert pre.max() > 20 and pre.min() < -20
    assert_close(predict(backend, m, x), y_exp, what=name)


@pytest.mark.parametrize("name,make,expected", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_standalone(torch, backend, name, make, expected):
    rng = np.random.default_rng(11)
    lin, x = _act_input(torch, rng)
    m = torch.nn.Sequential(lin, torch.nn.LeakyReLU(0.2), make(torch.nn)).eval()
    spec = spec_from_torch(m)
    assert [type(l) for l in spec.layers] == [DenseSpec, ActivationSpec]
    assert spec.layers[0].activation == "leaky_relu" and spec.layers[1].activation == expected
    with torch.no_grad():
        y_exp = m(torch.from_numpy(x)).numpy()
    assert_close(predict(backend, m, x), y_exp, what=name)


def test_noop_modules(torch, backend):
    nn = torch.nn
    torch.manual_seed(12)
    m = nn.Sequential(nn.Linear(3, 4), nn.Identity(), nn.Dropout(0.3), nn.AlphaDropout(0.2), nn.ReLU(),
                      nn.Dropout1d(0.1), nn.Linear(4, 2)).eval()
    spec = spec_from_torch(m)
    assert [(l.kind, l.activation) for l in spec.layers] == [("dense", "relu"), ("dense", "linear")]
    x = np.random.default_rng(12).standard_normal((2, 3, 3)).astype(np.float32)
    with torch.no_grad():
        y_exp = m(torch.from_numpy(x)).numpy()
    assert_close(predict(backend, m, x), y_exp)


def test_linear_without_bias(torch, backend):
    torch.manual_seed(13)
    m = torch.nn.Linear(3, 5, bias=False)
    x = np.random.default_rng(13).standard_normal((2, 4, 3)).astype(np.float32)
    with torch.no_grad():
        y_exp = m(torch.from_numpy(x)).numpy()
    assert_close(predict(backend, m, x), y_exp)


def test_subclass_without_forward_override(torch):
    class InitLSTM(torch.nn.LSTM):
        def __init__(self):
            super().__init__(3, 4, batch_first=True)

    spec = spec_from_torch(InitLSTM())
    assert spec.layers[0].kind == "lstm"


# --------------------------------------------------------------------------- errors
def _raises(torch_module, *needles):
    with pytest.raises(UnsupportedLayerError) as ei:
        spec_from_torch(torch_module)
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"{n!r} not in error message:\n{msg}"
    assert isinstance(ei.value, NotImplementedError)
    return msg


def test_error_unsupported_module(torch):
    nn = torch.nn
    _raises(nn.Sequential(nn.Linear(3, 4), nn.Conv1d(4, 4, 3)), "Conv1d", "'1'")
    _raises(nn.Conv1d(4, 4, 3), "Conv1d")


def test_error_lists_all_unsupported(torch):
    nn = torch.nn
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.LeakyReLU(), nn.Sequential(nn.Conv1d(4, 4, 1)))
    msg = _raises(m, "BatchNorm1d", "'1'", "LeakyReLU", "0.01", "'2'", "Conv1d", "'3.0'")
    assert "3 unsupported" in msg


def test_error_module_after_recurrent(torch):
    nn = torch.nn
    _raises(nn.Sequential(nn.LSTM(3, 4, batch_first=True), nn.Linear(4, 2)), "Linear", "'1'", "last", "tuple")
    _raises(nn.Sequential(nn.GRU(3, 4), nn.GRU(4, 4)), "GRU", "'1'")


@pytest.mark.parametrize("make,needle", [
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(0.01)), "negative_slope=0.01"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.ELU(alpha=0.5)), "alpha=0.5"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Hardtanh(-2.0, 2.0)), "Hardtanh"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Softplus(beta=2.0)), "Softplus"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Softplus(threshold=5.0)), "threshold"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=0)), "dim=0"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=1)), "dim=1"),  # rank unknown
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Softmax()), "dim=None"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=1), nn.LSTM(3, 3)), "dim=1"),
    (lambda nn: nn.Sequential(nn.Embedding(5, 3, max_norm=1.0), nn.LSTM(3, 3)), "max_norm"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Embedding(5, 3)), "first"),
    (lambda nn: nn.Sequential(type("MyCell", (nn.LSTMCell,), {"forward": lambda self, x, hx=None: x})(3, 3)),
     "a cell subclass that overrides forward()"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.ModuleList([nn.ReLU()])), "ModuleList"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Threshold(0.1, 0.0)), "Threshold"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_error_unsupported_options(torch, make, needle):
    _raises(make(torch.nn), needle)


def test_error_custom_modules(torch):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4)

        def forward(self, x):
            return torch.cumsum(self.lstm(x)[0], 1)  # traced with torch.fx; cumsum is not supported

    class MyGRU(nn.GRU):
        def forward(self, x, hx=None):
            return super().forward(x * 2, hx)

    _raises(Net(), "Net", "custom", "cumsum")
    _raises(nn.Sequential(MyGRU(3, 4)), "MyGRU")


def test_error_no_input_size(torch):
    nn = torch.nn
    with pytest.raises(ConversionError):
        spec_from_torch(nn.Sequential())
    with pytest.raises(ConversionError):
        spec_from_torch(nn.Sequential(nn.ReLU(), nn.Linear(3, 3)))
    with pytest.raises(ConversionError):
        spec_from_torch("not a module")


def test_import_without_torch():
    """fastrnn and its torch converter import (and fail cleanly) when torch is missing."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import fastrnn, fastrnn.converters.torch as c\n"
        "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "try:\n    c.spec_from_torch(object())\nexcept ImportError as e:\n    print('ok', e)\n"
    )
    env = child_env()
    r = subprocess.run([sys.executable, "-c", code], cwd=CHILD_CWD, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr


# --------------------------------------------------------------------------- training mode (issue 11 item 6)
def test_training_mode_dropout_refused(torch):
    """A module left in training mode whose output depends on it (dropout) is refused, saying to call
    .eval(); after .eval() it converts and matches torch.  torch itself shows the difference."""
    nn = torch.nn
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.LSTM(8, 5, num_layers=2, dropout=0.3, batch_first=True))
    x = torch.randn(2, 6, 4)
    assert not torch.allclose(m(x)[0], m(x)[0])  # training mode: two calls differ (the trap)
    with pytest.raises(ConversionError, match=r"training mode.*'1' \(Dropout\).*p=0\.5.*'2' \(LSTM\).*dropout=0\.3"
                                              r".*\.eval\(\)") as ei:
        fastrnn.from_torch(m)
    assert isinstance(ei.value, ValueError)
    m.eval()
    with torch.no_grad():
        want = m(x)[0].numpy()
    assert_close(fastrnn.from_torch(m).predict(x.numpy()), want, ATOL_F32)


def test_training_mode_without_dropout_converts(torch):
    """Training mode that changes nothing (no dropout, p=0, one layer) converts: fresh torch modules are in
    training mode, and refusing them would refuse models whose output is the same."""
    nn = torch.nn
    m = nn.Sequential(nn.Dropout(0.0), nn.GRU(3, 4, dropout=0.0, batch_first=True))
    assert m.training
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        want = m(x)[0].numpy()
    assert_close(fastrnn.from_torch(m).predict(x.numpy()), want, ATOL_F32)


def test_training_mode_custom_module_refused(torch):
    """The same for a custom (fx-traced) module: a Dropout submodule in training mode, and a functional
    dropout that drops (training=True, F.dropout's default) are refused."""
    nn, F = torch.nn, torch.nn.functional

    class Sub(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4, batch_first=True)
            self.drop = nn.Dropout(0.2)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.drop(out)

    with pytest.raises(ConversionError, match=r"'drop' \(Dropout\) drops activations with p=0\.2.*\.eval\(\)"):
        fastrnn.from_torch(Sub())
    assert fastrnn.from_torch(Sub().eval()).spec.layers[0].kind == "gru"

    class Func(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4, batch_first=True)

        def forward(self, x):
            out, _ = self.rnn(x)
            return F.dropout(out, 0.3, training=self.training)

    with pytest.raises(UnsupportedLayerError, match=r"p=0\.3 and training=True.*module\.eval\(\)"):
        fastrnn.from_torch(Func())
    assert fastrnn.from_torch(Func().eval()).spec.layers[0].kind == "gru"


# --------------------------------------------------------------------------- cells (issue 11 item 3)
def _step_cell(torch, cell, x, state=None):
    """torch's own cell stepped by hand over x (B, T, F) from ``state``: (outputs (B, T, H), final state)."""
    outs = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            state = cell(x[:, t], state)
            outs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(outs, 1).numpy(), state


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_predict_and_stream(torch, kind, bias):
    """nn.LSTMCell / GRUCell / RNNCell: predict over a sequence = the cell stepped over time from zero;
    stream().step(x_t) = one cell call, from a state set through stream.state."""
    nn = torch.nn
    torch.manual_seed(5)
    cell = {"lstm": lambda: nn.LSTMCell(3, 5, bias=bias), "gru": lambda: nn.GRUCell(3, 5, bias=bias),
            "rnn_tanh": lambda: nn.RNNCell(3, 5, bias=bias), "rnn_relu": lambda: nn.RNNCell(3, 5, bias, "relu")}[kind]()
    x = torch.randn(2, 6, 3)
    m = fastrnn.from_torch(cell)
    want, _ = _step_cell(torch, cell, x)
    assert_close(m.predict(x.numpy()), want, ATOL_F32)
    assert_close(reference.run_spec(spec_from_torch(cell), x.numpy()), want, ATOL_F32)
    h0 = torch.randn(2, 5)
    s0 = (h0, torch.randn(2, 5)) if kind == "lstm" else h0
    st = m.stream(batch_size=2)
    st.state = tuple(a.numpy()[None] for a in s0) if kind == "lstm" else h0.numpy()[None]
    state = s0
    for t in range(x.shape[1]):
        with torch.no_grad():
            state = cell(x[:, t], state)
        h = state[0] if kind == "lstm" else state
        assert_close(st.step(x[:, t].numpy()), h.numpy(), ATOL_F32)
    got = st.state[0]
    assert_close(got[0][0] if kind == "lstm" else got[0], h.numpy(), ATOL_F32)
    if kind == "lstm":
        assert_close(got[1][0], state[1].numpy(), ATOL_F32)
    # predict with the same initial state (predict's format) equals the hand-stepped cell too
    init = tuple(a.numpy()[None] for a in s0) if kind == "lstm" else h0.numpy()[None]
    assert_close(m.predict(x.numpy(), initial_state=init), _step_cell(torch, cell, x, s0)[0], ATOL_F32)


def test_cell_in_sequential(torch):
    """A GRUCell (returns h) followed by modules in nn.Sequential: they apply to each step's h; an LSTMCell
    returns (h, c) so nothing can follow it."""
    nn = torch.nn
    torch.manual_seed(6)
    seq = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.GRUCell(3, 5), nn.Linear(5, 2), nn.Softmax(dim=-1)).eval()
    x = torch.randn(3, 7, 4)
    with torch.no_grad():
        want = np.stack([seq(x[:, t]).numpy() for t in range(7)], 1)  # a fresh (zero) state at each call...
    m = fastrnn.from_torch(seq)
    st = m.stream(batch_size=3)
    assert_close(st.step(x[:, 0].numpy()), want[:, 0], ATOL_F32)  # ...so only the first step is comparable
    h, outs = None, []
    with torch.no_grad():
        for t in range(7):
            h = seq[2](seq[1](seq[0](x[:, t])), h)
            outs.append(seq[4](seq[3](h)).numpy())
    assert_close(m.predict(x.numpy()), np.stack(outs, 1), ATOL_F32)
    with pytest.raises(UnsupportedLayerError, match=r"'1' \(Linear\): comes after the recurrent module '0' "
                                                    r"\(LSTMCell\).*returns a tuple"):
        spec_from_torch(nn.Sequential(nn.LSTMCell(3, 4), nn.Linear(4, 2)))


_FOLD_L2_CHILD = r"""
import sys
import numpy as np, torch, fastrnn
from fastrnn.converters.torch import fastrnn_state_to_torch
from test_torch import mixed_lengths, torch_rnn
core = fastrnn._load_core()
large_l2 = sys.argv[1] == "large"
torch.manual_seed(3)
rng = np.random.default_rng(3)
# (module, input width, layers whose input is folded at batch > 1 when the folded weights fit 3/4 of
# L2: I <= 2H; none by the narrow-input rule, 4 I <= H, which these all miss)
cases = [(torch.nn.LSTM(12, 16, num_layers=2, batch_first=True, bidirectional=True), 12, 2),  # layer 2: I = 2H
         (torch.nn.LSTM(24, 24, proj_size=12, batch_first=True), 24, 1),                    # K = I + P
         (torch.nn.RNN(20, 10, num_layers=2, batch_first=True), 20, 2),                    # I = 2H, then H
         (torch.nn.LSTM(40, 16, batch_first=True), 40, 0)]                                 # I > 2H: never
for isa in fastrnn.info()["available_isas"]:
    fastrnn.set_isa(isa)
    for m, I, layers in cases:
        m = m.eval()
        for B in (1, 7):
            T = 23
            x = rng.standard_normal((B, T, I)).astype(np.float32)
            lengths = mixed_lengths(rng, B, T)
            expected, hn = torch_rnn(torch, m, x, lengths)
            before = core.folded_runs()
            y, st = fastrnn.from_torch(m).predict(x, lengths=lengths, return_state=True)
            folded = core.folded_runs() - before
            what = f"{isa} {m} B={B}"
            want = layers if (large_l2 and B > 1) else 0
            assert folded == want, (what, folded, want)
            np.testing.assert_allclose(y, expected, rtol=1e-5, atol=2e-5, err_msg=what)
            got = fastrnn_state_to_torch(m, st)
            for a, b in zip(got if isinstance(hn, tuple) else (got,), hn if isinstance(hn, tuple) else (hn,)):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=2e-5, err_msg=what)
print("ok")
"""


@pytest.mark.parametrize("l2", ["large", "unknown"])
def test_input_folded_into_steps_where_weights_fit_l2(torch, l2):
    """At batch > 1, LSTM / SimpleRNN layers with inputs up to 2H fold their input projection into the
    steps when the folded weights fit 3/4 of a core's L2 (recurrent.cc, fold_in_l2): with
    FASTRNN_L2_BYTES large every such layer folds (the core's count says so), with it 0 (unknown)
    none does; both match torch (packed lengths, final states, both directions, a projected LSTM,
    every ISA), and batch 1 never folds these."""
    env = child_env(FASTRNN_L2_BYTES=str(64 << 20) if l2 == "large" else "0")
    r = subprocess.run([sys.executable, "-c", _FOLD_L2_CHILD, l2], cwd=CHILD_CWD, capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
