"""The performance targets of issue 10 per case, and the derived numbers of a timed case
(ratios, fastest framework, GFLOP/s, fraction of the FMA peak)."""
from __future__ import annotations

from typing import Any

from .cases import Case, flops

#: batch 1: fastrnn / fastest framework at least this, by hidden size
BATCH1_RATIO = ((128, 1.6), (None, 1.3))
#: batch >= 32 with H >= 128: fastrnn's fraction of the FMA peak of the cores in use
PEAK_FRACTION = 0.8


def evaluate_target(case: Case, median: dict[str, float], peak_gflops: float | None,
                    weight_read: dict[str, Any] | None = None) -> dict[str, Any]:
    """The target of one case (``median``: engine -> seconds per call):

    * fastrnn is faster than the fastest framework, every case, and
    * batch 1: >= 1.6x the fastest framework for H <= 128, >= 1.3x for larger H;
    * batch >= 32 with H >= 128: fastrnn at >= 80% of the measured FMA peak of the cores in use;
    * the case's own ``targets`` (engine, ratio): that engine's time / fastrnn's >= ratio.

    Batch 1 with ``weight_read`` ({"bytes_per_step", "gbps", "cores"}: runner.weight_read) also gets
    its roofline ``roofline_s``, a floor under the time of any float32 engine: every step reads its
    weights (bytes_per_step: W_hh, and W_ih too for a step case, cases.step_weight_bytes) at the
    measured bandwidth of one core times the cores in use, and the input projection's FLOPs (of a
    sequence: the rest) run at the FMA peak of those cores.  fastrnn runs at
    ``fastrnn_roofline_fraction`` of it, and ``ceiling`` = the fastest framework's time / roofline_s
    is the most any float32 engine could be ahead of it (a batch-1 target above that cannot be met by
    a faster loop).
    """
    fw = {k: v for k, v in median.items() if k != "fastrnn"}
    if "fastrnn" not in median:
        return {"met": None, "rule": "fastrnn failed"}
    if not fw:
        return {"met": None, "rule": "no framework to compare with"}
    fastest = min(fw, key=fw.__getitem__)
    ratio = fw[fastest] / median["fastrnn"]
    res: dict[str, Any] = {"ratio": ratio}
    rules: list[str] = []
    met: bool | None = ratio > 1
    if case.batch == 1:
        need = next(r for h, r in BATCH1_RATIO if h is None or case.hidden <= h)
        rules.append(f"batch 1: >= {need:g}x {fastest}")
        met = ratio >= need
        if weight_read and weight_read.get("gbps") and weight_read.get("bytes_per_step"):
            nbytes, cores = weight_read["bytes_per_step"], weight_read.get("cores") or 1
            roof = case.steps * nbytes / (weight_read["gbps"] * 1e9 * cores)
            if peak_gflops:  # the input projection: 2*T*G*H*I per layer and direction (B = 1)
                roof += (flops(case) - case.steps * nbytes // 2) / (peak_gflops * 1e9)
            res.update(roofline_s=roof, fastrnn_roofline_fraction=roof / median["fastrnn"],
                       ceiling=fw[fastest] / roof, ceiling_below_target=fw[fastest] / roof < need)
    else:
        rules.append(f"faster than {fastest}")
    if case.batch >= 32 and case.hidden >= 128:
        if peak_gflops:
            frac = flops(case) / median["fastrnn"] / 1e9 / peak_gflops
            res["fastrnn_peak_fraction"] = frac
            met = met and frac >= PEAK_FRACTION
            rules.append(f">= {PEAK_FRACTION:.0%} of peak")
        else:
            rules.append(f">= {PEAK_FRACTION:.0%} of peak (peak n/a)")
            met = None if met else False
    for engine, need in case.targets:
        if engine not in fw:
            rules.append(f">= {need:g}x {engine} (not measured)")
            continue
        rules.append(f">= {need:g}x {engine}")
        if met is not None:
            met = met and fw[engine] / median["fastrnn"] >= need
    res.update(met=None if met is None else bool(met), rule="; ".join(rules))
    return res


_DERIVED = ("gflops", "peak_fraction", "ratio_vs_fastrnn")


def case_of(res: dict[str, Any]) -> Case:
    """The Case a result (a bench_case dict, maybe read back from JSON) was timed on."""
    return Case(res["case"], res["cell"], res["batch"], res["steps"], res["input"], res["hidden"], res["layers"],
                res["bidirectional"], mode=res.get("mode", "sequence"),
                targets=tuple(tuple(t) for t in res.get("targets", ())))


def summarize_case(res: dict[str, Any], peak_gflops: float | None) -> dict[str, Any]:
    """Add ratios, fastest framework, GFLOP/s, peak fractions and the target to a bench_case result."""
    eng = res["engines"]
    median = {k: v["median_ms"] / 1e3 for k, v in eng.items() if v.get("status") == "ok" and "median_ms" in v}
    for k, v in eng.items():
        for f in _DERIVED:
            v.pop(f, None)
        if k in median:
            v["gflops"] = res["flops"] / median[k] / 1e9
            if peak_gflops:
                v["peak_fraction"] = v["gflops"] / peak_gflops
            if "fastrnn" in median:
                v["ratio_vs_fastrnn"] = median[k] / median["fastrnn"]
    fw = {k: t for k, t in median.items() if k != "fastrnn"}
    res["fastest_framework"] = min(fw, key=fw.__getitem__) if fw else None
    res["fastrnn_vs_fastest"] = (fw[res["fastest_framework"]] / median["fastrnn"]
                                 if fw and "fastrnn" in median else None)
    res["fastrnn_gflops"] = eng.get("fastrnn", {}).get("gflops")
    res["fastrnn_peak_fraction"] = eng.get("fastrnn", {}).get("peak_fraction")
    res["target"] = evaluate_target(case_of(res), median, peak_gflops, res.get("weight_read"))
    return res


def summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    met = sum(1 for c in cases if c.get("target", {}).get("met") is True)
    missed = [c["case"] for c in cases if c.get("target", {}).get("met") is False]
    na = sum(1 for c in cases if c.get("target", {}).get("met") is None)
    failed = sorted({f"{c['case']}:{e}" for c in cases for e, d in c["engines"].items() if d.get("status") == "failed"})
    # missed batch-1 targets above the float32 ceiling of the weight-read roofline (evaluate_target)
    beyond = [c["case"] for c in cases if c.get("target", {}).get("met") is False
              and c["target"].get("ceiling_below_target")]
    return {"cases": len(cases), "targets_met": met, "targets_missed": len(missed), "targets_na": na,
            "missed": missed, "beyond_roofline": beyond, "failed_engines": failed}
