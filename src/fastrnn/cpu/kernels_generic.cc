// The kernels of kernels_impl.h compiled for generic (flags set per file in setup.py).
#include "fastrnn/cpu/kernels_impl.h"

namespace fastrnn::cpu::generic {
const KernelTable& table() {
  static const KernelTable t = make_table("generic");
  return t;
}
}  // namespace fastrnn::cpu::generic
