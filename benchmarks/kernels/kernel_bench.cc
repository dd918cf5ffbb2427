// Kernel microbenchmark: one recurrent step, the fused kernel (recurrent_fused) against the
// separate-gates path it replaces (gemm_packed into the gate buffer, then the gate kernel per
// row), and gemm_packed against OpenBLAS sgemm.  Minimum over many short repetitions (robust on
// a shared machine: a repetition of a few microseconds usually runs undisturbed).
// Build and run: benchmarks/kernels/run.sh
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fastrnn/blas.h"
#include "fastrnn/common.h"
#include "fastrnn/cpu/kernels.h"

using namespace fastrnn;
using Clock = std::chrono::steady_clock;

double g_budget_scale = 1;
template <typename F>
double min_us(F&& f, double budget_s = 0.25) {
  budget_s *= g_budget_scale;
  f();
  double best = 1e30;
  const auto end = Clock::now() + std::chrono::duration<double>(budget_s);
  int n = 0;
  while (Clock::now() < end || n < 20) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    ++n;
  }
  return best;
}

// Both, alternating (a change of load hits both alike): the minimum of each.
template <typename A, typename B>
std::pair<double, double> min_pair_us(A&& fa, B&& fb, double budget_s = 0.5) {
  budget_s *= g_budget_scale;
  fa(), fb();
  double ba = 1e30, bb = 1e30;
  const auto end = Clock::now() + std::chrono::duration<double>(budget_s);
  for (int n = 0; Clock::now() < end || n < 20; ++n) {
    auto t0 = Clock::now();
    fa();
    auto t1 = Clock::now();
    fb();
    auto t2 = Clock::now();
    ba = std::min(ba, std::chrono::duration<double, std::micro>(t1 - t0).count());
    bb = std::min(bb, std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  return {ba, bb};
}

Buffer rnd(std::size_t n, std::mt19937& g, float s) {
  Buffer b(n);
  std::uniform_real_distribution<float> u(-s, s);
  for (std::size_t i = 0; i < n; ++i) b[i] = u(g);
  return b;
}

// One step of `cell` (4 LSTM, 3 GRU, 1 RNN) for nb rows, K = H: fused vs separate.
void step_case(const cpu::KernelTable& k, int G, long H, long nb) {
  std::mt19937 gen(1);
  const long GH = G * H, K = H;
  Buffer w = rnd(GH * K, gen, 1.f / std::sqrt(float(H))), x = rnd(nb * GH, gen, 1.f), h = rnd(nb * K, gen, 1.f),
         c = rnd(nb * H, gen, 1.f), bhn = rnd(H, gen, 0.1f);
  Buffer panels(cpu::packed_size(GH, K, k.panel)), fused(cpu::fused_size(k, G, H, K));
  cpu::pack_panels(w.data(), GH, K, panels.data(), k.panel);
  cpu::pack_fused(k, w.data(), G, H, K, fused.data());
  Buffer g(nb * GH), rec(nb * GH), hn(nb * H), cn(nb * H), part(std::max<long>(1, cpu::fused_part_size(k, G, H, K, nb)));
  auto copy_x = [&] { std::memcpy(g.data(), x.data(), nb * GH * sizeof(float)); };
  // LSTM / RNN, separate: gg (the step's input part) += W_hh h, then the cell pass over gg's rows.
  auto gates_into = [&](float* gg) {
    k.gemm_packed(nb, GH, K, h.data(), K, panels.data(), gg, GH, nullptr);
    for (long b = 0; b < nb; ++b) {
      if (G == 4)
        k.lstm_cell(cpu::Act::Tanh, cpu::Act::Sigmoid, gg + b * GH, c.data() + b * H, cn.data() + b * H,
                    hn.data() + b * H, H);
      else
        k.activate(cpu::Act::Tanh, gg + b * GH, H);
    }
  };
  auto separate = [&] {
    copy_x();
    if (G == 3) {
      std::memset(rec.data(), 0, nb * GH * sizeof(float));
      k.gemm_packed(nb, GH, K, h.data(), K, panels.data(), rec.data(), GH, nullptr);
      for (long b = 0; b < nb; ++b)
        k.gru_cell_after(cpu::Act::Tanh, cpu::Act::Sigmoid, g.data() + b * GH, rec.data() + b * GH, bhn.data(),
                         h.data() + b * H, hn.data() + b * H, H);
    } else {
      gates_into(g.data());
    }
  };
  cpu::FusedStep a;
  a.G = G, a.nb = nb, a.H = H, a.K = K, a.q0 = 0, a.q1 = cpu::fused_blocks(k, G, H);
  a.h = h.data(), a.ldh = K, a.w = fused.data(), a.x = x.data(), a.ldx = GH, a.b_hn = bhn.data();
  a.c_prev = c.data(), a.c_new = cn.data(), a.ldc = H, a.h_new = hn.data(), a.ldo = H, a.part = part.data();
  auto fused_step = [&] { k.recurrent_fused(a); };
  auto blas_separate = [&] {  // the old path above the packed-rows limit: sgemm, then the gates
    copy_x();
    if (G == 3) {
      blas::sgemm(true, nb, GH, K, 1.f, h.data(), K, w.data(), K, 0.f, rec.data(), GH);
      for (long b = 0; b < nb; ++b)
        k.gru_cell_after(cpu::Act::Tanh, cpu::Act::Sigmoid, g.data() + b * GH, rec.data() + b * GH, bhn.data(),
                         h.data() + b * H, hn.data() + b * H, H);
    } else {
      blas::sgemm(true, nb, GH, K, 1.f, h.data(), K, w.data(), K, 1.f, g.data(), GH);
      for (long b = 0; b < nb; ++b) {
        if (G == 4)
          k.lstm_cell(cpu::Act::Tanh, cpu::Act::Sigmoid, g.data() + b * GH, c.data() + b * H, cn.data() + b * H,
                      hn.data() + b * H, H);
        else
          k.activate(cpu::Act::Tanh, g.data() + b * GH, H);
      }
    }
  };
  // RING=n (LSTM / RNN): each call takes the next of n gate buffers, as the engine's steps take the
  // next step of a projection chunk (not in cache): separate accumulates into it in place (no copy),
  // fused reads it as x.  Without RING: one buffer, separate copies x to g first (the copy's time
  // subtracted, but g is then in cache).
  const long ring = G != 3 && std::getenv("RING") ? std::max(1L, std::atol(std::getenv("RING"))) : 0;
  // (h = 0 then, so that the gate sums stay x in both paths: accumulating W h into the same buffers
  // call after call would drive the separate path's sums, and its exps, far out of range.)
  if (ring) std::fill(h.data(), h.data() + nb * K, 0.f);
  std::vector<Buffer> gr;
  for (long i = 0; i < ring; ++i) {
    gr.emplace_back(nb * GH);
    std::memcpy(gr.back().data(), x.data(), nb * GH * sizeof(float));
  }
  long gi = 0, fi = 0;
  auto separate_ring = [&] { gates_into(gr[gi++ % ring].data()); };
  auto fused_ring = [&] {
    a.x = gr[fi++ % ring].data();
    k.recurrent_fused(a);
  };
  const double t_copy = ring ? 0 : min_us(copy_x);
  const auto [t_sep0, t_fused] = ring ? min_pair_us(separate_ring, fused_ring) : min_pair_us(separate, fused_step);
  const double t_sep = t_sep0 - t_copy;
  const double t_blas = std::getenv("WITH_BLAS") ? min_us(blas_separate) - t_copy : 0;
  const double flops = 2.0 * nb * GH * K;
  const char* name = G == 4 ? "lstm" : G == 3 ? "gru" : "rnn";
  std::printf("%-7s %-5s H=%-4ld rows=%-4ld separate %9.2f us (%5.1f GF/s)  fused %9.2f us (%5.1f GF/s)  sep/fused %.2f",
              k.isa, name, H, nb, t_sep, flops / t_sep * 1e-3, t_fused, flops / t_fused * 1e-3, t_sep / t_fused);
  if (t_blas > 0) std::printf("  blas+gates %9.2f us (%5.1f GF/s) blas/fused %.2f", t_blas, flops / t_blas * 1e-3, t_blas / t_fused);
  std::printf("\n");
}

// An LSTM sequence of T steps, batch nb: the input projection for all steps as one GEMM, then the
// fused step (K = H) per step; against folding the projection into the step: [x_t, h] times
// [W_ih | W_hh] (K = I + H), the bias as the only start value.
void fold_case(const cpu::KernelTable& k, long I, long H, long nb, long T) {
  std::mt19937 gen(3);
  const int G = 4;
  const long GH = G * H;
  Buffer wih = rnd(GH * I, gen, 0.3f), whh = rnd(GH * H, gen, 1.f / std::sqrt(float(H))), bias = rnd(GH, gen, 0.1f);
  Buffer xs = rnd(T * nb * I, gen, 1.f);  // time-major
  Buffer wcat(GH * (I + H));
  for (long j = 0; j < GH; ++j) {
    std::memcpy(wcat.data() + j * (I + H), wih.data() + j * I, I * sizeof(float));
    std::memcpy(wcat.data() + j * (I + H) + I, whh.data() + j * H, H * sizeof(float));
  }
  Buffer pih(cpu::packed_size(GH, I, k.panel)), fhh(cpu::fused_size(k, G, H, H)), fcat(cpu::fused_size(k, G, H, I + H));
  cpu::pack_panels(wih.data(), GH, I, pih.data(), k.panel);
  cpu::pack_fused(k, whh.data(), G, H, H, fhh.data());
  cpu::pack_fused(k, wcat.data(), G, H, I + H, fcat.data());
  Buffer xw(T * nb * GH), h(2 * nb * H, true), c(2 * nb * H, true), hc(2 * nb * (I + H), true),
      part(cpu::fused_part_size(k, G, H, I + H, nb));
  const long Tc = std::max(1L, std::min(T, (1L << 18) / (nb * GH)));  // the engine's 1 MiB time chunks
  auto separate = [&] {
    cpu::FusedStep a;
    a.G = G, a.nb = nb, a.H = H, a.K = H, a.q0 = 0, a.q1 = cpu::fused_blocks(k, G, H), a.w = fhh.data();
    a.ldh = H, a.ldx = GH, a.ldc = H, a.ldo = H, a.part = part.data();
    for (long t = 0; t < T; ++t) {
      const int cur = t & 1;
      if (t % Tc == 0)
        k.gemm_packed(std::min(Tc, T - t) * nb, GH, I, xs.data() + t * nb * I, I, pih.data(), xw.data(), GH, bias.data());
      a.x = xw.data() + (t % Tc) * nb * GH, a.h = h.data() + cur * nb * H, a.h_new = h.data() + (1 - cur) * nb * H;
      a.c_prev = c.data() + cur * nb * H, a.c_new = c.data() + (1 - cur) * nb * H;
      k.recurrent_fused(a);
    }
  };
  auto folded = [&] {
    const long L = I + H;
    cpu::FusedStep a;
    a.G = G, a.nb = nb, a.H = H, a.K = L, a.q0 = 0, a.q1 = cpu::fused_blocks(k, G, H), a.w = fcat.data();
    a.x = bias.data(), a.ldx = 0, a.ldh = L, a.ldc = H, a.ldo = L, a.part = part.data();
    for (long t = 0; t < T; ++t) {
      const int cur = t & 1;
      float* hin = hc.data() + cur * nb * L;
      for (long b = 0; b < nb; ++b) std::memcpy(hin + b * L, xs.data() + (t * nb + b) * I, I * sizeof(float));
      a.h = hin, a.h_new = hc.data() + (1 - cur) * nb * L + I;
      a.c_prev = c.data() + cur * nb * H, a.c_new = c.data() + (1 - cur) * nb * H;
      k.recurrent_fused(a);
    }
  };
  const auto [ts, tf] = min_pair_us(separate, folded);
  std::printf("%-7s lstm I=%-4ld H=%-4ld B=%-4ld T=%ld  projection+steps %9.1f us  folded %9.1f us  separate/folded %.2f\n",
              k.isa, I, H, nb, T, ts, tf, ts / tf);
}

// g[rows, N] = x[rows, K] W^T: packed kernel vs OpenBLAS.
// f(rows, N, K) for each "rows,N,K" of spec (several separated by ';'; malformed ones skipped)
template <typename F>
void for_shapes(const char* spec, F f) {
  for (const char* p = spec; p && *p;) {
    long r = 0, n = 0, kk = 0;
    if (std::sscanf(p, "%ld,%ld,%ld", &r, &n, &kk) == 3) f(r, n, kk);
    p = std::strchr(p, ';');
    if (p) ++p;
  }
}

void gemm_case(const cpu::KernelTable& k, long rows, long N, long K) {
  std::mt19937 gen(2);
  Buffer w = rnd(N * K, gen, 0.1f), x = rnd(rows * K, gen, 1.f), y(rows * N);
  Buffer panels(cpu::packed_size(N, K, k.panel));
  cpu::pack_panels(w.data(), N, K, panels.data(), k.panel);
  auto packed = [&] {
    std::memset(y.data(), 0, rows * N * sizeof(float));
    k.gemm_packed(rows, N, K, x.data(), K, panels.data(), y.data(), N, nullptr);
  };
  auto blas = [&] { blas::sgemm(true, rows, N, K, 1.f, x.data(), K, w.data(), K, 0.f, y.data(), N); };
  const double budget = rows * N * K > 1e8 ? 1.0 : 0.25;
  const double tp = min_us(packed, budget), tb = min_us(blas, budget), flops = 2.0 * rows * N * K;
  std::printf("%-7s gemm rows=%-5ld N=%-5ld K=%-5ld packed %6.1f GF/s  blas %6.1f GF/s  packed/blas %.2f\n", k.isa, rows, N,
              K, flops / tp * 1e-3, flops / tb * 1e-3, tb / tp);
}

// y[rows, N] = x[rows, K] W^T with f32 (gemm_packed), bf16 and int8 weights (gemm_bf16 / gemm_i8,
// the layouts of kernels.h qoffset / qoffset_i8; int8 activations quantized beforehand, as Mat::qapply does per
// call: that cost is not in these times).  Weights resident in whatever cache level their size
// allows: 2048 x 512 is 4 MiB f32, 2 MiB bf16, 1 MiB int8.
void qgemm_case(const cpu::KernelTable& k, long rows, long N, long K) {
  std::mt19937 gen(4);
  Buffer w = rnd(N * K, gen, 0.1f), x = rnd(rows * K, gen, 1.f), y(rows * N);
  Buffer panels(cpu::packed_size(N, K, k.panel));
  cpu::pack_panels(w.data(), N, K, panels.data(), k.panel);
  const long Kp = cpu::qpad(K), Np = cpu::qrows(N, 1);  // (int8's row block, 16, is the larger)
  std::vector<std::uint16_t> wb(Np * Kp, 0);
  std::vector<std::int8_t> wq(Np * Kp, 0), xq(rows * Kp, 0);
  std::vector<float> ws(N), xs(rows), xpad(rows * Kp, 0.f);
  std::vector<std::int32_t> wsum(N, 0);
  for (long n = 0; n < N; ++n) {
    float a = 0;
    for (long c = 0; c < K; ++c) a = std::max(a, std::fabs(w[n * K + c]));
    ws[n] = a / 127;
    for (long c = 0; c < K; ++c) {
      std::uint32_t u;
      std::memcpy(&u, &w[n * K + c], 4);
      wb[cpu::qoffset(n, c, Kp, cpu::qchunk(2))] = static_cast<std::uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
      const auto q = static_cast<std::int8_t>(std::nearbyint(w[n * K + c] / ws[n]));
      wq[cpu::qoffset_i8(n, c, Kp)] = q;
      wsum[n] += q;
    }
  }
  for (long r = 0; r < rows; ++r) {
    const float m = static_cast<float>(cpu::int8_xmax());  // this CPU's activation range
    xs[r] = 1.f / m;
    for (long c = 0; c < K; ++c) {
      xpad[r * Kp + c] = x[r * K + c];
      xq[r * Kp + c] = static_cast<std::int8_t>(std::max(-m, std::min(m, std::nearbyint(x[r * K + c] * m / 3))));
    }
  }
  cpu::QGemm a;
  a.nb = rows, a.N = N, a.Kp = Kp, a.y = y.data(), a.ldy = N;
  auto f32 = [&] {
    std::memset(y.data(), 0, rows * N * sizeof(float));
    k.gemm_packed(rows, N, K, x.data(), K, panels.data(), y.data(), N, nullptr);
  };
  auto bf16 = [&] {
    cpu::QGemm b = a;
    b.x = xpad.data(), b.ldx = Kp, b.w = wb.data();
    k.gemm_bf16(b);
  };
  auto i8 = [&] {
    cpu::QGemm b = a;
    b.x = xq.data(), b.ldx = Kp, b.xscale = xs.data(), b.xmax = cpu::int8_xmax(), b.w = wq.data(), b.wscale = ws.data(), b.wsum = wsum.data();
    k.gemm_i8(b);
  };
  const double tf = min_us(f32), tb = min_us(bf16), ti = min_us(i8), flops = 2.0 * rows * N * K;
  std::printf("%-7s qgemm rows=%-4ld N=%-5ld K=%-5ld f32 %8.1f us (%5.1f GF/s)  bf16 %8.1f us (%5.1f GF/s, x%.2f)  "
              "int8 %8.1f us (%5.1f GF/s, x%.2f)\n", k.isa, rows, N, K, tf, flops / tf * 1e-3, tb, flops / tb * 1e-3,
              tf / tb, ti, flops / ti * 1e-3, tf / ti);
  std::fflush(stdout);
}

int main(int argc, char** argv) {
  blas::set_num_threads(1);
  if (const char* b = std::getenv("BUDGET")) g_budget_scale = std::atof(b);
  const std::string what = argc > 1 ? argv[1] : "step";
  const std::string isa = argc > 2 ? argv[2] : "";
  for (const auto& name : cpu::available_isas()) {
    if (!isa.empty() && name != isa) continue;
    const cpu::KernelTable& k = *cpu::kernels_for(name);
    if (what == "step") {
      const char* cells = std::getenv("CELLS");  // e.g. CELLS=43
      const char* hs = std::getenv("HS");  // e.g. HS=512
      const char* rows = std::getenv("ROWS");  // e.g. ROWS=20: that row count only
      for (int G : {4, 3, 1})
        if (!cells || std::strchr(cells, '0' + G))
        for (long H : {64L, 128L, 512L, -1L}) {
          if (H == -1) {  // HS=<any other H>, e.g. HS=650
            if (!hs || std::atol(hs) == 64 || std::atol(hs) == 128 || std::atol(hs) == 512) continue;
            H = std::atol(hs);
          }
          if (hs && std::atol(hs) != H) continue;
          if (rows) {
            step_case(k, G, H, std::atol(rows));
            continue;
          }
          for (long nb : {1L, 16L, 32L, 128L, 256L, 1024L}) if (!std::getenv("ROWS1") || nb == 1) {
            if (H == 512 && nb == 256 && G != 4) continue;
            if ((nb == 1024) != (std::getenv("BIG") != nullptr) && !std::getenv("ALLROWS")) continue;
            if ((nb == 16 || nb == 128) && !std::getenv("ALLROWS")) continue;
            step_case(k, G, H, nb);
          }
        }
    } else if (what == "gemm") {
      for (long K : {64L, 128L, 512L})
        for (long rows : {1L, 8L, 32L, 128L, 256L, 1024L, 3200L}) gemm_case(k, rows, 4 * K, K);
    } else if (what == "fold") {
      for (auto ih : {std::pair<long, long>{8, 64}, {16, 64}, {32, 128}, {64, 128}, {128, 512}})
        for (long nb : {1L, 32L}) fold_case(k, ih.first, ih.second, nb, 100);
    } else if (what == "gemmbig") {  // the BLAS crossover region
      for (long K : {128L, 256L, 512L})
        for (long rows : {128L, 256L, 512L, 1024L, 2048L}) gemm_case(k, rows, 4 * K, K);
    } else if (what == "qgemm") {  // bf16 / int8 weights against f32 (benchmarks/README.md)
      std::printf("%-7s quantized paths: %s\n", k.isa, k.qpaths());
      if (const char* e = std::getenv("QGEMM_SHAPE")) {  // rows,N,K (several separated by ';')
        for_shapes(e, [&](long r, long n, long kk) { qgemm_case(k, r, n, kk); });
      } else {
        for (long NK : {512L, 128L})
          for (long rows : {1L, 4L, 32L}) qgemm_case(k, rows, 4 * NK, NK);
      }
    } else if (what == "gemmshape") {  // GEMM_SHAPE=rows,N,K (several separated by ';')
      const char* e = std::getenv("GEMM_SHAPE");
      for_shapes(e ? e : "100,2600,650", [&](long r, long n, long kk) { gemm_case(k, r, n, kk); });
    } else if (what == "gemmproj") {  // input projections: N = 4H, small K
      for (long K : {8L, 32L, 128L})
        for (long N : {256L, 512L, 2048L})
          for (long rows : {100L, 3200L, 25600L}) gemm_case(k, rows, N, K);
    }
  }
}
