"""`fastrnn bench`: named cases, timed side by side against the frameworks on the same weights.

Each case builds a PyTorch module with seeded weights (the reference for correctness), converts
it with ``fastrnn.from_torch``, checks the outputs agree (untimed), then times every engine with
the same thread count, interleaving engines round by round so machine noise hits all alike.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    cell: str  # "lstm" | "gru" | "rnn"
    batch: int
    steps: int
    features: int
    hidden: int
    layers: int = 1
    bidirectional: bool = False
    note: str = ""

    def describe(self):
        bi = " bi" if self.bidirectional else ""
        return (f"{self.cell.upper()}{bi} x{self.layers} B={self.batch} T={self.steps} "
                f"I={self.features} H={self.hidden}")


CASES = {c.name: c for c in [
    Case("realtime_step", "lstm", 1, 1, 16, 128, note="one step of one stream"),
    Case("small_seq", "lstm", 1, 100, 32, 128, note="one sequence (batch 1)"),
    Case("batch32", "lstm", 32, 100, 32, 128, note="small batch"),
    Case("gru_sensor", "gru", 8, 200, 12, 64, note="sensor windows"),
    Case("large_batch", "gru", 256, 50, 64, 256, note="batch scoring"),
    Case("bilstm_text", "lstm", 64, 80, 64, 128, layers=2, bidirectional=True, note="sentiment-style encoder"),
]}


def build_torch(case: Case, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[case.cell]
    return cls(case.features, case.hidden, num_layers=case.layers, bidirectional=case.bidirectional,
               batch_first=True).eval()


def make_input(case: Case, seed: int = 0):
    return np.random.default_rng(seed).standard_normal((case.batch, case.steps, case.features)).astype(np.float32)


def engines(case: Case, threads: int):
    """{name: callable(x) -> np.ndarray} for every engine installed here."""
    import fastrnn

    out = {}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None:
        from .spec import DirectionWeights, ModelSpec, RecurrentSpec

        rng = np.random.default_rng(0)
        g = {"lstm": 4, "gru": 3, "rnn": 1}[case.cell]
        layers, feats = [], case.features
        for i in range(case.layers):
            nd = 2 if case.bidirectional else 1
            w = [DirectionWeights(*(rng.uniform(-0.1, 0.1, s).astype(np.float32) for s in
                                    ((g * case.hidden, feats), (g * case.hidden, case.hidden), (g * case.hidden,),
                                     (g * case.hidden,)))) for _ in range(nd)]
            kind = {"rnn": "simple_rnn"}.get(case.cell, case.cell)
            layers.append(RecurrentSpec(kind=kind, name=f"l{i}", input_size=feats, units=case.hidden, weights=w,
                                        direction="bidirectional" if case.bidirectional else "forward"))
            feats = case.hidden * nd
        model = fastrnn.Model(ModelSpec(layers=layers, input_features=case.features))
        out["fastrnn"] = model.predict
        return out, None
    torch.set_num_threads(threads)
    module = build_torch(case)
    model = fastrnn.from_torch(module)
    out["fastrnn"] = model.predict

    def run_torch(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x))[0].numpy()

    out["torch"] = run_torch
    return out, run_torch


def run(case_names=None, threads=None, min_time=0.5, max_rounds=50, out=print) -> list:
    import fastrnn

    threads = threads or fastrnn.get_num_threads()
    fastrnn.set_num_threads(threads)
    info = fastrnn.info()
    out(f"fastrnn {info['version']} | {platform.machine()} {os.cpu_count()} cpus | isa={info['isa']} | "
        f"threads={threads} (every engine) | blas={info['blas']}")
    rows = []
    for name in case_names or list(CASES):
        if name not in CASES:
            raise ValueError(f"unknown case {name!r}; cases: {', '.join(CASES)}")
        case = CASES[name]
        eng, ref = engines(case, threads)
        x = make_input(case)
        if ref is not None:  # correctness first, untimed
            diff = float(np.abs(eng["fastrnn"](x) - ref(x)).max())
            if diff > 1e-4:
                raise AssertionError(f"{name}: fastrnn differs from torch by {diff}")
        times = {k: [] for k in eng}
        for f in eng.values():
            f(x)  # warm up
        t_end = time.perf_counter() + min_time * len(eng)
        rounds = 0
        while rounds < 3 or (time.perf_counter() < t_end and rounds < max_rounds):
            for k, f in eng.items():
                t0 = time.perf_counter()
                f(x)
                times[k].append(time.perf_counter() - t0)
            rounds += 1
        med = {k: float(np.median(v)) for k, v in times.items()}
        row = {"case": name, "shape": case.describe(), "threads": threads,
               **{f"{k}_us_per_seq": med[k] / case.batch * 1e6 for k in med}}
        for k in med:
            if k != "fastrnn":
                row[f"speedup_vs_{k}"] = med[k] / med["fastrnn"]
        rows.append(row)
        extra = "  ".join(f"{k}: {med[k] / case.batch * 1e6:9.1f} us/seq ({med[k] / med['fastrnn']:.2f}x)"
                          for k in med if k != "fastrnn")
        out(f"{name:>14} | {case.describe():<40} | fastrnn: {med['fastrnn'] / case.batch * 1e6:9.1f} us/seq  {extra}")
    return rows
