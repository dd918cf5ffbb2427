"""The machine a run measures: CPU model, ISA and its measured FMA peak, BLAS and its kernel,
versions, threads (the report's header and the JSON's ``meta``)."""
from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import time
from typing import Any, Callable, Sequence

import numpy as np

from .engines import ENGINES, _REQUIRES

def _cpu_model() -> str:
    """``lscpu``'s model name (it also names ARM cores), else /proc/cpuinfo's, else platform's."""
    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                                 env=dict(os.environ, LC_ALL="C")).stdout
            for line in out.splitlines():
                if line.strip().lower().startswith("model name:"):
                    return line.split(":", 1)[1].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _dist_version(*names: str) -> str | None:
    for n in names:
        try:
            return importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def versions(engine_names: Sequence[str] = ENGINES) -> dict[str, str]:
    import fastrnn

    want: dict[str, tuple[str, ...]] = {"fastrnn": ("fastrnn",)}
    for e in engine_names:
        for m in _REQUIRES[e]:
            want[m] = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
                       "onnxruntime": ("onnxruntime", "onnxruntime-openmp", "ort-nightly")}.get(m, (m,))
    out: dict[str, str] = {}
    for m, dists in want.items():
        if m == "fastrnn":
            out[m] = fastrnn.__version__
        elif importlib.util.find_spec(m) is not None:
            out[m] = _dist_version(*dists) or "?"
    out["numpy"] = np.__version__
    out["python"] = platform.python_version()
    return out


def _numpy_blas_lib() -> tuple[Any, str, str] | None:
    """ctypes handle of the OpenBLAS numpy uses (Linux), its symbol prefix and suffix, or None."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = {ln.split()[-1] for ln in f if "openblas" in ln.lower() and "numpy" in ln.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre, suf in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "64_"), ("openblas_", "")):
            if hasattr(lib, f"{pre}get_corename{suf}"):
                return lib, pre, suf
    return None


def numpy_blas(threads: int | None = None) -> dict[str, Any]:
    """numpy's BLAS (name, version, kernel) and its sgemm rate: 1024^3 float32 `a @ b`, best of 5,
    with `threads` BLAS threads where that can be set."""
    import ctypes

    d: dict[str, Any] = {"name": "unknown", "kernel": "unknown", "threads": None}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        d["name"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        cfg = blas.get("openblas configuration") or ""
        if cfg:
            d["config"] = cfg
    except Exception:  # noqa: BLE001 - older numpy: no dicts mode
        pass
    restore = None
    found = _numpy_blas_lib()
    if found:
        lib, pre, suf = found
        core = getattr(lib, f"{pre}get_corename{suf}")
        core.restype = ctypes.c_char_p
        d["kernel"] = core().decode()
        get_n, set_n = getattr(lib, f"{pre}get_num_threads{suf}", None), getattr(lib, f"{pre}set_num_threads{suf}", None)
        if get_n is not None and set_n is not None:
            restore = (set_n, int(get_n()))
            if threads:
                set_n(int(threads))
            d["threads"] = int(get_n())
    else:
        try:
            import threadpoolctl

            for m in threadpoolctl.threadpool_info():
                if m.get("user_api") == "blas" and "numpy" in m.get("filepath", ""):
                    d["kernel"] = m.get("architecture") or "unknown"
                    d["threads"] = m.get("num_threads")
        except Exception:  # noqa: BLE001 - optional
            pass
    try:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((1024, 1024), dtype=np.float32)
        b = rng.standard_normal((1024, 1024), dtype=np.float32)
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(5))
        d["sgemm_gflops"] = 2 * 1024 ** 3 / best / 1e9
    finally:
        if restore:
            restore[0](restore[1])
    return d


def _timed(f: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _probe(name: str, *args: Any, **kwargs: Any) -> float | None:
    """The core's benchmark probe ``name`` called with these arguments (None when this build lacks it
    or it fails: a probe that fails means "n/a", not a failed benchmark)."""
    try:
        from ..runtime import core

        probe = getattr(core(), name, None)
        return float(probe(*args, **kwargs)) if probe is not None else None
    except Exception:  # noqa: BLE001 - see above
        return None


def fma_peak_per_core(seconds: float = 0.2) -> float | None:
    """One core's measured fp32 FMA GFLOP/s with the kernels of the ISA in use (None when this build
    lacks the probe)."""
    return _probe("fma_peak_gflops", seconds=seconds)


def cache_read_gbps(nbytes: int, seconds: float = 0.1) -> float | None:
    """One core's measured read bandwidth (GB/s) over a buffer of ``nbytes``, read again and again with
    the vector loads of the ISA in use: the cache level weights of that size stream from at batch 1
    (None when this build lacks the probe)."""
    return _probe("cache_read_gbps", int(nbytes), seconds=seconds)


def blas_kernel(blas: str) -> str:
    """The BLAS kernel fastrnn's OpenBLAS picked, from ``fastrnn.info()["blas"]`` ('... (kernel Haswell)')."""
    m = re.search(r"\(kernel ([^)]+)\)", blas or "")
    return m.group(1) if m else "unknown"


def machine_info(threads: int, engine_names: Sequence[str] = ENGINES, measure: bool = True) -> dict[str, Any]:
    import fastrnn

    info = fastrnn.info()
    d: dict[str, Any]
    d = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
         "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
         "platform": platform.platform(), "threads": threads, "isa": info["isa"], "blas": info["blas"],
         "blas_kernel": blas_kernel(info["blas"]), "fma_peak_isa": info["isa"],
         "versions": versions(engine_names)}
    try:
        d["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        d["cpus_usable"] = os.cpu_count()
    if measure:
        per_core = fma_peak_per_core()
        d["fma_peak_gflops_per_core"] = per_core
        d["fma_peak_gflops"] = per_core * threads if per_core else None
        d["numpy_blas"] = numpy_blas(threads)
    return d


