#!/bin/bash
# Check every kernel table against a double-precision reference (kernel_check.cc).  Without
# AVX-512 on this CPU, the avx512 kernels are compiled with AVX2 flags (same template and
# parameters, 64-byte vectors lowered to ymm pairs).
set -e
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/fastrnn_kernel_check}
mkdir -p "$OUT"
CXX="g++ -std=c++17 -O2 -Isrc"
AVX512="-mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq -mprefer-vector-width=512"
grep -q avx512f /proc/cpuinfo || AVX512="-mavx2 -mfma"
$CXX -c src/fastrnn/cpu/kernels_generic.cc -o "$OUT/kg.o"
$CXX -mavx2 -mfma -c src/fastrnn/cpu/kernels_avx2.cc -o "$OUT/ka.o"
$CXX $AVX512 -c src/fastrnn/cpu/kernels_avx512.cc -o "$OUT/k5.o"
$CXX -DFASTRNN_HAVE_AVX2=1 -DFASTRNN_HAVE_AVX512=1 benchmarks/kernels/kernel_check.cc src/fastrnn/cpu/dispatch.cc \
  "$OUT/kg.o" "$OUT/ka.o" "$OUT/k5.o" -o "$OUT/kernel_check"
"$OUT/kernel_check"
