#include "fastrnn/matmul.h"

#include <cstdlib>
#include <cstring>

#include "fastrnn/blas.h"
#include "fastrnn/cpu/kernels.h"

namespace fastrnn {

int packed_max_rows() {
  static const int v = [] {
    const char* e = std::getenv("FASTRNN_PACKED_MAX_ROWS");  // for benchmarking the crossover
    return e && *e ? std::atoi(e) : 256;  // measured crossover: see benchmarks/README.md
  }();
  return v;
}

void Mat::set(const float* src, dim_t n, dim_t k) {
  // Every layer refuses a zero-sized weight with its name first; this is the last line of defence.
  if (n < 1 || k < 1) fail<FormatError>("a weight matrix (", n, ", ", k, ") has a zero-sized dimension");
  N = n;
  K = k;
  w.resize(n * k);
  std::memcpy(w.data(), src, n * k * sizeof(float));
  packed.resize(cpu::packed_size(n, k));
  cpu::pack_panels(src, n, k, packed.data());
}

bool Mat::uses_packed(dim_t rows) const {
  constexpr dim_t kL2Floats = 64 * 1024;  // 256 KiB
  return rows <= packed_max_rows() || N * K <= kL2Floats;
}

void Mat::apply(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, bool accumulate) const {
  if (rows <= 0) return;
  // Packed kernel up to packed_max_rows rows, and at any row count when the packed weights fit
  // in L2 (it re-reads them once per 64-row block); BLAS for many rows of a big matrix.
  if (uses_packed(rows)) {
    if (!accumulate)
      for (dim_t r = 0; r < rows; ++r) std::memset(y + r * ldy, 0, N * sizeof(float));
    cpu::kernels().gemm_packed(rows, N, K, x, ldx, packed.data(), y, ldy, nullptr);
  } else {
    blas::sgemm(true, static_cast<int>(rows), static_cast<int>(N), static_cast<int>(K), 1.f, x, static_cast<int>(ldx),
                w.data(), static_cast<int>(K), accumulate ? 1.f : 0.f, y, static_cast<int>(ldy));
  }
}

void Mat::apply_bias(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, const float* bias) const {
  if (rows <= 0) return;
  if (uses_packed(rows)) {  // the bias starts the accumulators: one pass over y
    cpu::kernels().gemm_packed(rows, N, K, x, ldx, packed.data(), y, ldy, bias);
    return;
  }
  for (dim_t r = 0; r < rows; ++r) std::memcpy(y + r * ldy, bias, N * sizeof(float));
  apply(rows, x, ldx, y, ldy, true);
}

}  // namespace fastrnn
