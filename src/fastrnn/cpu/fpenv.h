// Flush-to-zero / denormals-are-zero for the duration of a compute call, on the calling thread.
// A state that decays towards zero (a forget gate below 1, a contracting recurrence) walks into
// the subnormal range, where x86 and ARM cores take microcode assists on every operation touching
// such a value: orders of magnitude slower (ONNX Runtime issue #7448: 2400 ms instead of 70 ms).
// The values lost are below 1.2e-38, far under the 1e-5 agreement with the frameworks.
// Set and restored around every call that computes (Model::predict / step, every pool task), so
// the caller's floating-point environment is left as it was.
#pragma once
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace fastrnn::cpu {

class DenormalGuard {
 public:
#if defined(__x86_64__) || defined(__i386__)
  // MXCSR: FTZ bit 15, DAZ bit 6.
  static constexpr unsigned kBits = (1u << 15) | (1u << 6);
  DenormalGuard() : saved_(_mm_getcsr()) {
    if ((saved_ & kBits) != kBits) _mm_setcsr(saved_ | kBits);
  }
  ~DenormalGuard() {
    if ((saved_ & kBits) != kBits) _mm_setcsr(saved_);
  }
#elif defined(__aarch64__)
  // FPCR.FZ (bit 24): flush subnormal inputs and results of single / double precision to zero.
  static constexpr unsigned long kBits = 1ul << 24;
  DenormalGuard() {
    asm volatile("mrs %0, fpcr" : "=r"(saved_));
    if ((saved_ & kBits) != kBits) asm volatile("msr fpcr, %0" ::"r"(saved_ | kBits));
  }
  ~DenormalGuard() {
    if ((saved_ & kBits) != kBits) asm volatile("msr fpcr, %0" ::"r"(saved_));
  }
#else
  DenormalGuard() = default;
#endif
  DenormalGuard(const DenormalGuard&) = delete;
  DenormalGuard& operator=(const DenormalGuard&) = delete;

 private:
#if defined(__x86_64__) || defined(__i386__)
  unsigned saved_;
#elif defined(__aarch64__)
  unsigned long saved_;
#endif
};

// The state of the calling thread (for tests): whether FTZ / DAZ are on now.
inline bool denormals_flushed() {
#if defined(__x86_64__) || defined(__i386__)
  return (_mm_getcsr() & DenormalGuard::kBits) == DenormalGuard::kBits;
#elif defined(__aarch64__)
  unsigned long v;
  asm volatile("mrs %0, fpcr" : "=r"(v));
  return (v & DenormalGuard::kBits) != 0;
#else
  return false;
#endif
}

}  // namespace fastrnn::cpu
