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
};

}  // namespace fastrnn
