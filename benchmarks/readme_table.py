"""README's speed table from a `fastrnn bench --json` file: one markdown row per case, one column
group per thread count in the file (1 thread, then all cores, as `fastrnn bench` runs them).

    fastrnn bench --json out.json --plot out.png     # the run (about 20 minutes on 2 cores)
    python benchmarks/readme_table.py out.json       # the table and the summary lines, for README.md

Times are fastrnn's median ms per call (a batch; step cases: one step); *fastest* is the fastest
framework engine in that run; speed-up = its time / fastrnn's (bold where fastrnn is faster); vs torch
= PyTorch's time / fastrnn's; peak = fastrnn's share of the FMA peak of the cores in use.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

SHORT = {"onnxruntime": "ORT", "openvino": "OV", "keras_xla": "Keras XLA", "keras_call": "Keras call",
         "keras_predict": "Keras predict"}


def _ms(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _ratio(r: float | None, bold: bool) -> str:
    if r is None:
        return "-"
    s = f"{r:.2f}x"
    return f"**{s}**" if bold and r > 1 else s


def cells(case: dict[str, Any]) -> list[str]:
    eng = case["engines"]
    fr = eng.get("fastrnn", {})
    if fr.get("status") != "ok":
        return ["failed", "", "", "", ""]
    fastest = case.get("fastest_framework")
    f_ms = eng[fastest]["median_ms"] if fastest else None
    torch = eng.get("torch", {})
    vs_torch = torch["median_ms"] / fr["median_ms"] if torch.get("status") == "ok" else None
    peak = case.get("fastrnn_peak_fraction")
    return [_ms(fr["median_ms"]), f"{_ms(f_ms)} {SHORT.get(fastest, fastest)}" if f_ms else "-",
            _ratio(case.get("fastrnn_vs_fastest"), True), _ratio(vs_torch, False),
            f"{100 * peak:.0f}%" if peak is not None else "-"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_file")
    args = ap.parse_args(argv)
    with open(args.json_file) as f:
        runs = json.load(f)["runs"]
    runs = sorted(runs, key=lambda r: r["meta"]["threads"])
    order = [c["case"] for c in runs[0]["cases"]]
    by = [{c["case"]: c for c in r["cases"]} for r in runs]
    head = ["case"]
    for r in runs:
        t = r["meta"]["threads"]
        label = f"{t} thread{'s' if t > 1 else ''}"
        head += [f"{label}: fastrnn", "fastest", "speed-up", "vs torch", "peak"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name in order:
        row = [name]
        for b in by:
            row += cells(b[name]) if name in b else ["-"] * 5
        print("| " + " | ".join(row) + " |")
    print()
    for r in runs:
        m, s = r["meta"], r["summary"]
        faster = sum(1 for c in r["cases"] if (c.get("fastrnn_vs_fastest") or 0) > 1)
        print(f"{m['threads']} thread(s), {m['cpu']} ({m['isa']}, FMA peak {m['fma_peak_gflops_per_core']:.1f} GFLOP/s "
              f"per core, BLAS kernel {m.get('blas_kernel')}): faster than the fastest framework in {faster} of "
              f"{len(r['cases'])} cases; targets met {s['targets_met']}/{s['cases']}.")


if __name__ == "__main__":
    main()
