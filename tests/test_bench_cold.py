"""fastrnn.bench.cold: cold start / peak RSS of fresh processes (fields and checks, no timing claims)."""
import json
import subprocess
import sys

import pytest

from conftest import CHILD_CWD, child_env, require

from fastrnn.bench import cold as bench_cold


@pytest.fixture(scope="module")
def cold_rows():
    require("torch")
    lines = []
    rows = bench_cold.run_cold(threads=1, repeats=1, engines=["fastrnn", "torch"], env=child_env(), cwd=CHILD_CWD,
                               out=lines.append)
    return {r["engine"]: r for r in rows}, "\n".join(lines)


def test_rows_have_the_fields(cold_rows):
    rows, table = cold_rows
    assert list(rows) == ["baseline", "fastrnn", "torch"]
    for name, r in rows.items():
        assert r["status"] == "ok", (name, r.get("error"))
        for f in ("cold_s", "import_s", "load_s", "predict_s", "peak_rss_mib"):
            assert isinstance(r[f], float) and r[f] >= 0, (name, f, r[f])
        assert r["cold_s"] > 0 and r["import_s"] > 0 and r["peak_rss_mib"] > 0
        assert r["cold_s"] >= r["import_s"] + r["load_s"] + r["predict_s"]  # the child's own parts fit inside
        assert r["threads"] == 1 and r["case"] == "small_seq"
        assert len(r["cold_runs_s"]) == 1
        assert name in table
    for name in ("fastrnn", "torch"):
        assert rows[name]["output_check"] == "passed"
        assert rows[name]["max_abs_diff"] <= bench_cold.TOLERANCE
        assert rows[name]["load_s"] > 0 and rows[name]["predict_s"] > 0
        assert rows[name]["time_vs_fastrnn"] > 0 and rows[name]["rss_vs_fastrnn"] > 0
    assert rows["fastrnn"]["time_vs_fastrnn"] == pytest.approx(1.0)
    json.dumps(list(rows.values()))  # --json needs plain values


def test_peak_rss_is_the_childs_own(cold_rows):
    """The parent holds torch (hundreds of MiB); a child's ru_maxrss must not inherit that peak."""
    rows, _ = cold_rows
    for r in rows.values():
        if r.get("vmhwm_mib"):
            assert r["peak_rss_mib"] == pytest.approx(r["vmhwm_mib"], rel=0.1, abs=2.0), r


def test_wrong_or_crashing_engine_is_reported_not_raised(tmp_path, monkeypatch):
    require("torch")
    # a fastrnn child that answers wrongly and a torch child that crashes
    monkeypatch.setitem(bench_cold._BODIES, "fastrnn", bench_cold._BODIES["fastrnn"] + "y = y + 1\n")
    monkeypatch.setitem(bench_cold._BODIES, "torch", "raise SystemExit('boom: no torch today')\n")
    rows = {r["engine"]: r for r in bench_cold.run_cold(repeats=1, engines=["fastrnn", "torch"], env=child_env(),
                                                          cwd=CHILD_CWD, warmup=False, out=lambda s: None)}
    assert rows["baseline"]["status"] == "ok"
    assert rows["fastrnn"]["status"] == "failed" and "wrong answer" in rows["fastrnn"]["error"]
    assert rows["fastrnn"]["output_check"] == "failed"
    assert rows["torch"]["status"] == "failed" and "boom: no torch today" in rows["torch"]["error"]


def test_unknown_engine_is_a_value_error():
    with pytest.raises(ValueError, match="unknown engine"):
        bench_cold.run_cold(engines=["tensorflow-lite"], out=lambda s: None)


def test_default_child_environment_imports_this_fastrnn():
    """Without env=, the children get this environment with the imported fastrnn's directory first."""
    rows = {r["engine"]: r for r in bench_cold.run_cold(repeats=1, engines=["fastrnn"], cwd=CHILD_CWD, warmup=False,
                                                          out=lambda s: None)}
    assert rows["baseline"]["status"] == "ok" and rows["fastrnn"]["status"] == "ok", rows


def test_cold_for_a_named_workload():
    require("torch")
    rows = {r["engine"]: r for r in bench_cold.run_cold(case="word_lm_b20", repeats=1, engines=["fastrnn"],
                                                          env=child_env(), cwd=CHILD_CWD, warmup=False,
                                                          out=lambda s: None)}
    assert rows["fastrnn"]["status"] == "ok" and rows["fastrnn"]["output_check"] == "passed", rows["fastrnn"]
    assert rows["fastrnn"]["case"] == "word_lm_b20"


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "fastrnn.bench.cold", "--engines", "nope"], capture_output=True,
                       text=True, env=child_env(), cwd=CHILD_CWD, timeout=120)
    assert r.returncode == 2 and "unknown engine" in r.stderr and "Traceback" not in r.stderr
