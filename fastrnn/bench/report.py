"""The report of a run: header (machine, ISA, FMA peak, BLAS kernel, threads), one table row per
case, notes, the summary line; the JSON file (``--json`` / ``--from-json``) and the plot."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Sequence

from .engines import _REQUIRES

JSON_FORMAT = 1


def _fmt_ms(v: float) -> str:
    if v < 0.1:  # one step: keep three significant digits
        return f"{v:7.5f}" if v < 0.01 else f"{v:7.4f}"
    return f"{v:7.3f}" if v < 10 else f"{v:7.2f}" if v < 100 else f"{v:7.1f}" if v < 1e5 else f"{v:7.0f}"


def fmt_flops(n: float) -> str:
    """'9.464 GFLOP', '6.554 MFLOP', '1.024 kFLOP'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:8.3f} {unit}FLOP"
    return f"{n:8.0f} FLOP"


def header_lines(meta: dict[str, Any]) -> list[str]:
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
        f"threads: {meta['threads']} (every engine) | FMA peak ({meta.get('fma_peak_isa', meta['isa'])}): " +
        (f"{peak:.1f} GFLOP/s per core x {meta['threads']} = {meta['fma_peak_gflops']:.1f} GFLOP/s" if peak
         else "n/a (this build has no fma_peak_gflops probe)") +
        (f" | numpy sgemm 1024^3: {nb['sgemm_gflops']:.1f} GFLOP/s ({nb.get('name')}, kernel {nb.get('kernel')}, "
         f"{nb.get('threads') or '?'} threads)" if nb.get("sgemm_gflops") else ""),
    ]
    for note in meta.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("times: median ms per call (a batch; step cases: one step); ratio = engine / fastrnn "
                 "(> 1: fastrnn faster); vs = fastest framework / fastrnn")
    return lines


def _fmt_ratio(r: float) -> str:
    return f"{r:6.2f}x" if r < 100 else f"{r:6.1f}x" if r < 1000 else f"{r:6.0f}x"


def _columns(engines: Iterable[str]) -> list[str]:
    return [e for e in engines if e != "fastrnn"]


def table_header(engines: Sequence[str]) -> str:
    cols = "".join(f"{e:>16}" for e in _columns(engines))
    return f"{'case':<18}{'fastrnn':>9}{cols}  {'fastest':<13}{'vs':>6}{'GF/s':>7}{'%peak':>6}  target"


def table_row(res: dict[str, Any], engines: Sequence[str]) -> str:
    eng = res["engines"]

    def cell(e: str) -> str:
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


def case_notes(res: dict[str, Any]) -> list[str]:
    out = []
    for e, d in res["engines"].items():
        if d.get("status") == "failed":
            out.append(f"    {res['case']}: {e} failed: {d.get('error')}")
    t = res.get("target", {})
    if t.get("met") is False:
        out.append(f"    {res['case']}: target missed: {t.get('rule')} (got {t.get('ratio', 0):.2f}x"
                   + (f", fastrnn at {t['fastrnn_peak_fraction']:.0%} of peak" if "fastrnn_peak_fraction" in t
                      else "") + ")")
        if "ceiling" in t:
            out.append("      " + roofline_note(res))
    return out


def roofline_note(res: dict[str, Any]) -> str:
    """A batch-1 case's weight-read roofline in words (targets.evaluate_target's numbers)."""
    t, w = res["target"], res["weight_read"]
    verdict = ("the target is beyond it" if t["ceiling_below_target"] else "the target is within it")
    cores = w.get("cores") or 1
    what = "W_ih + W_hh" if res.get("mode") == "step" else "W_hh"
    return (f"roofline: {what} {w['bytes_per_step'] / 1024:.0f} KiB read per step at {w['gbps']:.0f} GB/s "
            f"(one core, a buffer that size{f', x {cores} cores' if cores > 1 else ''})"
            f"{'' if res.get('mode') == 'step' else ', the input projection at the FMA peak'}"
            f" = {t['roofline_s'] * 1e3:.4g} ms per call; fastrnn at "
            f"{t['fastrnn_roofline_fraction']:.0%} of it; the most a float32 engine can be ahead: "
            f"{t['ceiling']:.2f}x ({verdict})")


def summary_line(run: dict[str, Any]) -> str:
    s = run["summary"]
    line = (f"summary (threads={run['meta']['threads']}): targets met {s['targets_met']}/{s['cases']}, "
            f"missed {s['targets_missed']}" + (f" ({', '.join(s['missed'])})" if s["missed"] else ""))
    if s.get("beyond_roofline"):
        line += (f"; {len(s['beyond_roofline'])} of them beyond the float32 roofline's ceiling "
                 f"({', '.join(s['beyond_roofline'])})")
    if s["targets_na"]:
        line += f", n/a {s['targets_na']}"
    if s["failed_engines"]:
        line += f"; {len(s['failed_engines'])} engine failures"
    if run["meta"].get("elapsed_s") is not None:
        line += f"; {run['meta']['elapsed_s']:.0f} s"
    return line


def print_run(run: dict[str, Any], out: Callable[[str], object] = print) -> None:
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


# ---------------------------------------------------------------------------------- json / plot
def to_json(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"fastrnn_bench": JSON_FORMAT, "runs": runs}


def load_runs(paths: Iterable[str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
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


def plot(runs: list[dict[str, Any]], path: str) -> str:
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
        for j, eng in enumerate(engines):
            xs, ys = [], []
            for i, c in enumerate(r["cases"]):
                v = c["engines"].get(eng, {}).get("ratio_vs_fastrnn")
                if v:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(v)
            ax.bar(xs, ys, width=width, label=eng)
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
