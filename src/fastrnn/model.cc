#include "fastrnn/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "fastrnn/parallel/thread_pool.h"

namespace fastrnn {

namespace {
void copy_to(Buffer& dst, const float* src, std::size_t n) {
  dst.resize(n);
  if (n) std::memcpy(dst.data(), src, n * sizeof(float));
}
}  // namespace

void Model::add_embedding(const std::string& name, const float* table, dim_t vocab, dim_t dim, bool mask_zero) {
  if (!layers_.empty()) fail<FormatError>("layer '", name, "' (embedding): must be the first layer");
  Layer l{LayerKind::Embedding, name};
  copy_to(l.weight, table, vocab * dim);
  l.rows = vocab;
  l.cols = dim;
  l.mask_zero = mask_zero;
  layers_.push_back(std::move(l));
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
  const dim_t block = std::max<dim_t>(64, (rows + pool.num_threads() - 1) / pool.num_threads());
  const int blocks = static_cast<int>((rows + block - 1) / block);
  const cpu::KernelTable& k = cpu::kernels();
  pool.run(blocks, [&](int i) {
    const dim_t r0 = i * block, r1 = std::min(rows, r0 + block);
    float* o = out.data.data() + r0 * l.rows;
    l.dense.apply(r1 - r0, in.data.data() + r0 * l.cols, l.cols, o, l.rows, false);
    for (dim_t r = r0; r < r1; ++r, o += l.rows) k.bias_act(l.act, l.bias.data(), o, l.rows);
  });
}

void Model::predict(const float* x, const std::int64_t* ids, dim_t B, dim_t T, dim_t F, bool seq,
                    const std::int64_t* lengths, const std::vector<StateIO>& states,
                    std::vector<Activations>& outputs) const {
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
    copy_to(cur.data, x, B * (seq ? T : 1) * F);
  }

  std::size_t rnn_index = 0;
  outputs.clear();
  for (std::size_t li = first; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    const bool last = li + 1 == layers_.size();
    switch (l.kind) {
      case LayerKind::Embedding: fail<FormatError>("layer '", l.name, "' (embedding): must be the first layer");
      case LayerKind::Masking: {
        if (!cur.seq) fail<ShapeError>("layer '", l.name, "' (masking): needs a (batch, time, features) input");
        if (mask.empty()) mask.assign(B * T, 1);
        for (dim_t i = 0; i < B * T; ++i) {
          float* v = cur.data.data() + i * cur.F;
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
        l.rnn->forward(cur.data.data(), B, T, mask.empty() ? nullptr : mask.data(), st, next.data.data(),
                       two ? second.data.data() : nullptr);
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
        if (cpu::is_axis_act(l.act)) {
          for (dim_t r = 0; r < rows; ++r) k.activate(l.act, cur.data.data() + r * cur.F, cur.F);
        } else {
          k.activate(l.act, cur.data.data(), rows * cur.F);
        }
        break;
      }
      case LayerKind::LastStep: {
        if (!cur.seq || T < 1) fail<ShapeError>("layer '", l.name, "' (last_step): needs a sequence input");
        next.B = B, next.T = T, next.F = cur.F, next.seq = false;
        next.data.resize(B * cur.F);
        for (dim_t b = 0; b < B; ++b)
          std::memcpy(next.data.data() + b * cur.F, cur.data.data() + (b * T + T - 1) * cur.F, cur.F * sizeof(float));
        std::swap(cur, next);
        mask.clear();
        break;
      }
    }
  }
  outputs.push_back(std::move(cur));
}

}  // namespace fastrnn
