// A persistent thread pool: no thread start per call.  run(n, f) executes f(0..n-1) on the
// pool and the calling thread, and rethrows the first exception on the caller.  A call made
// from inside a task, or while another caller holds the pool, runs serially on its caller
// (never deadlocks, so concurrent predict() calls from Python threads are safe).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fastrnn {

// Multiply-adds below which a task is not worth a thread wake-up (tens of microseconds on a
// loaded machine): work is split into at most work / kMinTaskWork tasks.
constexpr double kMinTaskWork = 2e5;

// Rows [0, rows) cut into at most `max_tasks` blocks, none smaller than min_rows, and no more
// blocks than the work justifies (work_per_row multiply-adds each).
inline int row_blocks(long rows, int max_tasks, long min_rows, double work_per_row) {
  long by_work = static_cast<long>(rows * work_per_row / kMinTaskWork);
  long n = std::min<long>({static_cast<long>(max_tasks), (rows + min_rows - 1) / min_rows, by_work});
  return static_cast<int>(std::max<long>(1, n));
}

// A barrier for a team of threads that meet every few microseconds (one recurrent step).  A
// waiter spins on plain loads for up to kSpinMicros (no PAUSE: under a hypervisor PAUSE loops
// trigger pause-loop exits and the vCPU is descheduled), then sleeps on a condition variable, so
// a partner that was preempted (busy machine, more threads than cores) gets the core back
// instead of waiting behind a spinner.  abort() releases every waiter; wait() then returns false
// (a team member failed or was cancelled).
class SpinBarrier {
 public:
  static constexpr double kSpinMicros = 50;
  explicit SpinBarrier(int n) : n_(n) {}
  bool wait() {
    const unsigned g = gen_.load(std::memory_order_seq_cst);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_seq_cst);
      if (sleepers_.load(std::memory_order_seq_cst) > 0) {
        { std::lock_guard<std::mutex> lk(mu_); }
        cv_.notify_all();
      }
      return !aborted_.load(std::memory_order_acquire);
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (unsigned spins = 1; gen_.load(std::memory_order_acquire) == g; ++spins) {
      if (aborted_.load(std::memory_order_acquire)) return false;
      if (spins % 256 == 0 &&
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() > kSpinMicros) {
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        {
          std::unique_lock<std::mutex> lk(mu_);
          cv_.wait(lk, [&] { return gen_.load(std::memory_order_seq_cst) != g || aborted_.load(); });
        }
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        break;
      }
    }
    return !aborted_.load(std::memory_order_acquire);
  }
  void abort() {
    aborted_.store(true, std::memory_order_seq_cst);
    { std::lock_guard<std::mutex> lk(mu_); }
    cv_.notify_all();
  }

 private:
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<unsigned> gen_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> aborted_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

class ThreadPool {
 public:
  static ThreadPool& global();
  ~ThreadPool();
  void set_num_threads(int n);  // total threads incl. the caller; n >= 1
  int num_threads() const { return num_threads_; }
  void run(int n, const std::function<void(int)>& f);
  // f(0..n-1), each on its own thread at the same time (tasks may wait for each other, e.g. at
  // a SpinBarrier).  Returns false, running nothing, when that cannot be guaranteed: n above the
  // thread count, called from inside a task, or the pool busy with another caller.
  bool run_team(int n, const std::function<void(int)>& f);

 private:
  ThreadPool();
  void worker_loop();
  void stop_workers();
  void work(const std::function<void(int)>& f);
  void dispatch(int n, const std::function<void(int)>& f);  // caller holds call_mu_

  std::vector<std::thread> workers_;
  int num_threads_ = 1;
  double spin_micros_ = 50;  // how long an idle worker polls before it sleeps (set with the thread count)
  std::mutex call_mu_;  // one parallel call at a time
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  int job_n_ = 0;
  std::atomic<int> next_{0};
  int active_ = 0;
  std::atomic<unsigned long> generation_{0};  // written under mu_; also polled while a worker spins
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
};

}  // namespace fastrnn
