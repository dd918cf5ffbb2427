// Kernels written once against GCC/Clang vector extensions (vf = FASTRNN_VBYTES bytes of
// floats) and compiled per ISA by kernels_<isa>.cc, each with its own flags and namespace:
// 16 bytes (SSE2 / NEON baseline), 32 (AVX2+FMA), 64 (AVX-512).  No -ffast-math: NaN and inf
// propagate as in the frameworks.  Tails are handled by loading the last partial vector through
// a zero-padded copy (same formulas, so no scalar/vector mismatch).
//
// exp(x): Cody-Waite reduction x = n*ln2 + r, |r| <= ln2/2, degree-6 polynomial (Cephes expf
// coefficients), 2^n assembled in the exponent bits; max rel. error ~2 ulp on [-87.3, 88].
// Inputs are clamped to [-87.3, 88]; the clamps are written so that NaN passes through.
// sigmoid(x) = 1 / (1 + exp(-x));   tanh(x) = sign(x) * (1 - e) / (1 + e),  e = exp(-2|x|)
// (absolute error < 1.5e-7, which keeps 1000-step recurrences within 1e-5 of the frameworks).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
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
// min / max against a constant, NaN in `a` passes through.  x86 min/max return their second
// operand when either is NaN, so the constant goes first: one instruction instead of the
// compare + blend the portable form compiles to (the exp clamps are on every gate's path).
#if defined(__AVX512F__) && FASTRNN_VBYTES == 64
FI vf vmin(vf a, float b) { return (vf)_mm512_min_ps((__m512)splat(b), (__m512)a); }
FI vf vmax(vf a, float b) { return (vf)_mm512_max_ps((__m512)splat(b), (__m512)a); }
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

FI vf v_exp(vf x) {
  x = vmax(vmin(x, 88.0f), -87.3f);
  const vf t = x * 1.44269504088896341f;
  const vf n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (|t| < 2^22)
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &e, sizeof scale);  // bit cast, no aliasing violation
  return p * scale;
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

// Recurrent matmul for small batches (BLAS call and packing overhead dominate there):
//   g[b, j] += sum_k h[b, k] * W[j, k]     b < nb, j < N, k < K
// with W pre-packed by pack_panels() into column panels of kPanel outputs:
//   packed[p][k][0:kPanel] = W[p*kPanel + 0:kPanel, k]  (zero padded past N)
// so each panel is one contiguous stream; accumulators for one panel stay in registers while
// k runs, and two batch rows share every weight load.
constexpr long kPanel = fastrnn::cpu::kPanel;
constexpr long PV = kPanel / W;  // vectors per panel row

// R rows x NP panels of accumulators (R*NP*PV vector registers), k runs over K floats of the
// packed panels (panel q starts panel_stride floats after panel 0).  init == nullptr: g += sum;
// otherwise g = init + sum (init: kPanel floats per panel, zero padded; g is not read).
template <int R, int NP>
FI void panel_block(long K, const float* h, long ldh, const float* wp, long panel_stride, float* g, long ldg,
                    long n_last, const float* init) {
  vf acc[R][NP][PV];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NP; ++q)
      for (long v = 0; v < PV; ++v) acc[r][q][v] = init ? load(init + q * kPanel + v * W) : splat(0.f);
  for (long k = 0; k < K; ++k) {
    vf x[R];
    for (int r = 0; r < R; ++r) x[r] = splat(h[r * ldh + k]);
    for (int q = 0; q < NP; ++q) {
      const float* w = wp + q * panel_stride + k * kPanel;
      for (long v = 0; v < PV; ++v) {
        const vf wv = load(w + v * W);
        for (int r = 0; r < R; ++r) acc[r][q][v] += x[r] * wv;
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NP; ++q) {
      float* gr = g + r * ldg + q * kPanel;
      const long n = q == NP - 1 ? n_last : kPanel;
      if (n == kPanel) {
        for (long v = 0; v < PV; ++v) store(gr + v * W, init ? acc[r][q][v] : load(gr + v * W) + acc[r][q][v]);
      } else {
        float t[kPanel];
        for (long v = 0; v < PV; ++v) store(t + v * W, acc[r][q][v]);
        for (long j = 0; j < n; ++j) gr[j] = init ? t[j] : gr[j] + t[j];
      }
    }
}

// Blocking: rows in blocks of kRowBlock whose h stays in cache; k in blocks of kKBlock so the
// slice of a panel being read (kKBlock x kPanel floats, 16 KiB) stays in L1 while every row group
// of the block reuses it.  Register tiles: a single row takes two panels at a time (2 x PV
// independent accumulator chains: 8 on AVX2, enough to hide the FMA latency); otherwise three
// rows share every weight load (3 x PV accumulators: 12 of AVX2's 16 registers), with 2- and
// 1-row tiles for the remainder.
void gemm_packed(long nb, long N, long K, const float* h, long ldh, const float* packed, float* g, long ldg,
                 const float* init) {
  constexpr long kRowBlock = 96;
  constexpr long kKBlock = 128;
  const long panels = (N + kPanel - 1) / kPanel;
  const long tail = N - (panels - 1) * kPanel;  // outputs in the last panel
  // A tile reads kPanel init floats per panel: the last panel's (and, for the two-panel tile, the
  // one before it) come from a zero-padded copy.
  float init_end[2 * kPanel] = {};
  const long first_end = panels >= 2 ? panels - 2 : 0;  // init_end[0] = init[first_end * kPanel]
  if (init) std::memcpy(init_end, init + first_end * kPanel, (N - first_end * kPanel) * sizeof(float));
  auto init_at = [&](long p, long np) -> const float* {
    if (!init) return nullptr;
    return p + np < panels || tail == kPanel ? init + p * kPanel : init_end + (p - first_end) * kPanel;
  };
  for (long r0 = 0; r0 < nb; r0 += kRowBlock) {
    const long rows = nb - r0 < kRowBlock ? nb - r0 : kRowBlock;
    const float* hb = h + r0 * ldh;
    float* gb = g + r0 * ldg;
    // Panel by panel (each streamed front to back: prefetch-friendly when W is beyond L2), k
    // blocks inside (the rows' outputs for this panel stay in L1 across them).
    for (long p = 0; p < panels; ++p) {
      const float* wp = packed + p * K * kPanel;
      float* gp = gb + p * kPanel;
      if (rows == 1 && p + 1 < panels) {  // two panels for one row (panel p+1 starts K*kPanel later)
        for (long k0 = 0; k0 < K; k0 += kKBlock)
          panel_block<1, 2>(K - k0 < kKBlock ? K - k0 : kKBlock, hb + k0, ldh, wp + k0 * kPanel, K * kPanel, gp, ldg,
                            p + 2 == panels ? tail : kPanel, k0 == 0 ? init_at(p, 2) : nullptr);
        ++p;
        continue;
      }
      const long n = p + 1 == panels ? tail : kPanel;
      for (long k0 = 0; k0 < K; k0 += kKBlock) {
        const long kc = K - k0 < kKBlock ? K - k0 : kKBlock;
        const float* hk = hb + k0;
        const float* wk = wp + k0 * kPanel;
        const float* in = k0 == 0 ? init_at(p, 1) : nullptr;
        // 3-row tiles; a remainder of 1 row after at least one tile becomes 2 + 2 rows (a lone
        // row has only PV accumulator chains and reloads the panel for itself).
        const long r3 = rows % 3 == 1 && rows >= 4 ? rows - 4 : rows - rows % 3;
        long b = 0;
        for (; b < r3; b += 3) panel_block<3, 1>(kc, hk + b * ldh, ldh, wk, 0, gp + b * ldg, ldg, n, in);
        for (; b + 2 <= rows; b += 2) panel_block<2, 1>(kc, hk + b * ldh, ldh, wk, 0, gp + b * ldg, ldg, n, in);
        if (b < rows) panel_block<1, 1>(kc, hk + b * ldh, ldh, wk, 0, gp + b * ldg, ldg, n, in);
      }
    }
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

}  // namespace

static constexpr fastrnn::cpu::KernelTable make_table(const char* isa) {
  return fastrnn::cpu::KernelTable{isa,          activate,      bias_act,       lstm_cell,  gru_cell_after,
                                   gru_before_rz, gru_before_out, gemm_packed, fma_probe};
}
