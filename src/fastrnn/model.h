// An immutable model: a chain of layers built once from (configs, tensors); predict() is const
// and thread-safe (all mutable data lives in the call).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fastrnn/config.h"
#include "fastrnn/layers/recurrent.h"
#include "fastrnn/matmul.h"

namespace fastrnn {

struct Activations {  // one intermediate / output tensor: [B, T, F] when seq, else [B, F]
  Buffer data;
  dim_t B = 0, T = 0, F = 0;
  bool seq = true;
};

class Model {
 public:
  void add_embedding(const std::string& name, const float* table, dim_t vocab, dim_t dim, bool mask_zero);
  void add_masking(const std::string& name, float mask_value);
  void add_recurrent(const RecurrentConfig& cfg, const DirectionTensors* dirs);
  void add_dense(const std::string& name, const float* weight, const float* bias, dim_t out, dim_t in, cpu::Act act);
  void add_activation(const std::string& name, cpu::Act act);
  void add_last_step(const std::string& name);

  std::size_t num_layers() const { return layers_.size(); }
  std::vector<const RecurrentConfig*> recurrent_layers() const;
  bool takes_ids() const { return !layers_.empty() && layers_[0].kind == LayerKind::Embedding; }

  // x: float [B, T, F] (seq) or [B, F]; ids: int64 [B, T] (when the first layer is an Embedding).
  // lengths: int64 [B] or null.  states: one per recurrent layer (pointers may be null).
  // outputs: 1 tensor, or 2 when the last layer is bidirectional with merge 'none'.
  void predict(const float* x, const std::int64_t* ids, dim_t B, dim_t T, dim_t F, bool seq,
               const std::int64_t* lengths, const std::vector<StateIO>& states,
               std::vector<Activations>& outputs) const;

 private:
  struct Layer {
    LayerKind kind;
    std::string name;
    Buffer weight, bias;  // embedding table [V, D] / dense bias [O]
    Mat dense;            // dense weight [O, I]
    dim_t rows = 0, cols = 0;
    bool mask_zero = false;
    float mask_value = 0.f;
    cpu::Act act = cpu::Act::Linear;
    std::unique_ptr<Recurrent> rnn;
  };
  void dense(const Layer& l, const Activations& in, Activations& out) const;
  std::vector<Layer> layers_;
};

}  // namespace fastrnn
