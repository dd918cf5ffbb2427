// The kernels of kernels_impl.h compiled for avx2 (flags set per file in setup.py).
#define FASTRNN_VBYTES 32
#include "fastrnn/cpu/kernels_impl.h"

namespace fastrnn::cpu::avx2 {
const KernelTable& table() {
  static const KernelTable t = make_table("avx2");
  return t;
}
}  // namespace fastrnn::cpu::avx2
