"""Is the GIL really released?  Total throughput of N Python threads sharing one fastrnn model.

    PYTHONPATH=. python benchmarks/bench_concurrency.py [--seconds 3] [--repeats 3] [--threads-list 1,2]

fastrnn.set_num_threads(1) (the core's own pool off: each call runs on its calling thread), then for
N = 1, 2, ... Python threads, each thread calls for a fixed time

* ``predict(x)`` on ONE shared model, x (batch, T=100, 32), LSTM 32 -> 128 (batch 1 and batch 8);
* ``Stream.step(x_t, out)`` on its OWN stream of that model (batch 1, one time step per call).

and the total calls/s of all threads is compared with N = 1.  If ``predict`` / ``step`` hold the GIL
while computing, N threads give ~1x; released, N threads on >= N free cores give ~Nx.  ``step`` is a
few microseconds of work against a fixed Python / pybind11 cost per call under the GIL, so it scales
less.  Prints the machine, the shapes and a table: the median of the ``--repeats`` runs during which
other processes used < 0.05 core (/proc/stat; all runs when none did, flagged), each run's other load.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time

import numpy as np


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _busy_cpu_seconds():
    """CPU seconds all processes of the machine have used (/proc/stat; None where there is none)."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = v[0] + v[1] + v[2] + sum(v[5:8])  # user nice system irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def run_threads(n, seconds, make_worker):
    """n threads, each running ``make_worker(i)()`` (one call) in a loop until the deadline;
    returns ``(calls per second of all threads, cores other processes used meanwhile)``: a 2-thread
    run on a 2-core machine only means something when the second number is ~0."""
    counts = [0] * n
    start = threading.Barrier(n + 1)
    stop = threading.Event()

    def loop(i):
        call = make_worker(i)
        call()  # warm-up: buffers, first-call work
        start.wait()
        c = 0
        while not stop.is_set():
            call()
            c += 1
        counts[i] = c

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    start.wait()
    t0, c0, b0 = time.perf_counter(), time.process_time(), _busy_cpu_seconds()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    own, b1 = time.process_time() - c0, _busy_cpu_seconds()
    others = max(0.0, (b1 - b0 - own) / wall) if b0 is not None else float("nan")
    return sum(counts) / wall, others


def measure(seconds=3.0, repeats=3, threads_list=(1, 2), T=100, max_other=0.05, only=()):
    import fastrnn
    from fastrnn.bench import random_model

    fastrnn.set_num_threads(1)
    model = random_model("lstm", 32, 128, scale=0.1)
    rng = np.random.default_rng(0)
    rows = []
    cases = []
    for B in (1, 8):
        x = rng.standard_normal((B, T, 32)).astype(np.float32)
        cases.append((f"predict B={B} T={T}", B * T, lambda i, x=x: (lambda: model.predict(x))))

    def step_worker(i):
        s = model.stream(1)
        xt = np.ones((1, 32), np.float32)
        out = np.empty((1, 128), np.float32)
        return lambda: s.step(xt, out)

    cases.append(("Stream.step B=1 (own stream per thread)", 1, step_worker))
    for name, per_call_steps, make in cases:
        if only and not any(o in name for o in only):
            continue
        base = None
        for n in threads_list:
            runs = [run_threads(n, seconds, make) for _ in range(repeats)]
            clean = [r for r, o in runs if o < max_other]  # runs the rest of the machine left alone
            r = statistics.median(clean or [r for r, _ in runs])
            base = base or r
            rows.append({"case": name, "threads": n, "calls_per_s": r, "seq_steps_per_s": r * per_call_steps,
                         "speedup": r / base, "runs": runs, "clean": len(clean)})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per point (median reported)")
    ap.add_argument("--threads-list", default="1,2")
    ap.add_argument("--only", default="", help="comma-separated parts of case names to run (e.g. 'step')")
    a = ap.parse_args(argv)
    import fastrnn

    threads_list = tuple(int(v) for v in a.threads_list.split(","))
    info = fastrnn.info()
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; fastrnn {info['version']} isa={info['isa']}, "
          f"set_num_threads(1); model LSTM 32 -> 128")
    rows = measure(a.seconds, a.repeats, threads_list, only=tuple(o for o in a.only.split(",") if o))
    print(f"{'case':44s} {'threads':>7s} {'calls/s':>10s} {'speedup':>8s}   runs: calls/s (cores used by other processes)")
    for r in rows:
        flag = "" if r["clean"] else "   [no run without other load: not meaningful]"
        print(f"{r['case']:44s} {r['threads']:7d} {r['calls_per_s']:10.1f} {r['speedup']:7.2f}x   "
              + ", ".join(f"{v:.0f} ({o:.2f})" for v, o in r["runs"]) + flag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
