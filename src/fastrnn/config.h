// Plain layer configurations, filled by the bindings from the JSON header (fastrnn/spec.py
// writes it: keep both in step).  The core needs no JSON library and no framework names.
#pragma once
#include <string>

#include "fastrnn/common.h"
#include "fastrnn/cpu/kernels.h"
#include "fastrnn/matmul.h"

namespace fastrnn {

enum class LayerKind { Embedding, Masking, SimpleRnn, Lstm, Gru, Dense, Activation, LastStep };
enum class Direction { Forward, Reverse, Bidirectional };
enum class Merge { Concat, Sum, Mul, Ave, None };
enum class MaskMode { Zero, Hold };
// ONNX's recurrent activation functions (the RNN / GRU / LSTM `activations` attribute), with ONNX's
// alpha / beta (unused ones 0): Affine alpha*x + beta, LeakyRelu x >= 0 ? x : alpha*x,
// ThresholdedRelu x > alpha ? x : 0, ScaledTanh alpha*tanh(beta*x), HardSigmoid clip(alpha*x + beta, 0, 1),
// Elu x >= 0 ? x : alpha*(exp(x) - 1); Relu, Tanh, Sigmoid, Softsign, Softplus take none.
enum class GateFn { Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus };
struct GateAct {
  GateFn fn = GateFn::Tanh;
  float alpha = 0.f, beta = 0.f;
};

struct RecurrentConfig {
  std::string name;
  LayerKind cell = LayerKind::Lstm;
  dim_t input_size = 0, units = 0, proj_size = 0;
  cpu::Act act = cpu::Act::Tanh, ract = cpu::Act::Sigmoid;
  bool reset_after = true;
  Direction direction = Direction::Forward;
  Merge merge = Merge::Concat;
  bool return_sequences = true;
  MaskMode mask_mode = MaskMode::Zero;
  // Precision of w_ih, w_hh, w_hr (biases, states and activations stay float32).
  Precision precision = Precision::F32;
  // Options (ONNX), run on the general path of layers/recurrent.cc (never in the fused kernels):
  bool clip_on = false;       // gate pre-activations clipped to [-clip, clip]
  float clip = 0.f;
  bool input_forget = false;  // LSTM: f = 1 - i (coupled input and forget gates)
  bool peephole = false;      // LSTM: DirectionTensors::peephole
  // Per direction, the cell's functions in ONNX's order: f (gates), g (candidate; the simple RNN's only
  // one), h (LSTM cell output); else act / ract as below.
  bool gate_acts = false;
  GateAct acts[2][3];

  bool general() const { return clip_on || input_forget || peephole || gate_acts; }
  dim_t gates() const { return cell == LayerKind::Lstm ? 4 : cell == LayerKind::Gru ? 3 : 1; }
  dim_t hidden_out() const { return proj_size ? proj_size : units; }
  int num_directions() const { return direction == Direction::Bidirectional ? 2 : 1; }
  dim_t output_size() const {
    return direction == Direction::Bidirectional && merge == Merge::Concat ? 2 * hidden_out() : hidden_out();
  }
};

// Weights of one direction, canonical layout (see cells in layers/recurrent.cc).  The matrices
// are float32, uint16 (bf16 bit patterns) or int8 as RecurrentConfig::precision says; int8 ones
// come with per-row scales s_* (W[r, c] ~ q[r, c] * s[r]), validated by the caller (finite, >= 0).
struct DirectionTensors {
  const void* w_ih = nullptr;   // [G*H, I]
  const void* w_hh = nullptr;   // [G*H, P]
  const float* b_ih = nullptr;  // [G*H]
  const float* b_hh = nullptr;  // [G*H]
  const void* w_hr = nullptr;   // [P, H] or null
  const float *s_ih = nullptr, *s_hh = nullptr, *s_hr = nullptr;  // int8: [G*H], [G*H], [P]
  const float* peephole = nullptr;  // LSTM [3, H]: p_i, p_f, p_o (RecurrentConfig::peephole)
  // The default initial state (used when a call gives none): h [P], c [H] (LSTM); null: zeros.
  const float *h0 = nullptr, *c0 = nullptr;
};

}  // namespace fastrnn
