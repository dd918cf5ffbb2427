// Kernel table: the element-wise and gate kernels, compiled once per ISA (kernels_<isa>.cc,
// each with its own flags and namespace) and chosen at run time (dispatch.cc).
#pragma once
#include <string>
#include <vector>

namespace fastrnn::cpu {

// Element-wise activations. The names are the shared vocabulary with fastrnn/spec.py
// (ACTIVATIONS + AXIS_ACTIVATIONS); a test asserts both lists are equal.
enum class Act : int {
  Linear, Tanh, Sigmoid, Relu, Relu6, HardSigmoid, HardSigmoidTf2, Elu, Selu, Softplus, Softsign, Silu, HardSilu,
  Exponential, LeakyRelu, Gelu, GeluTanh, HardTanh, Mish, LogSigmoid,
  Softmax, LogSoftmax,  // over the last axis: Dense / Activation only
  Count
};
const std::vector<std::string>& act_names();
Act act_from_name(const std::string& name);  // throws UnsupportedError
inline bool is_axis_act(Act a) { return a == Act::Softmax || a == Act::LogSoftmax; }

// Column-panel width of packed recurrent weights (same for every ISA, so packing does not
// depend on the ISA chosen later).
constexpr long kPanel = 32;
// W [N, K] row-major -> panels: out[p][k][0:kPanel] = W[p*kPanel + c, k] (zero padded past N).
// out must hold packed_size(N, K) floats.
inline long packed_size(long N, long K) { return (N + kPanel - 1) / kPanel * kPanel * K; }
inline void pack_panels(const float* w, long N, long K, float* out) {
  for (long p = 0; p * kPanel < N; ++p)
    for (long k = 0; k < K; ++k)
      for (long c = 0; c < kPanel; ++c) {
        const long j = p * kPanel + c;
        out[(p * K + k) * kPanel + c] = j < N ? w[j * K + k] : 0.f;
      }
}

struct KernelTable {
  const char* isa;
  // x[0..n) = act(x), element-wise (softmax family: over the whole row of n).
  void (*activate)(Act act, float* x, long n);
  // y[0..n) = x + b (then activate)
  void (*bias_act)(Act act, const float* b, float* x, long n);
  // LSTM, gates g = [i f g o] pre-activations (H each, input+recurrent+bias already summed):
  //   c_new = ract(f)*c_prev + ract(i)*act(g);  h_new = ract(o)*act(c_new).  g is scratch.
  void (*lstm_cell)(Act act, Act ract, float* g, const float* c_prev, float* c_new, float* h_new, long H);
  // GRU, reset after the recurrent matmul (PyTorch; Keras reset_after=True):
  //   gx = [r z n] input part + b_ih (+ b_hr, b_hz folded in); gh = W_hh h (no bias); b_hn = recurrent n bias
  //   r = ract(gx_r + gh_r); z = ract(gx_z + gh_z); n = act(gx_n + r*(gh_n + b_hn)); h_new = (1-z)*n + z*h_prev
  void (*gru_cell_after)(Act act, Act ract, float* gx, const float* gh, const float* b_hn, const float* h_prev,
                         float* h_new, long H);
  // GRU, reset before (Keras reset_after=False), phase 1: g[0:2H] = ract(g[0:2H]) (r, z); rh = r*h_prev
  void (*gru_before_rz)(Act ract, float* g, const float* h_prev, float* rh, long H);
  // phase 2: g[2H:3H] holds x-part + b + W_hn(r*h); h_new = (1-z)*act(g_n) + z*h_prev
  void (*gru_before_out)(Act act, float* g, const float* h_prev, float* h_new, long H);
  // g[b*ldg + j] += sum_k h[b*ldh + k] * W[j, k] for b < nb, j < N; W packed by pack_panels.
  // With init != nullptr (N floats): g[b*ldg + j] = init[j] + sum (g is not read).
  void (*gemm_packed)(long nb, long N, long K, const float* h, long ldh, const float* packed, float* g, long ldg,
                      const float* init);
  // Benchmark probe: `iters` rounds of independent vector FMAs; returns the flops done.
  double (*fma_probe)(long iters);
};

const KernelTable& kernels();                          // the table in use
const KernelTable* kernels_for(const std::string& isa);  // nullptr if not compiled / not supported by this CPU
void set_isa(const std::string& isa);                  // throws if unavailable
std::vector<std::string> available_isas();             // worst to best
std::vector<std::string> compiled_isas();

}  // namespace fastrnn::cpu
