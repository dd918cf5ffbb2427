"""bf16 and int8 weights: the accuracy table and the speed table (issue 13), one command.

    python benchmarks/precision.py [--quick] [--threads 1] [--isolate-engines] [--json out.json]

(``--isolate-engines``: each engine of each speed case timed alone in a fresh process, so no other
engine's spinning worker threads share the cores; at several threads give it ``--min-time 2`` or more:
on the Zen 3 VM fastrnn's batch-1 team spends about the first 0.3 s of a fresh process backed off.)

Accuracy, per precision, against the same model in float32 (fastrnn f32 = PyTorch within 1e-5):
  * max abs error of the outputs: LSTM 128 -> 512 (PyTorch's default init), batch 1, T = 100;
  * drift: the max abs error over the last 10 steps of a T = 100 and of a T = 1000 sequence (does
    the error grow with the sequence?);
  * classification agreement (% of test inputs whose class is the float32 model's) on two
    tutorial-style classifiers trained briefly on synthetic data: sine / square / noise sequences
    (PyTorch LSTM 1 -> 32), and a Keras Embedding -> Bidirectional(LSTM) -> Dense(sigmoid) sentiment
    model on synthetic tokens (positive and negative words);
  * greedy generation of a char LM (PyTorch Embedding -> LSTM 256 -> Linear, trained briefly on this
    repository's LICENSE): over 200 tokens, the first position where the reduced model's greedy text
    leaves the float32 model's (after that the two texts differ, so this is where the first near-tie
    of the float32 model's top two characters flips), and the % of steps whose argmax is the same
    when both read the float32 model's text (teacher forcing: every step compared).
The frameworks' own reduced paths get the same max-abs-error and drift columns on the same LSTM:
torch ``quantize_dynamic`` (qint8), ONNX Runtime ``quantize_dynamic`` (DynamicQuantizeLSTM) and
OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``.

Speed: median ms per call (whole sequence, ``fastrnn bench``'s interleaved timer) at batch 1, T = 100,
for fastrnn f32 / bf16 / int8 and the frameworks' float32 and reduced paths on the same weights;
"vs own f32" = the engine's float32 time / its reduced time; "fastrnn faster" = the engine's time /
fastrnn's at the same precision (> 1: fastrnn is faster).  ONNX Runtime has no int8 GRU (its
``quantize_dynamic`` leaves GRU in float32), OpenVINO runs bf16 only on CPUs with AVX512_BF16 / AMX
(elsewhere it keeps float32: the table shows the precision it reports after compiling).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

import fastrnn
from fastrnn.bench.engines._onnx import onnx_from_torch
from fastrnn.bench.machine import _cpu_model, blas_kernel
from fastrnn.bench.timing import check_engine, time_engines

HERE = os.path.dirname(os.path.abspath(__file__))
REDUCED = ("bf16", "int8")
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "f16c",
         "asimddp", "bf16", "i8mm")


# --------------------------------------------------------------------------------- machine
def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_lines(threads):
    flags = cpu_flags()
    info = fastrnn.info()
    qpaths = info["reduced_kernels"]
    lines = [f"- CPU: {_cpu_model()} ({os.cpu_count()} logical CPUs), {platform.machine()}",
             f"- ISA flags: {', '.join(f for f in FLAGS if f in flags) or 'none of ' + ', '.join(FLAGS)}"
             f" (absent: {', '.join(f for f in FLAGS if f not in flags) or '-'})",
             f"- fastrnn {info['version']}: ISA {info['isa']} (available {', '.join(info['available_isas'])}), "
             f"BLAS kernel {blas_kernel(info['blas'])}, reduced-precision kernels: {qpaths}",
             f"- threads: {threads} for every engine"]
    vers = []
    for mod in ("torch", "onnxruntime", "openvino", "keras"):
        try:
            vers.append(f"{mod} {__import__(mod).__version__}")
        except Exception:  # noqa: BLE001 - a missing framework is just not measured
            vers.append(f"{mod} (not installed)")
    lines.append("- " + ", ".join(vers))
    return lines


# --------------------------------------------------------------------------------- models
def torch_lstm(torch, kind="lstm", I=128, H=512, seed=0):
    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    return cls(I, H, batch_first=True).eval()


class _Seq:
    """A torch RNN module as a function returning the output sequence (numpy)."""

    def __init__(self, torch, module):
        self.torch, self.module = torch, module

    def __call__(self, x):
        with self.torch.inference_mode():
            return self.module(self.torch.from_numpy(x))[0].numpy()


def torch_qint8(torch, module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), {type(module)}, dtype=torch.qint8)
    return _Seq(torch, q)


def _ort_session(model_bytes, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def ort_engines(module, features, threads, tmp):
    """(f32, int8 or None, note): ONNX Runtime on the torch export and on quantize_dynamic of it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    raw = onnx_from_torch(module, features)
    src, dst = os.path.join(tmp, "f32.onnx"), os.path.join(tmp, "int8.onnx")
    with open(src, "wb") as f:
        f.write(raw)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import logging

        logging.getLogger().setLevel(logging.ERROR)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
    with open(dst, "rb") as f:
        qbytes = f.read()
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(qbytes).graph.node}
    f32 = _ort_session(raw, threads)
    if "DynamicQuantizeLSTM" not in ops:
        return f32, None, f"quantize_dynamic left it in float32 (ops: {', '.join(sorted(ops))})"
    return f32, _ort_session(qbytes, threads), "DynamicQuantizeLSTM"


def ov_engine(module, features, threads, precision, shape):
    """(f, the inference precision OpenVINO reports after compiling)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(onnx_from_torch(module, features))
    model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision,
                                                 "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    got = compiled.get_property("INFERENCE_PRECISION_HINT")
    got = got.get_type_name() if hasattr(got, "get_type_name") else str(got)  # "f32" / "bf16"
    return (lambda x: request.infer({0: x}, share_inputs=True)[0].copy()), got


def _have(mod):
    try:
        __import__(mod)
        return True
    except Exception:  # noqa: BLE001
        return False


# --------------------------------------------------------------------------------- accuracy
def _err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def lstm_errors(torch, threads, tmp):
    """{engine label: (max abs err T=100, drift T=100, drift T=1000)} on LSTM 128 -> 512, batch 1."""
    module = torch_lstm(torch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1000, 128)).astype(np.float32)
    f32 = fastrnn.from_torch(module)
    ref = {T: f32.predict(x[:, :T]) for T in (100, 1000)}

    def row(f, base):
        y100, y1000 = f(x[:, :100]), f(x)
        return (_err(y100, base[100]), _err(y100[:, -10:], base[100][:, -10:]), _err(y1000[:, -10:], base[1000][:, -10:]))

    rows = {f"fastrnn {p}": row(f32.with_weights(p).predict, ref) for p in REDUCED}
    tref = {T: _Seq(torch, module)(x[:, :T]) for T in (100, 1000)}
    rows["fastrnn f32 vs torch f32"] = row(f32.predict, tref)
    rows["torch qint8 (quantize_dynamic)"] = row(torch_qint8(torch, module), tref)
    if _have("onnxruntime") and _have("onnx"):
        of32, oq, _ = ort_engines(module, 128, threads, tmp)
        oref = {T: of32(x[:, :T]) for T in (100, 1000)}
        rows["onnxruntime int8 (DynamicQuantizeLSTM)"] = row(oq, oref)
    if _have("openvino"):
        ys = {}
        for prec in ("f32", "bf16"):
            ys[prec] = {}
            for T in (100, 1000):
                f, got = ov_engine(module, 128, threads, prec, (1, T, 128))
                ys[prec][T] = f(x[:, :T])
            ys[prec]["got"] = got
        label = f"openvino bf16 hint (runs {ys['bf16']['got']})"
        rows[label] = row(lambda a: ys["bf16"][a.shape[1]], ys["f32"])
    return rows


def _train(torch, model, batches, steps, lr=0.01):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for i in range(steps):
        x, y = batches(i)
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()
    model.eval()
    return loss.item()


def waves(rng, n, T=100):
    """sine (random frequency and phase), square wave, or noise: (x (n, T, 1), class (n,))."""
    t = np.arange(T)[None, :]
    cls = rng.integers(0, 3, n)
    freq, phase = rng.uniform(0.02, 0.2, (n, 1)), rng.uniform(0, 2 * np.pi, (n, 1))
    s = np.sin(2 * np.pi * freq * t + phase)
    x = np.where(cls[:, None] == 0, s, np.where(cls[:, None] == 1, np.sign(s), rng.uniform(-1, 1, (n, T))))
    x = x + rng.normal(0, 0.3, (n, T))
    return x[..., None].astype(np.float32), cls


def wave_classifier_agreement(torch, quick):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = torch.nn.LSTM(1, 32, batch_first=True), torch.nn.Linear(32, 3)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = Net()

    def batch(_):
        x, y = waves(rng, 64)
        return torch.from_numpy(x), torch.from_numpy(y)

    _train(torch, net, batch, 120 if quick else 250)
    x, y = waves(np.random.default_rng(1), 2000)
    m = fastrnn.from_torch(net)
    base = m.predict(x).argmax(-1)
    acc = float((base == y).mean())
    return {p: float((m.with_weights(p).predict(x).argmax(-1) == base).mean()) for p in REDUCED}, acc


def sentiment_agreement(quick):
    """Keras Embedding -> Bidirectional(LSTM 32) -> Dense(1, sigmoid) on synthetic reviews of 40 tokens:
    ids 2..51 positive words, 52..101 negative, the rest (to 500) neutral; label = more positive than
    negative words."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def data(n, T=40):
        ids = rng.integers(2, 500, (n, T))
        pos, neg = ((ids >= 2) & (ids < 52)).sum(1), ((ids >= 52) & (ids < 102)).sum(1)
        return ids, (pos > neg).astype(np.float32)

    model = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(500, 32),
                              keras.layers.Bidirectional(keras.layers.LSTM(32)),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.005), "binary_crossentropy")
    x, y = data(3000 if quick else 4000)
    model.fit(x, y, epochs=3 if quick else 4, batch_size=64, verbose=0)
    xt, yt = data(2000)
    m = fastrnn.from_keras(model)
    base = m.predict(xt)[:, 0] > 0.5
    acc = float((base == yt).mean())
    return {p: float(((m.with_weights(p).predict(xt)[:, 0] > 0.5) == base).mean()) for p in REDUCED}, acc


def char_lm_agreement(torch, quick, n=200):
    with open(os.path.join(HERE, "..", "LICENSE"), encoding="utf-8") as f:  # a text that does not change
        text = f.read()
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], np.int64)
    V = len(chars)

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.fc = torch.nn.Embedding(V, 32), torch.nn.LSTM(32, 256, batch_first=True), \
                torch.nn.Linear(256, V)

        def forward(self, x):
            return self.fc(self.rnn(self.emb(x))[0])

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    lm = LM()

    def batch(_):
        s = rng.integers(0, len(ids) - 65, 32)
        w = np.stack([ids[i:i + 65] for i in s])
        return torch.from_numpy(w[:, :-1]), torch.from_numpy(w[:, 1:])

    loss = _train(torch, lm, batch, 150 if quick else 600, lr=0.005)
    prompt = ids[None, :40]
    m = fastrnn.from_torch(lm)
    base = m.generate(prompt, n, greedy=True)
    out = {}
    for p in REDUCED:
        r = m.with_weights(p)
        got = r.generate(prompt, n, greedy=True)
        diff = np.flatnonzero(got[0] != base[0])
        first = int(diff[0]) if diff.size else n
        seq = np.concatenate([prompt, base], axis=1)  # teacher forcing: both read the f32 text
        forced = (r.predict(seq)[0, 39:-1].argmax(-1) == m.predict(seq)[0, 39:-1].argmax(-1)).mean()
        out[p] = (first, float(forced))
    return out, loss


def accuracy_table(torch, threads, quick, tmp, log):
    log("accuracy: LSTM 128 -> 512 errors and drift ...")
    errs = lstm_errors(torch, threads, tmp)
    log("accuracy: wave classifier (torch) ...")
    waves_agree, waves_acc = wave_classifier_agreement(torch, quick)
    sent, sent_acc = (None, None)
    if _have("keras"):
        log("accuracy: sentiment classifier (keras) ...")
        sent, sent_acc = sentiment_agreement(quick)
    log("accuracy: char LM (torch) ...")
    lm, lm_loss = char_lm_agreement(torch, quick)
    lines = ["| weights | max abs err, T=100 | drift: last 10 of T=100 | last 10 of T=1000 | "
             f"waves agree ({waves_acc:.0%} acc) | sentiment agree"
             + (f" ({sent_acc:.0%} acc)" if sent_acc is not None else "") + " | char LM: greedy same until "
             f"| char LM: teacher-forced agree (loss {lm_loss:.2f}) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, (e, d100, d1000) in errs.items():
        p = label.split()[1] if label.startswith("fastrnn ") and label.split()[1] in REDUCED else None
        cells = [label, f"{e:.2e}", f"{d100:.2e}", f"{d1000:.2e}"]
        if p:
            cells += [f"{waves_agree[p]:.2%}", f"{sent[p]:.2%}" if sent else "n/a",
                      f"token {lm[p][0]} of 200", f"{lm[p][1]:.2%}"]
        else:
            cells += ["", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    agree = {p: min(v for v in (waves_agree[p], sent[p] if sent else None) if v is not None) for p in REDUCED}
    return lines, {"bf16_err": errs["fastrnn bf16"][0], "agree": agree}


# --------------------------------------------------------------------------------- speed
SPEED_CASES = (("lstm", 128, 512), ("gru", 128, 512), ("lstm", 64, 256))


def speed_engines(torch, kind, I, H, threads, tmp, x, label, only=None):
    """{(engine, precision): callable} for one case on the same weights, and notes on what runs;
    with ``only`` (an engine name: an --isolate-engines child), that engine's alone."""
    notes = []
    module = torch_lstm(torch, kind, I, H)
    engines = {}
    if only in (None, "fastrnn"):
        f32 = fastrnn.from_torch(module)
        engines[("fastrnn", "f32")] = f32.predict
        for p in REDUCED:
            engines[("fastrnn", p)] = f32.with_weights(p).predict
    if only in (None, "torch"):
        engines[("torch", "f32")] = _Seq(torch, module)
        engines[("torch", "int8")] = torch_qint8(torch, module)
    if only in (None, "onnxruntime") and _have("onnxruntime") and _have("onnx"):
        of, oq, note = ort_engines(module, I, threads, tmp)
        engines[("onnxruntime", "f32")] = of
        if oq is not None:
            engines[("onnxruntime", "int8")] = oq
        else:
            notes.append(f"{label}: onnxruntime int8: {note}")
    if only in (None, "openvino") and _have("openvino"):
        engines[("openvino", "f32")], _ = ov_engine(module, I, threads, "f32", x.shape)
        f, got = ov_engine(module, I, threads, "bf16", x.shape)
        engines[("openvino", "bf16")] = f
        if got != "bf16":
            notes.append(f"{label}: OpenVINO asked for bf16 runs {got} on this CPU")
    return engines, notes


def _time(engines, x, min_time):
    live = {}
    for k, f in engines.items():
        _, dt = check_engine(f, x, None)
        live[k] = (f, x, dt)
    return {k: statistics.median(v["samples"]) * 1e3 for k, v in time_engines(live, min_time=min_time).items()}


def _time_isolated(key, kind, I, H, threads, min_time):
    """ms per call of one engine of one case, timed alone in a fresh process (``--isolate-engines``:
    no other engine's threads on the cores; ONNX Runtime's and OpenVINO's workers spin after a call)."""
    import subprocess

    spec = ",".join(map(str, (kind, I, H, key[0], key[1])))
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--_time-one", spec, "--threads", str(threads),
                        "--min-time", str(min_time)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"--isolate-engines: {spec} failed:\n{r.stderr[-2000:]}")
    return float(json.loads(r.stdout.strip().splitlines()[-1])["ms"])


def speed_table(torch, threads, min_time, tmp, log, cases=SPEED_CASES, T=100, isolate=False):
    lines = ["| case (batch 1, T=100) | engine | weights | ms / call | vs own f32 | fastrnn faster (same weights) |",
             "|---|---|---|---:|---:|---:|"]
    notes, medians = [], {}
    for kind, I, H in cases:
        label = f"{kind} {I}->{H}"
        log(f"speed: {label} ...")
        x = np.random.default_rng(0).standard_normal((1, T, I)).astype(np.float32)
        engines, case_notes = speed_engines(torch, kind, I, H, threads, tmp, x, label)
        notes += case_notes
        if isolate:
            med = medians[label] = {}
            for k in engines:
                log(f"  {k[0]} {k[1]} in a fresh process ...")
                med[k] = _time_isolated(k, kind, I, H, threads, min_time)
        else:
            med = medians[label] = _time(engines, x, min_time)
        for (eng, p), ms in med.items():
            own = med.get((eng, "f32"))
            ours = med.get(("fastrnn", p))
            lines.append(f"| {label} | {eng} | {p} | {ms:.3f} | {own / ms:.2f}x | "
                         + (f"{ms / ours:.2f}x" if eng != "fastrnn" and ours else "") + " |")
    return lines, notes, medians


def targets(acc, medians, flags):
    """The issue's targets, met or not, with the reason where not."""
    out = []
    case = medians.get("lstm 128->512", {})
    f32 = case.get(("fastrnn", "f32"))
    for p, goal, hw in (("bf16", 1.8, "avx512_bf16"), ("int8", 2.5, "avx512_vnni")):
        got = f32 / case[("fastrnn", p)] if f32 and ("fastrnn", p) in case else float("nan")
        why = "" if got >= goal else (
            f" -- not met: this CPU has no {hw.upper()}" + (" or AVX-VNNI" if p == "int8" and "avx_vnni" not in flags
                                                             else "")
            + f" (the kernels here: {fastrnn.info()['reduced_kernels']})"
            if hw not in flags else " -- not met on a CPU that has the instructions")
        out.append(f"- {p} >= {goal}x float32 (LSTM 128->512, batch 1, T=100): {got:.2f}x{why}")
    slower = [f"{label} {p}: fastrnn {ms[('fastrnn', p)]:.1f} ms vs {eng} {t:.1f} ms"
              for label, ms in medians.items() for (eng, p), t in ms.items()
              if eng != "fastrnn" and p != "f32" and ("fastrnn", p) in ms and t < ms[("fastrnn", p)]]
    out.append("- every reduced case faster than the same precision in every framework: "
               + ("met" if not slower else "not met: " + "; ".join(slower)))
    e = acc["bf16_err"]
    out.append(f"- bf16 max abs error <= 1e-2 (T=100): {e:.2e} -- {'met' if e <= 1e-2 else 'not met'}")
    a = acc["agree"]["int8"]
    out.append(f"- int8 classification agreement >= 99%: {a:.2%} (the lower of the two classifiers) -- "
               f"{'met' if a >= 0.99 else 'not met'}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="shorter training and timing (a few minutes)")
    ap.add_argument("--threads", type=int, default=1, help="threads for every engine (default 1)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds of timed calls per engine per case")
    ap.add_argument("--json", default=None, help="also write the tables and the machine to this JSON file")
    ap.add_argument("--isolate-engines", action="store_true",
                    help="time each engine of each speed case alone in a fresh process (fair at several threads)")
    ap.add_argument("--_time-one", default=None, help=argparse.SUPPRESS)  # kind,I,H,engine,precision (isolation)
    args = ap.parse_args(argv)
    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    fastrnn.set_num_threads(args.threads)
    if args._time_one:  # a child of --isolate-engines: one engine, timed alone, JSON on the last line
        kind, I, H, eng, p = args._time_one.split(",")
        with tempfile.TemporaryDirectory() as tmp:
            x = np.random.default_rng(0).standard_normal((1, 100, int(I))).astype(np.float32)
            engines, _ = speed_engines(torch, kind, int(I), int(H), args.threads, tmp, x, "", only=eng)
            ms = _time({(eng, p): engines[(eng, p)]}, x, args.min_time)
        print(json.dumps({"ms": ms[(eng, p)]}))
        return 0

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if _have("tensorflow"):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        machine = machine_lines(args.threads)
        acc, acc_data = accuracy_table(torch, args.threads, args.quick, tmp, log)
        speed, notes, medians = speed_table(torch, args.threads, args.min_time or (0.3 if args.quick else 1.0), tmp,
                                            log, isolate=args.isolate_engines)
    goals = targets(acc_data, medians, cpu_flags())
    out = ["### Machine", *machine, "", "### Accuracy of bf16 / int8 weights against float32", *acc, "",
           "### Speed", *speed]
    if notes:
        out += ["", *[f"- {n}" for n in notes]]
    out += ["", "### Targets (issue 13)", *goals]
    out.append(f"\n(`python benchmarks/precision.py{' --quick' if args.quick else ''}"
               f"{' --isolate-engines' if args.isolate_engines else ''} --threads {args.threads}`, "
               f"{time.perf_counter() - t0:.0f} s)")
    print("\n".join(out))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "accuracy": acc, "speed": speed, "notes": notes, "targets": goals}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
