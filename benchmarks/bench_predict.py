"""predict() of every case of the `fastrnn bench` grid (fastrnn/bench.py) for every engine.

One benchmark per (case, engine); the engines are the same factories `fastrnn bench` uses, each
checked against PyTorch (untimed, max abs diff <= 1e-4) before it is timed.  An engine whose
framework is not installed is skipped with the reason.  Select with -k, e.g.
``-k "lstm_32x128 and (fastrnn or onnxruntime)"``; ``--cases`` takes names / globs as the CLI.
"""
import math
import time

import pytest

import fastrnn
from fastrnn.bench import CASES, ENGINES, FACTORIES, GRID, Context, check_engine, make_input, missing_modules

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
@pytest.mark.parametrize("case", GRID)
def bench_predict(benchmark, case, engine, threads):
    missing = missing_modules(engine)
    if missing:
        pytest.skip(f"{engine}: {', '.join(missing)} not installed")
    ctx = _context(case, threads)
    x = make_input(ctx.case)
    f = FACTORIES[engine](ctx)
    expected = None if missing_modules("torch") else ctx.reference(x)
    diff, seconds = check_engine(f, x, expected)  # warm-up / compile, then the check (AssertionError if off)
    rounds = max(3, min(20, math.ceil(1.0 / max(seconds, 1e-6))))  # about 1 s per benchmark, >= 3 rounds
    benchmark.extra_info.update(engine=engine, threads=threads, shape=ctx.case.describe(), max_abs_diff=diff,
                                **fastrnn.info())
    time.sleep(0.05)  # let threads a previous engine left spinning go to sleep
    benchmark.pedantic(f, args=(x,), warmup_rounds=1, rounds=rounds)
