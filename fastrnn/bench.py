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
    try:  # ONNX Runtime on the same module, exported with torch.onnx (skipped with a note if unavailable)
        import io

        import onnxruntime as ort

        class Seq(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = module

            def forward(self, x):
                return self.rnn(x)[0]

        buf = io.BytesIO()
        torch.onnx.export(Seq(), (torch.zeros(2, 3, case.features),), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b", 1: "t"}, "y": {0: "b", 1: "t"}}, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        out["onnxruntime"] = lambda x: sess.run(None, {"x": x})[0]
    except Exception as e:  # noqa: BLE001 - an engine that cannot run is reported, never fatal
        print(f"  ({case.name}: onnxruntime engine unavailable: {type(e).__name__}: {str(e)[:100]})")
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
        if ref is not None:  # correctness first, untimed: every engine against torch
            expected = ref(x)
            for k, f in list(eng.items()):
                diff = float(np.abs(f(x) - expected).max())
                if diff > 1e-4:
                    raise AssertionError(f"{name}: {k} differs from torch by {diff}")
        times = {k: [] for k in eng}
        for f in eng.values():
            f(x)  # warm up
        # Rounds of blocks, one block per engine, with a pause between blocks so that threads a
        # previous engine left spinning (OpenMP) have gone to sleep: noise hits every engine alike
        # without one engine's idle threads stealing the core from the next.
        for _ in range(5):
            for k, f in eng.items():
                time.sleep(0.05)
                t_end = time.perf_counter() + min_time / 5
                n = 0
                while n < 2 or (time.perf_counter() < t_end and n < max_rounds):
                    t0 = time.perf_counter()
                    f(x)
                    times[k].append(time.perf_counter() - t0)
                    n += 1
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


# ---- streaming: one step of one session (the real-time user) -----------------------------------
STREAM_CASES = {
    "step_lstm_8x64": ("lstm", 8, 64),
    "step_gru_16x128": ("gru", 16, 128),
}


def stream_engines(cell: str, features: int, hidden: int, threads: int = 1):
    """{name: zero-arg callable doing one step with carried state} on the same weights."""
    import fastrnn

    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](features, hidden, batch_first=True).eval()
    model = fastrnn.from_torch(layer)
    stream = model.stream(1)
    x = np.random.default_rng(0).standard_normal((1, features)).astype(np.float32)
    out = np.empty((1, hidden), np.float32)
    eng = {"fastrnn": lambda: stream.step(x, out),                 # the Cython entry point when built
           "fastrnn_pybind11": lambda: stream._s.step(x, out)}     # the same step through pybind11
    cpp_only = stream._s._time_steps  # the C++ step alone, for the binding overhead

    cell_mod = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[cell](features, hidden).eval()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell_mod, name).copy_(getattr(layer, name + "_l0"))
    xt = torch.from_numpy(x)
    st = {"h": torch.zeros(1, hidden), "c": torch.zeros(1, hidden), "hx": None}

    def torch_cell():
        with torch.inference_mode():
            if cell == "lstm":
                st["h"], st["c"] = cell_mod(xt, (st["h"], st["c"]))
            else:
                st["h"] = cell_mod(xt, st["h"])

    def torch_layer():
        with torch.inference_mode():
            _, st["hx"] = layer(xt[None], st["hx"])

    eng["torch_cell"] = torch_cell
    eng["torch_layer"] = torch_layer
    try:
        import io

        import onnxruntime as ort

        class OneStep(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = layer

            def forward(self, x, h, c=None):
                if cell == "lstm":
                    y, (h2, c2) = self.rnn(x, (h, c))
                    return y, h2, c2
                y, h2 = self.rnn(x, h)
                return y, h2

        h0 = torch.zeros(1, 1, hidden)
        args = (torch.zeros(1, 1, features), h0) + ((torch.zeros(1, 1, hidden),) if cell == "lstm" else ())
        names = ["x", "h"] + (["c"] if cell == "lstm" else [])
        buf = io.BytesIO()
        torch.onnx.export(OneStep(), args, buf, input_names=names,
                          output_names=["y", "h2"] + (["c2"] if cell == "lstm" else []), dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        feeds = {n: np.zeros((1, 1, hidden), np.float32) for n in names[1:]}
        feeds["x"] = x[None]

        def onnx_step():
            res = sess.run(None, feeds)
            feeds["h"] = res[1]
            if cell == "lstm":
                feeds["c"] = res[2]

        eng["onnxruntime"] = onnx_step
    except Exception as e:  # onnx / onnxruntime missing or export failed: report, do not hide
        print(f"  (onnxruntime engine unavailable: {type(e).__name__}: {str(e)[:120]})")
    eng["_cpp_seconds"] = lambda: cpp_only(x, 2000)
    return eng


def run_stream(case_names=None, threads=1, rounds=7, number=2000, out=print) -> list:
    import timeit

    import fastrnn

    fastrnn.set_num_threads(threads)
    rows = []
    out(f"streaming: one step, batch 1, threads={threads}; median of {rounds} rounds of {number} calls")
    for name in case_names or list(STREAM_CASES):
        eng = stream_engines(*STREAM_CASES[name], threads=threads)
        cpp = eng.pop("_cpp_seconds")
        res = {k: [] for k in eng}
        res["cpp_step_only"] = []
        for f in eng.values():
            f()
        for _ in range(rounds):  # interleaved rounds: noise hits every engine alike
            for k, f in eng.items():
                res[k].append(timeit.timeit(f, number=number) / number * 1e6)
            res["cpp_step_only"].append(cpp() * 1e6)
        med = {k: float(np.median(v)) for k, v in res.items()}
        row = {"case": name, **{f"{k}_us": v for k, v in med.items()}}
        rows.append(row)
        out(f"{name:>16} | " + "  ".join(f"{k}: {v:7.2f} us ({v / med['fastrnn']:.1f}x)" for k, v in med.items()))
    return rows


# ---- forecast feedback loop (the stock-price tutorial): predict, append, predict again ----------
def forecast_loop_fastrnn(model, history, horizon, window):
    """Sliding-window recursive forecast with Model.predict (same result as the Keras loop)."""
    buf = np.empty(len(history) + horizon, np.float32)
    buf[: len(history)] = history
    x = np.empty((1, window, 1), np.float32)
    for i in range(horizon):
        n = len(history) + i
        x[0, :, 0] = buf[n - window: n]
        buf[n] = model.predict(x)[0, 0]
    return buf[len(history):]


def run_forecast(horizon=50, window=20, units=32, out=print) -> dict:
    """Time the tutorial loop on the same weights: fastrnn, PyTorch, Keras (those installed)."""
    import fastrnn
    import torch

    torch.manual_seed(0)

    class StockLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(1, units, batch_first=True)
            self.fc = torch.nn.Linear(units, 1)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])

    tm = StockLSTM().eval()
    model = fastrnn.from_torch(tm)
    history = np.sin(np.linspace(0, 6, 100)).astype(np.float32)

    def torch_loop():
        buf = list(history)
        with torch.inference_mode():
            for _ in range(horizon):
                x = torch.tensor(buf[-window:], dtype=torch.float32).view(1, window, 1)
                buf.append(float(tm(x)[0, 0]))
        return np.array(buf[len(history):], np.float32)

    engines = {"fastrnn": lambda: forecast_loop_fastrnn(model, history, horizon, window), "torch": torch_loop}
    ref = torch_loop()
    np.testing.assert_allclose(engines["fastrnn"](), ref, atol=1e-4)
    times = {}
    for k, f in engines.items():
        f()
        t0 = time.perf_counter()
        for _ in range(5):
            f()
        times[k] = (time.perf_counter() - t0) / 5 / horizon * 1e6
    out(f"forecast loop (window {window}, LSTM({units}) -> Dense(1), {horizon} steps): " +
        "  ".join(f"{k}: {v:.1f} us/step ({v / times['fastrnn']:.1f}x)" for k, v in times.items()))
    return times
