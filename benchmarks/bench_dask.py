"""Throughput of ``fastrnn.dask.predict_dask`` on a local 2-process Dask cluster vs one process.

    PYTHONPATH=. python benchmarks/bench_dask.py [--sequences 20000] [--steps 50] [--chunk 1000] [--repeats 3]

Model: LSTM 32 -> 128 returning sequences (seeded).  Data: ``sequences`` x ``steps`` x 32 float32.

* one process: ``model.predict`` over the same data in blocks of ``chunk`` sequences, with
  ``fastrnn.set_num_threads(1)`` and with 2 threads;
* Dask: ``LocalCluster(n_workers=2, threads_per_worker=1)`` (processes), fastrnn threads = 1 in each
  worker, ``predict_dask(model, x)`` with ``chunk`` sequences per block, two ways:
  ``workers``: x generated on the workers (``dask.array.random``) and only the last step of each
  output gathered (what scoring data that lives on the workers costs);
  ``from client``: x a numpy array in the client (sent to the workers) and the whole output
  (sequences x steps x 128 float32) gathered back into the client.

Reports sequences/s (the median of ``--repeats``, after one warm-up that also ships the model to the
workers) and the ratio to one process.  Each timed run waits (up to 60 s) for the machine to be idle
(/proc/stat), and says so when it was not.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np


def _busy_cores(interval=0.5):
    """Cores the whole machine kept busy over ``interval`` seconds (/proc/stat; 0 where there is none)."""
    def busy():
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + sum(v[5:8])) / os.sysconf("SC_CLK_TCK")
    try:
        b0 = busy()
        time.sleep(interval)
        return (busy() - b0) / interval
    except (OSError, ValueError):
        return 0.0


def _wait_quiet(max_wait=60.0, threshold=0.2):
    """Wait (at most ``max_wait`` s) until the machine is idle: on a shared machine a run while
    another process computes says nothing.  Returns the busy cores last seen."""
    t0 = time.monotonic()
    while True:
        b = _busy_cores()
        if b < threshold or time.monotonic() - t0 > max_wait:
            return b


def _timed(fn, repeats):
    fn()  # warm-up
    out, noisy = [], 0
    for _ in range(repeats):
        if _wait_quiet() >= 0.2:
            noisy += 1
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    if noisy:
        print(f"  warning: {noisy} of {repeats} runs started while other processes kept the machine busy", flush=True)
    return out


def _set_threads(n):
    import fastrnn

    fastrnn.set_num_threads(n)
    return fastrnn.get_num_threads()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequences", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)

    os.environ["FASTRNN_NUM_THREADS"] = "1"  # inherited by the worker processes
    warnings.filterwarnings("ignore", message=".*large graph.*")  # "from client" sends x in the graph: measured
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    from fastrnn.bench import random_model
    from fastrnn.dask import predict_dask

    N, T, C = a.sequences, a.steps, a.chunk
    model = random_model("lstm", 32, 128, scale=0.1)
    x = np.random.default_rng(0).standard_normal((N, T, 32)).astype(np.float32)
    print(f"LSTM 32 -> 128 (return_sequences), {N:,} sequences x {T} steps, blocks of {C}; {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    results = {}

    for threads in (1, 2):
        _set_threads(threads)

        def local():
            for i in range(0, N, C):
                model.predict(x[i:i + C])

        results[f"one process, {threads} thread(s)"] = _timed(local, a.repeats)
    _set_threads(1)

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert set(client.run(_set_threads, 1).values()) == {1}
        xw = da.random.default_rng(0).standard_normal((N, T, 32), chunks=(C, T, 32), dtype=np.float32)

        def on_workers():
            y = predict_dask(model, xw)
            last = y[:, -1, :].compute()
            assert last.shape == (N, 128)

        results["Dask 2 workers x 1 thread, data on workers"] = _timed(on_workers, a.repeats)
        xc = da.from_array(x, chunks=(C, T, 32))

        def from_client():
            y = predict_dask(model, xc).compute()
            assert y.shape == (N, T, 128)

        results["Dask 2 workers x 1 thread, from / to client"] = _timed(from_client, a.repeats)
        # the Dask result equals one process's predict (checked once, untimed)
        y0 = predict_dask(model, xc[:2 * C]).compute()
        np.testing.assert_allclose(y0, model.predict(x[:2 * C]), rtol=1e-5, atol=1e-5)

    base = N / statistics.median(results["one process, 1 thread(s)"])
    print(f"{'':48s} {'sequences/s':>12s} {'vs 1 process/1 thread':>22s}   runs (s)")
    for name, times in results.items():
        rate = N / statistics.median(times)
        print(f"{name:48s} {rate:12,.0f} {rate / base:21.2f}x   " + ", ".join(f"{t:.2f}" for t in times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
