"""Hostile-file test generator: every family of ``tests/hostile_*.py`` at every size.

For each file, a child process (the installed fastrnn, nothing else imported) calls
``fastrnn.load`` and reports what happened; the file must be refused with a
:class:`fastrnn.FastRNNError` that names the file, in under 10 s and under 512 MiB of peak RSS
(the child's and any grandchild's, e.g. the isolated Keras reader), and the child must not crash.
The refusal must be a check's own (no exception other than a FastRNNError as its ``__cause__``): a
MemoryError under the child's address-space limit, turned into a ModelFormatError by
``fastrnn.errors.file_errors``, would pass every other assertion with the budget removed.
The child runs under an address-space limit so that a regression fails this test instead of
exhausting the machine.  The largest file of each family also goes through
``fastrnn convert`` (exit 2, ``fastrnn: error: ...``, no traceback).
"""
import glob
import importlib
import json
import os
import subprocess
import sys

import pytest

from conftest import CHILD_CWD, TESTS_DIR, child_env
from fastrnn.io.isolate import CHILD_ESCAPE

MAX_SECONDS = 10.0  # CPU seconds of the child (and its children): what a refusal may cost
MAX_WALL_SECONDS = 60.0  # wall clock: only catches a blocked read on a loaded machine
MAX_RSS_MIB = 512
CHILD_ADDRESS_SPACE = 4 << 30  # a runaway allocation fails (MemoryError) instead of filling the machine

_CHILD = r"""
import json, resource, sys, time
lim = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (lim, resource.getrlimit(resource.RLIMIT_AS)[1]))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
t0 = time.perf_counter()
import fastrnn
out = {"loaded": False}
try:
    fastrnn.load(sys.argv[1], **json.loads(sys.argv[2]))
    out["loaded"] = True
except BaseException as e:
    out.update(type=type(e).__module__ + "." + type(e).__qualname__, fastrnn=isinstance(e, fastrnn.FastRNNError),
               msg=str(e)[:3000])
    c, causes = e.__cause__, []  # what the refusal wraps: a deliberate one wraps nothing but FastRNNErrors
    while c is not None and len(causes) < 8:
        if not isinstance(c, fastrnn.FastRNNError):
            causes.append(f"{type(c).__name__}: {str(c)[:200]}")
        c = c.__cause__
    out["foreign_causes"] = causes
out["seconds"] = time.perf_counter() - t0
ru_self, ru_kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
out["cpu_seconds"] = ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime
# This process's own peak: VmHWM (ru_maxrss would start from the pytest parent's peak, which Linux
# carries across fork + exec).  Grandchildren (the isolated Keras reader) were forked from this small
# process, so RUSAGE_CHILDREN's ru_maxrss is theirs.
with open("/proc/self/status") as f:
    self_kib = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
kids_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
out["maxrss_mib"] = max(self_kib, kids_kib) / 1024.0
print("HOSTILE-RESULT " + json.dumps(out))
"""


def _families():
    out = []
    for f in sorted(glob.glob(os.path.join(TESTS_DIR, "hostile_*.py"))):
        mod = os.path.basename(f)[:-3]
        if mod == "hostile_common":
            continue
        for fam in importlib.import_module(mod).FAMILIES:
            out.append(fam)
    return out


FAMILIES = _families()
CASES = [pytest.param(fam, size, id=f"{fam.name}-{size}") for fam in FAMILIES for size in fam.sizes]


def run_child(path, load_kwargs=None, timeout=120):
    r = subprocess.run([sys.executable, "-c", _CHILD, path, json.dumps(load_kwargs or {}), str(CHILD_ADDRESS_SPACE)],
                       capture_output=True, text=True, env=child_env(), cwd=CHILD_CWD, timeout=timeout)
    line = next((l for l in r.stdout.splitlines() if l.startswith("HOSTILE-RESULT ")), None)
    assert r.returncode == 0 and line is not None, \
        f"the child crashed or died (exit {r.returncode}) on {path}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return json.loads(line[len("HOSTILE-RESULT "):])


def test_families_are_found():
    names = [f.name for f in FAMILIES]
    assert len(names) == len(set(names)), "two families share a name"
    assert {f.issue_item for f in FAMILIES} >= {"#12.1", "#12.2", "#12.3", "#12.4", "#12.5"}, \
        sorted({f.issue_item for f in FAMILIES})


@pytest.mark.parametrize("fam,size", CASES)
def test_hostile_file_is_refused(fam, size, tmp_path):
    path = fam.make(str(tmp_path), size)
    res = run_child(path, fam.load_kwargs)
    assert not res["loaded"], f"{fam.name} ({size}): the hostile file loaded"
    assert res["fastrnn"], f"{fam.name} ({size}): {res['type']} is not a FastRNNError: {res['msg']}"
    assert os.path.basename(path) in res["msg"], f"{fam.name} ({size}): the message does not name the file: {res['msg']}"
    # refused by a check (the budget, a shape or size check), not by a failure that file_errors (or the
    # isolated reader's parent) turned into a FastRNNError: a MemoryError from an allocation the budget
    # should have refused, numpy's "array is too big", a reader bug
    assert not res["foreign_causes"], f"{fam.name} ({size}): refused through {res['foreign_causes']}: {res['msg']}"
    assert CHILD_ESCAPE not in res["msg"], f"{fam.name} ({size}): {res['msg']}"
    # CPU time, not wall time: on a shared machine (CI, other processes) the wall clock measures the load
    assert res["cpu_seconds"] < MAX_SECONDS, f"{fam.name} ({size}): {res['cpu_seconds']:.1f} CPU s"
    assert res["seconds"] < MAX_WALL_SECONDS, f"{fam.name} ({size}): {res['seconds']:.1f} s (blocked?)"
    assert res["maxrss_mib"] < MAX_RSS_MIB, f"{fam.name} ({size}): peak RSS {res['maxrss_mib']:.0f} MiB"


@pytest.mark.parametrize("fam", [pytest.param(f, id=f.name) for f in FAMILIES if f.cli])
def test_cli_refuses_hostile_file(fam, tmp_path):
    path = fam.make(str(tmp_path), max(fam.sizes))
    args = [sys.executable, "-m", "fastrnn", "convert", path, str(tmp_path / "out.fastrnn")]
    if fam.load_kwargs and "architecture" in fam.load_kwargs:
        args += ["--arch", json.dumps(fam.load_kwargs["architecture"])]
    r = subprocess.run(args, capture_output=True, text=True, env=child_env(), cwd=CHILD_CWD, timeout=120)
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr[-3000:]}"
    assert "fastrnn: error:" in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert not os.path.exists(tmp_path / "out.fastrnn"), "a half-written output was left behind"


_DIRECT_READER = r"""
import sys
import fastrnn
from fastrnn.io.containers import spec_from_npz_file, spec_from_safetensors_file
from fastrnn.io.torch_file import read_torch_file, spec_from_torch_file
fn = {"read_torch_file": read_torch_file, "spec_from_torch_file": spec_from_torch_file,
      "spec_from_npz_file": spec_from_npz_file, "spec_from_safetensors_file": spec_from_safetensors_file}[sys.argv[2]]
try:
    fn(sys.argv[1])
    print("LOADED")
except fastrnn.FastRNNError as e:
    print("REFUSED", type(e).__name__, e)
"""


def _special(tmp_path, what, name):
    path = tmp_path / name
    if what == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(what, path)
    return str(path)


@pytest.mark.parametrize("what,name", [("/dev/zero", "zero.onnx"), ("/dev/zero", "zero.pt"),
                                       ("/dev/urandom", "rand.fastrnn"), ("fifo", "fifo.onnx"),
                                       ("fifo", "fifo.keras"), ("fifo", "fifo.pt")])
def test_non_regular_file_is_refused_before_any_read(tmp_path, what, name):
    """Review 2026-12-05, section 4: a symlink to a device reads without end (the budget is the size on
    disk: 0) and a FIFO blocks the first read for ever: refused from the path's type, naming the file."""
    path = _special(tmp_path, what, name)
    res = run_child(path, timeout=30)
    assert not res["loaded"] and res["fastrnn"], res
    assert path in res["msg"] and "not a regular file" in res["msg"], res["msg"]
    assert res["cpu_seconds"] < 2 and res["seconds"] < 10 and res["maxrss_mib"] < 128, res


@pytest.mark.parametrize("fn", ["read_torch_file", "spec_from_torch_file", "spec_from_npz_file",
                                "spec_from_safetensors_file"])
def test_readers_called_directly_refuse_a_fifo(tmp_path, fn):
    path = _special(tmp_path, "fifo", "w.bin")
    r = subprocess.run([sys.executable, "-c", _DIRECT_READER, path, fn], capture_output=True, text=True,
                       env=child_env(), cwd=CHILD_CWD, timeout=30)
    assert r.stdout.startswith("REFUSED ModelFormatError") and f"{path}: not a regular file (a FIFO)" in r.stdout, \
        r.stdout + r.stderr[-2000:]


def test_isolated_reader_runs_nothing_from_the_working_directory(tmp_path):
    """Review 2026-12-05, section 12: the isolated HDF5 reader's child ran ``python -c``, which puts the
    working directory first on sys.path before its boot code set sys.path: a json.py planted there (an
    upload directory) ran in the child.  A script started elsewhere loads a Keras file from such a
    directory: nothing planted runs, the model loads."""
    upload, app = tmp_path / "upload", tmp_path / "app"
    upload.mkdir()
    app.mkdir()
    marker = tmp_path / "PLANTED-RAN"
    for mod in ("json", "pickle", "struct"):
        (upload / f"{mod}.py").write_text(f"open({str(marker)!r}, 'a').write('{mod} ')\n")
    import shutil

    shutil.copy(os.path.join(TESTS_DIR, "data", "keras", "keras22_gru.h5"), upload / "model.h5")
    (app / "run.py").write_text("import fastrnn\nprint('LOADED', fastrnn.load('model.h5'))\n")
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in env["PYTHONPATH"].split(os.pathsep) if p)  # no '' (the cwd)
    r = subprocess.run([sys.executable, str(app / "run.py")], capture_output=True, text=True,
                       env=env, cwd=str(upload), timeout=120)
    assert not marker.exists(), f"planted module(s) ran: {marker.read_text()}"
    assert r.returncode == 0 and "LOADED" in r.stdout, r.stdout + r.stderr[-3000:]
