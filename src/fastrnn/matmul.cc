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

const float* IsaLayouts::make_once(const cpu::KernelTable& k, const Make& make) const {
  std::atomic<const float*>& slot = s_->p[k.slot];
  std::lock_guard<std::mutex> lk(layout_mutex());
  if (const float* p = slot.load(std::memory_order_relaxed)) return p;
  Buffer& b = s_->b[k.slot];
  make(k, b);
  slot.store(b.data(), std::memory_order_release);
  return b.data();
}

void IsaLayouts::clear() { s_ = std::make_unique<Slots>(); }

bool blas_faster(const cpu::KernelTable& k, dim_t rows, dim_t N, dim_t K) {
  static const long forced = [] {
    const char* e = std::getenv("FASTRNN_PACKED_MAX_ROWS");
    return e && *e ? std::atol(e) : -1L;
  }();
  if (forced >= 0) return rows > forced;
  const dim_t weights = N * K;
  switch (k.slot) {
    case 1:  // AVX2, measured on Zen 1 (kernel_bench gemm / gemmbig / gemmproj / step WITH_BLAS):
      // our kernel is 1.1-8x faster up to 512 rows, within 5% of OpenBLAS at 1024+ rows of a 4 MiB
      // matrix (BLAS ahead there), and behind it (0.7-0.8x) for a wide matrix with a short K.
      return (rows > 512 && weights >= (dim_t(1) << 20)) || (K <= 8 && N >= 2048 && rows >= 64);
    case 2:  // AVX-512: not measured yet (no AVX-512 machine); our kernels throughout.  OpenBLAS may
      // also run its AVX2 kernels there (OPENBLAS_CORETYPE=Haswell), ours do not depend on it.
      return false;
    default:  // the portable kernel (SSE2 / NEON, 4-float vectors): BLAS for big products
      return rows > 256 && weights > 64 * 1024;
  }
}

void Mat::set(const float* src, dim_t n, dim_t k, bool pack_now) {
  // Every layer refuses a zero-sized weight with its name first; this is the last line of defence.
  if (n < 1 || k < 1) fail<FormatError>("a weight matrix (", n, ", ", k, ") has a zero-sized dimension");
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

bool Mat::uses_packed(const cpu::KernelTable& k, dim_t rows) const { return !blas_faster(k, rows, N, K); }

void Mat::apply(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, bool accumulate) const {
  if (rows <= 0) return;
  const cpu::KernelTable& k = cpu::kernels();
  if (uses_packed(k, rows)) {
    if (!accumulate)
      for (dim_t r = 0; r < rows; ++r) std::memset(y + r * ldy, 0, N * sizeof(float));
    k.gemm_packed(rows, N, K, x, ldx, packed(k), y, ldy, nullptr);
  } else {
    blas::sgemm(true, static_cast<int>(rows), static_cast<int>(N), static_cast<int>(K), 1.f, x, static_cast<int>(ldx),
                w.data(), static_cast<int>(K), accumulate ? 1.f : 0.f, y, static_cast<int>(ldy));
  }
}

void Mat::apply_bias(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, const float* bias) const {
  if (rows <= 0) return;
  const cpu::KernelTable& k = cpu::kernels();
  if (uses_packed(k, rows)) {  // the bias starts the accumulators: one pass over y
    k.gemm_packed(rows, N, K, x, ldx, packed(k), y, ldy, bias);
    return;
  }
  for (dim_t r = 0; r < rows; ++r) std::memcpy(y + r * ldy, bias, N * sizeof(float));
  apply(rows, x, ldx, y, ldy, true);
}

}  // namespace fastrnn
