// The kernels of kernels_impl.h compiled for generic (flags set per file in setup.py).
#define FASTRNN_VBYTES 16
#include "fastrnn/cpu/kernels_impl.h"

namespace fastrnn::cpu::generic {
const KernelTable& table() {
  static const KernelTable t = make_table("generic");
  return t;
}
}  // namespace fastrnn::cpu::generic
