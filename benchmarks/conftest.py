"""Benchmarks (pytest-benchmark): `pytest benchmarks -p no:randomly --benchmark-group-by=param:case`.

Every engine runs with the same thread count (--threads, default all cores); machine, ISA, BLAS
and threads go into each result's extra_info.  Correctness is checked (untimed) before timing.
"""
import pytest


def pytest_addoption(parser):
    parser.addoption("--threads", type=int, default=None, help="threads for every engine")


@pytest.fixture(scope="session")
def threads(request):
    import fastrnn

    n = request.config.getoption("--threads") or fastrnn.get_num_threads()
    fastrnn.set_num_threads(n)
    return n
