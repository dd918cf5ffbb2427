// A weight matrix W [N, K] used as y = x W^T: kept row-major for BLAS sgemm and panel-packed
// for our small-batch kernel (cpu::KernelTable::gemm_packed); apply() picks by row count.
#pragma once
#include "fastrnn/common.h"

namespace fastrnn {

struct Mat {
  Buffer w, packed;
  dim_t N = 0, K = 0;
  void set(const float* src, dim_t n, dim_t k);
  // y[r, :N] (+)= x[r, :K] W^T for r < rows
  void apply(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, bool accumulate) const;
  // y[r, :N] = bias + x[r, :K] W^T (one pass over y: bias copied in, products accumulated)
  void apply_bias(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, const float* bias) const;
  bool uses_packed(dim_t rows) const;  // the packed kernel (else BLAS) for this many rows
};

// Rows up to which the packed kernel is used (FASTRNN_PACKED_MAX_ROWS, default below).
int packed_max_rows();

}  // namespace fastrnn
