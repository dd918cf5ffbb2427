// Reduced-precision weight products (bf16 and int8 weights), included by kernels_impl.h and so
// compiled once per ISA TU.  Every path computes, for b < nb, n < N (kernels.h, QGemm):
//
//   bf16:  y[b, n] = base + sum_k f32(w[n, k]) * x[b, k]           (x float32, f32 accumulation)
//   int8:  y[b, n] = base + f32(sum_k q_x[b, k] * q_w[n, k]) * (s_x[b] * s_w[n])   (exact int32 sum)
//   base = init[n] (init given), y[b, n] (accumulate), else 0.
//
// Layouts (one per precision for every ISA, so a model needs no per-ISA copy; kernels.h):
//   bf16 (qoffset): W [N, Kp], rows zero padded to Kp = qpad(K) and to a multiple of 4, blocks of 4
//     rows interleaved by 64-byte chunks of k (a tile of rows reads one contiguous stream: with rows
//     apart, the batch-1 product ran at a quarter of the L3 bandwidth on Zen 1).  Products are row
//     dot products: a tile of R x rows x C weight rows keeps R*C vector accumulators, then each is
//     reduced across its lanes.
//   int8 (qoffset_i8): blocks of 16 rows; per quad of k (4 consecutive k) the 16 rows' 4 bytes, 64
//     bytes.  A vector of L int32 lanes covers L rows of a quad: multiplied by the broadcast of x's 4
//     bytes of that quad (vpmaddubsw + vpmaddwd, vpdpbusd, sdot), each lane gains its row's 4
//     products.  The accumulators are outputs (no horizontal sums; those cost ~1/6 of the batch-1
//     product at K = 256 and half of a 100-row projection at K = 64 in the row layout, Zen 3).
// x as [nb, ldx] padded alike (bf16: zeros past K; int8: q_x = 0 past K).  Loop order: weight rows
// outer (a tile's rows of W stay in L1 while every x row passes; W is streamed from memory once per
// call), x rows inner.
//
// int8 is exact in every path (no int16 saturation anywhere), so all ISAs agree bit for bit on
// the integer sums, and every path turns a sum into y with the same float operations (qstore_i8,
// qstore8_i8: a row gives the same bits whichever path or tile computes it); bf16 paths differ only
// in the order of the float additions (the AVX512_BF16 path's three-term split of x is exact):
//   portable:    int32 loops / 16 float partial sums (vectorized by the compiler; SSE2, NEON).
//                aarch64 runs it for bf16 (no BFDOT path yet), and for int8 on cores without dotprod.
//   NEON dotprod (aarch64 Linux, ARMv8.2 sdot, chosen at run time from AT_HWCAP & HWCAP_ASIMDDP):
//                int8: vdotq_s32(acc, w, x quad replicated): s8 x s8, each of 4 lanes (rows) gains
//                the sum of its 4 products (|x|, |w| <= 127: no saturation, nothing to offset).
//                The rest of the aarch64 build is plain armv8-a (the function alone is compiled for
//                +dotprod, a target attribute), so the baseline build runs everywhere.
//   AVX2:        int8, 7-bit activations (the range reduction, kernels.h int8_xmax: x86 without VNNI):
//                vpmaddubsw(x + 64, w) + vpmaddwd(., 1) + vpaddd, minus 64 * sum_k w[n, k]
//                (QGemm::wsum, per row).  x in [-63, 63], so x + 64 is an unsigned byte in [1, 127]
//                and a pair (x0 + 64) w0 + (x1 + 64) w1 is within 2*127*127 = 32258: never saturates
//                int16.  8-bit activations (a VNNI CPU under set_isa("avx2")): vpmaddubsw(|x|,
//                sign(w, x)), pairs within the same bound; the sign transfer per product costs 1.45x in
//                the inner loop on Zen 3 (vpsignb shares the two pipes of the multiplies).
//                bf16: vpmovzxwd + vpslld 16 (bf16 -> f32 exactly) + vfmadd.
//   AVX-VNNI / AVX-512 VNNI: vpdpbusd(acc, x ^ 0x80, w) = sum (x + 128) w, minus 128 * sum_k w[n, k]:
//                exact, one instruction per 32/64 products.
//   AVX-512BW:   as AVX2 with 512-bit vectors (8-bit x: w negated under the mask x < 0).
//   AVX-512F:    bf16 as AVX2, 512-bit.
//   AVX512_BF16: opt-in (FASTRNN_BF16_DPBF16=1, see has_cpu).  vdpbf16ps needs bf16 on both sides;
//                x = hi + mid + lo, each the bf16 round-to-nearest-even of what the terms before
//                leave (hi = bf16(x), mid = bf16(x - hi), lo = bf16(x - hi - mid) = x - hi - mid:
//                8 + 8 + 8 bits hold x's 24), three vdpbf16ps per weight vector: the products of
//                the float32 paths, within the order of the float additions.  (vdpbf16ps reads
//                bf16 denormals as zero: lo terms of |x| < ~1e-33 are lost, far below float32
//                rounding of any sum they join.)
// The VNNI / BF16 instructions are compiled with target attributes and chosen at run time from
// cpuid (qpaths() names what runs; vdpbf16ps only with FASTRNN_BF16_DPBF16=1, see has_cpu); the
// build never needs -march=native.

#if defined(__aarch64__) && defined(__linux__)
#include <arm_neon.h>
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

namespace {
using fastrnn::cpu::QGemm;

FI float bf16_f32(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// The product d reaches the addition of the base as a finished float: an empty asm hides where it
// came from, so the compiler cannot contract the multiply into an FMA in one path and not in
// another (the scalar and the four-lane stores below must give the same bits).
#if defined(__x86_64__) || defined(__i386__)
#define FASTRNN_OPAQUE(v) __asm__("" : "+x"(v))
#elif defined(__aarch64__)
#define FASTRNN_OPAQUE(v) __asm__("" : "+w"(v))
#else
#define FASTRNN_OPAQUE(v) ((void)0)
#endif
FI void qstore(const QGemm& a, long b, long n, float d) {
  FASTRNN_OPAQUE(d);
  float* y = a.y + b * a.ldy + n;
  *y = (a.init ? a.init[n] : a.accumulate ? *y : 0.f) + d;
}
FI void qstore_i8(const QGemm& a, long b, long n, std::int32_t acc) {
  qstore(a, b, n, static_cast<float>(acc) * (a.xscale[b] * a.wscale[n]));
}

// ---- portable ------------------------------------------------------------------------------
// bf16: y = base + sum_k f32(w[n,k]) x[b,k], 16 partial sums per row (lane l takes k = l mod 16),
// added pairwise; a block of 4 weight rows per pass over x.
constexpr long kChB = fastrnn::cpu::qchunk(2);
[[maybe_unused]] void gemm_bf16_portable(const QGemm& a) {
  constexpr int L = 16;
  const auto* W = static_cast<const std::uint16_t*>(a.w);
  const auto* X = static_cast<const float*>(a.x);
  for (long n0 = 0; n0 < a.N; n0 += 4)
    for (long b = 0; b < a.nb; ++b) {
      const float* x = X + b * a.ldx;
      float acc[4][L] = {};
      for (long k = 0; k < a.Kp; k += kChB) {
        const std::uint16_t* blk = W + fastrnn::cpu::qoffset(n0, k, a.Kp, kChB);
        for (int c = 0; c < 4; ++c)
          for (long e = 0; e < kChB; e += L)
            for (int l = 0; l < L; ++l) acc[c][l] += x[k + e + l] * bf16_f32(blk[c * kChB + e + l]);
      }
      for (int c = 0; c < 4 && n0 + c < a.N; ++c) {
        for (int s = L / 2; s > 0; s /= 2)
          for (int l = 0; l < s; ++l) acc[c][l] += acc[c][l + s];
        qstore(a, b, n0 + c, acc[c][0]);
      }
    }
}
// int8: y = base + f32(sum_k q_x q_w) * s_x[b] * s_w[n]; a block of 16 weight rows per pass over x.
[[maybe_unused]] void gemm_i8_portable(const QGemm& a) {
  constexpr long B = fastrnn::cpu::kQRowsI8;
  const auto* W = static_cast<const std::int8_t*>(a.w);
  const auto* X = static_cast<const std::int8_t*>(a.x);
  for (long n0 = 0; n0 < a.N; n0 += B)
    for (long b = 0; b < a.nb; ++b) {
      const std::int8_t* x = X + b * a.ldx;
      const std::int8_t* blk = W + n0 * a.Kp;
      std::int32_t acc[B] = {};
      for (long j = 0; j < a.Kp / 4; ++j)
        for (long r = 0; r < B; ++r)
          for (long e = 0; e < 4; ++e) acc[r] += std::int32_t(x[4 * j + e]) * blk[j * 4 * B + r * 4 + e];
      for (long r = 0; r < B && n0 + r < a.N; ++r) qstore_i8(a, b, n0 + r, acc[r]);
    }
}

// ---- the tiled driver of the SIMD paths ----------------------------------------------------
// Ops: Acc (accumulator vector), Xv (a prepared x vector), Wv (a weight vector), kEs (bytes per
// weight), kStep (k per vector), zero(), load_x(a, b, k), load_w(p) (p: the weights of k in the
// layout), mac(acc, xv, wv), store(a, b, n, acc).  Every tile starts at a multiple of 4 rows or is
// one row, so its rows' chunks are contiguous runs.
// (A macro, so that the paths built with target attributes get a driver with the same attributes:
// GCC inlines a target-specific function only into one compiled for that target.)
#define FASTRNN_QDRIVER(NAME, ATTR)                                                      \
  template <class Ops, int R, int C>                                                     \
  FI ATTR void NAME##_tile(const QGemm& a, long b0, long n0) {                           \
    constexpr long CH = fastrnn::cpu::qchunk(Ops::kEs);                                  \
    typename Ops::Acc acc[R][C];                                                         \
    const char* wr[C];                                                                   \
    for (int c = 0; c < C; ++c) {                                                        \
      wr[c] = static_cast<const char*>(a.w) + fastrnn::cpu::qoffset(n0 + c, 0, a.Kp, CH) * Ops::kEs; \
      for (int r = 0; r < R; ++r) acc[r][c] = Ops::zero();                               \
    }                                                                                    \
    for (long kc = 0; kc < a.Kp; kc += CH)                                               \
      for (long e = 0; e < CH; e += Ops::kStep) {                                        \
        typename Ops::Wv wv[C];                                                          \
        for (int c = 0; c < C; ++c) wv[c] = Ops::load_w(wr[c] + (kc * fastrnn::cpu::kQRows + e) * Ops::kEs); \
        for (int r = 0; r < R; ++r) {                                                    \
          const typename Ops::Xv xv = Ops::load_x(a, b0 + r, kc + e);                    \
          for (int c = 0; c < C; ++c) Ops::mac(acc[r][c], xv, wv[c]);                    \
        }                                                                                \
      }                                                                                  \
    for (int r = 0; r < R; ++r)                                                          \
      for (int c = 0; c < C; ++c) Ops::store(a, b0 + r, n0 + c, acc[r][c]);              \
  }                                                                                      \
  template <class Ops, int R, int C, int C1>                                             \
  FI ATTR void NAME(const QGemm& a) {                                                    \
    if (a.nb == 1) {                                                                     \
      long n = 0;                                                                        \
      for (; n + C1 <= a.N; n += C1) NAME##_tile<Ops, 1, C1>(a, 0, n);                   \
      for (; n < a.N; ++n) NAME##_tile<Ops, 1, 1>(a, 0, n);                              \
      return;                                                                            \
    }                                                                                    \
    long n = 0;                                                                          \
    for (; n + C <= a.N; n += C) {                                                       \
      long b = 0;                                                                        \
      for (; b + R <= a.nb; b += R) NAME##_tile<Ops, R, C>(a, b, n);                     \
      for (; b < a.nb; ++b) NAME##_tile<Ops, 1, C>(a, b, n);                             \
    }                                                                                    \
    for (; n < a.N; ++n)                                                                 \
      for (long b = 0; b < a.nb; ++b) NAME##_tile<Ops, 1, 1>(a, b, n);                   \
  }
// Tiles of R x rows x C weight rows (C1 weight rows at once for a single x row: batch 1 needs
// more independent chains), remainders with one x row / one weight row.  (bf16.)
FASTRNN_QDRIVER(qrun, )

// The int8 driver (the quad layout, kernels.h qoffset_i8).  Ops: V (accumulator vector of kL int32
// lanes = kL weight rows), Xb (x's quad broadcast, prepared), zero(), load_w(p), bcast(a, b, j) (x row
// b, k = 4j .. 4j + 3), mac(acc, xb, w), store(a, b, n, acc, cnt) (rows n .. n + cnt - 1, cnt <= kL).
// A tile: R x rows x CB blocks of 16 weight rows (16 / kL vectors per block); CB1 blocks for a single
// x row.  The block's quads for all its rows are one contiguous run of W.
#define FASTRNN_QDRIVER_I8(NAME, ATTR)                                                   \
  template <class Ops, int R, int CB>                                                    \
  FI ATTR void NAME##_tile(const QGemm& a, long b0, long q0) {                           \
    constexpr long BR = fastrnn::cpu::kQRowsI8;                                          \
    constexpr int NV = CB * int(BR / Ops::kL);                                           \
    typename Ops::V acc[R][NV];                                                          \
    for (int r = 0; r < R; ++r)                                                          \
      for (int v = 0; v < NV; ++v) acc[r][v] = Ops::zero();                              \
    const std::int8_t* w0 = static_cast<const std::int8_t*>(a.w) + q0 * BR * a.Kp;       \
    for (long j = 0; j < a.Kp / 4; ++j) {                                                \
      typename Ops::V wv[NV];                                                            \
      for (int v = 0; v < NV; ++v)                                                       \
        wv[v] = Ops::load_w(w0 + (v * Ops::kL / BR) * BR * a.Kp + j * 4 * BR + (v * Ops::kL % BR) * 4); \
      for (int r = 0; r < R; ++r) {                                                      \
        const typename Ops::Xb xb = Ops::bcast(a, b0 + r, j);                            \
        for (int v = 0; v < NV; ++v) Ops::mac(acc[r][v], xb, wv[v]);                     \
      }                                                                                  \
    }                                                                                    \
    for (int r = 0; r < R; ++r)                                                          \
      for (int v = 0; v < NV; ++v) {                                                     \
        const long n = q0 * BR + v * Ops::kL;                                            \
        if (n < a.N) Ops::store(a, b0 + r, n, acc[r][v], std::min<long>(Ops::kL, a.N - n)); \
      }                                                                                  \
  }                                                                                      \
  template <class Ops, int R, int CB, int CB1>                                           \
  FI ATTR void NAME(const QGemm& a) {                                                    \
    const long nq = (a.N + fastrnn::cpu::kQRowsI8 - 1) / fastrnn::cpu::kQRowsI8;         \
    long q = 0;                                                                          \
    if (a.nb == 1) {                                                                     \
      for (; q + CB1 <= nq; q += CB1) NAME##_tile<Ops, 1, CB1>(a, 0, q);                 \
      for (; q < nq; ++q) NAME##_tile<Ops, 1, 1>(a, 0, q);                               \
      return;                                                                            \
    }                                                                                    \
    for (; q + CB <= nq; q += CB) {                                                      \
      long b = 0;                                                                        \
      for (; b + R <= a.nb; b += R) NAME##_tile<Ops, R, CB>(a, b, q);                    \
      for (; b < a.nb; ++b) NAME##_tile<Ops, 1, CB>(a, b, q);                            \
    }                                                                                    \
    for (; q < nq; ++q) {                                                                \
      long b = 0;                                                                        \
      for (; b + R <= a.nb; b += R) NAME##_tile<Ops, R, 1>(a, b, q);                     \
      for (; b < a.nb; ++b) NAME##_tile<Ops, 1, 1>(a, b, q);                             \
    }                                                                                    \
  }
FASTRNN_QDRIVER_I8(qrun_i8, )
// x's quad: the 4 bytes of x row b at k = 4j, as one int32 (the Ops' bcast replicate it in every lane)
FI std::int32_t x_quad(const QGemm& a, long b, long j) {
  std::int32_t q;
  std::memcpy(&q, static_cast<const std::int8_t*>(a.x) + b * a.ldx + 4 * j, sizeof q);
  return q;
}

// x rows de-interleaved for the shift / mask bf16 paths: per group of G k, the G/2 even ones, then
// the G/2 odd ones (per-thread scratch that only grows).
[[maybe_unused]] QGemm deint_x(const QGemm& a, long G) {
  thread_local std::vector<float> buf;
  if (buf.size() < static_cast<std::size_t>(a.nb * a.Kp)) buf.resize(a.nb * a.Kp);
  for (long b = 0; b < a.nb; ++b) {
    const float* x = static_cast<const float*>(a.x) + b * a.ldx;
    float* d = buf.data() + b * a.Kp;
    for (long k = 0; k < a.Kp; k += G)
      for (long j = 0; j < G / 2; ++j) d[k + j] = x[k + 2 * j], d[k + G / 2 + j] = x[k + 2 * j + 1];
  }
  QGemm s = a;
  s.x = buf.data(), s.ldx = a.Kp;
  return s;
}

#if defined(__AVX2__)
FI float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// qstore_i8 for rows n .. n + cnt - 1 of x row b (cnt <= 8), from their int32 sums s of x + 2^S
// (S = 0: none), corrected by 2^S * wsum: the same integer and float operations per row as the scalar
// store, eight lanes at once where all eight are rows.
template <int S>
FI void qstore8_i8(const QGemm& a, long b, long n, __m256i s, long cnt) {
  if (cnt < 8) {
    alignas(32) std::int32_t v[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(v), s);
    for (long l = 0; l < cnt; ++l) qstore_i8(a, b, n + l, S > 0 ? v[l] - a.wsum[n + l] * (1 << S) : v[l]);
    return;
  }
  if constexpr (S > 0)
    s = _mm256_sub_epi32(s, _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.wsum + n)), S));
  float* y = a.y + b * a.ldy + n;
  __m256 d = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(_mm256_set1_ps(a.xscale[b]), _mm256_loadu_ps(a.wscale + n)));
  FASTRNN_OPAQUE(d);
  const __m256 base = a.init ? _mm256_loadu_ps(a.init + n) : a.accumulate ? _mm256_loadu_ps(y) : _mm256_setzero_ps();
  _mm256_storeu_ps(y, _mm256_add_ps(base, d));
}
// What the int8 Ops on ymm share: 8 rows x 4 k per vector, and x's quad in every lane.
struct I8Ymm {
  using V = __m256i;
  static constexpr long kL = 8;
  static FI V zero() { return _mm256_setzero_si256(); }
  static FI V load_w(const std::int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static FI __m256i quad(const QGemm& a, long b, long j) { return _mm256_set1_epi32(x_quad(a, b, j)); }
};
// bf16, AVX2: 16 weights per step (one 32-byte load): lane j holds w[2j] (low half) and w[2j+1]
// (high half); w[2j] as f32 = lane << 16, w[2j+1] = lane & 0xffff0000 (exact).  x is de-interleaved
// to match (deint_x: per 16 k, the 8 even ones then the 8 odd ones): two FMAs per 16 products.
struct Bf16Avx2 {
  using Acc = __m256;
  struct Xv { __m256 e, o; };
  using Wv = __m256i;
  static constexpr long kEs = 2, kStep = 16;
  static FI Acc zero() { return _mm256_setzero_ps(); }
  static FI Xv load_x(const QGemm& a, long b, long k) {
    const float* p = static_cast<const float*>(a.x) + b * a.ldx + k;
    return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
  }
  static FI Wv load_w(const char* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static FI void mac(Acc& acc, const Xv& x, Wv w) {
    acc = _mm256_fmadd_ps(x.e, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)), acc);
    acc = _mm256_fmadd_ps(x.o, _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(-65536))), acc);
  }
  static FI void store(const QGemm& a, long b, long n, Acc acc) { qstore(a, b, n, hsum256(acc)); }
};
// int8, AVX2, 7-bit x: 8 rows x 4 k per vector: vpmaddubsw(x + 64, w) (x + 64 in [1, 127]: pairs
// <= 32258, no saturation), vpmaddwd by ones to int32, vpaddd; minus 64 * wsum when stored.
struct I8Avx2 : I8Ymm {
  using Xb = __m256i;
  static FI Xb bcast(const QGemm& a, long b, long j) { return _mm256_add_epi8(quad(a, b, j), _mm256_set1_epi8(64)); }
  static FI void mac(V& acc, Xb x, V w) {
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), _mm256_set1_epi16(1)));
  }
  static FI void store(const QGemm& a, long b, long n, V acc, long cnt) { qstore8_i8<6>(a, b, n, acc, cnt); }
};
// int8, AVX2, 8-bit x: vpmaddubsw(|x|, sign(w, x)) (|x|, |w| <= 127: pairs <= 32258), vpmaddwd, vpaddd.
struct I8Avx2Sign : I8Ymm {
  struct Xb { __m256i x, ax; };
  static FI Xb bcast(const QGemm& a, long b, long j) {
    const __m256i x = quad(a, b, j);
    return {x, _mm256_abs_epi8(x)};
  }
  static FI void mac(V& acc, const Xb& x, V w) {
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x.ax, _mm256_sign_epi8(w, x.x)), _mm256_set1_epi16(1)));
  }
  static FI void store(const QGemm& a, long b, long n, V acc, long cnt) { qstore8_i8<0>(a, b, n, acc, cnt); }
};
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
// int8, AVX-VNNI (vpdpbusd on ymm, VEX encoded: Alder Lake, Zen 5 ...): sum (x + 128) w - 128 sum w.
#define FASTRNN_AVXVNNI __attribute__((target("avxvnni")))
struct I8AvxVnni : I8Ymm {
  using Xb = __m256i;
  static FI FASTRNN_AVXVNNI Xb bcast(const QGemm& a, long b, long j) {
    return _mm256_xor_si256(quad(a, b, j), _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static FI FASTRNN_AVXVNNI void mac(V& acc, Xb x, V w) { acc = _mm256_dpbusd_avx_epi32(acc, x, w); }
  static FI FASTRNN_AVXVNNI void store(const QGemm& a, long b, long n, V acc, long cnt) { qstore8_i8<7>(a, b, n, acc, cnt); }
};
FASTRNN_QDRIVER_I8(qrun_avxvnni, FASTRNN_AVXVNNI)
FASTRNN_AVXVNNI __attribute__((noinline)) void gemm_i8_avxvnni(const QGemm& a) { qrun_avxvnni<I8AvxVnni, 2, 2, 4>(a); }
bool has_avxvnni() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avxvnni");
  }();
  return v;
}
void gemm_bf16(const QGemm& a) { qrun<Bf16Avx2, 2, 4, 8>(deint_x(a, 16)); }
void gemm_i8(const QGemm& a) {
  if (has_avxvnni()) return gemm_i8_avxvnni(a);
  if (a.xmax <= fastrnn::cpu::kXQMaxReduced) return qrun_i8<I8Avx2, 2, 2, 4>(a);
  qrun_i8<I8Avx2Sign, 2, 1, 4>(a);
}
const char* qpaths() {
  return has_avxvnni() ? "bf16: avx2 (shift + fma); int8: avx-vnni (vpdpbusd)"
         : fastrnn::cpu::int8_xmax() <= fastrnn::cpu::kXQMaxReduced
             ? "bf16: avx2 (shift + fma); int8: avx2 (vpmaddubsw + vpmaddwd, 7-bit activations)"
             : "bf16: avx2 (shift + fma); int8: avx2 (vpsignb + vpmaddubsw + vpmaddwd)";
}

#elif defined(__AVX512F__) && defined(__AVX512BW__)
// qstore8_i8 for rows n .. n + cnt - 1 (cnt <= 16) from 16 sums: two halves of eight (the same
// float operations per row)
template <int S>
FI void qstore16_i8(const QGemm& a, long b, long n, __m512i s, long cnt) {
  qstore8_i8<S>(a, b, n, _mm512_castsi512_si256(s), std::min<long>(cnt, 8));
  if (cnt > 8) qstore8_i8<S>(a, b, n + 8, _mm512_extracti64x4_epi64(s, 1), cnt - 8);
}
// What the int8 Ops on zmm share: 16 rows x 4 k per vector, and x's quad in every lane.
struct I8Zmm {
  using V = __m512i;
  static constexpr long kL = 16;
  static FI V zero() { return _mm512_setzero_si512(); }
  static FI V load_w(const std::int8_t* p) { return _mm512_loadu_si512(p); }
  static FI __m512i quad(const QGemm& a, long b, long j) { return _mm512_set1_epi32(x_quad(a, b, j)); }
};
FI float hsum512(__m512 v) {
  return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0xEE))));
}
// bf16, AVX-512F: 32 weights per step (one 64-byte load), even / odd halves as Bf16Avx2 (x de-interleaved
// per 32 k).
struct Bf16Avx512 {
  using Acc = __m512;
  struct Xv { __m512 e, o; };
  using Wv = __m512i;
  static constexpr long kEs = 2, kStep = 32;
  static FI Acc zero() { return _mm512_setzero_ps(); }
  static FI Xv load_x(const QGemm& a, long b, long k) {
    const float* p = static_cast<const float*>(a.x) + b * a.ldx + k;
    return {_mm512_loadu_ps(p), _mm512_loadu_ps(p + 16)};
  }
  static FI Wv load_w(const char* p) { return _mm512_loadu_si512(p); }
  static FI void mac(Acc& acc, const Xv& x, Wv w) {
    acc = _mm512_fmadd_ps(x.e, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)), acc);
    acc = _mm512_fmadd_ps(x.o, _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32(-65536))), acc);
  }
  static FI void store(const QGemm& a, long b, long n, Acc acc) { qstore(a, b, n, hsum512(acc)); }
};
// int8, AVX-512BW, 7-bit x: 16 rows x 4 k per vector: vpmaddubsw(x + 64, w), vpmaddwd, vpaddd; minus
// 64 * wsum.
struct I8Avx512 : I8Zmm {
  using Xb = __m512i;
  static FI Xb bcast(const QGemm& a, long b, long j) { return _mm512_add_epi8(quad(a, b, j), _mm512_set1_epi8(64)); }
  static FI void mac(V& acc, Xb x, V w) {
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(x, w), _mm512_set1_epi16(1)));
  }
  static FI void store(const QGemm& a, long b, long n, V acc, long cnt) { qstore16_i8<6>(a, b, n, acc, cnt); }
};
// int8, AVX-512BW, 8-bit x: vpmaddubsw(|x|, w negated where x < 0), vpmaddwd, vpaddd.
struct I8Avx512Sign : I8Zmm {
  struct Xb { __m512i ax; __mmask64 neg; };
  static FI Xb bcast(const QGemm& a, long b, long j) {
    const __m512i x = quad(a, b, j);
    return {_mm512_abs_epi8(x), _mm512_movepi8_mask(x)};
  }
  static FI void mac(V& acc, const Xb& x, V w) {
    const __m512i sw = _mm512_mask_sub_epi8(w, x.neg, _mm512_setzero_si512(), w);
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(x.ax, sw), _mm512_set1_epi16(1)));
  }
  static FI void store(const QGemm& a, long b, long n, V acc, long cnt) { qstore16_i8<0>(a, b, n, acc, cnt); }
};
// int8, AVX-512 VNNI: vpdpbusd(acc, x ^ 0x80, w): 64 products per instruction; minus 128 sum w.
#define FASTRNN_VNNI __attribute__((target("avx512vnni")))
struct I8Vnni : I8Zmm {
  using Xb = __m512i;
  static FI FASTRNN_VNNI Xb bcast(const QGemm& a, long b, long j) {
    return _mm512_xor_si512(quad(a, b, j), _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static FI FASTRNN_VNNI void mac(V& acc, Xb x, V w) { acc = _mm512_dpbusd_epi32(acc, x, w); }
  static FI FASTRNN_VNNI void store(const QGemm& a, long b, long n, V acc, long cnt) { qstore16_i8<7>(a, b, n, acc, cnt); }
};
// bf16, AVX512_BF16 (opt-in): x split into three bf16 terms, x = hi + mid + lo (see the top; exact for
// normal x: the same products as the float32 paths, within the order of the float additions), three
// vdpbf16ps per 32 weights into three accumulators (three dependency chains per weight row), summed
// before the lanes are.  Zen 4 (benchmarks/README.md, session 17), against shift + FMA: batch 1, 2048 x
// 512 (2 MiB of bf16 from L3) 31.7-33.9 us against 37.0 (float32 42.9); 32 rows 72.6 against 91.9-97.4
// GFLOP/s (compute bound: three vdpbf16ps per 32 weights against two FMAs).  Not the default: one path
// runs every product of a process, so that a thread team's rows (every row of the batch) and one
// thread's (the rows still running) give the same bits, and a choice by row count would break that.
#define FASTRNN_BF16 __attribute__((target("avx512bf16")))
struct Bf16Dp {
  struct Acc { __m512 hi, mid, lo; };
  struct Xv { __m512i hi, mid, lo; };
  using Wv = __m512i;
  static constexpr long kEs = 2, kStep = 32;
  static FI FASTRNN_BF16 Acc zero() { return {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()}; }
  // a.x here: the split rows, [nb][3 * Kp] uint16 (hi at k, mid at Kp + k, lo at 2 Kp + k), ldx in uint16.
  static FI FASTRNN_BF16 Xv load_x(const QGemm& a, long b, long k) {
    const auto* p = static_cast<const std::uint16_t*>(a.x) + b * a.ldx + k;
    return {_mm512_loadu_si512(p), _mm512_loadu_si512(p + a.Kp), _mm512_loadu_si512(p + 2 * a.Kp)};
  }
  static FI FASTRNN_BF16 Wv load_w(const char* p) { return _mm512_loadu_si512(p); }
  static FI FASTRNN_BF16 void mac(Acc& acc, const Xv& x, Wv w) {
    acc.hi = _mm512_dpbf16_ps(acc.hi, (__m512bh)x.hi, (__m512bh)w);
    acc.mid = _mm512_dpbf16_ps(acc.mid, (__m512bh)x.mid, (__m512bh)w);
    acc.lo = _mm512_dpbf16_ps(acc.lo, (__m512bh)x.lo, (__m512bh)w);
  }
  static FI FASTRNN_BF16 void store(const QGemm& a, long b, long n, Acc acc) {
    qstore(a, b, n, hsum512(_mm512_add_ps(acc.hi, _mm512_add_ps(acc.mid, acc.lo))));
  }
};
// float -> bf16, round to nearest even (finite inputs; NaN stays NaN).
FI std::uint16_t f32_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
FASTRNN_QDRIVER(qrun_bf16, FASTRNN_BF16)
FASTRNN_BF16 __attribute__((noinline)) void gemm_bf16_dp(const QGemm& a) {
  thread_local std::vector<std::uint16_t> split;  // grows only: no allocation in steady state
  if (split.size() < static_cast<std::size_t>(a.nb * 3 * a.Kp)) split.resize(a.nb * 3 * a.Kp);
  for (long b = 0; b < a.nb; ++b) {
    const float* x = static_cast<const float*>(a.x) + b * a.ldx;
    std::uint16_t* hi = split.data() + b * 3 * a.Kp;  // this row's terms: hi, then mid, then lo
    std::uint16_t* mid = hi + a.Kp;
    std::uint16_t* lo = mid + a.Kp;
    for (long k = 0; k < a.Kp; ++k) {
      hi[k] = f32_bf16(x[k]);
      const float r = x[k] - bf16_f32(hi[k]);
      mid[k] = f32_bf16(r);
      lo[k] = f32_bf16(r - bf16_f32(mid[k]));
    }
  }
  QGemm s = a;
  s.x = split.data(), s.ldx = 3 * a.Kp;
  // 4 weight rows, one contiguous block of the layout (12 chains; 8 rows measured 32.4 us); x rows one
  // at a time past them (a second row would need 12 accumulators more: 34 registers)
  qrun_bf16<Bf16Dp, 1, 4, 4>(s);
}
FASTRNN_QDRIVER_I8(qrun_vnni, FASTRNN_VNNI)
FASTRNN_VNNI __attribute__((noinline)) void gemm_i8_vnni(const QGemm& a) { qrun_vnni<I8Vnni, 2, 4, 8>(a); }
// 0: VNNI present; 1: AVX512_BF16 present and chosen (FASTRNN_BF16_DPBF16=1).  (llvm-mca's Zen 4
// model predicts vdpbf16ps zmm at a reciprocal throughput of 3 cycles; Zen 4 runs about one per cycle.)
bool has_cpu(int which) {
  static const bool v[2] = {[] { __builtin_cpu_init(); return __builtin_cpu_supports("avx512vnni") != 0; }(),
                            [] {
                              __builtin_cpu_init();
                              const char* e = std::getenv("FASTRNN_BF16_DPBF16");
                              return __builtin_cpu_supports("avx512bf16") != 0 && e && e[0] == '1';
                            }()};
  return v[which];
}
void gemm_bf16(const QGemm& a) {
  if (has_cpu(1)) return gemm_bf16_dp(a);
  qrun<Bf16Avx512, 3, 4, 8>(deint_x(a, 32));
}
void gemm_i8(const QGemm& a) {
  if (has_cpu(0)) return gemm_i8_vnni(a);
  if (a.xmax <= fastrnn::cpu::kXQMaxReduced) return qrun_i8<I8Avx512, 4, 2, 4>(a);
  qrun_i8<I8Avx512Sign, 4, 2, 4>(a);
}
const char* qpaths() {
  static const std::string s = std::string("bf16: ") + (has_cpu(1) ? "avx512_bf16 (vdpbf16ps, x split in 3)" : "avx512f (shift + fma)") +
                               "; int8: " + (has_cpu(0)                                                 ? "avx512_vnni (vpdpbusd)"
                                : fastrnn::cpu::int8_xmax() <= fastrnn::cpu::kXQMaxReduced ? "avx512bw (vpmaddubsw + vpmaddwd, 7-bit activations)"
                                                                                           : "avx512bw (vpmaddubsw + vpmaddwd, sign by mask)");
  return s.c_str();
}

#elif defined(__aarch64__) && defined(__linux__)
// int8, NEON dotprod: 4 rows x 4 k per q register; sdot against x's quad replicated (ld1r): each
// lane gains its row's 4 products, exact int32 sums (s8 x s8, no offset).  Tiles: 2 x rows x 2 blocks
// = 16 accumulators + 8 weight + 2 x registers of the 32 q; 2 blocks (8 chains) for a single x row.
// (arm_neon.h declares vdotq_s32 for arch=armv8.2-a+dotprod, so the attribute names that arch: a
// caller must have every feature of an always_inline callee.  A build for dotprod needs none.)
#if defined(__ARM_FEATURE_DOTPROD)
#define FASTRNN_DOTPROD
#else
#define FASTRNN_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
struct I8Dot {
  using V = int32x4_t;
  using Xb = int8x16_t;
  static constexpr long kL = 4;
  static FI FASTRNN_DOTPROD V zero() { return vdupq_n_s32(0); }
  static FI FASTRNN_DOTPROD V load_w(const std::int8_t* p) { return vreinterpretq_s32_s8(vld1q_s8(p)); }
  static FI FASTRNN_DOTPROD Xb bcast(const QGemm& a, long b, long j) { return vreinterpretq_s8_s32(vdupq_n_s32(x_quad(a, b, j))); }
  static FI FASTRNN_DOTPROD void mac(V& acc, Xb x, V w) { acc = vdotq_s32(acc, vreinterpretq_s8_s32(w), x); }
  // rows n .. n + cnt - 1: qstore_i8's float operations, four lanes at once where all four are rows
  static FI FASTRNN_DOTPROD void store(const QGemm& a, long b, long n, V s, long cnt) {
    if (cnt < 4) {
      std::int32_t v[4];
      vst1q_s32(v, s);
      for (long l = 0; l < cnt; ++l) qstore_i8(a, b, n + l, v[l]);
      return;
    }
    float* y = a.y + b * a.ldy + n;
    float32x4_t d = vmulq_f32(vcvtq_f32_s32(s), vmulq_f32(vdupq_n_f32(a.xscale[b]), vld1q_f32(a.wscale + n)));
    FASTRNN_OPAQUE(d);
    const float32x4_t base = a.init ? vld1q_f32(a.init + n) : a.accumulate ? vld1q_f32(y) : vdupq_n_f32(0.f);
    vst1q_f32(y, vaddq_f32(base, d));
  }
};
FASTRNN_QDRIVER_I8(qrun_dot, FASTRNN_DOTPROD)
FASTRNN_DOTPROD __attribute__((noinline)) void gemm_i8_dot(const QGemm& a) { qrun_dot<I8Dot, 2, 2, 2>(a); }
bool has_dotprod() {
#if defined(__ARM_FEATURE_DOTPROD)
  return true;  // the whole build requires it (-march=armv8.2-a+dotprod or later)
#else
  static const bool v = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
  return v;
#endif
}
void gemm_bf16(const QGemm& a) { gemm_bf16_portable(a); }
void gemm_i8(const QGemm& a) {
  if (has_dotprod()) return gemm_i8_dot(a);
  gemm_i8_portable(a);
}
const char* qpaths() { return has_dotprod() ? "bf16: portable; int8: neon dotprod (sdot)" : "bf16: portable; int8: portable"; }

#else
void gemm_bf16(const QGemm& a) { gemm_bf16_portable(a); }
void gemm_i8(const QGemm& a) { gemm_i8_portable(a); }
const char* qpaths() { return "bf16: portable; int8: portable"; }
#endif

}  // namespace
