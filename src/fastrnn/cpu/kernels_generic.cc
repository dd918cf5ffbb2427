// The kernels of kernels_impl.h compiled for generic (flags set per file in setup.py).
#define FASTRNN_VBYTES 16
#include "fastrnn/cpu/kernels_impl.h"

namespace fastrnn::cpu::generic {
const KernelTable& table() {
  // Constant-initialized (no code runs to build it): this file is compiled with the ISA's flags, and
  // a dynamically built table was copied with AVX-512 stores on CPUs without AVX-512.
  static constexpr KernelTable t = make_table("generic", 0);
  return t;
}
}  // namespace fastrnn::cpu::generic
