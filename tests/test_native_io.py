"""The native .fastrnn file: round trips, the byte layout (numpy alone, safetensors), atomic saves,
hostile files, and the committed format fixtures (kept forever)."""
import glob
import importlib.util
import json
import os
import pickle
import re
import time
import tracemalloc

import numpy as np
import pytest

import fastrnn
from conftest import assert_close, require
from fastrnn import spec as S
from fastrnn.errors import FastRNNError, ModelFormatError
from fastrnn.io import native
from fastrnn.io.native import load_spec, save_spec
from test_kernels import rnn_spec

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_DIR = os.path.join(HERE, "data", "formats")


def _make_fixtures_module():
    spec = importlib.util.spec_from_file_location("make_fixtures", os.path.join(HERE, "data", "make_fixtures.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MF = _make_fixtures_module()


def _specs():
    """(id, spec, x) covering every layer kind and the recurrent options."""
    out = []
    for i, make in enumerate(MF.FIXTURES):
        spec, x, _ = make(np.random.default_rng(i))
        out.append((make.__name__, spec, x))
    rng = np.random.default_rng(5)
    for kind in S.RECURRENT_KINDS:
        for kw in ({}, {"direction": "bidirectional", "merge": "mul"}, {"direction": "reverse", "mask_mode": "hold"},
                   {"return_sequences": False}):
            out.append((f"{kind}-{'-'.join(map(str, kw.values())) or 'plain'}", rnn_spec(kind, 3, 4, **kw),
                        rng.standard_normal((2, 5, 3)).astype(np.float32)))
    out.append(("gru-reset_before", rnn_spec("gru", 3, 4, reset_after=False), rng.standard_normal((2, 5, 3))))
    out.append(("lstm-proj-bi-none", rnn_spec("lstm", 3, 6, proj=2, direction="bidirectional", merge="none"),
                rng.standard_normal((2, 5, 3))))
    return out


SPECS = _specs()


def test_round_trip_covers_every_layer_kind():
    assert {l.kind for _, s, _ in SPECS for l in s.layers} == set(S.LAYER_KINDS)


@pytest.mark.parametrize("name,spec,x", SPECS, ids=[s[0] for s in SPECS])
def test_round_trip(tmp_path, name, spec, x):
    path = tmp_path / "m.fastrnn"
    model = fastrnn.Model(spec)
    model.save(path)
    back = load_spec(path)
    h0, t0 = spec.to_core()
    h1, t1 = back.to_core()
    assert h1 == json.loads(json.dumps(h0))
    assert t0.keys() == t1.keys()
    for k in t0:
        assert t1[k].dtype == np.float32 and np.array_equal(t0[k], t1[k]), k
    y0, y1 = model.predict(x), fastrnn.load(path).predict(x)
    for a, b in zip(y0 if isinstance(y0, tuple) else [y0], y1 if isinstance(y1, tuple) else [y1]):
        assert np.array_equal(a, b)
    mm = load_spec(path, mmap=True)  # same content through a read-only mapping
    assert all(np.array_equal(mm.to_core()[1][k], t0[k]) for k in t0)


def _read_raw(path):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    return raw, n, json.loads(raw[8:8 + n])


def test_file_is_readable_with_numpy_alone(tmp_path):
    name, spec, _ = SPECS[1]  # embedding + bidirectional GRU + softmax
    path = tmp_path / "m.fastrnn"
    save_spec(spec, path)
    raw, n, header = _read_raw(path)
    assert (8 + n) % 64 == 0 and raw[8:9] == b"{"
    meta = header.pop("__metadata__")
    assert meta["format"] == "fastrnn" and meta["fastrnn_format_version"] == "1"
    assert all(isinstance(v, str) for v in meta.values())
    assert json.loads(meta["spec"])["layers"][1]["kind"] == "gru"
    _, tensors = spec.to_core()
    for key, info in header.items():
        b, e = info["data_offsets"]
        if key.startswith("__pad__."):  # the bytes that align the next tensor
            assert info["dtype"] == "U8" and not any(raw[8 + n + b:8 + n + e]) and e % 64 == 0
            continue
        assert b % 64 == 0
        assert info["dtype"] == "F32"
        arr = np.frombuffer(raw, dtype="<f4", count=(e - b) // 4, offset=8 + n + b).reshape(info["shape"])
        assert np.array_equal(arr, tensors[key])
    assert set(k for k in header if not k.startswith("__pad__.")) == set(tensors)


def test_safetensors_reads_the_file(tmp_path):
    require("safetensors")
    from safetensors import safe_open
    from safetensors.numpy import load_file

    _, spec, _ = SPECS[3]
    path = tmp_path / "m.fastrnn"
    save_spec(spec, path)
    loaded = load_file(str(path))
    _, tensors = spec.to_core()
    assert {k for k in loaded if not k.startswith("__pad__.")} == set(tensors)
    for k, v in tensors.items():
        assert loaded[k].dtype == np.float32 and np.array_equal(loaded[k], v)
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata()["format"] == "fastrnn"


def test_a_plain_safetensors_file_is_not_a_fastrnn_model(tmp_path):
    require("safetensors")
    from safetensors.numpy import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": np.zeros((2, 3), np.float32)}, str(path))
    with pytest.raises(ModelFormatError, match="without fastrnn metadata"):
        fastrnn.load(path)


# --------------------------------------------------------------------------------- atomic save
def _tmp_files(d):
    return [p for p in os.listdir(d) if p.endswith(".tmp")]


@pytest.mark.parametrize("where", ["fsync", "write", "replace"])
def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch, where):
    path = tmp_path / "m.fastrnn"
    save_spec(SPECS[0][1], path)
    before = path.read_bytes()
    if where == "fsync":
        def boom(fd):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(native.os, "fsync", boom)
    elif where == "write":  # the second tensor cannot be written: the temp file is half done
        real = native._layout

        def layout(spec):
            header, chunks = real(spec)
            return header, chunks[:1] + [object()] + chunks[1:]
        monkeypatch.setattr(native, "_layout", layout)
    else:
        def boom(a, b):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(native.os, "replace", boom)
    with pytest.raises((OSError, TypeError)):
        save_spec(SPECS[2][1], path)
    assert path.read_bytes() == before
    assert _tmp_files(tmp_path) == []
    assert load_spec(path).layers[0].kind == SPECS[0][1].layers[0].kind


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        save_spec(SPECS[0][1], tmp_path / "nope" / "m.fastrnn")


def test_save_refuses_metadata_that_is_not_json(tmp_path):
    spec = rnn_spec("gru", 2, 3)
    spec.metadata["bad"] = object()
    with pytest.raises(ModelFormatError, match="JSON"):
        save_spec(spec, tmp_path / "m.fastrnn")
    assert os.listdir(tmp_path) == []


def test_save_keeps_numpy_scalars_in_metadata(tmp_path):
    spec = rnn_spec("gru", 2, 3)
    spec.metadata.update(epochs=np.int64(3), lr=np.float32(0.5), shape=np.array([1, 2]))
    save_spec(spec, tmp_path / "m.fastrnn")
    assert load_spec(tmp_path / "m.fastrnn").metadata == {"epochs": 3, "lr": 0.5, "shape": [1, 2]}


# --------------------------------------------------------------------------------- the load budget
def _lm(V, D, H, metadata=None):
    """A word-level LM as a real converter makes it: Embedding [V, D] -> LSTM(H) -> Dense [V, H]."""
    rng = np.random.default_rng(0)
    lstm = rnn_spec("lstm", D, H).layers[0]
    return S.ModelSpec(layers=[S.EmbeddingSpec(name="emb", embeddings=rng.standard_normal((V, D))), lstm,
                               S.DenseSpec(name="fc", weight=rng.standard_normal((V, H)), bias=np.zeros(V))],
                       metadata=metadata or {})


def test_budget_admits_real_models_without_the_allowance(tmp_path, monkeypatch):
    """Issue 12.5: the work and memory a header implies (the core's copies and 32-row packed panels
    of every matrix, an omitted Dense bias, parsing the JSON) are charged against 4 x the file
    size before anything is built; real models fit in that even with no fixed allowance at all."""
    from fastrnn.io import budget

    monkeypatch.setattr(native, "LoadBudget", lambda origin, size: budget.LoadBudget(origin, size, allowance=0))
    for name, spec in (("lm", _lm(5000, 64, 256)), ("regression", rnn_spec("gru", 300, 512)),
                       ("vocab", _lm(50_000, 32, 64, metadata={"vocab": [f"word{i}" for i in range(50_000)]}))):
        save_spec(spec, tmp_path / f"{name}.fastrnn")
        assert load_spec(tmp_path / f"{name}.fastrnn").layers[0].name == spec.layers[0].name


def test_budget_refuses_what_a_header_implies_beyond_the_file(tmp_path):
    """A Dense [1, K] weight packs into 32 x its bytes; before, a 4 MB file cost 637 MB of RSS."""
    import hostile_native

    path = hostile_native.narrow_dense(str(tmp_path), 1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match=r"narrow_dense_1048576\.fastrnn: layer 1 \(dense: the weights the core "
                                                   r"builds\) would need 138,412,036 bytes"):
            fastrnn.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_from_bytes_names_its_origin(tmp_path):
    """Issue 12.14: a lone-surrogate layer name gave ModelFormatError(": 'name' has the wrong type"),
    naming no file; from bytes, errors name the origin given (``<bytes>`` by default)."""
    import hostile_native

    data = open(hostile_native.surrogate(str(tmp_path), 0), "rb").read()
    for args, origin in (((data,), "<bytes>"), ((data, "model-v3.bin"), "model-v3.bin")):
        with pytest.raises(ModelFormatError, match=rf"^{re.escape(origin)}: layer 0 \(gru\): name '\\ud800' is not "
                                                   "valid Unicode"):
            fastrnn.Model.from_bytes(*args)
    with pytest.raises(fastrnn.FastRNNError, match=r"takes bytes") as info:
        fastrnn.Model.from_bytes("not bytes")
    assert isinstance(info.value, TypeError)


# --------------------------------------------------------------------------------- hostile files
@pytest.fixture
def good(tmp_path):
    """A valid file and its parsed parts: (path, header dict, data bytes)."""
    path = tmp_path / "good.fastrnn"
    save_spec(SPECS[0][1], path)
    raw, n, header = _read_raw(path)
    return path, header, raw[8 + n:]


def _write(path, header, data, pad=True):
    h = json.dumps(header).encode() if isinstance(header, (dict, list)) else header
    if pad:
        h += b" " * ((-(8 + len(h))) % 64)
    path.write_bytes(len(h).to_bytes(8, "little") + h + data)
    return path


def _first_tensor(header):
    return next(k for k in header if not k.startswith("__"))


def _spec_meta(header, fn):
    s = json.loads(header["__metadata__"]["spec"])
    fn(s)
    header["__metadata__"]["spec"] = json.dumps(s)


def _hostile_cases():
    cases = {}

    def case(name, match):
        def deco(fn):
            cases[name] = (fn, match)
            return fn
        return deco

    @case("empty", "too short")
    def _(p, h, d):
        p.write_bytes(b"")

    @case("seven-bytes", "too short")
    def _(p, h, d):
        p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00")

    @case("truncated-header", "truncated")
    def _(p, h, d):
        raw = p.read_bytes()
        p.write_bytes(raw[:100])

    @case("truncated-data", "truncated")
    def _(p, h, d):
        raw = p.read_bytes()
        p.write_bytes(raw[:-200])

    @case("header-length-past-eof", "only")
    def _(p, h, d):
        p.write_bytes((10 ** 6).to_bytes(8, "little") + b"{}" + b" " * 100)

    @case("header-length-huge", "allowed")
    def _(p, h, d):
        p.write_bytes((2 ** 63).to_bytes(8, "little") + b"{}")

    @case("garbage", "not valid UTF-8 JSON|only|allowed")
    def _(p, h, d):
        p.write_bytes(bytes(range(256)) * 4)

    @case("not-json", "not valid UTF-8 JSON")
    def _(p, h, d):
        _write(p, b"{this is not json", d)

    @case("json-array", "not an object")
    def _(p, h, d):
        _write(p, [1, 2, 3], b"")

    @case("duplicate-keys", "duplicate key")
    def _(p, h, d):
        t = _first_tensor(h)
        body = json.dumps(h)
        _write(p, (body[:-1] + ", " + json.dumps(t) + ": " + json.dumps(h[t]) + "}").encode(), d)

    @case("no-metadata", "without fastrnn metadata")
    def _(p, h, d):
        del h["__metadata__"]
        _write(p, h, d)

    @case("other-format", "without fastrnn metadata")
    def _(p, h, d):
        h["__metadata__"]["format"] = "pt"
        _write(p, h, d)

    @case("version-4", r"newer fastrnn \(format version 4.*upgrade fastrnn \(pip install -U fastrnn\)")
    def _(p, h, d):
        h["__metadata__"]["fastrnn_format_version"] = "4"
        _write(p, h, d)

    @case("version-garbage", "fastrnn_format_version")
    def _(p, h, d):
        h["__metadata__"]["fastrnn_format_version"] = "one"
        _write(p, h, d)

    @case("spec-not-json", r"__metadata__.spec\) is not valid JSON")
    def _(p, h, d):
        h["__metadata__"]["spec"] = "{nope"
        _write(p, h, d)

    @case("dtype-f16", "dtype 'F16' is not supported")
    def _(p, h, d):
        h[_first_tensor(h)]["dtype"] = "F16"
        _write(p, h, d)

    @case("dtype-u8-tensor", "dtype 'U8' is not supported")
    def _(p, h, d):
        h[_first_tensor(h)]["dtype"] = "U8"
        _write(p, h, d)

    @case("negative-shape", "non-negative ints")
    def _(p, h, d):
        h[_first_tensor(h)]["shape"][0] = -24
        _write(p, h, d)

    @case("float-shape", "non-negative ints")
    def _(p, h, d):
        h[_first_tensor(h)]["shape"][0] = 24.0
        _write(p, h, d)

    @case("huge-shape", "needs .* bytes")
    def _(p, h, d):
        h[_first_tensor(h)]["shape"] = [10 ** 6, 10 ** 6]  # 1e12 elements
        _write(p, h, d)

    @case("overflow-shape", "needs .* bytes")
    def _(p, h, d):
        h[_first_tensor(h)]["shape"] = [2 ** 62] * 8
        _write(p, h, d)

    @case("size-mismatch", "needs 96 bytes")
    def _(p, h, d):
        t = _first_tensor(h)
        h[t]["shape"] = [4, 6]  # 96 bytes, the offsets hold 384
        _write(p, h, d)

    @case("offsets-past-end", "run past the end")
    def _(p, h, d):
        t = _first_tensor(h)
        b, e = h[t]["data_offsets"]
        h[t]["data_offsets"] = [b + len(d), e + len(d)]
        _write(p, h, d)

    @case("offsets-reversed", "0 <= begin <= end")
    def _(p, h, d):
        t = _first_tensor(h)
        h[t]["data_offsets"] = h[t]["data_offsets"][::-1]
        _write(p, h, d)

    @case("offsets-overlap", "overlap")
    def _(p, h, d):
        names = [k for k in h if not k.startswith("__")]
        a, b = names[0], names[2]  # b_ih [24] -> make it overlap w_ih
        h[b]["data_offsets"] = [16, 16 + 4 * 24]
        _write(p, h, d)

    @case("hole", "hole")
    def _(p, h, d):
        for k in [k for k in h if k.startswith("__pad__.")][:1]:
            del h[k]
        _write(p, h, d)

    @case("trailing-bytes", "after the last tensor")
    def _(p, h, d):
        _write(p, h, d + b"\0" * 64)

    @case("missing-tensor", "missing tensor")
    def _(p, h, d):
        t = _first_tensor(h)
        b, e = h[t]["data_offsets"]
        h[t] = {"dtype": "U8", "shape": [e - b], "data_offsets": [b, e]}
        h["__pad__.x"] = h.pop(t)
        _write(p, h, d)

    @case("unused-tensor", "not used by any layer")
    def _(p, h, d):
        h["extra"] = {"dtype": "F32", "shape": [16], "data_offsets": [len(d), len(d) + 64]}
        _write(p, h, d + b"\0" * 64)

    @case("units-string", "'units' must be int")
    def _(p, h, d):
        _spec_meta(h, lambda s: s["layers"][0].__setitem__("units", "6"))
        _write(p, h, d)

    @case("units-bool", "'units' must be int")
    def _(p, h, d):
        _spec_meta(h, lambda s: s["layers"][0].__setitem__("units", True))
        _write(p, h, d)

    @case("layers-not-list", "'layers' must be a list")
    def _(p, h, d):
        _spec_meta(h, lambda s: s.__setitem__("layers", {"a": 1}))
        _write(p, h, d)

    @case("unknown-layer-field", "unexpected keyword")
    def _(p, h, d):
        _spec_meta(h, lambda s: s["layers"][0].__setitem__("stateful", True))
        _write(p, h, d)

    @case("unknown-kind", "unknown layer kind 'transformer'")
    def _(p, h, d):
        _spec_meta(h, lambda s: s["layers"][1].__setitem__("kind", "transformer"))
        _write(p, h, d)

    @case("wrong-weight-shape", "expected shape")
    def _(p, h, d):
        _spec_meta(h, lambda s: s["layers"][0].__setitem__("units", 5))
        _write(p, h, d)

    @case("spec-version-4", "upgrade fastrnn")
    def _(p, h, d):
        _spec_meta(h, lambda s: s.__setitem__("format", 4))
        _write(p, h, d)

    return cases


HOSTILE = _hostile_cases()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_file_is_refused(good, case):
    path, header, data = good
    make, match = HOSTILE[case]
    make(path, header, data)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(FastRNNError, match=match) as info:
            fastrnn.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 2.0
    assert peak < 16 << 20, f"{peak} bytes allocated"
    assert str(path) in str(info.value)
    if case not in ("unknown-kind",):
        assert isinstance(info.value, ModelFormatError) and isinstance(info.value, ValueError)


def test_load_spec_on_an_empty_file_names_it(tmp_path):
    p = tmp_path / "empty.fastrnn"
    p.write_bytes(b"")
    with pytest.raises(ModelFormatError, match=r"empty\.fastrnn.*too short"):
        load_spec(p)


class _Boom:
    def __reduce__(self):
        return (open, (_Boom.marker, "w"))


def test_a_pickle_is_never_executed(tmp_path):
    """A pickle named like a native file: sniffed as a PyTorch file (which only reads weights)."""
    _Boom.marker = str(tmp_path / "pwned")
    for name, proto in (("evil.fastrnn", 2), ("evil.pt", 4)):
        p = tmp_path / name
        p.write_bytes(pickle.dumps({"w": _Boom()}, protocol=proto))
        with pytest.raises(FastRNNError):
            fastrnn.load(p)
        assert not os.path.exists(_Boom.marker)
        with pytest.raises(ModelFormatError):
            load_spec(p)  # the native reader never unpickles either
        assert not os.path.exists(_Boom.marker)


# --------------------------------------------------------------------------------- fixtures
FIXTURES = sorted(glob.glob(os.path.join(FIXTURE_DIR, "v*", "*.fastrnn")))


def test_fixtures_exist():
    names = {os.path.relpath(p, FIXTURE_DIR) for p in FIXTURES}
    for version in MF.VERSION_PRECISIONS:
        assert {f"v{version}/{name}.fastrnn" for name, _, _ in MF.fixture_names(version)} <= names


@pytest.mark.parametrize("path", FIXTURES, ids=[os.path.relpath(p, FIXTURE_DIR) for p in FIXTURES])
def test_format_fixture(path):
    """Files written by every released format version load and give the reference's output."""
    base = path[: -len(".fastrnn")]
    x = np.load(base + ".input.npy")
    lengths = np.load(base + ".lengths.npy") if os.path.exists(base + ".lengths.npy") else None
    expected = np.load(base + ".expected.npy")
    model = fastrnn.load(path)
    tol = {"atol": MF.ATOL[model.precision], "rtol": 0} if model.precision in MF.ATOL else {}
    assert_close(model.predict(x, lengths=lengths), expected, what=os.path.basename(path), **tol)
