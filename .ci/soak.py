"""Memory soak (issue 6): resident memory must not grow over a million ``Stream.step`` calls and ten
thousand ``predict`` calls.  Prints RSS at checkpoints; exit 1 if RSS after warm-up grows by more
than the bound (default 4 MiB).  fastrnn only (no framework).  ~15-40 s on 2 cores.

    python .ci/soak.py [--steps 1000000] [--predicts 10000] [--bound-mib 4] [--threads 2]

The model: LSTM 8 -> 64 (a stand-in of a streaming scorer).  Steps alternate between ``step(x, out)``
(the allocation-free path) and ``step(x)`` (a new output array each call); every 10th predict also
passes ``lengths`` and ``return_state``.  tests/test_hardening.py::test_resident_memory_does_not_grow
runs a smaller version in the test suite.
"""
import argparse
import os
import sys
import time

import numpy as np


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--predicts", type=int, default=10_000)
    ap.add_argument("--bound-mib", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2000)
    a = ap.parse_args(argv)

    import fastrnn
    from fastrnn.bench import random_model

    fastrnn.set_num_threads(a.threads)
    model = random_model("lstm", 8, 64, scale=0.3)
    s = model.stream(1)
    x1 = np.ones((1, 8), np.float32)
    out = np.empty((1, 64), np.float32)
    xs = np.ones((4, 20, 8), np.float32)
    lengths = np.array([20, 13, 5, 1])
    t0 = time.perf_counter()
    for _ in range(a.warmup):  # warm-up: allocator pools, numpy caches, the thread pool
        s.step(x1, out)
        s.step(x1)
        model.predict(xs)
        model.predict(xs, lengths=lengths, return_state=True)
    base = rss_bytes()
    print(f"fastrnn {fastrnn.__version__} {fastrnn.info()['isa']}, {a.threads} thread(s); RSS after warm-up "
          f"{base / 2**20:.1f} MiB", flush=True)
    peak = base
    every = max(1, a.steps // 10)
    t1 = time.perf_counter()
    for i in range(1, a.steps + 1):
        if i & 1:
            s.step(x1, out)
        else:
            s.step(x1)
        if i % every == 0:
            r = rss_bytes()
            peak = max(peak, r)
            print(f"  step {i:>9,}: RSS {r / 2**20:8.1f} MiB ({(r - base) / 2**20:+.2f})", flush=True)
    t_steps = time.perf_counter() - t1
    every = max(1, a.predicts // 10)
    t2 = time.perf_counter()
    for i in range(1, a.predicts + 1):
        if i % 10 == 0:
            model.predict(xs, lengths=lengths, return_state=True)
        else:
            model.predict(xs)
        if i % every == 0:
            r = rss_bytes()
            peak = max(peak, r)
            print(f"  predict {i:>6,}: RSS {r / 2**20:8.1f} MiB ({(r - base) / 2**20:+.2f})", flush=True)
    t_pred = time.perf_counter() - t2
    grown = peak - base
    print(f"{a.steps:,} steps in {t_steps:.1f} s ({t_steps / max(a.steps, 1) * 1e6:.2f} us/step), {a.predicts:,} "
          f"predicts in {t_pred:.1f} s; total {time.perf_counter() - t0:.1f} s")
    print(f"RSS growth after warm-up (peak - baseline): {grown / 2**20:+.2f} MiB (bound {a.bound_mib} MiB)")
    if grown > a.bound_mib * 2**20:
        print("FAIL: resident memory grew past the bound")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
