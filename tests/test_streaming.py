"""Streaming: step/run in any split equals predict on the whole sequence (outputs and final
state), reset of some rows leaves the others alone, state round-trips, streams of one model run
concurrently, a step allocates nothing, and what cannot stream says so."""
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import spec as S
from fastrnn.errors import (ArgumentError, ArgumentTypeError, FastRNNError, ModelFormatError, OutOfMemoryError,
                            ShapeError, UnsupportedLayerError)
from conftest import assert_close
import reference
from test_kernels import rnn_spec

CELLS = [("lstm", {}), ("lstm", {"proj": 4}), ("gru", {}), ("gru", {"reset_after": False}),
         ("simple_rnn", {"act": "relu"})]


def stacked(kind, kw, I=5, H=12, seed=0):
    """Two recurrent layers (the second returns only the last output) + a Dense softmax head."""
    a = rnn_spec(kind, I, H, seed=seed, scale=0.3, **kw).layers[0]
    b = rnn_spec(kind, a.hidden_out, H + 3, seed=seed + 1, scale=0.3, return_sequences=True, **kw).layers[0]
    b.name = "second"
    rng = np.random.default_rng(seed)
    head = S.DenseSpec(name="head", weight=rng.standard_normal((3, b.hidden_out)), bias=rng.standard_normal(3),
                       activation="softmax")
    return S.ModelSpec(layers=[a, b, head], input_features=I)


def split_points(T, rng):
    cuts = sorted(set(rng.integers(1, T, size=3).tolist()))
    return [0] + cuts + [T]


def stream_through(stream, x, bounds):
    outs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a == 1:
            outs.append(stream.step(x[:, a])[:, None])
        else:
            outs.append(stream.run(x[:, a:b]))
    return np.concatenate(outs, axis=1)


@pytest.mark.parametrize("kind,kw", CELLS, ids=[k + "".join(f"-{a}={b}" for a, b in v.items()) for k, v in CELLS])
@pytest.mark.parametrize("B", [1, 3, 10])
def test_stream_equals_predict(kind, kw, B, isa_ends):
    spec = stacked(kind, kw)
    model = fastrnn.Model(spec)
    rng = np.random.default_rng(B)
    x = rng.standard_normal((B, 23, 5)).astype(np.float32)
    expected, states = model.predict(x, return_state=True)
    assert_close(expected, reference.run_spec(spec, x))
    stream = model.stream(B)
    got = stream_through(stream, x, split_points(23, rng))
    assert_close(got, expected)
    for a, b in zip(stream.state, states):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert_close(u, v)


def test_stream_with_keras_masks_equals_predict():
    """Embedding(mask_zero) ids with zeros at the start, middle and end ('hold' semantics)."""
    rng = np.random.default_rng(0)
    gru = rnn_spec("gru", 6, 9, mask_mode="hold", scale=0.3).layers[0]
    lstm = rnn_spec("lstm", 9, 7, mask_mode="hold", return_sequences=False, scale=0.3).layers[0]
    lstm.name = "lstm_1"
    spec = S.ModelSpec(layers=[S.EmbeddingSpec(name="emb", embeddings=rng.standard_normal((11, 6)), mask_zero=True),
                               gru, lstm])
    model = fastrnn.Model(spec)
    ids = rng.integers(1, 11, size=(4, 15))
    ids[0, :4] = 0
    ids[1, 6:9] = 0
    ids[2, 11:] = 0
    ids[3, :] = 0
    expected = reference.run_spec(spec, ids)
    assert_close(model.predict(ids), expected)
    stream = model.stream(4)
    for t in range(15):  # a last-output model: each step gives the output for the prefix
        y = stream.step(ids[:, t])
        assert_close(y, reference.run_spec(spec, ids[:, : t + 1]), what=f"step {t}")
    assert_close(y, expected)


def test_reset_some_rows_leaves_the_others():
    model = fastrnn.Model(rnn_spec("lstm", 3, 8, scale=0.3))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 10, 3)).astype(np.float32)
    s = model.stream(3)
    s.run(x[:, :6])
    s.reset([1])
    y = s.run(x[:, 6:])
    fresh = model.predict(x[1:2, 6:])
    whole = model.predict(x)
    assert_close(y[1:2], fresh)
    assert_close(y[[0, 2]], whole[[0, 2], 6:])
    s.reset()
    assert_close(s.run(x), whole)
    with pytest.raises(ShapeError, match="outside"):
        s.reset([5])


def test_state_round_trip_parks_and_resumes_a_session():
    model = fastrnn.Model(rnn_spec("lstm", 3, 8, scale=0.3))
    x = np.random.default_rng(2).standard_normal((2, 12, 3)).astype(np.float32)
    a = model.stream(2)
    a.run(x[:, :5])
    parked = a.state
    b = model.stream(2)
    b.state = parked
    assert_close(b.run(x[:, 5:]), model.predict(x)[:, 5:])
    h, c = parked[0]
    assert h.shape == (1, 2, 8) and c.shape == (1, 2, 8)
    with pytest.raises(ShapeError):
        b.state = [(h[:, :1], c)]


def test_two_threads_stream_different_sessions():
    model = fastrnn.Model(rnn_spec("gru", 4, 16, scale=0.3))
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((1, 300, 4)).astype(np.float32) for _ in range(2)]
    expected = [model.predict(x) for x in xs]
    got = [None, None]

    def work(i):
        s = model.stream(1)
        got[i] = np.stack([s.step(xs[i][:, t]) for t in range(300)], axis=1)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g, e in zip(got, expected):
        assert_close(g, e)


def test_step_allocates_nothing_and_writes_into_out():
    core = fastrnn._load_core()
    model = fastrnn.Model(stacked("lstm", {}))
    s = model.stream(2)
    x = np.ones((2, 5), np.float32)
    out = np.empty((2, 3), np.float32)
    s.step(x, out=out)
    before = core.buffer_allocations()
    for _ in range(1000):
        y = s.step(x, out=out)
    assert core.buffer_allocations() == before
    assert y is out or np.shares_memory(y, out)


def test_bidirectional_and_go_backwards_cannot_stream():
    for direction in ("bidirectional", "reverse"):
        model = fastrnn.Model(rnn_spec("gru", 3, 4, direction=direction))
        with pytest.raises(UnsupportedLayerError, match="cannot stream"):
            model.stream(1)


def test_step_input_errors():
    s = fastrnn.Model(rnn_spec("gru", 3, 4)).stream(2)
    with pytest.raises(ShapeError, match=r"\(2, 3\)"):
        s.step(np.zeros((2, 4), np.float32))
    with pytest.raises(ShapeError, match=r"\(2, 3\)"):
        s.step(np.zeros((1, 3), np.float32))
    with pytest.raises(ShapeError, match="out must be"):
        s.step(np.zeros((2, 3), np.float32), out=np.zeros((2, 5), np.float32))
    with pytest.raises(ShapeError, match="out must be"):
        s.step(np.zeros((2, 3), np.float32), out=np.zeros((2, 4), np.float64))
    with pytest.raises(ArgumentError, match=r"stream batch_size must be in \[1, "):
        fastrnn.Model(rnn_spec("gru", 3, 4)).stream(0)


def test_keras_stateful_model_streams_like_keras():
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from conftest import require

    keras = require("keras")
    rng = np.random.default_rng(5)
    inp = keras.Input(batch_shape=(2, None, 3))
    h = keras.layers.LSTM(6, stateful=True, return_sequences=True)(inp)
    out = keras.layers.Dense(2)(h)
    km = keras.Model(inp, out)
    for w in km.weights:
        w.assign(rng.standard_normal(w.shape).astype(np.float32) * 0.4)
    model = fastrnn.from_keras(km)
    assert model.stateful
    s = model.stream()
    assert s.batch_size == 2
    for _ in range(3):  # consecutive calls continue the state, in Keras and in the stream
        x = rng.standard_normal((2, 5, 3)).astype(np.float32)
        assert_close(s.run(x), np.asarray(km(x)), what="stateful chunk")


def test_step_honours_byte_order_of_input_and_out():
    """A big-endian float32 array has the same numpy type number as a native one: the fast path
    must not read or write it as native (found by fuzzing: silent wrong numbers)."""
    model = fastrnn.Model(rnn_spec("gru", 3, 4, scale=0.3))
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    expected = model.stream(2).step(x)
    got = model.stream(2).step(x.astype(">f4"))
    assert_close(got, expected)
    with pytest.raises(ShapeError, match="out must be"):
        model.stream(2).step(x, out=np.zeros((2, 4), ">f4"))


def id_model(V=6):
    rng = np.random.default_rng(3)
    gru = rnn_spec("gru", 4, 5, scale=0.5).layers[0]
    return fastrnn.Model(S.ModelSpec(layers=[S.EmbeddingSpec(name="emb", embeddings=rng.standard_normal((V, 4))), gru]))


@pytest.mark.parametrize("call", [
    lambda s: s.step(np.array([1.7])),
    lambda s: s.step([2.9]),
    lambda s: s.step(np.array([np.nan])),
    lambda s: s.step(np.array([1.5], np.float32)),
    lambda s: s.run(np.array([[1.0, 2.5]])),
    lambda s: s.run([[1.7]]),
    lambda s: s._s.step(np.array([1.7]), None),  # the pybind11 entry point itself
    lambda s: s._s.run(np.array([[1.7]])),
], ids=["step-array", "step-list", "step-nan", "step-f32", "run-array", "run-list", "core-step", "core-run"])
def test_float_ids_are_refused_as_predict_refuses_them(call):
    """Issue 12.8: step(np.array([1.7])), step([2.9]) and run() truncated to ids 1 and 2 while
    predict raised ShapeError; now one rule everywhere, and a refused call leaves the state alone."""
    model = id_model()
    with pytest.raises(ShapeError, match="ids must be integers, got non-integral floats"):
        model.predict(np.array([[1.7]]))
    s, fresh = model.stream(1), model.stream(1)
    with pytest.raises(ShapeError, match=r"(step|run): ids must be integers, got non-integral floats"):
        call(s)
    np.testing.assert_array_equal(s.step(np.array([3])), fresh.step(np.array([3])))


def test_integral_float_and_any_int_ids_stream_like_int64():
    model = id_model()
    ids = np.array([[1, 4, 0, 5]])
    want = model.predict(ids)
    for variant in (ids.astype(np.float64), ids.astype(np.float32), ids.astype(np.uint8), ids.astype(np.int32),
                    ids.tolist()):
        s = model.stream(1)
        got = [s.step(np.asarray(variant)[:, t] if not isinstance(variant, list) else [variant[0][t]])
               for t in range(4)]
        np.testing.assert_array_equal(np.stack(got, axis=1), want)
        np.testing.assert_array_equal(model.stream(1).run(variant), want)
    for bad, match in ((np.array([True]), "expects integer ids, got dtype bool"), (np.array(["1"]), "expects integer ids"),
                       (np.array([2 ** 63], np.uint64), "id 9223372036854775808 is outside the int64 range"),
                       (np.array([1e30]), "outside the int64 range"), (np.array([6]), r"id 6 .*outside \[0, 6\)")):
        with pytest.raises(ShapeError, match=match):
            model.stream(1).step(bad)


@pytest.mark.parametrize("batch,exc,match", [
    (2 ** 63, ArgumentError, r"stream batch_size must be in \[1, 1,099,511,627,776\], got 9,223,372,036,854,775,808"),
    (2 ** 62, ArgumentError, r"stream batch_size must be in"),
    (2 ** 40, OutOfMemoryError, r"a stream of 1099511627776 rows needs \d+ bytes per row .* more than the \d+ MiB"),
    (10 ** 12, OutOfMemoryError, r"more than the \d+ MiB of memory of this machine"),
    (-1, ArgumentError, r"must be in \[1, "),
    (2.0, ArgumentTypeError, r"stream batch_size must be an int, got float"),
    (True, ArgumentTypeError, r"got a bool"),
])
def test_stream_batch_size_is_bounded_before_allocating(batch, exc, match):
    """Issue 12.6 / 12.12: stream(2**63) raised a pybind11 TypeError, stream(2**62) a bare MemoryError,
    stream(10**9) std::bad_alloc (or the OOM killer): a FastRNNError before any allocation."""
    import resource

    model = fastrnn.Model(rnn_spec("lstm", 3, 64))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(exc, match=match) as info:
        model.stream(batch)
    assert isinstance(info.value, FastRNNError)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # KiB: nothing allocated
    assert model.stream(np.int64(3)).batch_size == 3


def test_stateful_batch_size_comes_from_checked_metadata():
    """Issue 12.6 / 12.11: the batch size stream() takes from a stateful layer's metadata is checked
    when the model is built: absurd sizes and malformed metadata are refused there, not at stream()."""
    spec = rnn_spec("gru", 3, 4)
    spec.metadata = {"layer_metadata": {"gru_0": {"stateful": True, "batch_size": 3}}}
    model = fastrnn.Model(spec)
    assert model.stateful and model.stream().batch_size == 3
    for meta in ({"gru_0": {"stateful": True, "batch_size": 4 * 10 ** 6}}, [{"stateful": True}],
                 {"gru_0": {"stateful": True, "batch_size": [3]}}):
        spec.metadata = {"layer_metadata": meta}
        with pytest.raises(ModelFormatError, match="layer_metadata"):
            fastrnn.Model(spec)


def test_reset_rows_outside_the_stream_name_the_row():
    s = fastrnn.Model(rnn_spec("gru", 3, 4)).stream(2)
    for rows, match in (([2], r"row 2 is outside \[0, 2\)"), (np.array([2 ** 63], np.uint64), r"row 9223372036854775808 is"),
                        ([-1, 0], r"row -1 is outside"), ([0.0], "integer indices")):
        with pytest.raises(ShapeError, match=match):
            s.reset(rows)


@pytest.mark.parametrize("isolate", [True, False])
def test_keras_stateful_batch_size_from_the_config_is_bounded(tmp_path, isolate):
    """Issue 12.6: the batch size of a stateful Keras layer comes from the file's config
    (batch_shape); 4*10^6 made stream() allocate 414 MB, 10^9 raised std::bad_alloc.  An absurd one is
    refused at load, naming the file (the config is edited: Keras itself would allocate the states)."""
    import json
    import os
    import zipfile

    from conftest import require

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = require("keras")
    inp = keras.Input(batch_shape=(2, None, 3))
    km = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GRU(4, stateful=True, return_sequences=True)(inp)))
    good = tmp_path / "good.keras"
    km.save(good)
    assert fastrnn.load(good, isolate=isolate).stream().batch_size == 2
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    text = json.dumps(config).replace('"batch_shape": [2, null, 3]', '"batch_shape": [1000000000, null, 3]')
    assert text != json.dumps(config)
    bad = tmp_path / "batch_1e9.keras"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in members.items():
            z.writestr(n, text if n == "config.json" else data)
    with pytest.raises(ModelFormatError, match=r"batch_1e9\.keras.*'batch_size' must be an int in \[1, 65536\]"):
        fastrnn.load(bad, isolate=isolate)
