// The recurrent sequence runner (every cell, every direction).
//
// Canonical weights per direction (fastrnn/spec.py): w_ih [G*H, I], w_hh [G*H, P], b_ih, b_hh [G*H],
// w_hr [P, H] (LSTM projection, P = proj_size; otherwise P = H).  Gate order: LSTM i,f,g,o;
// GRU r,z,n; SimpleRNN one gate.
//
//   simple_rnn: h' = act(W_ih x + W_hh h + b_ih + b_hh)
//   lstm:       [i f g o] = W_ih x + W_hh h + b_ih + b_hh
//               c' = ract(f)*c + ract(i)*act(g);  h' = ract(o)*act(c')  (h' = W_hr h' if projected)
//   gru (reset_after):  r = ract(W_ir x + b_ir + W_hr h + b_hr),  z likewise,
//                       n = act(W_in x + b_in + r*(W_hn h + b_hn)),  h' = (1-z)*n + z*h
//   gru (reset before): r, z as above;  n = act(W_in x + b_in + W_hn (r*h));  h' = (1-z)*n + z*h
//
// Plan: (1) xw = x W_ih^T + bias for all B*T rows in one GEMM per direction (biases pre-summed,
// except GRU b_hn which must stay inside r*(...)); (2) per step, one GEMM of the batch slice's
// h with W_hh^T accumulated into xw[:, t] (GRU reset_after: into a separate buffer), then the
// fused gate kernel per row writes h'/c' into the second half of a double buffer.
// Masked steps (mask[b,t] == 0) keep the state; their output is zero ('zero', PyTorch packed
// sequences) or the last output emitted so far ('hold', Keras; zeros before the first valid step).
// Threads: the batch is cut into slices that each run the whole sequence (no per-step barrier);
// the two directions of a bidirectional layer run side by side.  A layer may instead split each
// direction's hidden units across a team of threads that meet at a barrier every step (batch 1
// always, batch > 1 where the weights exceed L2: split_batch; a bidirectional layer from 4
// threads), each rank running every row on its share of W_hh; whether the teams run is measured
// per call.  No allocation in the time loop.
//
// Options (ONNX: clip, input_forget, peepholes, activations with alpha / beta per direction) run
// on the general path (general_step): the same plan, but the recurrent product goes through Mat
// and the gate math is plain C++ (equations there), never the fused kernels.  A default initial
// state (default_state) is only where a sequence starts: every path takes it.
#include "fastrnn/layers/recurrent.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "fastrnn/cpu/kernels.h"
#include "fastrnn/parallel/thread_pool.h"

namespace fastrnn {

namespace {
void copy_to(Buffer& dst, const float* src, std::size_t n) {
  dst.resize(n);
  std::memcpy(dst.data(), src, n * sizeof(float));
}
// Fold the input projection into the step ([x_t, h] against [W_ih | W_hh], one product per step
// instead of a GEMM over all steps writing T*B*G*H floats that the steps read back) when the
// input is narrow: 4*I <= H.  Measured on Zen 1 (AVX2, kernel_bench fold): LSTM 8->64 1.04x
// (batch 1) / 1.13x (batch 32), 16->64 1.02x / 1.09x, 32->128 1.00x / 1.03x; 64->128 0.95x at
// batch 1 and 128->512 0.64-0.8x (the wider product per step costs more than the GEMM saves);
// end to end (predict, T=100, 1 thread): LSTM 8->64 1.04x / 1.02x / 1.20x at batch 1 / 32 / 256,
// RNN 8->64 1.05x / 1.11x, LSTM 32->128 0.97x at batch 1 (hence H/8 there), 1.07x at batch 32.
// LSTM and SimpleRNN only: GRU's n gate needs its input part apart from its recurrent part.
// At batch > 1 also a wider input, up to 2H, where the folded weights stay in L2 from step to step
// (cpu::l2_resident_bytes; unknown L2: no): the product over K = I + P
// then runs from L2 as the unfolded one does, with longer k loops, and no T*B*G*H floats go through
// the caches.  Zen 4 (AVX-512, 1 MiB L2), predict, T = 100, 1 thread, folded vs not, two alternating
// rounds: LSTM 128 -> 128 (512 KiB folded) batch 32 8.7 vs 9.2-9.4 ms, batch 256 67.9-69.7 vs
// 71.2-72.8; a 2-layer bidirectional LSTM(32 -> 128) (layer 2: 256 -> 128, 768 KiB) batch 32 37.3-37.5
// vs 41.0-41.6, batch 256 297-303 vs 325-332.  Beyond L2 it loses: 2-layer LSTM 650 (word_lm, 13.5 MiB
// folded), batch 20: 108-113 vs 97-99 ms; LSTM 256 -> 256 / 512 -> 512 (2 / 4 MiB) batch 32: within 3%.
constexpr dim_t kFoldMaxInputRatio = 4;
constexpr dim_t kFoldMaxInputRatioL2 = 2;  // I <= 2H: the second layer of a bidirectional stack
bool fold_in_l2(dim_t G, dim_t H, dim_t I, dim_t P) {
  const double bytes = static_cast<double>(G) * H * (I + P) * sizeof(float);
  return I <= kFoldMaxInputRatioL2 * H && bytes <= static_cast<double>(cpu::l2_resident_bytes());
}
bool fold_allowed() {  // FASTRNN_FOLD=0: never fold (for benchmarking the two forms)
  static const bool v = [] {
    const char* e = std::getenv("FASTRNN_FOLD");
    return !(e && e[0] == '0');
  }();
  return v;
}
// Floats of input projection held at once per direction (time is processed in chunks of this
// size), and the most rows one input-projection task takes (so that a cancel lands quickly).
// 1 MiB: a chunk's gates stay in cache between the projection and the recurrence (LSTM 32x128,
// batch 32, 1 thread: 18.7 ms vs 21.4 ms with 16 MiB chunks).  Larger for large weights: see
// chunk_floats.
constexpr dim_t kChunkFloats = dim_t(1) << 18;
constexpr dim_t kMaxBlockRows = 4096;
// The chunk of a layer whose weights (W_ih and W_hh, `weight_floats`) exceed a quarter of the L3 a
// core reaches holds at least as many floats as the weights.  Each chunk's projection streams all of
// W_ih through the caches, and the steps after it then fetch W_hh again from memory: both are
// beyond what stays in L3 beside the rest of the process (and, on a shared host, the neighbours).
// With chunks of the weights' size a chunk's projection output outweighs that extra traffic, and
// memory stays O(weights) however long the sequence.  Zen 3 (32 MiB L3), 2-layer LSTM 650, batch 20,
// T = 35 (13.5 MiB per layer; chunks of 5 -> 35 steps), in-process interleaved A/B, median: 1 thread
// 132.9 -> 126.2 ms, 2 threads 80.2 -> 72.0 ms; against ONNX Runtime (one projection per layer)
// 0.87x -> 0.95-0.97x, the median now within 4% of the fastest call.  LSTM / GRU 128 -> 512 (5 MiB
// of weights, under the quarter: chunks unchanged) measured 0.96-1.0x with the larger chunks.
// (The float32 count also for bf16 / int8 layers, whose bytes it over-states: not measured there.)
dim_t chunk_floats(dim_t weight_floats) {
  const long l3 = cpu::l3_bytes();
  const bool large = l3 > 0 && weight_floats * static_cast<dim_t>(sizeof(float)) > l3 / 4;
  return large ? std::max(kChunkFloats, weight_floats) : kChunkFloats;
}
// Hidden-unit split: the hidden units shared out in blocks (split_units: the fused step's
// unit blocks, or with reduced-precision weights row ranges of the quantized layout); used when one
// step's recurrent multiply-adds reach kSplitMinMacs (below that the per-step barrier costs more
// than it saves).
constexpr double kSplitMinMacs = 32768;
// The split must never be slower than one thread (a busy machine: the team's threads wait for
// each other whenever one is descheduled; the issue measured 27x slower).  Decided per call from
// measurement: the first kProbeSteps steps of the call run without the team, timed (batch 1: on
// the calling thread, t1 = the fastest of them; batch > 1: t1 = the batch slices' time per step over
// them).  The bar is this call's own: a core that has idled runs slow for its first calls (a
// 2-vCPU VM after 50 ms idle: 2.3x for the first call, ~1.1x by the fourth), and against the
// fastest step ever seen a team in such a stretch failed every burst of calls and, doubling its
// back-off, ran in none (LSTM 32 -> 128, batch 1: 0.46 ms per call at 2 threads against 0.40 at
// one; now 0.30).  A team is tried only if the rest of the sequence is worth kTeamMinSeconds of
// one thread's work; then the team's rank 0 times every step, and when (checked every
// kTeamWindow steps) the team's steps so far took more than kTeamSlowRatio * t1 each plus
// kTeamSlackSeconds in all, the team stops and the steps finish without it.  The next team is
// tried only after a back-off (kBackoffMin, doubling up to kBackoffMax; reset by a team that ran
// at speed; batch 1 and batch > 1 apart), so a machine that stays busy, or a batch shape where
// the slices win, pays at most one slow stretch per back-off.
constexpr dim_t kProbeSteps = 4;
constexpr dim_t kTeamWindow = 8;
constexpr double kTeamSlowRatio = 1.0;
constexpr double kTeamMinSeconds = 100e-6;
// What one hiccup costs (an interrupt or a host tick on either core: 10-20 us seen on a 2-vCPU VM),
// allowed once per team run.  Without it a single hiccup in the first window failed teams of
// 2-3 us steps (LSTM 32 -> 128, batch 1, 2 threads) and sent half the calls into the back-off
// (median 0.40 ms per call, fastest 0.23).  A rank descheduled for a time slice costs
// milliseconds and still stops the team at the first check.
constexpr double kTeamSlackSeconds = 50e-6;
constexpr dim_t kPrefetchHFloats = 1024;  // a team step prefetches h_prev up to this size (4 KiB)
constexpr std::int64_t kBackoffMin = 20'000'000, kBackoffMax = 2'000'000'000;  // ns
using Clock = std::chrono::steady_clock;
// Tests: FASTRNN_TEAM_STOP_AFTER=n makes every team stop as if slow after n counted steps (a
// streaming team: after every window).
dim_t forced_stop() {
  static const dim_t n = [] {
    const char* e = std::getenv("FASTRNN_TEAM_STOP_AFTER");
    return e && *e ? static_cast<dim_t>(std::atol(e)) : dim_t(-1);
  }();
  return n;
}
std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}
// Rank `rank` of `ranks`'s share [first, second) of n items (as equal as possible).
std::pair<dim_t, dim_t> share(dim_t n, int rank, int ranks) { return {n * rank / ranks, n * (rank + 1) / ranks}; }
// a = min(a, ns), 0 counting as unset.
void keep_min(std::atomic<std::int64_t>& a, std::int64_t ns) {
  std::int64_t cur = a.load(std::memory_order_relaxed);
  while ((cur == 0 || ns < cur) && !a.compare_exchange_weak(cur, ns, std::memory_order_relaxed)) {
  }
}
// A streaming step (one step per call, batch 1) goes to a team only when one thread takes at least
// this long for it: the team's wake-up and two meetings cost ~5-20 us (Zen 1, 2 threads: LSTM
// 640 -> 640, a step of 13 MiB of weights, ~0.9 ms on one thread).
constexpr std::int64_t kStreamTeamNs = 100'000;
}  // namespace

Recurrent::Recurrent(RecurrentConfig cfg, const DirectionTensors* dirs) : cfg_(std::move(cfg)) {
  const dim_t G = cfg_.gates(), H = cfg_.units, I = cfg_.input_size, P = cfg_.hidden_out();
  const bool gru = cfg_.cell == LayerKind::Gru;
  // Reduced precision (bf16 / int8 weights): the matrices are kept only in that form (Mat::set_quantized)
  // and every product goes through Mat (the quantized GEMM, then the separate gate kernels): no fused
  // step, no folding (their layouts are float32).  The batch-1 split runs on the quantized layout
  // itself, by row ranges (qsplit_step).
  const Precision prec = cfg_.precision;
  const bool reduced = prec != Precision::F32;
  const std::size_t es = prec == Precision::F32 ? 4 : prec == Precision::Bf16 ? 2 : 1;
  // Rows [r0, r0 + n) of a [*, k] weight (and of its int8 scales).
  auto set = [&](Mat& m, const void* src, const float* scale, dim_t r0, dim_t n, dim_t k, bool pack_now) {
    const void* p = static_cast<const unsigned char*>(src) + r0 * k * es;
    if (!reduced) return m.set(static_cast<const float*>(p), n, k, pack_now);
    m.set_quantized(prec, p, scale ? scale + r0 : nullptr, n, k);
  };
  for (int d = 0; d < cfg_.num_directions(); ++d) {
    const DirectionTensors& t = dirs[d];
    if (!t.w_ih || !t.w_hh || !t.b_ih || !t.b_hh || (cfg_.proj_size && !t.w_hr))
      fail<FormatError>("layer '", cfg_.name, "': missing weights for direction ", d);
    if (prec == Precision::Int8 && (!t.s_ih || !t.s_hh || (cfg_.proj_size && !t.s_hr)))
      fail<FormatError>("layer '", cfg_.name, "': missing int8 weight scales for direction ", d);
    Dir& w = dir_[d];
    set(w.ih, t.w_ih, t.s_ih, 0, G * H, I, true);
    if (gru && !cfg_.reset_after) {
      set(w.hh_rz, t.w_hh, t.s_hh, 0, 2 * H, P, true);
      set(w.hh_n, t.w_hh, t.s_hh, 2 * H, H, P, true);
    } else {
      fused_ = !reduced && !cfg_.general();  // LSTM (a projection runs after it), GRU reset_after, SimpleRNN
      fold_ = fused_ && !gru && (kFoldMaxInputRatio * I <= H || fold_in_l2(G, H, I, P)) && fold_allowed();
      // f32: row-major for BLAS; panels at load where a one-thread step of LSTM / SimpleRNN runs the
      // separate form (not folded at any batch size), else on first use
      set(w.hh, t.w_hh, t.s_hh, 0, G * H, P, fused_ && !fused_unfolded() && !fold_);
    }
    w.bias.resize(G * H);
    for (dim_t j = 0; j < G * H; ++j) w.bias[j] = t.b_ih[j] + t.b_hh[j];
    if (gru && cfg_.reset_after) {  // b_hn stays separate: n = act(x_n + b_in + r*(h_n + b_hn))
      copy_to(w.b_hn, t.b_hh + 2 * H, H);
      for (dim_t j = 0; j < H; ++j) w.bias[2 * H + j] = t.b_ih[2 * H + j];
    }
    if (cfg_.proj_size) set(w.hr, t.w_hr, t.s_hr, 0, P, H, true);
    if (cfg_.peephole) {
      if (!t.peephole) fail<FormatError>("layer '", cfg_.name, "': missing peepholes for direction ", d);
      copy_to(w.peep, t.peephole, 3 * H);
    }
    if (t.h0) copy_to(w.h0, t.h0, P);
    if (t.c0) copy_to(w.c0, t.c0, H);
  }
  // A bidirectional layer: a team per direction, from 4 threads (the two directions already run
  // side by side on two).  Reduced precision: a rank's rows of each gate must start at a row block
  // of the quantized layout (H a multiple of qrow_block: 16 int8, 4 bf16), and the options' general
  // step is not split
  // (nor is it for float32).
  // LSTM with a projection and GRU reset-before stay unsplit in both precisions (their steps have a
  // second product that needs every unit of the first).
  split_ok_ = (fused_ || (reduced && !cfg_.general() && H % dir_[0].hh.row_block() == 0)) &&
              ((cfg_.cell == LayerKind::Lstm && !cfg_.proj_size) || (gru && cfg_.reset_after) ||
               cfg_.cell == LayerKind::SimpleRnn) &&
              static_cast<double>(G * H) * P >= kSplitMinMacs;
  if (fused_unfolded() || fold_) fused_layouts(cpu::kernels());
}

void Recurrent::fused_layouts(const cpu::KernelTable& k) const {
  if (fused_)
    for (int d = 0; d < cfg_.num_directions(); ++d) fused_weights(d, k);
}

std::size_t Recurrent::weight_bytes() const {
  std::size_t n = 0;
  for (int d = 0; d < cfg_.num_directions(); ++d) {
    const Dir& w = dir_[d];
    n += w.ih.bytes() + w.hh.bytes() + w.hh_rz.bytes() + w.hh_n.bytes() + w.hr.bytes() + w.fused.bytes() +
         (w.bias.size() + w.b_hn.size() + w.peep.size() + w.h0.size() + w.c0.size()) * sizeof(float);
  }
  return n;
}

void Recurrent::Backoff::failed(std::int64_t now) {
  const std::int64_t b = wait.load(std::memory_order_relaxed);
  retry.store(now + std::max(b, kBackoffMin), std::memory_order_relaxed);
  wait.store(std::min(std::max(2 * b, kBackoffMin), kBackoffMax), std::memory_order_relaxed);
}

bool Recurrent::split_batch(const cpu::KernelTable& k, dim_t B, int slices) const {
  static const int forced = [] {  // FASTRNN_BATCH_SPLIT=0: never, 1: whenever allowed (tests, benchmarks)
    const char* e = std::getenv("FASTRNN_BATCH_SPLIT");
    return e && *e ? std::atoi(e) : -1;
  }();
  if (forced >= 0) return forced > 0;
  // Batch slices each stream all of the step's weights every step (once per row block of
  // kFusedRowBlock rows); beyond L2 that is slices x W per step from L3 or memory, where the team
  // streams W once in all (each rank its share, which on a many-core machine stays in its L2).
  // Zen 1, 2 threads, LSTM 128 -> 512, batch 32, T = 100 (min of 25 alternating runs): 217-227 ms
  // in batch slices, 138-143 ms with the team.  Slices of more than a row block stream W more than
  // once per step anyway, and the team saves little (batch 256 there: within noise).
  const dim_t G = cfg_.gates(), K = (fold_ ? cfg_.input_size : 0) + cfg_.hidden_out();
  const double bytes = fused_ ? static_cast<double>(cpu::fused_size(k, G, cfg_.units, K)) * sizeof(float)
                              : static_cast<double>(dir_[0].hh.bytes());  // reduced: the quantized W_hh
  // Within what stays in this machine's L2 (where known and larger than the constant) each slice keeps
  // the weights in its core's L2: Zen 4 (1 MiB L2), 2 threads, 2-layer LSTM(32 -> 128) batch 32 (the
  // second layer folded: 512 KiB), three alternating rounds: slices 7.26-7.34 ms, team 7.51-7.65.
  const double l2 = static_cast<double>(std::max(cpu::kL2WeightBytes, cpu::l2_resident_bytes()));
  return bytes > l2 && (B + slices - 1) / slices <= cpu::kFusedRowBlock;
}

int Recurrent::team_size(const cpu::KernelTable& k, int threads, double macs) const {
  // At most one rank per unit block, and each with at least kSplitMinMacs / 2 multiply-adds per
  // step (a 16-thread machine runs LSTM H = 128 at batch 1 on 4 ranks, not 16 that would spend
  // their steps at the barrier).
  const dim_t U = split_units(k);
  const double n = std::min({static_cast<double>(threads), static_cast<double>((cfg_.units + U - 1) / U),
                             std::floor(macs / (kSplitMinMacs / 2))});
  return n > 1 ? static_cast<int>(n) : 0;
}

const float* Recurrent::fused_weights(int d, const cpu::KernelTable& k) const {
  const Dir& w = dir_[d];
  return w.fused.get(k, [&](const cpu::KernelTable& t, Buffer& b) {
    const dim_t G = cfg_.gates(), H = cfg_.units, P = cfg_.hidden_out(), I = fold_ ? cfg_.input_size : 0;
    b.resize(static_cast<std::size_t>(cpu::fused_size(t, G, H, I + P)));
    if (!fold_) return cpu::pack_fused(t, w.hh.w.data(), G, H, P, b.data());
    Buffer cat(static_cast<std::size_t>(G * H * (I + P)));  // [W_ih | W_hh]
    for (dim_t j = 0; j < G * H; ++j) {
      std::memcpy(cat.data() + j * (I + P), w.ih.w.data() + j * I, I * sizeof(float));
      std::memcpy(cat.data() + j * (I + P) + I, w.hh.w.data() + j * P, P * sizeof(float));
    }
    cpu::pack_fused(t, cat.data(), G, H, I + P, b.data());
  });
}

cpu::FusedStep Recurrent::fused_args(const cpu::KernelTable& k, int d, dim_t nb, dim_t q0, dim_t q1) const {
  cpu::FusedStep a;
  a.G = static_cast<int>(cfg_.gates()), a.act = cfg_.act, a.ract = cfg_.ract;
  a.nb = nb, a.H = cfg_.units, a.K = cfg_.hidden_out(), a.q0 = q0, a.q1 = q1;
  a.w = fused_weights(d, k);
  a.K_in = fold_ ? cfg_.input_size : 0;  // the layout's input columns (skipped unless x_in)
  a.b_hn = cfg_.cell == LayerKind::Gru ? dir_[d].b_hn.data() : nullptr;
  a.ldh = a.K, a.ldc = a.H, a.ldo = a.K;
  return a;
}

dim_t Recurrent::rec_scratch(dim_t nb) const {
  // G*H per row, or the fused step's partial sums: H rounded up to the largest unit block (64).
  return nb * cfg_.gates() * ((cfg_.units + 63) / 64 * 64);
}

dim_t Recurrent::split_units(const cpu::KernelTable& k) const {
  // Reduced precision: a multiple of the quantized layout's row block, and of two vectors of the
  // gate kernels (which take units two vectors at a time from the first: a rank's pairs then
  // fall on the same units as one thread's).
  return fused_ ? cpu::block_units(k, cfg_.gates()) : std::max<dim_t>(dir_[0].hh.row_block(), 2 * k.vec);
}

Recurrent::UnitShare Recurrent::unit_share(const cpu::KernelTable& k, int rank, int ranks) const {
  const dim_t U = split_units(k), H = cfg_.units;
  const auto [q0, q1] = share((H + U - 1) / U, rank, ranks);
  return {q0, q1, std::min(H, q0 * U), std::min(H, q1 * U)};
}

// A rank's scratch, made with the team once per call: the fused step's staging area (a rank's own:
// at more than one row it holds one unit block of every row of a row block), its copies of the
// rows' mask and 'started' flags; with reduced-precision weights (qsplit_step, batch 1) its gate
// sums [G, units], W_hh h apart for GRU, and its copy of the step's prepared h.
struct Recurrent::RankScratch {
  Buffer part, gates, rec;
  std::vector<std::uint8_t> valid, started;
  Mat::QScratch q;
};

// The team of threads sharing the steps of one sequence batch (every row), each owning a range of
// unit blocks.
struct Recurrent::Team {
  explicit Team(int n) : size(n), barrier(n), ranks(n) {}
  int size;
  SpinBarrier barrier;
  std::vector<RankScratch> ranks;
  double t1 = 0;                  // seconds per step without the team (measured): the bar to beat
  std::atomic<dim_t> stop{-1};    // all ranks leave after the barrier of step stop - 1
  bool slow = false;              // rank 0 found the team no faster than the bar
  dim_t next = 0;                 // the chunk's next step to run (written by rank 0)
};

// Per (direction, batch slice) state carried from one time chunk to the next.
struct Recurrent::Slice {
  int d = 0;
  const float* x = nullptr;  // the layer input [B, T, I] when the projection is folded into the steps
  dim_t b0 = 0, b1 = 0;
  Buffer rec, rh, hraw;
  std::vector<std::uint8_t> valid;
  // Rows [b0, b1) of the direction's state (forward: [2, B, P] for h, [2, B, H] for c, one half the
  // previous step, the other the new one; every slice of a direction is at the same step, so a team
  // can run all rows of the batch from these buffers), and of its 'started' flags.
  std::uint8_t* started = nullptr;
  float *h_prev = nullptr, *h_new = nullptr, *c_prev = nullptr, *c_new = nullptr;
};

void Recurrent::forward(const float* x, dim_t B, dim_t T, const std::uint8_t* mask, const StateIO& st, float* y,
                        float* y2, const CancelToken* cancel) const {
  const int ndir = cfg_.num_directions();
  const dim_t G = cfg_.gates(), H = cfg_.units, I = cfg_.input_size, P = cfg_.hidden_out(), GH = G * H;
  const dim_t T_out = cfg_.return_sequences ? T : 1;
  if (B == 0 || T == 0) return;
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.num_threads();
  const bool lstm = cfg_.cell == LayerKind::Lstm, gru = cfg_.cell == LayerKind::Gru;
  const cpu::KernelTable& kt = cpu::kernels();  // one table (and its layouts) for the whole call

  // Outputs: straight into y (concat / one direction), or side by side into tmp, merged below.
  const bool split_out = ndir == 2 && cfg_.merge != Merge::Concat;
  Buffer tmp;
  float* dst = y;
  dim_t y_stride = cfg_.output_size();
  if (split_out) {
    tmp.resize(static_cast<std::size_t>(B * T_out * 2 * P));
    dst = tmp.data();
    y_stride = 2 * P;
  }

  // Batch slices that each run the whole sequence (no per-step barrier).
  const double work = static_cast<double>(T) * GH * (P + (cfg_.proj_size ? H : 0)) * B;
  int slices = static_cast<int>(std::min<dim_t>(B, std::max(1, threads / ndir + (threads % ndir ? 1 : 0))));
  slices = std::max(1, std::min(slices, static_cast<int>(work / kMinTaskWork)));
  std::vector<Slice> ws(ndir * slices);
  // Fold the input projection into the steps (no xw): the fused step must run for every slice.
  // At batch 1 only for an input of at most H/8 (e2e, LSTM 32->128, batch 1: 0.97x folded).
  const bool fold = fold_ && (B > 1 || 2 * kFoldMaxInputRatio * I <= H) &&
                    !blas_faster(kt, (B + slices - 1) / slices, GH, P);
  if (fold) folded_runs().fetch_add(1, std::memory_order_relaxed);
  // The state of each direction, every row: h [2, B, P], c [2, B, H] (halves: previous / new step).
  std::vector<Buffer> hs(ndir), cs(ndir);
  std::vector<std::vector<std::uint8_t>> started(ndir, std::vector<std::uint8_t>(B, 0));
  for (int d = 0; d < ndir; ++d) {
    hs[d].resize(2 * B * P);
    if (lstm) cs[d].resize(2 * B * H);
  }
  // Slice w's state pointers, the previous step in half `half` of its direction's buffers.
  auto place = [&](Slice& w, int half) {
    w.h_prev = hs[w.d].data() + (half * B + w.b0) * P;
    w.h_new = hs[w.d].data() + ((1 - half) * B + w.b0) * P;
    w.c_prev = lstm ? cs[w.d].data() + (half * B + w.b0) * H : nullptr;
    w.c_new = lstm ? cs[w.d].data() + ((1 - half) * B + w.b0) * H : nullptr;
  };
  for (int task = 0; task < ndir * slices; ++task) {
    Slice& w = ws[task];
    w.d = task / slices;
    const int sl = task % slices;
    w.b0 = B * sl / slices;
    w.b1 = B * (sl + 1) / slices;
    const dim_t nb = w.b1 - w.b0;
    if (fused_ || (gru && cfg_.reset_after)) w.rec.resize(static_cast<std::size_t>(rec_scratch(nb)));
    if (gru && !cfg_.reset_after) w.rh.resize(nb * H);
    if (cfg_.proj_size) w.hraw.resize(nb * H);
    w.started = started[w.d].data() + w.b0;
    w.valid.assign(nb, 1);
    w.x = fold ? x : nullptr;
    place(w, 0);
    default_state(w.d, nb, w.h_prev, w.c_prev);
    for (dim_t b = 0; b < nb; ++b) {
      const dim_t row = w.d * B + w.b0 + b;
      if (st.started) w.started[b] = st.started[row];
      if (st.h0) std::memcpy(w.h_prev + b * P, st.h0 + row * P, P * sizeof(float));
      if (lstm && st.c0) std::memcpy(w.c_prev + b * H, st.c0 + row * H, H * sizeof(float));
    }
  }

  // Time in chunks: the input projection of a chunk (one GEMM per direction over Tc * B rows,
  // time-major so each step's slice rows are contiguous), then the recurrence over that chunk.
  // Memory stays O(Tc * B * G*H) however long the sequence, and a cancel lands within a chunk.
  // (Folded: no projection to hold, the whole sequence is one chunk: one dispatch per call.)
  const dim_t Tc = fold ? T : std::max<dim_t>(1, std::min<dim_t>(T, chunk_floats(GH * (I + P)) / std::max<dim_t>(1, B * GH)));
  std::vector<Buffer> xw(ndir);
  if (!fold)
    for (auto& b : xw) b.resize(static_cast<std::size_t>(Tc * B * GH));
  const dim_t max_rows = Tc * B;
  const int blocks = std::max<int>(row_blocks(max_rows, threads, 16, static_cast<double>(GH) * I),
                                   static_cast<int>((max_rows + kMaxBlockRows - 1) / kMaxBlockRows));
  // Threads to spare: the hidden units of each direction may be split across a team that meets at
  // a barrier every step (all rows of the batch; at batch > 1 when split_batch expects it to beat
  // the batch slices; a bidirectional layer: a team per direction, the threads shared between
  // them).  Whether they run is then measured (below).
  std::vector<std::unique_ptr<Team>> teams;
  Backoff& backoff = B == 1 ? team_b1_ : team_bn_;
  if (split_ok_ && threads > 1 && (B == 1 || split_batch(kt, B, slices)) && backoff.ready(now_ns())) {
    const int n = team_size(kt, threads / ndir, static_cast<double>(B) * GH * P);
    if (n > 1) fused_layouts(kt);  // before any step is timed
    for (int d = 0; n > 1 && d < ndir; ++d) {
      teams.push_back(std::make_unique<Team>(n));
      for (RankScratch& r : teams.back()->ranks) {
        r.valid.resize(B);
        r.started.resize(B);
        if (fused_) {
          r.part.resize(static_cast<std::size_t>(cpu::fused_part_size(kt, G, H, P, B)));
        } else {
          qreserve_rank(d, B, r);
        }
      }
    }
  }
  double t1 = 0;  // seconds per step (of one direction) without the teams, measured by this call's probe
  for (dim_t s0 = 0; s0 < T; s0 += Tc) {
    const dim_t len = std::min(Tc, T - s0), rows = len * B;
    const dim_t row_block = (rows + blocks - 1) / blocks;
    if (!fold) pool.run(ndir * blocks, [&](int task) {
      if (cancel) cancel->check();
      const int d = task / blocks;
      const dim_t r0 = (task % blocks) * row_block, r1 = std::min(rows, r0 + row_block);
      if (r0 >= r1) return;
      const bool rev = cfg_.direction == Direction::Reverse || d == 1;
      Buffer xin(static_cast<std::size_t>((r1 - r0) * I));
      for (dim_t r = r0; r < r1; ++r) {  // row r = (local step j, batch b)
        const dim_t j = r / B, b = r % B, s = s0 + j, t = rev ? T - 1 - s : s;
        std::memcpy(xin.data() + (r - r0) * I, x + (b * T + t) * I, I * sizeof(float));
      }
      input_projection(d, r1 - r0, xin.data(), xw[d].data() + r0 * GH);
    });
    dim_t j0[2] = {0, 0};  // per direction: this chunk's first step not yet run
    if (!teams.empty() && t1 == 0) {  // probe: the first steps without the teams, timed
      const dim_t n = std::min(len, kProbeSteps);
      if (B == 1) {  // on this thread, one by one: t1 = the fastest of them
        double best = 1e30;
        for (dim_t j = 0; j < n; ++j)
          for (int d = 0; d < ndir; ++d) {
            const auto c0 = Clock::now();
            run_chunk(kt, ws[d], xw[d].data(), B, T, s0, j, j + 1, mask, dst, y_stride, T_out, cancel);
            best = std::min(best, std::chrono::duration<double>(Clock::now() - c0).count());
          }
        t1 = best;
      } else {  // the batch slices side by side, as they would run the rest
        const auto c0 = Clock::now();
        pool.run(ndir * slices, [&](int task) {
          run_chunk(kt, ws[task], xw[ws[task].d].data(), B, T, s0, 0, n, mask, dst, y_stride, T_out, cancel);
        });
        t1 = std::chrono::duration<double>(Clock::now() - c0).count() / static_cast<double>(n);
      }
      j0[0] = j0[1] = n;
      if (t1 * static_cast<double>(T - s0 - n) < kTeamMinSeconds) teams.clear();  // not worth a team
    }
    if (!teams.empty() && j0[0] < len) {
      int total = 0;
      for (auto& tm : teams) {
        tm->t1 = t1;
        tm->stop.store(-1);
        tm->slow = false;
        tm->next = len;
        total += tm->size;
      }
      auto body = [&](int rank) {
        int d = 0;
        for (; rank >= teams[d]->size; rank -= teams[d]->size) ++d;  // direction d's team, its rank
        Team& tm = *teams[d];
        try {
          run_chunk_split(kt, ws[d * slices], tm, rank, xw[d].data(), B, T, s0, j0[d], len, mask, dst, y_stride,
                          T_out, cancel);
        } catch (...) {
          for (auto& other : teams) other->barrier.abort();  // release all, report (the pool rethrows)
          throw;
        }
      };
      if (pool.run_team(total, body)) {
        bool slow = false;
        for (int d = 0; d < ndir; ++d) {
          j0[d] = teams[d]->next;
          slow = slow || teams[d]->slow;
          const int half = ws[d * slices].h_prev == hs[d].data() ? 0 : 1;  // where the team left the state
          for (int sl = 0; sl < slices; ++sl) place(ws[d * slices + sl], half);
        }
        if (slow) {  // no faster than without them: finish without, and back off
          backoff.failed(now_ns());
          teams.clear();
        } else {
          backoff.passed();
        }
      } else {
        teams.clear();  // pool busy (another caller) or shrunk: the rest runs without
      }
    }
    if (j0[0] < len || j0[ndir - 1] < len) {
      pool.run(ndir * slices, [&](int task) {
        const Slice& w = ws[task];
        run_chunk(kt, ws[task], xw[w.d].data(), B, T, s0, j0[w.d], len, mask, dst, y_stride, T_out, cancel);
      });
    }
  }

  // Final states, and the last output when only that is returned.
  const bool hold = cfg_.mask_mode == MaskMode::Hold;
  for (const Slice& w : ws) {
    for (dim_t b = 0; b < w.b1 - w.b0; ++b) {
      const dim_t row = w.d * B + w.b0 + b;
      if (st.started) st.started[row] = w.started[b];
      if (st.h_n) std::memcpy(st.h_n + row * P, w.h_prev + b * P, P * sizeof(float));
      if (lstm && st.c_n) std::memcpy(st.c_n + row * H, w.c_prev + b * H, H * sizeof(float));
      if (!cfg_.return_sequences) {
        float* o = dst + (w.b0 + b) * y_stride + w.d * P;
        if (!hold || w.started[b])
          std::memcpy(o, w.h_prev + b * P, P * sizeof(float));
        else
          std::memset(o, 0, P * sizeof(float));
      }
    }
  }

  if (split_out) {
    const dim_t n = B * T_out;
    for (dim_t r = 0; r < n; ++r) {
      const float* f = tmp.data() + r * 2 * P;
      const float* b = f + P;
      float* o = y + r * P;
      switch (cfg_.merge) {
        case Merge::Sum: for (dim_t j = 0; j < P; ++j) o[j] = f[j] + b[j]; break;
        case Merge::Mul: for (dim_t j = 0; j < P; ++j) o[j] = f[j] * b[j]; break;
        case Merge::Ave: for (dim_t j = 0; j < P; ++j) o[j] = (f[j] + b[j]) * 0.5f; break;
        case Merge::None:
          std::memcpy(o, f, P * sizeof(float));
          std::memcpy(y2 + r * P, b, P * sizeof(float));
          break;
        case Merge::Concat: break;
      }
    }
  }
}

void Recurrent::emit(float* o, const float* h, dim_t n, bool valid, bool started) const {
  if (valid || (cfg_.mask_mode == MaskMode::Hold && started))
    std::memcpy(o, h, n * sizeof(float));
  else
    std::memset(o, 0, n * sizeof(float));
}

void Recurrent::run_chunk(const cpu::KernelTable& k, Slice& w, const float* xw, dim_t B, dim_t T, dim_t s0,
                          dim_t j0, dim_t len, const std::uint8_t* mask, float* y, dim_t y_stride, dim_t T_out,
                          const CancelToken* cancel) const {
  const dim_t GH = cfg_.gates() * cfg_.units, P = cfg_.hidden_out();
  const int nb = static_cast<int>(w.b1 - w.b0);
  const bool reverse = cfg_.direction == Direction::Reverse || w.d == 1;
  const StepScratch scratch{w.rec.data(), w.rh.data(), w.hraw.data()};
  const dim_t y_off = w.d * P;
  for (dim_t j = j0; j < len; ++j) {
    if (cancel) cancel->check();
    const dim_t s = s0 + j, t = reverse ? T - 1 - s : s;
    // This slice's rows at this step: their input projection, or (folded) their inputs.
    float* g = w.x ? nullptr : const_cast<float*>(xw) + (j * B + w.b0) * GH;
    const float* xin = w.x ? w.x + (w.b0 * T + t) * cfg_.input_size : nullptr;
    if (mask)
      for (int b = 0; b < nb; ++b) w.valid[b] = mask[(w.b0 + b) * T + t];
    step(k, w.d, nb, g, GH, w.h_prev, w.h_new, w.c_prev, w.c_new, scratch, mask ? w.valid.data() : nullptr, xin,
         T * cfg_.input_size);
    for (int b = 0; b < nb; ++b) {
      const bool v = !mask || w.valid[b];
      if (v && !w.started[b]) w.started[b] = 1;  // read first: the slices' flags share cache lines
      if (cfg_.return_sequences) {
        const dim_t out_t = cfg_.direction == Direction::Reverse ? s : t;
        float* o = y + ((w.b0 + b) * T_out + out_t) * y_stride + y_off;
        emit(o, w.h_new + b * P, P, v, w.started[b]);
      }
    }
    std::swap(w.h_prev, w.h_new);
    std::swap(w.c_prev, w.c_new);
  }
}

// One chunk of the sequence batch (all B rows), rank `rank` of the team.  The rank owns the unit
// blocks [q0, q1) (split_units; all gates of their units): per step it runs the fused kernel on
// them for every row (all of h_prev against its blocks of W_hh, gate math, its part of h_new /
// c_new) or, with reduced-precision weights, qsplit_step, restores its part of the
// masked rows' state, writes its part of the output, and meets the team at the barrier (after
// which h_new is complete and becomes h_prev).  Masks are read from the shared mask, so every rank
// agrees.  The same kernels and the same sums per row as without the team (the fused kernel's sums
// for a row do not depend on the other rows of its tile): bit-identical results.
void Recurrent::run_chunk_split(const cpu::KernelTable& k, Slice& w, Team& team, int rank, const float* xw, dim_t B,
                                dim_t T, dim_t s0, dim_t j0, dim_t len, const std::uint8_t* mask, float* y,
                                dim_t y_stride, dim_t T_out, const CancelToken* cancel) const {
  const Dir& dw = dir_[w.d];
  const dim_t G = cfg_.gates(), H = cfg_.units, P = cfg_.hidden_out(), GH = G * H;
  const auto [q0, q1, u0, u1] = unit_share(k, rank, team.size);
  const dim_t nu = u1 - u0;
  const bool reverse = cfg_.direction == Direction::Reverse || w.d == 1;
  const bool lstm = cfg_.cell == LayerKind::Lstm;
  RankScratch& r = team.ranks[rank];
  cpu::FusedStep a;
  if (fused_) {
    a = fused_args(k, w.d, B, q0, q1);
    a.ldxi = T * cfg_.input_size;
    a.ldx = w.x ? 0 : GH;
    a.part = r.part.data();
  }
  float *h_prev = w.h_prev, *h_new = w.h_new, *c_prev = w.c_prev, *c_new = w.c_new;
  std::memcpy(r.started.data(), w.started, static_cast<std::size_t>(B));
  // Rank 0 times the team's steps (barrier to barrier; the first one, which includes waking the
  // team, is not counted) and stops the team when it is no faster than the bar.
  auto t_prev = Clock::now();
  double spent = 0;
  dim_t counted = -1;
  dim_t j = j0;
  for (; j < len; ++j) {
    if (cancel && rank == 0) cancel->check();
    const dim_t s = s0 + j, t = reverse ? T - 1 - s : s;
    bool any = !mask;
    for (dim_t b = 0; mask && b < B; ++b) any |= (r.valid[b] = mask[b * T + t]) != 0;
    if (any && !fused_) {
      qsplit_step(k, w.d, r, B, xw + j * B * GH, u0, u1, h_prev, h_new, c_prev, c_new);
    } else if (any) {
      // h_prev is half the other ranks' (written just before the barrier): ask for all of its
      // lines at once rather than one miss at a time as the tile reaches them (~1%, LSTM 32 -> 128,
      // batch 1; only while it is a few KiB: many rows of it would not stay in L1, and unmeasured).
      if (B * P <= kPrefetchHFloats)
        for (dim_t o = 0; o < B * P; o += 16) __builtin_prefetch(h_prev + o, 0, 3);
      if (w.x) {  // folded: the bias starts the sums, the step's inputs join h in the product
        a.x = dw.bias.data();
        a.x_in = w.x + t * cfg_.input_size;
      } else {
        a.x = xw + j * B * GH;
      }
      a.h = h_prev, a.h_new = h_new, a.c_prev = c_prev, a.c_new = c_new;
      k.recurrent_fused(a);
    }
    const dim_t out_t = cfg_.direction == Direction::Reverse ? s : t;  // as run_chunk
    for (dim_t b = 0; b < B; ++b) {
      const bool v = !mask || r.valid[b];
      if (v) {
        r.started[b] = 1;
      } else {  // a masked row keeps its state
        std::memcpy(h_new + b * P + u0, h_prev + b * P + u0, nu * sizeof(float));
        if (lstm) std::memcpy(c_new + b * H + u0, c_prev + b * H + u0, nu * sizeof(float));
      }
      if (!cfg_.return_sequences) continue;
      float* o = y + (b * T_out + out_t) * y_stride + w.d * P + u0;
      emit(o, h_new + b * P + u0, nu, v, r.started[b]);
    }
    if (!team.barrier.wait()) return;  // another rank failed: it reports
    std::swap(h_prev, h_new);
    std::swap(c_prev, c_new);
    if (rank == 0 && team.t1 > 0 && !team.slow) {
      const auto now = Clock::now();
      if (counted >= 0) spent += std::chrono::duration<double>(now - t_prev).count();
      t_prev = now;
      // Every kTeamWindow steps: is the team, over all its steps so far, faster than the bar?
      // (A stall - a rank descheduled for a time slice - shows at once; a short burst of noise
      // is absorbed by the slack and by what the team gained before it.)
      ++counted;
      if ((counted % kTeamWindow == 0 &&
           spent > kTeamSlowRatio * team.t1 * static_cast<double>(counted) + kTeamSlackSeconds) ||
          counted == forced_stop()) {
        team.slow = true;
        team.stop.store(j + 2, std::memory_order_relaxed);  // seen by all after the next barrier
      }
    }
    if (team.stop.load(std::memory_order_relaxed) == j + 1) {
      ++j;
      break;
    }
  }
  if (rank == 0) {
    w.h_prev = h_prev, w.h_new = h_new, w.c_prev = c_prev, w.c_new = c_new;
    std::memcpy(w.started, r.started.data(), static_cast<std::size_t>(B));
    team.next = j;
    team_steps().fetch_add(static_cast<std::uint64_t>(j - j0), std::memory_order_relaxed);
  }
}

// The reduced-precision step of units [u0, u1) for nb rows, rank scratch r: step()'s products and
// gate kernel restricted to those units.  Each rank prepares h_prev itself (Mat::qprepare: the same
// bytes on every rank, int8 quantizes each whole row as the one-thread product does), multiplies
// it by its rows of each gate (gate g: rows g*H + u0 .. g*H + u1, whole row blocks of the layout
// since H and u0 are multiples of its row_block()) into its gate sums [nb, G, n], then runs the gate kernel
// over its n units of each row.  Each sum is the one-thread product's (the same row, the same
// order; accumulated onto the input projection as step() does: the same float addition), and the
// gate kernels are element-wise: bit-identical results.  (Masked rows are computed anyway; the
// caller restores their state.)
void Recurrent::qsplit_step(const cpu::KernelTable& k, int d, RankScratch& r, dim_t nb, const float* xw, dim_t u0,
                            dim_t u1, const float* h_prev, float* h_new, const float* c_prev, float* c_new) const {
  const Dir& w = dir_[d];
  const dim_t G = cfg_.gates(), H = cfg_.units, P = cfg_.hidden_out(), GH = G * H, n = u1 - u0, Gn = G * n;
  const bool gru = cfg_.cell == LayerKind::Gru;
  const Mat::QInput in = w.hh.qprepare(nb, h_prev, P, r.q);
  float* a = r.gates.data();  // row b, gate g, unit u0 + i at a[b*Gn + g*n + i]
  for (dim_t g = 0; g < G; ++g) {
    // the input projection with the biases (GRU: but b_hn)
    for (dim_t b = 0; b < nb; ++b) std::memcpy(a + b * Gn + g * n, xw + b * GH + g * H + u0, n * sizeof(float));
    if (gru)  // GRU reset_after: W_hh h apart (n = act(x_n + r*(W_hn h + b_hn))), x beside it
      w.hh.qproduct(k, in, g * H + u0, n, r.rec.data() + g * n, Gn, nullptr, false);
    else
      w.hh.qproduct(k, in, g * H + u0, n, a + g * n, Gn, nullptr, true);
  }
  for (dim_t b = 0; b < nb; ++b) {
    float* ab = a + b * Gn;
    if (gru) {
      k.gru_cell_after(cfg_.act, cfg_.ract, ab, r.rec.data() + b * Gn, w.b_hn.data() + u0, h_prev + b * P + u0,
                       h_new + b * P + u0, n);
    } else if (cfg_.cell == LayerKind::Lstm) {
      k.lstm_cell(cfg_.act, cfg_.ract, ab, c_prev + b * H + u0, c_new + b * H + u0, h_new + b * P + u0, n);
    } else {
      k.activate(cfg_.act, ab, n);
      std::memcpy(h_new + b * P + u0, ab, n * sizeof(float));
    }
  }
}

void Recurrent::qreserve_rank(int d, dim_t nb, RankScratch& r) const {
  const dim_t GH = cfg_.gates() * cfg_.units;
  r.gates.resize(static_cast<std::size_t>(nb * GH));
  if (cfg_.cell == LayerKind::Gru) r.rec.resize(static_cast<std::size_t>(nb * GH));
  dir_[d].hh.qreserve(nb, r.q);
}

void Recurrent::input_projection(int d, dim_t rows, const float* x, float* xw) const {
  const dim_t GH = cfg_.gates() * cfg_.units;
  dir_[d].ih.apply_bias(rows, x, cfg_.input_size, xw, GH, dir_[d].bias.data());
}

void Recurrent::default_state(int d, dim_t nb, float* h, float* c) const {
  const Dir& w = dir_[d];
  const dim_t P = cfg_.hidden_out(), H = cfg_.units;
  for (dim_t b = 0; b < nb; ++b) {
    if (w.h0.size())
      std::memcpy(h + b * P, w.h0.data(), P * sizeof(float));
    else
      std::memset(h + b * P, 0, P * sizeof(float));
    if (!c) continue;
    if (w.c0.size())
      std::memcpy(c + b * H, w.c0.data(), H * sizeof(float));
    else
      std::memset(c + b * H, 0, H * sizeof(float));
  }
}

void Recurrent::stream_step(int nb, const float* x, float* xw, const float* h_prev, float* h_new,
                            const float* c_prev, float* c_new, const StepScratch& s, const std::uint8_t* valid) const {
  const cpu::KernelTable& k = cpu::kernels();
  const dim_t GH = cfg_.gates() * cfg_.units;
  ThreadPool& pool = ThreadPool::global();
  const bool eligible = split_ok_ && nb == 1 && !valid && pool.num_threads() > 1;
  if (eligible) fused_layouts(k);  // before anything is timed (one atomic load once made)
  const std::int64_t c0 = eligible ? now_ns() : 0;  // this step's start (timed when eligible)
  if (eligible) {
    // The bar: the fastest of the one-thread steps timed so far, once there are kProbeSteps of
    // them (one alone may be a cold step: the first after set_num_threads measured 1.3 ms against
    // 0.18 for LSTM 640 -> 640, and teams then ran on at 0.33 ms a step against one thread's 0.25).
    const std::int64_t t1 = t1_stream_ns_.load(std::memory_order_relaxed);
    const int n = t1_stream_n_.load(std::memory_order_relaxed) >= kProbeSteps && t1 >= kStreamTeamNs &&
                          team_st_.ready(c0)
                      ? team_size(k, pool.num_threads(), static_cast<double>(GH) * (cfg_.input_size + cfg_.hidden_out()))
                      : 0;
    if (n > 1 && stream_team(k, n, x, xw, h_prev, h_new, c_prev, c_new, s.rec)) {
      // Every kTeamWindow team steps: were they, together, faster than one thread?  (Tests:
      // FASTRNN_TEAM_STOP_AFTER makes every window fail.)
      team_steps().fetch_add(1, std::memory_order_relaxed);
      const std::int64_t dt = now_ns() - c0;
      const std::int64_t sum = stream_win_ns_.fetch_add(dt, std::memory_order_relaxed) + dt;
      if (stream_win_n_.fetch_add(1, std::memory_order_relaxed) + 1 >= kTeamWindow) {
        stream_win_ns_.store(0, std::memory_order_relaxed);
        stream_win_n_.store(0, std::memory_order_relaxed);
        if (static_cast<double>(sum) > kTeamSlowRatio * static_cast<double>(t1 * kTeamWindow) || forced_stop() >= 0)
          team_st_.failed(now_ns());
        else
          team_st_.passed();
      }
      return;
    }
  }
  input_projection(0, nb, x, xw);
  step(k, 0, nb, xw, GH, h_prev, h_new, c_prev, c_new, s, valid);
  if (eligible) {
    keep_min(t1_stream_ns_, now_ns() - c0 + 1);
    t1_stream_n_.fetch_add(1, std::memory_order_relaxed);
  }
}

// The ranks' shares: the projection's columns in whole panels of the packed W_ih (reduced
// precision: whole row blocks of the quantized W_ih, each rank quantizing x itself; each column's
// sum the same as in the whole product), then the step's unit blocks as in run_chunk_split (the
// fused kernel, or qsplit_step in per-thread scratch that only grows).  Bit-identical to one thread.
bool Recurrent::stream_team(const cpu::KernelTable& k, int n, const float* x, float* xw, const float* h_prev,
                            float* h_new, const float* c_prev, float* c_new, float* part) const {
  struct Ctx {
    const Recurrent* self;
    const cpu::KernelTable& k;
    int n;
    const float *x, *h_prev, *c_prev;
    float *xw, *h_new, *c_new, *part;
    SpinBarrier barrier;
  } ctx{this, k, n, x, h_prev, c_prev, xw, h_new, c_new, part, SpinBarrier(n)};
  auto body = [&ctx](int rank) {  // one captured pointer: std::function stores it without allocating
    const Recurrent& r = *ctx.self;
    const Dir& w = r.dir_[0];
    const dim_t G = r.cfg_.gates(), H = r.cfg_.units, GH = G * H, I = r.cfg_.input_size;
    try {
      if (!r.fused_) {
        thread_local RankScratch rs;
        r.qreserve_rank(0, 1, rs);
        const dim_t rb = w.ih.row_block();  // H (so GH) a multiple of it
        const auto [p0, p1] = share(GH / rb, rank, ctx.n);
        const dim_t c0 = p0 * rb, c1 = p1 * rb;
        if (c1 > c0)
          w.ih.qproduct(ctx.k, w.ih.qprepare(1, ctx.x, I, rs.q), c0, c1 - c0, ctx.xw + c0, GH, w.bias.data() + c0,
                        false);
        if (!ctx.barrier.wait()) return;  // another rank failed: it reports
        const UnitShare u = r.unit_share(ctx.k, rank, ctx.n);
        r.qsplit_step(ctx.k, 0, rs, 1, ctx.xw, u.u0, u.u1, ctx.h_prev, ctx.h_new, ctx.c_prev, ctx.c_new);
        return;
      }
      const dim_t panel = ctx.k.panel;
      const auto [p0, p1] = share((GH + panel - 1) / panel, rank, ctx.n);
      const dim_t c0 = p0 * panel, c1 = std::min(GH, p1 * panel);
      if (c1 > c0)
        ctx.k.gemm_packed(1, c1 - c0, I, ctx.x, I, w.ih.packed(ctx.k) + p0 * I * panel, ctx.xw + c0, GH,
                          w.bias.data() + c0);
      if (!ctx.barrier.wait()) return;  // another rank failed: it reports
      const UnitShare u = r.unit_share(ctx.k, rank, ctx.n);
      cpu::FusedStep a = r.fused_args(ctx.k, 0, 1, u.q0, u.q1);
      a.x = ctx.xw, a.ldx = GH;
      a.h = ctx.h_prev, a.h_new = ctx.h_new, a.c_prev = ctx.c_prev, a.c_new = ctx.c_new;
      a.part = ctx.part;  // one row: rank's blocks at their own offsets
      ctx.k.recurrent_fused(a);
    } catch (...) {
      ctx.barrier.abort();
      throw;
    }
  };
  return ThreadPool::global().run_team(n, body);
}

void Recurrent::step(const cpu::KernelTable& k, int d, int nb, float* g, dim_t ldg, const float* h_prev, float* h_new,
                     const float* c_prev, float* c_new, const StepScratch& s, const std::uint8_t* valid,
                     const float* xin, dim_t ldxi) const {
  const Dir& w = dir_[d];
  const dim_t G = cfg_.gates(), H = cfg_.units, P = cfg_.hidden_out(), GH = G * H;
  const bool lstm = cfg_.cell == LayerKind::Lstm, gru = cfg_.cell == LayerKind::Gru;
  const bool proj = cfg_.proj_size > 0;
  auto ok = [&](int b) { return !valid || valid[b]; };

  // Without a folded input (xin) the fused kernel runs only where fused_unfolded() says so: LSTM and
  // SimpleRNN take the separate form (the GEMM into g in place, then the cell pass per row).  Zen 3,
  // 1 thread, one process alternating the two forms call by call (session 16), separate / fused:
  // LSTM 128 -> 128 batch 4 / 32 0.94-0.97x, 64 -> 64 batch 256 0.94-0.96x, 2-layer LSTM 650 batch 20
  // T 35 (word_lm_b20) 0.92-0.97x, 512 -> 512 batch 32 0.99-1.02x; batch 1: LSTM 32 -> 128 0.95-0.97x,
  // 128 -> 512 0.94-0.99x, 640 -> 640 0.94-1.02x; SimpleRNN 128 -> 128 batch 32 0.95x, 32 -> 128 batch
  // 1 0.96-0.99x.  GRU reset_after (its n gate needs h's product apart) 0.98-1.07x: fused kept.  Zen 1
  // (session 7) had measured 2-5% for the separate form at H <= 128 too.  Folded steps (predict, 4*I
  // <= H) stay fused: the separate form unfolded measured 0.99-1.03x of them.
  const bool fused_rows = fused_unfolded() && !blas_faster(k, nb, G * H, P);
  if (xin || fused_rows) {
    cpu::FusedStep a = fused_args(k, d, nb, 0, cpu::fused_blocks(k, G, H));
    a.h = h_prev;
    if (xin) {
      a.x = w.bias.data(), a.ldx = 0;
      a.x_in = xin, a.ldxi = ldxi;
    } else {
      a.x = g, a.ldx = ldg;
    }
    a.c_prev = c_prev, a.c_new = c_new;
    a.h_new = proj ? s.hraw : h_new, a.ldo = proj ? H : P;
    a.part = s.rec;
    k.recurrent_fused(a);
    if (proj) w.hr.apply(nb, s.hraw, H, h_new, P, false);
  } else if (cfg_.general()) {
    general_step(k, d, nb, g, ldg, h_prev, h_new, c_prev, c_new, s);
  } else if (gru && cfg_.reset_after) {
    w.hh.apply(nb, h_prev, P, s.rec, GH, false);
    for (int b = 0; b < nb; ++b)
      if (ok(b))
        k.gru_cell_after(cfg_.act, cfg_.ract, g + b * ldg, s.rec + b * GH, w.b_hn.data(), h_prev + b * P,
                         h_new + b * P, H);
  } else if (gru) {
    w.hh_rz.apply(nb, h_prev, P, g, ldg, true);
    for (int b = 0; b < nb; ++b) k.gru_before_rz(cfg_.ract, g + b * ldg, h_prev + b * P, s.rh + b * H, H);
    w.hh_n.apply(nb, s.rh, H, g + 2 * H, ldg, true);
    for (int b = 0; b < nb; ++b)
      if (ok(b)) k.gru_before_out(cfg_.act, g + b * ldg, h_prev + b * P, h_new + b * P, H);
  } else {
    w.hh.apply(nb, h_prev, P, g, ldg, true);
    for (int b = 0; b < nb; ++b) {
      if (!ok(b)) continue;
      float* gb = g + b * ldg;
      if (lstm) {
        k.lstm_cell(cfg_.act, cfg_.ract, gb, c_prev + b * H, c_new + b * H, proj ? s.hraw + b * H : h_new + b * P, H);
      } else {
        k.activate(cfg_.act, gb, H);
        std::memcpy(h_new + b * P, gb, H * sizeof(float));
      }
    }
    if (proj) w.hr.apply(nb, s.hraw, H, h_new, P, false);
  }
  if (valid)  // masked rows keep their state
    for (int b = 0; b < nb; ++b)
      if (!valid[b]) {
        std::memcpy(h_new + b * P, h_prev + b * P, P * sizeof(float));
        if (lstm) std::memcpy(c_new + b * H, c_prev + b * H, H * sizeof(float));
      }
}

void Recurrent::gate(const cpu::KernelTable& k, int d, int role, float* x, dim_t n, bool clip) const {
  if (clip && cfg_.clip_on) {
    const float c = cfg_.clip;
    for (dim_t j = 0; j < n; ++j) x[j] = std::min(std::max(x[j], -c), c);
  }
  if (!cfg_.gate_acts) {  // the layer's activations: f = ract (gates), g = h = act
    k.activate(role == 0 && cfg_.cell != LayerKind::SimpleRnn ? cfg_.ract : cfg_.act, x, n);
    return;
  }
  const GateAct& a = cfg_.acts[d][role];
  // The functions without parameters are the core's element-wise activations (one implementation,
  // vectorized); those with alpha / beta (ONNX's) are computed here.
  switch (a.fn) {
    case GateFn::Relu: return k.activate(cpu::Act::Relu, x, n);
    case GateFn::Tanh: return k.activate(cpu::Act::Tanh, x, n);
    case GateFn::Sigmoid: return k.activate(cpu::Act::Sigmoid, x, n);
    case GateFn::Softsign: return k.activate(cpu::Act::Softsign, x, n);
    case GateFn::Softplus: return k.activate(cpu::Act::Softplus, x, n);
    default: break;
  }
  const float al = a.alpha, be = a.beta;
  for (dim_t j = 0; j < n; ++j) {
    const float v = x[j];
    float r = v;
    switch (a.fn) {
      case GateFn::Affine: r = al * v + be; break;
      case GateFn::LeakyRelu: r = v >= 0.f ? v : al * v; break;
      case GateFn::ThresholdedRelu: r = v > al ? v : 0.f; break;
      case GateFn::ScaledTanh: r = al * std::tanh(be * v); break;
      case GateFn::HardSigmoid: r = std::min(1.f, std::max(0.f, al * v + be)); break;
      case GateFn::Elu: r = v >= 0.f ? v : al * (std::exp(v) - 1.f); break;
      default: break;  // the functions above without parameters
    }
    x[j] = r;
  }
}

// The general step (layers with options).  a = the input projection with its biases (g) plus the
// recurrent product; clip(v) = min(max(v, -clip), clip) when the layer clips (else v); f, g, h the
// direction's functions (gate: cfg.acts, or ract / act); p_i, p_f, p_o the peepholes (0 without):
//   lstm:  i = f(clip(a_i + p_i*c)),  f_ = input_forget ? 1 - i : f(clip(a_f + p_f*c)),
//          c' = f_*c + i*g(clip(a_g)),  o = f(clip(a_o + p_o*c')),  h' = o*h(c')  (then W_hr h' if projected)
//   gru (reset after):  r = f(clip(a_r)), z = f(clip(a_z)), n = g(clip(x_n + r*(W_hn h + b_hn))),
//                       h' = (1-z)*n + z*h
//   gru (reset before): r, z likewise;  n = g(clip(x_n + b_n + W_hn (r*h)));  h' = (1-z)*n + z*h
//   simple_rnn: h' = f(clip(a))
// Masked rows are written anyway (step() restores them).
void Recurrent::general_step(const cpu::KernelTable& k, int d, int nb, float* g, dim_t ldg, const float* h_prev,
                             float* h_new, const float* c_prev, float* c_new, const StepScratch& s) const {
  const Dir& w = dir_[d];
  const dim_t H = cfg_.units, P = cfg_.hidden_out(), GH = cfg_.gates() * H;
  if (cfg_.cell == LayerKind::Lstm) {
    w.hh.apply(nb, h_prev, P, g, ldg, true);
    const float* pe = cfg_.peephole ? w.peep.data() : nullptr;
    for (int b = 0; b < nb; ++b) {
      float *ai = g + b * ldg, *af = ai + H, *ag = ai + 2 * H, *ao = ai + 3 * H;
      const float* c = c_prev + b * H;
      float* cn = c_new + b * H;
      float* hout = cfg_.proj_size ? s.hraw + b * H : h_new + b * P;
      if (pe)
        for (dim_t j = 0; j < H; ++j) ai[j] += pe[j] * c[j];
      gate(k, d, 0, ai, H);
      if (cfg_.input_forget) {
        for (dim_t j = 0; j < H; ++j) af[j] = 1.f - ai[j];
      } else {
        if (pe)
          for (dim_t j = 0; j < H; ++j) af[j] += pe[H + j] * c[j];
        gate(k, d, 0, af, H);
      }
      gate(k, d, 1, ag, H);
      for (dim_t j = 0; j < H; ++j) cn[j] = af[j] * c[j] + ai[j] * ag[j];
      if (pe)
        for (dim_t j = 0; j < H; ++j) ao[j] += pe[2 * H + j] * cn[j];
      gate(k, d, 0, ao, H);
      std::memcpy(hout, cn, H * sizeof(float));
      gate(k, d, 2, hout, H, false);
      for (dim_t j = 0; j < H; ++j) hout[j] *= ao[j];
    }
    if (cfg_.proj_size) w.hr.apply(nb, s.hraw, H, h_new, P, false);
  } else if (cfg_.cell == LayerKind::Gru && cfg_.reset_after) {
    w.hh.apply(nb, h_prev, P, s.rec, GH, false);
    for (int b = 0; b < nb; ++b) {
      float* a = g + b * ldg;
      const float *gh = s.rec + b * GH, *h = h_prev + b * P;
      for (dim_t j = 0; j < 2 * H; ++j) a[j] += gh[j];
      gate(k, d, 0, a, 2 * H);
      for (dim_t j = 0; j < H; ++j) a[2 * H + j] += a[j] * (gh[2 * H + j] + w.b_hn[j]);
      gate(k, d, 1, a + 2 * H, H);
      for (dim_t j = 0; j < H; ++j) h_new[b * P + j] = (1.f - a[H + j]) * a[2 * H + j] + a[H + j] * h[j];
    }
  } else if (cfg_.cell == LayerKind::Gru) {
    w.hh_rz.apply(nb, h_prev, P, g, ldg, true);
    for (int b = 0; b < nb; ++b) {
      float* a = g + b * ldg;
      gate(k, d, 0, a, 2 * H);
      for (dim_t j = 0; j < H; ++j) s.rh[b * H + j] = a[j] * h_prev[b * P + j];
    }
    w.hh_n.apply(nb, s.rh, H, g + 2 * H, ldg, true);
    for (int b = 0; b < nb; ++b) {
      float* a = g + b * ldg;
      gate(k, d, 1, a + 2 * H, H);
      for (dim_t j = 0; j < H; ++j) h_new[b * P + j] = (1.f - a[H + j]) * a[2 * H + j] + a[H + j] * h_prev[b * P + j];
    }
  } else {
    w.hh.apply(nb, h_prev, P, g, ldg, true);
    for (int b = 0; b < nb; ++b) {
      gate(k, d, 0, g + b * ldg, H);
      std::memcpy(h_new + b * P, g + b * ldg, H * sizeof(float));
    }
  }
}

}  // namespace fastrnn
