// A persistent thread pool: no thread start per call.  run(n, f) executes f(0..n-1) on the
// pool and the calling thread, and rethrows the first exception on the caller.  A call made
// from inside a task, or while another caller holds the pool, runs serially on its caller
// (never deadlocks, so concurrent predict() calls from Python threads are safe).
#pragma once
#include <algorithm>
#include <atomic>
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

class ThreadPool {
 public:
  static ThreadPool& global();
  ~ThreadPool();
  void set_num_threads(int n);  // total threads incl. the caller; n >= 1
  int num_threads() const { return num_threads_; }
  void run(int n, const std::function<void(int)>& f);

 private:
  ThreadPool();
  void worker_loop();
  void stop_workers();
  void work(const std::function<void(int)>& f);

  std::vector<std::thread> workers_;
  int num_threads_ = 1;
  std::mutex call_mu_;  // one parallel call at a time
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  int job_n_ = 0;
  std::atomic<int> next_{0};
  int active_ = 0;
  unsigned long generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace fastrnn
