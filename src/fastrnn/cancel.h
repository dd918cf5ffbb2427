// Cooperative cancellation of a long call (Ctrl-C during predict): the binding installs a poll
// function; the time loops call check() once per step.  Only the thread that owns the token
// polls (at most every 50 ms, so the cost per step is one clock read); every other thread just
// reads the flag.  A stopped call throws Cancelled, which the binding turns back into the
// Python exception the poll left pending (KeyboardInterrupt).
#pragma once
#include <atomic>
#include <chrono>
#include <thread>

#include "fastrnn/common.h"

namespace fastrnn {

struct Cancelled : Error {
  Cancelled() : Error("cancelled") {}
};

class CancelToken {
 public:
  using Poll = bool (*)(void* ctx);  // true: stop
  CancelToken(Poll poll, void* ctx) : poll_(poll), ctx_(ctx), owner_(std::this_thread::get_id()) {}

  void check() const {
    if (stop_.load(std::memory_order_relaxed)) throw Cancelled();
    if (!poll_ || std::this_thread::get_id() != owner_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(50)) return;
    last_ = now;
    if (poll_(ctx_)) {
      stop_.store(true, std::memory_order_relaxed);
      throw Cancelled();
    }
  }

 private:
  Poll poll_;
  void* ctx_;
  std::thread::id owner_;
  mutable std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  mutable std::atomic<bool> stop_{false};
};

}  // namespace fastrnn
