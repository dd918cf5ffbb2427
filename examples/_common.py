"""What every example shares: the command line, the frameworks' thread counts, the parity check, the
side-by-side timing (fastrnn's own benchmark timer) and the plots.  Kept small on purpose: each
example reads top to bottom without it."""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np

TOLERANCE = 1e-4  # max |fastrnn - framework| for an example to pass
DEFAULT_OUT = Path(__file__).resolve().parent / "out"


def parse_args(doc: str, add=None) -> argparse.Namespace:
    """--quick, --out, --threads, --seed (plus what ``add(parser)`` adds); creates --out."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                epilog="\n".join(doc.strip().splitlines()[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny training and short timing: a smoke test (what CI runs)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNG (default: examples/out/)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for fastrnn AND the framework, so the timing is like for like (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and the training (default: 0)")
    if add:
        add(p)
    args = p.parse_args()
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def setup(args, framework: str):
    """Seed and set the thread count of fastrnn and of ``framework`` ("torch" or "keras"); print the
    machine.  Returns the framework module (torch, or keras with its backend ready)."""
    import fastrnn

    np.random.seed(args.seed)
    fastrnn.set_num_threads(args.threads)
    if framework == "torch":
        import torch

        torch.manual_seed(args.seed)
        torch.set_num_threads(args.threads)
        mod, version = torch, torch.__version__
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        elif keras.backend.backend() == "torch":
            import torch

            torch.set_num_threads(args.threads)
        keras.utils.set_random_seed(args.seed)
        mod, version = keras, f"{keras.__version__} ({keras.backend.backend()} backend)"
    from fastrnn.bench.machine import machine_info

    inf = fastrnn.info()
    cpu = machine_info(args.threads, engine_names=(), measure=False)["cpu"]
    args.machine = f"{cpu}, {os.cpu_count()} logical CPUs, {platform.machine()}"  # for the plots' titles
    print(f"machine: {args.machine}; fastrnn {inf['version']} "
          f"({inf['isa']} kernels), {framework} {version}, numpy {np.__version__}; threads: {args.threads} for both")
    return mod


def parity(what: str, ours, theirs, framework: str, tol: float = TOLERANCE) -> float:
    """Print max |fastrnn - framework| for ``what``; exit 1 when it exceeds ``tol`` (or shapes differ)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        sys.exit(f"FAIL parity {what}: fastrnn's shape {ours.shape} != {framework}'s {theirs.shape}")
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    ok = diff <= tol  # False for NaN too
    print(f"parity {what}: max |fastrnn - {framework}| = {diff:.2e} (tolerance {tol:g}) {'OK' if ok else 'FAIL'}")
    if not ok:
        sys.exit(f"FAIL parity {what}: {diff:.3g} > {tol:g}")
    return diff


def time_side_by_side(what: str, engines: dict, quick: bool) -> dict:
    """Time the zero-argument callables ``engines`` ({label: f}) in interleaved rounds with fastrnn's
    benchmark timer (bursts for short calls, at least 3 samples each); print the median per call and
    each one's time / the first's.  Returns {label: median seconds}."""
    import time

    from fastrnn.bench.timing import time_engines

    live = {}
    for k, f in engines.items():
        f()  # warm-up (Keras traces, torch allocates)
        t0 = time.perf_counter()
        f()
        live[k] = (lambda _x, f=f: f(), None, time.perf_counter() - t0)
    samples = time_engines(live, min_time=0.15 if quick else 1.0)
    med = {k: statistics.median(v["samples"]) for k, v in samples.items()}
    first = next(iter(med.values()))
    print(f"time {what} (median per call):")
    for k, s in med.items():
        print(f"  {k:<40} {fmt_s(s):>10}  {s / first:7.2f}x")
    return med


def fmt_s(s: float) -> str:
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def figure(ncols: int = 2, nrows: int = 1, width: float = 6.0, height: float = 4.0):
    """A matplotlib figure on the Agg backend (no display needed): (fig, axes as a flat list)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, list(axes.ravel())


def speed_bars(ax, groups, title: str, args) -> None:
    """Horizontal bars of median times, top to bottom in the given order.  ``groups``: one dict from
    :func:`time_side_by_side` or a list of them; each bar is labelled with its time and its ratio to
    the first entry of its group (fastrnn's)."""
    groups = [groups] if isinstance(groups, dict) else list(groups)
    labels, vals, notes, colors = [], [], [], []
    for g in groups:
        base = next(iter(g.values()))
        for i, (k, v) in enumerate(g.items()):
            labels.append(k)
            vals.append(v * 1e3)
            notes.append(f" {fmt_s(v)}" + ("" if i == 0 else f"  ({v / base:.1f}x fastrnn)"))
            colors.append("tab:green" if i == 0 else "tab:gray")
    ypos = np.arange(len(labels))
    ax.barh(ypos, vals, color=colors)
    ax.set_yticks(ypos, labels)
    ax.invert_yaxis()
    for y, v, n in zip(ypos, vals, notes):
        ax.text(v, y, n, va="center", fontsize=8)
    if max(vals) / min(vals) > 30:  # a log axis keeps the short bars visible
        ax.set_xscale("log")
        ax.set_xlim(min(vals) / 3, max(vals) * 30)
    else:
        ax.set_xlim(0, max(vals) * 1.6)
    ax.set_xlabel("milliseconds per call (median; shorter is faster)")
    ax.set_title(f"{title}\n{args.threads} thread(s) each, {args.machine}", fontsize=9)


def save(fig, args, name: str) -> Path:
    path = args.out / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"saved {path}")
    return path
