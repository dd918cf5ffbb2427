"""`fastrnn bench --cold`: cold start and peak memory of a fresh process, per engine.

What a user pays the first time: start Python, import the engine, load a model *file*, run the
first predict.  The same model (seeded PyTorch weights) is saved once in each engine's own format
(``.fastrnn``, a torch state dict, ``.onnx``, OpenVINO IR, ``.keras``); then every engine runs in
a fresh child process (``python -c``) that imports, loads, predicts once, saves its output and
prints its own timings.  The child is measured from spawn to exit (the cold start), with its peak
resident memory (``ru_maxrss`` from ``os.wait4``, taken by a lean launcher process: see
:class:`Launcher`); its output is checked against PyTorch's: an engine with a wrong answer is
reported as failed, never timed as if it were right.

A ``baseline`` child (Python + ``import numpy`` + the same harness, no engine) gives the floor that
every engine pays.  Engines are interleaved round by round; the median over rounds is reported.

    python -m fastrnn.bench.cold [--threads N] [--repeats R] [--case NAME] [--engines a,b] [--json F]
"""
from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import IO, Any, Callable, Mapping, Sequence

import numpy as np

from ._child import child_env
from .cases import CASES, Case, make_input
from .engines._keras import keras_from_torch
from .engines._onnx import onnx_from_torch
from .models import build_torch, random_model

ENGINES = ("fastrnn", "torch", "onnxruntime", "openvino", "keras")
# the module each engine needs in the child (missing -> the engine is skipped with a note)
_MODULES = {"fastrnn": "fastrnn", "torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
            "keras": "keras"}
TOLERANCE = 1e-4  # max |engine - torch| for the output check
CHILD_TIMEOUT_S = 300.0

# ---- the child scripts ---------------------------------------------------------------------------
# One self-contained `python -c` script per engine: nothing of fastrnn is imported by the other
# engines' children.  `time` is the only import before t0; json is imported after the timings.
_HEAD = """\
import os, sys, time
t0 = time.perf_counter()
import numpy as np
D, T = sys.argv[1], int(sys.argv[2])
M = {meta!r}
"""
_TAIL = """\
t3 = time.perf_counter()
np.save(os.path.join(D, "out_" + {engine!r} + ".npy"), np.ascontiguousarray(np.asarray(y), dtype=np.float32))
import json
hwm = None
try:  # the peak RSS as the kernel counts it for this process (cross-check of ru_maxrss)
    with open("/proc/self/status") as f:
        hwm = [int(ln.split()[1]) / 1024.0 for ln in f if ln.startswith("VmHWM:")][0]
except (OSError, IndexError, ValueError):
    pass
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "predict_s": t3 - t2, "vmhwm_mib": hwm}}))
"""
_BODIES = {
    "baseline": """\
t1 = time.perf_counter()
t2 = time.perf_counter()
y = np.load(os.path.join(D, "x.npy"))
""",
    "fastrnn": """\
import fastrnn
t1 = time.perf_counter()
fastrnn.set_num_threads(T)
m = fastrnn.load(os.path.join(D, "model.fastrnn"))
t2 = time.perf_counter()
y = m.predict(np.load(os.path.join(D, "x.npy")))
""",
    "torch": """\
import torch
t1 = time.perf_counter()
torch.set_num_threads(T)
cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[M["cell"]]
m = cls(M["features"], M["hidden"], num_layers=M["layers"], bidirectional=M["bidirectional"], batch_first=True)
m.load_state_dict(torch.load(os.path.join(D, "model.pt"), weights_only=True))
m.eval()
t2 = time.perf_counter()
with torch.inference_mode():
    y = m(torch.from_numpy(np.load(os.path.join(D, "x.npy"))))[0].numpy()
""",
    "onnxruntime": """\
import onnxruntime as ort
t1 = time.perf_counter()
so = ort.SessionOptions()
so.intra_op_num_threads = T
so.inter_op_num_threads = 1
sess = ort.InferenceSession(os.path.join(D, "model.onnx"), so, providers=["CPUExecutionProvider"])
t2 = time.perf_counter()
y = sess.run(None, {"x": np.load(os.path.join(D, "x.npy"))})[0]
""",
    "openvino": """\
import openvino as ov
t1 = time.perf_counter()
core = ov.Core()
cm = core.compile_model(os.path.join(D, M["openvino_file"]), "CPU",
                        {"INFERENCE_NUM_THREADS": T, "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1,
                         "PERFORMANCE_HINT": "LATENCY"})
t2 = time.perf_counter()
y = cm(np.load(os.path.join(D, "x.npy")))[0]
""",
    "keras": """\
import keras
import tensorflow as tf
t1 = time.perf_counter()
tf.config.threading.set_intra_op_parallelism_threads(T)
tf.config.threading.set_inter_op_parallelism_threads(1)
m = keras.models.load_model(os.path.join(D, "model.keras"))
t2 = time.perf_counter()
y = m.predict(np.load(os.path.join(D, "x.npy")), verbose=0)
""",
}


def child_script(engine: str, meta: dict[str, Any]) -> str:
    """The `python -c` text of one engine's child (argv: DIR THREADS)."""
    return _HEAD.format(meta=meta) + _BODIES[engine] + _TAIL.format(engine=engine)


# ---- preparing the model files -------------------------------------------------------------------
#: One sequence of an LSTM(32 -> 128), batch 1, 100 steps (the ``small_seq`` case of `fastrnn bench`).
DEFAULT_CASE = "small_seq"


def _resolve_case(case: Case | str | None) -> Case:
    """A :class:`Case` from None (the default), a Case, or a case name of `fastrnn bench`."""

    if case is None:
        case = DEFAULT_CASE
    if isinstance(case, str):
        if case not in CASES:
            raise ValueError(f"unknown case {case!r}; cases: {', '.join(CASES)}")
        return CASES[case]
    return case


def prepare(directory: str, case: Case | str | None = None, engines: Sequence[str] = ENGINES,
            out: Callable[[str], object] = print) -> tuple[dict[str, Any], np.ndarray | None, dict[str, str]]:
    """Write x.npy and each engine's model file into ``directory``.

    Returns ``(meta, reference, problems)``: the case description the children read, the torch
    output on x (None without torch) and ``{engine: error}`` for the files that could not be made.
    """
    case = _resolve_case(case)
    set_tf_log = "TF_CPP_MIN_LOG_LEVEL" not in os.environ  # openvino's converter and keras may import TF
    if set_tf_log:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        return _prepare(directory, case, engines, out)
    finally:
        if set_tf_log:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)


def _prepare(directory: str, case: Case, engines: Sequence[str], out: Callable[[str], object]) -> tuple[dict[str, Any], np.ndarray | None, dict[str, str]]:
    import fastrnn

    meta: dict[str, Any] = {"case": case.name, "cell": case.cell, "features": case.features, "hidden": case.hidden,
            "layers": case.layers, "bidirectional": bool(case.bidirectional), "openvino_file": "model.xml"}
    x = make_input(case)
    np.save(os.path.join(directory, "x.npy"), x)
    problems: dict[str, str] = {}
    try:
        import torch
    except ImportError:
        torch = None  # type: ignore[assignment]
        for e in engines:
            if e != "fastrnn":
                problems[e] = "torch is needed to make this engine's model file"
    if torch is None:
        # fastrnn alone: its own weights, no reference to check against
        random_model(case.cell, case.features, case.hidden, case.layers, case.bidirectional,
                     scale=1.0 / np.sqrt(case.hidden)).save(os.path.join(directory, "model.fastrnn"))
        return meta, None, problems

    module = build_torch(case)
    with torch.inference_mode():
        reference: np.ndarray = module(torch.from_numpy(x))[0].numpy()
    fastrnn.from_torch(module).save(os.path.join(directory, "model.fastrnn"))
    torch.save(module.state_dict(), os.path.join(directory, "model.pt"))

    if "onnxruntime" in engines or "openvino" in engines:
        try:
            with open(os.path.join(directory, "model.onnx"), "wb") as f:
                f.write(onnx_from_torch(module, case.features))
        except Exception as e:  # noqa: BLE001 - reported per engine
            problems["onnxruntime"] = problems["openvino"] = f"ONNX export failed: {type(e).__name__}: {e}"

    if "openvino" in engines and "openvino" not in problems and importlib.util.find_spec("openvino"):
        try:  # OpenVINO's own format (IR, float32 weights); the ONNX file if conversion fails
            import openvino as ov

            ov.save_model(ov.convert_model(os.path.join(directory, "model.onnx")),
                          os.path.join(directory, "model.xml"), compress_to_fp16=False)
        except Exception as e:  # noqa: BLE001
            out(f"  (openvino: IR conversion failed, the child reads model.onnx: {type(e).__name__}: {str(e)[:100]})")
            meta["openvino_file"] = "model.onnx"

    if "keras" in engines and importlib.util.find_spec("keras"):
        try:
            kmodel = keras_from_torch(module)
            diff = float(np.abs(np.asarray(kmodel(x, training=False)) - reference).max())
            if diff > 1e-5:
                raise AssertionError(f"the Keras copy differs from torch by {diff:.3g}")
            kmodel.save(os.path.join(directory, "model.keras"))
        except Exception as e:  # noqa: BLE001
            problems["keras"] = f"cannot make model.keras: {type(e).__name__}: {str(e)[:300]}"
    return meta, reference, problems


# ---- running one child -----------------------------------------------------------------------------
def _tail(text: str | None, n: int = 600) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-n:]


# The children are spawned by a small launcher process, not by this one: Linux folds the RSS high-water
# mark of the parent's memory into a child's ru_maxrss at exec (fork and vfork alike), so a child
# spawned from a parent holding torch + openvino would report the parent's peak, not its own.
_LAUNCHER = r"""
import json, os, subprocess, sys, tempfile, threading, time
for line in sys.stdin:
    job = json.loads(line)
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        t0 = time.perf_counter()
        try:
            p = subprocess.Popen(job["args"], stdout=so, stderr=se, stdin=subprocess.DEVNULL, env=job["env"],
                                 cwd=job["cwd"])
        except OSError as e:
            print(json.dumps({"spawn_error": str(e)}), flush=True)
            continue
        timer = threading.Timer(job["timeout"], p.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
        so.seek(0)
        se.seek(0)
        res = {"wall_s": wall, "returncode": p.returncode, "maxrss_kib": usage.ru_maxrss,
               "stdout": so.read()[-20000:], "stderr": se.read()[-20000:]}
    print(json.dumps(res), flush=True)
"""


class Launcher:
    """A lean helper process that spawns children and reports their wall time and ``ru_maxrss``."""

    def __init__(self) -> None:
        self._p = subprocess.Popen([sys.executable, "-I", "-c", _LAUNCHER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        assert self._p.stdin is not None and self._p.stdout is not None  # both are pipes
        self._in: IO[str] = self._p.stdin
        self._out: IO[str] = self._p.stdout

    def run(self, args: list[str], env: Mapping[str, str], cwd: str, timeout: float) -> dict[str, Any]:
        self._in.write(json.dumps({"args": args, "env": env, "cwd": cwd, "timeout": timeout}) + "\n")
        self._in.flush()
        line = self._out.readline()
        if not line:
            raise RuntimeError("the launcher process died")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        try:
            self._in.close()
        finally:
            try:
                self._p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._p.kill()
                self._p.wait()
            self._out.close()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_child(launcher: Launcher, engine: str, directory: str, threads: int, meta: dict[str, Any],
              env: Mapping[str, str] | None = None, cwd: str | None = None, timeout: float = CHILD_TIMEOUT_S) -> dict[str, Any]:
    """One fresh process: ``{"cold_s", "peak_rss_mib", "import_s", "load_s", "predict_s", "vmhwm_mib"}``
    or with ``"error"``.  Wall time is spawn to exit; peak RSS is the child's ``ru_maxrss``."""
    env = dict(os.environ if env is None else env)
    r = launcher.run([sys.executable, "-c", child_script(engine, meta), directory, str(threads)], env,
                     cwd or directory, timeout)
    if "spawn_error" in r:
        return {"error": f"cannot start {sys.executable}: {r['spawn_error']}"}
    res = {"cold_s": r["wall_s"], "peak_rss_mib": r["maxrss_kib"] / 1024.0}  # ru_maxrss: KiB on Linux
    stdout, stderr = r["stdout"], r["stderr"]
    if r["returncode"] != 0:
        why = "timed out" if r["wall_s"] >= timeout else f"exit status {r['returncode']}"
        return dict(res, error=f"{why}: {_tail(stderr or stdout)}")
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    try:
        res.update(json.loads(lines[-1]))
    except (IndexError, ValueError):
        return dict(res, error=f"no timings on the last stdout line: {_tail(stdout + stderr)}")
    return res


def _check(engine: str, directory: str, reference: np.ndarray | None) -> tuple[float | None, str | None]:
    """(max abs diff or None, error or None) of the child's saved output against torch."""
    path = os.path.join(directory, f"out_{engine}.npy")
    try:
        y = np.load(path)
    except OSError as e:
        return None, f"no output saved ({e})"
    finally:
        if os.path.exists(path):
            os.remove(path)
    if reference is None:
        return None, None
    if y.shape != reference.shape:
        return None, f"wrong output shape {y.shape}, expected {reference.shape}"
    diff = float(np.abs(y.astype(np.float64) - reference).max())
    if not np.isfinite(diff) or diff > TOLERANCE:
        return diff, f"wrong answer: differs from torch by {diff:.3g} (> {TOLERANCE:g})"
    return diff, None


def _has_bytecode(module_file: str | None) -> bool:
    if module_file is None:  # a namespace package: nothing to compile
        return False
    try:
        return os.path.exists(importlib.util.cache_from_source(module_file))
    except (NotImplementedError, ValueError):
        return False


# ---- the benchmark ------------------------------------------------------------------------------
def run_cold(threads: int = 1, case: Case | str | None = None, repeats: int = 3, out: Callable[[str], object] = print,
             engines: Sequence[str] | None = None, env: Mapping[str, str] | None = None, cwd: str | None = None,
             warmup: bool = True, bytecode: bool = True) -> list[dict[str, Any]]:
    """Cold start (spawn to exit: import, load the model file, first predict) and peak RSS per engine.

    * ``engines``: subset of :data:`ENGINES` (default all); ``baseline`` is always measured.
    * ``env`` / ``cwd``: the children's environment (default: this one, with the directory of the
      imported fastrnn first on PYTHONPATH) and working directory (default: the temp directory).
    * ``warmup``: one untimed round first (file cache, bytecode cache).
    * ``bytecode`` (with ``warmup``): when the imported fastrnn has no ``.pyc`` next to it (a source
      checkout run with PYTHONDONTWRITEBYTECODE), its child compiles into a private bytecode cache
      during warm-up, as
      an installed wheel would have; ``False`` measures the checkout as it is (compiling every time).

    Returns one dict per engine (``baseline`` first); never raises for an engine that is missing
    (``status: skipped``), crashes or answers wrongly (``status: failed``, ``error``).
    """
    import fastrnn

    engines = list(engines or ENGINES)
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise ValueError(f"unknown engine(s) {', '.join(bad)}; engines: {', '.join(ENGINES)}")
    case_obj = _resolve_case(case)
    repeats = max(1, int(repeats))
    env = child_env() if env is None else dict(env, TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "2"))

    rows = {"baseline": {"engine": "baseline", "status": "ok", "note": "python + import numpy + harness"}}
    for e in engines:
        rows[e] = {"engine": e, "status": "ok", "note": ""}
        if importlib.util.find_spec(_MODULES[e]) is None:
            rows[e].update(status="skipped", note=f"{_MODULES[e]} not installed")

    with tempfile.TemporaryDirectory(prefix="fastrnn-cold-") as d:
        t_prep = time.perf_counter()
        meta, reference, problems = prepare(d, case_obj, [e for e in engines if rows[e]["status"] == "ok"], out=out)
        out(f"cold start: {case_obj.name} ({case_obj.describe()}), threads={threads}, median of {repeats} "
            f"fresh processes per engine{' after one warm-up' if warmup else ''} "
            f"(files made in {time.perf_counter() - t_prep:.1f} s)")
        for e, why in problems.items():
            if e in rows and rows[e]["status"] == "ok":
                rows[e].update(status="failed", error=why)
        if reference is None and "fastrnn" in rows:
            rows["fastrnn"]["note"] = "unchecked (no torch reference)"
        envs: dict[str, Mapping[str, str]] = {e: env for e in rows}
        no_pyc = not _has_bytecode(fastrnn.__file__) and not _has_bytecode(sys.modules["fastrnn.runtime"].__file__)
        if "fastrnn" in rows and no_pyc and not (bytecode and warmup):
            rows["fastrnn"]["note"] = "no .pyc next to the package: every child compiles fastrnn from source"
        if "fastrnn" in rows and no_pyc and bytecode and warmup:  # compiled once, in the warm-up
            fenv = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
            fenv["PYTHONPYCACHEPREFIX"] = os.path.join(d, "pycache")
            envs["fastrnn"] = fenv
            rows["fastrnn"]["note"] = "no .pyc next to the package: bytecode cached in a temp dir (as installed)"
        runs: dict[str, list[Any]] = {e: [] for e in rows}
        order = [e for e in rows if rows[e]["status"] == "ok"]
        launcher = Launcher()
        try:
            _rounds(launcher, order, rows, runs, envs, d, threads, meta, reference, cwd, warmup, repeats)
        finally:
            launcher.close()
    summary: list[Any] = _summarize(rows, runs, threads, case_obj, reference is not None, out)
    return summary


def _rounds(launcher: Launcher, order: Sequence[str], rows: dict[str, dict[str, Any]], runs: dict[str, list[Any]],
            envs: dict[str, Mapping[str, str]], d: str, threads: int, meta: dict[str, Any], reference: np.ndarray | None,
            cwd: str | None, warmup: bool, repeats: int) -> None:
    """Interleaved rounds (an optional untimed warm-up first); an engine that fails stops running."""
    first = 0 if warmup else 1
    for rnd in range(first, 1 + repeats):  # round 0: the warm-up
        for e in order:
            if rows[e]["status"] != "ok":
                continue
            res = run_child(launcher, e, d, threads, meta, env=envs[e], cwd=cwd)
            out_path = os.path.join(d, f"out_{e}.npy")
            if "error" not in res and e != "baseline":
                diff, err = _check(e, d, reference)
                if diff is not None:
                    rows[e]["max_abs_diff"] = max(diff, rows[e].get("max_abs_diff", 0.0))
                if err:
                    res["error"] = err
            elif os.path.exists(out_path):
                os.remove(out_path)
            if "error" in res:
                rows[e].update(status="failed", error=res["error"])
            elif rnd > 0:
                runs[e].append(res)


_FIELDS = ("cold_s", "import_s", "load_s", "predict_s", "peak_rss_mib", "vmhwm_mib")


def _summarize(rows: dict[str, dict[str, Any]], runs: dict[str, list[Any]], threads: int, case: Case, checked: bool,
               out: Callable[[str], object]) -> list[dict[str, Any]]:
    for e, row in rows.items():
        row.update(case=case.name, threads=threads)
        if row["status"] == "ok" and runs[e]:
            for f in _FIELDS:
                row[f] = float(statistics.median(r[f] for r in runs[e]))
            row["cold_runs_s"] = [r["cold_s"] for r in runs[e]]
            if e != "baseline":
                row["output_check"] = "passed" if checked else "unchecked"
        elif row["status"] == "ok":
            row.update(status="failed", error="no run")
        if row["status"] == "failed" and e != "baseline":
            row["output_check"] = "failed" if "wrong" in row.get("error", "") else "not run"
    base, fr = rows["baseline"], rows.get("fastrnn")
    for e, row in rows.items():
        if row["status"] != "ok":
            continue
        if base["status"] == "ok":
            row["cold_over_baseline_s"] = row["cold_s"] - base["cold_s"]
            row["rss_over_baseline_mib"] = row["peak_rss_mib"] - base["peak_rss_mib"]
        if fr is not None and fr["status"] == "ok":
            row["time_vs_fastrnn"] = row["cold_s"] / fr["cold_s"]
            row["rss_vs_fastrnn"] = row["peak_rss_mib"] / fr["peak_rss_mib"]
    out(format_table(list(rows.values())))
    return list(rows.values())


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (f"{'engine':<12} | {'cold s':>7} | {'import s':>8} | {'load s':>7} | {'1st pred s':>10} | "
            f"{'peak RSS MiB':>12} | {'over floor':>16} | {'vs fastrnn':>14}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            why = r.get("error") or r.get("note") or ""
            lines.append(f"{r['engine']:<12} | {r['status']}: {why.splitlines()[-1] if why else ''}"[:300])
            continue
        over = (f"{r['cold_over_baseline_s']:+.3f} s {r['rss_over_baseline_mib']:+.0f} M"
                if r["engine"] != "baseline" and "cold_over_baseline_s" in r else "")
        ratio = (f"{r['time_vs_fastrnn']:.1f}x {r['rss_vs_fastrnn']:.1f}x"
                 if "time_vs_fastrnn" in r and r["engine"] not in ("fastrnn", "baseline") else "")
        lines.append(f"{r['engine']:<12} | {r['cold_s']:7.3f} | {r['import_s']:8.3f} | {r['load_s']:7.3f} | "
                     f"{r['predict_s']:10.4f} | {r['peak_rss_mib']:12.1f} | {over:>16} | {ratio:>14}")
    notes = [f"  {r['engine']}: {r['note']}" for r in rows if r["status"] == "ok" and r.get("note")]
    for r in rows:  # ru_maxrss against the child's own VmHWM: they should agree
        hwm = r.get("vmhwm_mib") if r["status"] == "ok" else None
        if hwm and abs(r["peak_rss_mib"] - hwm) > 0.1 * hwm:
            notes.append(f"  {r['engine']}: ru_maxrss {r['peak_rss_mib']:.0f} MiB but VmHWM {hwm:.0f} MiB")
    return "\n".join(lines + (["notes:"] + notes if notes else []))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m fastrnn.bench.cold", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--case", default=None, help="a case name of `fastrnn bench` (default: LSTM 32->128, "
                    "batch 1, 100 steps)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        ap.error("--threads and --repeats must be >= 1")
    try:
        rows = run_cold(threads=args.threads, case=args.case, repeats=args.repeats,
                        engines=[e.strip() for e in args.engines.split(",") if e.strip()], warmup=not args.no_warmup)
    except ValueError as e:
        ap.error(str(e))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
