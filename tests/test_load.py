"""fastrnn.load(): live objects, native files, and sniffing file formats by content."""
import os
import pathlib
import pickle
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

import fastrnn
from conftest import require, child_env, CHILD_CWD
from fastrnn.errors import FastRNNError, ModelFileNotFoundError, ModelFormatError, UnsupportedLayerError
from fastrnn.io.detect import detect_format
from test_kernels import rnn_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)


def test_live_torch_module(x):
    torch = require("torch")
    torch.manual_seed(0)
    m = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True).eval()
    got = fastrnn.load(m)
    assert got.spec.source == "torch"
    np.testing.assert_array_equal(got.predict(x), fastrnn.from_torch(m).predict(x))
    with torch.no_grad():
        np.testing.assert_allclose(got.predict(x), m(torch.from_numpy(x))[0].numpy(), atol=1e-5, rtol=1e-5)


def test_torch_subclass_is_recognised_without_importing_torch_here():
    torch = require("torch")

    class MyLSTM(torch.nn.LSTM):
        pass

    assert fastrnn._framework(MyLSTM(2, 3)) == "torch"
    assert fastrnn._framework(object()) is None


def test_live_keras_model(x):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = require("keras")
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4, return_sequences=True)])
    got = fastrnn.load(model)
    assert got.spec.source == "keras"
    np.testing.assert_allclose(got.predict(x), np.asarray(model(x)), atol=1e-5, rtol=1e-5)


def test_spec_and_model(x):
    spec = rnn_spec("lstm", 3, 4)
    m = fastrnn.load(spec)
    assert isinstance(m, fastrnn.Model)
    assert fastrnn.load(m) is m
    with pytest.raises(UnsupportedLayerError, match="architecture"):
        fastrnn.load(spec, architecture={})


def test_unsupported_object():
    with pytest.raises(TypeError, match="takes a path"):
        fastrnn.load(42)


@pytest.mark.parametrize("as_path", [str, pathlib.Path])
def test_native_file(tmp_path, x, as_path):
    m = fastrnn.Model(rnn_spec("gru", 3, 4, direction="bidirectional"))
    p = tmp_path / "model.bin"  # the suffix does not matter: the content does
    m.save(as_path(p))
    assert detect_format(p) == "fastrnn"
    got = fastrnn.load(as_path(p))
    np.testing.assert_array_equal(got.predict(x), m.predict(x))
    np.testing.assert_array_equal(fastrnn.load(p, mmap=True).predict(x), m.predict(x))
    with pytest.raises(UnsupportedLayerError, match=r"architecture do not apply to a \.fastrnn file"):
        fastrnn.load(p, architecture={"kind": "lstm"})


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileNotFoundError, match="no such model file") as info:
        fastrnn.load(tmp_path / "nope.fastrnn")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, FastRNNError)
    assert info.value.filename == str(tmp_path / "nope.fastrnn")


def test_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="is a directory"):
        fastrnn.load(tmp_path)


@pytest.mark.parametrize("content,match", [
    (b"hello, I am a text file\n", r"unknown model file format \(first bytes b'hello"),
    (b"", "empty"),
    (b"\x93NUMPY\x01\x00v\x00{'descr'", "numpy .npy array"),
    (b"\x00" * 64, "unknown model file format"),
])
def test_unknown_content(tmp_path, content, match):
    p = tmp_path / "thing.pt"
    p.write_bytes(content)
    with pytest.raises(ModelFormatError, match=match) as info:
        fastrnn.load(p)
    assert str(p) in str(info.value)


def test_npz_is_not_a_model(tmp_path):
    p = tmp_path / "arrays.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(ModelFormatError, match=r"numpy \.npz archive of weights .*not a single nn\.RNN/LSTM/GRU.*: a\)"
                                               r"; describe the model with architecture="):
        fastrnn.load(p)


def _zip(path, names):
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(n, b"x")
    return path


@pytest.fixture
def fake_readers(monkeypatch):
    """Stand-ins for fastrnn.io.keras_file / torch_file recording what load() hands them."""
    calls = []
    spec = rnn_spec("gru", 3, 4)
    keras_mod = types.ModuleType("fastrnn.io.keras_file")
    keras_mod.spec_from_keras_file = lambda path, **kw: calls.append(("keras", path, kw)) or spec
    torch_mod = types.ModuleType("fastrnn.io.torch_file")
    torch_mod.spec_from_torch_file = lambda path, **kw: calls.append(("torch", path, kw)) or spec
    monkeypatch.setitem(sys.modules, "fastrnn.io.keras_file", keras_mod)
    monkeypatch.setitem(sys.modules, "fastrnn.io.torch_file", torch_mod)
    return calls


def _hdf5(path, userblock=0):
    path.write_bytes(b"\0" * userblock + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    return path


def test_dispatch_by_content(tmp_path, fake_readers):
    cases = [
        (_zip(tmp_path / "a.bin", ["metadata.json", "config.json", "model.weights.h5"]), "keras", "keras"),
        (_hdf5(tmp_path / "b.bin"), "keras_h5", "keras"),
        (_hdf5(tmp_path / "b2.h5", userblock=512), "keras_h5", "keras"),
        (_zip(tmp_path / "c.keras", ["archive/data.pkl", "archive/data/0", "archive/version"]), "torch", "torch"),
        (_zip(tmp_path / "d.bin", ["data.pkl"]), "torch", "torch"),
    ]
    p = tmp_path / "e.pth"
    p.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    cases.append((p, "torch", "torch"))
    for path, fmt, reader in cases:
        assert detect_format(path) == fmt, path
        m = fastrnn.load(path, architecture={"x": 1})
        assert isinstance(m, fastrnn.Model)
        assert fake_readers[-1] == (reader, str(path), {"architecture": {"x": 1}})


def test_zip_that_is_no_model(tmp_path):
    with pytest.raises(ModelFormatError, match=r"a zip archive \(readme.txt\) that is neither"):
        fastrnn.load(_zip(tmp_path / "x.keras", ["readme.txt"]))


def test_missing_reader_module(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastrnn.io.keras_file", None)  # as if the module did not exist
    monkeypatch.setitem(sys.modules, "fastrnn.io.torch_file", None)
    with pytest.raises(UnsupportedLayerError, match="support for Keras files is not available"):
        fastrnn.load(_hdf5(tmp_path / "m.h5"))
    with pytest.raises(UnsupportedLayerError, match="support for PyTorch files is not available"):
        fastrnn.load(_zip(tmp_path / "m.pt", ["m/data.pkl"]))


def test_load_imports_no_framework(tmp_path):
    """Loading a native file must not import torch / keras / tensorflow."""
    p = tmp_path / "m.fastrnn"
    fastrnn.Model(rnn_spec("lstm", 3, 4)).save(p)
    code = ("import sys, fastrnn; m = fastrnn.load(sys.argv[1]); fastrnn.load(m.spec); "
            "bad = [k for k in ('torch', 'keras', 'tensorflow') if k in sys.modules]; assert not bad, bad")
    env = child_env()
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, env=env, timeout=60,
                       cwd=CHILD_CWD)
    assert r.returncode == 0, r.stderr
