// Kernels written once, in plain loops the compiler vectorizes for the ISA of the translation
// unit that includes this file (kernels_generic.cc / kernels_avx2.cc / kernels_avx512.cc).
// No -ffast-math: NaN and inf propagate as in the frameworks, and every TU computes the same
// formulas (results differ across ISAs only by FMA contraction).
//
// exp(x): Cody-Waite reduction x = n*ln2 + r, |r| <= ln2/2, degree-6 polynomial (Cephes expf
// coefficients), 2^n built in the exponent bits.  Max rel. error ~2 ulp on [-87, 88].
// sigmoid(x) = 1 / (1 + exp(-x));  tanh(x) = sign(x) * (1 - e) / (1 + e), e = exp(-2|x|).
// Inputs are clamped to [-87.3, 88] (NaN passes through the clamps untouched).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "fastrnn/cpu/kernels.h"

#if defined(__GNUC__)
#define FASTRNN_INLINE inline __attribute__((always_inline))
#else
#define FASTRNN_INLINE inline
#endif

using fastrnn::cpu::Act;

static FASTRNN_INLINE float f_exp(float x) {
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.3f ? -87.3f : x;
  const float t = x * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (|t| < 2^22)
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const std::int32_t e = (static_cast<std::int32_t>(n) + 127) << 23;
  float s;
  std::memcpy(&s, &e, sizeof s);
  return p * s;
}
static FASTRNN_INLINE float f_sigmoid(float x) { return 1.0f / (1.0f + f_exp(-x)); }
static FASTRNN_INLINE float f_tanh(float x) {
  const float ax = x < 0.f ? -x : x;
  const float e = f_exp(-2.0f * ax);
  const float t = (1.0f - e) / (1.0f + e);
  return x < 0.f ? -t : t;
}
static FASTRNN_INLINE float f_clip01(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
static FASTRNN_INLINE float f_softplus(float x) {  // log(1 + exp(x)) = max(x,0) + log1p(exp(-|x|))
  const float ax = x < 0.f ? -x : x;
  return (x > 0.f ? x : 0.f) + std::log1p(f_exp(-ax));
}

template <typename F>
static FASTRNN_INLINE void map(float* __restrict x, long n, F f) {
  for (long i = 0; i < n; ++i) x[i] = f(x[i]);
}

static void activate(Act act, float* __restrict x, long n) {
  switch (act) {
    case Act::Linear: return;
    case Act::Tanh: return map(x, n, f_tanh);
    case Act::Sigmoid: return map(x, n, f_sigmoid);
    case Act::Relu: return map(x, n, [](float v) { return v < 0.f ? 0.f : v; });
    case Act::Relu6: return map(x, n, [](float v) { return v < 0.f ? 0.f : (v > 6.f ? 6.f : v); });
    case Act::HardSigmoid: return map(x, n, [](float v) { return f_clip01(v * (1.0f / 6.0f) + 0.5f); });
    case Act::HardSigmoidTf2: return map(x, n, [](float v) { return f_clip01(0.2f * v + 0.5f); });
    case Act::Elu: return map(x, n, [](float v) { return v > 0.f ? v : f_exp(v) - 1.0f; });
    case Act::Selu:
      return map(x, n, [](float v) {
        return 1.0507009873554805f * (v > 0.f ? v : 1.6732632423543772f * (f_exp(v) - 1.0f));
      });
    case Act::Softplus: for (long i = 0; i < n; ++i) x[i] = f_softplus(x[i]); return;
    case Act::Softsign: return map(x, n, [](float v) { return v / (1.0f + (v < 0.f ? -v : v)); });
    case Act::Silu: return map(x, n, [](float v) { return v * f_sigmoid(v); });
    case Act::HardSilu: return map(x, n, [](float v) { return v * f_clip01(v * (1.0f / 6.0f) + 0.5f); });
    case Act::Exponential: for (long i = 0; i < n; ++i) x[i] = std::exp(x[i]); return;
    case Act::LeakyRelu: return map(x, n, [](float v) { return v < 0.f ? 0.2f * v : v; });
    case Act::Gelu: for (long i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f)); return;
    case Act::GeluTanh:
      return map(x, n, [](float v) {
        return 0.5f * v * (1.0f + f_tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
      });
    case Act::HardTanh: return map(x, n, [](float v) { return v < -1.f ? -1.f : (v > 1.f ? 1.f : v); });
    case Act::Mish: for (long i = 0; i < n; ++i) x[i] = x[i] * f_tanh(f_softplus(x[i])); return;
    case Act::LogSigmoid: for (long i = 0; i < n; ++i) x[i] = -f_softplus(-x[i]); return;
    case Act::Softmax:
    case Act::LogSoftmax: {
      if (n <= 0) return;
      float m = x[0];
      for (long i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
      bool has_nan = false;
      for (long i = 0; i < n; ++i) has_nan |= std::isnan(x[i]);
      if (has_nan || std::isinf(m)) {  // frameworks give NaN for NaN rows (and for +inf)
        for (long i = 0; i < n; ++i) x[i] = std::nanf("");
        return;
      }
      float s = 0.f;
      if (act == Act::Softmax) {
        for (long i = 0; i < n; ++i) { x[i] = f_exp(x[i] - m); s += x[i]; }
        const float inv = 1.0f / s;
        for (long i = 0; i < n; ++i) x[i] *= inv;
      } else {
        for (long i = 0; i < n; ++i) s += std::exp(x[i] - m);
        const float ls = std::log(s) + m;
        for (long i = 0; i < n; ++i) x[i] -= ls;
      }
      return;
    }
    case Act::Count: return;
  }
}

static void bias_act(Act act, const float* __restrict b, float* __restrict x, long n) {
  for (long i = 0; i < n; ++i) x[i] += b[i];
  activate(act, x, n);
}

static void lstm_cell(Act act, Act ract, float* __restrict g, const float* __restrict c_prev, float* __restrict c_new,
                      float* __restrict h_new, long H) {
  float* gi = g;
  float* gf = g + H;
  float* gg = g + 2 * H;
  float* go = g + 3 * H;
  if (act == Act::Tanh && ract == Act::Sigmoid) {  // the common case, one fused pass
    for (long j = 0; j < H; ++j) {
      const float c = f_sigmoid(gf[j]) * c_prev[j] + f_sigmoid(gi[j]) * f_tanh(gg[j]);
      c_new[j] = c;
      h_new[j] = f_sigmoid(go[j]) * f_tanh(c);
    }
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

static void gru_cell_after(Act act, Act ract, float* __restrict gx, const float* __restrict gh,
                           const float* __restrict b_hn, const float* __restrict h_prev, float* __restrict h_new,
                           long H) {
  float* r = gx;
  float* z = gx + H;
  float* n = gx + 2 * H;
  if (act == Act::Tanh && ract == Act::Sigmoid) {
    for (long j = 0; j < H; ++j) {
      const float rj = f_sigmoid(r[j] + gh[j]);
      const float zj = f_sigmoid(z[j] + gh[H + j]);
      const float nj = f_tanh(n[j] + rj * (gh[2 * H + j] + b_hn[j]));
      h_new[j] = (1.0f - zj) * nj + zj * h_prev[j];
    }
    return;
  }
  for (long j = 0; j < 2 * H; ++j) gx[j] += gh[j];
  activate(ract, gx, 2 * H);
  for (long j = 0; j < H; ++j) n[j] += r[j] * (gh[2 * H + j] + b_hn[j]);
  activate(act, n, H);
  for (long j = 0; j < H; ++j) h_new[j] = (1.0f - z[j]) * n[j] + z[j] * h_prev[j];
}

static void gru_before_rz(Act ract, float* __restrict g, const float* __restrict h_prev, float* __restrict rh, long H) {
  activate(ract, g, 2 * H);
  for (long j = 0; j < H; ++j) rh[j] = g[j] * h_prev[j];
}

static void gru_before_out(Act act, float* __restrict g, const float* __restrict h_prev, float* __restrict h_new,
                           long H) {
  float* z = g + H;
  float* n = g + 2 * H;
  activate(act, n, H);
  for (long j = 0; j < H; ++j) h_new[j] = (1.0f - z[j]) * n[j] + z[j] * h_prev[j];
}

static const fastrnn::cpu::KernelTable make_table(const char* isa) {
  return fastrnn::cpu::KernelTable{isa, activate, bias_act, lstm_cell, gru_cell_after, gru_before_rz, gru_before_out};
}
