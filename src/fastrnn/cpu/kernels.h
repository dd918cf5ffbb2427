// Kernel table: the element-wise and gate kernels, compiled once per ISA (kernels_<isa>.cc,
// each with its own flags and namespace) and chosen at run time (dispatch.cc).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fastrnn::cpu {

// Element-wise activations. The names are the shared vocabulary with fastrnn/spec.py
// (ACTIVATIONS + AXIS_ACTIVATIONS); a test asserts both lists are equal.
enum class Act : int {
  Linear, Tanh, Sigmoid, Relu, Relu6, HardSigmoid, HardSigmoidTf2, Elu, Selu, Softplus, Softsign, Silu, HardSilu,
  Exponential, LeakyRelu, Gelu, GeluTanh, HardTanh, Mish, LogSigmoid,
  Softmax, LogSoftmax, L2Normalize,  // over the last axis: Dense / Activation only
  Count
};
const std::vector<std::string>& act_names();
Act act_from_name(const std::string& name);  // throws UnsupportedError
inline bool is_axis_act(Act a) { return a == Act::Softmax || a == Act::LogSoftmax || a == Act::L2Normalize; }

// Packed weight layouts.  Each ISA packs its weights for its own register tile: the panel
// width (floats per packed column panel) and the unit block of the fused recurrent step belong
// to the KernelTable (kernels_impl.h), so a layout is made for one table and used only with it
// (matmul.h keeps one layout per ISA, made on first use: set_isa() mid-process stays correct).
//
// Panels: W [N, K] row-major -> out[p][k][0:panel] = W[p*panel + c, k] (zero padded past N).
inline long packed_size(long N, long K, long panel) { return (N + panel - 1) / panel * panel * K; }
inline void pack_panels(const float* w, long N, long K, float* out, long panel) {
  for (long p = 0; p * panel < N; ++p)
    for (long k = 0; k < K; ++k)
      for (long c = 0; c < panel; ++c) {
        const long j = p * panel + c;
        out[(p * K + k) * panel + c] = j < N ? w[j * K + k] : 0.f;
      }
}

// One recurrent step with the gate math fused into the matmul (KernelTable::recurrent_fused).
// W_hh [G*H, K] (or [W_ih | W_hh], see K_in) is laid out in blocks of U = block_units(G) hidden
// units, each block carrying all G gates of its units: block q, input k holds, gate after gate,
// the U weights W_hh[g*H + q*U + c, k] (c < U, zero past H), i.e. the panel layout of the
// regrouped matrix (row (q*G + g)*U + c) with panel width G*U (pack_fused).  Each block is cut by
// columns into sub-panels of VS vectors stored one after the other (VS = fused_sub_vecs: the GEMM
// panel's width where it divides the block, else the whole block): the VS*vec weights of block q,
// sub-panel s, input k start at float q*K*G*U + s*K*VS*vec + k*VS*vec.  (AVX2: an LSTM block's
// (i, f) and (g, o) vectors are two sub-panels, for the GEMM's 6 x 2 tile.)  For the unit blocks
// [q0, q1) of every row the kernel sums the gates in registers (from the input part), stages them
// in L1 and runs the cell update over them there, writing h (and c) once (kernels_impl.h):
//   G = 4, LSTM (i f g o):  a = x + W_hh h;  c' = ract(a_f)*c + ract(a_i)*act(a_g);  h' = ract(a_o)*act(c')
//   G = 3, GRU reset after (r z n): a_r = x_r + W_hr h, a_z = x_z + W_hz h, a_n = b_hn + W_hn h;
//          r = ract(a_r), z = ract(a_z), n = act(x_n + r*a_n);  h' = (1-z)*n + z*h
//   G = 1, simple RNN:      h' = act(x + W_hh h)
// x: the step's input projection with every bias but b_hn folded in, canonical gate order
// (unit j of gate g at x[row*ldx + g*H + j]).  Rows whose mask says "keep" are written anyway
// (the caller restores them).
struct FusedStep {
  int G = 4;
  Act act = Act::Tanh, ract = Act::Sigmoid;
  long nb = 0, H = 0, K = 0;      // rows, units, width of the recurrent input h
  // Input projection folded into the step (LSTM / RNN with a narrow input): the layout's blocks
  // start with K_in input columns ([W_ih | W_hh], pack_fused of the concatenated matrix).  With
  // x_in ([nb, ldxi], this step's inputs) they are multiplied in and x is just the bias (ldx 0);
  // with x_in null they are skipped (x then holds the projection, as without folding).
  long K_in = 0;
  const float* x_in = nullptr;
  long ldxi = 0;
  long q0 = 0, q1 = 0;            // unit blocks to compute
  const float* h = nullptr;       // [nb, ldh] recurrent input (GRU: also h_prev of the update, K == H)
  long ldh = 0;
  const float* w = nullptr;       // pack_fused layout for this kernel table
  const float* x = nullptr;       // [nb, ldx]
  long ldx = 0;
  const float* b_hn = nullptr;    // GRU [H]
  const float* c_prev = nullptr;  // LSTM [nb, ldc]
  float* c_new = nullptr;
  long ldc = 0;
  float* h_new = nullptr;         // [nb, ldo] (not overlapping h: units are updated while others' sums still read h)
  long ldo = 0;
  float* part = nullptr;          // scratch, fused_part_size() floats (staging area of the gate sums)
};

// Reduced-precision weight products (qkernels_impl.h has the equations and the per-ISA paths).
// Weight layouts (one per precision for every ISA): rows zero padded to Kp = qpad(K) elements and to
// a multiple of the row block (qrow_block: 4 for bf16, 16 for int8).
//   bf16: blocks of kQRows rows interleaved by chunks of qchunk() elements (64 bytes), so a tile of
//   rows streams through one contiguous run of memory:
//   element (n, k) at qoffset(n, k, Kp, CH) = (n / 4) * 4 * Kp + (k - k % CH) * 4 + (n % 4) * CH + k % CH.
//   int8: blocks of kQRowsI8 = 16 rows; per quad of k (k = 4j .. 4j + 3) the 16 rows' 4 bytes:
//   element (n, k) at qoffset_i8(n, k, Kp) = (n / 16) * 16 * Kp + (k / 4) * 64 + (n % 16) * 4 + k % 4.
//   A block is one contiguous run of 16 * Kp bytes, row block q at q * 16 * Kp.
// x [nb, ldx] padded to Kp columns (bf16: float32 x, zeros past K; int8: q_x, zeros past K).
constexpr long kQPad = 64, kQRows = 4;
inline long qpad(long K) { return (K + kQPad - 1) / kQPad * kQPad; }
constexpr long qchunk(long elem_bytes) { return 64 / elem_bytes; }
constexpr long qoffset(long n, long k, long Kp, long CH) {
  return (n / kQRows) * kQRows * Kp + (k - k % CH) * kQRows + (n % kQRows) * CH + k % CH;
}
constexpr long kQRowsI8 = 16;
constexpr long qoffset_i8(long n, long k, long Kp) {
  return (n / kQRowsI8) * kQRowsI8 * Kp + (k / 4) * 4 * kQRowsI8 + (n % kQRowsI8) * 4 + k % 4;
}
// rows of a block of the layout for elements of elem_bytes (1: int8, 2: bf16), and N rounded up to it
constexpr long qrow_block(long elem_bytes) { return elem_bytes == 1 ? kQRowsI8 : kQRows; }
inline long qrows(long N, long elem_bytes) {
  const long rb = qrow_block(elem_bytes);
  return (N + rb - 1) / rb * rb;
}
// int8 activations are quantized per row to [-m, m], m = int8_xmax() (Mat's quantize_rows), one
// value per process for every ISA, so that all paths give the same integer sums:
//   127 (8 bits) where every int8 path of the CPU is exact at full range: VNNI (vpdpbusd on x ^ 0x80),
//       aarch64 (sdot s8 x s8), the portable loops;
//   63 (7 bits: the range reduction, as PyTorch's reduce_range on x86) on x86 CPUs without VNNI, whose
//       vpmaddubsw paths then take x + 64, an unsigned byte in [1, 127]: pairs stay within
//       2 * 127 * 127 = 32258 < 2^15 (exact) with no sign transfer per product (qkernels_impl.h).
// FASTRNN_INT8_ACT_BITS=7 or 8 overrides the choice (read once); the AVX2 / AVX-512BW paths also
// take 8-bit activations (sign transfer: the paths a VNNI CPU runs under set_isa("avx2")).
constexpr int kXQMaxReduced = 63, kXQMaxFull = 127;
int int8_xmax();
struct QGemm {
  long nb = 0, N = 0, Kp = 0;
  const void* x = nullptr;              // float [nb, ldx] (bf16) / int8 [nb, ldx] in [-xmax, xmax] (int8)
  int xmax = kXQMaxFull;                // int8: the activations' range (kXQMaxReduced or kXQMaxFull)
  long ldx = 0;
  const float* xscale = nullptr;        // int8: [nb]
  const void* w = nullptr;              // uint16 (bf16 bits), qoffset layout / int8, qoffset_i8 layout
  const float* wscale = nullptr;        // int8: [N]
  const std::int32_t* wsum = nullptr;   // int8: [N], sum_k w[n, k] (the offset of x + 64 / x + 128)
  const float* init = nullptr;          // y = init[n] + ... (else y += ... when accumulate, else y = ...)
  bool accumulate = false;
  float* y = nullptr;
  long ldy = 0;
};

struct KernelTable;
long block_units(const KernelTable& k, long G);
// Vectors per sub-panel of a fused block of V vectors, the GEMM panel being panel_vecs vectors wide.
constexpr long fused_sub_vecs(long V, long panel_vecs) { return V % panel_vecs == 0 ? panel_vecs : V; }
inline long fused_blocks(const KernelTable& k, long G, long H) { return (H + block_units(k, G) - 1) / block_units(k, G); }
inline long fused_size(const KernelTable& k, long G, long H, long K) { return fused_blocks(k, G, H) * G * block_units(k, G) * K; }
// Rows of a row block in the kernels (their inputs stay in cache while W streams past).
constexpr long kFusedRowBlock = 96;
// Weights of one step beyond this size do not stay in a core's L2 from one step to the next: 3/4 of
// the smallest L2 per core of the CPUs we tune for (Zen 1 / 2: 512 KiB), the rest of L2 being the
// step's other data.  The fused step prefetches such weights slice by slice (kernels_impl.h), and a
// batch > 1 splits their hidden units across a thread team rather than streaming them on every
// core (Recurrent::split_batch).
constexpr long kL2WeightBytes = 384 * 1024;
// A core's L2, in bytes (Linux: /sys/devices/system/cpu/cpu0/cache, the level-2 data or unified
// entry); 0 if unknown.  FASTRNN_L2_BYTES=n overrides it (0: unknown).
long l2_bytes();
// Weights that stay in this machine's L2 from one step to the next: 3/4 of l2_bytes(), the rest being
// the step's other data (kL2WeightBytes is the same share of the smallest L2 we tune for); 0 if unknown.
long l2_resident_bytes();
// The last-level cache a core reaches, in bytes (Linux: /sys/devices/system/cpu/cpu0/cache, the
// level-3 entry: on AMD the CCX's share, not the socket's sum that sysconf reports); 0 if unknown.
// FASTRNN_L3_BYTES=n overrides it (0: unknown).
long l3_bytes();
// Scratch floats recurrent_fused needs for nb rows (at most kFusedRowBlock x G*U).
long fused_part_size(const KernelTable& k, long G, long H, long K, long nb);
void pack_fused(const KernelTable& k, const float* w_hh, long G, long H, long K, float* out);

struct KernelTable {
  const char* isa;
  int slot;          // index of this ISA's packed layouts (0 generic, 1 avx2, 2 avx512)
  long vec;          // floats per vector register
  long panel;        // floats per packed panel of gemm_packed (pack_panels)
  long panel_vecs_fused;  // vectors per unit block of the fused step (block_units)
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
  // g[b*ldg + j] += sum_k h[b*ldh + k] * W[j, k] for b < nb, j < N; W packed by pack_panels(panel).
  // With init != nullptr (N floats): g[b*ldg + j] = init[j] + sum (g is not read).
  void (*gemm_packed)(long nb, long N, long K, const float* h, long ldh, const float* packed, float* g, long ldg,
                      const float* init);
  // One recurrent step, gate math fused (FusedStep above).
  void (*recurrent_fused)(const FusedStep& a);
  // Benchmark probe: `iters` rounds of independent vector FMAs; returns the flops done.
  double (*fma_probe)(long iters);
  // Benchmark probe: reads the n floats at p (n a multiple of 8 vectors) `reps` times with vector
  // loads, as a batch-1 step reads its weights; returns a sum of them (so the reads are not elided).
  float (*read_probe)(const float* p, long n, long reps);
  // y (+)= x W^T with bf16 / int8 weights (QGemm); the VNNI / BF16 instructions are chosen inside
  // from cpuid.  qpaths(): which paths run on this CPU, in words.
  void (*gemm_bf16)(const QGemm& a);
  void (*gemm_i8)(const QGemm& a);
  const char* (*qpaths)();
};

constexpr int kIsaSlots = 3;
const KernelTable& kernels();                          // the table in use
const KernelTable* kernels_for(const std::string& isa);  // nullptr if not compiled / not supported by this CPU
void set_isa(const std::string& isa);                  // throws if unavailable
std::vector<std::string> available_isas();             // worst to best
std::vector<std::string> compiled_isas();

}  // namespace fastrnn::cpu
