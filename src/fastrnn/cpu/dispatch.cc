// Run-time ISA choice: detect what the CPU has, pick the best compiled kernel table once,
// allow an override (FASTRNN_FORCE_ISA, set_isa()) so tests can force every path.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>

#include "fastrnn/common.h"
#include "fastrnn/cpu/kernels.h"

namespace fastrnn::cpu {
namespace generic { const KernelTable& table(); }
#if defined(FASTRNN_HAVE_AVX2)
namespace avx2 { const KernelTable& table(); }
#endif
#if defined(FASTRNN_HAVE_AVX512)
namespace avx512 { const KernelTable& table(); }
#endif

namespace {
// "32768K" / "8M" / "1048576" -> bytes (0 when unreadable)
long parse_size(const std::string& t) {
  char* end = nullptr;
  const long v = std::strtol(t.c_str(), &end, 10);
  if (end == t.c_str() || v <= 0) return 0;
  switch (*end) {
    case 'K': return v << 10;
    case 'M': return v << 20;
    case 'G': return v << 30;
    default: return v;
  }
}
std::string read_word(const std::string& path) {
  std::ifstream f(path);
  std::string w;
  f >> w;
  return w;
}
}  // namespace

namespace {
// The size of cpu0's cache of this level holding data (sysfs), or env's value when set; 0 if unknown.
long cache_bytes(const char* level, const char* env) {
  if (const char* e = std::getenv(env); e && *e) return std::max(0L, std::atol(e));
  const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index";
  for (int i = 0; i < 8; ++i) {
    const std::string d = dir + std::to_string(i);
    if (read_word(d + "/level") == level && read_word(d + "/type") != "Instruction") return parse_size(read_word(d + "/size"));
  }
  return 0L;
}
}  // namespace

long l2_bytes() {
  static const long bytes = cache_bytes("2", "FASTRNN_L2_BYTES");
  return bytes;
}

long l2_resident_bytes() { return l2_bytes() / 4 * 3; }

long l3_bytes() {
  static const long bytes = cache_bytes("3", "FASTRNN_L3_BYTES");
  return bytes;
}

int int8_xmax() {
  static const int m = [] {
    if (const char* e = std::getenv("FASTRNN_INT8_ACT_BITS"); e && *e) {
      const std::string v(e);
      if (v == "7") return kXQMaxReduced;
      if (v == "8") return kXQMaxFull;
      fail<UnsupportedError>("FASTRNN_INT8_ACT_BITS=", v, ": use 7 or 8 (bits of the int8 activations)");
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    const bool vnni = __builtin_cpu_supports("avxvnni") ||
                      (__builtin_cpu_supports("avx512vnni") && kernels_for("avx512") != nullptr);
    return vnni ? kXQMaxFull : kXQMaxReduced;
#else
    return kXQMaxFull;
#endif
  }();
  return m;
}

namespace {
bool cpu_has(const std::string& isa) {
  if (isa == "generic") return true;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
  return false;
}

const KernelTable* compiled(const std::string& isa) {
  if (isa == "generic") return &generic::table();
#if defined(FASTRNN_HAVE_AVX2)
  if (isa == "avx2") return &avx2::table();
#endif
#if defined(FASTRNN_HAVE_AVX512)
  if (isa == "avx512") return &avx512::table();
#endif
  return nullptr;
}

const KernelTable* choose_default() {
  if (const char* env = std::getenv("FASTRNN_FORCE_ISA"); env && *env) {
    const KernelTable* t = kernels_for(env);
    if (!t) fail<UnsupportedError>("FASTRNN_FORCE_ISA=", env, " is not available on this CPU/build");
    return t;
  }
  auto isas = available_isas();
  return kernels_for(isas.back());
}

std::atomic<const KernelTable*> current{nullptr};
}  // namespace

// Decided by the build alone: nothing compiled for an ISA may run before cpu_has() says yes.
std::vector<std::string> compiled_isas() {
  std::vector<std::string> out{"generic"};
#if defined(FASTRNN_HAVE_AVX2)
  out.emplace_back("avx2");
#endif
#if defined(FASTRNN_HAVE_AVX512)
  out.emplace_back("avx512");
#endif
  return out;
}

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (auto& i : compiled_isas())
    if (cpu_has(i)) out.push_back(i);
  return out;
}

const KernelTable* kernels_for(const std::string& isa) { return cpu_has(isa) ? compiled(isa) : nullptr; }

const KernelTable& kernels() {
  const KernelTable* t = current.load(std::memory_order_acquire);
  if (!t) {
    t = choose_default();
    current.store(t, std::memory_order_release);
  }
  return *t;
}

void set_isa(const std::string& isa) {
  const KernelTable* t = kernels_for(isa);
  if (!t) fail<UnsupportedError>("ISA '", isa, "' is not available here (available: ", [] {
    std::string s;
    for (auto& i : available_isas()) s += (s.empty() ? "" : ", ") + i;
    return s;
  }(), ")");
  current.store(t, std::memory_order_release);
}

long block_units(const KernelTable& k, long G) {
  return k.vec * (G >= k.panel_vecs_fused ? 1 : k.panel_vecs_fused / G);
}

long fused_part_size(const KernelTable& k, long G, long H, long K, long nb) {
  (void)K;
  if (nb == 1) return fused_blocks(k, G, H) * G * block_units(k, G);  // one row: all its blocks
  return (nb < kFusedRowBlock ? nb : kFusedRowBlock) * G * block_units(k, G);
}

void pack_fused(const KernelTable& k, const float* w_hh, long G, long H, long K, float* out) {
  const long U = block_units(k, G), PW = G * U;
  const long SP = fused_sub_vecs(PW / k.vec, k.panel / k.vec) * k.vec;  // floats per sub-panel column
  for (long q = 0; q * U < H; ++q)
    for (long kk = 0; kk < K; ++kk)
      for (long g = 0; g < G; ++g)
        for (long c = 0; c < U; ++c) {
          const long j = q * U + c, col = g * U + c, s = col / SP;  // column of the block, its sub-panel
          out[q * K * PW + s * K * SP + kk * SP + col - s * SP] = j < H ? w_hh[(g * H + j) * K + kk] : 0.f;
        }
}

const std::vector<std::string>& act_names() {
  static const std::vector<std::string> names = {
      "linear", "tanh", "sigmoid", "relu", "relu6", "hard_sigmoid", "hard_sigmoid_tf2", "elu", "selu", "softplus",
      "softsign", "silu", "hard_silu", "exponential", "leaky_relu", "gelu", "gelu_tanh", "hard_tanh", "mish",
      "log_sigmoid", "softmax", "log_softmax", "l2_normalize"};
  return names;
}

Act act_from_name(const std::string& name) {
  const auto& n = act_names();
  for (std::size_t i = 0; i < n.size(); ++i)
    if (n[i] == name) return static_cast<Act>(i);
  fail<UnsupportedError>("activation '", name, "' is not supported");
}

}  // namespace fastrnn::cpu
