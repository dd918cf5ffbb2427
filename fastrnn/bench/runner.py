"""Running cases: build and check every engine of a case, time them side by side, report as it
goes; the same in fresh processes, one per thread count and (``--isolate-engines``) one per engine."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

import numpy as np

from ._child import child_env
from .cases import CASES, RUN_NOTES, Case, flops, make_input, select_cases, step_weight_bytes
from .engines import FACTORIES, STEP_FACTORIES, missing_modules, select_engines
from .machine import cache_read_gbps, machine_info
from .models import Context
from .report import case_notes, header_lines, load_runs, print_run, summary_line, table_header, table_row
from .targets import summarize_case, summary
from .timing import PAUSE, TOLERANCE, Progress, check_engine, check_stepper, time_engines


def _short(e: BaseException, n: int = 160) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:n]}{'...' if len(msg) > n else ''}"


def build_checked(engine: str, ctx: Context, x: np.ndarray,
                  expected: np.ndarray | None) -> tuple[Callable[[Any], Any], np.ndarray, float | None, float]:
    """Build one engine for the case and check it against torch's ``expected`` (None: unchecked).
    Returns ``(f, x_timed, max_abs_diff, seconds of one checked call)``: ``f(x_timed)`` is what gets
    timed (a whole predict, or one step with the state carried).  Raises when it fails or differs."""
    if ctx.case.mode == "step":
        if engine not in STEP_FACTORIES:
            raise NotImplementedError(f"{engine} has no step mode")
        stepper = STEP_FACTORIES[engine](ctx)
        xs = [np.ascontiguousarray(x[:, t]) for t in range(x.shape[1])]
        diff, dt = check_stepper(stepper, xs, expected)
        return stepper.call, xs[0], diff, dt
    f = FACTORIES[engine](ctx)
    diff, dt = check_engine(f, x, expected)
    return f, x, diff, dt


def bench_case(case: Case, engine_names: Sequence[str], threads: int, min_time: float = 0.4,
               progress: Progress | None = None, pause: float = PAUSE) -> dict[str, Any]:
    """Build, check and time every engine on one case; a dict with per-engine results."""
    progress = progress or Progress(len(engine_names), enabled=False)
    t_case = time.perf_counter()
    x = make_input(case)
    ctx = Context(case, threads)
    res: dict[str, Any] = {"case": case.name, "cell": case.cell, "batch": case.batch, "steps": case.steps,
           "input": case.features, "hidden": case.hidden, "layers": case.layers,
           "bidirectional": case.bidirectional, "mode": case.mode, "targets": [list(t) for t in case.targets],
           "describe": case.describe(), "flops": flops(case), "engines": {}}
    if case.mode == "step":
        res["check_steps"] = case.input_steps
    live: dict[str, tuple[Callable[[Any], Any], np.ndarray, float]] = {}
    try:
        expected: np.ndarray | Exception | None = None
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
                f, xt, diff, dt = build_checked(name, ctx, x, expected)
                live[name] = (f, xt, dt)
                res["engines"][name] = {"status": "ok", "max_abs_diff": diff, "setup_s": time.perf_counter() - t0}
            except Exception as e:  # noqa: BLE001 - an engine that fails is reported, never fatal
                res["engines"][name] = {"status": "failed", "error": _short(e)}
        for k, t in time_engines(live, min_time, progress, case.name, pause).items():
            ms = np.array(t["samples"]) * 1e3
            res["engines"][k].update(n=len(ms), calls_per_sample=t["number"], median_ms=float(np.median(ms)),
                                     min_ms=float(ms.min()), mean_ms=float(ms.mean()),
                                     samples_ms=[round(float(v), 6) for v in ms])
    finally:
        ctx.close()
    if case.batch == 1 and res["engines"].get("fastrnn", {}).get("status") == "ok":
        res["weight_read"] = weight_read(case, threads)
    res["elapsed_s"] = time.perf_counter() - t_case
    return res


_READ_GBPS: dict[int, float | None] = {}


def weight_read(case: Case, threads: int) -> dict[str, Any]:
    """The batch-1 roofline's inputs, measured in the process (and on a core) that timed fastrnn:
    the weight bytes every step reads (step_weight_bytes: W_hh, and W_ih too for a step case), one
    core's read bandwidth over a buffer that size (its cache level; one probe per size and process)
    and the cores that could share the reading."""
    nbytes = step_weight_bytes(case)
    if nbytes not in _READ_GBPS:
        _READ_GBPS[nbytes] = cache_read_gbps(max(nbytes, 1024))
    return {"bytes_per_step": nbytes, "gbps": _READ_GBPS[nbytes], "cores": threads}


def run(case_names: Sequence[str] | None = None, threads: int | None = None, min_time: float = 0.4,
        engines: str | list[str] | None = None, quick: bool = False, out: Callable[[str], object] = print,
        progress: Progress | None = None) -> dict[str, Any]:
    """Run the cases in this process with `threads` threads for every engine; prints the report as
    it goes and returns {"meta", "cases", "summary"} (what --json writes, one entry of "runs")."""
    import fastrnn

    t_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = threads or fastrnn.get_num_threads()
    fastrnn.set_num_threads(threads)
    names = select_cases(case_names, quick=quick)
    wanted = select_engines(engines)
    notes: list[str] = []
    engine_names: list[str] = []
    for e in wanted:
        missing = missing_modules(e)
        if missing:
            notes.append(f"{e} skipped: {', '.join(missing)} not installed")
        else:
            engine_names.append(e)
    if importlib.util.find_spec("torch") is None:
        notes.append("torch not installed: fastrnn runs on random weights, unchecked")
    notes += list(dict.fromkeys(RUN_NOTES[n] for n in names if n in RUN_NOTES))
    meta = machine_info(threads, engine_names)
    meta.update(engines=engine_names, requested_engines=wanted, notes=notes, min_time=min_time, tolerance=TOLERANCE,
                argv=sys.argv[1:], pid=os.getpid(), omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))
    for line in header_lines(meta):
        out(line)
    out(table_header(engine_names))
    peak = meta.get("fma_peak_gflops")
    prog = progress if progress is not None else Progress(len(names))
    results: list[dict[str, Any]] = []
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


# ---------------------------------------------------------------------------------- fresh processes
def _child_run(names: Sequence[str], threads: int, engines: Sequence[str], min_time: float, path: str,
               capture: bool) -> dict[str, Any]:
    """`python -m fastrnn.cli bench NAMES --threads N --engines E --json PATH` in a fresh process:
    its run, or raises RuntimeError (with the tail of its output when ``capture``)."""
    cmd = [sys.executable, "-m", "fastrnn.cli", "bench", *names, "--threads", str(threads), "--engines",
           ",".join(engines), "--json", path, "--min-time", str(min_time)]
    env = child_env(OPENBLAS_NUM_THREADS=str(threads), FASTRNN_BENCH_CHILD="1")
    if len(engines) == 1 and engines[0] != "torch" and "OMP_WAIT_POLICY" not in env:
        # A child that times one engine other than torch (--isolate-engines, or --engines naming one)
        # still runs PyTorch for the reference the engine is checked against; its OpenMP workers
        # (GNU libgomp) then kept polling a core into the timed calls of the engine under test, past
        # the PAUSE between them.  Zen 4, 2 threads, `bench_case` lstm_32x128_b1
        # then bilstm_h128_b1 (fastrnn's two directions side by side), five processes each:
        # bilstm 0.44-0.62 ms in four of five, 0.35-0.40 ms in all five with the workers sleeping at
        # once (OMP_WAIT_POLICY=PASSIVE).  Only where torch is not the engine timed (its own
        # workers' polling is part of its speed), and only where the user left the variable unset.
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    sys.stdout.flush()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE if capture else None, text=True)
    if r.returncode != 0 or not os.path.exists(path):
        tail = (r.stdout or "").strip()[-300:] if capture else ""
        raise RuntimeError(f"bench with --threads {threads} --engines {','.join(engines)} failed "
                           f"(exit status {r.returncode})" + (f": {tail}" if tail else ""))
    (res,) = load_runs([path])
    return res


def merge_engine_runs(parts: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """One run from runs of the same cases with one engine each (``parts``: engine -> run, or the
    error of a child that failed): ratios, fastest framework and targets recomputed across them."""
    ok = {e: r for e, r in parts.items() if isinstance(r, dict)}
    if not ok:
        raise RuntimeError("every engine's process failed: " + "; ".join(f"{e}: {r}" for e, r in parts.items()))
    first = next(iter(ok.values()))
    meta = dict(first["meta"])
    meta.update(engines=list(parts), isolated_engines=True,
                elapsed_s=sum(r["meta"].get("elapsed_s") or 0.0 for r in ok.values()))
    notes = list(dict.fromkeys(n for r in ok.values() for n in r["meta"].get("notes", [])))
    meta["notes"] = notes + ["each engine ran in its own fresh process (engines not interleaved)"]
    meta["versions"] = {k: v for r in ok.values() for k, v in r["meta"]["versions"].items()}
    meta["engine_meta"] = {e: {k: r["meta"].get(k) for k in ("pid", "fma_peak_gflops_per_core", "elapsed_s", "date",
                                                                  "omp_wait_policy")}
                           for e, r in ok.items()}
    meta.pop("pid", None)
    by_name = {e: {c["case"]: c for c in r["cases"]} for e, r in ok.items()}
    cases = []
    for name in names:
        res = dict(next(b[name] for b in by_name.values()), engines={})
        for e, r in parts.items():
            res["engines"][e] = (by_name[e][name]["engines"].get(e, {"status": "failed", "error": "no result"})
                                 if e in ok else {"status": "failed", "error": f"its process failed: {r}"})
        res["elapsed_s"] = sum(b[name].get("elapsed_s", 0.0) for b in by_name.values())
        res.pop("weight_read", None)  # fastrnn's process measured it (bench_case)
        if "fastrnn" in by_name and "weight_read" in by_name["fastrnn"][name]:
            res["weight_read"] = by_name["fastrnn"][name]["weight_read"]
        cases.append(summarize_case(res, meta.get("fma_peak_gflops")))
    return {"meta": meta, "cases": cases, "summary": summary(cases)}


def best_of_sweeps(sweeps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One run from several sweeps of the same cases and engines (``--sweeps``): per case and engine,
    the sweep whose median was the lowest (a noisy minute on a shared machine then costs an engine one
    sweep, not its row), its sweep number and every sweep's median recorded beside it; fastrnn's
    batch-1 weight read from the sweep its time comes from; ratios, fastest framework and targets
    recomputed across the chosen sweeps.  Every engine is treated alike."""
    if len(sweeps) == 1:
        return sweeps[0]
    first = sweeps[0]
    names = [c["case"] for c in first["cases"]]
    for r in sweeps[1:]:
        if [c["case"] for c in r["cases"]] != names:
            raise RuntimeError("the sweeps ran different cases")
    meta = dict(first["meta"])
    meta.update(sweeps=len(sweeps), elapsed_s=sum(r["meta"].get("elapsed_s") or 0.0 for r in sweeps))
    meta["notes"] = list(meta.get("notes", [])) + [
        f"best of {len(sweeps)} sweeps: per case and engine, the sweep with the lowest median (each sweep in "
        "fresh processes; every engine alike)"]
    cases = []
    for i, name in enumerate(names):
        per = [r["cases"][i] for r in sweeps]
        res = dict(per[0], engines={})
        res["elapsed_s"] = sum(c.get("elapsed_s", 0.0) for c in per)
        res.pop("weight_read", None)
        for e in per[0]["engines"]:
            entries = [c["engines"].get(e, {"status": "failed", "error": "no result"}) for c in per]
            timed = [k for k, d in enumerate(entries) if d.get("status") == "ok" and "median_ms" in d]
            k = min(timed, key=lambda j: entries[j]["median_ms"]) if timed else 0
            res["engines"][e] = dict(entries[k], sweep=k + 1,
                                     sweep_medians_ms=[d.get("median_ms") for d in entries])
            if e == "fastrnn" and "weight_read" in per[k]:
                res["weight_read"] = per[k]["weight_read"]
        cases.append(summarize_case(res, meta.get("fma_peak_gflops")))
    return {"meta": meta, "cases": cases, "summary": summary(cases)}


def run_in_subprocesses(case_names: Sequence[str] | None = None, thread_counts: Sequence[int] | None = None,
                        min_time: float = 0.4, engines: str | list[str] | None = None, quick: bool = False,
                        isolate: bool = False, out: Callable[[str], object] = print,
                        sweeps: int = 1) -> list[dict[str, Any]]:
    """Fresh processes (TensorFlow fixes its thread pools at start-up): one per thread count
    (default 1, then all cores), each printing its report; with ``isolate``, one per thread count
    and engine, merged into one report per thread count.  ``sweeps`` > 1: all of that, per thread
    count, that many times (the engines' order rotated from sweep to sweep with ``isolate``), then
    one report of the best sweep per case and engine (best_of_sweeps).  Returns the list of runs."""
    if sweeps < 1:
        raise ValueError(f"sweeps must be at least 1, got {sweeps}")
    names = select_cases(case_names, quick=quick)
    wanted = select_engines(engines)
    thread_counts = thread_counts or sorted({1, os.cpu_count() or 1})
    installed = [e for e in wanted if not missing_modules(e)]
    runs = []
    with tempfile.TemporaryDirectory(prefix="fastrnn-bench-") as tmp:
        for n in thread_counts:
            done = []
            for s in range(sweeps):
                tag = f"threads{n}_sweep{s + 1}"
                if sweeps > 1:
                    print(f"[sweeps] threads={n}: sweep {s + 1}/{sweeps}", file=sys.stderr, flush=True)
                if not isolate:
                    done.append(_child_run(names, n, wanted, min_time, os.path.join(tmp, f"{tag}.json"), False))
                    out("")
                    continue
                order = installed[s % len(installed):] + installed[:s % len(installed)] if installed else []
                parts: dict[str, Any] = {}  # engine -> its run, or the error of its process
                for i, e in enumerate(order):
                    print(f"[isolate-engines] threads={n}: {e} ({i + 1}/{len(order)}) in a fresh process",
                          file=sys.stderr, flush=True)
                    try:
                        parts[e] = _child_run(names, n, [e], min_time, os.path.join(tmp, f"{tag}_{e}.json"), True)
                    except RuntimeError as err:
                        parts[e] = str(err)
                r = merge_engine_runs({e: parts[e] for e in installed}, names)
                r["meta"]["requested_engines"] = wanted
                r["meta"]["notes"] = [f"{e} skipped: {', '.join(missing_modules(e))} not installed"
                                      for e in wanted if e not in installed] + r["meta"]["notes"]
                done.append(r)
            best = best_of_sweeps(done)  # one sweep: that run
            if isolate or sweeps > 1:  # (a single child printed its own report)
                print_run(best, out)
                out("")
            runs.append(best)
    return runs
