#include "fastrnn/matmul.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "fastrnn/blas.h"

namespace fastrnn {

namespace {
std::mutex& layout_mutex() {
  static std::mutex* m = new std::mutex();  // leaked: used until exit
  return *m;
}
}  // namespace

const float* IsaLayouts::get(const cpu::KernelTable& k, const Make& make) const {
  std::atomic<const float*>& slot = s_->p[k.slot];
  if (const float* p = slot.load(std::memory_order_acquire)) return p;
  std::lock_guard<std::mutex> lk(layout_mutex());
  if (const float* p = slot.load(std::memory_order_relaxed)) return p;
  Buffer& b = s_->b[k.slot];
  make(k, b);
  slot.store(b.data(), std::memory_order_release);
  return b.data();
}

void IsaLayouts::clear() { s_ = std::make_unique<Slots>(); }

int packed_max_rows() {
  static const int v = [] {
    const char* e = std::getenv("FASTRNN_PACKED_MAX_ROWS");  // for benchmarking the crossover
    return e && *e ? std::atoi(e) : 256;  // measured crossover: see benchmarks/README.md
  }();
  return v;
}

void Mat::set(const float* src, dim_t n, dim_t k, bool pack_now) {
  N = n;
  K = k;
  w.resize(n * k);
  std::memcpy(w.data(), src, n * k * sizeof(float));
  packed_.clear();
  if (pack_now) packed(cpu::kernels());
}

const float* Mat::packed(const cpu::KernelTable& k) const {
  return packed_.get(k, [this](const cpu::KernelTable& t, Buffer& b) {
    b.resize(cpu::packed_size(N, K, t.panel));
    cpu::pack_panels(w.data(), N, K, b.data(), t.panel);
  });
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
    const cpu::KernelTable& k = cpu::kernels();
    k.gemm_packed(rows, N, K, x, ldx, packed(k), y, ldy, nullptr);
  } else {
    blas::sgemm(true, static_cast<int>(rows), static_cast<int>(N), static_cast<int>(K), 1.f, x, static_cast<int>(ldx),
                w.data(), static_cast<int>(K), accumulate ? 1.f : 0.f, y, static_cast<int>(ldy));
  }
}

void Mat::apply_bias(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, const float* bias) const {
  if (rows <= 0) return;
  if (uses_packed(rows)) {  // the bias starts the accumulators: one pass over y
    const cpu::KernelTable& k = cpu::kernels();
    k.gemm_packed(rows, N, K, x, ldx, packed(k), y, ldy, bias);
    return;
  }
  for (dim_t r = 0; r < rows; ++r) std::memcpy(y + r * ldy, bias, N * sizeof(float));
  apply(rows, x, ldx, y, ldy, true);
}

}  // namespace fastrnn
