#!/bin/bash
# Build the kernel microbenchmark against the kernels of this checkout and run it:
#   benchmarks/kernels/run.sh [step|gemm|gemmbig|gemmproj|gemmshape|fold|qgemm] [isa]   (gemmshape: GEMM_SHAPE="rows,N,K;...")
set -e
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/fastrnn_kernel_bench}
mkdir -p "$OUT"
INC=$(python -c 'import scipy_openblas32 as s; print(s.get_include_dir())')
LIBDIR=$(python -c 'import scipy_openblas32 as s; print(s.get_lib_dir())')
LIB=$(python -c 'import scipy_openblas32 as s; print(s.get_library())')
CXX="g++ -std=c++17 -O3 -Isrc -I$INC"
$CXX -c src/fastrnn/cpu/kernels_generic.cc -o "$OUT/kg.o"
$CXX -mavx2 -mfma -c src/fastrnn/cpu/kernels_avx2.cc -o "$OUT/ka.o"
$CXX -mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq -mprefer-vector-width=512 -c src/fastrnn/cpu/kernels_avx512.cc -o "$OUT/k5.o"
$CXX -DFASTRNN_HAVE_AVX2=1 -DFASTRNN_HAVE_AVX512=1 benchmarks/kernels/kernel_bench.cc src/fastrnn/cpu/dispatch.cc \
  src/fastrnn/blas.cc "$OUT/kg.o" "$OUT/ka.o" "$OUT/k5.o" -L"$LIBDIR" -l"$LIB" -Wl,-rpath,"$LIBDIR" -o "$OUT/kernel_bench"
"$OUT/kernel_bench" "$@"
