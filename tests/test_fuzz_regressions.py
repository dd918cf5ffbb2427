"""Inputs found by the fuzzers (fuzz/, see fuzz/README.md), replayed through the same harnesses.

Each file tests/data/fuzz_regressions/<target>-<n>.bin is run with
``python fuzz/run.py <target> --replay FILE`` in a child process (a crash must not take pytest
down): it must exit 0, i.e. the library returned or raised a FastRNNError (one not caused by a
MemoryError: the child runs with a 4 GiB address-space limit).  Findings not fixed yet
are listed in OPEN (xfail, strict: flip them when the fix lands).  No atheris is needed.
"""
import os
import resource
import subprocess
import sys

import pytest

from conftest import CHILD_CWD, TESTS_DIR, child_env

REPO = os.path.dirname(TESTS_DIR)
RUNNER = os.path.join(REPO, "fuzz", "run.py")
DATA = os.path.join(TESTS_DIR, "data", "fuzz_regressions")

# file -> why it still fails (the library bug); remove the entry when the library is fixed
OPEN = {}


MEMORY_LIMIT = 4 << 30  # address space of the replaying child: a runaway allocation fails instead of swapping


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _cases():
    names = sorted(n for n in os.listdir(DATA) if n.endswith(".bin")) if os.path.isdir(DATA) else []
    out = []
    for n in names:
        marks = [pytest.mark.xfail(strict=True, reason=OPEN[n])] if n in OPEN else []
        out.append(pytest.param(n, marks=marks, id=n[:-4]))
    return out


def test_every_open_entry_has_a_file():
    assert set(OPEN) <= set(os.listdir(DATA))


@pytest.mark.skipif(not os.path.exists(RUNNER), reason="fuzz/ is not in this checkout")
@pytest.mark.parametrize("name", _cases())
def test_fuzz_regression(name):
    target = name.rsplit("-", 1)[0]
    env = child_env()
    env.pop("FASTRNN_FUZZ_SKIP_KNOWN", None)
    r = subprocess.run([sys.executable, "-X", "faulthandler", RUNNER, target, "--replay", os.path.join(DATA, name)],
                       capture_output=True, text=True, env=env, timeout=120, cwd=CHILD_CWD, preexec_fn=_limit_memory)
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
