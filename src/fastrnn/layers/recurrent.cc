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
// the two directions of a bidirectional layer run side by side.  No allocation in the time loop.
#include "fastrnn/layers/recurrent.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "fastrnn/parallel/thread_pool.h"

namespace fastrnn {

namespace {
void copy_to(Buffer& dst, const float* src, std::size_t n) {
  dst.resize(n);
  std::memcpy(dst.data(), src, n * sizeof(float));
}// Batch slices up to this many rows use the packed small-batch kernel; above, BLAS sgemm.
}  // namespace

Recurrent::Recurrent(RecurrentConfig cfg, const DirectionTensors* dirs) : cfg_(std::move(cfg)) {
  const dim_t G = cfg_.gates(), H = cfg_.units, I = cfg_.input_size, P = cfg_.hidden_out();
  const bool gru = cfg_.cell == LayerKind::Gru;
  for (int d = 0; d < cfg_.num_directions(); ++d) {
    const DirectionTensors& t = dirs[d];
    if (!t.w_ih || !t.w_hh || !t.b_ih || !t.b_hh || (cfg_.proj_size && !t.w_hr))
      fail<FormatError>("layer '", cfg_.name, "': missing weights for direction ", d);
    Dir& w = dir_[d];
    w.ih.set(t.w_ih, G * H, I);
    if (gru && !cfg_.reset_after) {
      w.hh_rz.set(t.w_hh, 2 * H, P);
      w.hh_n.set(t.w_hh + 2 * H * P, H, P);
    } else {
      w.hh.set(t.w_hh, G * H, P);
    }
    w.bias.resize(G * H);
    for (dim_t j = 0; j < G * H; ++j) w.bias[j] = t.b_ih[j] + t.b_hh[j];
    if (gru && cfg_.reset_after) {  // b_hn stays separate: n = act(x_n + b_in + r*(h_n + b_hn))
      copy_to(w.b_hn, t.b_hh + 2 * H, H);
      for (dim_t j = 0; j < H; ++j) w.bias[2 * H + j] = t.b_ih[2 * H + j];
    }
    if (cfg_.proj_size) w.hr.set(t.w_hr, P, H);
  }
}

void Recurrent::forward(const float* x, dim_t B, dim_t T, const std::uint8_t* mask, const StateIO& st, float* y,
                        float* y2) const {
  const int ndir = cfg_.num_directions();
  const dim_t G = cfg_.gates(), H = cfg_.units, I = cfg_.input_size, P = cfg_.hidden_out(), GH = G * H;
  const dim_t T_out = cfg_.return_sequences ? T : 1;
  if (B == 0) return;
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.num_threads();

  // (1) input projection for every step and direction, time-major: xw[t, b, :] = W_ih x[b, t] + bias
  // (time-major so that each step's batch slice is one contiguous block).
  Buffer x_tm(static_cast<std::size_t>(T * B * I));
  for (dim_t b = 0; b < B; ++b)
    for (dim_t t = 0; t < T; ++t) std::memcpy(x_tm.data() + (t * B + b) * I, x + (b * T + t) * I, I * sizeof(float));
  std::vector<Buffer> xw(ndir);
  for (auto& b : xw) b.resize(static_cast<std::size_t>(B * T * GH));
  const dim_t rows = B * T;
  const int blocks = row_blocks(rows, threads, 16, static_cast<double>(GH) * I);
  const dim_t row_block = (rows + blocks - 1) / blocks;
  pool.run(ndir * blocks, [&](int task) {
    const int d = task / blocks;
    const dim_t r0 = (task % blocks) * row_block, r1 = std::min(rows, r0 + row_block);
    input_projection(d, r1 - r0, x_tm.data() + r0 * I, xw[d].data() + r0 * GH);
  });

  // (2) the recurrence, over batch slices.
  const bool split_out = ndir == 2 && cfg_.merge != Merge::Concat;
  Buffer tmp;
  float* dst = y;
  dim_t y_stride = cfg_.output_size();
  if (split_out) {  // both directions side by side, merged below
    tmp.resize(static_cast<std::size_t>(B * T_out * 2 * P));
    dst = tmp.data();
    y_stride = 2 * P;
  }
  const double work = static_cast<double>(T) * GH * (P + (cfg_.proj_size ? H : 0)) * B;
  int slices = static_cast<int>(std::min<dim_t>(B, std::max(1, threads / ndir + (threads % ndir ? 1 : 0))));
  slices = std::max(1, std::min(slices, static_cast<int>(work / kMinTaskWork)));
  pool.run(ndir * slices, [&](int task) {
    const int d = task / slices, s = task % slices;
    const dim_t b0 = B * s / slices, b1 = B * (s + 1) / slices;
    run_slice(d, xw[d].data(), B, T, b0, b1, mask, st, dst, y_stride, d * P, T_out);
  });

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

void Recurrent::run_slice(int d, const float* xw_all, dim_t B, dim_t T, dim_t b0, dim_t b1,
                          const std::uint8_t* mask, const StateIO& st, float* y, dim_t y_stride, dim_t y_off,
                          dim_t T_out) const {
  const dim_t G = cfg_.gates(), H = cfg_.units, P = cfg_.hidden_out(), GH = G * H;
  const int nb = static_cast<int>(b1 - b0);
  const bool lstm = cfg_.cell == LayerKind::Lstm, gru = cfg_.cell == LayerKind::Gru;
  const bool reverse = cfg_.direction == Direction::Reverse || d == 1;
  const bool hold = cfg_.mask_mode == MaskMode::Hold;
  const bool proj = cfg_.proj_size > 0;
  const dim_t ldg = GH;

  // Workspace, allocated once per call (never inside the time loop).
  Buffer hbuf(2 * nb * P), cbuf(lstm ? 2 * nb * H : 0), rec(gru && cfg_.reset_after ? nb * GH : 0),
      rh(gru && !cfg_.reset_after ? nb * H : 0), hraw(proj ? nb * H : 0);
  std::vector<std::uint8_t> started(nb, 0), valid_buf(nb, 1);
  const StepScratch scratch{rec.data(), rh.data(), hraw.data()};
  float* h_prev = hbuf.data();
  float* h_new = h_prev + nb * P;
  float* c_prev = lstm ? cbuf.data() : nullptr;
  float* c_new = lstm ? c_prev + nb * H : nullptr;
  for (int b = 0; b < nb; ++b) {
    const dim_t row = d * B + b0 + b;
    if (st.started) started[b] = st.started[row];
    for (dim_t j = 0; j < P; ++j) h_prev[b * P + j] = st.h0 ? st.h0[row * P + j] : 0.f;
    if (lstm)
      for (dim_t j = 0; j < H; ++j) c_prev[b * H + j] = st.c0 ? st.c0[row * H + j] : 0.f;
  }

  for (dim_t s = 0; s < T; ++s) {
    const dim_t t = reverse ? T - 1 - s : s;
    float* g = const_cast<float*>(xw_all) + (t * B + b0) * GH;  // this slice's rows of xw at step t
    auto valid = [&](int b) { return !mask || mask[(b0 + b) * T + t]; };
    if (mask)
      for (int b = 0; b < nb; ++b) valid_buf[b] = mask[(b0 + b) * T + t];

    cell_step(d, nb, g, ldg, h_prev, h_new, c_prev, c_new, scratch, mask ? valid_buf.data() : nullptr);
    // Masked rows keep their state; then write this step's output.
    for (int b = 0; b < nb; ++b) {
      const bool v = valid(b);
      if (v) started[b] = 1;
      if (cfg_.return_sequences) {
        const dim_t out_t = cfg_.direction == Direction::Reverse ? s : t;
        float* o = y + ((b0 + b) * T_out + out_t) * y_stride + y_off;
        if (v || (hold && started[b]))
          std::memcpy(o, h_new + b * P, P * sizeof(float));
        else
          std::memset(o, 0, P * sizeof(float));
      }
    }
    std::swap(h_prev, h_new);
    std::swap(c_prev, c_new);
  }

  for (int b = 0; b < nb; ++b) {
    const dim_t row = d * B + b0 + b;
    if (st.started) st.started[row] = started[b];
    if (st.h_n) std::memcpy(st.h_n + row * P, h_prev + b * P, P * sizeof(float));
    if (lstm && st.c_n) std::memcpy(st.c_n + row * H, c_prev + b * H, H * sizeof(float));
    if (!cfg_.return_sequences) {
      float* o = y + (b0 + b) * y_stride + y_off;
      if (!hold || started[b])
        std::memcpy(o, h_prev + b * P, P * sizeof(float));
      else
        std::memset(o, 0, P * sizeof(float));
    }
  }
}

void Recurrent::input_projection(int d, dim_t rows, const float* x, float* xw) const {
  const dim_t GH = cfg_.gates() * cfg_.units;
  dir_[d].ih.apply(rows, x, cfg_.input_size, xw, GH, false);
  const float* b = dir_[d].bias.data();
  for (dim_t r = 0; r < rows; ++r, xw += GH)
    for (dim_t j = 0; j < GH; ++j) xw[j] += b[j];
}

void Recurrent::cell_step(int d, int nb, float* g, dim_t ldg, const float* h_prev, float* h_new, const float* c_prev,
                          float* c_new, const StepScratch& s, const std::uint8_t* valid) const {
  const cpu::KernelTable& k = cpu::kernels();
  const Dir& w = dir_[d];
  const dim_t G = cfg_.gates(), H = cfg_.units, P = cfg_.hidden_out(), GH = G * H;
  const bool lstm = cfg_.cell == LayerKind::Lstm, gru = cfg_.cell == LayerKind::Gru;
  const bool proj = cfg_.proj_size > 0;
  auto ok = [&](int b) { return !valid || valid[b]; };

  if (gru && cfg_.reset_after) {
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

}  // namespace fastrnn
