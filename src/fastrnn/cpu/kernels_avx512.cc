// The kernels of kernels_impl.h compiled for avx512 (flags set per file in setup.py).
#define FASTRNN_VBYTES 64
#include "fastrnn/cpu/kernels_impl.h"

namespace fastrnn::cpu::avx512 {
const KernelTable& table() {
  static const KernelTable t = make_table("avx512");
  return t;
}
}  // namespace fastrnn::cpu::avx512
