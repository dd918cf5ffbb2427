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
  // When set, the values are the caller's input, read in place (predict's x: no copy of the input
  // before the first layer reads it); a layer that writes them takes a copy first (model.cc: own).
  const float* view = nullptr;
  dim_t B = 0, T = 0, F = 0;
  bool seq = true;
  dim_t size() const { return B * (seq ? T : 1) * F; }
  const float* values() const { return view ? view : data.data(); }
};

// Mutable state of one stream (batch of B sessions) of a Model: h/c per recurrent layer
// (double-buffered), 'hold'-mask bookkeeping, and every scratch buffer a step needs, all
// allocated once by Model::new_stream so that Model::step allocates nothing.
struct StreamState {
  dim_t B = 0;
  struct Rnn {
    Buffer h[2], c[2];  // [B, P], [B, H]; h[cur] is the current state
    int cur = 0;
    std::vector<std::uint8_t> started;  // [B]
    Buffer xw, rec, rh, hraw;           // step scratch
  };
  std::vector<Rnn> rnn;
  Buffer act[2];                    // layer outputs, ping-pong, [B, max features]
  std::vector<std::uint8_t> valid;  // [B] per-step mask (Embedding mask_zero / Masking)
  // Outputs of the layers another layer or a model output reads (Model::set_graph), per layer
  // (empty for the others): the step's value [B, width], its per-row mask and whether any row is masked.
  std::vector<Buffer> kept;
  std::vector<std::vector<std::uint8_t>> kept_valid;
  std::vector<std::uint8_t> kept_masked;
  std::vector<dim_t> kept_F;
};

struct GenerateOptions {
  int output_kind = 0;  // the last layer gives 0 logits, 1 probabilities (softmax), 2 log-probabilities
  // greedy: argmax (first maximum), run as a beam search of width 1.  Else, with beam_width 1:
  // sample from softmax(logits / temperature), restricted to the top_k largest when top_k > 0,
  // with a std::mt19937_64 seeded by `seed`; computed as exp((logit - max) / temperature) in
  // double: no overflow for any temperature > 0; one so small that every other logit's weight
  // underflows to 0 samples the maximum.
  bool greedy = false;
  double temperature = 1.0;
  dim_t top_k = 0;
  std::uint64_t seed = 0;
  std::vector<std::int64_t> stop_ids;  // a row stops after emitting one of these (in [0, V))
  // beam_width > 1: beam search (deterministic); hypotheses ranked by
  // sum(log p) / len^length_penalty (len: ids generated, the stop id included).
  dim_t beam_width = 1;
  double length_penalty = 1.0;
};

class Model {
 public:
  void add_embedding(const std::string& name, const float* table, dim_t vocab, dim_t dim, bool mask_zero);
  void add_masking(const std::string& name, float mask_value);
  void add_recurrent(const RecurrentConfig& cfg, const DirectionTensors* dirs);
  void add_dense(const std::string& name, const float* weight, const float* bias, dim_t out, dim_t in, cpu::Act act);
  void add_activation(const std::string& name, cpu::Act act);
  void add_last_step(const std::string& name);

  // Branches and several outputs (after every add_*): src[i] = the index of the earlier layer whose
  // output layer i reads (-1: the layer before it); outputs = the layers whose outputs predict()
  // returns, in order (empty: the last layer's).  The outputs of the layers read out of order or
  // returned are kept (with their masks) while the later layers run.
  void set_graph(const std::vector<std::int64_t>& src, const std::vector<std::size_t>& outputs);
  bool graph_outputs() const { return !outputs_.empty(); }
  std::size_t num_outputs() const { return outputs_.empty() ? 1 : outputs_.size(); }
  // A stream's value of output k after the latest step() ([B, step_output_size(k)]; k = 0 is what
  // step() writes to `out`).
  const float* step_output(const StreamState& s, std::size_t k) const;
  std::size_t num_layers() const { return layers_.size(); }
  std::size_t weight_bytes() const;  // every weight (and packed layout) the model holds

  // Streaming (forward-only models): the per-step output size, a fresh state for B rows (zeros, or a
  // layer's default initial state; reset_stream returns rows to it),
  // one step (x [B, F] floats or ids [B]; out [B, step_output_size()]), allocation-free.
  dim_t input_size() const;  // features per step (0: ids; -1: no layer fixes it)
  dim_t step_output_size(std::size_t k = 0) const;
  // new_stream refuses (OutOfMemoryError) a B whose buffers need more than this machine's RAM.
  std::unique_ptr<StreamState> new_stream(dim_t B) const;
  void step(StreamState& s, const float* x, const std::int64_t* ids, float* out) const;
  void reset_stream(StreamState& s, const std::int64_t* rows, dim_t n) const;  // rows null: all
  // Language-model generation (Embedding ... Dense over the vocabulary), in generate.cc: feed
  // prompt [B, Tp] (Tp >= 1) from the stream's current state, then up to `steps` times pick the
  // next id from the last output and feed it back.  out [B, steps] (-1 after a row's stop id);
  // logits [B, steps, V] or null: the output each id was picked from (NaN after a stop).
  // Afterwards the stream holds, per row, the state after the prompt and every returned id but
  // the last (so the last id, fed as the next prompt, continues the sequence).
  void generate(StreamState& s, const std::int64_t* prompt, dim_t Tp, dim_t steps, const GenerateOptions& opt,
                std::int64_t* out, float* logits) const;
  // Several steps (x [B, T, F] / ids [B, T]) continuing the stream's state; outputs as predict().
  void run(StreamState& s, const float* x, const std::int64_t* ids, dim_t T, std::vector<Activations>& outputs) const;
  std::vector<const RecurrentConfig*> recurrent_layers() const;
  bool takes_ids() const { return !layers_.empty() && layers_[0].kind == LayerKind::Embedding; }

  // x: float [B, T, F] (seq) or [B, F]; ids: int64 [B, T] (when the first layer is an Embedding).
  // lengths: int64 [B] or null.  states: one per recurrent layer (pointers may be null).
  // outputs: 1 tensor, or 2 when the last layer is bidirectional with merge 'none', or one per
  // set_graph output.
  void predict(const float* x, const std::int64_t* ids, dim_t B, dim_t T, dim_t F, bool seq,
               const std::int64_t* lengths, const std::vector<StateIO>& states,
               std::vector<Activations>& outputs, const CancelToken* cancel = nullptr) const;

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
    std::int64_t src = -1;  // the layer whose output this one reads (-1: the previous one)
    bool keep = false;      // its output is read out of order or returned: kept during a call
  };
  std::size_t source(std::size_t li) const { return layers_[li].src >= 0 ? static_cast<std::size_t>(layers_[li].src) : li - 1; }
  std::vector<dim_t> step_widths() const;  // per layer: the width of its output in a stream step
  void dense(const Layer& l, const Activations& in, Activations& out) const;
  std::unique_ptr<StreamState> alloc_stream(dim_t B, dim_t widest) const;
  std::vector<Layer> layers_;
  std::vector<std::size_t> outputs_;
};

}  // namespace fastrnn
