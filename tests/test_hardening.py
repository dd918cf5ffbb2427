"""Long-running-server properties: the GIL is really released, thread-count changes under load
are safe, fastrnn coexists with PyTorch's and TensorFlow's thread pools in one process, and
resident memory does not grow over many calls (bounded runs; the limits are generous)."""
import os
import threading
import time

import numpy as np
import pytest

import fastrnn
from conftest import assert_close, require
from test_kernels import rnn_spec


def _timed(f, *args):
    t0 = time.perf_counter()
    f(*args)
    return time.perf_counter() - t0


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _other_thread_ran_during(f, *args):
    """How many times another Python thread ran in the middle half of f(*args) (by its own clock), and
    the seconds f took.  Counted by the other thread's timestamps, not by its counter read after the
    call: a thread that waited for the GIL through the whole call gets it as soon as the call returns
    (a 5 ms switch interval of spinning), which a counter read afterwards would credit to the call."""
    done = threading.Event()
    stamps = []

    def spin():
        i = 0
        while not done.is_set():
            i += 1
            if i % 64 == 0:
                stamps.append(time.perf_counter())

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.01)
    t0 = time.perf_counter()
    f(*args)
    t1 = time.perf_counter()
    done.set()
    t.join()
    lo, hi = t0 + (t1 - t0) / 4, t1 - (t1 - t0) / 4
    return sum(lo < s < hi for s in stamps), t1 - t0


def test_gil_is_released_during_predict():
    """While one thread is inside a long predict, another thread keeps running Python code.  The
    sequence is sized from a probe so that the predict lasts ~0.3 s on any machine (a fixed T = 3000
    took 0.045 s on Zen 4 with AVX-512, under the test's own 0.05 s floor)."""
    model = fastrnn.Model(rnn_spec("lstm", 16, 128, return_sequences=False))
    probe = np.zeros((8, 1000, 16), np.float32)
    t_probe = min(_timed(model.predict, probe) for _ in range(3))
    T = int(min(400_000, max(3000, 1000 * 0.3 / max(t_probe, 1e-6))))
    x = np.zeros((8, T, 16), np.float32)
    during, elapsed = _other_thread_ran_during(model.predict, x)
    assert elapsed > 0.05
    assert during >= 10, f"the other thread ran only {during} times in the middle of a {elapsed:.2f} s predict"


@pytest.mark.parametrize("fast", [True, False], ids=["cython-step", "pybind11-step"])
def test_gil_is_released_during_a_large_stream_step(fast):
    """One stream step of ~0.2 s (a large batch) lets another thread run Python code meanwhile, through
    the Cython entry point and the pybind11 one (a list input takes the latter).  Steps below
    kHoldGilMacs (stream.cc) keep the GIL, like numpy's small operations: not asserted here."""
    model = fastrnn.Model(rnn_spec("lstm", 256, 256, return_sequences=False))
    probe = model.stream(256)
    xp = np.zeros((256, 256), np.float32)
    t_probe = min(_timed(probe.step, xp) for _ in range(3))
    B = int(min(65536, max(256, 256 * 0.2 / max(t_probe, 1e-6))))
    stream = model.stream(B)
    x = np.zeros((B, 256), np.float32)
    if not fast:
        x = x.tolist()
    during, elapsed = _other_thread_ran_during(stream.step, x)
    assert elapsed > 0.05
    assert during >= 10, f"the other thread ran only {during} times in the middle of a {elapsed:.2f} s step"


def test_set_num_threads_under_load_is_safe():
    spec = rnn_spec("gru", 8, 48, direction="bidirectional")
    model = fastrnn.Model(spec)
    x = np.random.default_rng(0).standard_normal((32, 40, 8)).astype(np.float32)
    expected = model.predict(x)
    n0 = fastrnn.get_num_threads()
    stop = threading.Event()
    errors = []

    def flip():
        i = 0
        while not stop.is_set():
            fastrnn.set_num_threads(1 + i % 3)
            i += 1

    def work():
        try:
            for _ in range(30):
                assert_close(model.predict(x), expected)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    flipper = threading.Thread(target=flip)
    workers = [threading.Thread(target=work) for _ in range(3)]
    flipper.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    flipper.join()
    fastrnn.set_num_threads(n0)
    assert not errors, errors


def test_coexists_with_torch_and_tensorflow_thread_pools():
    torch = require("torch")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = require("keras")
    torch.manual_seed(0)
    tm = torch.nn.GRU(6, 20, batch_first=True).eval()
    km = keras.Sequential([keras.Input((None, 6)), keras.layers.LSTM(12, return_sequences=True)])
    fm_t, fm_k = fastrnn.from_torch(tm), fastrnn.from_keras(km)
    x = np.random.default_rng(1).standard_normal((16, 25, 6)).astype(np.float32)
    with torch.no_grad():
        et = tm(torch.from_numpy(x))[0].numpy()
    ek = np.asarray(km(x))
    errors = []

    def run(f, expected):
        try:
            for _ in range(10):
                assert_close(f(x), expected)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    def torch_loop():
        with torch.no_grad():
            for _ in range(10):
                tm(torch.from_numpy(x))

    def keras_loop():
        for _ in range(3):
            km(x)

    ts = [threading.Thread(target=run, args=(fm_t.predict, et)), threading.Thread(target=run, args=(fm_k.predict, ek)),
          threading.Thread(target=torch_loop), threading.Thread(target=keras_loop)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_resident_memory_does_not_grow():
    """200k stream steps and 5k predicts (the full 1M / 10k run is the CI step .ci/soak.py):
    resident memory after warm-up grows by less than 8 MiB."""
    model = fastrnn.Model(rnn_spec("lstm", 8, 64))
    s = model.stream(1)
    x1 = np.ones((1, 8), np.float32)
    out = np.empty((1, 64), np.float32)
    xs = np.ones((4, 20, 8), np.float32)
    for _ in range(2000):
        s.step(x1, out)
        model.predict(xs)
    base = rss_bytes()
    for _ in range(200_000):
        s.step(x1, out)
    for _ in range(5_000):
        model.predict(xs)
    grown = rss_bytes() - base
    assert grown < 8 << 20, f"resident memory grew by {grown / 2**20:.1f} MiB"


_FAULTS_CHILD = r"""
import resource
import numpy as np, fastrnn
from test_kernels import rnn_spec
fastrnn.set_num_threads(1)
model = fastrnn.Model(rnn_spec("gru", 256, 256, return_sequences=False, scale=0.1))
x = np.random.default_rng(0).standard_normal((64, 64, 256)).astype(np.float32)
first = model.predict(x)
for _ in range(3):
    model.predict(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    y = model.predict(x)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
np.testing.assert_array_equal(y, first)  # reused blocks carry nothing from one call into the next
print("faults", faults)
"""


@pytest.mark.parametrize("cache", ["on", "off"])
def test_repeated_predicts_reuse_their_workspace_pages(cache):
    """A predict's large workspaces (here the input projection's ~1 MiB time chunk, its input
    rows and the state, per call) come back from the block cache (common.h) instead of fresh
    pages: with glibc told to map every block over 128 KiB anew (MALLOC_MMAP_THRESHOLD_, as it
    may choose to on its own after trimming), 20 calls take (almost) no page faults; with the
    cache off (FASTRNN_BLOCK_CACHE=0) the same calls fault on every block, which is what the test
    must tell apart (~2,300 faults a call)."""
    import subprocess
    import sys

    from conftest import CHILD_CWD, child_env

    env = child_env(MALLOC_MMAP_THRESHOLD_="131072", **({"FASTRNN_BLOCK_CACHE": "0"} if cache == "off" else {}))
    r = subprocess.run([sys.executable, "-c", _FAULTS_CHILD], cwd=CHILD_CWD, capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    faults = int(r.stdout.split()[-1])
    if cache == "on":
        assert faults < 200, f"{faults} page faults in 20 predicts"
    else:
        assert faults > 20 * 200, f"only {faults} page faults with the cache off: the test cannot tell"
