"""Benchmarks (pytest-benchmark): `pytest benchmarks --benchmark-only --benchmark-group-by=param:case`.

Every engine runs with the same thread count (--threads, default all cores; TensorFlow fixes its
thread pools at start-up, so one thread count per pytest process); machine, ISA, BLAS and threads go
into each result's extra_info.  Correctness is checked (untimed) before timing.
"""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption("--threads", type=int, default=None, help="threads for every engine (default: all cores)")
    parser.addoption("--cases", default=None, help="comma-separated case names / glob patterns (default: the grid)")
    parser.addoption("--quick", action="store_true", help="the `fastrnn bench --quick` subset")


@pytest.fixture(scope="session")
def threads(request):
    import fastrnn

    n = request.config.getoption("--threads") or fastrnn.get_num_threads()
    fastrnn.set_num_threads(n)
    return n


def pytest_collection_modifyitems(config, items):
    """--cases / --quick: deselect the other cases (not skip: keeps the report short)."""
    spec, quick = config.getoption("--cases"), config.getoption("--quick")
    if not spec and not quick:
        return
    from fastrnn.bench import select_cases

    try:
        wanted = set(select_cases(spec.split(",") if spec else None, quick=quick))
    except ValueError as e:
        raise pytest.UsageError(f"--cases: {e}") from None
    keep, drop = [], []
    for item in items:
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        (drop if case is not None and case not in wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
