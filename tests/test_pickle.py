"""Models in memory and across processes: dumps_spec / loads_spec (the file's bytes, same writer and
reader as save_spec / load_spec), Model.to_bytes / from_bytes, pickle as those bytes, and predict in
multiprocessing (spawn and fork) and concurrent.futures worker processes."""
import concurrent.futures
import io
import multiprocessing
import pickle
import pickletools
import tracemalloc

import numpy as np
import pytest

import fastrnn
from fastrnn.errors import FastRNNError, ModelFormatError
from fastrnn.io.native import dumps_spec, load_spec, loads_spec, save_spec
from fastrnn.runtime import _model_from_bytes
from test_kernels import rnn_spec
from test_native_io import HOSTILE, SPECS

CHILD_TIMEOUT_S = 90  # a hung child (e.g. a thread pool that is not fork-safe) fails the test, never hangs it


def _outputs(y):
    return list(y) if isinstance(y, tuple) else [y]


def _assert_same(a, b):
    for u, v in zip(_outputs(a), _outputs(b), strict=True):
        assert np.array_equal(u, v)


def _big_model():
    return fastrnn.Model(rnn_spec("lstm", 16, 64, direction="bidirectional", merge="concat"))


# --------------------------------------------------------------------------------- bytes API
@pytest.mark.parametrize("name,spec,x", SPECS, ids=[s[0] for s in SPECS])
def test_bytes_are_the_file(tmp_path, name, spec, x):
    path = tmp_path / "m.fastrnn"
    save_spec(spec, path)
    data = dumps_spec(spec)
    assert data == path.read_bytes()  # one writer
    back = loads_spec(data)
    h0, t0 = load_spec(path).to_core()
    h1, t1 = back.to_core()
    assert h0 == h1 and t0.keys() == t1.keys()
    for k in t0:
        assert np.array_equal(t0[k], t1[k]) and t1[k].flags.writeable and t1[k].ctypes.data % 64 == 0
    _assert_same(fastrnn.Model(spec).predict(x), fastrnn.Model.from_bytes(data).predict(x))


def test_loads_spec_takes_bytes_like_and_refuses_the_rest():
    data = dumps_spec(SPECS[0][1])
    for form in (bytearray(data), memoryview(data), memoryview(bytearray(data))):
        assert loads_spec(form).to_core()[0] == loads_spec(data).to_core()[0]
    for bad in ("text", None, [1, 2], io.BytesIO(data)):
        with pytest.raises(TypeError, match="takes bytes"):
            loads_spec(bad)
    with pytest.raises(TypeError, match="ModelSpec"):
        dumps_spec(fastrnn.Model(SPECS[0][1]))


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bytes_are_refused_like_the_file(tmp_path, good_file, case):
    """Every hostile-file case of test_native_io, as bytes: the same error, naming the given name,
    with bounded memory (the reader checks the header before it allocates)."""
    path, header, data = good_file
    make, match = HOSTILE[case]
    make(path, header, data)
    raw = path.read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(FastRNNError, match=match) as info:
            loads_spec(raw, name="blob-42")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20 + 2 * len(raw), f"{peak} bytes allocated"
    assert str(info.value).startswith("blob-42: ")
    with pytest.raises(type(info.value)):  # and what unpickling such bytes gives
        _model_from_bytes(raw)


@pytest.fixture
def good_file(tmp_path):
    from test_native_io import _read_raw

    path = tmp_path / "good.fastrnn"
    save_spec(SPECS[0][1], path)
    raw, n, header = _read_raw(path)
    return path, header, raw[8 + n:]


# --------------------------------------------------------------------------------- pickle
def test_model_to_bytes_from_bytes(tmp_path):
    m = _big_model()
    m.save(tmp_path / "m.fastrnn")
    assert m.to_bytes() == (tmp_path / "m.fastrnn").read_bytes()
    x = np.random.default_rng(0).standard_normal((3, 7, 16)).astype(np.float32)
    _assert_same(fastrnn.Model.from_bytes(m.to_bytes()).predict(x), m.predict(x))
    with pytest.raises(ModelFormatError, match="^<bytes>: .*too short"):
        fastrnn.Model.from_bytes(b"")


@pytest.mark.parametrize("protocol", range(3, pickle.HIGHEST_PROTOCOL + 1))  # 3: the first with bytes
def test_pickle_is_the_native_bytes(tmp_path, protocol):
    m = _big_model()
    m.save(tmp_path / "m.fastrnn")
    size = (tmp_path / "m.fastrnn").stat().st_size
    blob = pickle.dumps(m, protocol=protocol)
    assert size <= len(blob) <= size + 200, (len(blob), size)
    # The only global the pickle names is the loader; everything else is one bytes object.
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(blob)]
    globals_ = [arg or "stack" for name, arg in ops if name in ("GLOBAL", "STACK_GLOBAL")]
    strings = [arg for name, arg in ops if name.endswith("UNICODE")]
    assert globals_ in (["stack"], ["fastrnn.runtime _model_from_bytes"]), globals_
    assert set(strings) <= {"fastrnn.runtime", "_model_from_bytes"}, strings
    assert len([name for name, _ in ops if "BYTES" in name and "BYTEARRAY" not in name]) == 1  # one bytes object
    back = pickle.loads(blob)
    assert isinstance(back, fastrnn.Model) and back is not m
    x = np.random.default_rng(1).standard_normal((4, 9, 16)).astype(np.float32)
    _assert_same(back.predict(x), m.predict(x))
    y, states = back.predict(x, lengths=[9, 5, 1, 3], return_state=True)
    y0, states0 = m.predict(x, lengths=[9, 5, 1, 3], return_state=True)
    assert np.array_equal(y, y0) and all(np.array_equal(a, b) for s, s0 in zip(states, states0)
                                         for a, b in zip(s, s0))


def test_pickle_keeps_metadata_and_ids_models():
    spec = SPECS[1][1]  # embedding + bidirectional GRU + softmax
    spec.metadata["note"] = "kept"
    try:
        back = pickle.loads(pickle.dumps(fastrnn.Model(spec)))
    finally:
        del spec.metadata["note"]
    assert back.spec.metadata["note"] == "kept"
    _assert_same(back.predict(SPECS[1][2]), fastrnn.Model(spec).predict(SPECS[1][2]))


def test_a_tampered_pickle_goes_through_the_checked_reader():
    blob = pickle.dumps(_big_model(), protocol=4)
    i = blob.index(_big_model().to_bytes()[:64])
    evil = bytearray(blob)
    evil[i + 8:i + 8 + 9] = b'{"a":1}, '  # break the JSON header in place, same length
    with pytest.raises(ModelFormatError, match="^<pickled fastrnn.Model>: .*not valid UTF-8 JSON"):
        pickle.loads(bytes(evil))


# --------------------------------------------------------------------------------- processes
def _workload():
    m = _big_model()
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((5, 11, 16)).astype(np.float32) for _ in range(6)]
    return m, xs, [m.predict(x) for x in xs]  # the parent has used predict (and its thread pool) before the fork


def _hung(what, method):
    extra = (" (fork copies the parent's C++ thread pool in whatever state it is in: the pool must be "
             "fork-safe, e.g. re-created in the child by a pthread_atfork handler)") if method == "fork" else ""
    return f"{what} with the {method!r} start method did not finish within {CHILD_TIMEOUT_S} s: a hung child{extra}"


@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_multiprocessing_pool(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method!r} start method on this platform")
    m, xs, expected = _workload()
    ctx = multiprocessing.get_context(method)
    pool = ctx.Pool(2)
    try:
        res = pool.map_async(m.predict, xs, chunksize=1)  # the bound method pickles the model as bytes
        try:
            got = res.get(timeout=CHILD_TIMEOUT_S)
        except multiprocessing.TimeoutError:
            pytest.fail(_hung("multiprocessing.Pool.map", method))
        pool.close()
    finally:
        pool.terminate()
        pool.join()
    for g, e in zip(got, expected, strict=True):
        assert np.array_equal(g, e)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_process_pool_executor(method):
    m, xs, expected = _workload()
    ex = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))
    hung = False
    try:
        futs = [ex.submit(m.predict, x) for x in xs]
        done, not_done = concurrent.futures.wait(futs, timeout=CHILD_TIMEOUT_S)
        hung = bool(not_done)
        if not hung:
            got = [f.result() for f in futs]
    finally:
        if hung:  # kill our own workers so that shutdown cannot block
            for p in list((getattr(ex, "_processes", None) or {}).values()):
                p.kill()
        ex.shutdown(wait=not hung, cancel_futures=True)
    if hung:
        pytest.fail(_hung("ProcessPoolExecutor.submit", method))
    for g, e in zip(got, expected, strict=True):
        assert np.array_equal(g, e)
