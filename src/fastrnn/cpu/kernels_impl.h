// Kernels written once against GCC/Clang vector extensions (vf = FASTRNN_VBYTES bytes of
// floats) and compiled per ISA by kernels_<isa>.cc, each with its own flags and namespace:
// 16 bytes (SSE2 / NEON baseline), 32 (AVX2+FMA), 64 (AVX-512).  No -ffast-math: NaN and inf
// propagate as in the frameworks.  Tails are handled by loading the last partial vector through
// a zero-padded copy (same formulas, so no scalar/vector mismatch).
//
// exp(x): reduction x = n*ln2 + r, |r| <= ln2/2 (one FMA), degree-6 minimax polynomial (Estrin's
// scheme), 2^n assembled in the exponent bits; max rel. error 1.2e-7 on [-20, 20], 3e-7 on [-87.3, 88].
// Inputs are clamped to [-87.3, 88]; the clamps are written so that NaN passes through.
// sigmoid(x) = 1 / (1 + exp(-x));   tanh(x) = sign(x) * (1 - e) / (1 + e),  e = exp(-2|x|)
// (absolute error < 1.5e-7, which keeps 1000-step recurrences within 1e-5 of the frameworks).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "fastrnn/cpu/kernels.h"

#ifndef FASTRNN_VBYTES
#define FASTRNN_VBYTES 16
#endif

namespace {

using fastrnn::cpu::Act;
typedef float vf __attribute__((vector_size(FASTRNN_VBYTES)));
typedef float vfu __attribute__((vector_size(FASTRNN_VBYTES), aligned(4), may_alias));
typedef std::int32_t vi __attribute__((vector_size(FASTRNN_VBYTES)));
constexpr long W = FASTRNN_VBYTES / 4;  // floats per vector

#define FI inline __attribute__((always_inline))

template <std::size_t... I>
FI vf splat_impl(float x, std::index_sequence<I...>) {
  return vf{((void)I, x)...};  // an initializer list: compiles to one broadcast
}
FI vf splat(float x) { return splat_impl(x, std::make_index_sequence<W>{}); }
FI vf load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
FI void store(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }
FI vf load_n(const float* p, long n) {  // n < W valid floats, the rest zero
  float t[W] = {};
  std::memcpy(t, p, n * sizeof(float));
  return load(t);
}
FI void store_n(float* p, vf v, long n) {
  float t[W];
  store(t, v);
  std::memcpy(p, t, n * sizeof(float));
}
// n floats from p (any n: the first min(n, W) lanes, the rest zero / left alone).
FI vf load_part(const float* p, long n) { return n >= W ? load(p) : n > 0 ? load_n(p, n) : splat(0.f); }
FI void store_part(float* p, vf v, long n) {
  if (n >= W) store(p, v); else if (n > 0) store_n(p, v, n);
}
// min / max against a constant, NaN in `a` passes through.  x86 min/max return their second
// operand when either is NaN, so the constant goes first: one instruction instead of the
// compare + blend the portable form compiles to (the exp clamps are on every gate's path).
#if defined(__AVX512F__) && FASTRNN_VBYTES == 64
// (the all-ones zero-masking forms compile to plain vminps / vmaxps; the unmasked intrinsics trip
// GCC 12's -Wmaybe-uninitialized on their internal _mm512_undefined_ps)
FI vf vmin(vf a, float b) { return (vf)_mm512_maskz_min_ps(0xFFFF, (__m512)splat(b), (__m512)a); }
FI vf vmax(vf a, float b) { return (vf)_mm512_maskz_max_ps(0xFFFF, (__m512)splat(b), (__m512)a); }
#elif defined(__AVX__) && FASTRNN_VBYTES == 32
FI vf vmin(vf a, float b) { return (vf)_mm256_min_ps((__m256)splat(b), (__m256)a); }
FI vf vmax(vf a, float b) { return (vf)_mm256_max_ps((__m256)splat(b), (__m256)a); }
#elif defined(__SSE2__) && FASTRNN_VBYTES == 16
FI vf vmin(vf a, float b) { return (vf)_mm_min_ps((__m128)splat(b), (__m128)a); }
FI vf vmax(vf a, float b) { return (vf)_mm_max_ps((__m128)splat(b), (__m128)a); }
#else
FI vf vmin(vf a, float b) { return a > b ? splat(b) : a; }  // NaN stays NaN
FI vf vmax(vf a, float b) { return a < b ? splat(b) : a; }
#endif
FI vf vabs(vf a) { return a < 0.f ? -a : a; }

// exp(r) = 1 + r + r^2 p(r), p(r) = c0 + c1 r + c2 r^2 + c3 r^3 + c4 r^4: our own minimax fit of
// (exp(r) - 1 - r) / r^2 on |r| <= ln2/2 weighted to exp's relative error (3e-9, far under float's
// rounding), evaluated by Estrin's scheme, (c0 + c1 r) + r^2 ((c2 + c3 r) + r^2 c4): 3 dependent steps.
// The reduction r = x - n*ln2 is one FMA (where the ISA has one) with ln2 rounded to float: float(ln2) is within 1.9e-9 of
// ln2, so r is off by at most |n| * 1.9e-9 (n <= 29 on [-20, 20], where the gates need exp; the
// relative error grows to 3e-7 only towards the clamps, where sigmoid / tanh no longer see it:
// sigmoid's absolute error is at most a quarter of exp's relative one, tanh's a half).
// The gate math of a recurrent step is a handful of independent exps whose dependent chains and
// instruction count, not the FMA pipes, set its speed on cores with a small FP scheduler (Zen 1,
// LSTM cell update per vector of 8 units: Horner + Cephes degree 7 + two-constant reduction 62.8 ns,
// Estrin 58.5 ns, this form 46.3 ns; the sigmoid / tanh maximum errors unchanged, 8.9e-8).
// n is rounded with the 1.5 * 2^23 shifter, 127 folded in: the low bits of v's pattern are then
// n + 127, the exponent field of 2^n after a shift by 23 (no float -> int conversion).
FI vf v_exp(vf x) {
  x = vmax(vmin(x, 88.0f), -87.3f);
  constexpr float kShift = 12582912.0f + 127.0f;  // 1.5 * 2^23 + bias
  const vf v = x * 1.44269504088896341f + kShift;  // pattern's low bits: round(x / ln2) + 127
  const vf n = v - kShift;
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
  const vf r = x - n * 0.693147182464599609375f;  // float(ln2), one rounding (FMA)
#else  // no FMA (the SSE2 baseline): n * float(ln2) would be rounded; Cody-Waite's two constants instead
  const vf r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
#endif
  const vf r2 = r * r;
  const vf p = (r * 1.6666520398e-1f + 4.9999993432e-1f) + r2 * ((r * 8.3687452460e-3f + 4.1668390797e-2f) +
                                                                  r2 * 1.3814539989e-3f);
  vi e;
  std::memcpy(&e, &v, sizeof e);  // bit casts, no aliasing violation
  e = e << 23;
  vf scale;
  std::memcpy(&scale, &e, sizeof scale);
  return scale + scale * (r + r2 * p);  // 2^n (1 + q): scale * q is exact, one rounding
}
FI vf v_sigmoid(vf x) { return 1.0f / (1.0f + v_exp(-x)); }
FI vf v_tanh(vf x) {
  const vf e = v_exp(-2.0f * vabs(x));
  const vf t = (1.0f - e) / (1.0f + e);
  return x < 0.f ? -t : t;
}
FI vf v_clip01(vf x) { return vmax(vmin(x, 1.f), 0.f); }
FI vf v_softplus(vf x) {  // log(1 + exp(x)) = max(x,0) + log1p(exp(-|x|)); log1p done per lane
  vf e = v_exp(-vabs(x));
  for (long i = 0; i < W; ++i) e[i] = std::log1p(e[i]);
  return (x > 0.f ? x : splat(0.f)) + e;
}

// Element-wise activations as vector functions.
template <Act A>
FI vf act_v(vf v) {
  if constexpr (A == Act::Linear) return v;
  if constexpr (A == Act::Tanh) return v_tanh(v);
  if constexpr (A == Act::Sigmoid) return v_sigmoid(v);
  if constexpr (A == Act::Relu) return v < 0.f ? splat(0.f) : v;
  if constexpr (A == Act::Relu6) return vmin(v < 0.f ? splat(0.f) : v, 6.f);
  if constexpr (A == Act::HardSigmoid) return v_clip01(v * (1.0f / 6.0f) + 0.5f);
  if constexpr (A == Act::HardSigmoidTf2) return v_clip01(0.2f * v + 0.5f);
  if constexpr (A == Act::Elu) return v > 0.f ? v : v_exp(v) - 1.0f;
  if constexpr (A == Act::Selu) return 1.0507009873554805f * (v > 0.f ? v : 1.6732632423543772f * (v_exp(v) - 1.0f));
  if constexpr (A == Act::Softplus) return v_softplus(v);
  if constexpr (A == Act::Softsign) return v / (1.0f + vabs(v));
  if constexpr (A == Act::Silu) return v * v_sigmoid(v);
  if constexpr (A == Act::HardSilu) return v * v_clip01(v * (1.0f / 6.0f) + 0.5f);
  if constexpr (A == Act::LeakyRelu) return v < 0.f ? 0.2f * v : v;
  if constexpr (A == Act::GeluTanh) return 0.5f * v * (1.0f + v_tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  if constexpr (A == Act::HardTanh) return vmax(vmin(v, 1.f), -1.f);
  if constexpr (A == Act::Mish) return v * v_tanh(v_softplus(v));
  if constexpr (A == Act::LogSigmoid) return -v_softplus(-v);
  if constexpr (A == Act::Exponential) {  // exact libm exp: overflow to inf as the frameworks do
    for (long i = 0; i < W; ++i) v[i] = std::exp(v[i]);
    return v;
  }
  if constexpr (A == Act::Gelu) {
    for (long i = 0; i < W; ++i) v[i] = 0.5f * v[i] * (1.0f + std::erf(v[i] * 0.70710678118654752f));
    return v;
  }
  return v;
}

template <Act A>
void act_map(float* x, long n) {
  long i = 0;
  for (; i + W <= n; i += W) store(x + i, act_v<A>(load(x + i)));
  if (i < n) store_n(x + i, act_v<A>(load_n(x + i, n - i)), n - i);
}

void softmax_row(bool log, float* x, long n) {
  if (n <= 0) return;
  float m = x[0];
  bool bad = false;
  for (long i = 0; i < n; ++i) {
    bad |= std::isnan(x[i]);
    m = x[i] > m ? x[i] : m;
  }
  if (bad || std::isinf(m)) {  // NaN anywhere, or +inf / all -inf: the frameworks give NaN
    for (long i = 0; i < n; ++i) x[i] = std::nanf("");
    return;
  }
  double s = 0;
  for (long i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - m);
  if (log) {
    const float ls = static_cast<float>(std::log(s)) + m;
    for (long i = 0; i < n; ++i) x[i] -= ls;
  } else {
    const double inv = 1.0 / s;
    for (long i = 0; i < n; ++i) x[i] = static_cast<float>(std::exp(static_cast<double>(x[i]) - m) * inv);
  }
}

// y = x / max(||x||_2, 1e-12) over the row (torch.nn.functional.normalize(p=2, eps=1e-12); Keras 3
// UnitNormalization's x * min(rsqrt(sum x^2), 1e12) is the same).  The sum of squares accumulates in
// double (no overflow or underflow for any float row); a zero row gives 0; an inf element gives NaN
// there and 0 elsewhere, as torch's inf / inf.
void l2_normalize_row(float* x, long n) {
  double s = 0;
  for (long i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  const double norm = std::sqrt(s);
  const double inv = 1.0 / (norm > 1e-12 ? norm : 1e-12);
  for (long i = 0; i < n; ++i) x[i] = static_cast<float>(x[i] * inv);
}

void activate(Act act, float* x, long n) {
  switch (act) {
#define CASE(A) \
  case Act::A: return act_map<Act::A>(x, n);
    CASE(Linear) CASE(Tanh) CASE(Sigmoid) CASE(Relu) CASE(Relu6) CASE(HardSigmoid) CASE(HardSigmoidTf2) CASE(Elu)
    CASE(Selu) CASE(Softplus) CASE(Softsign) CASE(Silu) CASE(HardSilu) CASE(Exponential) CASE(LeakyRelu) CASE(Gelu)
    CASE(GeluTanh) CASE(HardTanh) CASE(Mish) CASE(LogSigmoid)
#undef CASE
    case Act::Softmax: return softmax_row(false, x, n);
    case Act::LogSoftmax: return softmax_row(true, x, n);
    case Act::L2Normalize: return l2_normalize_row(x, n);
    case Act::Count: return;
  }
}

void bias_act(Act act, const float* b, float* x, long n) {
  long i = 0;
  for (; i + W <= n; i += W) store(x + i, load(x + i) + load(b + i));
  for (; i < n; ++i) x[i] += b[i];
  activate(act, x, n);
}

// LSTM, the common case (sigmoid gates, tanh), fused in one pass with 3 divisions instead of 5:
//   with E(x) = exp(-x):  sigmoid(f)*c = c / (1 + E(f))
//                         sigmoid(i)*tanh(g) = (1 - E(2g)) / ((1 + E(i)) * (1 + E(2g)))
//                         sigmoid(o)*tanh(c') = (1 - E(2c')) / ((1 + E(o)) * (1 + E(2c')))
// (exp clamps its argument at 88, so every factor is finite and the quotients never give NaN
// for finite inputs.)
// U vectors of units side by side from unit j, each formula applied to all U before the next
// (independent work for the scheduler: U = 2 is ~12% faster than U = 1 on Zen 1).  The last
// vector holds n <= W valid units (tails), the others are full.
template <int U>
FI vf load_u(const float* p, long j, int u, long n) {
  return u == U - 1 && n < W ? load_n(p + j + u * W, n) : load(p + j + u * W);
}
template <int U>
FI void store_u(float* p, long j, int u, long n, vf v) {
  if (u == U - 1 && n < W) store_n(p + j + u * W, v, n); else store(p + j + u * W, v);
}

template <int U>
FI void lstm_vecs(const float* gi, const float* gf, const float* gg, const float* go, const float* c_prev,
                  float* c_new, float* h_new, long j, long n) {
  vf ei[U], ef[U], eg[U], eo[U], c[U], ec[U];
  for (int u = 0; u < U; ++u) {
    ei[u] = v_exp(-load_u<U>(gi, j, u, n));
    ef[u] = v_exp(-load_u<U>(gf, j, u, n));
    eg[u] = v_exp(-2.0f * load_u<U>(gg, j, u, n));
    eo[u] = v_exp(-load_u<U>(go, j, u, n));
  }
  for (int u = 0; u < U; ++u)
    c[u] = load_u<U>(c_prev, j, u, n) / (1.0f + ef[u]) + (1.0f - eg[u]) / ((1.0f + ei[u]) * (1.0f + eg[u]));
  for (int u = 0; u < U; ++u) ec[u] = v_exp(-2.0f * c[u]);
  for (int u = 0; u < U; ++u) {
    store_u<U>(c_new, j, u, n, c[u]);
    store_u<U>(h_new, j, u, n, (1.0f - ec[u]) / ((1.0f + eo[u]) * (1.0f + ec[u])));
  }
}

void lstm_cell(Act act, Act ract, float* g, const float* c_prev, float* c_new, float* h_new, long H) {
  float *gi = g, *gf = g + H, *gg = g + 2 * H, *go = g + 3 * H;
  if (act == Act::Tanh && ract == Act::Sigmoid) {
    long j = 0;
    for (; j + 2 * W <= H; j += 2 * W) lstm_vecs<2>(gi, gf, gg, go, c_prev, c_new, h_new, j, W);
    for (; j < H; j += W) lstm_vecs<1>(gi, gf, gg, go, c_prev, c_new, h_new, j, H - j < W ? H - j : W);
    return;
  }
  activate(ract, g, 2 * H);
  activate(act, gg, H);
  activate(ract, go, H);
  for (long j = 0; j < H; ++j) {
    c_new[j] = gf[j] * c_prev[j] + gi[j] * gg[j];
    h_new[j] = c_new[j];
  }
  activate(act, h_new, H);
  for (long j = 0; j < H; ++j) h_new[j] *= go[j];
}

// GRU (reset after), U vectors side by side as lstm_vecs.
template <int U>
FI void gru_vecs(const float* r, const float* z, const float* n, const float* gh, const float* b_hn,
                 const float* h_prev, float* h_new, long H, long j, long m) {
  vf rv[U], zv[U], nv[U];
  for (int u = 0; u < U; ++u) {
    rv[u] = v_sigmoid(load_u<U>(r, j, u, m) + load_u<U>(gh, j, u, m));
    zv[u] = v_sigmoid(load_u<U>(z, j, u, m) + load_u<U>(gh + H, j, u, m));
  }
  for (int u = 0; u < U; ++u)
    nv[u] = v_tanh(load_u<U>(n, j, u, m) + rv[u] * (load_u<U>(gh + 2 * H, j, u, m) + load_u<U>(b_hn, j, u, m)));
  for (int u = 0; u < U; ++u)
    store_u<U>(h_new, j, u, m, (1.0f - zv[u]) * nv[u] + zv[u] * load_u<U>(h_prev, j, u, m));
}

void gru_cell_after(Act act, Act ract, float* gx, const float* gh, const float* b_hn, const float* h_prev,
                    float* h_new, long H) {
  float *r = gx, *z = gx + H, *n = gx + 2 * H;
  if (act == Act::Tanh && ract == Act::Sigmoid) {
    long j = 0;
    for (; j + 2 * W <= H; j += 2 * W) gru_vecs<2>(r, z, n, gh, b_hn, h_prev, h_new, H, j, W);
    for (; j < H; j += W) gru_vecs<1>(r, z, n, gh, b_hn, h_prev, h_new, H, j, H - j < W ? H - j : W);
    return;
  }
  for (long j = 0; j < 2 * H; ++j) gx[j] += gh[j];
  activate(ract, gx, 2 * H);
  for (long j = 0; j < H; ++j) n[j] += r[j] * (gh[2 * H + j] + b_hn[j]);
  activate(act, n, H);
  for (long j = 0; j < H; ++j) h_new[j] = (1.0f - z[j]) * n[j] + z[j] * h_prev[j];
}

void gru_before_rz(Act ract, float* g, const float* h_prev, float* rh, long H) {
  activate(ract, g, 2 * H);
  for (long j = 0; j < H; ++j) rh[j] = g[j] * h_prev[j];
}

void gru_before_out(Act act, float* g, const float* h_prev, float* h_new, long H) {
  float *z = g + H, *n = g + 2 * H;
  activate(act, n, H);
  for (long j = 0; j < H; ++j) h_new[j] = (1.0f - z[j]) * n[j] + z[j] * h_prev[j];
}

// ---------------------------------------------------------------------------------------------
// Register tiles, per ISA.  A tile keeps R rows x V vectors of accumulators in registers while
// k runs.  Each k loads V weight vectors and broadcasts R inputs, in one of two orders: the R
// broadcasts held while the V weights stream past (R*V + R + 1 registers), or the V weights held
// while the R broadcasts stream past (R*V + V + 1): whichever gives more rows.  The accumulators
// must cover the FMA latency x FMA pipes of the core (independent chains), and accumulators +
// weights + broadcasts must fit the register file:
//   AVX-512 (32 zmm): 6 rows x 4 vectors = 24 accumulators (+ 6 broadcasts + 1 weight in flight):
//                     covers 2 pipes x 4 cycles (Skylake-SP, Zen 4/5) three times over.
//   AVX2 (16 ymm):    6 rows x 2 vectors = 12 accumulators (+ 2 weights held + 1 broadcast), the
//                     BLIS / MLAS Haswell tile: each weight vector feeds 6 FMAs (3 in the former
//                     3 x 4 tile), 8 loads per 12 FMAs; with 2-vector panels a k block of 256 is
//                     still 16 KiB.  Zen 3, `run.sh gemmshape`, fastest of a run, GFLOP/s (peak
//                     102.8) 3 x 4 (k blocks 128) -> 6 x 2 (256, k unrolled by 4): 20 x 2600 x 650
//                     86.5 -> 97.8, 100 rows 90.8 -> 95.7, 700 rows 90.2 -> 95.0, 32 x 2048 x 512
//                     90.6 -> 97.5, 256 x 512 x 128 92.9 -> 93.0 (benchmarks/README.md, session 12).
//   NEON (32 q):      6 rows x 4 vectors = 24 accumulators (+ 6 broadcasts + 1 weight): fits only
//                     when the weights are loaded one at a time, so aarch64 builds this file with
//                     -fno-schedule-insns (setup.py; GCC's pre-RA scheduler otherwise hoists all 4
//                     weight loads and spills 2 accumulators per k: benchmarks/README.md).
//   SSE2 (16 xmm, no FMA: a multiply and an add, one temporary more): 2 rows x 4 vectors.
// A single row (batch 1) has no weight reuse: it takes several panels (unit blocks) at once so
// that at least kChains1 accumulators are independent.  k is cut in blocks of kKBlock so that
// the slice of a panel being read (kKBlock x kPanel floats, 16 KiB) stays in L1 while every row
// tile of a row block (kRowBlock rows, whose inputs stay in cache) reuses it.  The fused step's
// unit blocks (kFusedVecs vectors: one per gate of an LSTM block) have their own k blocks
// (kFusedKBlock, the same 16 KiB of a wider block).
// kBlockOutBytes: the most output bytes a GEMM row block writes (0: no cap, rows in blocks of
// kRowBlock; see gemm_packed).  FASTRNN_TEST_FUSED_VECS=n (the kernel harness only, .ci/aarch64.sh)
// builds unit blocks of n vectors instead, so that the fused step's forms no ISA ships (several vectors
// per gate) run in CI too.
#ifdef FASTRNN_TEST_FUSED_VECS
#define FASTRNN_FUSED_VECS(n) FASTRNN_TEST_FUSED_VECS
#else
#define FASTRNN_FUSED_VECS(n) n
#endif
#if FASTRNN_VBYTES == 64
// k blocks of 256 (a 64 KiB panel slice, from L2), measured on Zen 4 (session 17, kernel_bench step /
// gemm): 64-k blocks (16 KiB) ran the step at 85% of the FMA peak, 256 at 92% (LSTM 512, 32 rows;
// 2048 x 512 GEMM 102 -> 112 GFLOP/s).  AVX2's 256 KiB output cap measured no different here (quiet
// machine, gemmproj / gemmshape: within 3% either way), so none.
constexpr long kPanelVecs = 4, kKBlock = 256, kFusedVecs = FASTRNN_FUSED_VECS(4), kFusedKBlock = 256;
constexpr long kBlockOutBytes = 0;
constexpr int kRegs = 32, kAcc = 24, kChains1 = 8, kTemps = 1;
#elif FASTRNN_VBYTES == 32
constexpr long kPanelVecs = 2, kKBlock = 256, kFusedVecs = FASTRNN_FUSED_VECS(4), kFusedKBlock = 128;
constexpr long kBlockOutBytes = 256 * 1024;
constexpr int kRegs = 16, kAcc = 12, kChains1 = 8, kTemps = 1;
#elif defined(__aarch64__) || defined(__ARM_NEON)
constexpr long kPanelVecs = 4, kKBlock = 256, kFusedVecs = FASTRNN_FUSED_VECS(4), kFusedKBlock = 256;
constexpr long kBlockOutBytes = 0;
constexpr int kRegs = 32, kAcc = 24, kChains1 = 8, kTemps = 1;
#else
constexpr long kPanelVecs = 4, kKBlock = 256, kFusedVecs = FASTRNN_FUSED_VECS(4), kFusedKBlock = 256;
constexpr long kBlockOutBytes = 0;
constexpr int kRegs = 16, kAcc = 8, kChains1 = 8, kTemps = 2;
#endif
// Rows of a tile of V vectors per row, broadcasts held: R*V accumulators + R broadcasts + the
// weight (and, without FMA, a product) in flight must fit the registers, and R*V <= kAcc.
constexpr int tile_rows(long V) {
  const int by_regs = static_cast<int>((kRegs - kTemps) / (V + 1)), by_acc = static_cast<int>(kAcc / V);
  const int r = by_regs < by_acc ? by_regs : by_acc;
  return r > 0 ? r : 1;
}
// Rows with the V weight vectors held and the inputs broadcast one at a time (R*V + V + 1 registers).
constexpr int tile_rows_wheld(long V) {
  const int by_regs = static_cast<int>((kRegs - kTemps - V) / V), by_acc = static_cast<int>(kAcc / V);
  const int r = by_regs < by_acc ? by_regs : by_acc;
  return r > 0 ? r : 1;
}
constexpr bool kGemmWHeld = tile_rows_wheld(kPanelVecs) > tile_rows(kPanelVecs);
constexpr int kRows = kGemmWHeld ? tile_rows_wheld(kPanelVecs) : tile_rows(kPanelVecs);
// The size of the blocks that cut n into round(n / target) blocks (at least one) of equal size (the
// last one shorter by the rounding), or, with at_most, into as few blocks of at most `target`: no
// short remainder block pays a block's fixed costs for little work.  k blocks (LSTM 32 -> 128 folded,
// K = 160: one block of 160 instead of 128 + 32) and row blocks (each streams all of W: 100 rows in
// one block instead of 96 + 4).
FI long even_block(long n, long target, bool at_most = false) {
  const long r = at_most ? (n + target - 1) / target : (n + target / 2) / target;
  return r <= 1 ? n : (n + r - 1) / r;
}
constexpr long kRowBlock = fastrnn::cpu::kFusedRowBlock;
constexpr long kPanel = kPanelVecs * W;  // floats per packed panel (KernelTable::panel)
constexpr long PV = kPanelVecs;
constexpr int kPanels1 = (kChains1 + kPanelVecs - 1) / kPanelVecs;  // panels taken at once by one row

template <typename F, std::size_t... I>
constexpr auto fn_table(std::index_sequence<I...>, F f) {
  return std::array<decltype(f(std::integral_constant<int, 1>{})), sizeof...(I)>{
      f(std::integral_constant<int, static_cast<int>(I) + 1>{})...};
}

// The register tile, the one inner loop of every f32 product (the GEMM and the fused step):
//   acc[r][p][v] += sum_{c < n} x[r*ldx + c] * w[p*ps + c*cs + v*W]      r < R, p < P, v < V
// (P panels of V vectors; a panel's column c is V vectors at w + p*ps + c*cs).  WHELD: one panel's
// V weight vectors are held and the rows' inputs broadcast one at a time (R*V + V + 1 registers,
// tile_rows_wheld); otherwise the R broadcasts are held while the weight vectors stream
// (R*V + R + 1, tile_rows).  Each accumulator sums over c in order whatever the form.
template <int R, int P, long V, bool WHELD>
FI void fma_tile(vf (&acc)[R][P][V], const float* x, long ldx, const float* w, long ps, long cs, long n) {
  if constexpr (WHELD) {
    static_assert(P == 1, "weights held: one panel");
#pragma GCC unroll 4
    for (long c = 0; c < n; ++c) {
      vf wv[V];
      for (long v = 0; v < V; ++v) wv[v] = load(w + c * cs + v * W);
      for (int r = 0; r < R; ++r) {
        const vf xb = splat(x[r * ldx + c]);
        for (long v = 0; v < V; ++v) acc[r][0][v] += xb * wv[v];
      }
    }
  } else {
    for (long c = 0; c < n; ++c) {
      vf xb[R];
      for (int r = 0; r < R; ++r) xb[r] = splat(x[r * ldx + c]);
      for (int p = 0; p < P; ++p)
        for (long v = 0; v < V; ++v) {
          const vf wv = load(w + p * ps + c * cs + v * W);
          for (int r = 0; r < R; ++r) acc[r][p][v] += xb[r] * wv;
        }
    }
  }
}

// Recurrent / projection matmul, weights packed once at load (no BLAS call or packing per call):
//   g[b, j] (+)= sum_k h[b, k] * W[j, k]     b < nb, j < N, k < K
// with W packed by pack_panels(kPanel):  packed[p][k][0:kPanel] = W[p*kPanel + 0:kPanel, k].
// R rows x NP panels of accumulators; k runs over K floats of the packed panels (panel q starts
// panel_stride floats after panel 0).  init == nullptr: g += sum, the accumulators starting from g
// (each output summed onto g in k order, g + h_0 w_0 + h_1 w_1 + ..., whatever the k blocks: the
// same bits as the fused step's sums, which start from the projection, so a step in the separate
// form matches a thread team's fused one); otherwise g = init + sum (init: kPanel floats per
// panel, zero padded; g is not read).
// FULL (every panel but a ragged last one): whole-vector loads and stores, no tail tests around the
// k loop, whose start and end were ~45% of a tile's samples at K = 8 with them (Zen 4, `run.sh
// gemmshape`, GFLOP/s: 100 x 256 x 8 53 -> 58, 100 x 512 x 32 90 -> 93, K >= 128 within noise).
// Otherwise the last panel's loads and stores are cut at n_last (init is zero padded: read whole).
template <int R, int NP, bool FULL>
FI void panel_block_impl(long K, const float* h, long ldh, const float* wp, long panel_stride, float* g, long ldg,
                         long n_last, const float* init) {
  vf acc[R][NP][PV];
  const float* src = init ? init : g;  // init: the same for every row
  const long lds = init ? 0 : ldg;
  auto tail = [&](int q, long v) { return (q == NP - 1 ? n_last : kPanel) - v * W; };  // valid floats from vector v
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NP; ++q)
      for (long v = 0; v < PV; ++v) {
        const float* p = src + r * lds + q * kPanel + v * W;
        acc[r][q][v] = FULL || init ? load(p) : load_part(p, tail(q, v));
      }
  fma_tile<R, NP, PV, kGemmWHeld && NP == 1>(acc, h, ldh, wp, panel_stride, kPanel, K);
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NP; ++q)
      for (long v = 0; v < PV; ++v) {
        float* p = g + r * ldg + q * kPanel + v * W;
        if (FULL) store(p, acc[r][q][v]); else store_part(p, acc[r][q][v], tail(q, v));
      }
}
template <int R, int NP>
__attribute__((noinline)) void panel_block_ragged(long K, const float* h, long ldh, const float* wp, long panel_stride,
                                                  float* g, long ldg, long n_last, const float* init) {
  panel_block_impl<R, NP, false>(K, h, ldh, wp, panel_stride, g, ldg, n_last, init);
}
template <int R, int NP>
FI void panel_block(long K, const float* h, long ldh, const float* wp, long panel_stride, float* g, long ldg,
                    long n_last, const float* init) {
  if (n_last != kPanel) return panel_block_ragged<R, NP>(K, h, ldh, wp, panel_stride, g, ldg, n_last, init);
  panel_block_impl<R, NP, true>(K, h, ldh, wp, panel_stride, g, ldg, n_last, init);
}

using TileFn = void (*)(long K, const float* h, long ldh, const float* wp, long panel_stride, float* g, long ldg,
                        long n_last, const float* init);
template <int R, int NP>
__attribute__((noinline)) void panel_tile(long K, const float* h, long ldh, const float* wp, long panel_stride,
                                          float* g, long ldg, long n_last, const float* init) {
  panel_block<R, NP>(K, h, ldh, wp, panel_stride, g, ldg, n_last, init);
}
// tile_fns[R - 1]: R rows, one panel.
constexpr auto tile_fns = fn_table(std::make_index_sequence<kRows>{}, [](auto r) -> TileFn {
  return &panel_tile<decltype(r)::value, 1>;
});

// Rows in blocks of kRowBlock; in a block, panel by panel (each streamed front to back:
// prefetch-friendly when W is beyond L2), k blocks inside (the rows' outputs for this panel stay
// in L1 across them), row tiles of at most kRows rows, sizes as equal as possible (a lone row has
// only PV accumulator chains and reloads the panel for itself).  One row: kPanels1 panels at a
// time, the whole of k in one go.
void gemm_packed(long nb, long N, long K, const float* h, long ldh, const float* packed, float* g, long ldg,
                 const float* init) {
  const long panels = (N + kPanel - 1) / kPanel;
  const long tail = N - (panels - 1) * kPanel;  // outputs in the last panel
  // A tile reads kPanel init floats per panel: the last kPanels1 panels' come from a zero-padded copy.
  float init_end[kPanels1 * kPanel] = {};
  const long first_end = panels >= kPanels1 ? panels - kPanels1 : 0;  // init_end[0] = init[first_end * kPanel]
  if (init) std::memcpy(init_end, init + first_end * kPanel, (N - first_end * kPanel) * sizeof(float));
  auto init_at = [&](long p, long np) -> const float* {
    if (!init) return nullptr;
    return p + np < panels || tail == kPanel ? init + p * kPanel : init_end + (p - first_end) * kPanel;
  };
  // round(nb / kRowBlock) row blocks (at least one) of equal size: each block streams all of W, so a
  // short remainder block would pay that for a few rows (2-layer LSTM 650, batch 20: the projection
  // of a 5-step chunk, 100 rows, was 96 + 4 rows; one block of 100: 31.0 -> 32.5 GFLOP/s).
  // A row block's outputs are written one panel's width per row per panel (AVX2: 64 bytes) and
  // revisited every k block; a block whose outputs exceed kBlockOutBytes then waits on their lines
  // (AVX2, Zen 3, 25600 x 2048 x 128: 96-row blocks 70 GFLOP/s, blocks of 256 KiB of outputs 80): such
  // blocks get fewer rows (at least two tiles).  Measured on AVX2 only: no cap elsewhere.
  const long out_rows = kBlockOutBytes / static_cast<long>(sizeof(float)) / (N > 0 ? N : 1);
  const long rb_target = kBlockOutBytes ? std::max<long>(2 * kRows, std::min<long>(kRowBlock, out_rows)) : kRowBlock;
  const long rb = even_block(nb, rb_target);
  for (long r0 = 0; r0 < nb; r0 += rb) {
    const long rows = nb - r0 < rb ? nb - r0 : rb;
    const float* hb = h + r0 * ldh;
    float* gb = g + r0 * ldg;
    if (rows == 1) {
      long p = 0;
      for (; p + kPanels1 <= panels; p += kPanels1)
        panel_block<1, kPanels1>(K, hb, ldh, packed + p * K * kPanel, K * kPanel, gb + p * kPanel, ldg,
                                 p + kPanels1 == panels ? tail : kPanel, init_at(p, kPanels1));
      for (; p < panels; ++p)
        panel_block<1, 1>(K, hb, ldh, packed + p * K * kPanel, 0, gb + p * kPanel, ldg, p + 1 == panels ? tail : kPanel,
                          init_at(p, 1));
      continue;
    }
    const long tiles = (rows + kRows - 1) / kRows, kd = even_block(K, kKBlock);
    for (long p = 0; p < panels; ++p) {
      const float* wp = packed + p * K * kPanel;
      float* gp = gb + p * kPanel;
      const long n = p + 1 == panels ? tail : kPanel;
      for (long k0 = 0; k0 < K; k0 += kd) {
        const long kc = K - k0 < kd ? K - k0 : kd;
        const float* in = k0 == 0 ? init_at(p, 1) : nullptr;
        for (long t = 0; t < tiles; ++t) {
          const long b = rows * t / tiles, e = rows * (t + 1) / tiles;
          tile_fns[e - b - 1](kc, hb + b * ldh + k0, ldh, wp + k0 * kPanel, 0, gp + b * ldg, ldg, n, in);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One recurrent step with the gate math fused into the matmul (kernels.h, FusedStep):
//   LSTM (G=4):  a = x + W_hh h  (i f g o);  c' = ract(a_f)*c + ract(a_i)*act(a_g);  h' = ract(a_o)*act(c')
//   GRU  (G=3, reset after):  a_r = x_r + W_hr h,  a_z = x_z + W_hz h,  a_n = b_hn + W_hn h;
//                r = ract(a_r),  z = ract(a_z),  n = act(x_n + r*a_n),  h' = (1-z)*n + z*h
//   RNN  (G=1):  h' = act(x + W_hh h)
// W_hh in blocks of U units carrying all their gates (pack_fused): U = one vector per gate for
// LSTM/GRU (a block is then a panel of G vectors: 4 for LSTM, 3 for GRU), kFusedVecs vectors
// for the single-gate RNN.  A tile's gate sums start from x (and b_hn) in registers and run over
// k; they then go to a staging area in L1 (`part`: kRowBlock rows x G*U floats of one block, or
// one row's blocks), and the cell update runs over the staged sums two (row, block) pairs at a
// time, writing h' (and c') once.  No gate buffer of G*H floats per row is written to memory and
// read back, and x is read in place (not copied).
//  * one row (batch 1, and each thread's share of the batch-1 split): groups of at most
//    kFusedBlocks1 blocks side by side (independent accumulator chains), all of k at once;
//  * several rows: tiles of R rows x one block (fma_tile, as the GEMM), k in L1-sized blocks (the
//    staging area carries the partial sums between them); after a block's rows, its update.
// A tile covers one sub-panel of its block (kernels.h: AVX2's LSTM / RNN blocks as 2-vector
// sub-panels, tiled 6 rows x 2 vectors with the weights held as the GEMM is; Zen 3, `run.sh step`, one
// LSTM step: H = 650 / 20 rows 845-870 -> 751 us, H = 512 / 32 rows 803 -> 753-760 us, H = 128 a tie).
// Why stage instead of updating straight from the registers: there, each tile's update is a
// chain of ~200 cycles of dependent exp / divide steps that the out-of-order core cannot overlap
// with the FMA loop of the next tile; on Zen 1 that measured 2-15% slower than the separate
// GEMM + gate passes, the staged form 0-3% faster (benchmarks/README.md).
// Every output is the same sum in the same order whatever the tile, the row count or the block
// range (bit-identical results when the units are split across threads).
template <int G> constexpr long kVPG = G >= kFusedVecs ? 1 : kFusedVecs / G;  // vectors per gate in a block
template <int G> constexpr long kUB = kVPG<G> * W;                               // units per block
template <int G> constexpr long kVPB = G * kVPG<G>;                              // vectors per block
// Rows of a fused tile: tile_rows (the R broadcasts held while the weights stream), or, where that
// leaves accumulators unused, more rows with the V weight vectors held (tile_rows_wheld): GRU on
// AVX2, 4 rows x 3 vectors = 12 accumulators instead of 9.  (AVX2's 6 x 2 tile over the two halves
// of an LSTM block left interleaved, 64 of every 128 bytes of the slice per pass, measured 0.74-0.94x:
// hence the sub-panels, each contiguous.)
// Vectors per tile: one sub-panel (kFusedVS, fused_sub_vecs in kernels.h), with k blocks of the GEMM's
// depth where the sub-panel is a GEMM panel's width (16 KiB slices).
template <int G> constexpr long kFusedVS = fastrnn::cpu::fused_sub_vecs(kVPB<G>, kPanelVecs);
template <int G> constexpr long kSP = kFusedVS<G> * W;  // floats per column of a sub-panel
template <int G> constexpr long kFusedKB = kFusedVS<G> == kPanelVecs ? kKBlock : kFusedKBlock;
template <int G> constexpr bool kFusedWHeld = tile_rows_wheld(kFusedVS<G>) > tile_rows(kFusedVS<G>);
template <int G> constexpr int kFusedRows = kFusedWHeld<G> ? tile_rows_wheld(kFusedVS<G>) : tile_rows(kFusedVS<G>);
template <int G> constexpr int kFusedBlocks1 = static_cast<int>((kChains1 + kVPB<G> - 1) / kVPB<G>);

// Any element-wise activation of a cell (the common tanh / sigmoid pair has its own path; this
// one is called, not inlined, to keep the kernels small).
__attribute__((noinline)) vf act_rt(Act a, vf v) {
  switch (a) {
#define CASE(A) \
  case Act::A: return act_v<Act::A>(v);
    CASE(Linear) CASE(Tanh) CASE(Sigmoid) CASE(Relu) CASE(Relu6) CASE(HardSigmoid) CASE(HardSigmoidTf2) CASE(Elu)
    CASE(Selu) CASE(Softplus) CASE(Softsign) CASE(Silu) CASE(HardSilu) CASE(Exponential) CASE(LeakyRelu) CASE(Gelu)
    CASE(GeluTanh) CASE(HardTanh) CASE(Mish) CASE(LogSigmoid)
#undef CASE
    default: return v;
  }
}

// The cell update of T (row, block) pairs whose gate sums are in acc[t][0..V) (gate g's vector vv at
// acc[t][g*VG + vv]): row row[t], units from unit[t], nu[t] of them valid.  The T*VG vectors of units
// are independent items (i = t*VG + vv), interleaved so that their exp / divide chains overlap.
template <int G, int T, bool FAST>
FI void cell_update(const fastrnn::cpu::FusedStep& a, const vf (*acc)[kVPB<G>], const long* row, const long* unit,
                    const long* nu) {
  constexpr long VG = kVPG<G>;
  constexpr int N = static_cast<int>(T * VG);
  auto ga = [&](int i, int g) { return acc[i / VG][g * VG + i % VG]; };  // item i's sum of gate g
  auto u = [&](int i) { return unit[i / VG] + i % VG * W; };               // its first unit
  auto n = [&](int i) { return nu[i / VG] - i % VG * W; };                 // its valid units (<= 0: none)
  auto r = [&](int i) { return row[i / VG]; };
  if constexpr (G == 4) {
    vf c[N], hn[N];
    for (int i = 0; i < N; ++i) {
      const vf cp = load_part(a.c_prev + r(i) * a.ldc + u(i), n(i));
      if constexpr (FAST) {  // sigmoid / tanh with 3 divisions instead of 5 (see lstm_vecs)
        const vf ei = v_exp(-ga(i, 0)), ef = v_exp(-ga(i, 1)), eg = v_exp(-2.0f * ga(i, 2));
        c[i] = cp / (1.0f + ef) + (1.0f - eg) / ((1.0f + ei) * (1.0f + eg));
      } else {
        c[i] = act_rt(a.ract, ga(i, 1)) * cp + act_rt(a.ract, ga(i, 0)) * act_rt(a.act, ga(i, 2));
      }
    }
    for (int i = 0; i < N; ++i) {
      if constexpr (FAST) {
        const vf eo = v_exp(-ga(i, 3)), ec = v_exp(-2.0f * c[i]);
        hn[i] = (1.0f - ec) / ((1.0f + eo) * (1.0f + ec));
      } else {
        hn[i] = act_rt(a.ract, ga(i, 3)) * act_rt(a.act, c[i]);
      }
    }
    for (int i = 0; i < N; ++i) {
      store_part(a.c_new + r(i) * a.ldc + u(i), c[i], n(i));
      store_part(a.h_new + r(i) * a.ldo + u(i), hn[i], n(i));
    }
  } else if constexpr (G == 3) {
    vf z[N], nn[N];
    for (int i = 0; i < N; ++i) {
      const vf xn = load_part(a.x + r(i) * a.ldx + 2 * a.H + u(i), n(i));
      if constexpr (FAST) {
        const vf rg = v_sigmoid(ga(i, 0));
        z[i] = v_sigmoid(ga(i, 1));
        nn[i] = v_tanh(xn + rg * ga(i, 2));
      } else {
        const vf rg = act_rt(a.ract, ga(i, 0));
        z[i] = act_rt(a.ract, ga(i, 1));
        nn[i] = act_rt(a.act, xn + rg * ga(i, 2));
      }
    }
    for (int i = 0; i < N; ++i) {
      const vf hp = load_part(a.h + r(i) * a.ldh + u(i), n(i));
      store_part(a.h_new + r(i) * a.ldo + u(i), (1.0f - z[i]) * nn[i] + z[i] * hp, n(i));
    }
  } else {
    for (int t = 0; t < T; ++t)
      for (long v = 0; v < kVPB<G>; ++v)
        store_part(a.h_new + row[t] * a.ldo + unit[t] + v * W, FAST ? v_tanh(acc[t][v]) : act_rt(a.act, acc[t][v]),
                   nu[t] - v * W);
  }
}

// Where the gate sums of vector v (gate v / VG) of block q start, for row `row`: x, or for GRU's n
// gate b_hn (the same for every row: row stride 0); n: its valid units (<= 0: none; zero past them).
struct InitSrc {
  const float* p;
  long ld, n;
};
template <int G>
FI InitSrc init_src(const fastrnn::cpu::FusedStep& a, long row, long q, long nu, long v) {
  constexpr long U = kUB<G>, VG = kVPG<G>;
  const long g = v / VG, vv = v % VG, j = q * U + vv * W;
  if (G == 3 && g == 2) return {a.b_hn + j, 0, nu - vv * W};
  return {a.x + row * a.ldx + g * a.H + j, a.ldx, nu - vv * W};
}
template <int G>
FI vf init_sum(const fastrnn::cpu::FusedStep& a, long row, long q, long nu, long v) {
  const InitSrc s = init_src<G>(a, row, q, nu, v);
  return load_part(s.p, s.n);
}

// One row, NB blocks from q, all of k, sums to stage + q*G*U (no cell update).
template <int G, int NB>
__attribute__((noinline)) void fused_row_sums(const fastrnn::cpu::FusedStep& a, long row, long q, float* stage) {
  constexpr long V = kVPB<G>, U = kUB<G>, PW = G * U;
  const long Kt = a.K_in + a.K;  // layout columns: [inputs | h]
  constexpr long VS = kFusedVS<G>, SP = kSP<G>;
  // the NB blocks' sub-panels as NB * V / VS panels of VS vectors, Kt * SP floats apart
  constexpr int NP = static_cast<int>(NB * (V / VS));
  vf acc[1][NP][VS];
  auto sum = [&](int b, long v) -> vf& { return acc[0][b * (V / VS) + v / VS][v % VS]; };  // block b's vector v
  for (int b = 0; b < NB; ++b) {
    const long unit = (q + b) * U;
    for (long v = 0; v < V; ++v) sum(b, v) = init_sum<G>(a, row, q + b, a.H - unit < U ? a.H - unit : U, v);
  }
  const float* wq = a.w + q * Kt * PW;
  if (a.x_in) fma_tile<1, NP, VS, false>(acc, a.x_in + row * a.ldxi, 0, wq, Kt * SP, SP, a.K_in);
  fma_tile<1, NP, VS, false>(acc, a.h + row * a.ldh, 0, wq + a.K_in * SP, Kt * SP, SP, a.K);
  for (int b = 0; b < NB; ++b)
    for (long v = 0; v < V; ++v) store(stage + (q + b) * PW + v * W, sum(b, v));
}

// The cell update of one row's blocks [q0, q1), sums at stage + q*G*U: two blocks at a time.
template <int G, bool FAST>
__attribute__((noinline)) void fused_row_update(const fastrnn::cpu::FusedStep& a, long row, long q0, long q1,
                                                const float* stage) {
  constexpr long V = kVPB<G>, U = kUB<G>, PW = G * U;
  long q = q0;
  for (; q + 2 <= q1; q += 2) {
    vf acc[2][V];
    for (int t = 0; t < 2; ++t)
      for (long v = 0; v < V; ++v) acc[t][v] = load(stage + (q + t) * PW + v * W);
    const long rr[2] = {row, row}, uu[2] = {q * U, (q + 1) * U};
    const long nn[2] = {a.H - uu[0] < U ? a.H - uu[0] : U, a.H - uu[1] < U ? a.H - uu[1] : U};
    cell_update<G, 2, FAST>(a, acc, rr, uu, nn);
  }
  if (q < q1) {
    vf acc[1][V];
    for (long v = 0; v < V; ++v) acc[0][v] = load(stage + q * PW + v * W);
    const long rr[1] = {row}, uu[1] = {q * U}, nn[1] = {a.H - uu[0] < U ? a.H - uu[0] : U};
    cell_update<G, 1, FAST>(a, acc, rr, uu, nn);
  }
}

// R rows x sub-panel v0 / VS (vectors [v0, v0 + VS)) of block q over k in [k0, k0 + kc): sums from
// x (first k block) or the staging area (stage: the row block's [rows][G*U] floats, srow = this
// tile's first row in it), back to it.  Also prefetches pf_n floats from pf into L2 (a share of the
// next weight slice, see fused_run).
template <int G, int R>
__attribute__((noinline)) void fused_tile(const fastrnn::cpu::FusedStep& a, long row, long q, long v0, long k0,
                                          long kc, float* stage, long srow, const float* pf, long pf_n) {
  constexpr long VS = kFusedVS<G>, SP = kSP<G>, U = kUB<G>, PW = G * U;
  const long Kt = a.K_in + a.K, nu = a.H - q * U < U ? a.H - q * U : U;
  for (long i = 0; i < pf_n; i += 64 / sizeof(float)) __builtin_prefetch(pf + i, 0, 2);
  vf acc[R][1][VS];
  if (k0 == (a.x_in ? 0 : a.K_in)) {  // start from x (GRU n gate: b_hn)
    // Each vector's source worked out once per tile (not per row: at K = 64 a per-row init_sum was
    // ~6% of the tile), plain loads when the block's units are all valid.
    InitSrc src[VS];
    bool full = true;
    for (long v = 0; v < VS; ++v) {
      src[v] = init_src<G>(a, row, q, nu, v0 + v);
      full = full && src[v].n >= W;
    }
    if (full) {
      for (int r = 0; r < R; ++r)
        for (long v = 0; v < VS; ++v) acc[r][0][v] = load(src[v].p + r * src[v].ld);
    } else {
      for (int r = 0; r < R; ++r)
        for (long v = 0; v < VS; ++v) acc[r][0][v] = load_part(src[v].p + r * src[v].ld, src[v].n);
    }
  } else {
    for (int r = 0; r < R; ++r)
      for (long v = 0; v < VS; ++v) acc[r][0][v] = load(stage + (srow + r) * PW + (v0 + v) * W);
  }
  const float* wq = a.w + q * Kt * PW + v0 / VS * Kt * SP;  // this sub-panel, column c at wq + c * SP
  const long k1 = k0 + kc;
  if (k0 < a.K_in) {
    const long e = k1 < a.K_in ? k1 : a.K_in;
    fma_tile<R, 1, VS, kFusedWHeld<G>>(acc, a.x_in + row * a.ldxi + k0, a.ldxi, wq + k0 * SP, 0, SP, e - k0);
  }
  if (k1 > a.K_in) {
    const long b = k0 > a.K_in ? k0 : a.K_in;
    fma_tile<R, 1, VS, kFusedWHeld<G>>(acc, a.h + row * a.ldh + (b - a.K_in), a.ldh, wq + b * SP, 0, SP, k1 - b);
  }
  for (int r = 0; r < R; ++r)
    for (long v = 0; v < VS; ++v) store(stage + (srow + r) * PW + (v0 + v) * W, acc[r][0][v]);
}

// The GRU cell update of block q (all its U units valid) for `rows` rows from `row`, tanh / sigmoid,
// in passes over the staged sums: each pass's iterations are independent and short (one or two exp
// chains), so the core overlaps consecutive rows instead of waiting out one row's dependent chain
// of exp -> divide -> exp -> divide (cell_update two rows at a time).  Zen 1, GRU: 46.5 -> 43.5 ns
// per vector of units (the update is a fifth of the step at H = 128); LSTM measured slower this
// way (57 -> 69 ns: its second pass still holds three divisions and an exp), so only GRU uses it.
// Per element the same formulas in the same order as cell_update: the same results.
//   pass 1: r = sigmoid(a_r), z = sigmoid(a_z) (in place);  pass 2: n = tanh(x_n + r*a_n), h' = (1-z)*n + z*h
__attribute__((noinline)) void gru_update_passes(const fastrnn::cpu::FusedStep& a, long row, long rows, long q,
                                                 float* stage) {
  constexpr long VG = kVPG<3>, U = kUB<3>, PW = 3 * U;
  const long unit = q * U;
  for (long r = 0; r < rows; ++r) {
    float* s = stage + r * PW;
    for (long v = 0; v < 2 * VG; ++v) store(s + v * W, v_sigmoid(load(s + v * W)));
  }
  for (long r = 0; r < rows; ++r) {
    const float* s = stage + r * PW;
    for (long v = 0; v < VG; ++v) {
      const long j = unit + v * W;
      const vf n = v_tanh(load(a.x + (row + r) * a.ldx + 2 * a.H + j) + load(s + v * W) * load(s + (2 * VG + v) * W));
      const vf z = load(s + (VG + v) * W);
      store(a.h_new + (row + r) * a.ldo + j, (1.0f - z) * n + z * load(a.h + (row + r) * a.ldh + j));
    }
  }
}

// The cell update of block q for `rows` rows from `row`, sums in the staging area: two rows at a time.
constexpr int kUpdateRows = 2;  // rows per cell_update (1 and 4 measured slower or no faster: LSTM H = 64 / 128, Zen 3)
template <int G, bool FAST>
__attribute__((noinline)) void fused_update(const fastrnn::cpu::FusedStep& a, long row, long rows, long q,
                                            float* stage) {
  constexpr long V = kVPB<G>, U = kUB<G>, PW = G * U;
  const long unit = q * U, nu = a.H - unit < U ? a.H - unit : U;
  if constexpr (FAST && G == 3) {
    if (nu == U) return gru_update_passes(a, row, rows, q, stage);
  }
  auto rows_at = [&](auto tn, long r) {  // rows [r, r + T) of the block
    constexpr int T = decltype(tn)::value;
    vf acc[T][V];
    long rr[T], uu[T], nn[T];
    for (int t = 0; t < T; ++t) {
      for (long v = 0; v < V; ++v) acc[t][v] = load(stage + (r + t) * PW + v * W);
      rr[t] = row + r + t, uu[t] = unit, nn[t] = nu;
    }
    cell_update<G, T, FAST>(a, acc, rr, uu, nn);
  };
  long r = 0;
  for (; r + kUpdateRows <= rows; r += kUpdateRows) rows_at(std::integral_constant<int, kUpdateRows>{}, r);
  for (; r < rows; ++r) rows_at(std::integral_constant<int, 1>{}, r);
}

using FusedTileFn = void (*)(const fastrnn::cpu::FusedStep&, long, long, long, long, long, float*, long, const float*,
                             long);
using FusedRowSumsFn = void (*)(const fastrnn::cpu::FusedStep&, long, long, float*);
template <int G, bool FAST>
struct FusedFns {
  static constexpr auto tiles = fn_table(std::make_index_sequence<kFusedRows<G>>{}, [](auto r) -> FusedTileFn {
    return &fused_tile<G, decltype(r)::value>;
  });
  static constexpr auto row_sums = fn_table(std::make_index_sequence<kFusedBlocks1<G>>{}, [](auto b) -> FusedRowSumsFn {
    return &fused_row_sums<G, decltype(b)::value>;
  });
};

template <int G, bool FAST>
void fused_run(const fastrnn::cpu::FusedStep& a) {
  using Fns = FusedFns<G, FAST>;
  constexpr int RF = kFusedRows<G>, NB1 = kFusedBlocks1<G>;
  // Row blocks of at most kRowBlock rows (the staging area's size), as equal as possible (a lone
  // remainder row would take the one-row path and stream all of W for itself).
  const long rb = even_block(a.nb, kRowBlock, true);
  for (long r0 = 0; r0 < a.nb; r0 += rb) {
    const long rows = a.nb - r0 < rb ? a.nb - r0 : rb;
    if (rows == 1) {
      // Groups of at most NB1 blocks, sizes as equal as possible, each group's cell update right
      // after its sums: the update's exp / divide chains (h_new, c_new of those units only) then
      // overlap the next group's weight loads in the out-of-order window instead of all of them
      // waiting at the end (Zen 4, `run.sh step`, one step: LSTM H = 128 2.57-2.58 -> 2.49 us, H = 64
      // 0.72 -> 0.70-0.71, GRU 1-2%, H = 512 even).  The sums read h, never h_new (FusedStep: they
      // must not overlap).
      const long nq = a.q1 - a.q0, groups = (nq + NB1 - 1) / NB1;
      for (long i = 0; i < groups; ++i) {
        const long b = a.q0 + nq * i / groups, e = a.q0 + nq * (i + 1) / groups;
        Fns::row_sums[e - b - 1](a, r0, b, a.part);
        fused_row_update<G, FAST>(a, r0, b, e, a.part);
      }
      continue;
    }
    // While the tiles of one weight slice (block q, k block k0: kc x G*U floats) run, they
    // prefetch the next slice, a share each: beyond L2 (H = 512: 3-4 MiB of W_hh, read once per
    // row block) the first tiles of a slice otherwise wait on L3 (Zen 1, one step at H = 512,
    // batch 32, thread CPU time: GRU 1.63-1.70 -> 1.57-1.58 ms, LSTM 2.32-2.38 -> 2.16 ms).  Into
    // L2, not L1 (prefetcht1): a 16 KiB slice fetched into L1 next to the 16 KiB being read left the
    // 32 KiB L1 no room for the inputs and the staging area (Zen 1, 1 thread, T=100, three
    // alternating runs: LSTM 128x512 batch 32 271-277 -> 266 ms, GRU 200-208 -> 192-204 ms,
    // 2-layer LSTM 650 batch 20 T=35 within noise, LSTM 32x128 batch 32 ~1%).
    const long tiles = (rows + RF - 1) / RF, Kt = a.K_in + a.K, PW = G * kUB<G>, kb0 = a.x_in ? 0 : a.K_in;
    constexpr long VS = kFusedVS<G>, SP = kSP<G>, subs = kVPB<G> / VS;
    const long kd = even_block(Kt - kb0, kFusedKB<G>);
    // Weights that stay in L2 between steps are not prefetched (the instructions only cost there:
    // LSTM H = 128, batch 32 / 256, 256 KiB of W_hh: 1-3% faster without), nor weights within a
    // quarter of the L3 the core reaches, which the hardware prefetchers stream well enough: Zen 3
    // (32 MiB L3), one step, tiles only: LSTM H = 512, 32 rows (4 MiB) 790 -> 754 us without, whole
    // step 842-877 -> 801-811 us, H = 650, 20 rows 895-900 -> 863-871 us, GRU H = 512, 32 rows
    // 601-606 -> 574 us; on Zen 1 (8 MiB L3) the same 4 MiB gained 5-8% from it (above).
    // (L2: this call's share of the blocks, what this core streams; L3: all of the layer's blocks, what
    // the cores of a team stream between them.)
    const long bpq = Kt * PW * static_cast<long>(sizeof(float)), l3 = fastrnn::cpu::l3_bytes();
    const long mine = (a.q1 - a.q0) * bpq, all = (a.H + kUB<G> - 1) / kUB<G> * bpq;
    const bool prefetch = mine > fastrnn::cpu::kL2WeightBytes && (l3 == 0 || all > l3 / 4);
    for (long q = a.q0; q < a.q1; ++q) {
      // slices (q, sub-panel, k block) in the order they are read: kc x SP floats from
      // a.w + q*Kt*PW + sub*Kt*SP + k0*SP
      for (long sub = 0; sub < subs; ++sub)
        for (long k0 = kb0; k0 < Kt; k0 += kd) {
          const long kc = Kt - k0 < kd ? Kt - k0 : kd;
          // the next slice: (q, sub, k0 + kc), else (q, sub + 1, kb0), else (q + 1, 0, kb0); none after the last
          const bool last_k = k0 + kc >= Kt, last_s = last_k && sub + 1 == subs;
          const long nq = last_s ? q + 1 : q, ns = last_s ? 0 : last_k ? sub + 1 : sub, nk = last_k ? kb0 : k0 + kc;
          const long pf_n = prefetch && nq < a.q1 ? (Kt - nk < kd ? Kt - nk : kd) * SP : 0;
          const float* pf = a.w + nq * Kt * PW + ns * Kt * SP + nk * SP;
          for (long t = 0; t < tiles; ++t) {
            const long b = rows * t / tiles, e = rows * (t + 1) / tiles;
            const long p0 = pf_n * t / tiles / 16 * 16, p1 = pf_n * (t + 1) / tiles / 16 * 16;
            Fns::tiles[e - b - 1](a, r0 + b, q, sub * VS, k0, kc, a.part, b, pf + p0, p1 - p0);
          }
        }
      fused_update<G, FAST>(a, r0, rows, q, a.part);
    }
  }
}

void recurrent_fused(const fastrnn::cpu::FusedStep& a) {
  const bool fast = a.act == Act::Tanh && (a.G == 1 || a.ract == Act::Sigmoid);
  switch (a.G) {
    case 4: return fast ? fused_run<4, true>(a) : fused_run<4, false>(a);
    case 3: return fast ? fused_run<3, true>(a) : fused_run<3, false>(a);
    default: return fast ? fused_run<1, true>(a) : fused_run<1, false>(a);
  }
}

// FMA throughput probe for the benchmark's "fraction of peak": 12 independent multiply-add chains
// (more than latency x throughput on current x86 and ARM cores), acc = acc * a + b per lane.
// Returns the floating-point operations done (2 per lane per FMA).
double fma_probe(long iters) {
  constexpr int C = 12;
  vf acc[C];
  for (int c = 0; c < C; ++c) acc[c] = splat(1.0f + 0.001f * c);
  const vf a = splat(0.999999f), b = splat(1e-7f);
  for (long i = 0; i < iters; ++i)
    for (int c = 0; c < C; ++c) acc[c] = acc[c] * a + b;
  vf s = acc[0];
  for (int c = 1; c < C; ++c) s += acc[c];
  volatile float sink = s[0];
  (void)sink;
  return 2.0 * C * W * static_cast<double>(iters);
}

// Cache read-bandwidth probe for the benchmark's batch-1 roofline: 8 independent sums (one per
// vector of a 8-vector stride), so the loads, not an add chain, set the pace.
float read_probe(const float* p, long n, long reps) {
  constexpr int C = 8;
  vf acc[C];
  for (int c = 0; c < C; ++c) acc[c] = splat(0.f);
  for (long r = 0; r < reps; ++r)
    for (long i = 0; i + C * W <= n; i += C * W)
      for (int c = 0; c < C; ++c) acc[c] += load(p + i + c * W);
  vf s = acc[0];
  for (int c = 1; c < C; ++c) s += acc[c];
  float lanes[W], t = 0;
  store(lanes, s);
  for (long l = 0; l < W; ++l) t += lanes[l];
  return t;
}

}  // namespace

#include "fastrnn/cpu/qkernels_impl.h"

static constexpr fastrnn::cpu::KernelTable make_table(const char* isa, int slot) {
  return fastrnn::cpu::KernelTable{isa,       slot,          W,           kPanel,          kFusedVecs,
                                   activate,  bias_act,      lstm_cell,   gru_cell_after,
                                   gru_before_rz, gru_before_out, gemm_packed, recurrent_fused, fma_probe,
                                   read_probe,    gemm_bf16,     gemm_i8,       qpaths};
}
