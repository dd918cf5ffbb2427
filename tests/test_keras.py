"""fastrnn.converters.keras against real Keras 3 models (TensorFlow backend; Keras is the oracle).

Every numeric case builds the Keras model once, sets every weight to ``normal * 0.5`` (so biases
are non-zero), takes the expected output from ``model(x)``, and checks it twice: through the
runtime (``fastrnn.from_keras(model).predict``) and through the numpy reference
(``reference.run_spec(spec_from_keras(model), ...)``).

Mask semantics measured with Keras 3.15 / TensorFlow (and pinned by these tests):

* a masked step never changes the state;
* plain layer (forward or ``go_backwards``), ``return_sequences=True``: a masked step outputs the
  last output emitted so far (zeros before the first valid step -- also with an initial_state)
  -> ``mask_mode="hold"``; ``go_backwards`` output is in processing order, mask not reversed;
* ``Bidirectional`` forces ``zero_output_for_mask=return_sequences``: with
  ``return_sequences=True`` masked steps output zeros in both directions -> ``"zero"``;
* ``return_sequences=False``: the last valid output of each direction, zeros if there is none
  (even with an initial_state) -> ``"hold"``;
* an RNN called with ``initial_state`` tensors does NOT get the incoming mask (Keras fills
  ``mask=`` only for single-tensor calls): refused by the converter unless ``mask=`` is passed.
"""
import os

import numpy as np
import pytest

import fastrnn
import reference
from conftest import assert_close, require
from fastrnn.converters.keras import spec_from_keras
from fastrnn.errors import ConversionError, UnsupportedLayerError
from fastrnn.spec import ACTIVATIONS, AXIS_ACTIVATIONS, DenseSpec, EmbeddingSpec, LastStepSpec, RecurrentSpec


def get_keras():
    """Keras 3 on the TensorFlow backend (skip locally / fail in CI when it is missing)."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = require("keras")
    if keras.backend.backend() != "tensorflow":  # pragma: no cover - keras imported earlier elsewhere
        pytest.skip(f"keras was already imported with the {keras.backend.backend()!r} backend")
    return keras


@pytest.fixture(scope="module")
def keras():
    return get_keras()


# --------------------------------------------------------------------------- helpers
def randomize(model, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign((rng.standard_normal(tuple(w.shape)) * scale).astype(np.float32))
    return model


def run_keras(model, x, graph=False):
    """model(x); graph=True: model.predict (traced once: far faster than eager for long sequences)."""
    y = model.predict(x, verbose=0) if graph else model(x, training=False)
    if isinstance(y, (list, tuple)):
        return tuple(np.asarray(a) for a in y)
    return np.asarray(y)


def check_outputs(got, expected, what):
    if isinstance(expected, tuple):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), f"{what}: expected {len(expected)} outputs"
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_close(g, e, what=f"{what} output {i}")
    else:
        assert_close(got, expected, what=what)


def check_model(model, x, keras_inputs=None, what="", graph=False, **predict_kw):
    """Keras(model) == fastrnn.from_keras(model).predict == reference.run_spec, all on x."""
    expected = run_keras(model, x if keras_inputs is None else keras_inputs, graph=graph)
    spec = spec_from_keras(model)
    check_outputs(reference.run_spec(spec, x, **predict_kw), expected, f"reference {what}")
    check_outputs(fastrnn.from_keras(model).predict(x, **predict_kw), expected, f"fastrnn {what}")
    return spec


# ids (B=7, T=6): full row, zeros at the end, at the start, holes in the middle, all masked,
# one valid step at the end, one valid step at the start.
IDS = np.array([
    [1, 2, 3, 4, 5, 6],
    [3, 1, 4, 0, 0, 0],
    [0, 0, 5, 2, 6, 1],
    [2, 0, 3, 0, 0, 4],
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 3],
    [6, 0, 0, 0, 0, 0],
], dtype=np.int32)
VOCAB = 7

CELLS = ["simple_rnn", "lstm", "gru", "gru_reset_before"]
WRAPS = ["forward", "go_backwards", "bidi_concat", "bidi_sum", "bidi_mul", "bidi_ave", "bidi_none"]


def make_cell(keras, cell, units, **kw):
    L = keras.layers
    if cell == "simple_rnn":
        return L.SimpleRNN(units, **kw)
    if cell == "lstm":
        return L.LSTM(units, **kw)
    if cell == "gru":
        return L.GRU(units, reset_after=True, **kw)
    if cell == "gru_reset_before":
        return L.GRU(units, reset_after=False, **kw)
    raise ValueError(cell)


def make_recurrent(keras, cell, wrap, units, return_sequences, **kw):
    if wrap == "forward":
        return make_cell(keras, cell, units, return_sequences=return_sequences, **kw)
    if wrap == "go_backwards":
        return make_cell(keras, cell, units, return_sequences=return_sequences, go_backwards=True, **kw)
    merge = wrap.split("_", 1)[1]
    return keras.layers.Bidirectional(make_cell(keras, cell, units, return_sequences=return_sequences, **kw),
                                      merge_mode=None if merge == "none" else merge)


# --------------------------------------------------------------------------- activations
def test_activation_names_match_keras_numerically(keras):
    from fastrnn.converters.keras import _ACTIVATION_NAMES

    x = np.linspace(-7, 7, 281).astype(np.float32).reshape(1, -1)
    x = np.concatenate([x, x[:, ::-1] * 0.37], axis=0)  # 2-D so softmax has an axis
    for kname, sname in _ACTIVATION_NAMES.items():
        assert sname in ACTIVATIONS + AXIS_ACTIVATIONS, (kname, sname)
        fn = keras.activations.get(kname)
        expected = np.asarray(fn(x))
        got = reference.activation(sname, x)
        np.testing.assert_allclose(got, expected, atol=2e-6, rtol=2e-6, err_msg=f"keras {kname} vs fastrnn {sname}")
    # The Keras 3 definitions the mapping relies on.
    assert_close(np.asarray(keras.activations.hard_sigmoid(x)), (np.clip(x + 3, 0, 6) / 6).astype(np.float32),
                 what="hard_sigmoid = relu6(x+3)/6")
    assert_close(np.asarray(keras.activations.gelu(x)), reference.activation("gelu", x).astype(np.float32),
                 what="gelu default approximate=False")


@pytest.mark.parametrize("kname", ["celu", "glu", "hard_shrink", "soft_shrink", "sparse_plus", "squareplus",
                                   "tanh_shrink", "sparsemax", "sparse_sigmoid"])
def test_unsupported_keras_activation(keras, kname):
    if kname not in dir(keras.activations):
        pytest.skip(f"keras.activations.{kname} does not exist in this Keras")
    m = keras.Sequential([keras.Input((3, 2)), keras.layers.Dense(4, activation=kname)])
    with pytest.raises(UnsupportedLayerError, match=kname):
        spec_from_keras(m)


# --------------------------------------------------------------------------- the big matrix
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_masked_ids(keras, cell, wrap, return_sequences):
    """Embedding(mask_zero) -> recurrent: every cell x direction x merge x return_sequences,
    masks at the end, at the start, in the middle, whole rows and no mask at all."""
    L = keras.layers
    inp = keras.Input((IDS.shape[1],), dtype="int32")
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    y = make_recurrent(keras, cell, wrap, 3, return_sequences)(x)
    model = randomize(keras.Model(inp, y), seed=CELLS.index(cell) * 100 + WRAPS.index(wrap) * 2 + return_sequences)
    spec = check_model(model, IDS, what=f"{cell} {wrap} rs={return_sequences}")
    rnn = spec.layers[1]
    assert isinstance(spec.layers[0], EmbeddingSpec) and spec.layers[0].mask_zero
    assert rnn.kind == ("gru" if cell.startswith("gru") else cell)
    assert rnn.direction == {"forward": "forward", "go_backwards": "reverse"}.get(wrap, "bidirectional")
    expected_mode = "zero" if (wrap.startswith("bidi") and return_sequences) else "hold"
    assert rnn.mask_mode == expected_mode


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("wrap", ["forward", "go_backwards", "bidi_concat"])
@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_float_input_no_mask(keras, cell, wrap, return_sequences):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    model = keras.Sequential([keras.Input((5, 4)), make_recurrent(keras, cell, wrap, 6, return_sequences)])
    randomize(model, seed=7)
    spec = check_model(model, x, what=f"{cell} {wrap} rs={return_sequences}")
    assert spec.input_features == 4


# --------------------------------------------------------------------------- masking layer
@pytest.mark.parametrize("mask_value", [0.0, 0.5])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_masking_layer(keras, cell, mask_value):
    L = keras.layers
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    x[1, 4:] = mask_value  # end
    x[2, :2] = mask_value  # start
    x[3, 1] = mask_value  # middle
    x[3, 3] = mask_value
    x[4, :] = mask_value  # whole row
    x[0, 2, 0] = mask_value  # only one feature equal: not masked
    model = keras.Sequential([
        keras.Input((6, 3)), L.Masking(mask_value), L.TimeDistributed(L.Dense(4)),
        make_cell(keras, cell, 3, return_sequences=True),
        L.Bidirectional(make_cell(keras, cell, 2, return_sequences=True)),
        L.TimeDistributed(L.Dense(3, activation="softmax"))])
    randomize(model, seed=3)
    spec = check_model(model, x, what=f"masking {mask_value}")
    assert spec.layers[0].kind == "masking" and spec.layers[0].mask_value == mask_value


def test_masking_then_dense_zeroes_masked_steps(keras):
    """Keras Masking replaces masked steps by 0; visible when they reach the output without an RNN."""
    L = keras.layers
    x = np.random.default_rng(4).standard_normal((2, 4, 3)).astype(np.float32)
    x[0, 1:3] = 2.0
    model = randomize(keras.Sequential([keras.Input((4, 3)), L.Masking(2.0), L.Dense(2)]), seed=5)
    check_model(model, x, what="masking -> dense")


# --------------------------------------------------------------------------- stacks and heads
def test_stacked_functional_with_mask(keras):
    L = keras.layers
    inp = keras.Input((IDS.shape[1],), dtype="int32")
    x = L.Embedding(VOCAB, 5, mask_zero=True)(inp)
    x = L.LSTM(4, return_sequences=True, dropout=0.3, recurrent_dropout=0.2)(x)
    x = L.Dense(5, activation="relu")(x)
    x = L.TimeDistributed(L.Dense(4))(x)
    x = L.Dropout(0.3)(x)
    x = L.SpatialDropout1D(0.2)(x)
    x = L.GaussianNoise(0.5)(x)
    x = L.GRU(3, return_sequences=True, go_backwards=True)(x)
    x = L.Bidirectional(L.SimpleRNN(2, return_sequences=True), merge_mode="sum")(x)
    x = L.Activation("tanh")(x)
    x = L.GaussianDropout(0.2)(x)
    x = L.AlphaDropout(0.2)(x)
    x = L.ActivityRegularization(l1=0.1)(x)
    x = L.Bidirectional(L.LSTM(3, return_sequences=False))(x)
    x = L.Dense(3, activation="softmax")(x)
    model = randomize(keras.Model(inp, x), seed=11)
    spec = check_model(model, IDS, what="stack")
    kinds = [l.kind for l in spec.layers]
    assert kinds == ["embedding", "lstm", "dense", "dense", "gru", "simple_rnn", "activation", "lstm", "dense"]
    assert [l.mask_mode for l in spec.recurrent_layers] == ["hold", "hold", "zero", "hold"]


def test_sequential_heads_and_activation_layers(keras):
    L = keras.layers
    x = np.random.default_rng(5).standard_normal((3, 5, 4)).astype(np.float32)
    model = keras.Sequential([
        keras.Input((5, 4)), L.GRU(6, return_sequences=True), L.ReLU(), L.Dense(5), L.LeakyReLU(negative_slope=0.2),
        L.TimeDistributed(L.Dense(5)), L.ELU(), L.ReLU(max_value=6.0), L.TimeDistributed(L.Activation("selu")),
        L.Dense(4, activation="log_softmax"), L.Activation("swish"), L.LSTM(3), L.Flatten(),
        L.Dense(4, use_bias=False), L.Softmax()])
    randomize(model, seed=6)
    spec = check_model(model, x, what="heads")
    acts = [l.activation for l in spec.layers if l.kind == "activation"]
    assert acts == ["relu", "leaky_relu", "elu", "relu6", "selu", "silu", "softmax"]


@pytest.mark.parametrize("cell,kw", [
    ("lstm", dict(recurrent_activation="hard_sigmoid")),
    ("lstm", dict(activation="relu", recurrent_activation="hard_sigmoid")),
    ("lstm", dict(activation="softsign", use_bias=False)),
    ("gru", dict(activation="elu", recurrent_activation="hard_sigmoid")),
    ("gru_reset_before", dict(recurrent_activation="hard_sigmoid", use_bias=False)),
    ("gru", dict(use_bias=False)),
    ("simple_rnn", dict(activation="relu")),
    ("simple_rnn", dict(activation="gelu")),
    ("simple_rnn", dict(activation="hard_silu", use_bias=False)),
    ("simple_rnn", dict(activation=None)),
    ("lstm", dict(activation="mish", recurrent_activation="log_sigmoid", unroll=True)),
])
def test_cell_activations_and_options(keras, cell, kw):
    inp = keras.Input((IDS.shape[1],), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 3, mask_zero=True)(inp)
    y = make_cell(keras, cell, 4, return_sequences=True, **kw)(x)
    model = randomize(keras.Model(inp, y), seed=12)
    spec = check_model(model, IDS, what=f"{cell} {kw}")
    rnn = spec.layers[1]
    if "recurrent_activation" in kw:
        assert rnn.recurrent_activation == kw["recurrent_activation"]
    if "use_bias" in kw:
        assert not np.any(rnn.weights[0].b_ih) and not np.any(rnn.weights[0].b_hh)


def test_generic_rnn_cells_nested_model_and_last_step(keras):
    L = keras.layers
    x = np.random.default_rng(8).standard_normal((2, 5, 3)).astype(np.float32)
    sub = keras.Sequential([keras.Input((5, 3)), L.RNN(L.LSTMCell(4), return_sequences=True), L.Dense(3)])
    inp = keras.Input((5, 3))
    y = sub(inp)
    y, _ = L.RNN(L.GRUCell(3, reset_after=False), return_sequences=True, return_state=True)(y)
    y = L.RNN(L.SimpleRNNCell(2), return_sequences=True)(y)
    y = y[:, -1]
    y = L.Dense(2)(y)
    model = randomize(keras.Model(inp, y), seed=9)
    spec = check_model(model, x, what="generic")
    assert [l.kind for l in spec.layers] == ["lstm", "dense", "gru", "simple_rnn", "last_step", "dense"]
    assert isinstance(spec.layers[4], LastStepSpec)


def test_zero_output_for_mask_plain_layer(keras):
    """A plain layer built with zero_output_for_mask=True maps to mask_mode='zero'."""
    inp = keras.Input((IDS.shape[1],), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 3, mask_zero=True)(inp)
    y = keras.layers.LSTM(3, return_sequences=True, zero_output_for_mask=True, go_backwards=True)(x)
    model = randomize(keras.Model(inp, y), seed=13)
    spec = check_model(model, IDS, what="zero_output_for_mask")
    assert spec.layers[1].mask_mode == "zero"


# --------------------------------------------------------------------------- initial / returned state
def _keras_states_to_fastrnn(cell, nd, svals):
    """Keras initial_state list ([h, c] per direction, forward first) -> fastrnn item."""
    if cell == "lstm":
        return (np.stack(svals[0::2]), np.stack(svals[1::2]))
    return np.stack(svals)


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("wrap", ["forward", "go_backwards", "bidi_concat"])
@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_initial_state_and_return_state(keras, cell, wrap, masked, return_sequences):
    """initial_state through keras.Input; return_state against Keras return_state=True.

    Masked: leading masked steps output zeros (not the initial state); an all-masked row keeps the
    initial state as its final state and, with return_sequences=False, outputs zeros ("hold", not the
    final h of "zero").  Keras only masks a layer called with initial_state when mask= is
    passed explicitly (see test_initial_state_with_implicit_mask_is_refused)."""
    L = keras.layers
    rng = np.random.default_rng(14)
    nd = 2 if wrap.startswith("bidi") else 1
    ns = 2 if cell == "lstm" else 1
    units = 3
    inp = keras.Input((IDS.shape[1],), dtype="int32")
    states = [keras.Input((units,), name=f"s{i}") for i in range(nd * ns)]
    x = L.Embedding(VOCAB, 4, mask_zero=masked)(inp)
    kw = {"mask": x._keras_mask} if masked else {}
    rnn = make_recurrent(keras, cell, wrap, units, return_sequences, return_state=True)
    outs = rnn(x, initial_state=states, **kw)
    y, kstates = outs[0], list(outs[1:])
    full = keras.Model([inp] + states, [y] + kstates)  # Keras with its states (not convertible: 3 outputs)
    model = keras.Model([inp] + states, y)  # the same layer, main output only
    randomize(full, seed=15)
    svals = [rng.standard_normal((IDS.shape[0], units)).astype(np.float32) for _ in states]
    expected = [np.asarray(a) for a in full([IDS] + svals)]
    init = _keras_states_to_fastrnn(cell, nd, svals)
    exp_state = _keras_states_to_fastrnn(cell, nd, expected[1:])

    spec = spec_from_keras(model)
    meta = spec.metadata["keras_state_inputs"]
    assert [m["input"] for m in meta] == list(range(1, 1 + nd * ns))
    assert [m["position"] for m in meta] == list(range(nd * ns))
    for name, run in (("reference", lambda **k: reference.run_spec(spec, IDS, **k)),
                      ("fastrnn", lambda **k: fastrnn.from_keras(model).predict(IDS, **k))):
        got, st = run(initial_state=init, return_state=True)
        assert_close(got, expected[0], what=f"{name} y")
        assert len(st) == 1
        if cell == "lstm":
            assert_close(st[0][0], exp_state[0], what=f"{name} h")
            assert_close(st[0][1], exp_state[1], what=f"{name} c")
        else:
            assert_close(np.asarray(st[0]).reshape(exp_state.shape), exp_state, what=f"{name} h")


def test_initial_state_two_layers(keras):
    """One initial_state item per recurrent layer; None = zeros for a layer without one."""
    L = keras.layers
    rng = np.random.default_rng(16)
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    inp = keras.Input((4, 2))
    h0, c0 = keras.Input((5,)), keras.Input((5,))
    y = L.GRU(3, return_sequences=True)(inp)
    y = L.LSTM(5, return_sequences=True)(y, initial_state=[h0, c0])
    model = randomize(keras.Model([inp, h0, c0], y), seed=17)
    hv, cv = (rng.standard_normal((3, 5)).astype(np.float32) for _ in range(2))
    expected = run_keras(model, [x, hv, cv])
    spec = spec_from_keras(model)
    init = [None, (hv[None], cv[None])]
    assert_close(reference.run_spec(spec, x, initial_state=init), expected, what="reference")
    assert_close(fastrnn.from_keras(model).predict(x, initial_state=init), expected, what="fastrnn")


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("B,T,H,cell", [(1, 1, 1, "lstm"), (1, 1, 4, "gru"), (2, 1, 1, "simple_rnn"),
                                        (4, 3, 33, "lstm"), (2, 5, 33, "gru_reset_before"), (1, 7, 1, "gru")])
def test_shapes(keras, B, T, H, cell):
    L = keras.layers
    x = np.random.default_rng(18).standard_normal((B, T, 3)).astype(np.float32)
    model = keras.Sequential([keras.Input((T, 3)), L.Bidirectional(make_cell(keras, cell, H, return_sequences=True)),
                              make_cell(keras, cell, H, return_sequences=False)])
    randomize(model, seed=19)
    check_model(model, x, what=f"B={B} T={T} H={H}")


def test_long_sequence(keras):
    L = keras.layers
    rng = np.random.default_rng(20)
    ids = rng.integers(1, VOCAB, size=(2, 1000)).astype(np.int32)
    ids[1, 700:] = 0
    ids[0, 100:130] = 0
    inp = keras.Input((1000,), dtype="int32")
    y = L.Embedding(VOCAB, 8, mask_zero=True)(inp)
    y = L.LSTM(33, return_sequences=True)(y)
    y = L.GRU(16)(y)
    model = randomize(keras.Model(inp, y), seed=21, scale=0.2)
    check_model(model, ids, what="T=1000", graph=True)


# --------------------------------------------------------------------------- errors
def _problems(keras, model):
    with pytest.raises(UnsupportedLayerError) as ei:
        spec_from_keras(model)
    return str(ei.value)


def test_stateful_is_converted_and_recorded(keras):
    """stateful=True converts (one call = one Keras call from reset states); recorded per layer."""
    x = np.random.default_rng(26).standard_normal((3, 4, 2)).astype(np.float32)
    model = keras.Sequential([keras.Input((4, 2), batch_size=3), keras.layers.LSTM(3, stateful=True, name="my_lstm"),
                              keras.layers.Dense(2)])
    randomize(model, seed=27)
    spec = check_model(model, x, what="stateful")
    assert spec.metadata["layer_metadata"] == {"my_lstm": {"stateful": True, "batch_size": 3}}


def test_all_problems_in_one_message(keras):
    L = keras.layers

    def custom(x):
        return x * 2

    model = keras.Sequential([
        keras.Input((5, 3), batch_size=2),
        L.GRU(4, return_sequences=True, stateful=True, name="g1"),
        L.LayerNormalization(name="ln"),
        L.LSTM(3, return_sequences=True, activation=custom, name="l2"),
        L.Lambda(lambda t: t + 1, name="lam"),
        L.Dense(2, name="d"),
    ])
    msg = _problems(keras, model)
    for part in ("ln", "LayerNormalization", "l2", "custom", "lam", "Lambda"):
        assert part in msg, (part, msg)
    assert "3 problems" in msg and "g1" not in msg  # stateful=True is converted, not a problem


def test_bidirectional_with_different_backward_layer(keras):
    L = keras.layers
    fwd = L.LSTM(3, return_sequences=True)
    bwd = L.LSTM(4, return_sequences=True, go_backwards=True, activation="relu")
    model = keras.Sequential([keras.Input((5, 2)), L.Bidirectional(fwd, backward_layer=bwd, name="bi")])
    msg = _problems(keras, model)
    assert "bi" in msg and "backward layer differs" in msg and "units 3 vs 4" in msg and "activation" in msg
    bwd = L.GRU(3, return_sequences=True, go_backwards=True)
    model = keras.Sequential([keras.Input((5, 2)), L.Bidirectional(fwd, backward_layer=bwd, name="bi2")])
    assert "cell lstm vs gru" in _problems(keras, model)


def test_bidirectional_same_config_custom_backward_layer_is_fine(keras):
    L = keras.layers
    x = np.random.default_rng(22).standard_normal((2, 5, 2)).astype(np.float32)
    fwd = L.GRU(3, return_sequences=True)
    bwd = L.GRU(3, return_sequences=True, go_backwards=True, recurrent_dropout=0.1)
    model = randomize(keras.Sequential([keras.Input((5, 2)), L.Bidirectional(fwd, backward_layer=bwd)]), seed=23)
    check_model(model, x, what="custom backward")


def test_bidirectional_go_backwards_forward_is_refused(keras):
    L = keras.layers
    model = keras.Sequential([keras.Input((5, 2)), L.Bidirectional(
        L.LSTM(3, go_backwards=True), backward_layer=L.LSTM(3, go_backwards=False), name="bb")])
    msg = _problems(keras, model)
    assert "bb" in msg and "go_backwards" in msg


def test_non_chain_graphs_are_refused(keras):
    L = keras.layers
    inp = keras.Input((5, 2))
    a = L.LSTM(3, return_sequences=True)(inp)
    b = L.GRU(3, return_sequences=True)(inp)
    model = keras.Model(inp, L.Add(name="merge")([a, b]))
    assert "not a linear chain" in _problems(keras, model)

    model = keras.Model(inp, [a, b])  # several outputs are supported (test_multi_output.py), but not two at the input
    assert "second branch at the model input" in _problems(keras, model)

    inp2 = keras.Input((5, 2))
    y = L.LSTM(3)(L.Concatenate(name="cat")([inp, inp2]))
    assert "cat" in _problems(keras, keras.Model([inp, inp2], y))


def test_initial_state_with_implicit_mask_is_refused(keras):
    """Keras 3 drops the mask of an RNN called with initial_state tensors: not expressible."""
    L = keras.layers
    inp = keras.Input((IDS.shape[1],), dtype="int32")
    s = keras.Input((3,))
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    model = keras.Model([inp, s], L.GRU(3, name="gg")(x, initial_state=s))
    msg = _problems(keras, model)
    assert "gg" in msg and "initial_state" in msg and "mask" in msg


def test_other_unsupported_options(keras):
    L = keras.layers
    cases = [
        ([keras.Input((5, 2)), L.LSTM(3), L.LeakyReLU(name="lr")], "negative_slope"),
        ([keras.Input((5, 2)), L.Flatten(name="fl"), L.Dense(2)], "Flatten"),
        ([keras.Input((5,), dtype="int32"), L.Embedding(4, 2, mask_zero=True), L.Masking(0.0, name="mk"), L.LSTM(2)],
         "another mask source"),
        ([keras.Input((5,), dtype="int32"), L.Embedding(4, 5, mask_zero=True), L.Softmax(name="sm")], "mask"),
        ([keras.Input((5,), dtype="int32"), L.Embedding(4, 2, mask_zero=True),
          L.LSTM(2, zero_output_for_mask=True, name="z")], "zero_output_for_mask"),
        ([keras.Input((5, 2)), L.Conv1D(2, 3, name="conv")], "Conv1D"),
        ([keras.Input((5, 2)), L.TimeDistributed(L.BatchNormalization(), name="td")], "TimeDistributed"),
    ]
    for layers, part in cases:
        msg = _problems(keras, keras.Sequential(layers))
        assert part in msg, (part, msg)


def test_nested_model_drops_the_mask(keras):
    """Keras masks inside a nested model but its output carries no mask: refused when a later layer
    would need it, accepted (and exact) otherwise."""
    L = keras.layers
    inp = keras.Input((IDS.shape[1],), dtype="int32")
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    sub = keras.Sequential([keras.Input((IDS.shape[1], 4)), L.GRU(3, return_sequences=True), L.Dense(2)], name="sub")
    y = sub(x)
    model = randomize(keras.Model(inp, L.Dense(2)(y)), seed=25)
    check_model(model, IDS, what="nested with mask")
    msg = _problems(keras, keras.Model(inp, L.LSTM(2, name="after")(y)))
    assert "after" in msg and "nested model" in msg


def test_quantized_dense_is_refused(keras):
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.LSTM(3), keras.layers.Dense(4, name="qd")])
    model.quantize("int8")
    msg = _problems(keras, model)
    assert "qd" in msg and "quantiz" in msg


def test_unbuilt_and_subclassed_models(keras):
    L = keras.layers
    with pytest.raises(ConversionError, match="not built"):
        spec_from_keras(keras.Sequential([L.LSTM(3)]))

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.rnn = L.LSTM(3)

        def call(self, x):
            return self.rnn(x)

    m = Sub()
    m(np.zeros((1, 4, 2), np.float32))
    assert "subclassed" in _problems(keras, m)
    with pytest.raises(ConversionError):
        spec_from_keras(object())


def test_converted_weights_layout(keras):
    """Canonical layouts: transposes, GRU z,r,h -> r,z,n, reset_after bias pair."""
    L = keras.layers
    model = randomize(keras.Sequential([keras.Input((5, 2)), L.GRU(3, return_sequences=True),
                                        L.GRU(3, reset_after=False), L.Dense(4)]), seed=24)
    spec = spec_from_keras(model)
    g1, g2, d = spec.layers
    k, r, b = (np.asarray(w) for w in model.layers[0].cell.weights)
    H = 3
    zr = lambda a: np.concatenate([a[H:2 * H], a[:H], a[2 * H:]])  # noqa: E731
    np.testing.assert_array_equal(g1.weights[0].w_ih, zr(k.T))
    np.testing.assert_array_equal(g1.weights[0].w_hh, zr(r.T))
    np.testing.assert_array_equal(g1.weights[0].b_ih, zr(b[0]))
    np.testing.assert_array_equal(g1.weights[0].b_hh, zr(b[1]))
    assert g1.reset_after and not g2.reset_after and not np.any(g2.weights[0].b_hh)
    assert isinstance(d, DenseSpec) and d.weight.shape == (4, 3)
    assert isinstance(g1, RecurrentSpec) and spec.source == "keras"


# --------------------------------------------------------------------------- one path for live models and files
def _model_with(keras, case):
    L = keras.layers
    inp = keras.Input((5, 3))
    if case == "nested":
        sub = keras.Sequential([keras.Input((5, 3)), L.RNN(L.LSTMCell(4), return_sequences=True), L.Dense(3)],
                               name="sub")
        inner = keras.Input((5, 3))
        fsub = keras.Model(inner, L.GRU(3, return_sequences=True)(inner), name="fsub")
        y = L.Dense(2)(fsub(sub(inp)))
        return randomize(keras.Model(inp, y), seed=31), []
    if case == "last_step":
        y = L.GRU(4, return_sequences=True, go_backwards=True)(inp)
        y = L.Dense(2)(y[:, -1])
        return randomize(keras.Model(inp, y), seed=32), []
    h0, c0 = keras.Input((4,), name="h0"), keras.Input((4,), name="c0")
    y = L.LSTM(4, return_sequences=True)(L.Dense(3)(inp), initial_state=[h0, c0])
    return randomize(keras.Model([inp, h0, c0], y), seed=33), [h0, c0]


@pytest.mark.parametrize("case", ["nested", "last_step", "initial_state"])
def test_live_model_and_its_keras_file_take_one_path(keras, tmp_path, case):
    """spec_from_keras converts the model's config + weights with the file path: the model and the .keras file
    Keras writes of it give the same spec, both equal to Keras (nested models, x[:, -1] and initial_state inputs
    included, which the file path now reads too)."""
    from fastrnn.io.keras_file import spec_from_keras_file

    rng = np.random.default_rng(34)
    x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    model, states = _model_with(keras, case)
    svals = [rng.standard_normal((3, 4)).astype(np.float32) for _ in states]
    expected = run_keras(model, [x] + svals if states else x)
    kw = {"initial_state": [(svals[0][None], svals[1][None])]} if states else {}
    path, h5 = str(tmp_path / f"{case}.keras"), str(tmp_path / f"{case}.h5")
    model.save(path)
    model.save(h5)  # legacy HDF5: weights by layer name, ops recorded without a module
    live, saved = spec_from_keras(model), spec_from_keras_file(path, isolate=False)
    specs = [(live, "live"), (saved, ".keras")]
    if case == "nested":  # legacy HDF5 stores a nested model's weights flat: refused, by name
        with pytest.raises(UnsupportedLayerError, match="nested models in legacy HDF5"):
            spec_from_keras_file(h5, isolate=False)
    else:
        specs.append((spec_from_keras_file(h5, isolate=False), ".h5"))
    for spec, what in specs:
        assert [(l.kind, l.name) for l in spec.layers] == [(l.kind, l.name) for l in live.layers], what
        assert_close(reference.run_spec(spec, x, **kw), expected, what=f"reference {what}")
        assert_close(fastrnn.Model(spec).predict(x, **kw), expected, what=f"fastrnn {what}")
    if states:
        assert [(m["input"], m["position"], m["name"]) for m in saved.metadata["keras_state_inputs"]] == \
            [(1, 0, "h0"), (2, 1, "c0")]
        assert saved.metadata["keras_state_inputs"] == live.metadata["keras_state_inputs"]


def test_explicit_other_mask_is_refused(keras):
    """A mask= that is not the one Keras computes for the active mask source is refused, by name."""
    L = keras.layers
    inp = keras.Input((IDS.shape[1],), dtype="int32")
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    y = L.GRU(3, name="gm")(x, mask=keras.ops.not_equal(inp, 5))
    msg = _problems(keras, keras.Model(inp, y))
    assert "gm" in msg and "explicit mask" in msg
    ok = L.GRU(3, name="gk")(x, mask=keras.ops.not_equal(inp, 0))  # the same mask as Keras's own: fine
    check_model(randomize(keras.Model(inp, ok), seed=35), IDS, what="explicit equal mask")
