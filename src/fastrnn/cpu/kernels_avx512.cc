// The kernels of kernels_impl.h compiled for avx512 (flags set per file in setup.py).
#define FASTRNN_VBYTES 64
#include "fastrnn/cpu/kernels_impl.h"

namespace fastrnn::cpu::avx512 {
const KernelTable& table() {
  // Constant-initialized (no code runs to build it): this file is compiled with the ISA's flags, and
  // a dynamically built table was copied with AVX-512 stores on CPUs without AVX-512.
  static constexpr KernelTable t = make_table("avx512", 2);
  return t;
}
}  // namespace fastrnn::cpu::avx512
