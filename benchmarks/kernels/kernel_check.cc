// Correctness of every kernel table against a double-precision reference: gemm_packed, the
// fused recurrent step (every cell, tails, row counts, unit-block ranges, folded inputs, other
// activations) and the bf16 / int8 products (check_qgemm; on a CPU with AVX-512 VNNI the avx512
// table runs vpdpbusd, with FASTRNN_BF16_DPBF16=1 and AVX512_BF16 vdpbf16ps).  Built by check.sh for generic, avx2 and avx512; on a CPU without AVX-512 the
// avx512 file is compiled with AVX2 flags only (GCC lowers its 64-byte vectors to pairs of ymm
// operations), which checks the AVX-512 instantiation's logic - tile rows, 16-unit blocks, k
// blocks, tails - though not its speed or its AVX-512 instructions.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "fastrnn/common.h"
#include "fastrnn/cpu/kernels.h"

namespace fastrnn::cpu {
namespace generic { const KernelTable& table(); }
namespace avx2 { const KernelTable& table(); }
namespace avx512 { const KernelTable& table(); }
}  // namespace fastrnn::cpu

using namespace fastrnn;
using cpu::Act;

static int failures = 0;
static double worst = 0;
static void check(double got, double want, const std::string& what) {
  const double err = std::fabs(got - want) / std::max(1.0, std::fabs(want));
  worst = std::max(worst, err);
  if (!(err <= 2e-5)) {
    if (++failures < 20) std::printf("FAIL %s: got %.8g want %.8g\n", what.c_str(), got, want);
  }
}
static double act(Act a, double x) {
  switch (a) {
    case Act::Tanh: return std::tanh(x);
    case Act::Sigmoid: return 1 / (1 + std::exp(-x));
    case Act::Relu: return x > 0 ? x : 0;
    case Act::HardSigmoid: return std::min(1.0, std::max(0.0, x / 6 + 0.5));
    case Act::Linear: return x;
    default: return NAN;
  }
}

std::vector<float> rnd(std::size_t n, std::mt19937& g, float s) {
  std::uniform_real_distribution<float> u(-s, s);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

void check_gemm(const cpu::KernelTable& k, long rows, long N, long K, bool init) {
  std::mt19937 g(rows * 131 + N * 7 + K);
  auto w = rnd(N * K, g, 1), x = rnd(rows * K, g, 1), b = rnd(N, g, 1), y0 = rnd(rows * N, g, 1);
  Buffer p(cpu::packed_size(N, K, k.panel));
  cpu::pack_panels(w.data(), N, K, p.data(), k.panel);
  auto y = y0;
  k.gemm_packed(rows, N, K, x.data(), K, p.data(), y.data(), N, init ? b.data() : nullptr);
  for (long r = 0; r < rows; ++r)
    for (long j = 0; j < N; ++j) {
      double s = init ? b[j] : y0[r * N + j];
      for (long i = 0; i < K; ++i) s += double(x[r * K + i]) * w[j * K + i];
      check(y[r * N + j], s, std::string(k.isa) + " gemm rows=" + std::to_string(rows) + " N=" + std::to_string(N) +
                                 " K=" + std::to_string(K));
    }
}

// One step, G gates, nb rows, H units, P = h width, I folded inputs (0: none), units [q0, q1) blocks.
void check_step(const cpu::KernelTable& k, int G, long nb, long H, long P, long I, bool fold, Act a, Act ra,
                bool split) {
  std::mt19937 g(G * 1000 + nb * 37 + H * 3 + P + I);
  const long GH = G * H, L = I + P;
  auto w = rnd(GH * L, g, 0.5f), x = rnd(nb * GH, g, 1), h = rnd(nb * P, g, 1), c = rnd(nb * H, g, 1),
       bhn = rnd(H, g, 0.5f), xin = rnd(nb * std::max(1L, I), g, 1), bias = rnd(GH, g, 0.5f);
  Buffer lay(cpu::fused_size(k, G, H, L));
  cpu::pack_fused(k, w.data(), G, H, L, lay.data());
  std::vector<float> hn(nb * H, -7.f), cn(nb * H, -7.f);
  Buffer part(std::max(1L, cpu::fused_part_size(k, G, H, L, nb)) + 1);
  cpu::FusedStep s;
  s.G = G, s.act = a, s.ract = ra, s.nb = nb, s.H = H, s.K = P, s.K_in = I;
  s.h = h.data(), s.ldh = P, s.w = lay.data(), s.b_hn = bhn.data();
  s.c_prev = c.data(), s.c_new = cn.data(), s.ldc = H, s.h_new = hn.data(), s.ldo = H, s.part = part.data();
  if (fold) s.x = bias.data(), s.ldx = 0, s.x_in = xin.data(), s.ldxi = I;
  else s.x = x.data(), s.ldx = GH;
  const long nblk = cpu::fused_blocks(k, G, H);
  if (split) {  // block ranges as the batch-1 split hands them out
    for (long r = 0; r < 3; ++r) {
      s.q0 = nblk * r / 3, s.q1 = nblk * (r + 1) / 3;
      if (s.q0 < s.q1) k.recurrent_fused(s);
    }
  } else {
    s.q0 = 0, s.q1 = nblk;
    k.recurrent_fused(s);
  }
  for (long r = 0; r < nb; ++r)
    for (long j = 0; j < H; ++j) {
      double gs[4], hpart[4];
      for (int q = 0; q < G; ++q) {
        const long row = q * H + j;
        double sx = fold ? bias[row] : x[r * GH + row], sh = 0;
        if (fold)
          for (long i = 0; i < I; ++i) sx += double(xin[r * I + i]) * w[row * L + i];
        for (long i = 0; i < P; ++i) sh += double(h[r * P + i]) * w[row * L + I + i];
        gs[q] = sx + sh, hpart[q] = sh;
      }
      double hw, cw = 0;
      if (G == 4) {
        cw = act(ra, gs[1]) * c[r * H + j] + act(ra, gs[0]) * act(a, gs[2]);
        hw = act(ra, gs[3]) * act(a, cw);
      } else if (G == 3) {  // x holds the n gate's input part; hpart its recurrent part
        const double xn = fold ? NAN : x[r * GH + 2 * H + j];
        const double rr = act(ra, gs[0]), z = act(ra, gs[1]);
        const double n = act(a, xn + rr * (hpart[2] + bhn[j]));
        hw = (1 - z) * n + z * h[r * P + j];
      } else {
        hw = act(a, gs[0]);
      }
      const std::string what = std::string(k.isa) + " G=" + std::to_string(G) + " nb=" + std::to_string(nb) +
                               " H=" + std::to_string(H) + " I=" + std::to_string(I) + (fold ? " fold" : "") +
                               (split ? " split" : "") + " act=" + std::to_string(int(a));
      check(hn[r * H + j], hw, what + " h");
      if (G == 4) check(cn[r * H + j], cw, what + " c");
    }
}

// The reduced-precision products (gemm_bf16 / gemm_i8, kernels.h QGemm): random bf16 / int8
// weights in the qoffset layout, every form of the output (y = init + ..., y += ..., y = ...),
// tails of rows, weight rows and k; against double sums.  int8 sums are exact integers.
static void check_qgemm(const cpu::KernelTable& k, long rows, long N, long K, int mode) {
  std::mt19937 gen(static_cast<unsigned>(rows * 131 + N * 7 + K));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::uniform_int_distribution<int> qi(-127, 127);
  const long Kp = cpu::qpad(K), Np = cpu::qrows(N);
  std::vector<std::uint16_t> wb(Np * Kp, 0);
  std::vector<std::int8_t> wq(Np * Kp, 0), xq(rows * Kp, 0);
  std::vector<float> wf(N * K), ws(N), xs(rows), x(rows * Kp, 0.f), init(N), y0(rows * N);
  std::vector<std::int32_t> wsum(N, 0), wi(N * K);
  for (long n = 0; n < N; ++n) {
    ws[n] = 0.01f * (1 + n % 5), init[n] = u(gen);
    for (long c = 0; c < K; ++c) {
      const float f = u(gen);
      std::uint32_t b;
      std::memcpy(&b, &f, 4);
      b &= 0xffff0000u;  // a bf16 value
      std::memcpy(&wf[n * K + c], &b, 4);
      wb[cpu::qoffset(n, c, Kp, cpu::qchunk(2))] = static_cast<std::uint16_t>(b >> 16);
      wi[n * K + c] = qi(gen);
      wq[cpu::qoffset(n, c, Kp, cpu::qchunk(1))] = static_cast<std::int8_t>(wi[n * K + c]);
      wsum[n] += wi[n * K + c];
    }
  }
  for (long r = 0; r < rows; ++r) {
    xs[r] = 0.02f * (1 + r % 3);
    for (long c = 0; c < K; ++c) x[r * Kp + c] = u(gen), xq[r * Kp + c] = static_cast<std::int8_t>(qi(gen));
  }
  for (auto& v : y0) v = u(gen);
  for (int prec = 0; prec < 2; ++prec) {
    std::vector<float> y = y0;
    cpu::QGemm a;
    a.nb = rows, a.N = N, a.Kp = Kp, a.y = y.data(), a.ldy = N;
    a.init = mode == 0 ? init.data() : nullptr, a.accumulate = mode == 1;
    if (prec == 0) {
      a.x = x.data(), a.ldx = Kp, a.w = wb.data();
      k.gemm_bf16(a);
    } else {
      a.x = xq.data(), a.ldx = Kp, a.xscale = xs.data(), a.w = wq.data(), a.wscale = ws.data(), a.wsum = wsum.data();
      k.gemm_i8(a);
    }
    for (long r = 0; r < rows; ++r)
      for (long n = 0; n < N; ++n) {
        double s = 0;
        for (long c = 0; c < K; ++c)
          s += prec == 0 ? double(x[r * Kp + c]) * wf[n * K + c] : double(xq[r * Kp + c]) * wi[n * K + c];
        if (prec == 1) s *= double(xs[r]) * ws[n];
        const double base = mode == 0 ? init[n] : mode == 1 ? y0[r * N + n] : 0.0;
        check(y[r * N + n], base + s, std::string(k.isa) + (prec ? " int8" : " bf16") + " rows=" + std::to_string(rows) +
                                          " N=" + std::to_string(N) + " K=" + std::to_string(K) + " mode=" + std::to_string(mode));
      }
  }
}

int main() {
  std::vector<const cpu::KernelTable*> tables = {&cpu::generic::table(), &cpu::avx2::table(), &cpu::avx512::table()};
  for (const auto* k : tables) {
    std::printf("%s: panel %ld, unit blocks LSTM %ld / GRU %ld / RNN %ld, k block %ld\n", k->isa, k->panel,
                cpu::block_units(*k, 4), cpu::block_units(*k, 3), cpu::block_units(*k, 1), k->k_block);
    for (long rows : {1L, 2L, 3L, 5L, 7L, 13L, 40L, 100L, 200L})
      for (long N : {1L, 7L, 33L, 64L, 100L, 300L})
        for (long K : {1L, 5L, 64L, 130L, 200L}) check_gemm(*k, rows, N, K, (rows + N) % 2 == 0);
    std::printf("%s: %s\n", k->isa, k->qpaths());
    for (long rows : {1L, 2L, 3L, 5L, 9L})
      for (long N : {1L, 3L, 4L, 7L, 9L, 33L, 100L})
        for (long K : {1L, 5L, 64L, 65L, 130L, 600L}) check_qgemm(*k, rows, N, K, static_cast<int>((rows + N + K) % 3));
    for (int G : {4, 3, 1})
      for (long nb : {1L, 2L, 5L, 9L, 40L, 100L})
        for (long H : {1L, 5L, 16L, 33L, 70L, 130L})
          for (long I : {0L, 3L}) {
            const long P = (G == 4 && H == 33) ? 7 : H;  // an LSTM projection width
            for (bool fold : {false, true}) {
              if (fold && (I == 0 || G == 3)) continue;
              check_step(*k, G, nb, H, P, I, fold, Act::Tanh, Act::Sigmoid, false);
              check_step(*k, G, nb, H, P, I, fold, G == 1 ? Act::Relu : Act::Tanh, Act::HardSigmoid, false);
              if (nb == 1) check_step(*k, G, nb, H, P, I, fold, Act::Tanh, Act::Sigmoid, true);
            }
          }
  }
  std::printf("%s: worst relative error %.3g\n", failures ? "FAILED" : "ok", worst);
  return failures ? 1 : 0;
}
