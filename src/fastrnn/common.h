// Common types and errors of the fastrnn core. The core knows no framework and no Python;
// bindings/module.cc maps these exceptions onto fastrnn.errors.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastrnn {

using dim_t = std::int64_t;

struct Error : std::runtime_error { using std::runtime_error::runtime_error; };
struct ShapeError : Error { using Error::Error; };        // input the model cannot take
struct FormatError : Error { using Error::Error; };       // malformed model description
struct UnsupportedError : Error { using Error::Error; };  // layer/option we do not run
struct OutOfMemoryError : Error { using Error::Error; };  // buffers that cannot be allocated here

template <typename E = Error, typename... Args>
[[noreturn]] inline void fail(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw E(os.str());
}

// Count of Buffer heap allocations (tests assert that a stream step makes none).
inline std::atomic<std::uint64_t>& buffer_allocations() {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

// 64-byte aligned float buffer (no per-element initialisation cost beyond zeroing on request).
struct AlignedDeleter { void operator()(float* p) const { std::free(p); } };
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t n, bool zero = false) { resize(n, zero); }
  void resize(std::size_t n, bool zero = false) {
    if (n > cap_) {
      std::size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      float* p = static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64));
      if (!p) throw std::bad_alloc();
      buffer_allocations().fetch_add(1, std::memory_order_relaxed);
      ptr_.reset(p);
      cap_ = n;
    }
    size_ = n;
    if (zero) for (std::size_t i = 0; i < n; ++i) ptr_.get()[i] = 0.f;
  }
  float* data() { return ptr_.get(); }
  const float* data() const { return ptr_.get(); }
  std::size_t size() const { return size_; }
  float& operator[](std::size_t i) { return ptr_.get()[i]; }
  const float& operator[](std::size_t i) const { return ptr_.get()[i]; }

 private:
  std::unique_ptr<float, AlignedDeleter> ptr_;
  std::size_t size_ = 0, cap_ = 0;
};

}  // namespace fastrnn
