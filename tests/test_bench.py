"""`fastrnn bench` machinery: engine builders (Keras weight copy, ONNX Runtime, OpenVINO) against
torch, failure reporting, the case grid and FLOP formula, --json fields, --plot / --from-json.
No timing assertions: the timings themselves are only checked for presence and type."""
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


def test_grid_and_selection():
    assert len(B.GRID) == 27 + 6 and len(set(B.GRID)) == len(B.GRID)
    for name in ("lstm_8x64_b1", "gru_32x128_b32", "rnn_128x512_b256", "lstm2_h128_b256", "bilstm_h128_b1"):
        assert name in B.GRID
    assert all(B.CASES[n].steps == 100 for n in B.GRID)
    assert B.select_cases() == B.GRID
    assert set(B.select_cases(quick=True)) == set(B.QUICK) and 0 < len(B.QUICK) <= 12
    assert B.select_cases(["gru_*_b1"]) == ["gru_8x64_b1", "gru_32x128_b1", "gru_128x512_b1"]
    assert B.select_cases(["small_seq", "lstm_8x64_b1", "small_seq"]) == ["small_seq", "lstm_8x64_b1"]
    with pytest.raises(ValueError, match="no case matches"):
        B.select_cases(["nope_*"])
    assert B.select_engines("torch, fastrnn") == ["torch", "fastrnn"]
    assert B.select_engines(None) == list(B.ENGINES)
    with pytest.raises(ValueError, match="unknown engine"):
        B.select_engines("fastrnn,tensorrt")


def test_target_rules():
    c1 = B.CASES["lstm_32x128_b1"]
    assert B.evaluate_target(c1, {"fastrnn": 1.0, "torch": 2.5, "onnxruntime": 2.1}, 40)["met"] is True
    t = B.evaluate_target(c1, {"fastrnn": 1.0, "torch": 2.5, "onnxruntime": 1.9}, 40)
    assert t["met"] is False and "onnxruntime" in t["rule"]
    c512 = B.CASES["lstm_128x512_b1"]
    assert B.evaluate_target(c512, {"fastrnn": 1.0, "torch": 1.35}, 40)["met"] is True
    assert B.evaluate_target(c512, {"fastrnn": 1.0, "torch": 1.25}, 40)["met"] is False
    cb = B.CASES["lstm_32x128_b32"]  # 0.524 GFLOP
    f = B.flops(cb) / 1e9
    # framework at 25% of a 40 GFLOP/s peak: fastrnn must be 1.5x faster
    slow_fw = f / 10.0
    assert B.evaluate_target(cb, {"fastrnn": slow_fw / 1.6, "torch": slow_fw}, 40)["met"] is True
    assert B.evaluate_target(cb, {"fastrnn": slow_fw / 1.4, "torch": slow_fw}, 40)["met"] is False
    # framework at 75% of peak: fastrnn must reach 85% of peak (and be faster)
    fast_fw = f / 30.0
    assert B.evaluate_target(cb, {"fastrnn": f / 35.0, "torch": fast_fw}, 40)["met"] is True
    assert B.evaluate_target(cb, {"fastrnn": f / 33.0, "torch": fast_fw}, 40)["met"] is False
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
    """`fastrnn bench smoke --threads 1 --json` with every engine, in a fresh process."""
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    r = cli("bench", "smoke", "--threads", "1", "--json", out, "--min-time", "0.01")
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_json_has_the_fields(smoke_json):
    path, stdout = smoke_json
    d = json.loads(path.read_text())
    assert d["fastrnn_bench"] == B.JSON_FORMAT and len(d["runs"]) == 1
    run = d["runs"][0]
    meta = run["meta"]
    for k in ("date", "cpu", "cpu_count", "threads", "isa", "blas", "versions", "engines", "fma_peak_gflops",
              "numpy_blas", "elapsed_s"):
        assert k in meta, k
    assert meta["threads"] == 1 and meta["versions"]["fastrnn"] and "sgemm_gflops" in meta["numpy_blas"]
    (case,) = run["cases"]
    assert case["case"] == "smoke" and case["flops"] == B.flops(B.CASES["smoke"])
    for k in ("fastest_framework", "fastrnn_vs_fastest", "fastrnn_gflops", "fastrnn_peak_fraction", "target"):
        assert k in case, k
    assert "met" in case["target"] and "rule" in case["target"]
    for name in B.ENGINES:
        e = case["engines"][name]
        if B.missing_modules(name):
            assert e["status"] == "skipped"
            continue
        assert e["status"] == "ok", (name, e)  # keras (all three), ORT and OV agree with torch
        assert e["n"] >= B.MIN_RUNS and e["median_ms"] > 0 and len(e["samples_ms"]) == e["n"]
        assert e["max_abs_diff"] is not None and e["max_abs_diff"] <= B.TOLERANCE
        if name != "fastrnn":
            assert e["ratio_vs_fastrnn"] > 0
    assert set(run["summary"]) >= {"cases", "targets_met", "targets_missed", "missed", "failed_engines"}
    # the printed report: header, table row, summary line
    for s in ("isa=", "blas:", "threads: 1", "FMA peak", "numpy sgemm", "smoke", "summary (threads=1): targets met"):
        assert s in stdout, s


def test_from_json_prints_and_plots(smoke_json, tmp_path):
    require("matplotlib")
    path, _ = smoke_json
    png = tmp_path / "out.png"
    r = cli("bench", "--plot", png, "--from-json", path, path)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.stdout.count("summary (threads=1)") == 2


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

    fake = types.ModuleType("fastrnn.bench_cold")
    seen = {}

    def run_cold(threads=1, out=print):
        seen["threads"] = threads
        out("cold rows")
        return [{"engine": "fastrnn", "cold_s": 0.1}]

    fake.run_cold = run_cold
    monkeypatch.setitem(sys.modules, "fastrnn.bench_cold", fake)
    out = tmp_path / "cold.json"
    assert C.main(["bench", "--cold", "--threads", "2", "--json", str(out)]) == 0
    assert seen == {"threads": 2} and json.loads(out.read_text())[0]["engine"] == "fastrnn"
    monkeypatch.setitem(sys.modules, "fastrnn.bench_cold", None)  # import fails
    assert C.main(["bench", "--cold"]) == 2
    assert "bench --cold is not available" in capsys.readouterr().err
