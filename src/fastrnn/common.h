// Common types and errors of the fastrnn core. The core knows no framework and no Python;
// bindings/module.cc maps these exceptions onto fastrnn.errors.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
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

#if defined(__SANITIZE_ADDRESS__)
#define FASTRNN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FASTRNN_ASAN 1
#endif
#endif
#ifndef FASTRNN_ASAN
#define FASTRNN_ASAN 0
#endif

// Large blocks that Buffers free, kept for the next Buffer that needs as many bytes (a kept block
// of at most twice the request) instead of going back to malloc.  A predict call's big workspaces
// (the input projection's time chunk, the layers' outputs) are allocated and freed every call;
// glibc serves such sizes from the heap top or from mmap and returns them to the system past its
// trim / mmap thresholds, and the next call's pages must then be faulted in again.  Seen per
// process at random: 3,465 page faults and 8-10% of the time of a 2-layer LSTM 650 call at batch 20
// (7 MiB chunks).  Blocks under kMinBytes (half of glibc's first mmap threshold) are left to malloc
// (its free lists serve them without faults); at most kMaxHeld bytes in kMaxBlocks blocks are
// kept (the oldest freed first to make room).  Never destroyed (a Buffer may be freed during
// static destruction); blocks kept then stay reachable.
// Off under AddressSanitizer and with FASTRNN_BLOCK_CACHE=0 (.ci/valgrind.sh): a block that is
// kept is not freed, so a use after free of it would go unseen.
class BlockCache {
 public:
  static constexpr std::size_t kMinBytes = std::size_t(64) << 10, kMaxHeld = std::size_t(64) << 20;
  static constexpr std::size_t kMaxBlocks = 64;
  static BlockCache& get() {
    static BlockCache* c = [] {
      auto* b = new BlockCache;
      // fork(): the child's cache must not be caught mid-change with its mutex held by a thread
      // the child does not have (held across the fork, released on both sides).
      pthread_atfork([] { get().mu_.lock(); }, [] { get().mu_.unlock(); }, [] { get().mu_.unlock(); });
      return b;
    }();
    return *c;
  }
  // A kept block of [bytes, 2 * bytes] (the smallest; its size in *got), or nullptr.
  float* take(std::size_t bytes, std::size_t* got) {
    if (bytes < kMinBytes || !on_) return nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    std::size_t best = blocks_.size();
    for (std::size_t i = 0; i < blocks_.size(); ++i)
      if (blocks_[i].bytes >= bytes && blocks_[i].bytes / 2 <= bytes &&
          (best == blocks_.size() || blocks_[i].bytes < blocks_[best].bytes))
        best = i;
    if (best == blocks_.size()) return nullptr;
    float* p = blocks_[best].p;
    *got = blocks_[best].bytes;
    held_ -= *got;
    blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(best));
    return p;
  }
  // Frees the block or keeps it.
  void give(float* p, std::size_t bytes) {
    if (on_ && bytes >= kMinBytes && bytes <= kMaxHeld) {
      std::vector<float*> out;
      {
        std::lock_guard<std::mutex> lock(mu_);
        while (held_ + bytes > kMaxHeld || blocks_.size() >= kMaxBlocks) {
          out.push_back(blocks_.front().p);
          held_ -= blocks_.front().bytes;
          blocks_.erase(blocks_.begin());
        }
        blocks_.push_back({p, bytes});
        held_ += bytes;
      }
      for (float* q : out) std::free(q);
      return;
    }
    std::free(p);
  }

 private:
  struct Block {
    float* p;
    std::size_t bytes;
  };
  static bool enabled() {
#if FASTRNN_ASAN
    return false;
#else
    const char* e = std::getenv("FASTRNN_BLOCK_CACHE");
    return !(e && e[0] == '0');
#endif
  }
  const bool on_ = enabled();
  std::mutex mu_;
  std::vector<Block> blocks_;
  std::size_t held_ = 0;
};

// 64-byte aligned float buffer (no per-element initialisation cost beyond zeroing on request);
// large blocks come from and go back to BlockCache.
struct BlockDeleter {
  std::size_t bytes = 0;
  void operator()(float* p) const { BlockCache::get().give(p, bytes); }
};
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t n, bool zero = false) { resize(n, zero); }
  Buffer(Buffer&& o) noexcept : ptr_(std::move(o.ptr_)), size_(std::exchange(o.size_, 0)), cap_(std::exchange(o.cap_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    ptr_ = std::move(o.ptr_);
    size_ = std::exchange(o.size_, 0);
    cap_ = std::exchange(o.cap_, 0);
    return *this;
  }
  void resize(std::size_t n, bool zero = false) {
    if (n > cap_) {
      std::size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      if (!bytes) bytes = 64;
      std::size_t got = bytes;
      float* p = BlockCache::get().take(bytes, &got);
      if (!p) p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      buffer_allocations().fetch_add(1, std::memory_order_relaxed);
      ptr_ = std::unique_ptr<float, BlockDeleter>(p, BlockDeleter{got});
      cap_ = got / sizeof(float);
    }
    size_ = n;
    if (zero) for (std::size_t i = 0; i < n; ++i) ptr_.get()[i] = 0.f;
  }
  float* data() { return ptr_.get(); }
  const float* data() const { return ptr_.get(); }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return cap_; }
  float& operator[](std::size_t i) { return ptr_.get()[i]; }
  const float& operator[](std::size_t i) const { return ptr_.get()[i]; }

 private:
  std::unique_ptr<float, BlockDeleter> ptr_;
  std::size_t size_ = 0, cap_ = 0;
};

}  // namespace fastrnn
