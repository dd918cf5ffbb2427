// Kernel test harness: every compiled KernelTable (kernels.h) against a plain scalar reference in
// double, at odd shapes (tails of every tile, row blocks, k blocks).  No Python, no BLAS: built from
// this file, dispatch.cc and kernels_<isa>.cc alone, natively and cross-compiled for aarch64 under
// qemu (.ci/aarch64.sh).  Tables compiled for an ISA this CPU lacks are skipped with a note (or, for
// avx512, run from a build with AVX2 flags: FASTRNN_AVX512_LOWERED below).
//
// Tolerances: a float32 dot product of n terms, in any order, with or without FMA, is within
// n * 2^-24 * sum |terms| of the exact sum (the classic bound gamma_n); activations add the
// documented error of exp (1.2e-7 relative on [-20, 20], 3e-7 towards its clamps) and 1.5e-7 of
// tanh (kernels_impl.h).  int8 sums are exact (int32), so
// the int8 products are checked bit for bit.
//
// Exit status: 0 when every check passed.  Output: one line per table (checks, failures, the
// reduced-precision paths that ran: .ci/aarch64.sh greps it to see sdot chosen, or not).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fastrnn/cpu/kernels.h"

namespace cpu = fastrnn::cpu;
using cpu::Act;

namespace {

std::mt19937_64 rng(12345);
double uni(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
std::vector<float> randv(long n, double lo = -1, double hi = 1) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(uni(lo, hi));
  return v;
}

long checks = 0, failures = 0;
void check(const char* what, const std::string& where, double got, double ref, double tol) {
  ++checks;
  const bool ok = std::fabs(got - ref) <= tol;  // NaN fails
  if (!ok && ++failures <= 20)
    std::printf("  FAIL %s %s: got %.9g, reference %.9g (|diff| %.3g > tol %.3g)\n", what, where.c_str(), got, ref,
                std::fabs(got - ref), tol);
}
std::string at(std::initializer_list<long> v) {
  std::string s = "[";
  for (long x : v) s += (s.size() > 1 ? "," : "") + std::to_string(x);
  return s + "]";
}
constexpr double kU = 1.0 / (1 << 24);  // float32 unit roundoff
constexpr float kGuard = -12345.f;      // written around outputs: must stay untouched

double act_ref(Act a, double v) {
  switch (a) {
    case Act::Linear: return v;
    case Act::Tanh: return std::tanh(v);
    case Act::Sigmoid: return 1 / (1 + std::exp(-v));
    case Act::Relu: return v < 0 ? 0 : v;
    case Act::HardSigmoid: return std::fmin(1, std::fmax(0, v / 6 + 0.5));
    case Act::Elu: return v > 0 ? v : std::expm1(v);
    case Act::Softplus: return std::log1p(std::exp(v));
    case Act::Softsign: return v / (1 + std::fabs(v));
    case Act::Silu: return v / (1 + std::exp(-v));
    case Act::GeluTanh: return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    default: std::printf("act_ref: activation %d not covered\n", static_cast<int>(a)); std::abort();
  }
}

// ---- element-wise: activate, lstm_cell, gru_cell_after ------------------------------------------
void test_elementwise(const cpu::KernelTable& k) {
  const Act acts[] = {Act::Tanh, Act::Sigmoid, Act::Relu, Act::HardSigmoid, Act::Elu, Act::Softplus,
                      Act::Softsign, Act::Silu, Act::GeluTanh};
  for (long n : {1L, 3L, 17L, 40L})
    for (Act a : acts) {
      auto x = randv(n, -6, 6);
      auto y = x;
      k.activate(a, y.data(), n);
      for (long i = 0; i < n; ++i) {
        const double r = act_ref(a, x[i]);
        check("activate", cpu::act_names()[static_cast<int>(a)] + at({n, i}), y[i], r, 2e-6 * (1 + std::fabs(r)));
      }
    }
  for (long n : {1L, 5L, 23L}) {  // softmax over the row
    auto x = randv(n, -5, 5), y = x;
    k.activate(Act::Softmax, y.data(), n);
    double s = 0;
    for (float v : x) s += std::exp(double(v));
    for (long i = 0; i < n; ++i) check("softmax", at({n, i}), y[i], std::exp(double(x[i])) / s, 1e-6);
  }
  const std::pair<Act, Act> pairs[] = {{Act::Tanh, Act::Sigmoid}, {Act::Relu, Act::HardSigmoid}};
  for (auto [act, ract] : pairs)
    for (long H : {1L, 5L, 37L}) {
      // LSTM: c' = ract(f) c + ract(i) act(g);  h' = ract(o) act(c')
      auto g = randv(4 * H, -4, 4), c = randv(H, -2, 2), g0 = g;
      std::vector<float> cn(H), hn(H);
      k.lstm_cell(act, ract, g.data(), c.data(), cn.data(), hn.data(), H);
      for (long j = 0; j < H; ++j) {
        const double cr = act_ref(ract, g0[H + j]) * c[j] + act_ref(ract, g0[j]) * act_ref(act, g0[2 * H + j]);
        const double hr = act_ref(ract, g0[3 * H + j]) * act_ref(act, cr);
        check("lstm_cell c", at({H, j}), cn[j], cr, 2e-6 * (1 + std::fabs(cr)));
        check("lstm_cell h", at({H, j}), hn[j], hr, 2e-6 * (1 + std::fabs(hr)));
      }
      // GRU (reset after): r, z = ract(gx + gh); n = act(gx_n + r (gh_n + b_hn)); h' = (1-z) n + z h
      auto gx = randv(3 * H, -3, 3), gh = randv(3 * H, -3, 3), bhn = randv(H), hp = randv(H), gx0 = gx;
      std::vector<float> hn2(H);
      k.gru_cell_after(act, ract, gx.data(), gh.data(), bhn.data(), hp.data(), hn2.data(), H);
      for (long j = 0; j < H; ++j) {
        const double r = act_ref(ract, double(gx0[j]) + gh[j]), z = act_ref(ract, double(gx0[H + j]) + gh[H + j]);
        const double nn = act_ref(act, gx0[2 * H + j] + r * (double(gh[2 * H + j]) + bhn[j]));
        const double hr = (1 - z) * nn + z * hp[j];
        check("gru_cell_after", at({H, j}), hn2[j], hr, 4e-6 * (1 + std::fabs(hr)));
      }
    }
}

// ---- f32 packed matmul: g[b, j] (+)= sum_k h[b, k] W[j, k] ---------------------------------------
void test_gemm_packed(const cpu::KernelTable& k) {
  for (long K : {1L, 3L, 29L, 300L})
    for (long N : {1L, 7L, 33L, 70L})
      for (long nb : {1L, 2L, 5L, 7L, 13L, 100L, 150L})  // 150: two row blocks of 75
        for (bool with_init : {false, true}) {
          const long ldh = K + 3, ldg = N + 5;
          auto h = randv(nb * ldh), w = randv(N * K), init = randv(N), g = randv(nb * ldg);
          for (long b = 0; b < nb; ++b)
            for (long j = N; j < ldg; ++j) g[b * ldg + j] = kGuard;
          const auto g0 = g;
          std::vector<float> packed(cpu::packed_size(N, K, k.panel));
          cpu::pack_panels(w.data(), N, K, packed.data(), k.panel);
          k.gemm_packed(nb, N, K, h.data(), ldh, packed.data(), g.data(), ldg, with_init ? init.data() : nullptr);
          for (long b = 0; b < nb; ++b) {
            for (long j = 0; j < N; ++j) {
              const double base = with_init ? init[j] : g0[b * ldg + j];
              double s = base, mag = std::fabs(base);
              for (long kk = 0; kk < K; ++kk) {
                s += double(h[b * ldh + kk]) * w[j * K + kk];
                mag += std::fabs(double(h[b * ldh + kk]) * w[j * K + kk]);
              }
              check("gemm_packed", at({nb, N, K, with_init, b, j}), g[b * ldg + j], s, (K + 2) * kU * mag + 1e-30);
            }
            for (long j = N; j < ldg; ++j) check("gemm_packed guard", at({nb, N, K, b, j}), g[b * ldg + j], kGuard, 0);
          }
        }
}

// ---- fused recurrent step (kernels.h FusedStep) ------------------------------------------------
// fold: 0 = no input columns in the layout; 1 = [W_ih | W_hh] with x_in given (x = bias, ldx 0);
// 2 = the same layout with x_in null (x holds the projection, the input columns are skipped).
// partial: only the upper half of the unit blocks (the rest must stay untouched); split: all blocks
// in three calls, as the batch-1 thread split hands them out.  K: the width of h (an LSTM
// projection makes it differ from H; GRU needs K == H).
void test_fused_case(const cpu::KernelTable& k, int G, Act act, Act ract, long H, long K, long nb, int fold,
                     bool partial, bool split = false) {
  const long Kin = fold ? 6 : 0, Kt = Kin + K;
  const double sc = 1 / std::sqrt(double(Kt));
  auto wcat = randv(G * H * Kt, -sc, sc);  // [G*H, Kin + K]: rows g*H + j
  std::vector<float> packed(cpu::fused_size(k, G, H, Kt));
  cpu::pack_fused(k, wcat.data(), G, H, Kt, packed.data());
  const long ldh = K + 2, ldxi = Kin + 1, ldc = H + 1, ldo = H + 3;
  const long ldx = fold == 1 ? 0 : G * H + 4;
  auto h = randv(nb * ldh), xin = randv(nb * ldxi), bhn = randv(H), c = randv(nb * ldc, -2, 2);
  auto x = randv(fold == 1 ? G * H : nb * ldx);
  std::vector<float> hn(nb * ldo, kGuard), cn(nb * ldc, kGuard);
  std::vector<float> part(cpu::fused_part_size(k, G, H, K, nb));
  const long U = cpu::block_units(k, G), blocks = cpu::fused_blocks(k, G, H);
  cpu::FusedStep a;
  a.G = G, a.act = act, a.ract = ract, a.nb = nb, a.H = H, a.K = K;
  a.K_in = Kin, a.x_in = fold == 1 ? xin.data() : nullptr, a.ldxi = ldxi;
  a.q0 = partial ? blocks / 2 : 0, a.q1 = blocks;
  a.h = h.data(), a.ldh = ldh, a.w = packed.data(), a.x = x.data(), a.ldx = ldx;
  a.b_hn = bhn.data(), a.c_prev = c.data(), a.c_new = cn.data(), a.ldc = ldc;
  a.h_new = hn.data(), a.ldo = ldo, a.part = part.data();
  if (split) {
    for (long r = 0; r < 3; ++r) {
      a.q0 = blocks * r / 3, a.q1 = blocks * (r + 1) / 3;
      if (a.q0 < a.q1) k.recurrent_fused(a);
    }
    a.q0 = 0;
  } else {
    k.recurrent_fused(a);
  }
  const long j0 = a.q0 * U;
  const std::string where = "G" + std::to_string(G) + (ract == Act::Sigmoid ? " fast" : " generic") + " fold" +
                            std::to_string(fold) + (partial ? " partial" : "") + (split ? " split" : "") + " K" +
                            std::to_string(K);
  // The separate form the engine runs for LSTM (sigmoid / tanh) and SimpleRNN steps without a
  // folded input (Recurrent::fused_unfolded): the GEMM summed onto the projection rows, then the
  // cell pass per row.  A thread team runs the fused kernel on the same step, so the two must agree
  // bit for bit (tolerance 0).
  if (fold == 0 && !partial && (G == 1 || (G == 4 && ract == Act::Sigmoid && act == Act::Tanh))) {
    std::vector<float> wp(cpu::packed_size(G * H, K, k.panel)), g = x, c2(nb * H), h2(nb * H);
    cpu::pack_panels(wcat.data(), G * H, K, wp.data(), k.panel);
    k.gemm_packed(nb, G * H, K, h.data(), ldh, wp.data(), g.data(), ldx, nullptr);
    for (long b = 0; b < nb; ++b) {
      float* gb = g.data() + b * ldx;
      if (G == 4) {
        k.lstm_cell(act, ract, gb, c.data() + b * ldc, c2.data() + b * H, h2.data() + b * H, H);
      } else {
        k.activate(act, gb, H);
        std::copy(gb, gb + H, h2.data() + b * H);
      }
      for (long j = 0; j < H; ++j) {
        check("separate = fused h", where + at({H, nb, b, j}), h2[b * H + j], hn[b * ldo + j], 0);
        if (G == 4) check("separate = fused c", where + at({H, nb, b, j}), c2[b * H + j], cn[b * ldc + j], 0);
      }
    }
  }
  for (long b = 0; b < nb; ++b)
    for (long j = 0; j < H; ++j) {
      if (j < j0) {  // blocks outside [q0, q1): untouched
        check("fused guard", where + at({H, nb, b, j}), hn[b * ldo + j], kGuard, 0);
        continue;
      }
      // a_g = x_g (+ W_ih x_in) + W_hh h  (GRU n gate: b_hn + W_hn h, x_n added after the reset)
      double pre[4], mag = 0;
      for (int g = 0; g < G; ++g) {
        double s = G == 3 && g == 2 ? bhn[j] : x[b * ldx + g * H + j];
        const float* wr = wcat.data() + (g * H + j) * Kt;
        if (fold == 1)
          for (long i = 0; i < Kin; ++i) s += double(xin[b * ldxi + i]) * wr[i], mag += std::fabs(xin[b * ldxi + i] * wr[i]);
        for (long i = 0; i < K; ++i) s += double(h[b * ldh + i]) * wr[Kin + i], mag += std::fabs(h[b * ldh + i] * wr[Kin + i]);
        pre[g] = s;
      }
      const double tol = 1e-5 + (Kt + 2) * kU * mag * 4;
      if (G == 4) {
        const double cr = act_ref(ract, pre[1]) * c[b * ldc + j] + act_ref(ract, pre[0]) * act_ref(act, pre[2]);
        check("fused lstm c", where + at({H, nb, b, j}), cn[b * ldc + j], cr, tol);
        check("fused lstm h", where + at({H, nb, b, j}), hn[b * ldo + j], act_ref(ract, pre[3]) * act_ref(act, cr), tol);
      } else if (G == 3) {
        const double r = act_ref(ract, pre[0]), z = act_ref(ract, pre[1]);
        const double n = act_ref(act, x[b * ldx + 2 * H + j] + r * pre[2]);
        check("fused gru h", where + at({H, nb, b, j}), hn[b * ldo + j], (1 - z) * n + z * h[b * ldh + j], tol);
      } else {
        check("fused rnn h", where + at({H, nb, b, j}), hn[b * ldo + j], act_ref(act, pre[0]), tol);
      }
    }
}

void test_fused(const cpu::KernelTable& k) {
  for (int G : {4, 3, 1})
    for (bool fast : {true, false})
      for (long H : {1L, 5L, 37L, 130L})
        for (long nb : {1L, 3L, 8L, 100L, 193L})  // 193: three row blocks (65 + 64 + 64)
          for (int fold : {0, 1, 2}) {
            if (G == 3 && fold) continue;  // GRU never folds (the reset multiplies the recurrent part only)
            if (H == 130 && nb > 8) continue;  // (time under qemu)
            if (nb == 193 && (H != 37 || fold == 2)) continue;
            const Act act = fast ? Act::Tanh : Act::Relu, ract = G == 1 ? Act::Linear : fast ? Act::Sigmoid : Act::HardSigmoid;
            test_fused_case(k, G, act, ract, H, H, nb, fold, false);
            if (G == 4 && H == 37) test_fused_case(k, G, act, ract, H, 7, nb, fold, false);  // projection
            if (fold == 0 && nb <= 3) test_fused_case(k, G, act, ract, H, H, nb, fold, true);
            if (nb == 1) test_fused_case(k, G, act, ract, H, H, nb, fold, false, true);
          }
}

// ---- reduced precision (qkernels_impl.h): int8 and bf16 weights --------------------------------
template <class T>
std::vector<T> qlayout(const std::vector<T>& w, long N, long K, long Kp) {  // kernels.h qoffset / qoffset_i8
  const long CH = cpu::qchunk(sizeof(T));
  std::vector<T> out(cpu::qrows(N, sizeof(T)) * Kp, T(0));
  for (long n = 0; n < N; ++n)
    for (long kk = 0; kk < K; ++kk)
      out[sizeof(T) == 1 ? cpu::qoffset_i8(n, kk, Kp) : cpu::qoffset(n, kk, Kp, CH)] = w[n * K + kk];
  return out;
}

void test_gemm_i8(const cpu::KernelTable& k) {
  // weights in [-127, 127], activations in [-xmax, xmax]: both contracts (kernels.h int8_xmax)
  std::uniform_int_distribution<int> q(-127, 127);
  for (int xmax : {cpu::kXQMaxReduced, cpu::kXQMaxFull})
  for (long K : {1L, 17L, 64L, 65L, 200L, 600L})
    for (long N : {1L, 3L, 4L, 5L, 8L, 9L, 16L, 17L, 33L, 64L, 100L, 130L})
      for (long nb : {1L, 2L, 3L, 4L, 5L, 9L})
        for (int mode : {0, 1, 2}) {  // 0: unit scales (the int32 sum itself); 1: scales + init; 2: accumulate
          const long Kp = cpu::qpad(K), ldy = N + 2;
          std::vector<std::int8_t> w(N * K), x(nb * Kp, 0);
          for (auto& v : w) v = static_cast<std::int8_t>(q(rng));
          for (long b = 0; b < nb; ++b)
            for (long kk = 0; kk < K; ++kk) x[b * Kp + kk] = static_cast<std::int8_t>(q(rng) * xmax / 127);
          if (nb >= 3 && N >= 3)  // the extremes: every pair at +-2 * 127 * 127 (after x + 64 where xmax = 63)
            for (long kk = 0; kk < K; ++kk) {
              x[kk] = static_cast<std::int8_t>(xmax), x[Kp + kk] = static_cast<std::int8_t>(-xmax);
              w[kk] = 127, w[K + kk] = -127, w[2 * K + kk] = static_cast<std::int8_t>(kk % 2 ? 127 : -127);
            }
          const auto wl = qlayout(w, N, K, Kp);
          std::vector<float> xs(nb, 1.f), ws(N, 1.f), init = randv(N), y(nb * ldy, kGuard);
          std::vector<std::int32_t> wsum(N, 0);
          for (long n = 0; n < N; ++n)
            for (long kk = 0; kk < K; ++kk) wsum[n] += w[n * K + kk];
          if (mode) xs = randv(nb, 0.001, 0.02), ws = randv(N, 0.001, 0.02);
          for (long b = 0; b < nb; ++b)
            for (long n = 0; n < N; ++n) y[b * ldy + n] = mode == 2 ? static_cast<float>(uni(-1, 1)) : kGuard;
          const auto y0 = y;
          cpu::QGemm a;
          a.nb = nb, a.N = N, a.Kp = Kp, a.x = x.data(), a.ldx = Kp, a.xscale = xs.data(), a.xmax = xmax;
          a.w = wl.data(), a.wscale = ws.data(), a.wsum = wsum.data();
          a.init = mode == 1 ? init.data() : nullptr, a.accumulate = mode == 2, a.y = y.data(), a.ldy = ldy;
          k.gemm_i8(a);
          for (long b = 0; b < nb; ++b) {
            for (long n = 0; n < N; ++n) {
              std::int64_t s = 0;
              for (long kk = 0; kk < K; ++kk) s += std::int64_t(x[b * Kp + kk]) * w[n * K + kk];
              // y = base + f32(s) * (s_x s_w): |s| < 2^24, so f32(s) is exact; mode 0 compares the sum itself
              const double base = mode == 1 ? init[n] : mode == 2 ? y0[b * ldy + n] : 0.0;
              const double r = base + double(s) * (double(xs[b]) * ws[n]);
              check(mode ? "gemm_i8 scaled" : "gemm_i8 exact sum", at({xmax, nb, N, K, mode, b, n}), y[b * ldy + n], r,
                    mode ? 4 * kU * (std::fabs(base) + std::fabs(r - base)) : 0.0);
            }
            for (long n = N; n < ldy; ++n) check("gemm_i8 guard", at({nb, N, K, b, n}), y[b * ldy + n], kGuard, 0);
          }
        }
}

std::uint16_t to_bf16(float f) {  // truncation: any bf16 value will do as a weight
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<std::uint16_t>(u >> 16);
}
float from_bf16(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

void test_gemm_bf16(const cpu::KernelTable& k) {
  for (long K : {1L, 17L, 32L, 33L, 150L, 600L})
    for (long N : {1L, 3L, 5L, 9L, 33L})
      for (long nb : {1L, 2L, 3L, 4L, 7L})
        for (bool with_init : {false, true}) {
          const long Kp = cpu::qpad(K), ldy = N + 2;
          std::vector<std::uint16_t> w(N * K);
          for (auto& v : w) v = to_bf16(static_cast<float>(uni(-1, 1)));
          std::vector<float> x(nb * Kp, 0.f), init = randv(N), y(nb * ldy, kGuard);
          for (long b = 0; b < nb; ++b)
            for (long kk = 0; kk < K; ++kk) x[b * Kp + kk] = static_cast<float>(uni(-1, 1));
          const auto wl = qlayout(w, N, K, Kp);
          cpu::QGemm a;
          a.nb = nb, a.N = N, a.Kp = Kp, a.x = x.data(), a.ldx = Kp, a.w = wl.data();
          a.init = with_init ? init.data() : nullptr, a.y = y.data(), a.ldy = ldy;
          k.gemm_bf16(a);
          for (long b = 0; b < nb; ++b) {
            for (long n = 0; n < N; ++n) {
              double s = with_init ? init[n] : 0.0, mag = std::fabs(s);
              for (long kk = 0; kk < K; ++kk) {
                const double t = double(x[b * Kp + kk]) * from_bf16(w[n * K + kk]);
                s += t, mag += std::fabs(t);
              }
              // (AVX512_BF16's hi + lo split of x, opt-in, adds 2^-17 |x| per term)
              check("gemm_bf16", at({nb, N, K, with_init, b, n}), y[b * ldy + n], s, (Kp + 2) * kU * mag + 0x1p-16 * mag);
            }
            for (long n = N; n < ldy; ++n) check("gemm_bf16 guard", at({nb, N, K, b, n}), y[b * ldy + n], kGuard, 0);
          }
        }
}

}  // namespace

#if defined(FASTRNN_AVX512_LOWERED)
namespace fastrnn::cpu::avx512 { const KernelTable& table(); }
#endif

int main() {
  long skipped = 0;
  for (const std::string& isa : cpu::compiled_isas()) {
    const cpu::KernelTable* k = cpu::kernels_for(isa);
#if defined(FASTRNN_AVX512_LOWERED)
    // kernels_avx512.cc built with AVX2 flags only (.ci/aarch64.sh on a CPU without AVX-512): GCC
    // lowers its 64-byte vectors to ymm pairs, so the instantiation's logic (6 x 4 tiles of 16
    // floats, 16-unit blocks, k blocks, tails) runs here, though not its AVX-512 instructions.
    if (!k && isa == "avx512") {
      k = &cpu::avx512::table();
      std::printf("avx512   (compiled with AVX2 flags only: this CPU lacks AVX-512)\n");
    }
#endif
    if (!k) {
      std::printf("%-8s SKIPPED: compiled, but this CPU lacks the ISA (runs where it has it)\n", isa.c_str());
      ++skipped;
      continue;
    }
    const long c0 = checks, f0 = failures;
    test_elementwise(*k);
    test_gemm_packed(*k);
    test_fused(*k);
    test_gemm_i8(*k);
    test_gemm_bf16(*k);
    std::printf("%-8s vec %ld, panel %ld: %ld checks, %ld failures; %s\n", isa.c_str(), k->vec, k->panel,
                checks - c0, failures - f0, k->qpaths());
  }
  std::printf("%s: %ld checks, %ld failures, %ld table(s) skipped\n", failures ? "FAILED" : "OK", checks, failures,
              skipped);
  return failures ? 1 : 0;
}
