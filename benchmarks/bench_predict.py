"""Every case of `fastrnn bench` (the grid and the named workloads; fastrnn/bench/) for every engine.

One benchmark per (case, engine); the engines are the same factories `fastrnn bench` uses, each
checked against PyTorch (untimed, max abs diff <= 1e-4) before it is timed: a whole predict for
a sequence case, one step with the state carried for a step case.  An engine whose framework is
not installed is skipped with the reason.  Select with -k, e.g.
``-k "lstm_32x128 and (fastrnn or onnxruntime)"``; ``--cases`` takes names / globs as the CLI.
"""
import math
import time

import pytest

import fastrnn
from fastrnn.bench import CASES, DEFAULT_RUN, ENGINES, Context, build_checked, make_input, missing_modules
from fastrnn.bench.timing import calls_per_sample

_CONTEXTS = {}


def _context(case_name, threads):
    """One torch module / ONNX export / Keras model per case, shared by that case's engines."""
    key = (case_name, threads)
    if key not in _CONTEXTS:
        for old in list(_CONTEXTS):
            _CONTEXTS.pop(old).close()
        _CONTEXTS[key] = Context(CASES[case_name], threads)
    return _CONTEXTS[key]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", DEFAULT_RUN)
def bench_predict(benchmark, case, engine, threads):
    missing = missing_modules(engine)
    if missing:
        pytest.skip(f"{engine}: {', '.join(missing)} not installed")
    ctx = _context(case, threads)
    x = make_input(ctx.case)
    expected = None if missing_modules("torch") else ctx.reference(x)
    f, xt, diff, seconds = build_checked(engine, ctx, x, expected)  # warm-up, then the check (AssertionError if off)
    iterations = calls_per_sample(f, xt, seconds)  # a fast step is timed in bursts of about 1 ms
    rounds = max(3, min(20, math.ceil(1.0 / max(seconds * iterations, 1e-6))))  # about 1 s per benchmark, >= 3 rounds
    benchmark.extra_info.update(engine=engine, threads=threads, shape=ctx.case.describe(), mode=ctx.case.mode,
                                max_abs_diff=diff, **fastrnn.info())
    time.sleep(0.05)  # let threads a previous engine left spinning go to sleep
    benchmark.pedantic(f, args=(xt,), warmup_rounds=1, rounds=rounds, iterations=iterations)
