"""Threading: every thread count gives the reference result; concurrent predict() calls from
Python threads are safe (the model is immutable, the GIL is released)."""
import threading

import numpy as np
import pytest

import fastrnn
from conftest import assert_close
import reference
from test_kernels import rnn_spec


@pytest.fixture
def restore_threads():
    n = fastrnn.get_num_threads()
    yield
    fastrnn.set_num_threads(n)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("B", [1, 5, 64], ids=["b1", "b5", "b64"])
def test_thread_counts_match_reference(threads, B, restore_threads):
    fastrnn.set_num_threads(threads)
    assert fastrnn.get_num_threads() == threads
    spec = rnn_spec("gru", 7, 40, direction="bidirectional", seed=B)
    rng = np.random.default_rng(B)
    x = rng.standard_normal((B, 30, 7)).astype(np.float32)
    lengths = rng.integers(1, 31, size=B)
    model = fastrnn.Model(spec)
    assert_close(model.predict(x, lengths=lengths), reference.run_spec(spec, x, lengths=lengths))


def test_concurrent_predict_from_python_threads(restore_threads):
    fastrnn.set_num_threads(2)
    spec = rnn_spec("lstm", 4, 24, direction="bidirectional")
    model = fastrnn.Model(spec)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((b, 20, 4)).astype(np.float32) for b in (1, 3, 17, 40)] * 3
    expected = [reference.run_spec(spec, x) for x in inputs[:4]]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                results[i] = model.predict(inputs[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(len(inputs)):
        assert_close(results[i], expected[i % 4])


def test_worker_exception_reaches_caller(restore_threads):
    """An error raised inside a worker (bad id found during the gather) is rethrown on the caller."""
    fastrnn.set_num_threads(2)
    from fastrnn import spec as S

    emb = S.EmbeddingSpec(name="emb", embeddings=np.ones((3, 2)))
    core = fastrnn._load_core().Model(*S.ModelSpec(layers=[emb, S.LastStepSpec(name="last")]).to_core())
    with pytest.raises(fastrnn.ShapeError, match="id 7"):
        core.predict(np.array([[0, 7]]), None, [], False)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_long_sequences_run_in_time_chunks(bidirectional, restore_threads):
    """B * G*H * T above the chunk size (4 Mi floats): the input projection and the recurrence
    alternate chunk by chunk, carrying state across chunk boundaries (forward chunks from the
    start, backward chunks from the end, packed lengths ending inside any chunk)."""
    from conftest import require

    torch = require("torch")
    fastrnn.set_num_threads(2)
    torch.manual_seed(7)
    m = torch.nn.LSTM(6, 128, batch_first=True, bidirectional=bidirectional).eval()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 300, 6)).astype(np.float32)  # Tc = 4Mi / (64 * 512) = 128 -> 3 chunks
    lengths = rng.integers(1, 301, size=64)
    lengths[0] = 300
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                                         batch_first=True, enforce_sorted=False)
        out, (h, c) = m(packed)
        expected = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=300)[0].numpy()
    y, st = fastrnn.from_torch(m).predict(x, lengths=lengths, return_state=True)
    assert_close(y, expected)
    assert_close(st[0][0], h.numpy())
    assert_close(st[0][1], c.numpy())


def test_ctrl_c_stops_a_long_predict_quickly():
    """SIGINT during a long predict raises KeyboardInterrupt within about a second."""
    import os
    import signal
    import time

    model = fastrnn.Model(rnn_spec("gru", 32, 256))
    x = np.zeros((64, 4000, 32), np.float32)  # several seconds of work on this machine
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.predict(x)
    elapsed = time.perf_counter() - t0
    timer.join()
    assert elapsed < 0.3 + 1.5, f"predict took {elapsed:.2f} s to stop"
    assert model.predict(x[:2, :10]).shape == (2, 10, 256)  # still usable afterwards


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_thread_pool_survives_fork_and_child_processes_predict(method, restore_threads):
    import multiprocessing as mp

    fastrnn.set_num_threads(2)
    spec = rnn_spec("gru", 5, 40, direction="bidirectional")
    model = fastrnn.Model(spec)
    x = np.random.default_rng(0).standard_normal((16, 30, 5)).astype(np.float32)
    expected = model.predict(x)  # the parent's pool has run (its workers exist) before the fork
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        results = pool.map(_child_predict, [(spec, x)] * 2, chunksize=1)
    for threads, y in results:
        assert threads == 2
        assert_close(y, expected)


def _child_predict(args):
    spec, x = args
    m = fastrnn.Model(spec)
    return fastrnn.get_num_threads(), m.predict(x)
