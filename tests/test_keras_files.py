"""fastrnn.io.keras_file: Keras model FILES loaded with h5py only, against the Keras that wrote them.

Real models as tutorials build them (character-level "hello", stock-price window LSTM, stacked LSTM
classifier, Embedding(mask_zero) + Bidirectional sentiment model, GRU both reset_after, go_backwards,
TimeDistributed(Dense), every Bidirectional merge mode, Masking, stateful), briefly trained, saved by
Keras 3 (``.keras``, legacy ``.h5``, ``.weights.h5`` + architecture JSON / dict / ModelSpec) and by
tf_keras (Keras 2: ``.h5``, ``save_weights`` + architecture), plus hand-crafted Keras 2.2-era files
(tests/data/keras, written by make_fixtures.py).  Expected outputs come from Keras in this process;
fastrnn loads every file in ONE subprocess in which TensorFlow and Keras cannot be imported, and which
checks that neither is in ``sys.modules`` at the end.
"""
import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

import hostile_keras
import reference
from conftest import REQUIRE_FRAMEWORKS, assert_close, require, child_env, CHILD_CWD
from fastrnn.errors import ModelFormatError, UnsupportedLayerError
from fastrnn.io.keras_file import spec_from_keras_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data", "keras")

# Runs in the subprocess: TensorFlow / Keras imports fail there.
LOADER = r'''
import json, sys
import numpy as np

BLOCKED = ("tensorflow", "keras", "tf_keras", "tensorboard")

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} must not be imported when loading model files")
        return None

sys.meta_path.insert(0, _Block())

import fastrnn
from fastrnn.io.keras_file import spec_from_keras_file

manifest_path, inputs_path, out_path, info_path = sys.argv[1:5]
cases = json.load(open(manifest_path))
inputs = np.load(inputs_path)
outs, info = {}, {}
for c in cases:
    try:
        arch = c.get("arch")
        kind = c.get("arch_kind")
        if kind == "json":
            arch = open(arch).read()
        elif kind == "dict":
            arch = json.load(open(arch))
        elif kind == "spec":
            arch = spec_from_keras_file(arch)
        kw = {"architecture": arch} if arch is not None else {}
        spec = spec_from_keras_file(c["path"], **kw)
        y = fastrnn.Model(spec).predict(inputs[c["x"]])
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        for i, a in enumerate(ys):
            outs[f"{c['id']}#{i}"] = np.asarray(a)
        info[c["id"]] = {"n_out": len(ys), "kinds": [l.kind for l in spec.layers],
                         "ract": [l.recurrent_activation for l in spec.recurrent_layers],
                         "act": [l.activation for l in spec.recurrent_layers],
                         "reset_after": [l.reset_after for l in spec.recurrent_layers],
                         "mask_mode": [l.mask_mode for l in spec.recurrent_layers],
                         "direction": [l.direction for l in spec.recurrent_layers],
                         "metadata": spec.metadata}
    except Exception as e:
        info[c["id"]] = {"error": type(e).__name__, "message": str(e)}
bad = [m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules]
info["__modules__"] = bad
assert not bad, bad
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
np.savez(out_path, **outs)
json.dump(info, open(info_path, "w"), default=str)
'''


def get_keras():
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = require("keras")
    if keras.backend.backend() != "tensorflow":  # pragma: no cover
        pytest.skip(f"keras was already imported with the {keras.backend.backend()!r} backend")
    return keras


def get_tf_keras():
    """tf_keras (Keras 2 on TensorFlow 2.x): required in CI, skipped locally when missing."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    try:
        import tf_keras
    except ImportError as e:
        if REQUIRE_FRAMEWORKS:
            pytest.fail(f"tf_keras is required (FASTRNN_REQUIRE_FRAMEWORKS=1) but cannot be imported: {e}")
        return None
    return tf_keras


def _ids(rng, B, T, V, min_len=1):
    """Padded id sequences like keras.utils.pad_sequences(padding='pre' / 'post') give, plus odd rows."""
    ids = rng.integers(1, V, size=(B, T)).astype(np.int32)
    for b in range(B):
        n = int(rng.integers(min_len, T + 1))
        if b % 2:
            ids[b, n:] = 0  # post-padding
        else:
            ids[b, :T - n] = 0  # pre-padding
    ids[-1, :] = 0  # an all-padding row
    ids[-2, 2] = 0  # a hole
    return ids


def _fit(model, x, seed, epochs=1):
    """One epoch on random targets (weights are no longer their initial values)."""
    rng = np.random.default_rng(seed)
    shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    ys = [rng.standard_normal((len(x),) + tuple(s[1:])).astype(np.float32) for s in shapes]
    model.compile(optimizer="adam", loss="mse", run_eagerly=True)
    model.fit(x, ys if len(ys) > 1 else ys[0], epochs=epochs, batch_size=len(x), verbose=0)
    return model


def _predict(model, x):
    y = model(x, training=False)
    ys = list(y) if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(a, dtype=np.float32) for a in ys]


# --------------------------------------------------------------------------- the Keras 3 models
def keras3_models(keras):
    L = keras.layers
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(1)
    out = []

    # character-level "hello": one-hot "hell" -> "ello"
    chars = "helo"
    onehot = np.eye(4, dtype=np.float32)
    x_hello = np.stack([onehot[[chars.index(c) for c in "hell"]], onehot[[chars.index(c) for c in "lleh"]]])
    y_hello = np.stack([onehot[[chars.index(c) for c in "ello"]], onehot[[chars.index(c) for c in "oleh"]]])
    for cell in ("SimpleRNN", "LSTM"):
        m = keras.Sequential([keras.Input((4, 4)), getattr(L, cell)(8, return_sequences=True),
                              L.Dense(4, activation="softmax")], name=f"hello_{cell.lower()}")
        m.compile(optimizer="adam", loss="categorical_crossentropy", run_eagerly=True)
        m.fit(x_hello, y_hello, epochs=1, verbose=0)
        out.append((f"hello_{cell.lower()}", m, x_hello))

    # stock price: windows of 20 steps x 5 features -> next close
    x = rng.standard_normal((6, 20, 5)).astype(np.float32)
    m = keras.Sequential([keras.Input((20, 5)), L.LSTM(16), L.Dense(1)], name="stock")
    out.append(("stock", _fit(m, x, 1), x))

    # stacked LSTM + Dropout classifier
    x = rng.standard_normal((5, 9, 3)).astype(np.float32)
    m = keras.Sequential([keras.Input((9, 3)), L.LSTM(12, return_sequences=True), L.Dropout(0.2),
                          L.LSTM(6, recurrent_activation="hard_sigmoid"), L.Dropout(0.2),
                          L.Dense(3, activation="softmax")], name="stacked")
    out.append(("stacked", _fit(m, x, 2), x))

    # sentiment: Embedding(mask_zero) + Bidirectional(LSTM) on padded sequences (functional)
    ids = _ids(rng, 7, 12, 40)
    inp = keras.Input((12,), dtype="int32")
    y = L.Embedding(40, 8, mask_zero=True, name="embedding")(inp)  # names fixed: the corruption tests use them
    y = L.Bidirectional(L.LSTM(6), name="bidirectional")(y)
    y = L.Dense(1, activation="sigmoid", name="dense")(y)
    m = keras.Model(inp, y, name="sentiment")
    out.append(("sentiment", _fit(m, ids, 3), ids))

    # GRU both reset_after, go_backwards, TimeDistributed(Dense), GaussianNoise / SpatialDropout1D no-ops
    x = rng.standard_normal((4, 7, 3)).astype(np.float32)
    m = keras.Sequential([keras.Input((7, 3)), L.GaussianNoise(0.1), L.GRU(5, return_sequences=True),
                          L.SpatialDropout1D(0.1),
                          L.GRU(4, return_sequences=True, reset_after=False, go_backwards=True, activation="relu"),
                          L.TimeDistributed(L.Dense(3)), L.Activation("tanh")], name="gru_both")
    out.append(("gru_both", _fit(m, x, 4), x))

    # every merge mode, masked, with recurrent layers of every kind
    ids2 = _ids(rng, 6, 8, 15)
    inp = keras.Input((8,), dtype="int32")
    y = L.Embedding(15, 5, mask_zero=True)(inp)
    y = L.Bidirectional(L.GRU(4, return_sequences=True), merge_mode="sum")(y)
    y = L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="mul")(y)
    y = L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="ave")(y)
    y = L.LSTM(3, return_sequences=True, go_backwards=True)(y)
    y = L.Bidirectional(L.GRU(3, reset_after=False), merge_mode="concat")(y)
    y = L.Dense(2)(y)
    m = keras.Model(inp, y, name="merges")
    out.append(("merges", _fit(m, ids2, 5), ids2))

    # merge_mode=None: two outputs
    inp = keras.Input((8,), dtype="int32")
    y = L.Embedding(15, 5, mask_zero=True)(inp)
    y = L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=None)(y)
    m = keras.Model(inp, y, name="merge_none")
    out.append(("merge_none", _fit(m, ids2, 6), ids2))

    # Masking + TimeDistributed + generic RNN cell
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    x[1, 4:] = 0.0
    x[2, :2] = 0.0
    m = keras.Sequential([keras.Input((6, 3)), L.Masking(0.0), L.TimeDistributed(L.Dense(4, activation="relu")),
                          L.RNN(L.GRUCell(3), return_sequences=True), L.LSTM(2)], name="masking")
    out.append(("masking", _fit(m, x, 7), x))

    # stateful (fixed batch): converted, recorded in metadata
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    m = keras.Sequential([keras.Input((5, 2), batch_size=3), L.LSTM(4, stateful=True), L.Dense(2)], name="stateful")
    _fit(m, x, 8)
    for layer in m.layers:
        if hasattr(layer, "reset_states"):
            layer.reset_states()
    out.append(("stateful", m, x))
    return out


def tf_keras_models(tk):
    L = tk.layers
    rng = np.random.default_rng(10)
    tk.utils.set_random_seed(11)
    out = []
    x = rng.standard_normal((3, 4, 4)).astype(np.float32)
    m = tk.Sequential([L.LSTM(8, return_sequences=True, input_shape=(4, 4)), L.Dense(4, activation="softmax")])
    out.append(("tk_hello", _fit(m, x, 12), x))

    ids = _ids(rng, 7, 10, 30)
    inp = tk.Input((10,), dtype="int32")
    y = L.Embedding(30, 6, mask_zero=True)(inp)
    y = L.Bidirectional(L.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid"))(y)
    y = L.Bidirectional(L.GRU(4, reset_after=False), merge_mode="sum")(y)
    y = L.Dense(1, activation="sigmoid")(y)
    m = tk.Model(inp, y)
    out.append(("tk_sentiment", _fit(m, ids, 13), ids))

    x = rng.standard_normal((4, 7, 3)).astype(np.float32)
    m = tk.Sequential([L.GRU(5, return_sequences=True, input_shape=(7, 3), recurrent_activation="hard_sigmoid"),
                       L.Dropout(0.1),
                       L.GRU(4, return_sequences=True, reset_after=False, go_backwards=True),
                       L.TimeDistributed(L.Dense(3)), L.SimpleRNN(3, activation="relu")])
    out.append(("tk_gru", _fit(m, x, 14), x))
    return out


# --------------------------------------------------------------------------- save + load everything
def _save_keras3(keras, name, model, d):
    """Every Keras 3 format: [(case id, path, arch, arch_kind)]."""
    p = os.path.join(d, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(p + ".keras")
        model.save(p + ".h5")  # legacy HDF5 as Keras 3 writes it
    model.save_weights(p + ".weights.h5")
    with open(p + ".json", "w") as f:
        f.write(model.to_json())
    with open(p + ".config.json", "w") as f:
        json.dump(model.get_config(), f)
    return [(f"{name}.keras", p + ".keras", None, None),
            (f"{name}.h5", p + ".h5", None, None),
            (f"{name}.weights+json", p + ".weights.h5", p + ".json", "json"),
            (f"{name}.weights+dict", p + ".weights.h5", p + ".config.json", "dict"),
            (f"{name}.weights+spec", p + ".weights.h5", p + ".keras", "spec")]


def _save_tf_keras(name, model, d):
    p = os.path.join(d, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(p + ".h5")
        model.save_weights(p + ".weights_k2.h5")
    with open(p + ".json", "w") as f:
        f.write(model.to_json())
    return [(f"{name}.h5", p + ".h5", None, None),
            (f"{name}.weights+json", p + ".weights_k2.h5", p + ".json", "json"),
            (f"{name}.weights+spec", p + ".weights_k2.h5", p + ".h5", "spec")]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    keras = get_keras()
    d = str(tmp_path_factory.mktemp("keras_files"))
    cases, inputs, expected, models = [], {}, {}, {}
    for name, model, x in keras3_models(keras):
        inputs[name] = x
        expected[name] = _predict(model, x)
        models[name] = model
        for cid, path, arch, kind in _save_keras3(keras, name, model, d):
            cases.append({"id": cid, "path": path, "arch": arch, "arch_kind": kind, "x": name, "model": name})
    tk = get_tf_keras()
    if tk is not None:
        for name, model, x in tf_keras_models(tk):
            inputs[name] = x
            expected[name] = [np.asarray(model.predict(x, verbose=0), dtype=np.float32)]
            for cid, path, arch, kind in _save_tf_keras(name, model, d):
                cases.append({"id": cid, "path": path, "arch": arch, "arch_kind": kind, "x": name, "model": name})
    fx = np.load(os.path.join(DATA, "expected.npz"))
    for name in ("keras22_lstm", "keras22_gru", "keras22_bidi"):
        inputs[name] = fx[f"{name}.x"]
        expected[name] = [fx[f"{name}.y"]]
        cases.append({"id": f"{name}.h5", "path": os.path.join(DATA, f"{name}.h5"), "arch": None, "arch_kind": None,
                      "x": name, "model": name})

    manifest = os.path.join(d, "manifest.json")
    with open(manifest, "w") as f:
        json.dump(cases, f)
    np.savez(os.path.join(d, "inputs.npz"), **inputs)
    script = os.path.join(d, "loader.py")
    with open(script, "w") as f:
        f.write(LOADER)
    env = child_env()
    r = subprocess.run([sys.executable, script, manifest, os.path.join(d, "inputs.npz"), os.path.join(d, "out.npz"),
                        os.path.join(d, "info.json")], capture_output=True, text=True, env=env, timeout=300,
                       cwd=CHILD_CWD)
    assert r.returncode == 0, f"loader subprocess failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    with open(os.path.join(d, "info.json")) as f:
        info = json.load(f)
    outs = dict(np.load(os.path.join(d, "out.npz")))
    return {"cases": cases, "expected": expected, "info": info, "outs": outs, "dir": d, "models": models,
            "tf_keras": tk is not None}


def _case_ids():
    k3 = ["hello_simplernn", "hello_lstm", "stock", "stacked", "sentiment", "gru_both", "merges", "merge_none",
          "masking", "stateful"]
    ids = [f"{m}.{f}" for m in k3 for f in ("keras", "h5", "weights+json", "weights+dict", "weights+spec")]
    ids += [f"{m}.{f}" for m in ("tk_hello", "tk_sentiment", "tk_gru") for f in ("h5", "weights+json", "weights+spec")]
    ids += ["keras22_lstm.h5", "keras22_gru.h5", "keras22_bidi.h5"]
    return ids


@pytest.mark.parametrize("case_id", _case_ids())
def test_file_matches_keras(loaded, case_id):
    case = next((c for c in loaded["cases"] if c["id"] == case_id), None)
    if case is None:
        assert not REQUIRE_FRAMEWORKS
        pytest.skip("tf_keras not installed")
    info = loaded["info"][case_id]
    assert "error" not in info, f"{case_id}: {info.get('error')}: {info.get('message')}"
    exp = loaded["expected"][case["model"]]
    assert info["n_out"] == len(exp)
    for i, e in enumerate(exp):
        assert_close(loaded["outs"][f"{case_id}#{i}"], e, what=f"{case_id} output {i}")


def test_loader_subprocess_never_imported_frameworks(loaded):
    assert loaded["info"]["__modules__"] == []


def test_writer_semantics_recorded(loaded):
    """hard_sigmoid follows the writer: Keras 3 relu6(x+3)/6, Keras 2 clip(0.2x+0.5); GRU reset_after; mask modes."""
    info = loaded["info"]
    for f in ("keras", "h5", "weights+json", "weights+dict"):
        assert info[f"stacked.{f}"]["ract"] == ["sigmoid", "hard_sigmoid"]
        assert info[f"gru_both.{f}"]["reset_after"] == [True, False]
        assert info[f"gru_both.{f}"]["direction"] == ["forward", "reverse"]
        assert info[f"sentiment.{f}"]["mask_mode"] == ["hold"]
        assert info[f"merges.{f}"]["mask_mode"] == ["zero", "zero", "zero", "hold", "hold"]
        assert info[f"stateful.{f}"]["metadata"]["layer_metadata"] == {"lstm": {"stateful": True, "batch_size": 3}} \
            or list(info[f"stateful.{f}"]["metadata"]["layer_metadata"].values()) == [{"stateful": True,
                                                                                        "batch_size": 3}]
    for n in ("keras22_lstm", "keras22_gru", "keras22_bidi"):
        assert set(info[f"{n}.h5"]["ract"]) == {"hard_sigmoid_tf2"}
        assert info[f"{n}.h5"]["metadata"]["keras_writer"] == "keras2"
    assert info["keras22_gru.h5"]["reset_after"] == [False, False]
    if loaded["tf_keras"]:
        assert info["tk_sentiment.h5"]["ract"] == ["hard_sigmoid_tf2", "sigmoid"]
        assert info["tk_gru.h5"]["ract"] == ["hard_sigmoid_tf2", "sigmoid", "sigmoid"]
        assert info["tk_gru.h5"]["reset_after"][:2] == [True, False]
        assert info["tk_sentiment.h5"]["metadata"]["keras_writer"] == "tf_keras2"


def test_keras2_activation_table_matches_tf_keras():
    tk = get_tf_keras()
    if tk is None:
        pytest.skip("tf_keras not installed")
    from fastrnn.converters.keras import _ACTIVATION_NAMES_K2

    x = np.linspace(-7, 7, 281).astype(np.float32).reshape(1, -1)
    x = np.concatenate([x, x[:, ::-1] * 0.37], axis=0)
    for kname, sname in _ACTIVATION_NAMES_K2.items():
        try:
            fn = tk.activations.get(kname)
        except ValueError:
            pytest.fail(f"tf_keras has no activation {kname!r}")
        np.testing.assert_allclose(reference.activation(sname, x), np.asarray(fn(tk.backend.constant(x))), atol=2e-6, rtol=2e-6,
                                   err_msg=f"tf_keras {kname} vs fastrnn {sname}")


def test_keras22_fixture_layout():
    """The committed Keras 2.2 fixtures have the documented layout (version attribute, chunked weight_names)."""
    import h5py

    for n in ("keras22_lstm", "keras22_gru", "keras22_bidi"):
        with h5py.File(os.path.join(DATA, f"{n}.h5"), "r") as f:
            assert f.attrs["keras_version"] in (b"2.2.4", "2.2.4")
            assert "model_weights" in f
    with h5py.File(os.path.join(DATA, "keras22_bidi.h5"), "r") as f:
        g = f["model_weights/bidirectional_1"]
        assert "weight_names" not in g.attrs and "weight_names0" in g.attrs and "weight_names1" in g.attrs


# --------------------------------------------------------------------------- hostile / corrupt files
@pytest.fixture(scope="module")
def good(loaded):
    d = loaded["dir"]
    return {"keras": os.path.join(d, "sentiment.keras"), "h5": os.path.join(d, "sentiment.h5"),
            "weights": os.path.join(d, "sentiment.weights.h5"), "dir": d}


def _raises(cls, path, *parts, **kw):
    with pytest.raises(cls) as ei:
        spec_from_keras_file(path, **kw)
    msg = str(ei.value)
    assert os.path.basename(str(path)) in msg, msg
    for p in parts:
        assert p in msg, (p, msg)
    return msg


def test_truncated_keras(good, tmp_path):
    data = open(good["keras"], "rb").read()
    for n in (10, len(data) // 3, len(data) // 2, len(data) - 30):
        p = tmp_path / f"trunc{n}.keras"
        p.write_bytes(data[:n])
        _raises(ModelFormatError, p)


def test_zip_without_config(good, tmp_path):
    p = tmp_path / "noconfig.keras"
    with zipfile.ZipFile(good["keras"]) as zin, zipfile.ZipFile(p, "w") as zout:
        for item in zin.namelist():
            if item != "config.json":
                zout.writestr(item, zin.read(item))
    _raises(ModelFormatError, p, "config.json")


def _rewrite_config(src, dst, fn):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "config.json":
                data = fn(data)
            zout.writestr(item, data)


def test_config_garbage(good, tmp_path):
    p = tmp_path / "garbage.keras"
    _rewrite_config(good["keras"], p, lambda b: b[: len(b) // 2] + b"\xff{{")
    _raises(ModelFormatError, p, "config.json")
    p2 = tmp_path / "wrongtype.keras"
    _rewrite_config(good["keras"], p2, lambda b: b'{"class_name": "Functional", "config": {"layers": 5}}')
    _raises(ModelFormatError, p2)
    p3 = tmp_path / "deep.keras"
    _rewrite_config(good["keras"], p3, lambda b: b"[" * 100000 + b"]" * 100000)
    _raises(ModelFormatError, p3)
    p4 = tmp_path / "badnodes.keras"

    def mangle(b):
        c = json.loads(b)
        for layer in c["config"]["layers"]:
            layer["inbound_nodes"] = [{"args": [{"class_name": "__keras_tensor__",
                                                 "config": {"keras_history": ["nope", 7, 0]}}], "kwargs": {}}]
        return json.dumps(c).encode()

    _rewrite_config(good["keras"], p4, mangle)
    _raises(ModelFormatError, p4)


def test_lambda_layer_is_refused_without_running_code(tmp_path):
    keras = get_keras()
    sentinel = tmp_path / "executed"

    def touch(t):
        sentinel.write_text("x")
        return t

    m = keras.Sequential([keras.Input((4, 2)), keras.layers.LSTM(3, return_sequences=True),
                          keras.layers.Lambda(touch, name="evil"), keras.layers.LayerNormalization(name="ln"),
                          keras.layers.Dense(2)])
    p = tmp_path / "lambda.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(p)
    sentinel.unlink(missing_ok=True)
    msg = _raises(UnsupportedLayerError, p, "evil", "Lambda", "ln", "LayerNormalization", "2 problems")
    assert not sentinel.exists(), msg


def test_h5_missing_and_wrong_weights(good, tmp_path):
    import h5py

    p = tmp_path / "missing.h5"
    shutil.copy(good["h5"], p)
    with h5py.File(p, "r+") as f:
        g = f["model_weights/bidirectional"]
        name = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]][2]
        del g[name]
    _raises(ModelFormatError, p, "bidirectional")

    p = tmp_path / "wrongshape.h5"
    shutil.copy(good["h5"], p)
    with h5py.File(p, "r+") as f:
        g = f["model_weights/embedding"]
        name = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]][0]
        del g[name]
        g.create_dataset(name, data=np.zeros((3, 3), np.float32))
    _raises(ModelFormatError, p, "embedding")

    p = tmp_path / "missing.weights.h5"
    shutil.copy(good["weights"], p)
    with h5py.File(p, "r+") as f:
        del f["layers/bidirectional/forward_layer/cell/vars/1"]
    _raises(ModelFormatError, p, architecture=open(os.path.join(good["dir"], "sentiment.json")).read())

    p = tmp_path / "stringweights.h5"
    shutil.copy(good["h5"], p)
    with h5py.File(p, "r+") as f:
        g = f["model_weights/dense"]
        name = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]][0]
        del g[name]
        g.create_dataset(name, data=np.array([b"abc"]))
    _raises(ModelFormatError, p, "dtype")


def test_weights_only_needs_matching_architecture(good, loaded, tmp_path):
    _raises(ModelFormatError, good["weights"], "architecture=")
    other = open(os.path.join(good["dir"], "stock.json")).read()
    _raises(ModelFormatError, good["weights"], architecture=other)


def test_not_model_files(tmp_path, good):
    import h5py

    (tmp_path / "empty.h5").write_bytes(b"")
    _raises(ModelFormatError, tmp_path / "empty.h5")
    (tmp_path / "text.keras").write_text("hello")
    _raises(ModelFormatError, tmp_path / "text.keras")
    (tmp_path / "noise.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    _raises(ModelFormatError, tmp_path / "noise.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    _raises(ModelFormatError, tmp_path / "other.h5", "not a Keras")
    (tmp_path / "saved_model").mkdir()
    _raises(ModelFormatError, tmp_path / "saved_model", "directory")
    _raises(ModelFormatError, tmp_path / "does_not_exist.keras")
    with h5py.File(tmp_path / "badconfig.h5", "w") as f:
        f.attrs["model_config"] = b"{not json"
    _raises(ModelFormatError, tmp_path / "badconfig.h5", "model_config")
    with pytest.raises(TypeError):
        spec_from_keras_file(good["keras"], bogus_option=1)


def test_keras1_and_unsupported_layers(tmp_path):
    import h5py

    cfg = {"class_name": "Sequential", "config": [{"class_name": "LSTM", "config": {"name": "lstm_1", "output_dim": 3}}]}
    with h5py.File(tmp_path / "k1.h5", "w") as f:
        f.attrs["model_config"] = json.dumps(cfg).encode()
        f.attrs["keras_version"] = b"1.2.2"
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([b"lstm_1"])
    _raises(UnsupportedLayerError, tmp_path / "k1.h5", "Keras 1")

    keras = get_keras()
    L = keras.layers
    m = keras.Sequential([keras.Input((5, 2)), L.Conv1D(2, 3, name="conv"), L.LSTM(3),
                          L.LeakyReLU(negative_slope=0.5, name="lr"), L.Dense(2, activation="softmax")])
    p = tmp_path / "unsupported.keras"
    m.save(p)
    _raises(UnsupportedLayerError, p, "conv", "Conv1D", "lr", "negative_slope", "2 problems")


def test_corrupted_bytes_never_crash(good, tmp_path):
    """Flip bytes all over real .keras and raw .h5 files: every load either works or raises
    ModelFormatError / UnsupportedLayerError naming the file (in a subprocess, so that a crash
    would fail the test instead of taking pytest down).

    libhdf5 itself can crash or loop forever on corrupted HDF5 metadata (a one-byte change that hangs
    it: tests/test_fuzz_regressions.py::test_h5_input_is_contained); the default isolated reader
    (fastrnn.io.isolate) turns that into a ModelFormatError, here with a 5 s CPU limit per file.
    In a .keras archive the zip CRC also rejects corrupted weights before HDF5 parses them."""
    rng = np.random.default_rng(3)
    paths = []
    for src, count in ((good["keras"], 30), (good["h5"], 30)):
        data = bytearray(open(src, "rb").read())
        for i in range(count):
            d = bytearray(data)
            for pos in rng.integers(0, len(d), size=int(rng.integers(1, 40))):
                d[pos] = int(rng.integers(0, 256))
            p = tmp_path / f"corrupt{i}{os.path.splitext(src)[1]}"
            p.write_bytes(bytes(d))
            paths.append(str(p))
    code = ("import sys, json\nfrom fastrnn.io.keras_file import spec_from_keras_file\n"
            "from fastrnn.errors import ModelFormatError, UnsupportedLayerError\nbad = []\n"
            "for p in json.loads(sys.argv[1]):\n"
            "    print(p, flush=True)\n"
            "    try:\n        spec_from_keras_file(p, isolate={'cpu': 5})\n"
            "    except (ModelFormatError, UnsupportedLayerError) as e:\n"
            "        assert p.split('/')[-1] in str(e), str(e)\n"
            "    except Exception as e:\n        bad.append((p, repr(e)))\n"
            "assert not bad, bad\n")
    env = child_env()
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code, json.dumps(paths)], capture_output=True,
                       text=True, env=env, timeout=300, cwd=CHILD_CWD)
    assert r.returncode == 0, f"rc={r.returncode} after {r.stdout.splitlines()[-1:]}\n{r.stderr[-3000:]}"


def test_hard_sigmoid_follows_the_writer_version():
    """hard_sigmoid means clip(0.2x+0.5) for a Keras 2 writer and relu6(x+3)/6 for Keras 3; a config that
    does not tell its writer is refused unless keras_version= says."""
    from fastrnn.converters.keras import spec_from_keras_config

    cfg = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "LSTM", "config": {"name": "l", "units": 2, "recurrent_activation": "hard_sigmoid",
                                          "return_sequences": True}}]}}
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 8)), rng.standard_normal((2, 8)), rng.standard_normal(8)]
    weights = lambda name, key, entry: arrays  # noqa: E731
    with pytest.raises(UnsupportedLayerError, match="keras_version"):
        spec_from_keras_config(cfg, weights)
    for version, expected in (("2.2.4", "hard_sigmoid_tf2"), ("2.15.0", "hard_sigmoid_tf2"), ("3.4.1", "hard_sigmoid")):
        spec = spec_from_keras_config(cfg, weights, keras_version=version)
        assert spec.layers[0].recurrent_activation == expected, version
        assert spec.input_features == 3


def test_functional_config_without_outputs_is_a_format_error():
    """A functional config whose output_layers is empty is a malformed file (was an AttributeError)."""
    from fastrnn.converters.keras import spec_from_keras_config

    cfg = {"class_name": "Functional", "config": {
        "name": "m", "input_layers": [["x", 0, 0]], "output_layers": [],
        "layers": [{"class_name": "InputLayer", "name": "x", "config": {"batch_shape": [None, None, 3]},
                    "inbound_nodes": []}]}}
    with pytest.raises(ModelFormatError, match="model.json: the model config lists no outputs"):
        spec_from_keras_config(cfg, lambda names, keys, entry: [], keras_version="3.5.0", origin="model.json")


# --------------------------------------------------------------------------- isolation (fastrnn.io.isolate)
def test_isolated_and_in_process_read_the_same():
    """The default (isolated child process) and isolate=False give the same model, and Keras's outputs."""
    import fastrnn

    fx = np.load(os.path.join(DATA, "expected.npz"))
    for name in ("keras22_lstm", "keras22_gru", "keras22_bidi"):
        p = os.path.join(DATA, f"{name}.h5")
        a, b = spec_from_keras_file(p), spec_from_keras_file(p, isolate=False)
        ha, ta = a.to_core()
        hb, tb = b.to_core()
        assert ha == hb, name
        assert len(ta) == len(tb) and all(np.array_equal(x, y) for x, y in zip(ta, tb)), name
        assert_close(fastrnn.load(p).predict(fx[f"{name}.x"]), fx[f"{name}.y"], what=name)
        assert_close(fastrnn.load(p, isolate=False).predict(fx[f"{name}.x"]), fx[f"{name}.y"], what=name)


def test_isolate_option_is_checked(tmp_path):
    import fastrnn

    p = os.path.join(DATA, "keras22_lstm.h5")
    for bad, err in (("yes", TypeError), (1, TypeError), ({"bogus": 1}, TypeError), ({"cpu": -1}, ValueError),
                     ({"wall": True}, ValueError), ({"cpu": float("inf")}, ValueError),
                     ({"memory": float("nan")}, ValueError)):
        with pytest.raises(err):
            fastrnn.load(p, isolate=bad)
    native = tmp_path / "m.fastrnn"
    fastrnn.load(p, isolate=False).save(native)
    assert fastrnn.load(native, isolate=False).spec.input_features == 3  # accepted (and moot) for every format
    assert fastrnn.load(native, isolate=True).spec.input_features == 3


def test_isolated_reader_ignores_the_callers_working_directory(tmp_path, monkeypatch):
    """The child imports the caller's fastrnn / h5py / numpy, not whatever sits in the working
    directory (a hostile upload directory holding h5py.py must not be imported)."""
    (tmp_path / "h5py.py").write_text("raise SystemExit('the h5py.py of the working directory was imported')\n")
    (tmp_path / "numpy.py").write_text("raise SystemExit('the numpy.py of the working directory was imported')\n")
    (tmp_path / "fastrnn").mkdir()
    (tmp_path / "fastrnn" / "__init__.py").write_text("raise SystemExit('a fastrnn package in the cwd')\n")
    shutil.copy(os.path.join(DATA, "keras22_gru.h5"), tmp_path / "model.h5")
    monkeypatch.chdir(tmp_path)
    spec = spec_from_keras_file("model.h5")  # a relative path: resolved in the caller's working directory
    assert "gru" in [l.kind for l in spec.layers]
    _raises(ModelFormatError, "missing.h5")  # and the error names the path as given


def test_declared_huge_weight_is_refused(tmp_path):
    """A 15 KB .h5 whose kernel is a chunked dataset declaring 3 GiB (no chunk written: reads as
    zeros): the reader refuses it before reading (its budget: 4 x the real file size + 64 MiB; the
    isolated child's address-space limit, 2 GiB, is the backstop), and the caller gets a
    ModelFormatError naming the file, isolated or not."""
    import h5py

    p = tmp_path / "bomb.h5"
    shutil.copy(os.path.join(DATA, "keras22_lstm.h5"), p)
    with h5py.File(p, "r+") as f:
        g = f["model_weights/lstm_1/lstm_1"]
        del g["kernel:0"]
        g.create_dataset("kernel:0", shape=(3, 1 << 28), dtype="f4", chunks=(1, 1 << 16))
    assert os.path.getsize(p) < 64 << 10
    for isolate in (True, False):
        msg = _raises(ModelFormatError, p, "kernel:0", "3,221,225,472 bytes", isolate=isolate)
        assert "byte file may cost" in msg, msg


def test_wall_time_limit_kills_the_child():
    msg = _raises(ModelFormatError, os.path.join(DATA, "keras22_lstm.h5"), "took longer than",
                  isolate={"wall": 0.01})
    assert "killed" in msg


class _ImportsTorch:
    """Unpickling it imports torch (the parent never does: importing torch after TensorFlow crashes)."""

    def __reduce__(self):
        import importlib

        return importlib.import_module, ("torch",)


def test_isolated_reader_cannot_import_frameworks():
    """In the child, Keras / TensorFlow / PyTorch imports fail, whatever asks for them: here an
    architecture= argument whose unpickling in the child would import torch (the ImportError arrives
    as a ModelFormatError naming the file and the child's exception)."""
    _raises(ModelFormatError, os.path.join(DATA, "keras22_lstm.h5"), "ImportError",
            "torch must not be imported while reading a model file", architecture={"dtype": _ImportsTorch()})
    # the same argument in-process reaches the reader, which refuses it as a Keras config
    _raises(ModelFormatError, os.path.join(DATA, "keras22_lstm.h5"), architecture={"dtype": _ImportsTorch()},
            isolate=False)


# --------------------------------------------------------------------------- hostile files (issue 12)
# Files built by tests/hostile_keras.py (also run as families by test_hostile_files.py, through
# fastrnn.load and its exception boundary); here the reader itself, isolated and in-process.
def test_isolated_limits_come_from_the_real_file_size(tmp_path):
    """#12.4: an unused zip64 member declaring 1 TiB once lifted the child's limits to 4 TiB of
    address space, 65,556 s of CPU and 196,698 s of wall time: the limits follow the bytes on disk."""
    from fastrnn.io.isolate import limits_for

    plain = hostile_keras.keras_file(str(tmp_path / "plain.keras"))
    floor = {"memory": 2 << 30, "cpu": 20, "wall": 90}
    assert limits_for(plain) == floor
    for declared in (1 << 30, 1 << 34, 1 << 40):
        junk = hostile_keras.stored("assets/junk.bin", b"\0" * 16, declared=declared)
        p = hostile_keras.keras_file(str(tmp_path / f"junk{declared}.keras"), extra=[junk])
        with zipfile.ZipFile(p) as z:
            assert z.getinfo("assets/junk.bin").file_size == declared  # the archive does declare it
        assert limits_for(p) == floor, declared
    big = tmp_path / "sparse.keras"  # 1 GiB on disk (sparse): the limits grow with the real size
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    assert limits_for(big) == {"memory": (4 << 30) + (1 << 30), "cpu": 20 + 64, "wall": 3 * 84 + 30}


def test_unwritten_dataset_with_junk_member_is_refused(tmp_path):
    """#12.4: a .keras whose kernel is a never-written 5 GiB dataset, plus a junk zip64 member
    claiming 1 TiB, is refused before anything is allocated, in the isolated child (whose limits the
    junk no longer lifts) and in this process; this process's peak RSS does not grow."""
    import resource

    p = hostile_keras.make_zip64_junk(str(tmp_path), 1 << 40)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for isolate in (True, False):
        msg = _raises(ModelFormatError, p, "layers/lstm/cell/vars/0", "5,368,709,112 bytes", isolate=isolate)
        assert "byte file may cost" in msg, msg
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 128 << 10  # KiB


def test_lone_surrogate_text_is_refused(tmp_path):
    """#12.10: a lone UTF-16 surrogate (no UTF-8 form: Keras never writes one) in the model name, a
    layer name, the input layer's name, a config key, metadata.json or a legacy .h5's model_config.
    Isolated it raised ``TypeError: function takes exactly 5 arguments`` (the parent rebuilt the
    child's UnicodeEncodeError from one string); in-process it loaded, and save() / to_bytes() /
    pickle.dumps() then raised UnicodeEncodeError.  Refused: ModelFormatError naming the file, the
    JSON path and the layer."""
    for i, place in enumerate(hostile_keras.SURROGATE_PLACES):
        p = hostile_keras.make_surrogate(str(tmp_path), i)
        for isolate in ((True, False) if place in ("model_name", "layer_name") else (False,)):
            msg = _raises(ModelFormatError, p, "not valid Unicode", "\\ud800", isolate=isolate)
            if place in ("layer_name", "input_name", "config_key"):
                assert "in layer " in msg, msg
            if place == "layer_name":
                assert "'lstm\\ud800' (LSTM)" in msg, msg
    # the same text in an architecture= argument (JSON text or a dict) is refused too
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(hostile_keras.weights_h5(names=False))
    cfg = hostile_keras.model_config(lstm_name="lstm\ud800")
    for arch in (cfg, json.dumps(cfg), json.dumps(cfg, ensure_ascii=False)):
        _raises(ModelFormatError, weights, "not valid Unicode", architecture=arch, isolate=False)
    assert spec_from_keras_file(weights, architecture=hostile_keras.model_config(), isolate=False).layers


def test_broken_deflate_stream_in_config(tmp_path):
    """#12.10: config.json deflated with a broken stream: RuntimeError isolated, a bare zlib.error in
    process; now a ModelFormatError naming the file and the member."""
    for size in (0, 300):
        p = hostile_keras.make_deflate_config(str(tmp_path), size)
        for isolate in (True, False):
            _raises(ModelFormatError, p, "config.json", "damaged", isolate=isolate)
    # the same archive with an intact stream loads: the test exercises the deflate path, not something else
    cfg = json.dumps(hostile_keras.model_config()).encode()
    good = hostile_keras.keras_file(str(tmp_path / "deflated.keras"),
                                    config_member=hostile_keras.deflated("config.json", cfg))
    assert [l.kind for l in spec_from_keras_file(good, isolate=False).layers] == ["lstm", "dense"]


def test_child_errors_are_rebuilt_robustly():
    """The parent rebuilds what the isolated child reports: a FastRNNError class with its message
    (naming the file), anything else (a builtin that takes other arguments, a name in errors.__all__
    that is no class, a non-string type) a ModelFormatError naming the file and the child's error."""
    from fastrnn.errors import ShapeError, UnsupportedLayerError as ULE
    from fastrnn.io.isolate import CHILD_ESCAPE, _raise_child_error

    lim = {"memory": 2 << 30, "cpu": 20, "wall": 90}

    def rebuilt(typ, message):
        with pytest.raises(Exception) as ei:
            _raise_child_error({"ok": False, "type": typ, "message": message}, "'m.keras'", lim)
        return ei.value

    e = rebuilt("ShapeError", "'m.keras': bad shape")
    assert type(e) is ShapeError and str(e) == "'m.keras': bad shape"
    e = rebuilt("UnsupportedLayerError", "layer 'x' (Conv1D) is not supported")
    assert type(e) is ULE and str(e).startswith("'m.keras': layer 'x'")
    for typ, message in (("UnicodeEncodeError", "'utf-8' codec can't encode character '\\ud800'"),
                         ("error", "Error -3 while decompressing data"), ("file_errors", "x"),
                         ("KeyError", "'k'"), ("OSError", "[Errno 5] I/O error"), (None, None), (7, ["x"])):
        e = rebuilt(typ, message)
        assert type(e) is ModelFormatError, (typ, e)
        assert "'m.keras'" in str(e) and CHILD_ESCAPE in str(e), str(e)
        if isinstance(typ, str):
            assert typ in str(e) and message in str(e), str(e)
    e = rebuilt("MemoryError", "")
    assert type(e) is ModelFormatError and "memory limit" in str(e)
