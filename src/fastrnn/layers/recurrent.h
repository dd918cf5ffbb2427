// THE sequence runner for every cell: input GEMM for all steps, one recurrent GEMM per step
// for all gates, fused gate kernel, masks / lengths, reverse by iteration, bidirectional.
#pragma once
#include <atomic>
#include <cstdint>

#include "fastrnn/cancel.h"
#include "fastrnn/config.h"
#include "fastrnn/matmul.h"

namespace fastrnn {

// Initial / final state of one recurrent layer: h [dirs, B, P], c [dirs, B, H] (LSTM only).
// started [dirs, B] (optional, in/out): whether a row has emitted a valid output yet ('hold' masks);
// lets a stream continue a sequence across calls exactly as one long call would.
struct StateIO {
  const float* h0 = nullptr;
  const float* c0 = nullptr;
  float* h_n = nullptr;
  float* c_n = nullptr;
  std::uint8_t* started = nullptr;
};

// Steps run by a thread team (the hidden-unit split) so far, every layer, every batch (for tests).
inline std::atomic<std::uint64_t>& team_steps() {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

// Layer runs over a sequence with the input projection folded into the steps so far (for tests).
inline std::atomic<std::uint64_t>& folded_runs() {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

class Recurrent {
 public:
  Recurrent(RecurrentConfig cfg, const DirectionTensors* dirs);  // copies and re-lays the weights
  const RecurrentConfig& config() const { return cfg_; }
  std::size_t weight_bytes() const;  // weights held, every layout made so far included

  // x [B, T, I]; mask [B, T] (1 = valid) or null.  y: [B, T, out] or [B, out] (out = output_size);
  // for merge 'none', y receives the forward and y2 the backward output ([.., P] each).
  void forward(const float* x, dim_t B, dim_t T, const std::uint8_t* mask, const StateIO& st, float* y,
               float* y2, const CancelToken* cancel = nullptr) const;

  // One streaming step (Model::step) of direction 0 for nb rows: xw [nb, G*H] = x W_ih^T + bias
  // (scratch), then the step.  Reads h_prev/c_prev, writes h_new/c_new; rows with valid[b] == 0
  // keep their state (valid may be null).  A batch of one whose one-thread step measured at least
  // kStreamTeamSeconds runs both parts on a thread team (stream_team) while the team measures
  // faster than one thread.  Allocates nothing.
  struct StepScratch {
    float* rec;   // rec_scratch(nb): GRU reset_after W_hh h, or the fused step's partial sums
    float* rh;    // [nb, H]    GRU reset before
    float* hraw;  // [nb, H]    LSTM projection input
  };
  void stream_step(int nb, const float* x, float* xw, const float* h_prev, float* h_new, const float* c_prev,
                   float* c_new, const StepScratch& s, const std::uint8_t* valid) const;
  // Floats of StepScratch::rec for nb rows (the fused step's partial sums, for every ISA).
  dim_t rec_scratch(dim_t nb) const;
  // x [rows, I] -> xw [rows, G*H] = x W_ih^T + bias (direction d)
  void input_projection(int d, dim_t rows, const float* x, float* xw) const;
  // The state a sequence of direction d starts from when the call gives none, for nb rows:
  // h [nb, P], c [nb, H] (LSTM; may be null otherwise): the layer's default initial state, or zeros.
  void default_state(int d, dim_t nb, float* h, float* c) const;

 private:
  struct Dir {
    Buffer bias, b_hn;
    Buffer peep, h0, c0;  // LSTM peepholes [3, H] (i, f, o); default initial state [P], [H] (empty: none)
    Mat ih, hh, hh_rz, hh_n, hr;  // W_hh; GRU reset-before splits it into [r z] and [n]; LSTM projection
    // W_hh in blocks of hidden units carrying all their gates, per ISA (cpu::pack_fused): the
    // fused step (fused_unfolded, a folded step, every thread team's ranks).  Made at load where
    // one thread uses it, else before the first team runs.
    IsaLayouts fused;
  };
  struct Slice;
  struct Team;
  struct RankScratch;
  const float* fused_weights(int d, const cpu::KernelTable& k) const;
  void fused_layouts(const cpu::KernelTable& k) const;  // every direction's fused layout for table k, made now
  // The fused step's arguments every caller shares (direction d, nb rows, unit blocks [q0, q1),
  // strides of a [nb, P] h and output, [nb, H] c); the caller sets x / x_in, h, c, h_new, part.
  cpu::FusedStep fused_args(const cpu::KernelTable& k, int d, dim_t nb, dim_t q0, dim_t q1) const;
  // xin: this step's input rows (stride ldxi) when the projection is folded into the step (g unused).
  void step(const cpu::KernelTable& k, int d, int nb, float* g, dim_t ldg, const float* h_prev, float* h_new,
            const float* c_prev, float* c_new, const StepScratch& s, const std::uint8_t* valid,
            const float* xin = nullptr, dim_t ldxi = 0) const;
  // Steps [j0, len) of the time chunk starting at step s0.
  // The step of a layer with options (RecurrentConfig::general): products through Mat, then the
  // gate math below (recurrent.cc has the equations).
  void general_step(const cpu::KernelTable& k, int d, int nb, float* g, dim_t ldg, const float* h_prev,
                    float* h_new, const float* c_prev, float* c_new, const StepScratch& s) const;
  // x[0, n) = fn(clip(x)): role 0 f, 1 g, 2 h of direction d (clip only when `clip`).
  void gate(const cpu::KernelTable& k, int d, int role, float* x, dim_t n, bool clip = true) const;
  void run_chunk(const cpu::KernelTable& k, Slice& w, const float* xw, dim_t B, dim_t T, dim_t s0, dim_t j0,
                 dim_t len, const std::uint8_t* mask, float* y, dim_t y_stride, dim_t T_out,
                 const CancelToken* cancel) const;
  // Steps [j0, len) of the chunk for every row of the batch (slice w = the first of the direction,
  // whose state pointers start the whole batch's), rank `rank` of the team.
  void run_chunk_split(const cpu::KernelTable& k, Slice& w, Team& team, int rank, const float* xw, dim_t B, dim_t T,
                       dim_t s0, dim_t j0, dim_t len, const std::uint8_t* mask, float* y, dim_t y_stride,
                       dim_t T_out, const CancelToken* cancel) const;
  // One row's output of a step (or units [u0, u0 + n) of it, o and h pointing there): h where the
  // row was valid or, with mask mode 'hold', once it has started; zeros otherwise (run_chunk and
  // run_chunk_split, one rule).
  void emit(float* o, const float* h, dim_t n, bool valid, bool started) const;
  // Batch > 1 (cut into `slices` batch slices): whether a team splitting the hidden units over
  // every row is expected to beat the slices (it is then measured against them, recurrent.cc).
  bool split_batch(const cpu::KernelTable& k, dim_t B, int slices) const;
  // Ranks of a team for `threads` threads and `macs` multiply-adds per step (0: no team).
  int team_size(const cpu::KernelTable& k, int threads, double macs) const;
  // A batch-1 streaming step on a team of n: ranks project their panels of W_ih (reduced precision:
  // their row blocks of it), meet, then run the fused step (reduced: qsplit_step) on their unit
  // blocks (part: the shared one-row staging area of the fused step).  False: the pool could not
  // give a team (nothing done).
  bool stream_team(const cpu::KernelTable& k, int n, const float* x, float* xw, const float* h_prev, float* h_new,
                   const float* c_prev, float* c_new, float* part) const;
  // Units per block of the hidden-unit split (a rank owns whole blocks).
  dim_t split_units(const cpu::KernelTable& k) const;
  // Rank `rank` of `ranks`'s share of the split: unit blocks [q0, q1), units [u0, u1).
  struct UnitShare {
    dim_t q0, q1, u0, u1;
  };
  UnitShare unit_share(const cpu::KernelTable& k, int rank, int ranks) const;
  // One step of units [u0, u1) for nb rows with reduced-precision weights (a rank of the split);
  // xw: the rows' input projections [nb, G*H].
  void qsplit_step(const cpu::KernelTable& k, int d, RankScratch& r, dim_t nb, const float* xw, dim_t u0, dim_t u1,
                   const float* h_prev, float* h_new, const float* c_prev, float* c_new) const;
  // The rank scratch qsplit_step needs for nb rows of direction d (grows r, never shrinks it).
  void qreserve_rank(int d, dim_t nb, RankScratch& r) const;
  bool fused_ = false;     // LSTM, GRU reset_after, SimpleRNN: the gate math may run inside the recurrent matmul
  // Whether a step whose input is not folded runs the fused kernel (else the separate form: the
  // recurrent GEMM into the projection's rows, then the cell pass; recurrent.cc, Recurrent::step,
  // has the measurements).  Teams and folded steps are always fused, so the separate form is taken
  // only where its bits equal the fused kernel's (GEMM sums onto the projection in k order, the
  // same gate formulas): SimpleRNN, and LSTM with its sigmoid / tanh pair (the fused kernel's other
  // activations contract their multiply-adds in their own order).  GRU reset_after stays fused.
  bool fused_unfolded() const {
    return fused_ && (cfg_.cell == LayerKind::Gru ||
                      (cfg_.cell == LayerKind::Lstm && !(cfg_.act == cpu::Act::Tanh && cfg_.ract == cpu::Act::Sigmoid)));
  }
  bool fold_ = false;      // LSTM / SimpleRNN with 4*I <= H: the fused layout is [W_ih | W_hh], the
                           // input projection can be folded into the step (predict)
  bool split_ok_ = false;  // the hidden units may be split across a thread team (fused or reduced; at
                           // batch > 1 when split_batch expects it to pay)
  // After a team measured no faster than running without it (a busy machine; at batch > 1 also a
  // shape where batch slices win): no team before `retry` (steady clock, ns), and the wait imposed
  // after the next such failure (recurrent.cc: kBackoffMin doubling up to kBackoffMax).
  struct Backoff {
    std::atomic<std::int64_t> retry{0}, wait{0};
    bool ready(std::int64_t now) const { return now >= retry.load(std::memory_order_relaxed); }
    void failed(std::int64_t now);
    void passed() { wait.store(0, std::memory_order_relaxed); }
  };
  mutable Backoff team_b1_;  // batch 1
  mutable Backoff team_bn_;  // batch > 1
  mutable Backoff team_st_;  // streaming steps
  // Streaming: the fastest one-thread step (ns; 0: not measured yet), and the team's steps in the
  // current window of kTeamWindow (their total ns and count).
  mutable std::atomic<std::int64_t> t1_stream_ns_{0}, t1_stream_n_{0};  // ... and how many were timed
  mutable std::atomic<std::int64_t> stream_win_ns_{0}, stream_win_n_{0};
  RecurrentConfig cfg_;
  Dir dir_[2];
};

}  // namespace fastrnn
