"""Parse HDF5 content (Keras ``.h5`` files, the ``model.weights.h5`` inside a ``.keras`` archive) in a
separate, resource-limited process, so that a corrupted or hostile file cannot take the caller down.

HDF5 files are parsed by the HDF5 C library (through h5py), which can crash (segfault, abort) or run
away on corrupted metadata; no Python code can catch that.  :func:`spec_isolated` therefore runs the
ordinary reader (:func:`fastrnn.io.keras_file.spec_from_keras_file` with ``isolate=False``) in a fresh
``python`` child process (``sys.executable``, the caller's ``sys.path``, never ``fork``):

* limits in the child: address space ``max(2 GiB, 4 x the file's size + 1 GiB)`` (``RLIMIT_AS``),
  CPU time ``20 s + 1 s per 16 MiB`` (``RLIMIT_CPU``), no core dumps; the parent kills it after
  ``3 x the CPU limit + 30 s`` of wall time.  "The file's size" is its real size on disk (``os.stat``),
  never a size the file declares (a zip member claiming 1 TiB must not lift the limits).  One BLAS / OpenMP thread, a new session (a Ctrl-C
  at the terminal reaches only the caller, which then kills the child).
* Keras, TensorFlow and PyTorch cannot be imported in the child (an import hook refuses them).
* The child sends the model back as the bytes of a ``.fastrnn`` file (:func:`fastrnn.io.native.dumps_spec`),
  read by the parent with every check of the native reader (:func:`fastrnn.io.native.loads_spec`):
  nothing the child says is unpickled.  The reader's :class:`~fastrnn.errors.ConversionWarning` messages
  come back as text and are issued again in the parent.  The request (path, ``architecture``) goes the other way as a
  pickle, from the trusted parent.
* A reader error in the child that is a :class:`~fastrnn.errors.FastRNNError` is raised in the parent
  with the same class and message; anything else (and a class the parent cannot build) becomes a
  :class:`~fastrnn.errors.ModelFormatError` naming the file and the child's exception type and
  message.  A child killed by a signal, or out of memory, CPU time or wall time, raises
  :class:`~fastrnn.errors.ModelFormatError` naming the file and the signal or the limit.

Cost: the start of a Python process importing numpy and h5py (about 0.3-0.5 s).  Pass
``isolate=False`` (``fastrnn.load(path, isolate=False)``) for files you trust to parse them in-process,
or a dict to change the limits: ``isolate={"cpu": 5, "wall": 15, "memory": 1 << 30}``.

``python -m fastrnn.io.isolate FILE [FILE...]`` reads files the same way and prints what it got (a
manual check).
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

from ..errors import ArgumentError, ArgumentTypeError, FastRNNError, ModelFormatError

if TYPE_CHECKING:
    from ..spec import ModelSpec

__all__ = ["spec_isolated", "limits_for", "check_isolate"]

MEMORY_FLOOR = 2 << 30  # bytes of address space the child may always use
CPU_FLOOR_S = 20  # CPU seconds the child may always use (a small Keras file parses in well under 1 s)
CPU_BYTES_PER_S = 16 << 20  # plus one CPU second per this many bytes of file
_FRAMEWORKS = ("tensorflow", "keras", "tf_keras", "tensorboard", "torch", "jax")
_PROTOCOL_MAGIC = b"FRNNISO1"

# The child's first lines: the caller's sys.path (so that it imports this same fastrnn, h5py and
# numpy whatever the caller's working directory holds), then the real entry point.  The child runs in
# isolated mode (``-I``): no working directory on sys.path while the boot code's own imports run (a
# json.py in an upload directory would run first), no PYTHON* variables, no user site-packages.
_BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
         "from fastrnn.io.isolate import _child_main; _child_main()")


def limits_for(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The limits :func:`spec_isolated` puts on the child for ``path``: ``memory`` (bytes of address
    space), ``cpu`` (CPU seconds) and ``wall`` (seconds before the parent kills it), from the file's
    real size on disk only: nothing the file declares (zip member sizes, dataset shapes) raises them."""
    p = os.fspath(path)
    try:
        size = os.stat(p).st_size
    except (OSError, ValueError):
        size = 0
    cpu = int(CPU_FLOOR_S + size // CPU_BYTES_PER_S)
    return {"memory": max(MEMORY_FLOOR, 4 * size + (1 << 30)), "cpu": cpu, "wall": 3 * cpu + 30}


def check_isolate(isolate: object) -> dict[str, Any] | None:
    """The ``isolate`` option: ``True`` (default limits), ``False``, or a dict overriding some limits
    (``memory`` bytes, ``cpu`` seconds, ``wall`` seconds; positive numbers).  ``None`` for ``False``,
    else the overrides (a dict, maybe empty); ArgumentTypeError / ArgumentError (TypeError / ValueError)
    for anything else."""
    if isinstance(isolate, bool):
        return {} if isolate else None
    if not isinstance(isolate, dict):
        raise ArgumentTypeError(f"isolate must be True, False or a dict of limits, got {isolate!r}")
    extra = set(isolate) - {"memory", "cpu", "wall"}
    if extra:
        raise ArgumentTypeError(f"isolate: unknown limit(s) {', '.join(sorted(map(str, extra)))} (memory, cpu, wall)")
    for k, v in isolate.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
            raise ArgumentError(f"isolate: limit {k!r} must be a positive number, got {v!r}")
    return {k: (int(v) if k != "wall" else float(v)) for k, v in isolate.items()}


def _child_paths() -> list[str]:
    """The caller's sys.path, absolute, with the directory this fastrnn was imported from first."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = [here]
    for entry in sys.path:
        if not isinstance(entry, str) or not entry:
            continue  # '' (the working directory) is not carried: it could shadow fastrnn or h5py
        a = os.path.abspath(entry)
        if a not in out:
            out.append(a)
    return out


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def spec_isolated(path: str | os.PathLike[str], origin: str, architecture: Any = None, keras_version: str | None = None,
                  limits: dict[str, Any] | None = None) -> ModelSpec:
    """Run ``spec_from_keras_file(path, architecture, keras_version=..., isolate=False)`` in a child
    process under ``limits`` (default :func:`limits_for`); the :class:`ModelSpec` it read, or the
    error it raised.  ``origin`` is how messages name the file."""
    from .native import loads_spec

    exe = sys.executable
    if not exe or not os.path.exists(exe):
        raise ModelFormatError(f"{origin}: cannot read HDF5 content in an isolated process: no Python executable "
                               f"(sys.executable is {exe!r}); pass isolate=False for a trusted file")
    lim = dict(limits_for(path), **(limits or {}))
    if limits and "cpu" in limits and "wall" not in limits:
        lim["wall"] = 3 * lim["cpu"] + 30
    try:
        request = pickle.dumps({"path": os.fspath(path), "architecture": architecture, "keras_version": keras_version,
                                "memory": lim["memory"], "cpu": lim["cpu"]}, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - an architecture= that cannot even be pickled is no Keras config
        raise ModelFormatError(f"{origin}: architecture must be a Keras config (JSON text or dict) or a ModelSpec, "
                               f"got {type(architecture).__name__} ({type(e).__name__}: {str(e)[:120]})") from None
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTHONSTARTUP", None)
    try:
        proc = subprocess.Popen([exe, "-I", "-c", _BOOT, json.dumps(_child_paths())], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, close_fds=True,
                                start_new_session=True)
    except OSError as e:
        raise ModelFormatError(f"{origin}: cannot start the isolated HDF5 reader process ({e}); pass isolate=False "
                               "for a trusted file") from None
    timed_out = False
    try:
        try:
            out, err = proc.communicate(request, timeout=lim["wall"])
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            out, err = proc.communicate()
    finally:
        if proc.poll() is None:  # KeyboardInterrupt or another exception in the caller: no orphan
            proc.kill()
            proc.wait()
    rc = proc.returncode
    if timed_out:
        raise ModelFormatError(f"{origin}: parsing the HDF5 content took longer than {lim['wall']} s; the isolated "
                               "reader process was killed (a corrupted or hostile file?)")
    msg, payload = _parse_reply(out)
    if msg is not None and rc == 0:
        from ..errors import ConversionWarning

        texts = msg.get("warnings")
        for text in texts if isinstance(texts, list) else []:  # the reader's warnings, issued here
            if isinstance(text, str):
                warnings.warn(text, ConversionWarning, stacklevel=4)
        if msg.get("ok"):
            return loads_spec(payload, os.fspath(path))
        _raise_child_error(msg, origin, lim)
    if rc is not None and rc < 0:
        sig = -rc
        if sig == getattr(signal, "SIGXCPU", None):
            raise ModelFormatError(f"{origin}: parsing the HDF5 content hit the CPU-time limit of {lim['cpu']} s in "
                                   "the isolated reader process (a corrupted or hostile file?)")
        what = "was killed" if sig == signal.SIGKILL else "crashed"
        raise ModelFormatError(f"{origin}: the HDF5 library {what} ({_signal_name(sig)}) while parsing the file in "
                               "the isolated reader process: the file is corrupted or not a valid HDF5 file")
    tail = err.decode("utf-8", "replace").strip()[-600:]
    raise ModelFormatError(f"{origin}: the isolated HDF5 reader process failed (exit status {rc}){': ' + tail if tail else ''}; "
                           "isolate=False reads a trusted file in this process")


def _parse_reply(out: bytes) -> tuple[dict[str, Any] | None, bytes | memoryview]:
    """``(message dict, payload bytes)`` from the child's stdout, or ``(None, b"")`` if malformed."""
    m = len(_PROTOCOL_MAGIC)
    if len(out) < m + 8 or out[:m] != _PROTOCOL_MAGIC:
        return None, b""
    n = int.from_bytes(out[m:m + 8], "little")
    if n > len(out) - m - 8:
        return None, b""
    try:
        msg = json.loads(out[m + 8:m + 8 + n].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, b""
    if not isinstance(msg, dict):
        return None, b""
    return msg, memoryview(out)[m + 8 + n:]


# The message of a non-FastRNNError that escaped the reader in the child; the isolated fuzz targets
# (fuzz/fuzz_h5.py, fuzz/fuzz_keras_isolated.py) count a refusal carrying it as a finding.
CHILD_ESCAPE = "the isolated reader raised"


def _raise_child_error(msg: dict[str, Any], origin: str, lim: dict[str, Any]) -> NoReturn:
    """Raise, in the parent, the error the child reported: a FastRNNError with its class and message
    (naming the file), anything else a ModelFormatError naming the file and the child's exception.
    Nothing here can fail on what the child sent (a class that takes other arguments, odd text)."""
    from .. import errors

    typ, text = msg.get("type"), msg.get("message")
    typ = typ if isinstance(typ, str) else "?"
    text = text if isinstance(text, str) else repr(text)
    if typ == "MemoryError":
        raise ModelFormatError(f"{origin}: parsing the HDF5 content needed more than the {lim['memory'] >> 20} MiB "
                               "memory limit of the isolated reader process" + (f" ({text[:200]})" if text else ""))
    cls = getattr(errors, typ, None) if typ in errors.__all__ else None
    if isinstance(cls, type) and issubclass(cls, FastRNNError):
        if origin not in text:
            text = f"{origin}: {text}"
        try:
            err = cls(text)
        except Exception:  # noqa: BLE001 - a subclass with another signature: the generic error below
            err = None
        if err is not None and str(err) == text:
            raise err
    # Anything else escaped the reader (not a FastRNNError: a bug, which the fuzzers look for): still
    # a FastRNNError naming the file here, with the child's exception type and message.
    raise ModelFormatError(f"{origin}: cannot read the file ({CHILD_ESCAPE} {typ}: {text[:2000]})")


# --------------------------------------------------------------------------------- the child
class _BlockFrameworks:
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in _FRAMEWORKS:
            raise ImportError(f"{name} must not be imported while reading a model file")
        return None


def _set_limits(memory: int, cpu: int) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    for what, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu)):
        hard = resource.getrlimit(what)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(what, (value, hard if what == resource.RLIMIT_CPU else value))
        except (ValueError, OSError):
            pass


def _text(e: BaseException) -> str:
    """``str(e)``, whatever ``e`` is (its ``__str__`` may fail)."""
    try:
        return str(e)
    except Exception:  # noqa: BLE001
        return f"<{type(e).__name__} with an unprintable message>"


def _child_main() -> None:
    # stdout carries the reply; anything a library prints goes to stderr instead
    reply = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    raw = sys.stdin.buffer.read()
    sys.meta_path.insert(0, _BlockFrameworks())  # before anything else is imported, the request included
    payload = b""
    caught: list[warnings.WarningMessage] = []
    try:
        req = pickle.loads(raw)  # from the parent process (trusted)
        _set_limits(req["memory"], req["cpu"])
        from .keras_file import spec_from_keras_file
        from .native import dumps_spec

        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            caught = rec
            spec = spec_from_keras_file(req["path"], architecture=req["architecture"],
                                        keras_version=req["keras_version"], isolate=False)
        payload = dumps_spec(spec)
        msg: dict[str, Any] = {"ok": True}
    except MemoryError as e:
        payload, msg = b"", {"ok": False, "type": "MemoryError", "message": _text(e)}
    except Exception as e:  # noqa: BLE001 - sent to the parent, which raises it there
        payload, msg = b"", {"ok": False, "type": type(e).__name__, "message": _text(e)}
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in _FRAMEWORKS)
    if loaded:  # never expected: the hook refuses them
        payload, msg = b"", {"ok": False, "type": "RuntimeError", "message": f"frameworks were imported: {loaded}"}
    from ..errors import ConversionWarning

    msg["warnings"] = [str(w.message)[:4000] for w in caught[:20] if issubclass(w.category, ConversionWarning)]
    head = json.dumps(msg).encode("utf-8")
    reply.write(_PROTOCOL_MAGIC + len(head).to_bytes(8, "little") + head)
    reply.write(payload)
    reply.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastrnn.io.isolate FILE...``: read each file through the isolated reader."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m fastrnn.io.isolate FILE [FILE...]", file=sys.stderr)
        return 2
    status = 0
    for p in argv:
        try:
            spec = spec_isolated(p, f"'{p}'")
            print(f"{p}: ok, {len(spec.layers)} layers ({', '.join(l.kind for l in spec.layers)})")
        except FastRNNError as e:
            status = 1
            print(f"{p}: {type(e).__name__}: {e}")
    return status


if __name__ == "__main__":
    sys.exit(main())
