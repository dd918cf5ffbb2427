"""`fastrnn bench`: a grid of cases, timed side by side against the frameworks on the same weights.

Each case builds a PyTorch module with seeded weights (the reference for correctness) and turns
it into every engine: fastrnn (``from_torch``), torch eager, Keras 3 (``model(x)``,
``model.predict`` and an XLA-compiled ``tf.function``; weights copied from torch), ONNX Runtime
and OpenVINO (both from the same ``torch.onnx`` export).  Every engine's output is checked
against torch (untimed, max abs diff <= ``TOLERANCE``); an engine that fails to build, raises
or disagrees is reported as failed for the case, never fatal.  Engines then run in interleaved
rounds (adaptive repetition: at least ``MIN_RUNS`` timed calls, about ``min_time`` seconds) so
that machine noise hits all alike.  All engines get the same thread count.

The report: median ms per batch for each engine, the ratio engine / fastrnn (> 1: fastrnn is
faster), the fastest framework, fastrnn's GFLOP/s and fraction of the FMA peak, and whether
the performance target of the case is met (see :func:`evaluate_target`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fnmatch
import importlib.metadata
import importlib.util
import io
import math
import os
import platform
import sys
import time
import warnings

import numpy as np

TOLERANCE = 1e-4   # max abs difference from torch for an engine to count as correct
MIN_RUNS = 3       # timed calls per engine per case, at least
MAX_RUNS = 200     # ... at most
ROUNDS = 5         # interleaved rounds the timed calls are spread over
PAUSE = 0.05       # seconds between engine blocks (idle spinning threads go to sleep)
JSON_FORMAT = 1


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

    @property
    def directions(self):
        return 2 if self.bidirectional else 1


GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def flops(case: Case) -> int:
    """Multiply-add FLOPs of one batch: sum over layers and directions of 2*T*B*G*H*(I_layer + H)."""
    total, feats = 0, case.features
    for _ in range(case.layers):
        total += case.directions * 2 * case.steps * case.batch * GATES[case.cell] * case.hidden * (feats + case.hidden)
        feats = case.hidden * case.directions
    return total


def _grid():
    cases = []
    for cell in ("lstm", "gru", "rnn"):
        for feats, hidden in ((8, 64), (32, 128), (128, 512)):
            for batch in (1, 32, 256):
                cases.append(Case(f"{cell}_{feats}x{hidden}_b{batch}", cell, batch, 100, feats, hidden))
    for batch in (1, 32, 256):
        cases.append(Case(f"lstm2_h128_b{batch}", "lstm", batch, 100, 32, 128, layers=2, note="2-layer LSTM"))
    for batch in (1, 32, 256):
        cases.append(Case(f"bilstm_h128_b{batch}", "lstm", batch, 100, 32, 128, bidirectional=True,
                          note="bidirectional LSTM"))
    return cases


#: The grid `fastrnn bench` runs by default.
GRID = [c.name for c in _grid()]
#: `--quick`: the (32, 128) shapes at batch 1 and 32.
QUICK = [n for n in GRID if ("32x128" in n or "_h128" in n) and n.endswith(("_b1", "_b32"))]
#: The named cases of earlier versions and a tiny smoke case (reachable by name, not in the default grid).
LEGACY = [
    Case("realtime_step", "lstm", 1, 1, 16, 128, note="one step of one stream"),
    Case("small_seq", "lstm", 1, 100, 32, 128, note="one sequence (batch 1)"),
    Case("batch32", "lstm", 32, 100, 32, 128, note="small batch"),
    Case("gru_sensor", "gru", 8, 200, 12, 64, note="sensor windows"),
    Case("large_batch", "gru", 256, 50, 64, 256, note="batch scoring"),
    Case("bilstm_text", "lstm", 64, 80, 64, 128, layers=2, bidirectional=True, note="sentiment-style encoder"),
    Case("smoke", "gru", 2, 5, 4, 8, layers=2, bidirectional=True, note="tiny: a seconds-long check of the machinery"),
]
CASES = {c.name: c for c in _grid() + LEGACY}

ENGINES = ("fastrnn", "torch", "keras_call", "keras_predict", "keras_xla", "onnxruntime", "openvino")
FRAMEWORKS = ENGINES[1:]
# modules an engine needs (all weights come from the torch module, so every framework needs torch)
_REQUIRES = {"fastrnn": (), "torch": ("torch",), "keras_call": ("torch", "tensorflow", "keras"),
             "keras_predict": ("torch", "tensorflow", "keras"), "keras_xla": ("torch", "tensorflow", "keras"),
             "onnxruntime": ("torch", "onnx", "onnxruntime"), "openvino": ("torch", "onnx", "openvino")}


def select_cases(patterns=None, quick=False) -> list:
    """Case names for positional names / glob patterns (default: the grid, or QUICK)."""
    if not patterns:
        return list(QUICK if quick else GRID)
    names = []
    pool = list(CASES)
    for p in patterns:
        hits = [n for n in pool if fnmatch.fnmatchcase(n, p)]
        if quick and any(ch in p for ch in "*?["):
            hits = [n for n in hits if n in QUICK] or hits
        if not hits:
            raise ValueError(f"no case matches {p!r}; cases: {', '.join(GRID)} (and {', '.join(c.name for c in LEGACY)})")
        names += [n for n in hits if n not in names]
    return names


def select_engines(spec=None) -> list:
    """Engine names from 'fastrnn,torch,...' (default: all), validated."""
    if not spec:
        return list(ENGINES)
    names = [s.strip() for s in (",".join(spec) if isinstance(spec, (list, tuple)) else spec).split(",") if s.strip()]
    bad = [n for n in names if n not in ENGINES]
    if bad:
        raise ValueError(f"unknown engine(s) {', '.join(bad)}; engines: {', '.join(ENGINES)}")
    return list(dict.fromkeys(names))


def missing_modules(engine: str) -> list:
    return [m for m in _REQUIRES[engine] if importlib.util.find_spec(m) is None]


# ---------------------------------------------------------------------------------- models
def build_torch(case: Case, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[case.cell]
    return cls(case.features, case.hidden, num_layers=case.layers, bidirectional=case.bidirectional,
               batch_first=True).eval()


def make_input(case: Case, seed: int = 0):
    return np.random.default_rng(seed).standard_normal((case.batch, case.steps, case.features)).astype(np.float32)


@contextlib.contextmanager
def _quiet_fd2():
    """Silence file descriptor 2 (C++ logging of TensorFlow start-up: CUDA probes on a CPU
    machine), restoring it afterwards; Python exceptions still propagate."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with _quiet_fd2():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe, while quiet (threads can still be set after it)
    return keras


def _keras_weights(kind, w_ih, w_hh, b_ih, b_hh, hidden):
    """torch (G*H, in) matrices and (G*H,) biases -> Keras 3 [kernel, recurrent_kernel, bias]."""
    if kind == "gru":  # torch gates r, z, n -> Keras z, r, h; reset_after bias (2, 3H) = [input; recurrent]
        perm = np.r_[hidden:2 * hidden, 0:hidden, 2 * hidden:3 * hidden]
        return [w_ih[perm].T.copy(), w_hh[perm].T.copy(), np.stack([b_ih[perm], b_hh[perm]])]
    # LSTM torch i, f, g, o = Keras i, f, c, o; SimpleRNN has one gate: one summed bias
    return [w_ih.T.copy(), w_hh.T.copy(), b_ih + b_hh]


def keras_from_torch(module):
    """A Keras 3 model equal to a torch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (batch_first=True) with
    its weights copied: input (batch, time, features) -> the full output sequence, as torch's ``out``."""
    keras = _import_keras()
    kind = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}[type(module).__name__]
    if not module.batch_first:
        raise ValueError("keras_from_torch: the torch module must be batch_first=True")
    if getattr(module, "proj_size", 0):
        raise ValueError("keras_from_torch: LSTM proj_size is not supported")
    hidden = module.hidden_size

    def layer():
        if kind == "lstm":
            return keras.layers.LSTM(hidden, return_sequences=True)
        if kind == "gru":
            return keras.layers.GRU(hidden, return_sequences=True, reset_after=True)
        return keras.layers.SimpleRNN(hidden, activation=module.nonlinearity, return_sequences=True)

    layers = [keras.layers.Bidirectional(layer(), merge_mode="concat") if module.bidirectional else layer()
              for _ in range(module.num_layers)]
    model = keras.Sequential([keras.Input(shape=(None, module.input_size))] + layers)
    g = GATES[kind] * hidden
    for i, lay in enumerate(layers):
        targets = [(lay.forward_layer, ""), (lay.backward_layer, "_reverse")] if module.bidirectional else [(lay, "")]
        for target, sfx in targets:
            def p(name, default_len=None):
                t = getattr(module, f"{name}_l{i}{sfx}", None)
                return np.zeros(default_len, np.float32) if t is None else t.detach().cpu().numpy().astype(np.float32)

            target.set_weights(_keras_weights(kind, p("weight_ih"), p("weight_hh"), p("bias_ih", g), p("bias_hh", g),
                                              hidden))
    return model


_TF_THREADS = {}


def _tensorflow(threads):
    """TensorFlow with `threads` intra-op threads and 1 inter-op thread (only possible before TF
    runs its first op: each thread count belongs in a fresh process)."""
    _import_keras()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        _TF_THREADS["n"] = threads
    except RuntimeError:
        cur = _TF_THREADS.get("n", tf.config.threading.get_intra_op_parallelism_threads())
        if cur != threads:
            raise RuntimeError(f"TensorFlow was initialized with intra_op threads={cur or 'default'}, not {threads}; "
                               "run each thread count in a fresh process") from None
    return tf


def _onnx_wrapper(module):
    import torch

    class Seq(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = module

        def forward(self, x):
            return self.rnn(x)[0]

    return Seq()


def onnx_from_torch(module, features):
    """ONNX bytes of the module's output sequence (dynamic batch and time axes), legacy exporter."""
    import torch

    buf = io.BytesIO()
    # no_grad: after an inference_mode call the module holds inference tensors the tracer rejects
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_onnx_wrapper(module), (torch.zeros(2, 3, features),), buf, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b", 1: "t"}, "y": {0: "b", 1: "t"}},
                          dynamo=False)
    return buf.getvalue()


class Context:
    """What the engines of one case share: the torch module, its ONNX export, the Keras model."""

    def __init__(self, case: Case, threads: int):
        self.case, self.threads = case, threads
        self._module = self._onnx = self._keras = None

    @property
    def module(self):
        if self._module is None:
            self._module = build_torch(self.case)
        return self._module

    @property
    def onnx(self):
        if self._onnx is None:
            self._onnx = onnx_from_torch(self.module, self.case.features)
        return self._onnx

    @property
    def keras(self):
        if self._keras is None:
            _tensorflow(self.threads)
            self._keras = keras_from_torch(self.module)
        return self._keras

    def reference(self, x):
        import torch

        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.module(torch.from_numpy(x))[0].numpy()

    def close(self):
        if self._keras is not None:
            try:
                import keras

                keras.backend.clear_session()
            except Exception:  # noqa: BLE001 - best effort
                pass
        self._module = self._onnx = self._keras = None


def random_model(cell, features, hidden, layers=1, bidirectional=False, seed=0, scale=0.1):
    """A fastrnn Model of stacked ``cell`` layers ('lstm' / 'gru' / 'rnn') with seeded weights drawn
    uniformly from [-scale, scale], straight from a ModelSpec (no framework needed); output sequence."""
    import fastrnn

    from .spec import DirectionWeights, ModelSpec, RecurrentSpec

    rng = np.random.default_rng(seed)
    g, nd = GATES[cell] * hidden, 2 if bidirectional else 1
    specs, feats = [], features
    for i in range(layers):
        w = [DirectionWeights(*(rng.uniform(-scale, scale, s).astype(np.float32) for s in
                                ((g, feats), (g, hidden), (g,), (g,)))) for _ in range(nd)]
        specs.append(RecurrentSpec(kind={"rnn": "simple_rnn"}.get(cell, cell), name=f"l{i}", input_size=feats,
                                   units=hidden, weights=w, direction="bidirectional" if bidirectional else "forward"))
        feats = hidden * nd
    return fastrnn.Model(ModelSpec(layers=specs, input_features=features))


def _fastrnn_without_torch(case: Case):
    """fastrnn on random weights (no torch: nothing to check against)."""
    return random_model(case.cell, case.features, case.hidden, case.layers, case.bidirectional).predict


def _e_fastrnn(ctx):
    import fastrnn

    fastrnn.set_num_threads(ctx.threads)
    if importlib.util.find_spec("torch") is None:
        return _fastrnn_without_torch(ctx.case)
    return fastrnn.from_torch(ctx.module).predict


def _e_torch(ctx):
    import torch

    torch.set_num_threads(ctx.threads)
    module = ctx.module

    def run(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x))[0].numpy()

    return run


def _e_keras_call(ctx):
    model = ctx.keras
    return lambda x: model(x, training=False).numpy()


def _e_keras_predict(ctx):
    model, batch = ctx.keras, ctx.case.batch
    return lambda x: model.predict(x, batch_size=batch, verbose=0)


def _e_keras_xla(ctx):
    model = ctx.keras
    tf = _tensorflow(ctx.threads)
    # jit_compile=True is a demand, not a hint: the call fails if XLA cannot compile the model.
    fn = tf.function(lambda t: model(t, training=False), jit_compile=True)
    return lambda x: fn(x).numpy()


def _e_onnxruntime(ctx):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = ctx.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(ctx.onnx, so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def _e_openvino(ctx):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(ctx.onnx)
    c = ctx.case
    model.reshape({model.inputs[0]: ov.PartialShape([c.batch, c.steps, c.features])})  # static: OV's fast path
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": ctx.threads,
                                                 "INFERENCE_PRECISION_HINT": "f32",
                                                 "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x}, share_inputs=True)[0].copy()


FACTORIES = {"fastrnn": _e_fastrnn, "torch": _e_torch, "keras_call": _e_keras_call,
             "keras_predict": _e_keras_predict, "keras_xla": _e_keras_xla, "onnxruntime": _e_onnxruntime,
             "openvino": _e_openvino}


def _short(e: BaseException, n=160):
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:n]}{'...' if len(msg) > n else ''}"


def check_engine(f, x, expected, tol=TOLERANCE):
    """Run f(x) (warm-up / compile), then again timed; returns (max_abs_diff, seconds) or raises
    AssertionError when the output differs from `expected` (None: nothing to check)."""
    f(x)
    t0 = time.perf_counter()
    y = f(x)
    dt = time.perf_counter() - t0
    if expected is None:
        return None, dt
    y = np.asarray(y)
    if y.shape != expected.shape:
        raise AssertionError(f"output shape {y.shape} != torch's {expected.shape}")
    diff = float(np.max(np.abs(y.astype(np.float64) - expected))) if y.size else 0.0
    if not diff <= tol:  # also catches NaN
        raise AssertionError(f"differs from torch by {diff:.3g} (tolerance {tol:g})")
    return diff, dt


# ---------------------------------------------------------------------------------- machine
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _dist_version(*names):
    for n in names:
        try:
            return importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def versions(engine_names=ENGINES) -> dict:
    import fastrnn

    want = {"fastrnn": ("fastrnn",)}
    for e in engine_names:
        for m in _REQUIRES[e]:
            want[m] = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
                       "onnxruntime": ("onnxruntime", "onnxruntime-openmp", "ort-nightly")}.get(m, (m,))
    out = {}
    for m, dists in want.items():
        if m == "fastrnn":
            out[m] = fastrnn.__version__
        elif importlib.util.find_spec(m) is not None:
            out[m] = _dist_version(*dists) or "?"
    out["numpy"] = np.__version__
    out["python"] = platform.python_version()
    return out


def _numpy_blas_lib():
    """ctypes handle of the OpenBLAS numpy uses (Linux), its symbol prefix and suffix, or None."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = {ln.split()[-1] for ln in f if "openblas" in ln.lower() and "numpy" in ln.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre, suf in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "64_"), ("openblas_", "")):
            if hasattr(lib, f"{pre}get_corename{suf}"):
                return lib, pre, suf
    return None


def numpy_blas(threads=None) -> dict:
    """numpy's BLAS (name, version, kernel) and its sgemm rate: 1024^3 float32 `a @ b`, best of 5,
    with `threads` BLAS threads where that can be set."""
    import ctypes

    d = {"name": "unknown", "kernel": "unknown", "threads": None}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        d["name"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        cfg = blas.get("openblas configuration") or ""
        if cfg:
            d["config"] = cfg
    except Exception:  # noqa: BLE001 - older numpy: no dicts mode
        pass
    restore = None
    found = _numpy_blas_lib()
    if found:
        lib, pre, suf = found
        core = getattr(lib, f"{pre}get_corename{suf}")
        core.restype = ctypes.c_char_p
        d["kernel"] = core().decode()
        get_n, set_n = getattr(lib, f"{pre}get_num_threads{suf}", None), getattr(lib, f"{pre}set_num_threads{suf}", None)
        if get_n is not None and set_n is not None:
            restore = (set_n, int(get_n()))
            if threads:
                set_n(int(threads))
            d["threads"] = int(get_n())
    else:
        try:
            import threadpoolctl

            for m in threadpoolctl.threadpool_info():
                if m.get("user_api") == "blas" and "numpy" in m.get("filepath", ""):
                    d["kernel"] = m.get("architecture") or "unknown"
                    d["threads"] = m.get("num_threads")
        except Exception:  # noqa: BLE001 - optional
            pass
    try:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((1024, 1024), dtype=np.float32)
        b = rng.standard_normal((1024, 1024), dtype=np.float32)
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(5))
        d["sgemm_gflops"] = 2 * 1024 ** 3 / best / 1e9
    finally:
        if restore:
            restore[0](restore[1])
    return d


def _timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def fma_peak_per_core(seconds=0.2):
    """One core's measured fp32 FMA GFLOP/s from the core (None when this build lacks the probe)."""
    try:
        import fastrnn

        probe = getattr(fastrnn._load_core(), "fma_peak_gflops", None)
        return float(probe(seconds=seconds)) if probe is not None else None
    except Exception:  # noqa: BLE001 - a probe that fails means "n/a", not a failed benchmark
        return None


def machine_info(threads, engine_names=ENGINES, measure=True) -> dict:
    import fastrnn

    info = fastrnn.info()
    d = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
         "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
         "platform": platform.platform(), "threads": threads, "isa": info["isa"], "blas": info["blas"],
         "versions": versions(engine_names)}
    try:
        d["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        d["cpus_usable"] = os.cpu_count()
    if measure:
        per_core = fma_peak_per_core()
        d["fma_peak_gflops_per_core"] = per_core
        d["fma_peak_gflops"] = per_core * threads if per_core else None
        d["numpy_blas"] = numpy_blas(threads)
    return d


# ---------------------------------------------------------------------------------- timing
class Progress:
    """`[ 12/33] lstm_32x128_b32 keras_xla timing 2/5` (case number / cases, engine, phase) on stderr,
    rewritten in place; only on a terminal."""

    def __init__(self, total, stream=None, enabled=None):
        self.total, self.i = total, 0
        self.stream = stream or sys.stderr
        self.enabled = (hasattr(self.stream, "isatty") and self.stream.isatty()) if enabled is None else enabled
        self.width = 0

    def show(self, case, engine, what=""):
        if not self.enabled:
            return
        n = len(str(self.total))
        msg = f"[{min(self.i + 1, self.total):>{n}}/{self.total}] {case} {engine} {what}".rstrip()
        self.stream.write("\r" + msg.ljust(self.width))
        self.stream.flush()
        self.width = len(msg)

    def step(self):
        self.i += 1

    def clear(self):
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


def evaluate_target(case: Case, median: dict, peak_gflops) -> dict:
    """The issue's performance target for one case:

    * fastrnn is faster than the fastest framework, and
    * batch 1: >= 2x the fastest framework for H <= 128, >= 1.3x for larger H;
    * batch > 1: >= 1.5x the fastest framework where that framework reaches below 60% of the FMA
      peak, else fastrnn reaches >= 85% of the peak (with the peak unknown: >= 1.5x).
    """
    fw = {k: v for k, v in median.items() if k != "fastrnn"}
    if "fastrnn" not in median:
        return {"met": None, "rule": "fastrnn failed"}
    if not fw:
        return {"met": None, "rule": "no framework to compare with"}
    fastest = min(fw, key=fw.get)
    ratio = fw[fastest] / median["fastrnn"]
    f = flops(case)
    if case.batch == 1:
        need = 2.0 if case.hidden <= 128 else 1.3
        return {"met": bool(ratio >= need), "rule": f"batch 1: >= {need:g}x {fastest}", "ratio": ratio}
    fw_frac = f / fw[fastest] / 1e9 / peak_gflops if peak_gflops else None
    if fw_frac is None or fw_frac < 0.6:
        why = "peak n/a" if fw_frac is None else f"{fastest} at {fw_frac:.0%} of peak"
        return {"met": bool(ratio >= 1.5), "rule": f">= 1.5x {fastest} ({why})", "ratio": ratio}
    fr_frac = f / median["fastrnn"] / 1e9 / peak_gflops
    return {"met": bool(ratio > 1 and fr_frac >= 0.85), "rule": f"faster than {fastest} and >= 85% of peak "
            f"({fastest} at {fw_frac:.0%})", "ratio": ratio, "fastrnn_peak_fraction": fr_frac}


def bench_case(case: Case, engine_names, threads, min_time=0.4, progress=None, pause=PAUSE) -> dict:
    """Build, check and time every engine on one case; a dict with per-engine results."""
    progress = progress or Progress(len(engine_names), enabled=False)
    t_case = time.perf_counter()
    x = make_input(case)
    ctx = Context(case, threads)
    res = {"case": case.name, "cell": case.cell, "batch": case.batch, "steps": case.steps,
           "input": case.features, "hidden": case.hidden, "layers": case.layers,
           "bidirectional": case.bidirectional, "describe": case.describe(), "flops": flops(case), "engines": {}}
    live = {}
    try:
        expected = None
        if importlib.util.find_spec("torch") is not None:
            try:
                expected = ctx.reference(x)
            except Exception as e:  # noqa: BLE001 - no reference: every engine is reported failed
                expected = e
        for name in engine_names:
            progress.show(case.name, name, "build+check")
            try:
                if isinstance(expected, Exception):
                    raise RuntimeError(f"torch reference failed: {_short(expected)}")
                missing = missing_modules(name)
                if missing and name != "fastrnn":
                    res["engines"][name] = {"status": "skipped", "error": f"not installed: {', '.join(missing)}"}
                    continue
                t0 = time.perf_counter()
                f = FACTORIES[name](ctx)
                diff, dt = check_engine(f, x, expected)
                live[name] = (f, dt)
                res["engines"][name] = {"status": "ok", "max_abs_diff": diff,
                                        "setup_s": time.perf_counter() - t0}
            except Exception as e:  # noqa: BLE001 - an engine that fails is reported, never fatal
                res["engines"][name] = {"status": "failed", "error": _short(e)}
        # adaptive repetition: >= MIN_RUNS timed calls (the checked call, made after the warm-up,
        # is the first), about min_time seconds, the rest spread over interleaved rounds
        plan = {k: max(MIN_RUNS, min(MAX_RUNS, math.ceil(min_time / max(dt, 1e-6)))) - 1 for k, (_, dt) in live.items()}
        rounds = min(ROUNDS, max(plan.values(), default=0))
        samples = {k: [dt] for k, (_, dt) in live.items()}
        for r in range(rounds):
            for k, (f, _) in live.items():
                n = round((r + 1) * plan[k] / rounds) - round(r * plan[k] / rounds)
                if not n:
                    continue
                progress.show(case.name, k, f"timing {r + 1}/{rounds}")
                time.sleep(pause)
                for _ in range(n):
                    t0 = time.perf_counter()
                    f(x)
                    samples[k].append(time.perf_counter() - t0)
        for k, s in samples.items():
            ms = np.array(s) * 1e3
            res["engines"][k].update(n=len(s), median_ms=float(np.median(ms)), min_ms=float(ms.min()),
                                     mean_ms=float(ms.mean()), samples_ms=[round(float(v), 6) for v in ms])
    finally:
        ctx.close()
    res["elapsed_s"] = time.perf_counter() - t_case
    return res


def summarize_case(res: dict, peak_gflops) -> dict:
    """Add ratios, fastest framework, GFLOP/s, peak fractions and the target to a bench_case result."""
    case = Case(res["case"], res["cell"], res["batch"], res["steps"], res["input"], res["hidden"],
                res["layers"], res["bidirectional"])
    eng = res["engines"]
    median = {k: v["median_ms"] / 1e3 for k, v in eng.items() if v.get("status") == "ok" and "median_ms" in v}
    for k, v in eng.items():
        if k in median:
            v["gflops"] = res["flops"] / median[k] / 1e9
            if peak_gflops:
                v["peak_fraction"] = v["gflops"] / peak_gflops
            if "fastrnn" in median:
                v["ratio_vs_fastrnn"] = median[k] / median["fastrnn"]
    fw = {k: t for k, t in median.items() if k != "fastrnn"}
    res["fastest_framework"] = min(fw, key=fw.get) if fw else None
    res["fastrnn_vs_fastest"] = (fw[res["fastest_framework"]] / median["fastrnn"]
                                 if fw and "fastrnn" in median else None)
    res["fastrnn_gflops"] = eng.get("fastrnn", {}).get("gflops")
    res["fastrnn_peak_fraction"] = eng.get("fastrnn", {}).get("peak_fraction")
    res["target"] = evaluate_target(case, median, peak_gflops)
    return res


# ---------------------------------------------------------------------------------- report
def _fmt_ms(v):
    return f"{v:7.3f}" if v < 10 else f"{v:7.2f}" if v < 100 else f"{v:7.1f}" if v < 1e5 else f"{v:7.0f}"


def header_lines(meta: dict) -> list:
    v = meta["versions"]
    eng = []
    for e in meta["engines"]:
        mods = [m for m in _REQUIRES.get(e, ()) if m != "torch" or e == "torch"] or ["fastrnn"]
        eng.append(f"{e} (" + ", ".join(f"{m} {v.get(m, '?')}" for m in mods) + ")")
    peak = meta.get("fma_peak_gflops_per_core")
    nb = meta.get("numpy_blas") or {}
    lines = [
        f"fastrnn bench | {meta['date']} | {meta['cpu']} | {meta['cpu_count']} cores ({meta['machine']}, "
        f"{meta['platform']})",
        f"fastrnn {v.get('fastrnn')} isa={meta['isa']} | blas: {meta['blas']}",
        f"engines: {'; '.join(eng)}",
        f"threads: {meta['threads']} (every engine) | FMA peak: " +
        (f"{peak:.1f} GFLOP/s per core x {meta['threads']} = {meta['fma_peak_gflops']:.1f} GFLOP/s" if peak
         else "n/a (this build has no fma_peak_gflops probe)") +
        (f" | numpy sgemm 1024^3: {nb['sgemm_gflops']:.1f} GFLOP/s ({nb.get('name')}, kernel {nb.get('kernel')}, "
         f"{nb.get('threads') or '?'} threads)" if nb.get("sgemm_gflops") else ""),
    ]
    for note in meta.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("times: median ms per batch; ratio = engine / fastrnn (> 1: fastrnn faster); "
                 "vs = fastest framework / fastrnn")
    return lines


def _fmt_ratio(r):
    return f"{r:6.2f}x" if r < 100 else f"{r:6.1f}x" if r < 1000 else f"{r:6.0f}x"


def _columns(engines):
    return [e for e in engines if e != "fastrnn"]


def table_header(engines) -> str:
    cols = "".join(f"{e:>16}" for e in _columns(engines))
    return f"{'case':<18}{'fastrnn':>9}{cols}  {'fastest':<13}{'vs':>6}{'GF/s':>7}{'%peak':>6}  target"


def table_row(res: dict, engines) -> str:
    eng = res["engines"]

    def cell(e):
        d = eng.get(e, {})
        if d.get("status") == "ok" and "median_ms" in d:
            r = d.get("ratio_vs_fastrnn")
            return _fmt_ms(d["median_ms"]) + (" " + _fmt_ratio(r) if r is not None else " " * 8)
        return {"failed": "FAILED", "skipped": "-"}.get(d.get("status"), "-")

    fr = eng.get("fastrnn", {})
    frt = _fmt_ms(fr["median_ms"]) if "median_ms" in fr else cell("fastrnn")
    vs = res.get("fastrnn_vs_fastest")
    gf, pf = res.get("fastrnn_gflops"), res.get("fastrnn_peak_fraction")
    tgt = res.get("target", {}).get("met")
    return (f"{res['case']:<18}{frt:>9}" + "".join(f"{cell(e):>16}" for e in _columns(engines)) +
            f"  {res.get('fastest_framework') or '-':<13}" + (f"{vs:5.2f}x" if vs else f"{'-':>6}") +
            (f"{gf:7.1f}" if gf else f"{'-':>7}") + (f"{pf:6.0%}" if pf else f"{'n/a':>6}") +
            "  " + {True: "met", False: "MISSED", None: "n/a"}[tgt])


def case_notes(res: dict) -> list:
    out = []
    for e, d in res["engines"].items():
        if d.get("status") == "failed":
            out.append(f"    {res['case']}: {e} failed: {d.get('error')}")
    t = res.get("target", {})
    if t.get("met") is False:
        out.append(f"    {res['case']}: target missed: {t.get('rule')} (got {t.get('ratio', 0):.2f}x"
                   + (f", fastrnn at {t['fastrnn_peak_fraction']:.0%} of peak" if "fastrnn_peak_fraction" in t
                      else "") + ")")
    return out


def summary(cases: list) -> dict:
    met = sum(1 for c in cases if c.get("target", {}).get("met") is True)
    missed = [c["case"] for c in cases if c.get("target", {}).get("met") is False]
    na = sum(1 for c in cases if c.get("target", {}).get("met") is None)
    failed = sorted({f"{c['case']}:{e}" for c in cases for e, d in c["engines"].items() if d.get("status") == "failed"})
    return {"cases": len(cases), "targets_met": met, "targets_missed": len(missed), "targets_na": na,
            "missed": missed, "failed_engines": failed}


def summary_line(run: dict) -> str:
    s = run["summary"]
    line = (f"summary (threads={run['meta']['threads']}): targets met {s['targets_met']}/{s['cases']}, "
            f"missed {s['targets_missed']}" + (f" ({', '.join(s['missed'])})" if s["missed"] else ""))
    if s["targets_na"]:
        line += f", n/a {s['targets_na']}"
    if s["failed_engines"]:
        line += f"; {len(s['failed_engines'])} engine failures"
    if run["meta"].get("elapsed_s") is not None:
        line += f"; {run['meta']['elapsed_s']:.0f} s"
    return line


def print_run(run: dict, out=print):
    """The whole report of a finished run (e.g. read back from JSON)."""
    for line in header_lines(run["meta"]):
        out(line)
    engines = run["meta"]["engines"]
    out(table_header(engines))
    notes = []
    for res in run["cases"]:
        out(table_row(res, engines))
        notes += case_notes(res)
    for n in notes:
        out(n)
    out(summary_line(run))


def run(case_names=None, threads=None, min_time=0.4, engines=None, quick=False, out=print, progress=None) -> dict:
    """Run the cases in this process with `threads` threads for every engine; prints the report as
    it goes and returns {"meta", "cases", "summary"} (what --json writes, one entry of "runs")."""
    import fastrnn

    t_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = threads or fastrnn.get_num_threads()
    fastrnn.set_num_threads(threads)
    names = select_cases(case_names, quick=quick)
    wanted = select_engines(engines)
    notes, engine_names = [], []
    for e in wanted:
        missing = missing_modules(e)
        if missing:
            notes.append(f"{e} skipped: {', '.join(missing)} not installed")
        else:
            engine_names.append(e)
    if importlib.util.find_spec("torch") is None:
        notes.append("torch not installed: fastrnn runs on random weights, unchecked")
    meta = machine_info(threads, engine_names)
    meta.update(engines=engine_names, requested_engines=wanted, notes=notes, min_time=min_time, tolerance=TOLERANCE,
                argv=sys.argv[1:])
    for line in header_lines(meta):
        out(line)
    out(table_header(engine_names))
    peak = meta.get("fma_peak_gflops")
    prog = progress if progress is not None else Progress(len(names))
    results = []
    for name in names:
        res = summarize_case(bench_case(CASES[name], engine_names, threads, min_time=min_time, progress=prog), peak)
        results.append(res)
        prog.step()
        prog.clear()
        out(table_row(res, engine_names))
        for n in case_notes(res):
            out(n)
    prog.clear()
    meta["elapsed_s"] = time.perf_counter() - t_start
    result = {"meta": meta, "cases": results, "summary": summary(results)}
    out(summary_line(result))
    return result


def run_threads_in_subprocesses(case_names=None, thread_counts=None, min_time=0.4, engines=None, quick=False,
                                out=print) -> list:
    """One fresh process per thread count (TensorFlow fixes its thread pools at start-up):
    `python -m fastrnn.cli bench ... --threads N --json TMP`, results merged into a list of runs."""
    import subprocess
    import tempfile

    import fastrnn

    thread_counts = thread_counts or sorted({1, os.cpu_count() or 1})
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    runs = []
    with tempfile.TemporaryDirectory(prefix="fastrnn-bench-") as tmp:
        for n in thread_counts:
            path = os.path.join(tmp, f"threads{n}.json")
            cmd = [sys.executable, "-m", "fastrnn.cli", "bench", *(case_names or []), "--threads", str(n),
                   "--json", path, "--min-time", str(min_time)]
            if engines:
                cmd += ["--engines", ",".join(select_engines(engines))]
            if quick:
                cmd.append("--quick")
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
                       OPENBLAS_NUM_THREADS=str(n), FASTRNN_BENCH_CHILD="1",
                       PYTHONPATH=os.pathsep.join(p for p in (parent, os.environ.get("PYTHONPATH")) if p))
            sys.stdout.flush()
            rc = subprocess.call(cmd, env=env)
            if rc != 0 or not os.path.exists(path):
                raise RuntimeError(f"bench with --threads {n} failed (exit status {rc})")
            runs += load_runs([path])
            out("")
    return runs


# ---------------------------------------------------------------------------------- json / plot
def to_json(runs: list) -> dict:
    return {"fastrnn_bench": JSON_FORMAT, "runs": runs}


def load_runs(paths) -> list:
    import json

    runs = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            d = json.load(f)
        if isinstance(d, dict) and "runs" in d:
            runs += d["runs"]
        elif isinstance(d, dict) and "cases" in d and "meta" in d:
            runs.append(d)
        else:
            raise ValueError(f"{p}: not a `fastrnn bench --json` file")
    return runs


def plot(runs: list, path: str):
    """Grouped bars: speedup of fastrnn over each engine per case (log scale), one panel per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'fastrnn[plot]'") from e
    if not runs:
        raise ValueError("nothing to plot: no runs")
    ncase = max(len(r["cases"]) for r in runs)
    fig, axes = plt.subplots(len(runs), 1, figsize=(max(9.0, 0.45 * ncase + 3.5), 4.4 * len(runs)), squeeze=False)
    for ax, r in zip(axes[:, 0], runs):
        m = r["meta"]
        engines = [e for e in m["engines"] if e != "fastrnn"]
        names = [c["case"] for c in r["cases"]]
        width = 0.8 / max(1, len(engines))
        for j, e in enumerate(engines):
            xs, ys = [], []
            for i, c in enumerate(r["cases"]):
                v = c["engines"].get(e, {}).get("ratio_vs_fastrnn")
                if v:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(v)
            ax.bar(xs, ys, width=width, label=e)
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylabel("speedup of fastrnn (engine / fastrnn)")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
        ax.set_title(f"fastrnn {m['versions'].get('fastrnn')} vs frameworks | {m['cpu']}, {m['cpu_count']} cores, "
                     f"isa {m['isa']} | threads={m['threads']} | {m['date'][:16]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
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
        if name not in STREAM_CASES:
            raise ValueError(f"unknown streaming case {name!r}; cases: {', '.join(STREAM_CASES)}")
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
