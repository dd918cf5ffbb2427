"""Build fastrnn._core: a pybind11 extension linked against scipy-openblas32.

Kernels (src/fastrnn/cpu/kernels_<isa>.cc) are compiled once per ISA with that ISA's flags and
chosen at run time; the rest is portable (never -march=native).  The BLAS shared library is
copied next to the extension and found through RPATH=$ORIGIN (macOS: @loader_path), so the
installed package needs numpy only at run time; auditwheel / delocate keep it there (it is already
inside the wheel) when they repair the wheel (.ci/wheel.sh, pyproject.toml [tool.cibuildwheel]).
Sources of the extension compile in parallel (pybind11's ParallelCompile: all cores, or
NPY_NUM_BUILD_JOBS).
"""
import filecmp
import glob
import os
import platform
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import scipy_openblas32
from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import Extension, find_packages, setup

ParallelCompile("NPY_NUM_BUILD_JOBS").install()

X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
ARM64 = platform.machine().lower() in ("aarch64", "arm64")
MACOS = sys.platform == "darwin"
# aarch64: the generic table is the NEON one (plain armv8-a; the int8 sdot function carries its own
# target attribute and runs only where HWCAP_ASIMDDP says so).  -fno-schedule-insns: GCC's pre-RA
# scheduler hoists all four weight loads of the 6 x 4 tile and spills two of its 24 accumulators
# every k (benchmarks/README.md, llvm-mca); clang ignores the flag.
KERNEL_FLAGS = {"generic": ["-fno-schedule-insns"] if ARM64 else []}
if X86:
    KERNEL_FLAGS["avx2"] = ["-mavx2", "-mfma"]
    # -Wno-maybe-uninitialized: GCC 12 flags the _mm512_undefined_* operand inside its own
    # intrinsics (extract / shuffle / shift) wherever inlining reaches them; the kernel harness
    # (.ci/aarch64.sh) builds this file with the same flag.
    KERNEL_FLAGS["avx512"] = ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
                              "-mprefer-vector-width=512", "-Wno-maybe-uninitialized"]
KERNEL_SOURCES = {isa: f"src/fastrnn/cpu/kernels_{isa}.cc" for isa in KERNEL_FLAGS}
CORE_SOURCES = sorted(
    set(glob.glob("src/fastrnn/**/*.cc", recursive=True)) - set(glob.glob("src/fastrnn/cpu/kernels_*.cc"))
) + sorted(glob.glob("src/bindings/*.cc"))
BLAS_LIB = scipy_openblas32.get_library(fullname=True)
# FASTRNN_SANITIZE=1: build the core with AddressSanitizer + UndefinedBehaviorSanitizer (see
# .ci/sanitize.sh; run Python with LD_PRELOAD of libasan/libubsan).  Never for release builds.
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-g"] \
    if os.environ.get("FASTRNN_SANITIZE") == "1" else []


class BuildExt(build_ext):
    """Compile each ISA's kernels with its own flags, then ship the BLAS library beside _core."""

    def build_extension(self, ext):
        if ext.name != "fastrnn._core":
            return super().build_extension(ext)
        with ThreadPoolExecutor(len(KERNEL_FLAGS)) as pool:  # one ISA's kernels per job, all at once
            jobs = [pool.submit(self.compiler.compile, [KERNEL_SOURCES[isa]], output_dir=self.build_temp,
                                include_dirs=ext.include_dirs,
                                extra_postargs=["-std=c++17", "-O3", "-fPIC", "-fvisibility=hidden"] + flags + SANITIZE)
                    for isa, flags in KERNEL_FLAGS.items()]
            ext.extra_objects = [obj for job in jobs for obj in job.result()]
        super().build_extension(ext)
        self._copy_blas(os.path.dirname(self.get_ext_fullpath(ext.name)))

    def copy_extensions_to_source(self):  # editable / --inplace builds
        super().copy_extensions_to_source()
        self._copy_blas(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastrnn"))

    def copy_file(self, infile, outfile, *args, **kwargs):
        # Never rewrite a shared library in place: a running process that has it mapped (a test, a
        # notebook using the checkout) dies with SIGBUS / SIGSEGV when its pages change under it.
        # A copy beside it renamed over it leaves the old inode to whoever has it open.
        if not os.path.isdir(outfile) and os.path.exists(outfile) and outfile.endswith((".so", ".dylib", ".pyd")):
            _replace_atomically(infile, outfile)
            return outfile, 1
        return super().copy_file(infile, outfile, *args, **kwargs)

    @staticmethod
    def _copy_blas(dest):
        _replace_atomically(os.path.join(scipy_openblas32.get_lib_dir(), BLAS_LIB), os.path.join(dest, BLAS_LIB))


def _replace_atomically(src, dst):
    """Copy src to dst through a temporary file in dst's folder and os.replace (atomic on POSIX);
    nothing is written when dst already has the same bytes."""
    if os.path.exists(dst) and filecmp.cmp(src, dst, shallow=False):
        return
    tmp = f"{dst}.tmp{os.getpid()}"
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


ext = Pybind11Extension(
    "fastrnn._core",
    CORE_SOURCES,
    # headers too: a changed kernels_impl.h must rebuild the core (setuptools compares these dates)
    depends=sorted(glob.glob("src/**/*.h", recursive=True)),
    cxx_std=17,
    include_dirs=["src", scipy_openblas32.get_include_dir()],
    define_macros=[("FASTRNN_HAVE_" + isa.upper(), "1") for isa in KERNEL_FLAGS if isa != "generic"],
    library_dirs=[scipy_openblas32.get_lib_dir()],
    libraries=[scipy_openblas32.get_library()],
    runtime_library_dirs=[] if MACOS else ["$ORIGIN"],
    extra_compile_args=["-O3"] + SANITIZE,
    extra_link_args=SANITIZE + (["-Wl,-rpath,@loader_path"] if MACOS else []),
)

ext_modules = [ext]
try:  # the thin Cython step entry point (optional: Stream falls back to the pybind11 step)
    import numpy
    from Cython.Build import cythonize

    ext_modules += cythonize(
        [Extension("fastrnn._step", ["fastrnn/_step.pyx"], include_dirs=[numpy.get_include()], language="c++",
                   extra_compile_args=["-O2"], define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])],
        compiler_directives={"language_level": "3"}, quiet=True)
except ImportError as e:  # pragma: no cover
    print(f"fastrnn: building without the Cython step entry point ({e})")

setup(
    packages=find_packages(include=["fastrnn", "fastrnn.*"]),
    package_data={"fastrnn": ["*.pyi", "py.typed", "data/*"]},
    ext_modules=ext_modules,
    cmdclass={"build_ext": BuildExt},
)
