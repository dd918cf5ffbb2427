"""fastrnn.dask: predict_dask / predict_dask_frame on the local schedulers and on a 2-process
dask.distributed LocalCluster (loopback), equal to model.predict; the model travels once per worker."""
import os

import numpy as np
import pytest

import fastrnn
from conftest import assert_close, require
from fastrnn.errors import ModelFormatError, ShapeError, UnsupportedLayerError
from test_kernels import rnn_spec

TIMEOUT_S = 60  # every distributed wait is bounded

dask = require("dask")
da = require("dask.array")
import fastrnn.dask as fdask  # noqa: E402


def _model(kind="lstm", **kw):
    return fastrnn.Model(rnn_spec(kind, 6, 16, **kw))


def _x(n=203, t=9, f=6, seed=0):
    return np.random.default_rng(seed).standard_normal((n, t, f)).astype(np.float32)


def _long_frame(model, n_ids=40, seed=3, ids=True):
    """A long-format frame (id, t, f0..) in shuffled row order, and the sequences by id."""
    pd = require("pandas")
    rng = np.random.default_rng(seed)
    seqs, parts = {}, []
    feats = model.spec.input_features
    for i in range(n_ids):
        steps = int(rng.integers(1, 12))
        s = rng.standard_normal((steps, feats)).astype(np.float32)
        key = f"seq-{i}" if ids else i
        seqs[key] = s
        parts.append(pd.DataFrame({"id": [key] * steps, "t": rng.permutation(steps) * 10.0,
                                   **{f"f{j}": np.zeros(steps, np.float32) for j in range(feats)}}))
        order = np.argsort(parts[-1]["t"].to_numpy())
        for j in range(feats):  # rows come in a random time order: the function sorts by t
            vals = np.empty(steps, np.float32)
            vals[order] = s[:, j]
            parts[-1][f"f{j}"] = vals
    pdf = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed)
    return pdf, seqs


def _check_frame(out, model, seqs):
    assert len(out) == len(seqs) and list(out.columns) == [f"y{i}" for i in range(out.shape[1])]
    assert all(str(d) == "float32" for d in out.dtypes)
    for key, s in seqs.items():
        y = model.predict(s[None])
        assert_close(out.loc[key].to_numpy(), y[0, -1] if y.ndim == 3 else y[0], what=str(key))


# --------------------------------------------------------------------------------- local schedulers
@pytest.mark.parametrize("kw", [{}, {"return_sequences": False}, {"direction": "bidirectional"}],
                         ids=["seq", "last", "bi"])
def test_predict_dask_threads(kw):
    m = _model(**kw)
    x = _x()
    y = fdask.predict_dask(m, da.from_array(x, chunks=(50, -1, -1)))
    assert y.dtype == np.float32 and y.chunks[0] == (50, 50, 50, 50, 3)
    got = y.compute(scheduler="threads")
    assert_close(got, m.predict(x))
    lengths = np.random.default_rng(1).integers(0, x.shape[1] + 1, x.shape[0])
    for lens in (lengths, da.from_array(lengths, chunks=17)):  # numpy, or dask chunked differently
        assert_close(fdask.predict_dask(m, da.from_array(x, chunks=(50, -1, -1)), lengths=lens).compute(),
                     m.predict(x, lengths=lengths))


def test_predict_dask_rechunks_time_and_features():
    m = _model("gru")
    x = _x(n=64, t=12)
    dx = da.from_array(x, chunks=(16, 5, 4))  # split along time and features too
    y = fdask.predict_dask(m, dx)
    assert all(len(c) == 1 for c in y.chunks[1:])
    assert_close(y.compute(scheduler="sync"), m.predict(x))


def test_predict_dask_ids_model_and_numpy_input():
    spec = fastrnn.ModelSpec(layers=[fastrnn.spec.EmbeddingSpec("emb", np.random.default_rng(0).standard_normal(
        (30, 6)).astype(np.float32))] + rnn_spec("lstm", 6, 8).layers)
    m = fastrnn.Model(spec)
    ids = np.random.default_rng(2).integers(0, 30, (40, 7))
    assert_close(fdask.predict_dask(m, da.from_array(ids, chunks=(9, 7))).compute(), m.predict(ids))
    assert_close(fdask.predict_dask(m, ids).compute(), m.predict(ids))


def test_predict_dask_errors():
    m = _model()
    with pytest.raises(ShapeError, match=r"\(batch, time, 6\)"):
        fdask.predict_dask(m, da.zeros((4, 6), chunks=2))
    with pytest.raises(ShapeError, match="lengths"):
        fdask.predict_dask(m, da.zeros((4, 3, 6), chunks=2), lengths=[1, 2])
    with pytest.raises(ShapeError, match="features"):
        fdask.predict_dask(m, da.zeros((4, 3, 5), chunks=2))
    with pytest.raises(TypeError, match="fastrnn.Model"):
        fdask.predict_dask("model.fastrnn", da.zeros((4, 3, 6), chunks=2))
    bi_none = _model(direction="bidirectional", merge="none")
    with pytest.raises(UnsupportedLayerError, match="merge_mode"):
        fdask.predict_dask(bi_none, da.zeros((4, 3, 6), chunks=2))


def test_graph_holds_the_model_once():
    m = _model()
    y = fdask.predict_dask(m, da.from_array(_x(), chunks=(20, -1, -1)))
    graph = dict(y.__dask_graph__())
    refs = [k for k, v in graph.items() if "fastrnn-model-" in str(k)]
    assert len(refs) == 1 and y.npartitions == 11
    import pickle

    size = sum(len(pickle.dumps(v)) for v in graph.values())  # the graph as it would travel
    assert size < len(m.to_bytes()) * 1.5 + len(_x().tobytes()) * 1.5, size
    # the same model in two graphs: the same key (dask merges them; workers reuse it)
    y2 = fdask.predict_dask(m, da.zeros((8, 3, 6), chunks=4))
    assert refs[0] in dict(y2.__dask_graph__())


def test_model_ref_pickles_as_bytes_and_builds_once_per_process():
    import pickle

    m = _model()
    ref = fdask.ModelRef.of(m)
    assert ref.model() is m  # in process: the caller's model, no copy
    blob = pickle.dumps(ref)
    assert len(blob) < len(m.to_bytes()) + 300
    before = fdask.STATS["models_built"]
    a, b = pickle.loads(blob), pickle.loads(blob)
    assert a.model() is b.model() is not m  # the per-process cache keyed by the hash
    assert fdask.STATS["models_built"] == before + 1


def test_model_ref_with_a_forged_key_never_enters_the_cache():
    """#12.15: a ref whose key is not the SHA-256 of its bytes is refused before it is built or cached,
    so honest refs to that key still get their own model."""
    import pickle

    honest_model, other = _model(seed=1), _model(seed=2)
    honest = fdask.ModelRef.of(honest_model)
    forged = pickle.loads(pickle.dumps(fdask.ModelRef(honest.key, other.to_bytes())))
    fdask._CACHE.pop(honest.key, None)
    with pytest.raises(ModelFormatError, match="SHA-256"):
        forged.model()
    assert honest.key not in fdask._CACHE
    x = _x(n=3)
    assert_close(pickle.loads(pickle.dumps(honest)).model().predict(x), honest_model.predict(x))
    with pytest.raises(ModelFormatError):
        fdask.ModelRef("not-a-hash", honest.data).model()


def test_predict_dask_frame_local():
    dd = require("dask.dataframe")
    m = _model()
    pdf, seqs = _long_frame(m)
    out = fdask.predict_dask_frame(m, dd.from_pandas(pdf, npartitions=3), "id", "t",
                                   [f"f{j}" for j in range(6)]).compute(scheduler="sync")
    _check_frame(out, m, seqs)
    m_last = _model("gru", return_sequences=False)  # a last-step model: its output, same thing
    out = fdask.predict_dask_frame(m_last, dd.from_pandas(pdf, npartitions=1), "id", "t",
                                   [f"f{j}" for j in range(6)], shuffle=False).compute(scheduler="sync")
    _check_frame(out, m_last, seqs)
    with pytest.raises(ShapeError, match="expects 6 features"):
        fdask.predict_dask_frame(m, dd.from_pandas(pdf, npartitions=1), "id", "t", ["f0"])
    with pytest.raises(ShapeError, match="not in the dataframe"):
        fdask.predict_dask_frame(m, dd.from_pandas(pdf, npartitions=1), "id", "time", [f"f{j}" for j in range(6)])


# --------------------------------------------------------------------------------- dask.distributed
@pytest.fixture(scope="module")
def client():
    distributed = require("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                       host="127.0.0.1", timeout=TIMEOUT_S, worker_class=distributed.Nanny)
    c = distributed.Client(cluster, timeout=TIMEOUT_S)
    try:
        c.wait_for_workers(2, timeout=TIMEOUT_S)
        yield c
    finally:
        c.close(timeout=TIMEOUT_S)
        cluster.close(timeout=TIMEOUT_S)


def _worker_state():
    import fastrnn.dask as fd

    return {"built": fd.STATS["models_built"], "cached": list(fd._CACHE), "pid": os.getpid()}


def test_distributed_predict_equals_predict(client):
    m = _model("lstm", direction="bidirectional")
    x = _x(n=400, t=11, seed=5)
    lengths = np.random.default_rng(6).integers(1, 12, 400)
    dx = da.from_array(x, chunks=(25, -1, -1))  # 16 blocks over 2 workers
    before = client.run(_worker_state)
    fut = client.compute([fdask.predict_dask(m, dx), fdask.predict_dask(m, dx, lengths=lengths)])
    y, y_len = [f.result(timeout=TIMEOUT_S) for f in fut]
    assert_close(y, m.predict(x))
    assert_close(y_len, m.predict(x, lengths=lengths))
    after = client.run(_worker_state)
    assert len({s["pid"] for s in after.values()} | {os.getpid()}) == 3  # really other processes
    key = fdask.ModelRef.of(m).key
    for w, s in after.items():  # each worker built the model at most once for 32 blocks
        assert s["built"] - before[w]["built"] <= 1, (w, s)
        assert s["cached"].count(key) <= 1
    assert sum(key in s["cached"] for s in after.values()) >= 1


def test_distributed_frame(client):
    require("dask.dataframe")
    import dask.dataframe as dd

    m = _model("gru")
    pdf, seqs = _long_frame(m, n_ids=60, seed=8, ids=False)
    out = fdask.predict_dask_frame(m, dd.from_pandas(pdf, npartitions=4), "id", "t", [f"f{j}" for j in range(6)])
    _check_frame(client.compute(out).result(timeout=TIMEOUT_S), m, seqs)
