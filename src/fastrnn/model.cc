#include "fastrnn/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <random>

#include <unistd.h>

#include "fastrnn/cpu/fpenv.h"
#include "fastrnn/parallel/thread_pool.h"

namespace fastrnn {

namespace {
void copy_to(Buffer& dst, const float* src, std::size_t n) {
  dst.resize(n);
  if (n) std::memcpy(dst.data(), src, n * sizeof(float));
}

// a's values, writable: the caller's input (a view) copied into a's own buffer first.
float* own(Activations& a) {
  if (a.view) {
    copy_to(a.data, a.view, static_cast<std::size_t>(a.size()));
    a.view = nullptr;
  }
  return a.data.data();
}

// Bytes of RAM this machine has (0 when unknown): no stream may need more.
std::uint64_t physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) : 0;
}
}  // namespace

void Model::add_embedding(const std::string& name, const float* table, dim_t vocab, dim_t dim, bool mask_zero) {
  if (!layers_.empty()) fail<FormatError>("layer '", name, "' (embedding): must be the first layer");
  if (vocab < 1 || dim < 1)
    fail<FormatError>("layer '", name, "' (embedding): table (", vocab, ", ", dim, ") has a zero-sized dimension");
  Layer l{LayerKind::Embedding, name};
  copy_to(l.weight, table, vocab * dim);
  l.rows = vocab;
  l.cols = dim;
  l.mask_zero = mask_zero;
  layers_.push_back(std::move(l));
}

std::size_t Model::weight_bytes() const {
  std::size_t n = 0;
  for (const Layer& l : layers_)
    n += (l.weight.size() + l.bias.size()) * sizeof(float) + l.dense.bytes() + (l.rnn ? l.rnn->weight_bytes() : 0);
  return n;
}

void Model::add_masking(const std::string& name, float mask_value) {
  Layer l{LayerKind::Masking, name};
  l.mask_value = mask_value;
  layers_.push_back(std::move(l));
}

void Model::add_recurrent(const RecurrentConfig& cfg, const DirectionTensors* dirs) {
  Layer l{cfg.cell, cfg.name};
  l.rnn = std::make_unique<Recurrent>(cfg, dirs);
  layers_.push_back(std::move(l));
}

void Model::add_dense(const std::string& name, const float* weight, const float* bias, dim_t out, dim_t in,
                      cpu::Act act) {
  if (out < 1 || in < 1)
    fail<FormatError>("layer '", name, "' (dense): weight (", out, ", ", in, ") has a zero-sized dimension");
  Layer l{LayerKind::Dense, name};
  l.dense.set(weight, out, in);
  copy_to(l.bias, bias, out);
  l.rows = out;
  l.cols = in;
  l.act = act;
  layers_.push_back(std::move(l));
}

void Model::add_activation(const std::string& name, cpu::Act act) {
  Layer l{LayerKind::Activation, name};
  l.act = act;
  layers_.push_back(std::move(l));
}

void Model::add_last_step(const std::string& name) { layers_.push_back(Layer{LayerKind::LastStep, name}); }

void Model::set_graph(const std::vector<std::int64_t>& src, const std::vector<std::size_t>& outputs) {
  if (src.size() != layers_.size()) fail<FormatError>("graph: ", src.size(), " layer inputs for ", layers_.size(), " layers");
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const std::int64_t s = src[i];
    if (s >= static_cast<std::int64_t>(i) || s < -1 || (s >= 0 && i == 0) || (s >= 0 && layers_[i].kind == LayerKind::Embedding))
      fail<FormatError>("layer '", layers_[i].name, "': reads layer ", s, ", which is not an earlier layer");
  }
  for (std::size_t o : outputs)
    if (o >= layers_.size()) fail<FormatError>("graph: output layer ", o, " does not exist");
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    layers_[i].src = src[i] == static_cast<std::int64_t>(i) - 1 ? -1 : src[i];
    layers_[i].keep = false;
    if (layers_[i].rnn && layers_[i].rnn->config().direction == Direction::Bidirectional &&
        layers_[i].rnn->config().merge == Merge::None && (!outputs.empty() || src[i] >= 0))
      fail<FormatError>("layer '", layers_[i].name, "': merge mode 'none' cannot be combined with several outputs");
  }
  for (std::size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i].src >= 0) layers_[layers_[i].src].keep = true;
  for (std::size_t o : outputs) layers_[o].keep = true;
  outputs_ = outputs;
}

std::vector<const RecurrentConfig*> Model::recurrent_layers() const {
  std::vector<const RecurrentConfig*> out;
  for (auto& l : layers_)
    if (l.rnn) out.push_back(&l.rnn->config());
  return out;
}

void Model::dense(const Layer& l, const Activations& in, Activations& out) const {
  if (in.F != l.cols)
    fail<ShapeError>("layer '", l.name, "' (dense): expects ", l.cols, " features, got ", in.F);
  const dim_t rows = in.B * (in.seq ? in.T : 1);
  out.B = in.B;
  out.T = in.T;
  out.seq = in.seq;
  out.F = l.rows;
  out.data.resize(rows * l.rows);
  ThreadPool& pool = ThreadPool::global();
  const int blocks = row_blocks(rows, pool.num_threads(), 64, static_cast<double>(l.rows) * l.cols);
  const dim_t block = (rows + blocks - 1) / blocks;
  const cpu::KernelTable& k = cpu::kernels();
  pool.run(blocks, [&](int i) {
    const dim_t r0 = i * block, r1 = std::min(rows, r0 + block);
    float* o = out.data.data() + r0 * l.rows;
    l.dense.apply(r1 - r0, in.values() + r0 * l.cols, l.cols, o, l.rows, false);
    for (dim_t r = r0; r < r1; ++r, o += l.rows) k.bias_act(l.act, l.bias.data(), o, l.rows);
  });
}

void Model::predict(const float* x, const std::int64_t* ids, dim_t B, dim_t T, dim_t F, bool seq,
                    const std::int64_t* lengths, const std::vector<StateIO>& states,
                    std::vector<Activations>& outputs, const CancelToken* cancel) const {
  const cpu::DenormalGuard ftz;  // flush denormals while computing (restored on return)
  if (layers_.empty()) fail<FormatError>("model has no layers");
  Activations cur, next;
  std::vector<std::uint8_t> mask;  // [B, T], 1 = valid; empty = every step valid
  if (lengths) {
    if (!seq) fail<ShapeError>("lengths given for an input without a time axis");
    mask.assign(B * T, 0);
    for (dim_t b = 0; b < B; ++b) {
      if (lengths[b] < 0 || lengths[b] > T)
        fail<ShapeError>("lengths[", b, "] = ", lengths[b], " is outside [0, ", T, "]");
      for (dim_t t = 0; t < lengths[b]; ++t) mask[b * T + t] = 1;
    }
  }
  std::size_t first = 0;
  if (takes_ids()) {
    const Layer& e = layers_[0];
    if (!ids) fail<ShapeError>("layer '", e.name, "' (embedding): expects integer ids");
    cur.B = B, cur.T = T, cur.F = e.cols, cur.seq = seq;
    const dim_t n = B * (seq ? T : 1);
    cur.data.resize(n * e.cols);
    for (dim_t i = 0; i < n; ++i) {
      const std::int64_t id = ids[i];
      if (id < 0 || id >= e.rows)
        fail<ShapeError>("layer '", e.name, "' (embedding): id ", id, " at position ", i, " is outside [0, ", e.rows,
                         ")");
      std::memcpy(cur.data.data() + i * e.cols, e.weight.data() + id * e.cols, e.cols * sizeof(float));
    }
    if (e.mask_zero && seq) {
      if (mask.empty()) mask.assign(B * T, 1);
      for (dim_t i = 0; i < n; ++i)
        if (ids[i] == 0) mask[i] = 0;
    }
    first = 1;
  } else {
    if (!x) fail<ShapeError>("the model expects float input");
    cur.B = B, cur.T = T, cur.F = F, cur.seq = seq;
    cur.view = x;  // read in place; copied only if a layer writes it (own)
  }

  // The outputs (and masks) of the layers read out of order or returned (set_graph), by layer.
  std::vector<Activations> kept(layers_.size());
  std::vector<std::vector<std::uint8_t>> kept_mask(layers_.size());
  auto keep = [&](std::size_t li) {
    if (!layers_[li].keep) return;
    Activations& k = kept[li];
    k.B = cur.B, k.T = cur.T, k.F = cur.F, k.seq = cur.seq;
    copy_to(k.data, cur.values(), static_cast<std::size_t>(cur.size()));
    kept_mask[li] = mask;
  };
  if (first) keep(0);
  std::size_t rnn_index = 0;
  outputs.clear();
  for (std::size_t li = first; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    const bool last = li + 1 == layers_.size();
    next.view = nullptr;  // next is written here (after a swap it may still hold the input's view)
    if (l.src >= 0) {  // a branch: continue from a kept output
      const Activations& k = kept[l.src];
      cur.B = k.B, cur.T = k.T, cur.F = k.F, cur.seq = k.seq;
      cur.view = nullptr;
      copy_to(cur.data, k.data.data(), k.data.size());
      mask = kept_mask[l.src];
    }
    switch (l.kind) {
      case LayerKind::Embedding: fail<FormatError>("layer '", l.name, "' (embedding): must be the first layer");
      case LayerKind::Masking: {
        if (!cur.seq) fail<ShapeError>("layer '", l.name, "' (masking): needs a (batch, time, features) input");
        if (mask.empty()) mask.assign(B * T, 1);
        float* const vals = own(cur);
        for (dim_t i = 0; i < B * T; ++i) {
          float* v = vals + i * cur.F;
          bool any = false;
          for (dim_t j = 0; j < cur.F; ++j) any |= v[j] != l.mask_value;
          if (!any) {
            mask[i] = 0;
            std::memset(v, 0, cur.F * sizeof(float));  // Keras: outputs = inputs * mask
          }
        }
        break;
      }
      case LayerKind::SimpleRnn:
      case LayerKind::Lstm:
      case LayerKind::Gru: {
        const RecurrentConfig& c = l.rnn->config();
        if (!cur.seq) fail<ShapeError>("layer '", l.name, "': needs a (batch, time, features) input");
        if (cur.F != c.input_size)
          fail<ShapeError>("layer '", l.name, "': expects ", c.input_size, " features, got ", cur.F);
        const bool two = c.direction == Direction::Bidirectional && c.merge == Merge::None;
        if (two && !last) fail<FormatError>("layer '", l.name, "': merge mode 'none' must be the last layer");
        next.B = B, next.T = T, next.seq = c.return_sequences;
        next.F = two ? c.hidden_out() : c.output_size();
        const dim_t tout = c.return_sequences ? T : 1;
        next.data.resize(B * tout * next.F);
        Activations second;
        if (two) {
          second = Activations{};
          second.B = B, second.T = T, second.seq = c.return_sequences, second.F = c.hidden_out();
          second.data.resize(B * tout * second.F);
        }
        static const StateIO none;
        const StateIO& st = rnn_index < states.size() ? states[rnn_index] : none;
        l.rnn->forward(cur.values(), B, T, mask.empty() ? nullptr : mask.data(), st, next.data.data(),
                       two ? second.data.data() : nullptr, cancel);
        ++rnn_index;
        std::swap(cur, next);
        if (!c.return_sequences) mask.clear();
        if (two) {
          outputs.push_back(std::move(cur));
          outputs.push_back(std::move(second));
          return;
        }
        break;
      }
      case LayerKind::Dense:
        dense(l, cur, next);
        std::swap(cur, next);
        break;
      case LayerKind::Activation: {
        const cpu::KernelTable& k = cpu::kernels();
        const dim_t rows = cur.B * (cur.seq ? cur.T : 1);
        float* const vals = own(cur);
        if (cpu::is_axis_act(l.act)) {
          for (dim_t r = 0; r < rows; ++r) k.activate(l.act, vals + r * cur.F, cur.F);
        } else {
          k.activate(l.act, vals, rows * cur.F);
        }
        break;
      }
      case LayerKind::LastStep: {
        if (!cur.seq || T < 1) fail<ShapeError>("layer '", l.name, "' (last_step): needs a sequence input");
        next.B = B, next.T = T, next.F = cur.F, next.seq = false;
        next.data.resize(B * cur.F);
        for (dim_t b = 0; b < B; ++b)
          std::memcpy(next.data.data() + b * cur.F, cur.values() + (b * T + T - 1) * cur.F, cur.F * sizeof(float));
        std::swap(cur, next);
        mask.clear();
        break;
      }
    }
    keep(li);
  }
  if (outputs_.empty()) {
    own(cur);  // a model that wrote nothing (pass-through layers only) returns a copy of its input
    outputs.push_back(std::move(cur));
    return;
  }
  for (std::size_t o : outputs_) outputs.push_back(std::move(kept[o]));  // set_graph: distinct layers
}


dim_t Model::input_size() const {
  for (const Layer& l : layers_) {
    if (l.kind == LayerKind::Embedding) return 0;
    if (l.rnn) return l.rnn->config().input_size;
    if (l.kind == LayerKind::Dense) return l.cols;
  }
  return -1;  // only pass-through layers: any width
}

std::vector<dim_t> Model::step_widths() const {
  std::vector<dim_t> w(layers_.size());
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    dim_t f = li ? w[source(li)] : input_size();
    if (l.kind == LayerKind::Embedding) f = l.cols;
    if (l.kind == LayerKind::Dense) f = l.rows;
    if (l.rnn) f = l.rnn->config().hidden_out();
    w[li] = f;
  }
  return w;
}

dim_t Model::step_output_size(std::size_t k) const {
  if (layers_.empty()) return input_size();
  const std::vector<dim_t> w = step_widths();
  if (outputs_.empty()) return w.back();
  if (k >= outputs_.size()) fail<Error>("output ", k, " does not exist");
  return w[outputs_[k]];
}

const float* Model::step_output(const StreamState& s, std::size_t k) const {
  if (outputs_.empty() || k >= outputs_.size()) fail<Error>("step output ", k, " is not kept");
  return s.kept[outputs_[k]].data();
}

std::unique_ptr<StreamState> Model::new_stream(dim_t B) const {
  if (B < 1) fail<ShapeError>("stream batch_size must be >= 1, got ", B);
  // Bytes per row of every buffer below, checked against the machine's memory before allocating.
  dim_t widest = 1, row_bytes = 1;  // valid
  for (const Layer& l : layers_) {
    if (l.kind == LayerKind::Embedding) widest = std::max(widest, l.cols);
    if (l.kind == LayerKind::Dense) widest = std::max(widest, std::max(l.rows, l.cols));
    if (!l.rnn) continue;
    const RecurrentConfig& c = l.rnn->config();
    if (c.direction != Direction::Forward)
      fail<UnsupportedError>("layer '", c.name, "': a ", c.direction == Direction::Reverse ? "go_backwards" : "bidirectional",
                             " layer needs the whole sequence and cannot stream; use predict()");
    widest = std::max({widest, c.input_size, c.hidden_out()});
    const dim_t cells = c.cell == LayerKind::Lstm ? c.units : 0;
    row_bytes += 1 + static_cast<dim_t>(sizeof(float)) * (2 * c.hidden_out() + 2 * cells + 2 * c.gates() * c.units + 2 * c.units);
  }
  row_bytes += static_cast<dim_t>(sizeof(float)) * 2 * widest;
  const std::vector<dim_t> widths = step_widths();
  for (std::size_t li = 0; li < layers_.size(); ++li)
    if (layers_[li].keep) row_bytes += 1 + static_cast<dim_t>(sizeof(float)) * std::max<dim_t>(widths[li], 1);
  const std::uint64_t ram = physical_memory();
  if (ram && static_cast<std::uint64_t>(B) > ram / static_cast<std::uint64_t>(row_bytes))
    fail<OutOfMemoryError>("a stream of ", B, " rows needs ", row_bytes, " bytes per row (",
                           static_cast<long double>(B) * row_bytes / (1u << 30), " GiB), more than the ",
                           ram >> 20, " MiB of memory of this machine");
  try {
    return alloc_stream(B, widest);
  } catch (const std::bad_alloc&) {
    fail<OutOfMemoryError>("a stream of ", B, " rows (", row_bytes, " bytes per row) cannot be allocated: out of memory");
  }
}

std::unique_ptr<StreamState> Model::alloc_stream(dim_t B, dim_t widest) const {
  auto s = std::make_unique<StreamState>();
  s->B = B;
  for (const Layer& l : layers_) {
    if (!l.rnn) continue;
    const RecurrentConfig& c = l.rnn->config();
    StreamState::Rnn r;
    const dim_t GH = c.gates() * c.units;
    for (int i = 0; i < 2; ++i) {
      r.h[i].resize(B * c.hidden_out(), true);
      if (c.cell == LayerKind::Lstm) r.c[i].resize(B * c.units, true);
    }
    l.rnn->default_state(0, B, r.h[0].data(), c.cell == LayerKind::Lstm ? r.c[0].data() : nullptr);
    r.started.assign(B, 0);
    r.xw.resize(B * GH);
    r.rec.resize(l.rnn->rec_scratch(B));
    r.rh.resize(B * c.units);
    r.hraw.resize(B * c.units);
    s->rnn.push_back(std::move(r));
  }
  s->act[0].resize(B * widest, true);
  s->act[1].resize(B * widest, true);
  s->valid.assign(B, 1);
  const std::vector<dim_t> widths = step_widths();
  s->kept.resize(layers_.size());
  s->kept_valid.resize(layers_.size());
  s->kept_masked.assign(layers_.size(), 0);
  s->kept_F.assign(layers_.size(), 0);
  for (std::size_t li = 0; li < layers_.size(); ++li)
    if (layers_[li].keep) {
      s->kept[li].resize(B * std::max<dim_t>(widths[li], 1), true);
      s->kept_valid[li].assign(B, 1);
    }
  return s;
}

void Model::reset_stream(StreamState& s, const std::int64_t* rows, dim_t n) const {
  auto zero_row = [&](dim_t b) {
    if (b < 0 || b >= s.B) fail<ShapeError>("reset: row ", b, " is outside [0, ", s.B, ")");
    std::size_t ri = 0;
    for (const Layer& l : layers_) {  // back to the initial state: zeros, or the layer's default one
      if (!l.rnn) continue;
      auto& r = s.rnn[ri++];
      const dim_t P = r.h[0].size() / s.B, H = r.c[0].size() / s.B;
      for (int i = 0; i < 2; ++i) l.rnn->default_state(0, 1, r.h[i].data() + b * P, H ? r.c[i].data() + b * H : nullptr);
      r.started[b] = 0;
    }
  };
  if (!rows) {
    for (dim_t b = 0; b < s.B; ++b) zero_row(b);
  } else {
    for (dim_t i = 0; i < n; ++i)  // validate all first: nothing half-reset on a bad index
      if (rows[i] < 0 || rows[i] >= s.B) fail<ShapeError>("reset: row ", rows[i], " is outside [0, ", s.B, ")");
    for (dim_t i = 0; i < n; ++i) zero_row(rows[i]);
  }
}

void Model::step(StreamState& s, const float* x, const std::int64_t* ids, float* out) const {
  const cpu::DenormalGuard ftz;  // flush denormals while computing (restored on return)
  const cpu::KernelTable& k = cpu::kernels();
  const dim_t B = s.B;
  std::size_t first = 0, ri = 0;
  bool masked = false;
  float* cur = s.act[0].data();
  float* nxt = s.act[1].data();
  dim_t F = 0;
  if (takes_ids()) {
    const Layer& e = layers_[0];
    for (dim_t b = 0; b < B; ++b)
      if (ids[b] < 0 || ids[b] >= e.rows)
        fail<ShapeError>("layer '", e.name, "' (embedding): id ", ids[b], " at row ", b, " is outside [0, ", e.rows, ")");
    for (dim_t b = 0; b < B; ++b) {
      std::memcpy(cur + b * e.cols, e.weight.data() + ids[b] * e.cols, e.cols * sizeof(float));
      s.valid[b] = !(e.mask_zero && ids[b] == 0);
      masked |= !s.valid[b];
    }
    F = e.cols;
    first = 1;
  } else {
    F = input_size();
    if (F < 0) fail<FormatError>("stream: the model has no layer that fixes its input size");
    std::memcpy(cur, x, B * F * sizeof(float));
    for (dim_t b = 0; b < B; ++b) s.valid[b] = 1;
  }
  std::vector<dim_t>& kept_F = s.kept_F;
  auto keep = [&](std::size_t li) {
    if (!layers_[li].keep) return;
    kept_F[li] = F;
    std::memcpy(s.kept[li].data(), cur, B * F * sizeof(float));
    std::copy(s.valid.begin(), s.valid.end(), s.kept_valid[li].begin());
    s.kept_masked[li] = masked;
  };
  if (first) keep(0);
  for (std::size_t li = first; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    if (l.src >= 0) {  // a branch: continue from a kept output
      F = kept_F[l.src];
      std::memcpy(cur, s.kept[l.src].data(), B * F * sizeof(float));
      std::copy(s.kept_valid[l.src].begin(), s.kept_valid[l.src].end(), s.valid.begin());
      masked = s.kept_masked[l.src];
    }
    switch (l.kind) {
      case LayerKind::Embedding: fail<FormatError>("layer '", l.name, "' (embedding): must be the first layer");
      case LayerKind::Masking:
        for (dim_t b = 0; b < B; ++b) {
          float* v = cur + b * F;
          bool any = false;
          for (dim_t j = 0; j < F; ++j) any |= v[j] != l.mask_value;
          if (!any) {
            s.valid[b] = 0;
            masked = true;
            std::memset(v, 0, F * sizeof(float));
          }
        }
        break;
      case LayerKind::SimpleRnn:
      case LayerKind::Lstm:
      case LayerKind::Gru: {
        const RecurrentConfig& c = l.rnn->config();
        StreamState::Rnn& r = s.rnn[ri++];
        const dim_t P = c.hidden_out();
        const int o = 1 - r.cur;
        const bool lstm = c.cell == LayerKind::Lstm;
        l.rnn->stream_step(static_cast<int>(B), cur, r.xw.data(), r.h[r.cur].data(), r.h[o].data(),
                           lstm ? r.c[r.cur].data() : nullptr, lstm ? r.c[o].data() : nullptr,
                           Recurrent::StepScratch{r.rec.data(), r.rh.data(), r.hraw.data()},
                           masked ? s.valid.data() : nullptr);
        r.cur = o;
        const float* h = r.h[o].data();
        for (dim_t b = 0; b < B; ++b) {
          const bool v = s.valid[b];
          if (v) r.started[b] = 1;
          // the output predict() would give at this step (return_sequences) / for this prefix (last output)
          const bool emit = v || (c.mask_mode == MaskMode::Hold ? r.started[b] : !c.return_sequences);
          if (emit)
            std::memcpy(nxt + b * P, h + b * P, P * sizeof(float));
          else
            std::memset(nxt + b * P, 0, P * sizeof(float));
        }
        if (!c.return_sequences) {
          masked = false;
          for (dim_t b = 0; b < B; ++b) s.valid[b] = 1;
        }
        std::swap(cur, nxt);
        F = P;
        break;
      }
      case LayerKind::Dense:
        l.dense.apply(B, cur, F, nxt, l.rows, false);
        for (dim_t b = 0; b < B; ++b) k.bias_act(l.act, l.bias.data(), nxt + b * l.rows, l.rows);
        std::swap(cur, nxt);
        F = l.rows;
        break;
      case LayerKind::Activation:
        if (cpu::is_axis_act(l.act))
          for (dim_t b = 0; b < B; ++b) k.activate(l.act, cur + b * F, F);
        else
          k.activate(l.act, cur, B * F);
        break;
      case LayerKind::LastStep:  // one step: the last step is this step
        masked = false;
        for (dim_t b = 0; b < B; ++b) s.valid[b] = 1;
        break;
    }
    keep(li);
  }
  if (!outputs_.empty()) {
    const std::size_t o = outputs_[0];
    std::memcpy(out, s.kept[o].data(), B * kept_F[o] * sizeof(float));
    return;
  }
  std::memcpy(out, cur, B * F * sizeof(float));
}

void Model::run(StreamState& s, const float* x, const std::int64_t* ids, dim_t T,
                std::vector<Activations>& outputs) const {
  std::vector<StateIO> io(s.rnn.size());
  for (std::size_t i = 0; i < s.rnn.size(); ++i) {
    StreamState::Rnn& r = s.rnn[i];
    const int o = 1 - r.cur;
    io[i].h0 = r.h[r.cur].data();
    io[i].h_n = r.h[o].data();
    if (r.c[0].size()) {
      io[i].c0 = r.c[r.cur].data();
      io[i].c_n = r.c[o].data();
    }
    io[i].started = r.started.data();
  }
  const dim_t F = input_size();
  if (F < 0) fail<FormatError>("stream: the model has no layer that fixes its input size");
  predict(x, ids, s.B, T, F, true, nullptr, io, outputs);
  for (auto& r : s.rnn) r.cur = 1 - r.cur;
}


}  // namespace fastrnn
