"""Inputs found by the fuzzers (fuzz/, see fuzz/README.md), replayed through the same harnesses.

Each file tests/data/fuzz_regressions/<target>-<n>.bin is run with
``python fuzz/run.py <target> --replay FILE`` in a child process (a crash must not take pytest
down): it must exit 0, i.e. the library returned or raised a FastRNNError (one not caused by a
MemoryError: the child runs with a 4 GiB address-space limit).  Findings not fixed yet
are listed in OPEN (xfail, strict: flip them when the fix lands).  No atheris is needed.

``h5-<n>.bin`` inputs come from fuzz/fuzz_h5.py (a mode byte + a whole HDF5 file, raw or inside a
.keras archive) and replay through the isolated reader (the default of ``fastrnn.load``).  Those
that crash or hang the HDF5 C library itself when parsed in-process are listed in HDF5_CONTAINED
with what libhdf5 does; test_h5_input_is_contained checks that the caller gets a ModelFormatError
saying so.  h5-2.bin: a .keras whose model.weights.h5 made h5py's file-object driver raise
OverflowError (an offset past ssize_t), which escaped the reader (fixed: ModelFormatError).
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

# h5 inputs -> (what libhdf5 does with it in-process, the part of the isolated reader's message)
HDF5_CONTAINED = {
    # one byte of keras22_lstm.h5 changed (offset 2129, 0x02 -> 0x0a): reading the root attribute
    # 'keras_version' never returns (HDF5 1.14.6, h5py 3.14; > 300 s in-process)
    "h5-1.bin": ("hang", "CPU-time limit"),
    # one byte of a Keras 3 legacy .h5 (fuzz/corpus/h5/legacy_gru_ra0.h5) changed (offset 1009,
    # 0x01 -> 0x49): reading the root attribute 'keras_version' segfaults in libhdf5 (exit 139 in-process)
    "h5-3.bin": ("segfault", "crashed (SIGSEGV)"),
}


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


def test_every_contained_input_has_a_file():
    assert set(HDF5_CONTAINED) <= set(os.listdir(DATA))


@pytest.mark.parametrize("name", sorted(HDF5_CONTAINED))
def test_h5_input_is_contained(name, tmp_path):
    """The input that hangs / crashes libhdf5 in-process: the isolated reader (here with a 2 s CPU
    limit instead of the default 20 s) stops it and raises ModelFormatError naming the file and
    the limit or signal; this process (pytest) is unaffected.  (test_h5_input_crashes_in_process
    shows what the same input does without the isolation.)"""
    from fastrnn.errors import ModelFormatError
    from fastrnn.io.keras_file import spec_from_keras_file

    with open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    assert data[0] & 1 == 0  # mode 0: a raw .h5 file
    p = tmp_path / "model.h5"
    p.write_bytes(data[1:])
    import faulthandler

    faulthandler.dump_traceback_later(120, exit=True)  # were the input parsed in-process: fail, not hang
    try:
        with pytest.raises(ModelFormatError) as ei:
            spec_from_keras_file(p, isolate={"cpu": 2})
    finally:
        faulthandler.cancel_dump_traceback_later()
    msg = str(ei.value)
    assert "model.h5" in msg and HDF5_CONTAINED[name][1] in msg, msg


@pytest.mark.parametrize("name", sorted(n for n, (what, _) in HDF5_CONTAINED.items() if what == "segfault"))
def test_h5_input_crashes_in_process(name, tmp_path):
    """Without the isolation (isolate=False, in a child here) the same input kills the process:
    the containment above is needed, not incidental."""
    with open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    p = tmp_path / "model.h5"
    p.write_bytes(data[1:])
    code = "import sys, fastrnn; fastrnn.load(sys.argv[1], isolate=False)"
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, env=child_env(),
                       timeout=120, cwd=CHILD_CWD, preexec_fn=_no_core_dump)
    assert r.returncode < 0, f"rc={r.returncode}\n{r.stderr[-2000:]}"


def _no_core_dump():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
