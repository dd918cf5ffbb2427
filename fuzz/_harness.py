"""Shared pieces of the fuzz harnesses (no atheris needed: tests/test_fuzz_regressions.py replays
saved inputs through the same functions).

The contract every harness checks: an input either returns normally or raises a
``fastrnn.FastRNNError`` (``TypeError`` only where the harness deliberately passed an argument of a
wrong type) that is a deliberate refusal: one caused by a MemoryError or by a reader bug wrapped by
the exception boundary (:func:`check_error`) is a finding too.  Anything else escapes ``test_one_input`` and is a finding; a crash or a hang is one too.
So is a ``CoreNotBuiltError``: a harness that runs without the compiled core tests nothing
(``fuzz/run.py`` also refuses to start without it: :func:`require_core`).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import pickle
import shutil
import struct
import sys
import tempfile
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_DIR = os.path.join(HERE, "corpus")
KERAS_WEIGHTS_DIR = os.path.join(HERE, "data", "keras")
KERAS_WEIGHTS = ("lstm_dense", "gru_ra0", "bidi_masking", "emb_lstm")  # selector byte % 4

# architecture= for the torch_file harness: bits 1-3 of the mode byte pick one
TORCH_ARCHS = [
    None,
    "lstm",
    "gru",
    "rnn_relu",
    [{"type": "embedding", "key": "emb"}, {"type": "lstm", "key": "rnn", "bidirectional": True},
     {"type": "last_step"}, {"type": "linear", "key": "fc", "activation": "softmax"}],
    [{"type": "linear", "key": "0", "activation": "tanh"}, {"type": "linear", "key": "2"}, "softmax"],
    "rnn_tanh",
    [{"type": "gru", "key": "", "num_layers": 2}, "h_n_cat", {"type": "dropout"}],
]

# the small models the predict harness runs (written by make_corpus.py into corpus/native/)
NATIVE_MODELS = (
    "torch_lstm.fastrnn", "torch_gru_bi2.fastrnn", "torch_rnn_relu.fastrnn", "torch_lstm_proj.fastrnn",
    "torch_seq.fastrnn", "torch_clf.fastrnn", "keras_lstm_dense.fastrnn", "keras_gru_ra0.fastrnn",
    "keras_bidi_masking.fastrnn", "keras_emb_lstm.fastrnn",
)

_TMP = None


def tmpdir() -> str:
    """One private temporary directory per process (in /dev/shm when there is one: no disk I/O)."""
    global _TMP
    if _TMP is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _TMP = tempfile.mkdtemp(prefix="fastrnn-fuzz-", dir=base)
        atexit.register(shutil.rmtree, _TMP, True)
    return _TMP


def write_tmp(name: str, data: bytes) -> str:
    path = os.path.join(tmpdir(), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def native_header_to_seed(raw: bytes) -> bytes:
    """A .fastrnn file -> its JSON header alone (the native harness's '{' mode)."""
    n = int.from_bytes(raw[:8], "little")
    return raw[8:8 + n].rstrip(b" ")


def native_file_from_header(header: bytes) -> bytes:
    """The native harness's '{' mode: length prefix + header + a data section as long as the
    largest data_offsets end in the header says (filled with a fixed pattern; capped at 1 MiB)."""
    end = 0
    try:
        h = json.loads(header.decode("utf-8", "replace"))
        if isinstance(h, dict):
            for v in h.values():
                offs = v.get("data_offsets") if isinstance(v, dict) else None
                if isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs):
                    end = max(end, min(max(offs), 1 << 20))
    except (ValueError, RecursionError):
        pass
    pad = (-(8 + len(header))) % 64
    data = (struct.pack("<f", 0.25) * ((end + 3) // 4))[:end]
    return len(header + b" " * pad).to_bytes(8, "little") + header + b" " * pad + data


class Bytes:
    """A small FuzzedDataProvider: deterministic decoding of fuzz bytes (0 once they run out)."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def int(self, lo: int, hi: int) -> int:
        """An int in [lo, hi]."""
        span = hi - lo + 1
        v, n = 0, 0
        while (1 << (8 * n)) < span:
            v = (v << 8) | self.byte()
            n += 1
        return lo + (v % span if span > 0 else 0)

    def bool(self) -> bool:
        return bool(self.byte() & 1)

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def take(self, n: int) -> bytes:
        b = self.data[self.pos:self.pos + n]
        self.pos += len(b)
        return b


# ------------------------------------------------------------------------------ known findings
# Findings already reported (each has a regression test in tests/test_fuzz_regressions.py).  With
# FASTRNN_FUZZ_SKIP_KNOWN=1 the harnesses ignore them, so that a long exploratory run can look for
# NEW problems while these are still open; CI (.ci/fuzz.sh) never sets it: every finding fails it.
KNOWN = []  # (exception class name, message part, file) of findings not fixed yet; none open


def skip_known(e: BaseException) -> bool:
    """True when FASTRNN_FUZZ_SKIP_KNOWN=1 and ``e`` matches a KNOWN finding."""
    if os.environ.get("FASTRNN_FUZZ_SKIP_KNOWN") != "1":
        return False
    import traceback

    tb = traceback.extract_tb(e.__traceback__)
    where = os.path.basename(tb[-1].filename) if tb else ""
    return any(type(e).__name__ == c and s in str(e) and (not f or f == where) for c, s, f in KNOWN)


# What a parser legitimately raises on bad bytes and a reader may leave to the exception boundary
# (fastrnn.errors.file_errors turns it into a ModelFormatError naming the file, the original kept as
# __cause__): such a refusal is clean.  Anything else as a cause -- AttributeError, TypeError, KeyError,
# IndexError, NameError, a numpy ValueError ... -- is a reader bug that the boundary hid: a finding.
PARSER_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zlib.error, struct.error, UnicodeError, EOFError, OSError, pickle.UnpicklingError,
    json.JSONDecodeError)


def foreign_cause(e: BaseException) -> BaseException | None:
    """The first exception in ``e``'s ``__cause__`` chain that is neither a FastRNNError nor one of
    :data:`PARSER_ERRORS` (what the boundary wrapped instead of a deliberate refusal), or None."""
    from fastrnn.errors import FastRNNError

    c, seen = e.__cause__, 0
    while c is not None and seen < 16:
        if not isinstance(c, (FastRNNError, *PARSER_ERRORS)):
            return c
        c, seen = c.__cause__, seen + 1
    return None


def check_error(e: BaseException) -> None:
    """A FastRNNError that wraps a MemoryError is a finding too: a small fuzz input made the reader
    try to allocate more memory than the process may use (run under a memory limit).  So is one that
    wraps a reader bug (:func:`foreign_cause`): the exception boundary turns every exception into a
    FastRNNError, which alone would count a reader's AttributeError as a clean refusal."""
    if "MemoryError" in str(e):
        raise AssertionError(f"a small input exhausted memory: {str(e)[:300]}") from e
    bug = foreign_cause(e)
    if bug is not None and not skip_known(bug):
        raise AssertionError(f"a reader bug refused as a bad file: {type(bug).__name__}: {str(bug)[:300]} "
                             f"(reported as {type(e).__name__}: {str(e)[:300]})") from e


def check_isolated(e: BaseException) -> None:
    """For the targets that load through the isolated reader (fastrnn.io.isolate): a refusal saying
    that a non-FastRNNError escaped the reader in the child is a finding (the parent turns it into a
    ModelFormatError, so that the caller is safe, but the reader has a bug)."""
    from fastrnn.io.isolate import CHILD_ESCAPE

    if CHILD_ESCAPE in str(e):
        raise AssertionError(f"a non-FastRNNError escaped the reader in the isolated child: {str(e)[:600]}") from e


@contextlib.contextmanager
def contract(on_refused=None):
    """The contract around one input: a ``FastRNNError`` is a refusal (``on_refused(e)`` if given,
    then check_error); any other exception escapes as a finding, unless skip_known says otherwise.
    ``CoreNotBuiltError`` is a finding: nothing was tested."""
    from fastrnn.errors import CoreNotBuiltError, FastRNNError

    try:
        yield
    except CoreNotBuiltError as e:
        raise AssertionError(f"the compiled core cannot be imported: nothing is being tested ({e})") from e
    except FastRNNError as e:
        if on_refused is not None:
            on_refused(e)
        check_error(e)
    except Exception as e:  # noqa: BLE001 - a finding, unless already known and skipped on purpose
        if not skip_known(e):
            raise


def require_core() -> str:
    """Import fastrnn and check that its compiled core builds and runs a model; the path of the
    fastrnn package in use.  Raises ``SystemExit`` with the reason otherwise: without the core every
    model build raises ``CoreNotBuiltError``, which a harness would count as a clean refusal (a
    checkout imported through ``PYTHONPATH=.`` while the built package is installed elsewhere)."""
    try:
        import numpy as np

        import fastrnn
        from fastrnn import _core  # noqa: F401
        from fastrnn.spec import DenseSpec, ModelSpec

        spec = ModelSpec(layers=[DenseSpec(name="d", weight=np.eye(2, dtype=np.float32), bias=None)],
                         input_features=2)
        y = fastrnn.Model(spec).predict(np.ones((1, 1, 2), np.float32))
        assert np.allclose(y, 1.0), y
    except BaseException as e:  # noqa: BLE001 - any failure here: stop before fuzzing nothing
        where = getattr(sys.modules.get("fastrnn"), "__file__", None)
        raise SystemExit(
            f"fuzz: the fastrnn imported from {where} cannot build a model ({type(e).__name__}: {e}).\n"
            "Every input would be refused with CoreNotBuiltError and the run would test nothing.  Run "
            "`python fuzz/run.py ...` (no PYTHONPATH=.) to use the installed fastrnn, or build the checkout "
            "in place first (pip install -e . --no-build-isolation).") from None
    return os.path.dirname(os.path.abspath(fastrnn.__file__))


def predict_probe(model) -> None:
    """One small predict on a loaded model (ids or 0.5-valued features), skipped when the declared
    input width is absurd: loading succeeded, so the model must also run."""
    import numpy as np

    spec = model.spec
    if spec.takes_ids:
        x = np.ones((2, 3), np.int64)
    elif isinstance(spec.input_features, int) and 0 < spec.input_features <= 4096:
        x = np.full((2, 3, spec.input_features), 0.5, np.float32)
    else:
        return
    model.predict(x)
