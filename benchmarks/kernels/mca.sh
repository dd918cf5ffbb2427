#!/bin/bash
# Predicted throughput of the inner loops of the matmul kernels with llvm-mca (for CPUs we cannot
# run on: AVX-512 VNNI / AVX512_BF16 on Zen 5).  Compiles the kernels of this checkout to assembly
# with the build's flags, takes each innermost loop (label ... backward jump) of the named function
# that contains the named instruction, and asks llvm-mca for its cycles per iteration.
#   benchmarks/kernels/mca.sh [mcpu]        (default znver5; needs llvm-mca-19: apt-get install llvm-19)
# An aarch64 mcpu (neoverse-n1, neoverse-v1, cortex-a76, apple-m1 ...) takes the aarch64 build of the
# generic (NEON) table instead, cross-compiled as setup.py builds it (needs g++-aarch64-linux-gnu).
# (LLVM 14's llvm-mca models neoverse-n1 with the Cortex-A57 tables: use llvm-mca-19.)
# Reports, per loop: products per iteration (from the loop's instructions), cycles per iteration
# and products per cycle.  Predictions only: the loops were not run on such a machine.
set -e
cd "$(dirname "$0")/../.."
MCPU=${1:-znver5}
MCA=${MCA:-$(command -v llvm-mca-19 || command -v llvm-mca)}
OUT=${OUT:-/tmp/fastrnn_mca}
mkdir -p "$OUT"
case "$MCPU" in
neoverse-* | cortex-* | apple-* | a64fx | thunderx* | carmel | exynos-* | kryo | saphira | tsv110)
  TRIPLE=aarch64
  aarch64-linux-gnu-g++ -std=c++17 -O3 -Isrc -march=armv8-a -fno-schedule-insns -S src/fastrnn/cpu/kernels_generic.cc \
    -o "$OUT/neon.s" ;;
*)
  TRIPLE=x86_64
  g++ -std=c++17 -O3 -Isrc -mavx2 -mfma -S src/fastrnn/cpu/kernels_avx2.cc -o "$OUT/avx2.s"
  g++ -std=c++17 -O3 -Isrc -mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq -mprefer-vector-width=512 \
    -S src/fastrnn/cpu/kernels_avx512.cc -o "$OUT/avx512.s" 2>/dev/null ;;
esac
python3 - "$OUT" "$MCA" "$MCPU" "$TRIPLE" <<'PY'
import re, subprocess, sys
out, mca, mcpu, triple = sys.argv[1:]
# (asm file, function name regexp, marker instruction, products per marker instruction, what)
NEON = [
    ("neon.s", r"::panel_tile<6, 1>\(", r"fmla\s", 4, "f32 neon gemm_packed 6 x 4 q tile"),
    ("neon.s", r"::gemm_packed\(", r"fmla\s", 4, "f32 neon gemm_packed batch 1"),
    ("neon.s", r"::fused_tile<4, 6>\(", r"fmla\s", 4, "f32 neon LSTM fused 6 x 4 q tile"),
    ("neon.s", r"::gemm_i8_dot\(", r"sdot\s", 16, "int8 neon dotprod (sdot)"),
    ("neon.s", r"::gemm_i8\(", r"smull2?\s", 8, "int8 portable (smull + saddw)"),
]
CASES = NEON if triple == "aarch64" else [
    ("avx512.s", r"::gemm_packed\(", r"vfmadd\d+ps", 16, "f32 avx512 gemm_packed (FMA, broadcast x)"),
    ("avx512.s", r"::gemm_bf16_dp\(", "vdpbf16ps", 16, "bf16 avx512_bf16 (vdpbf16ps x2: x = hi + lo)"),
    ("avx512.s", r"::gemm_bf16\(", r"vfmadd\d+ps", 16, "bf16 avx512f (shift/mask + FMA)"),
    ("avx512.s", r"::gemm_i8_vnni\(", "vpdpbusd", 64, "int8 avx512_vnni (vpdpbusd)"),
    ("avx512.s", r"::gemm_i8\(", "vpmaddubsw", 64, "int8 avx512bw (vpmaddubsw + vpmaddwd)"),
    ("avx2.s", r"::gemm_packed\(", r"vfmadd\d+ps", 8, "f32 avx2 gemm_packed"),
    ("avx2.s", r"::gemm_bf16\(", r"vfmadd\d+ps", 8, "bf16 avx2 (shift/mask + FMA)"),
    ("avx2.s", r"::gemm_i8_avxvnni\(", "vpdpbusd", 32, "int8 avx-vnni (vpdpbusd ymm)"),
    ("avx2.s", r"::gemm_i8\(", "vpmaddubsw", 32, "int8 avx2 (vpmaddubsw + vpmaddwd)"),
]
BRANCH = re.compile(r"^\s+(?:j\w+|b\.?(?:ne|eq|gt|lt|ge|le|hi|lo|hs|ls|cc|cs|mi|pl)|cbn?z\s+\w+,|tbn?z\s+\w+,\s*#?\d+,)\s+(\.L\w+)$")
CALL = re.compile(r"^\s+(?:call|bl)\s")
JUMP = re.compile(r"^\s+(?:jmp|b|br|ret)(?:\s|$)")
def functions(text):
    funcs, name, body = {}, None, []
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_.$][\w.$]*):", line)
        if m and not m.group(1).startswith(".L"):
            if name: funcs[name] = body
            name, body = m.group(1), []
        elif name:
            body.append(line)
    if name: funcs[name] = body
    return funcs
def loops(body):
    labels = {}
    for i, l in enumerate(body):
        m = re.match(r"^(\.L\w+):", l)
        if m: labels[m.group(1)] = i
    for i, l in enumerate(body):
        m = BRANCH.match(l)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            blk = body[labels[m.group(1)] + 1:i + 1]
            # one straight block: no other branch or call inside (a label is fine: a side entry,
            # as GCC's rotated loops have)
            if not any(BRANCH.match(x) or JUMP.match(x) or CALL.match(x) for x in blk[:-1]):
                yield [x for x in blk if x.strip() and not x.strip().startswith(".") and not re.match(r"^\.L\w+:", x)]
for asm, fn, marker, per, what in CASES:
    funcs = functions(open(f"{out}/{asm}").read())
    names = [n for n in funcs if re.search(fn, subprocess.run(["c++filt", n], capture_output=True, text=True).stdout)]
    seen = set()
    for n in names:
        for blk in loops(funcs[n]):
            k = sum(bool(re.search(marker, x)) for x in blk)
            if not k or tuple(blk) in seen: continue
            seen.add(tuple(blk))
            open(f"{out}/loop.s", "w").write("\n".join(blk) + "\n")
            r = subprocess.run([mca, f"-mtriple={triple}", f"-mcpu={mcpu}", "-iterations=300", f"{out}/loop.s"],
                               capture_output=True, text=True).stdout
            m = re.search(r"Total Cycles:\s+(\d+)", r)
            if not m:  # an instruction this CPU model lacks (AVX-512 on znver1 ...)
                print(f"{mcpu:7s} {what:48s} not modelled for this CPU")
                break
            cyc = int(m.group(1)) / 300
            prods = k * per
            print(f"{mcpu:7s} {what:48s} loop of {len(blk):3d} instr: {prods:5d} products, {cyc:6.1f} cycles/iter, "
                  f"{prods / cyc:6.1f} products/cycle")
PY
