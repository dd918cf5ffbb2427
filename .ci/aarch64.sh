#!/usr/bin/env bash
# The kernel harness (tests/cpp/kernel_tests.cc: every KernelTable against a scalar double
# reference) built and run natively (x86: generic / AVX2 / AVX-512 tables; without AVX-512 the
# avx512 file is built with AVX2 flags, which runs its logic) and cross-compiled for aarch64, run
# under qemu-user (about 2 CPU-minutes in all, most of it compiling):
#   armv8-a build on a Cortex-A57 (ARMv8.0, no dotprod): NEON f32 tiles, int8 on the portable path;
#   armv8-a build on qemu's "max" CPU: the same binary picks the sdot int8 path at run time;
#   armv8.2-a+dotprod build on "max": sdot compiled in.
# Needs g++-aarch64-linux-gnu and qemu-user (Debian; .ci/run installs them).  Speed under qemu
# means nothing: this checks results only.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${FASTRNN_AARCH64_OUT:-}" ]]; then  # keep the binaries and logs there
    out="$FASTRNN_AARCH64_OUT"
    mkdir -p "$out"
else
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi
CXXFLAGS=(-std=c++17 -O3 -Wall -Wextra -Werror -Isrc)
CPU=src/fastrnn/cpu
pids=()
build() {  # build <compiler> <output> <flags...>: the harness + dispatch + each kernels_<isa>.cc with its flags
    local cxx=$1 exe=$2
    shift 2
    "$cxx" "${CXXFLAGS[@]}" "$@" -o "$exe" tests/cpp/kernel_tests.cc "$CPU/dispatch.cc" "${KERNEL_OBJS[@]}"
}

echo "== kernel harness: native ($(uname -m))"
# Kernel flags as setup.py KERNEL_FLAGS (x86); each table in its own object.
KERNEL_OBJS=()
native_defs=()
g++ "${CXXFLAGS[@]}" -c "$CPU/kernels_generic.cc" -o "$out/generic.o" & pids+=($!)
KERNEL_OBJS+=("$out/generic.o")
if [[ "$(uname -m)" == x86_64 ]]; then
    avx512=(-mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq -mprefer-vector-width=512)
    native_defs=(-DFASTRNN_HAVE_AVX2=1 -DFASTRNN_HAVE_AVX512=1)
    if ! grep -q avx512f /proc/cpuinfo; then  # the AVX-512 instantiation's logic on AVX2 (kernel_tests.cc)
        avx512=(-mavx2 -mfma -Wno-psabi)  # (64-byte vectors without AVX-512: internal functions only)
        native_defs+=(-DFASTRNN_AVX512_LOWERED=1)
    fi
    g++ "${CXXFLAGS[@]}" -mavx2 -mfma -c "$CPU/kernels_avx2.cc" -o "$out/avx2.o" & pids+=($!)
    # (-Wno-maybe-uninitialized: GCC 12 warns inside its own AVX-512 headers, _mm256_undefined_pd)
    g++ "${CXXFLAGS[@]}" -Wno-maybe-uninitialized "${avx512[@]}" -c "$CPU/kernels_avx512.cc" -o "$out/avx512.o" &
    pids+=($!)
    KERNEL_OBJS+=("$out/avx2.o" "$out/avx512.o")
fi
# The aarch64 kernels meanwhile (the cross compiles are independent of the native ones).
for march in armv8-a armv8.2-a+dotprod; do  # (-fno-schedule-insns as setup.py's aarch64 KERNEL_FLAGS)
    aarch64-linux-gnu-g++ "${CXXFLAGS[@]}" -fno-schedule-insns -march="$march" -c "$CPU/kernels_generic.cc" -o "$out/a64-$march.o" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
build g++ "$out/kernel_tests" "${native_defs[@]}"
"$out/kernel_tests"
if [[ "$(uname -m)" == x86_64 ]]; then
    # Unit blocks of 8 vectors (FASTRNN_TEST_FUSED_VECS): LSTM / GRU blocks of 2 vectors per gate, a
    # form of the fused step and its cell update that no shipped table uses yet.
    echo "== kernel harness: native, fused unit blocks of 8 vectors (generic, avx2)"
    g++ "${CXXFLAGS[@]}" -DFASTRNN_TEST_FUSED_VECS=8 -c "$CPU/kernels_generic.cc" -o "$out/generic-fv8.o" &
    p1=$!
    g++ "${CXXFLAGS[@]}" -DFASTRNN_TEST_FUSED_VECS=8 -mavx2 -mfma -c "$CPU/kernels_avx2.cc" -o "$out/avx2-fv8.o"
    wait "$p1"
    KERNEL_OBJS=("$out/generic-fv8.o" "$out/avx2-fv8.o")
    build g++ "$out/kernel_tests-fv8" -DFASTRNN_HAVE_AVX2=1
    "$out/kernel_tests-fv8"
fi

for march in armv8-a armv8.2-a+dotprod; do
    KERNEL_OBJS=("$out/a64-$march.o")
    build aarch64-linux-gnu-g++ "$out/kernel_tests-$march" -march="$march"
done
run_qemu() {  # run_qemu <march> <qemu cpu> <text the int8 path line must contain>
    echo "== kernel harness: aarch64 -march=$1 under qemu-aarch64 -cpu $2"
    local log="$out/qemu-$1-$2.txt"
    qemu-aarch64 -cpu "$2" -L /usr/aarch64-linux-gnu "$out/kernel_tests-$1" | tee "$log"
    grep -q "int8: $3" "$log" || { echo "ERROR: expected the int8 path '$3' on -cpu $2"; exit 1; }
}
run_qemu armv8-a cortex-a57 portable
run_qemu armv8-a max "neon dotprod"
run_qemu armv8.2-a+dotprod max "neon dotprod"
