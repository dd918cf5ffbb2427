"""Fuzz whole HDF5 files through the isolated reader (fastrnn.io.isolate): raw Keras ``.h5`` files and
the ``model.weights.h5`` inside a ``.keras`` archive.

Input: one mode byte, then the bytes of an HDF5 file.

* ``mode & 1 == 0``: the bytes are written as ``input.h5`` and loaded with ``fastrnn.load`` (a legacy
  full-model ``.h5``: ``model_config`` + ``model_weights``).
* ``mode & 1 == 1``: the bytes become the ``model.weights.h5`` of a ``.keras`` archive built by the
  harness (valid zip CRC) with the config of ``corpus/keras_zip/<KERAS_WEIGHTS[(mode >> 1) % 4]>.json``.

``fastrnn.load`` parses HDF5 in a child process by default, so a crash of the HDF5 C library on a
corrupted file is reported as a ``ModelFormatError`` ("the HDF5 library crashed (SIGSEGV) ..."): that
is the contract holding, not a finding.  Such inputs are counted (and kept under
``WORKDIR/contained/`` when ``FASTRNN_FUZZ_KEEP_CONTAINED`` names a directory) so that a run reports
how many crashes the isolation contained.  A finding is anything else escaping: an exception that is
not a FastRNNError, a crash or hang of the *caller*, a MemoryError in the caller, or a refusal saying
that a non-FastRNNError escaped the reader in the child (_harness.check_isolated).

Each execution starts a Python process (the isolation): a few executions per second, and no coverage
feedback from the child, so ``fuzz/run.py`` runs this target with its mutation fuzzer (``--fallback``
is implied), mutations guided by ``dicts/h5.dict`` (HDF5 signatures and Keras names).

Exploration mode, ``FASTRNN_FUZZ_H5_FORK=1``: each input is parsed in-process (``isolate=False``) in a
``fork()`` of the harness instead (h5py already imported: ~100x faster); a child killed by a signal
(SIGALRM after ``LIMITS["cpu"]`` s: a hang) is counted and kept like a contained crash.  Use it to search, then replay what it keeps through the
default (isolated) path: ``python fuzz/run.py h5 --replay FILE``.  CI runs the isolated path.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import os
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import fastrnn  # noqa: E402
from fastrnn.errors import FastRNNError  # noqa: E402
from _harness import CORPUS_DIR, KERAS_WEIGHTS, check_isolated, contract, predict_probe, write_tmp  # noqa: E402

_CONFIGS = {}
LIMITS = {"cpu": 4, "wall": 15}  # for fastrnn.load(path, isolate=LIMITS); default memory limit (2 GiB)
STATS = {"executions": 0, "loaded": 0, "refused": 0, "contained_crashes": 0}


def _config(i):
    if i not in _CONFIGS:
        with open(os.path.join(CORPUS_DIR, "keras_zip", f"{KERAS_WEIGHTS[i]}.json"), "rb") as f:
            _CONFIGS[i] = f.read()[1:]  # the keras_zip seed: selector byte + config.json
    return _CONFIGS[i]


def _archive(config: bytes, weights: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", '{"keras_version": "3.15.1", "date_saved": "2025-01-01@00:00:00"}')
        z.writestr("config.json", config)
        z.writestr("model.weights.h5", weights)
    return buf.getvalue()


def _keep_contained(data: bytes, message: str) -> None:
    d = os.environ.get("FASTRNN_FUZZ_KEEP_CONTAINED")
    if d:
        os.makedirs(d, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()[:16]
        with open(os.path.join(d, f"contained-{name}.bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(d, f"contained-{name}.txt"), "w") as f:
            f.write(message + "\n")


def _forked(path, data):
    """Exploration mode: load with isolate=False in a fork; a signal death is a contained crash."""
    import signal

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            # the parent's SIGALRM handler is Python code, which never runs while libhdf5 loops: die instead
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(LIMITS["cpu"])
            try:
                fastrnn.load(path, isolate=False)
            except FastRNNError as e:
                code = 3 if "MemoryError" in str(e) else 0
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
                code = 2
        finally:
            os._exit(code)
    import time

    deadline = time.monotonic() + LIMITS["cpu"] + 5
    while True:  # the child's own alarm should end a hang; if not (stuck before it was set), kill it here
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    if os.WIFSIGNALED(status):
        STATS["contained_crashes"] += 1
        _keep_contained(data, f"forked reader killed by {signal.Signals(os.WTERMSIG(status)).name}")
    elif os.WEXITSTATUS(status) == 2:
        raise AssertionError("a non-FastRNNError escaped the reader (traceback above)")
    elif os.WEXITSTATUS(status) == 3:
        raise AssertionError("a small input exhausted memory (MemoryError)")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    STATS["executions"] += 1
    mode, body = data[0], data[1:]
    if mode & 1:
        path = write_tmp("input.keras", _archive(_config((mode >> 1) % len(KERAS_WEIGHTS)), body))
    else:
        path = write_tmp("input.h5", body)
    if os.environ.get("FASTRNN_FUZZ_H5_FORK") == "1":
        # imported once here, not in every fork (never the core: its thread pool does not survive fork)
        importlib.import_module("h5py")
        importlib.import_module("fastrnn.io.keras_file")

        return _forked(path, data)
    # the isolated path (the default) with tighter CPU / wall limits than the defaults (20 s CPU):
    # a hang is contained well within run.py's per-input timeout (20 s)
    with contract(on_refused=lambda e: _count_refusal(data, e)):
        model = fastrnn.load(path, isolate=LIMITS)
        STATS["loaded"] += 1
        predict_probe(model)


def _count_refusal(data, e):
    STATS["refused"] += 1
    check_isolated(e)
    msg = str(e)
    if "isolated reader process" in msg and ("crashed" in msg or "was killed" in msg or "limit" in msg
                                             or "longer than" in msg or "failed" in msg):
        STATS["contained_crashes"] += 1
        _keep_contained(data, msg)


TestOneInput = test_one_input

if __name__ == "__main__":
    from run import main

    sys.exit(main(["h5"] + sys.argv[1:]))
