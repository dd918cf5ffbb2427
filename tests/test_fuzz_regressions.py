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


# --------------------------------------------------------------------------- the harnesses themselves
FUZZ_DIR = os.path.join(REPO, "fuzz")


def _fuzz_module(name):
    import importlib

    if FUZZ_DIR not in sys.path:
        sys.path.insert(0, FUZZ_DIR)
    return importlib.import_module(name)


@pytest.mark.skipif(not os.path.exists(RUNNER), reason="fuzz/ is not in this checkout")
def test_runner_without_the_core_stops_at_once(tmp_path):
    """#12.16: ``PYTHONPATH=. python fuzz/run.py`` in a checkout whose core is built elsewhere imported
    the checkout; every model build raised CoreNotBuiltError, which the harness counted as a refusal
    (212k "clean" runs that tested nothing).  Now the runner checks first that the fastrnn it imports
    builds and runs a model, and stops with exit status 2 saying why."""
    import shutil

    import fastrnn

    pkg = os.path.dirname(os.path.abspath(fastrnn.__file__))
    shutil.copytree(pkg, tmp_path / "fastrnn", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    # as in a checkout that was never built (also where an editable install's finder would supply the core)
    (tmp_path / "fastrnn" / "_core.py").write_text("raise ImportError('fastrnn._core is not built here')\n")
    env = child_env()
    env["PYTHONPATH"] = str(tmp_path)  # the core-less copy, as a checkout that was never built
    r = subprocess.run([sys.executable, RUNNER, "native", "--runs", "200", "--fallback",
                        "--workdir", str(tmp_path / "work")], capture_output=True, text=True, env=env, timeout=120,
                       cwd=str(tmp_path))
    assert r.returncode == 2, f"rc={r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert "cannot build a model" in r.stderr and str(tmp_path / "fastrnn") in r.stderr, r.stderr[-2000:]
    assert "Done" not in r.stdout, r.stdout[-2000:]


def test_contract_counts_a_missing_core_as_a_finding():
    """A CoreNotBuiltError inside a harness is a finding, not a refusal."""
    from fastrnn.errors import CoreNotBuiltError, ModelFormatError

    contract = _fuzz_module("_harness").contract
    with contract():
        raise ModelFormatError("a refusal")
    with pytest.raises(AssertionError, match="nothing is being tested"):
        with contract():
            raise CoreNotBuiltError("fastrnn._core is not built")


def test_contract_counts_a_wrapped_reader_bug_as_a_finding(tmp_path):
    """Review 2026-12-05, section 10: the exception boundary (fastrnn.errors.file_errors) turns every
    exception into a ModelFormatError; the fuzz contract must still see a reader bug through it (its
    __cause__), while a parser's own error on bad bytes stays a clean refusal."""
    import io
    import zipfile

    from fastrnn.errors import file_errors

    contract = _fuzz_module("_harness").contract
    path = str(tmp_path / "x.pt")
    for bug in (lambda: None.foo, lambda: {}["k"], lambda: [][1], lambda: len(3), lambda: int("x")):
        with pytest.raises(AssertionError, match="a reader bug refused as a bad file"):
            with contract():
                with file_errors(path):
                    bug()
    with contract():  # what zipfile says about junk: a refusal
        with file_errors(path):
            zipfile.ZipFile(io.BytesIO(b"PK\x03\x04 junk"))
    with contract():  # a deliberate refusal re-raised with the file name in front (its cause: a FastRNNError)
        with file_errors(path):
            raise __import__("fastrnn").errors.ModelFormatError("bad header")


def test_keras_zip_target_reads_in_this_process(monkeypatch):
    """#12.17: the keras_zip target ran fastrnn.load, which parses in the isolated child, so libFuzzer
    saw almost no coverage (20 new units in 1,700 runs).  It now calls the reader the child runs,
    in this process: with the isolated reader made to fail, its seeds still
    load, run and serialise; the isolated path has its own target, keras_isolated."""
    import fastrnn.io.isolate

    def no_child(*a, **k):
        raise AssertionError("the keras_zip target started the isolated reader")

    monkeypatch.setattr(fastrnn.io.isolate, "spec_isolated", no_child)
    mod = _fuzz_module("fuzz_keras_zip")
    seeds = sorted(n for n in os.listdir(os.path.join(FUZZ_DIR, "corpus", "keras_zip")) if n.endswith(".json"))
    assert seeds
    loaded = []
    real_exercise = mod.exercise
    monkeypatch.setattr(mod, "exercise", lambda m: (loaded.append(m), real_exercise(m)))
    for n in seeds:
        with open(os.path.join(FUZZ_DIR, "corpus", "keras_zip", n), "rb") as f:
            mod.test_one_input(f.read())
    assert len(loaded) == len(seeds)


def test_every_hostile_family_seeds_the_fuzzers():
    """Every family of the hostile-file test generator (tests/hostile_*.py) is in the fuzz corpora
    (fuzz/corpus/HOSTILE_SEEDS.txt, written with the seeds by ``python fuzz/make_corpus.py hostile``),
    and each seed it lists exists: a new family reaches the fuzzers, and CI's bounded fuzz run
    (.ci/fuzz.sh) replays it."""
    import glob
    import importlib

    families = set()
    for f in glob.glob(os.path.join(TESTS_DIR, "hostile_*.py")):
        name = os.path.basename(f)[:-3]
        if name != "hostile_common":
            families |= {fam.name for fam in importlib.import_module(name).FAMILIES}
    manifest = os.path.join(FUZZ_DIR, "corpus", "HOSTILE_SEEDS.txt")
    listed = {}
    with open(manifest) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                fam, _, seeds = line.partition(":")
                listed[fam.strip()] = [s for s in seeds.split() if "/" in s]
    missing = sorted(families - set(listed))
    assert not missing, f"families without fuzz seeds: {missing}; run python fuzz/make_corpus.py hostile"
    for fam, seeds in listed.items():
        for s in seeds:
            assert os.path.exists(os.path.join(FUZZ_DIR, "corpus", s)), (fam, s)
    assert sum(len(s) for s in listed.values()) >= len(families) // 2  # most families fit a small seed
