"""f32 vs bf16 vs int8 recurrent weights, end to end (predict), one thread.

    python benchmarks/kernels/precision_bench.py [--isa avx2] [--budget 3]

LSTM 128 -> 512, T = 100, batch 1 and 32 (the issue's case), random weights (quantized here as
tests/test_precision_core.py does).  The variants run interleaved, one predict each in turn, and
each reports its minimum (robust on a shared machine: a short run usually finds an undisturbed
moment).  Prints ms per predict, the speed-up over f32, the weight bytes the core holds and the
max abs difference of the outputs from f32.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))
import fastrnn  # noqa: E402
from test_precision_core import core_model, make_weights  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default=None)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per case")
    ap.add_argument("--units", type=int, default=512)
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 32])
    a = ap.parse_args()
    core = fastrnn._load_core()
    core.set_num_threads(1)
    if a.isa:
        fastrnn.set_isa(a.isa)
    print(f"isa {fastrnn.info()['isa']}; {core.quantized_paths()}; 1 thread")
    w = make_weights("lstm", a.input, a.units, scale=0.05)
    models = {p: core_model("lstm", a.input, a.units, w, p) for p in ("f32", "bf16", "int8")}
    for B in a.batch:
        x = np.random.default_rng(0).standard_normal((B, a.steps, a.input)).astype(np.float32)
        ys = {p: m.predict(x) for p, m in models.items()}
        best = {p: 1e30 for p in models}
        end = time.perf_counter() + a.budget
        while time.perf_counter() < end:
            for p, m in models.items():
                t0 = time.perf_counter()
                m.predict(x)
                best[p] = min(best[p], time.perf_counter() - t0)
        for p, m in models.items():
            print(f"LSTM {a.input}->{a.units} T={a.steps} batch {B:3d} {p:5s}: {best[p] * 1e3:8.2f} ms  "
                  f"x{best['f32'] / best[p]:.2f} vs f32  weights {m.weight_bytes / 2**20:6.2f} MiB  "
                  f"max|y - y_f32| {np.abs(ys[p] - ys['f32']).max():.2e}")


if __name__ == "__main__":
    main()
