// A weight matrix W [N, K] used as y = x W^T: kept row-major for BLAS sgemm and panel-packed
// for our kernels (cpu::KernelTable::gemm_packed); apply() picks by row count.
//
// Packed layouts belong to an ISA (its panel width / unit block): IsaLayouts keeps one per ISA,
// the current ISA's made at load, another's on its first use (after set_isa()), so a model built
// under one ISA runs correctly under any other.  A call reads the kernel table once and uses that
// table's layout with that table's kernels.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "fastrnn/common.h"
#include "fastrnn/cpu/kernels.h"

namespace fastrnn {

class IsaLayouts {
 public:
  using Make = std::function<void(const cpu::KernelTable&, Buffer&)>;
  IsaLayouts() : s_(std::make_unique<Slots>()) {}
  // The layout for table k, made by make(k, buffer) the first time (thread-safe).  The common
  // case (made already) is one atomic load, inline.
  template <typename F>
  const float* get(const cpu::KernelTable& k, F&& make) const {
    if (const float* p = s_->p[k.slot].load(std::memory_order_acquire)) return p;
    return make_once(k, Make(std::forward<F>(make)));
  }
  void clear();
  std::size_t bytes() const;  // of the layouts made so far

 private:
  const float* make_once(const cpu::KernelTable& k, const Make& make) const;
  struct Slots {
    std::atomic<const float*> p[cpu::kIsaSlots] = {};
    Buffer b[cpu::kIsaSlots];
  };
  std::unique_ptr<Slots> s_;
};

// Weight precision (config.h's RecurrentConfig::precision; the header's "precision" key).
enum class Precision { F32, Bf16, Int8 };
constexpr dim_t kInt8MaxColumns = 65536;  // int8 weights: the widest input (see Mat::set_quantized)
const char* precision_name(Precision p);

struct Mat {
  Buffer w;  // float32 row-major (F32 only)
  dim_t N = 0, K = 0;
  Precision prec = Precision::F32;
  // pack_now: make the current ISA's packed layout at once (else on first use).
  void set(const float* src, dim_t n, dim_t k, bool pack_now = true);
  // Reduced-precision weights, the only copy kept (no float32 one): bf16 = uint16 bit patterns
  // [n, k]; int8 = int8 [n, k] in [-127, 127] with per-row scales scale[n] (W[r, c] ~ q[r, c] scale[r]).
  // Stored row-major with rows zero padded to cpu::qpad(k) (cpu::QGemm).  Validated by the caller.
  void set_quantized(Precision p, const void* src, const float* scale, dim_t n, dim_t k);
  std::size_t bytes() const;  // weights held (every layout made so far)
  const float* packed(const cpu::KernelTable& k) const;
  // y[r, :N] (+)= x[r, :K] W^T for r < rows
  void apply(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, bool accumulate) const;
  // y[r, :N] = bias + x[r, :K] W^T (one pass over y: bias copied in, products accumulated)
  void apply_bias(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, const float* bias) const;
  bool uses_packed(const cpu::KernelTable& k, dim_t rows) const;  // our kernel (else BLAS) for this many rows

  // Reduced precision in two parts (apply() runs both; the batch-1 split runs the product per row
  // range): the activations x [rows, K] made ready for the quantized GEMM (bf16: padded to Kp
  // columns unless K == Kp; int8: quantize_rows) in the caller's scratch, which only grows; then
  // y[r, :n] = base + x[r] W[n0 : n0 + n]^T with base = init[0 : n] (init given), else y (accumulate),
  // else 0.  n0 must be a multiple of row_block().  Each output row is summed on its own, the same
  // way whatever the range: a range gives the bits of the whole product's rows.
  // rows of a block of the reduced layout (cpu::qrow_block: 16 int8, 4 bf16); row ranges start on one
  dim_t row_block() const { return cpu::qrow_block(prec == Precision::Int8 ? 1 : 2); }
  struct QScratch {
    std::vector<float> xs, xscale;
    std::vector<std::int8_t> xq;
  };
  struct QInput {
    dim_t rows = 0;
    const void* x = nullptr;
    dim_t ldx = 0;
    const float* xscale = nullptr;
  };
  void qreserve(dim_t rows, QScratch& s) const;  // size s for `rows` rows (qprepare then allocates nothing)
  QInput qprepare(dim_t rows, const float* x, dim_t ldx, QScratch& s) const;
  void qproduct(const cpu::KernelTable& k, const QInput& in, dim_t n0, dim_t n, float* y, dim_t ldy, const float* init,
                bool accumulate) const;

 private:
  void qapply(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, const float* init, bool accumulate) const;
  IsaLayouts packed_;
  Buffer q_;             // bf16 / int8 rows [N, Kp] (bytes in a float buffer: 64-byte aligned)
  Buffer qscale_, qsum_;  // int8: scale [N]; sum_k q[n, k] as int32 [N]
  dim_t Kp_ = 0;
};

// Dynamic int8 quantization of activations (one rule for every ISA, tests/test_precision_core.py
// mirrors it): per row, a = max_k |x[k]|, q[k] = clamp(rint(x[k] * (M / a)), -M, M) with M = cpu::int8_xmax()
// (63 or 127) (float32 arithmetic, round half to even), scale = a / M; an all-zero row gives q = 0, scale = 0; a row
// with a NaN / inf gives scale NaN (the products are NaN, as float32 math would give).  q is
// written to Kp columns (zeros past K).
// (M: 127, or 63 where the CPU's int8 paths need the range reduction: cpu/kernels.h.)
void quantize_rows(dim_t rows, dim_t K, const float* x, dim_t ldx, std::int8_t* q, dim_t Kp, float* scale);

// Whether OpenBLAS sgemm measured faster than the kernels of table k for y[rows, N] = x[rows, K] W^T
// (per ISA; benchmarks/README.md).  FASTRNN_PACKED_MAX_ROWS=n overrides it (BLAS above n rows),
// for benchmarking and for the tests of the BLAS path.
bool blas_faster(const cpu::KernelTable& k, dim_t rows, dim_t N, dim_t K);

}  // namespace fastrnn
