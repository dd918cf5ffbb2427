"""Shared test settings: tolerances, seeds, the ISA fixture, and the framework switch.

FASTRNN_REQUIRE_FRAMEWORKS=1 (set by .ci/run) turns a missing framework into a failure:
a framework comparison that cannot run must not pass CI as "skipped".
"""
import importlib
import os

import numpy as np
import pytest

# The one tolerance for float32 comparisons against frameworks and the numpy reference.
ATOL_F32 = 1e-5
RTOL_F32 = 1e-5

REQUIRE_FRAMEWORKS = os.environ.get("FASTRNN_REQUIRE_FRAMEWORKS") == "1"

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _package_parent():
    """The directory the *imported* fastrnn lives in (site-packages when installed, the checkout
    for an in-place build): child processes must import that one, not the source tree's copy."""
    import fastrnn

    return os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))


def child_env(**extra):
    """Environment for `python -c` / `python -m fastrnn` children of the tests.  Run them with
    cwd=CHILD_CWD (not the checkout: '' on sys.path would shadow the installed package)."""
    path = os.pathsep.join([_package_parent(), TESTS_DIR, os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, **extra)


CHILD_CWD = TESTS_DIR + "/data"


def require(module_name):
    """Import a framework, or skip (locally) / fail (CI) when it is missing."""
    try:
        return importlib.import_module(module_name)
    except ImportError as e:  # pragma: no cover - depends on the environment
        if REQUIRE_FRAMEWORKS:
            pytest.fail(f"{module_name} is required (FASTRNN_REQUIRE_FRAMEWORKS=1) but cannot be imported: {e}")
        pytest.skip(f"{module_name} not installed")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _isas():
    try:
        from fastrnn import _core
    except ImportError:
        return ["default"]
    return list(_core.available_isas())


@pytest.fixture(params=_isas())
def isa(request):
    """Run the test once per compiled ISA available on this CPU (generic, avx2, avx512...)."""
    import fastrnn

    prev = fastrnn.info()["isa"]
    if request.param != "default":
        fastrnn.set_isa(request.param)
    yield request.param
    fastrnn.set_isa(prev)


@pytest.fixture(params=["generic", "best"])
def isa_ends(request):
    """The two ends of the dispatch: the portable fallback and the best ISA of this CPU."""
    import fastrnn

    prev = fastrnn.info()["isa"]
    fastrnn.set_isa(request.param if request.param == "generic" else fastrnn.info()["available_isas"][-1])
    yield request.param
    fastrnn.set_isa(prev)


_LARGEST = {"err": 0.0, "where": ""}


def assert_close(got, expected, atol=ATOL_F32, rtol=RTOL_F32, what=""):
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != expected {expected.shape}"
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype} is not float32"
    np.testing.assert_allclose(got, expected, atol=atol, rtol=rtol, err_msg=what)
    finite = np.isfinite(expected) & np.isfinite(got)
    if finite.any():
        e = expected[finite].astype(np.float64)
        err = float(np.max(np.abs(got[finite] - e) / np.maximum(1.0, np.abs(e))))
        if err > _LARGEST["err"]:
            _LARGEST.update(err=err, where=os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0])


def pytest_terminal_summary(terminalreporter):
    if _LARGEST["where"]:
        terminalreporter.write_line(
            f"fastrnn: largest error in assert_close (absolute; relative where |expected| > 1): {_LARGEST['err']:.3g} ({_LARGEST['where']})")
