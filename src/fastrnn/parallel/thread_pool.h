// A persistent thread pool: no thread start per call.  run(n, f) executes f(0..n-1) on the
// pool and the calling thread, and rethrows the first exception on the caller.  A call made
// from inside a task, or while another caller holds the pool, runs serially on its caller
// (never deadlocks, so concurrent predict() calls from Python threads are safe).
#pragma once
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fastrnn {

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
