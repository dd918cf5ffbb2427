#include "fastrnn/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

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

std::size_t IsaLayouts::bytes() const {
  std::size_t n = 0;
  for (int i = 0; i < cpu::kIsaSlots; ++i)
    if (s_->p[i].load(std::memory_order_acquire)) n += s_->b[i].size() * sizeof(float);
  return n;
}

const char* precision_name(Precision p) {
  return p == Precision::Bf16 ? "bf16" : p == Precision::Int8 ? "int8" : "f32";
}

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
    case 2:  // AVX-512, measured on Zen 4 (session 17, kernel_bench gemm / gemmproj, OpenBLAS SkylakeX
      // kernel): ours 1.0-2.4x OpenBLAS up to 1024 rows and within 10% above; BLAS ahead 1.4-2x only
      // for K <= 32 with 3200+ rows (narrow inputs, which LSTM / SimpleRNN fold into the step).  Our
      // kernels throughout: OpenBLAS may run its AVX2 kernels there (OPENBLAS_CORETYPE=Haswell).
      return false;
    default:  // the portable kernel (SSE2 / NEON, 4-float vectors): BLAS for big products
      return rows > 256 && weights > 64 * 1024;
  }
}

// Both loops vectorize (a step's h is quantized on every rank of the batch-1 split, so it is on the
// critical path; 512 values: 2.2 -> 0.75 us on Zen 1): max |x| as the largest bit pattern with the
// sign cleared (the same order as the floats; inf and NaN patterns above every finite one), and
// rint(p) as (p + 1.5*2^23) - 1.5*2^23, which is nearbyint for |p| < 2^22 (checked for every float
// of [-128, 128]).  p = x * (M / a) must be rounded to float before that add: never contracted
// into an FMA (a separate statement for clang's fp-contract=on; GCC contracts across statements
// where FMA is available, aarch64 or -mfma, hence the attribute).
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void quantize_rows(dim_t rows, dim_t K, const float* x, dim_t ldx, std::int8_t* q, dim_t Kp, float* scale) {
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23
  const float xm = static_cast<float>(cpu::int8_xmax());  // the activations' range: 63 or 127
  for (dim_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    std::int8_t* qr = q + r * Kp;
    std::uint32_t m = 0;
    for (dim_t k = 0; k < K; ++k) {
      std::uint32_t u;
      std::memcpy(&u, xr + k, sizeof u);
      u &= 0x7fffffffu;
      m = u > m ? u : m;
    }
    const bool finite = m < 0x7f800000u;
    float a;
    std::memcpy(&a, &m, sizeof a);
    if (!finite || a == 0.f) {
      scale[r] = finite ? 0.f : std::nanf("");
      std::memset(qr, 0, Kp);
      continue;
    }
    const float inv = xm / a;
    for (dim_t k = 0; k < K; ++k) {
      const float p = xr[k] * inv;
      const float v = (p + kRound) - kRound;  // round half to even (the default rounding mode)
      qr[k] = static_cast<std::int8_t>(v > xm ? xm : v < -xm ? -xm : v);
    }
    std::memset(qr + K, 0, Kp - K);
    scale[r] = a / xm;
  }
}

void Mat::set_quantized(Precision p, const void* src, const float* scale, dim_t n, dim_t k) {
  if (n < 1 || k < 1) fail<FormatError>("a weight matrix (", n, ", ", k, ") has a zero-sized dimension");
  // int32 sums: |sum_k (x + 128) w| <= k * 255 * 127 (the VNNI form) must stay below 2^31.
  if (p == Precision::Int8 && k > kInt8MaxColumns)
    fail<UnsupportedError>("int8 weights with ", k, " columns (more than ", kInt8MaxColumns,
                           " would overflow the int32 sums); use bf16 or f32 for this layer");
  N = n, K = k, prec = p;
  Kp_ = cpu::qpad(k);
  w.resize(0);
  packed_.clear();
  const std::size_t es = p == Precision::Bf16 ? 2 : 1;
  q_.resize((cpu::qrows(n, es) * Kp_ * es + sizeof(float) - 1) / sizeof(float), true);
  auto* dst = reinterpret_cast<unsigned char*>(q_.data());
  if (p == Precision::Int8) {  // kernels.h qoffset_i8: 4 bytes (one quad of k) at a time
    const auto* s8 = static_cast<const unsigned char*>(src);
    for (dim_t r = 0; r < n; ++r)
      for (dim_t c0 = 0; c0 < k; c0 += 4) std::memcpy(dst + cpu::qoffset_i8(r, c0, Kp_), s8 + r * k + c0, std::min<dim_t>(4, k - c0));
  } else {
    const long ch = cpu::qchunk(2);
    for (dim_t r = 0; r < n; ++r)
      for (dim_t c0 = 0; c0 < k; c0 += ch)  // one chunk of row r at a time (kernels.h qoffset)
        std::memcpy(dst + cpu::qoffset(r, c0, Kp_, ch) * es, static_cast<const unsigned char*>(src) + (r * k + c0) * es,
                    std::min<dim_t>(ch, k - c0) * es);
  }
  if (p == Precision::Int8) {
    qscale_.resize(n);
    std::memcpy(qscale_.data(), scale, n * sizeof(float));
    qsum_.resize(n);
    auto* sums = reinterpret_cast<std::int32_t*>(qsum_.data());
    for (dim_t r = 0; r < n; ++r) {
      std::int32_t s = 0;
      for (dim_t c = 0; c < k; ++c) s += static_cast<const std::int8_t*>(src)[r * k + c];
      sums[r] = s;
    }
  }
}

std::size_t Mat::bytes() const {
  return (w.size() + q_.size() + qscale_.size() + qsum_.size()) * sizeof(float) + packed_.bytes();
}

// x [rows, K] -> y (reduced-precision weights), in per-thread scratch that only grows, so the steps
// of a sequence allocate nothing after the first.
void Mat::qapply(dim_t rows, const float* x, dim_t ldx, float* y, dim_t ldy, const float* init,
                 bool accumulate) const {
  if (rows <= 0) return;
  thread_local QScratch s;
  qproduct(cpu::kernels(), qprepare(rows, x, ldx, s), 0, N, y, ldy, init, accumulate);
}

void Mat::qreserve(dim_t rows, QScratch& s) const {
  const auto n = static_cast<std::size_t>(rows * Kp_);
  if (prec == Precision::Bf16) {
    if (K != Kp_ && s.xs.size() < n) s.xs.resize(n);
    return;
  }
  if (s.xq.size() < n) s.xq.resize(n);
  if (s.xscale.size() < static_cast<std::size_t>(rows)) s.xscale.resize(rows);
}

Mat::QInput Mat::qprepare(dim_t rows, const float* x, dim_t ldx, QScratch& s) const {
  qreserve(rows, s);
  QInput in;
  in.rows = rows;
  if (prec == Precision::Bf16) {
    if (K == Kp_) {
      in.x = x, in.ldx = ldx;
      return in;
    }
    for (dim_t r = 0; r < rows; ++r) {
      std::memcpy(s.xs.data() + r * Kp_, x + r * ldx, K * sizeof(float));
      std::memset(s.xs.data() + r * Kp_ + K, 0, (Kp_ - K) * sizeof(float));
    }
    in.x = s.xs.data(), in.ldx = Kp_;
    return in;
  }
  quantize_rows(rows, K, x, ldx, s.xq.data(), Kp_, s.xscale.data());
  in.x = s.xq.data(), in.ldx = Kp_, in.xscale = s.xscale.data();
  return in;
}

void Mat::qproduct(const cpu::KernelTable& k, const QInput& in, dim_t n0, dim_t n, float* y, dim_t ldy,
                   const float* init, bool accumulate) const {
  const std::size_t es = prec == Precision::Bf16 ? 2 : 1;
  cpu::QGemm a;
  a.nb = in.rows, a.N = n, a.Kp = Kp_;
  a.x = in.x, a.ldx = in.ldx;
  a.w = reinterpret_cast<const unsigned char*>(q_.data()) + n0 * Kp_ * es;  // rows n0.. (a whole row block)
  a.init = init, a.accumulate = accumulate;
  a.y = y, a.ldy = ldy;
  if (prec == Precision::Bf16) return k.gemm_bf16(a);
  a.xscale = in.xscale, a.xmax = cpu::int8_xmax();
  a.wscale = qscale_.data() + n0, a.wsum = reinterpret_cast<const std::int32_t*>(qsum_.data()) + n0;
  k.gemm_i8(a);
}

void Mat::set(const float* src, dim_t n, dim_t k, bool pack_now) {
  // Every layer refuses a zero-sized weight with its name first; this is the last line of defence.
  if (n < 1 || k < 1) fail<FormatError>("a weight matrix (", n, ", ", k, ") has a zero-sized dimension");
  N = n;
  K = k;
  prec = Precision::F32;
  q_.resize(0), qscale_.resize(0), qsum_.resize(0);
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
  if (prec != Precision::F32) return qapply(rows, x, ldx, y, ldy, nullptr, accumulate);
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
  if (prec != Precision::F32) return qapply(rows, x, ldx, y, ldy, bias, false);
  const cpu::KernelTable& k = cpu::kernels();
  if (uses_packed(k, rows)) {  // the bias starts the accumulators: one pass over y
    k.gemm_packed(rows, N, K, x, ldx, packed(k), y, ldy, bias);
    return;
  }
  for (dim_t r = 0; r < rows; ++r) std::memcpy(y + r * ldy, bias, N * sizeof(float));
  apply(rows, x, ldx, y, ldy, true);
}

}  // namespace fastrnn
