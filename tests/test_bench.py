"""`fastrnn bench` machinery: engine builders (Keras weight copy, ONNX Runtime, OpenVINO) against
torch, whole sequences and one step per call with the state carried, failure reporting, the case
grid, the named workloads and the FLOP formula, targets, --json fields, --plot / --from-json,
--isolate-engines, --stream.  No timing assertions: timings are only checked for presence and type."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import CHILD_CWD, child_env, require
from fastrnn import bench as B


def cli(*args, timeout=300, env=None):
    r = subprocess.run([sys.executable, "-m", "fastrnn", *map(str, args)], capture_output=True, text=True,
                       env=env or child_env(TF_CPP_MIN_LOG_LEVEL="3"), cwd=CHILD_CWD, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def torch_module(torch, cell, features, hidden, layers=1, bidirectional=False, seed=0, **kw):
    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    m = cls(features, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=True, **kw).eval()
    with torch.no_grad():  # larger, distinct biases so a bias mix-up cannot hide
        for name, p in m.named_parameters():
            if name.startswith("bias"):
                p.uniform_(-1, 1)
    return m


def torch_out(torch, m, x):
    with torch.no_grad():
        return m(torch.from_numpy(x))[0].numpy()


# ------------------------------------------------------------------------- grid, flops, targets
def test_flops_formula():
    assert B.flops(B.CASES["lstm_32x128_b32"]) == 2 * 100 * 32 * 4 * 128 * (32 + 128)
    assert B.flops(B.CASES["rnn_8x64_b1"]) == 2 * 100 * 1 * 1 * 64 * (8 + 64)
    # 2 layers x 2 directions: the second layer reads both directions (2H features)
    c = B.CASES["bilstm_text"]
    per_dir = lambda feats: 2 * 80 * 64 * 4 * 128 * (feats + 128)  # noqa: E731
    assert B.flops(c) == 2 * per_dir(64) + 2 * per_dir(256)
    assert B.flops(B.CASES["lstm2_h128_b1"]) == 2 * 100 * 4 * 128 * ((32 + 128) + (128 + 128))
    assert B.flops(B.CASES["gru_128x512_b256"]) == 2 * 100 * 256 * 3 * 512 * (128 + 512)
    # step cases: one step per call
    assert B.flops(B.CASES["step_lstm_8x64"]) == 2 * 4 * 64 * (8 + 64)
    assert B.flops(B.CASES["dtln_step"]) == 2 * 4 * 128 * ((257 + 128) + (128 + 128))
    assert B.flops(B.CASES["word_lm_b20"]) == 2 * 35 * 20 * 4 * 650 * ((650 + 650) * 2)


def test_step_weight_bytes_are_torchs_weights():
    """The batch-1 roofline's bytes per step: every weight_hh of the torch model (float32); a step case
    (one step per call) reads every weight_ih too."""
    torch = require("torch")
    for name in ("lstm_32x128_b1", "gru_8x64_b1", "rnn_128x512_b1", "lstm2_h128_b1", "bilstm_h128_b1", "dtln_step",
                 "rtneural_gru_8", "rnnt_pred_step", "word_lm_b20"):
        c = B.CASES[name]
        m = torch_module(torch, c.cell, c.features, c.hidden, layers=c.layers, bidirectional=c.bidirectional)
        w = sum(p.numel() for n, p in m.named_parameters()
                if n.startswith("weight_hh") or (c.mode == "step" and n.startswith("weight_ih")))
        assert B.step_weight_bytes(c) == 4 * w, name


def test_cache_read_probe():
    """The batch-1 roofline's bandwidth probe: a positive rate for any size it takes, our own
    ValueError for sizes and durations it refuses (no crash, nothing allocated for them)."""
    import fastrnn
    from fastrnn.runtime import core

    for nbytes in (1024, 5000, 64 << 10, 4 << 20):
        g = core().cache_read_gbps(nbytes, seconds=0.01)
        assert np.isfinite(g) and g > 0, nbytes
    assert B.cache_read_gbps(64 << 10, seconds=0.01) > 0
    for bad in (0, -1, 1023, (1 << 30) + 1):
        with pytest.raises(fastrnn.ShapeError, match="bytes must be within"):
            core().cache_read_gbps(bad)
    for bad in (0.0, -1.0, float("nan"), 61.0):
        with pytest.raises(ValueError, match="seconds must be within"):
            core().cache_read_gbps(4096, seconds=bad)
    assert B.cache_read_gbps(0) is None  # the bench's wrapper: n/a, not a failed run


def test_grid_and_selection():
    assert len(B.GRID) == 27 + 6 and len(set(B.GRID)) == len(B.GRID)
    for name in ("lstm_8x64_b1", "gru_32x128_b32", "rnn_128x512_b256", "lstm2_h128_b256", "bilstm_h128_b1"):
        assert name in B.GRID
    assert all(B.CASES[n].steps == 100 and B.CASES[n].mode == "sequence" for n in B.GRID)
    assert B.select_cases() == B.GRID + B.WORKLOADS
    assert set(B.select_cases(quick=True)) == set(B.QUICK) and 0 < len(B.QUICK) <= 14
    assert {n for n in B.QUICK if n in B.WORKLOADS} and {n for n in B.QUICK if n in B.GRID}
    assert B.select_cases(["gru_*_b1"]) == ["gru_8x64_b1", "gru_32x128_b1", "gru_128x512_b1"]
    assert B.select_cases(["small_seq", "lstm_8x64_b1", "small_seq"]) == ["small_seq", "lstm_8x64_b1"]
    assert B.select_cases(["rtneural_*"], quick=True) == [n for n in B.QUICK if n.startswith("rtneural_")]
    with pytest.raises(ValueError, match="no case matches"):
        B.select_cases(["nope_*"])
    assert B.select_engines("torch, fastrnn") == ["torch", "fastrnn"]
    assert B.select_engines(None) == list(B.ENGINES)
    with pytest.raises(ValueError, match="unknown engine"):
        B.select_engines("fastrnn,tensorrt")


# (cell, input, hidden, layers, batch, steps per call or "step") of the named workloads
WORKLOADS = {
    **{f"rtneural_{cell}_{n}": (cell, n, n, 1, 1, "step") for cell in ("lstm", "gru") for n in (8, 16, 32, 64)},
    "dtln_step": ("lstm", 257, 128, 2, 1, "step"),
    "rnnt_pred_step": ("lstm", 640, 640, 1, 1, "step"),
    "silero_step": ("lstm", 128, 128, 1, 1, "step"),
    "word_lm_b20": ("lstm", 650, 650, 2, 20, 35),
    "step_lstm_8x64": ("lstm", 8, 64, 1, 1, "step"),
}


def test_named_workloads():
    for name, (cell, feats, hidden, layers, batch, steps) in WORKLOADS.items():
        c = B.CASES[name]
        assert name in B.WORKLOADS and name in B.select_cases(), name
        assert (c.cell, c.features, c.hidden, c.layers, c.batch, c.bidirectional) == (cell, feats, hidden, layers,
                                                                                       batch, False), name
        if steps == "step":
            assert c.mode == "step" and c.steps == 1 and c.input_steps == B.CHECK_STEPS > 1, name
        else:
            assert c.mode == "sequence" and c.steps == steps, name
    assert B.CASES["step_lstm_8x64"].targets == (("onnxruntime", 15.0), ("torch", 25.0))
    assert all(B.RUN_NOTES.get(n) and "not included" in B.RUN_NOTES[n] for n in WORKLOADS if n.startswith("rtneural"))
    assert B.make_input(B.CASES["dtln_step"]).shape == (1, B.CHECK_STEPS, 257)
    with pytest.raises(ValueError, match="step case"):
        B.Case("bad", "lstm", 1, 1, 4, 8, bidirectional=True, mode="step")


def test_target_rules():
    c1 = B.CASES["lstm_32x128_b1"]  # batch 1, H <= 128: >= 1.6x the fastest framework
    assert B.evaluate_target(c1, {"fastrnn": 1.0, "torch": 2.5, "onnxruntime": 1.7}, 40)["met"] is True
    t = B.evaluate_target(c1, {"fastrnn": 1.0, "torch": 2.5, "onnxruntime": 1.5}, 40)
    assert t["met"] is False and "onnxruntime" in t["rule"] and "1.6x" in t["rule"]
    c512 = B.CASES["lstm_128x512_b1"]  # H = 512: >= 1.3x
    assert B.evaluate_target(c512, {"fastrnn": 1.0, "torch": 1.35}, 40)["met"] is True
    assert B.evaluate_target(c512, {"fastrnn": 1.0, "torch": 1.25}, 40)["met"] is False
    rnnt = B.CASES["rnnt_pred_step"]  # batch-1 step, H = 640: >= 1.3x
    assert B.evaluate_target(rnnt, {"fastrnn": 1.0, "onnxruntime": 1.35}, 40)["met"] is True
    assert B.evaluate_target(rnnt, {"fastrnn": 1.0, "onnxruntime": 1.25}, 40)["met"] is False
    cb = B.CASES["lstm_32x128_b32"]  # batch >= 32 with H >= 128: faster and >= 80% of peak
    f = B.flops(cb) / 1e9
    assert B.evaluate_target(cb, {"fastrnn": f / 33.0, "torch": f / 30.0}, 40)["met"] is True  # 82% of peak
    t = B.evaluate_target(cb, {"fastrnn": f / 31.0, "torch": f / 20.0}, 40)  # 1.55x faster, but 77% of peak
    assert t["met"] is False and t["fastrnn_peak_fraction"] == pytest.approx(31 / 40)
    assert B.evaluate_target(cb, {"fastrnn": f / 35.0, "torch": f / 36.0}, 40)["met"] is False  # slower
    assert B.evaluate_target(cb, {"fastrnn": f / 35.0, "torch": f / 30.0}, None)["met"] is None  # peak unknown
    small = B.CASES["lstm_8x64_b32"]  # H < 128 at batch 32: faster is enough
    assert B.evaluate_target(small, {"fastrnn": 1.0, "torch": 1.01}, 40)["met"] is True
    assert B.evaluate_target(small, {"fastrnn": 1.0, "torch": 0.99}, 40)["met"] is False
    # batch 1 with the weight-read roofline: W_hh (256 KiB) per step at 100 GB/s, 100 steps = 262.144 us,
    # plus the input projection (2 * 100 * 4 * 128 * 32 FLOPs) at 40 GFLOP/s = 81.92 us: 344.064 us
    wr = {"bytes_per_step": 4 * 4 * 128 * 128, "gbps": 100.0, "cores": 1}
    t = B.evaluate_target(c1, {"fastrnn": 500e-6, "onnxruntime": 550e-6}, 40, wr)
    assert t["roofline_s"] == pytest.approx(344.064e-6)
    assert t["fastrnn_roofline_fraction"] == pytest.approx(344.064 / 500)
    assert t["ceiling"] == pytest.approx(550 / 344.064) and t["ceiling_below_target"] is True  # 1.599x < 1.6x
    t2 = B.evaluate_target(c1, {"fastrnn": 500e-6, "onnxruntime": 550e-6}, 40, dict(wr, cores=2))
    assert t2["roofline_s"] == pytest.approx(131.072e-6 + 81.92e-6) and t2["ceiling_below_target"] is False
    t3 = B.evaluate_target(c1, {"fastrnn": 500e-6, "onnxruntime": 550e-6}, None, wr)  # no peak: W_hh only
    assert t3["roofline_s"] == pytest.approx(262.144e-6)
    assert "ceiling" not in B.evaluate_target(c1, {"fastrnn": 1.0, "torch": 2.0}, 40, dict(wr, gbps=None))
    assert "ceiling" not in B.evaluate_target(cb, {"fastrnn": 1.0, "torch": 2.0}, 40, wr)  # batch 32: none
    res = {"case": c1.name, "engines": {}, "weight_read": wr, "target": dict(t, met=False)}
    note = "\n".join(B.case_notes(res))
    assert "target missed" in note and "roofline: W_hh 256 KiB read per step at 100 GB/s" in note
    assert "0.3441 ms per call" in note and "fastrnn at 69% of it" in note and "1.60x (the target is beyond it)" in note
    met = dict(res, case="other", target={"met": True, "rule": ""})
    s = B.summary([res, met, dict(res, case="within", target=dict(t2, met=False))])
    assert s["missed"] == [c1.name, "within"] and s["beyond_roofline"] == [c1.name]
    line = B.summary_line({"summary": s, "meta": {"threads": 1}})
    assert f"missed 2 ({c1.name}, within); 1 of them beyond the float32 roofline's ceiling ({c1.name})" in line
    # a step case reads W_ih as well (12,800 KiB for LSTM 640 -> 640): no projection term left
    wr_step = {"bytes_per_step": 4 * 4 * 640 * (640 + 640), "gbps": 100.0, "cores": 1}
    t = B.evaluate_target(rnnt, {"fastrnn": 200e-6, "onnxruntime": 250e-6}, 40, wr_step)
    assert t["roofline_s"] == pytest.approx(131.072e-6) and t["ceiling"] == pytest.approx(250 / 131.072)
    note = B.roofline_note({"mode": "step", "weight_read": wr_step, "target": t})
    assert "W_ih + W_hh 12800 KiB read per step" in note and "projection" not in note and "66% of it" in note
    lm = B.CASES["word_lm_b20"]  # batch 20: faster
    assert B.evaluate_target(lm, {"fastrnn": 1.0, "keras_xla": 1.1}, 40)["met"] is True
    step = B.CASES["step_lstm_8x64"]  # the per-step target: >= 15x ONNX Runtime and >= 25x torch
    assert B.evaluate_target(step, {"fastrnn": 1.0, "onnxruntime": 16, "torch": 26}, 40)["met"] is True
    t = B.evaluate_target(step, {"fastrnn": 1.0, "onnxruntime": 14, "torch": 26}, 40)
    assert t["met"] is False and ">= 15x onnxruntime" in t["rule"]
    assert B.evaluate_target(step, {"fastrnn": 1.0, "onnxruntime": 16, "torch": 24}, 40)["met"] is False
    assert B.evaluate_target(cb, {"fastrnn": 1.0}, 40)["met"] is None
    assert B.evaluate_target(cb, {"torch": 1.0}, 40)["met"] is None


# ------------------------------------------------------------------------- engine builders
KERAS_CONFIGS = [
    dict(cell="lstm"), dict(cell="gru"), dict(cell="rnn"), dict(cell="rnn", nonlinearity="relu"),
    dict(cell="lstm", bidirectional=True), dict(cell="gru", bidirectional=True),
    dict(cell="lstm", layers=2), dict(cell="gru", layers=2, bidirectional=True), dict(cell="rnn", layers=2),
    dict(cell="gru", bias=False),
]


@pytest.mark.parametrize("cfg", KERAS_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_keras_weight_copy_matches_torch(cfg):
    torch = require("torch")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = require("keras")
    if keras.backend.backend() != "tensorflow":  # pragma: no cover
        pytest.skip("keras was imported with another backend")
    cfg = dict(cfg)
    m = torch_module(torch, cfg.pop("cell"), 3, 5, **cfg)
    x = np.random.default_rng(1).standard_normal((2, 7, 3)).astype(np.float32)
    model = B.keras_from_torch(m)
    got = np.asarray(model(x, training=False))
    np.testing.assert_allclose(got, torch_out(torch, m, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg", [dict(cell="lstm"), dict(cell="gru", layers=2, bidirectional=True),
                                 dict(cell="rnn", bidirectional=True), dict(cell="lstm", layers=2)],
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_onnx_engines_match_torch(engine, cfg):
    require("torch")
    require("onnx")
    require(engine)
    cfg = dict(cfg)
    case = B.Case("t", cfg.pop("cell"), 3, 6, 4, 8, **cfg)
    ctx = B.Context(case, threads=1)
    x = B.make_input(case)
    f = B.FACTORIES[engine](ctx)
    diff, seconds = B.check_engine(f, x, ctx.reference(x))  # raises when it differs by more than 1e-4
    assert diff <= 1e-5 and seconds >= 0
    np.testing.assert_allclose(f(x), ctx.reference(x), atol=1e-5)


STEP_CONFIGS = [dict(cell="lstm", layers=2), dict(cell="gru"), dict(cell="rnn", layers=2)]


@pytest.mark.parametrize("cfg", STEP_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("engine", ["fastrnn", "torch", "onnxruntime", "openvino"])
def test_step_engines_match_torch(engine, cfg):
    """One step per call, state carried: every step of the check equals torch's sequence output.
    (The Keras step engines fix TensorFlow's threads: they are checked in a fresh process, smoke_json.)"""
    require("torch")
    for m in B._REQUIRES[engine]:
        require(m)
    cfg = dict(cfg)
    case = B.Case("t", cfg.pop("cell"), 2, 1, 3, 5, mode="step", **cfg)
    ctx = B.Context(case, threads=1)
    try:
        x = B.make_input(case)
        f, x0, diff, seconds = B.build_checked(engine, ctx, x, ctx.reference(x))
        assert diff <= 1e-5 and seconds >= 0 and x0.shape == (2, 3) and x0.flags.c_contiguous
        stepper = B.STEP_FACTORIES[engine](ctx)  # by hand: steps 0..T-1 from zeros give torch's outputs
        ys = [np.array(stepper.call(np.ascontiguousarray(x[:, t]))) for t in range(x.shape[1])]
        np.testing.assert_allclose(np.stack(ys, 1), ctx.reference(x), atol=1e-5)
        stepper.reset()
        np.testing.assert_allclose(stepper.call(np.ascontiguousarray(x[:, 0])), ctx.reference(x)[:, 0], atol=1e-5)
    finally:
        ctx.close()


def test_onnx_step_model_takes_the_state():
    require("torch")
    onnx = require("onnx")
    case = B.CASES["dtln_step"]
    m = onnx.load_from_string(B.onnx_step_from_torch(B.build_torch(case), case))
    dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [(i.name, dims(i)) for i in m.graph.input] == [("x", [1, 1, 257]), ("h", [2, 1, 128]), ("c", [2, 1, 128])]
    assert [o.name for o in m.graph.output] == ["y", "h_out", "c_out"]


def test_a_stepper_that_drops_its_state_fails_the_check(monkeypatch):
    require("torch")
    torch_step = B.STEP_FACTORIES["torch"]

    def stateless(ctx):
        good = torch_step(ctx)

        def call(x):
            good.reset()
            return good.call(x)
        return B.Stepper(call, good.reset)

    monkeypatch.setitem(B.STEP_FACTORIES, "torch", stateless)
    res = B.bench_case(B.CASES["smoke_step"], ["fastrnn", "torch"], threads=1, min_time=0.01, pause=0)
    assert res["engines"]["fastrnn"]["status"] == "ok" and res["mode"] == "step"
    assert res["engines"]["torch"]["status"] == "failed" and "differs from torch" in res["engines"]["torch"]["error"]


def test_fast_calls_are_timed_in_bursts():
    require("torch")
    res = B.summarize_case(B.bench_case(B.CASES["smoke_step"], ["fastrnn"], threads=1, min_time=0.01, pause=0), 40.0)
    e = res["engines"]["fastrnn"]
    assert e["calls_per_sample"] > 1 and e["n"] >= B.MIN_RUNS and len(e["samples_ms"]) == e["n"]
    assert 0 < e["median_ms"] < 1.0 and res["flops"] == B.flops(B.CASES["smoke_step"])


def test_failing_engines_are_reported_not_raised(monkeypatch):
    require("torch")

    def raising(ctx):
        def f(x):
            raise RuntimeError("boom")
        return f

    def wrong(ctx):
        ref = B.FACTORIES["torch"](ctx)
        return lambda x: ref(x) + 1e-3

    def unbuildable(ctx):
        raise ImportError("no such thing")

    monkeypatch.setitem(B.FACTORIES, "keras_call", raising)
    monkeypatch.setitem(B.FACTORIES, "keras_predict", wrong)
    monkeypatch.setitem(B.FACTORIES, "keras_xla", unbuildable)
    for e in ("keras_call", "keras_predict", "keras_xla"):
        monkeypatch.setitem(B._REQUIRES, e, ())
    engines = ["fastrnn", "torch", "keras_call", "keras_predict", "keras_xla"]
    res = B.summarize_case(B.bench_case(B.CASES["smoke"], engines, threads=1, min_time=0.01, pause=0), 40.0)
    e = res["engines"]
    assert e["fastrnn"]["status"] == "ok" and e["torch"]["status"] == "ok"
    assert e["fastrnn"]["n"] >= B.MIN_RUNS and len(e["fastrnn"]["samples_ms"]) == e["fastrnn"]["n"]
    assert e["keras_call"] == {"status": "failed", "error": "RuntimeError: boom"}
    assert e["keras_predict"]["status"] == "failed" and "differs from torch by 0.001" in e["keras_predict"]["error"]
    assert e["keras_xla"]["status"] == "failed" and "ImportError" in e["keras_xla"]["error"]
    assert res["fastest_framework"] == "torch" and res["fastrnn_vs_fastest"] > 0
    row = B.table_row(res, engines)
    assert row.startswith("smoke") and row.count("FAILED") == 3
    notes = "\n".join(B.case_notes(res))
    assert "keras_call failed: RuntimeError: boom" in notes
    assert B.summary([res])["failed_engines"] == ["smoke:keras_call", "smoke:keras_predict", "smoke:keras_xla"]


def test_progress_line():
    import io

    s = io.StringIO()
    p = B.Progress(14, stream=s, enabled=True)
    p.step()
    p.show("lstm_32x128_b32", "keras_xla", "timing 1/5")
    p.clear()
    assert "\r[ 2/14] lstm_32x128_b32 keras_xla timing 1/5" in s.getvalue() and "\n" not in s.getvalue()
    quiet = io.StringIO()
    B.Progress(3, stream=quiet).show("a", "b")  # not a terminal: silent
    assert quiet.getvalue() == ""


# ------------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def smoke_json(tmp_path_factory):
    """`fastrnn bench smoke smoke_step rtneural_gru_8 --threads 1 --json` with every engine, in a fresh
    process: a sequence case, a 2-layer LSTM step case and a GRU step case."""
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    r = cli("bench", "smoke", "smoke_step", "rtneural_gru_8", "--threads", "1", "--json", out, "--min-time", "0.01")
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def _lscpu_model_name():
    import shutil

    if not shutil.which("lscpu"):
        return None
    out = subprocess.run(["lscpu"], capture_output=True, text=True, env=dict(os.environ, LC_ALL="C")).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name:")), None)


def test_json_has_the_fields(smoke_json):
    import fastrnn

    path, stdout = smoke_json
    d = json.loads(path.read_text())
    assert d["fastrnn_bench"] == B.JSON_FORMAT and len(d["runs"]) == 1
    run = d["runs"][0]
    meta = run["meta"]
    for k in ("date", "cpu", "cpu_count", "threads", "isa", "blas", "blas_kernel", "versions", "engines",
              "fma_peak_gflops", "fma_peak_isa", "numpy_blas", "elapsed_s"):
        assert k in meta, k
    assert meta["threads"] == 1 and meta["versions"]["fastrnn"] and "sgemm_gflops" in meta["numpy_blas"]
    info = fastrnn.info()
    assert meta["isa"] == meta["fma_peak_isa"] == info["isa"]
    assert meta["blas_kernel"] != "unknown" and f"(kernel {meta['blas_kernel']})" in info["blas"]
    if _lscpu_model_name():
        assert meta["cpu"] == _lscpu_model_name()
    seq, step, gru = run["cases"]
    assert seq["case"] == "smoke" and seq["flops"] == B.flops(B.CASES["smoke"]) and seq["mode"] == "sequence"
    assert step["case"] == "smoke_step" and step["mode"] == "step" and step["check_steps"] == B.CHECK_STEPS
    assert gru["case"] == "rtneural_gru_8" and gru["mode"] == "step"
    assert "note: rtneural_*: RTNeural's own figures are not included" in stdout
    # batch 1 (rtneural_gru_8): the roofline's inputs, measured in fastrnn's process; batch 2: none
    assert gru["weight_read"]["bytes_per_step"] == 4 * 3 * 8 * (8 + 8) and gru["weight_read"]["cores"] == 1
    assert gru["weight_read"]["gbps"] > 0 and gru["target"]["roofline_s"] > 0 and "ceiling" in gru["target"]
    assert "weight_read" not in seq and "weight_read" not in step
    for case in (seq, step, gru):
        for k in ("fastest_framework", "fastrnn_vs_fastest", "fastrnn_gflops", "fastrnn_peak_fraction", "target"):
            assert k in case, k
        assert "met" in case["target"] and "rule" in case["target"]
        for name in B.ENGINES:
            e = case["engines"][name]
            if B.missing_modules(name):
                assert e["status"] == "skipped"
                continue
            assert e["status"] == "ok", (case["case"], name, e)  # keras (all three), ORT and OV agree with torch
            assert e["n"] >= B.MIN_RUNS and e["median_ms"] > 0 and len(e["samples_ms"]) == e["n"]
            assert e["calls_per_sample"] >= 1
            assert e["max_abs_diff"] is not None and e["max_abs_diff"] <= B.TOLERANCE
            if name != "fastrnn":
                assert e["ratio_vs_fastrnn"] > 0
    assert set(run["summary"]) >= {"cases", "targets_met", "targets_missed", "missed", "failed_engines"}
    # the printed report: header (machine, ISA and its FMA peak, BLAS kernel, threads), table rows, summary line
    for s in (f"| {meta['cpu']} |", f"isa={info['isa']}", f"(kernel {meta['blas_kernel']})", "threads: 1",
              f"FMA peak ({info['isa']}):", "numpy sgemm", "\nsmoke ", "\nsmoke_step ", "\nrtneural_gru_8 ",
              "summary (threads=1): targets met"):
        assert s in stdout, s


def test_from_json_prints_and_plots(smoke_json, tmp_path):
    require("matplotlib")
    path, _ = smoke_json
    png = tmp_path / "out.png"
    r = cli("bench", "--plot", png, "--from-json", path, path)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.stdout.count("summary (threads=1)") == 2 and r.stdout.count("\nsmoke_step ") == 2


def test_plot_in_process(smoke_json, tmp_path):
    require("matplotlib")
    runs = B.load_runs([smoke_json[0]])
    out = B.plot(runs, str(tmp_path / "p.png"))
    assert os.path.getsize(out) > 1000


def test_bench_usage_errors():
    r = cli("bench", "no_such_case", "--threads", "1")
    assert r.returncode == 2 and "no case matches" in r.stderr
    r = cli("bench", "smoke", "--engines", "fastrnn,nope", "--threads", "1")
    assert r.returncode == 2 and "unknown engine" in r.stderr
    r = cli("bench", "--from-json", os.devnull)
    assert r.returncode == 2 and "error" in r.stderr
    r = cli("bench", "--list")
    assert r.returncode == 0 and "lstm_32x128_b32" in r.stdout and "(quick)" in r.stdout
    for name in WORKLOADS:
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name + " "))
        assert "(workload)" in line, line
    r = cli("bench", "--stream", "word_lm_b20")
    assert r.returncode == 2 and "not step cases: word_lm_b20" in r.stderr


def test_help_names_the_workloads_and_modes():
    r = cli("bench", "--help")
    assert r.returncode == 0
    for s in ("--isolate-engines", "--stream", "--cold", "--quick", "rtneural_", "dtln_step", "rnnt_pred_step",
              "silero_step", "word_lm_b20"):
        assert s in r.stdout, s


def test_without_threads_runs_one_process_per_thread_count(tmp_path):
    out = tmp_path / "t.json"
    r = cli("bench", "smoke", "--engines", "fastrnn,torch", "--json", out, "--min-time", "0.01")
    assert r.returncode == 0, r.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [run["meta"]["threads"] for run in runs] == sorted({1, os.cpu_count()})
    expected = ["fastrnn"] + ([] if B.missing_modules("torch") else ["torch"])
    assert all(run["meta"]["engines"] == expected for run in runs)


def test_cold_is_wired_lazily(monkeypatch, tmp_path, capsys):
    import types

    from fastrnn import cli as C

    fake = types.ModuleType("fastrnn.bench.cold")
    seen = {}

    def run_cold(threads=1, out=print):
        seen["threads"] = threads
        out("cold rows")
        return [{"engine": "fastrnn", "cold_s": 0.1}]

    fake.run_cold = run_cold
    monkeypatch.setitem(sys.modules, "fastrnn.bench.cold", fake)
    out = tmp_path / "cold.json"
    assert C.main(["bench", "--cold", "--threads", "2", "--json", str(out)]) == 0
    assert seen == {"threads": 2} and json.loads(out.read_text())[0]["engine"] == "fastrnn"
    monkeypatch.setitem(sys.modules, "fastrnn.bench.cold", None)  # import fails
    assert C.main(["bench", "--cold"]) == 2
    assert "bench --cold is not available" in capsys.readouterr().err


def test_isolate_engines_runs_each_engine_in_its_own_process(tmp_path):
    require("torch")
    out = tmp_path / "iso.json"
    r = cli("bench", "smoke_step", "smoke", "rtneural_lstm_8", "--threads", "1", "--isolate-engines", "--engines",
            "fastrnn,torch", "--json", out, "--min-time", "0.01")
    assert r.returncode == 0, r.stderr
    (run,) = json.loads(out.read_text())["runs"]
    meta = run["meta"]
    assert meta["isolated_engines"] is True and meta["engines"] == ["fastrnn", "torch"] and meta["threads"] == 1
    pids = {e: m["pid"] for e, m in meta["engine_meta"].items()}
    assert set(pids) == {"fastrnn", "torch"} and len(set(pids.values())) == 2  # two fresh processes
    if "OMP_WAIT_POLICY" not in os.environ:  # torch's reference workers sleep in the other engines' processes
        assert meta["engine_meta"]["fastrnn"]["omp_wait_policy"] == "PASSIVE"
        assert meta["engine_meta"]["torch"]["omp_wait_policy"] is None
    assert [c["case"] for c in run["cases"]] == ["smoke_step", "smoke", "rtneural_lstm_8"]
    assert run["cases"][2]["weight_read"]["bytes_per_step"] == 4 * 4 * 8 * (8 + 8)  # from fastrnn's process
    assert "ceiling" in run["cases"][2]["target"]
    for c in run["cases"]:  # merged: torch's time over fastrnn's, from different processes
        assert c["engines"]["fastrnn"]["status"] == "ok" and c["engines"]["torch"]["status"] == "ok"
        assert c["engines"]["torch"]["ratio_vs_fastrnn"] == pytest.approx(
            c["engines"]["torch"]["median_ms"] / c["engines"]["fastrnn"]["median_ms"])
        assert c["fastest_framework"] == "torch" and c["target"]["met"] in (True, False)
    assert r.stdout.count("\nsmoke_step ") == 1 and "own fresh process" in r.stdout
    assert "summary (threads=1)" in r.stdout and "[isolate-engines] threads=1: torch (2/2)" in r.stderr


def test_merge_reports_an_engine_whose_process_failed():
    require("torch")
    lines = []
    one = B.run(["smoke"], threads=None, min_time=0.01, engines="fastrnn", out=lines.append)
    merged = B.merge_engine_runs({"fastrnn": one, "torch": "exit status -11"}, ["smoke"])
    (c,) = merged["cases"]
    assert c["engines"]["fastrnn"]["status"] == "ok"
    assert c["engines"]["torch"] == {"status": "failed", "error": "its process failed: exit status -11"}
    assert c["target"]["met"] is None and merged["summary"]["failed_engines"] == ["smoke:torch"]
    with pytest.raises(RuntimeError, match="every engine"):
        B.merge_engine_runs({"fastrnn": "boom"}, ["smoke"])


def test_best_of_sweeps_takes_each_engines_lowest_median():
    require("torch")
    import copy

    lines = []
    one = B.run(["rtneural_lstm_8"], threads=1, min_time=0.01, engines="fastrnn,torch", out=lines.append)
    a, b = copy.deepcopy(one), copy.deepcopy(one)
    (ca,), (cb,) = a["cases"], b["cases"]
    ca["engines"]["fastrnn"]["median_ms"], cb["engines"]["fastrnn"]["median_ms"] = 1.0, 0.5
    ca["engines"]["torch"]["median_ms"] = 0.3
    cb["engines"]["torch"] = {"status": "failed", "error": "boom"}  # a sweep where torch failed
    ca["weight_read"] = dict(ca["weight_read"], gbps=1.0)
    cb["weight_read"] = dict(cb["weight_read"], gbps=2.0)
    best = B.best_of_sweeps([a, b])
    (c,) = best["cases"]
    f, t = c["engines"]["fastrnn"], c["engines"]["torch"]
    assert (f["median_ms"], f["sweep"], f["sweep_medians_ms"]) == (0.5, 2, [1.0, 0.5])
    assert (t["status"], t["median_ms"], t["sweep"], t["sweep_medians_ms"]) == ("ok", 0.3, 1, [0.3, None])
    assert t["ratio_vs_fastrnn"] == pytest.approx(0.3 / 0.5) and c["fastest_framework"] == "torch"
    assert c["fastrnn_vs_fastest"] == pytest.approx(0.6) and c["target"]["met"] is False
    assert c["weight_read"]["gbps"] == 2.0  # from the sweep fastrnn's time comes from
    assert best["meta"]["sweeps"] == 2 and any("best of 2 sweeps" in n for n in best["meta"]["notes"])
    assert best["summary"]["missed"] == ["rtneural_lstm_8"]
    assert B.best_of_sweeps([a]) is a
    b["cases"][0]["case"] = "other"
    with pytest.raises(RuntimeError, match="different cases"):
        B.best_of_sweeps([a, b])
    with pytest.raises(ValueError, match="at least 1"):
        B.run_in_subprocesses(["smoke"], sweeps=0)


def test_sweeps_on_the_command_line(tmp_path):
    out = tmp_path / "sw.json"
    r = cli("bench", "smoke", "--threads", "1", "--engines", "fastrnn", "--sweeps", "2", "--json", out,
            "--min-time", "0.01")
    assert r.returncode == 0, r.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["meta"]["sweeps"] == 2 and run["meta"]["threads"] == 1
    f = run["cases"][0]["engines"]["fastrnn"]
    assert f["sweep"] in (1, 2) and len(f["sweep_medians_ms"]) == 2 and f["median_ms"] == min(f["sweep_medians_ms"])
    assert "[sweeps] threads=1: sweep 2/2" in r.stderr and "best of 2 sweeps" in r.stdout
    for bad in (["--sweeps", "0"], ["--sweeps", "2", "--stream"], ["--sweeps", "2", "--from-json", str(out)]):
        r = cli("bench", *bad)
        assert r.returncode == 2 and "sweeps" in r.stderr, bad


def test_run_notes_and_header_in_process():
    import fastrnn

    lines = []
    n = fastrnn.get_num_threads()
    run = B.run(["rtneural_gru_8"], threads=n, min_time=0.01, engines="fastrnn", out=lines.append)
    assert fastrnn.get_num_threads() == n
    text = "\n".join(lines)
    assert "note: rtneural_*: RTNeural's own figures are not included" in text
    assert run["cases"][0]["mode"] == "step" and run["cases"][0]["engines"]["fastrnn"]["status"] == "ok"


def test_stream_rows():
    require("torch")
    lines = []
    rows = B.run_stream(["smoke_step"], threads=1, rounds=1, number=20, out=lines.append)
    (row,) = rows
    assert row["case"] == "smoke_step"
    for k in ("fastrnn", "fastrnn_pybind11", "torch_cell", "torch_layer", "cpp_step_only"):
        assert row[f"{k}_us"] > 0, k
    if not B.missing_modules("onnxruntime"):
        assert row["onnxruntime_us"] > 0
    assert "smoke_step | fastrnn:" in lines[-1] and not any("unavailable" in ln for ln in lines)
    with pytest.raises(ValueError, match="not step cases"):
        B.run_stream(["smoke"], out=lines.append)
