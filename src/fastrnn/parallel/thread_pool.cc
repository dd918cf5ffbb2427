#include "fastrnn/parallel/thread_pool.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include "fastrnn/cpu/fpenv.h"

namespace fastrnn {

namespace {
thread_local bool in_pool_task = false;
// How long an idle worker polls for the next call before it sleeps.  Waking a sleeping worker
// costs a futex wake-up and, on a VM, the vCPU's return from halt: LSTM 32 -> 128, batch 1, 2
// threads, bursts of calls after 50 ms pauses: 0.47-0.48 ms per call with the teams off against
// 0.40-0.42 on one thread, with a 1 ms poll 0.42-0.44 (a call is ~0.4 ms: the worker slept
// between any two).  Up to a millisecond of an otherwise idle core per call is the cost (past
// kWorkerSpinShortMicros the poller yields to any runnable thread; the LLVM / Intel OpenMP
// runtime polls for 200 ms by default, KMP_BLOCKTIME; ONNX Runtime's pool spins unless
// session.intra_op.allow_spinning is 0; here set_num_threads(1) has no worker at all).  With more
// threads than cores a poller would hold a core another thread needs: then only
// kWorkerSpinShortMicros.
constexpr double kWorkerSpinMicros = 1000, kWorkerSpinShortMicros = 50;

int default_threads() {
  unsigned hw = std::thread::hardware_concurrency();
  const int cores = hw ? static_cast<int>(hw) : 1;
  if (const char* env = std::getenv("FASTRNN_NUM_THREADS")) {
    int n = std::atoi(env);
    // at most 2 threads per core, as fastrnn.set_num_threads (more only slow every call down)
    if (n >= 1) return std::min(n, 2 * cores);
  }
  return cores;
}
}  // namespace

// The process-wide pool.  Leaked on purpose (no join at interpreter exit).  After fork() the
// child has none of the parent's worker threads (and a mutex may have been held at the fork), so
// the child forgets the pool and builds a fresh one, with the same thread count, on first use.
namespace {
std::atomic<ThreadPool*> g_pool{nullptr};
std::atomic<int> g_threads{0};
std::mutex* g_mu = new std::mutex();

void forget_pool_in_child() {
  g_pool.store(nullptr);
  g_mu = new std::mutex();  // the old one may be locked forever; leak it
}
}  // namespace

ThreadPool& ThreadPool::global() {
  ThreadPool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  std::lock_guard<std::mutex> lk(*g_mu);
  p = g_pool.load();
  if (!p) {
    static const bool registered = [] { return pthread_atfork(nullptr, nullptr, forget_pool_in_child) == 0; }();
    (void)registered;
    p = new ThreadPool();
    g_pool.store(p, std::memory_order_release);
  }
  return *p;
}

ThreadPool::ThreadPool() {
  const int n = g_threads.load();
  set_num_threads(n > 0 ? n : default_threads());
}
ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  stop_ = false;
}

void ThreadPool::set_num_threads(int n) {
  if (n < 1) n = 1;
  std::lock_guard<std::mutex> call(call_mu_);
  stop_workers();
  num_threads_ = n;
  g_threads.store(n);
  const unsigned hw = std::thread::hardware_concurrency();
  spin_micros_ = hw && static_cast<unsigned>(n) > hw ? kWorkerSpinShortMicros : kWorkerSpinMicros;
  // The workers never take asynchronous signals (Ctrl-C, SIGTERM, timers, child exits): those
  // belong to the application's threads, where Python runs its handlers (a signal landing on a
  // worker in a kernel loop only delays them).  New threads inherit the mask set around their
  // creation; the caller's mask is restored after.  Faults (SIGSEGV...) are never blocked.
  sigset_t async, old;
  sigemptyset(&async);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD, SIGWINCH}) sigaddset(&async, sig);
  pthread_sigmask(SIG_BLOCK, &async, &old);
  for (int i = 0; i + 1 < n; ++i) {
    workers_.emplace_back([this] {
#if defined(__APPLE__)
      pthread_setname_np("fastrnn-worker");  // macOS names only the calling thread
#endif
      worker_loop();
    });
#if defined(__linux__)
    // named before set_num_threads returns: shows in top -H, gdb, /proc/<pid>/task/*/comm
    pthread_setname_np(workers_.back().native_handle(), "fastrnn-worker");
#endif
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void ThreadPool::work(const std::function<void(int)>& f) {
  const cpu::DenormalGuard ftz;  // every thread that computes: flush denormals, restore after
  in_pool_task = true;
  for (int i; (i = next_.fetch_add(1)) < job_n_;) {
    try {
      f(i);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }
  in_pool_task = false;
}

void ThreadPool::worker_loop() {
  unsigned long seen = 0;
  for (;;) {
    // Calls come in quick succession (input projection, then recurrence, chunk after chunk):
    // poll for the next one for up to spin_micros_ (kWorkerSpinMicros) before sleeping, so a dispatch costs
    // a cache-line transfer instead of a futex wake-up (LSTM 32x128 batch 32, 2 threads: 14
    // dispatches per predict).  Plain loads, no PAUSE (see SpinBarrier); after the first
    // kWorkerSpinShortMicros the poller yields between loads, so that a runnable thread on its core
    // (the application's own: two Python threads calling predict with a 2-thread pool) goes first.
    {
      const auto t0 = std::chrono::steady_clock::now();
      bool yielding = false;
      for (unsigned spins = 1; generation_.load(std::memory_order_acquire) == seen && !stop_.load(); ++spins) {
        if (yielding) std::this_thread::yield();
        if (spins % 256 == 0 || yielding) {
          const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
          if (us > spin_micros_) break;
          yielding = us > kWorkerSpinShortMicros;
        }
      }
    }
    const std::function<void(int)>* job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      if (!job) continue;  // woke after that call had already finished
      ++active_;
    }
    work(*job);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--active_ == 0) done_cv_.notify_all();
    }
  }
}

void ThreadPool::run(int n, const std::function<void(int)>& f) {
  if (n <= 0) return;
  std::unique_lock<std::mutex> call(call_mu_, std::defer_lock);
  if (n == 1 || in_pool_task || workers_.empty() || !call.try_lock()) {
    for (int i = 0; i < n; ++i) f(i);
    return;
  }
  dispatch(n, f);
}

bool ThreadPool::run_team(int n, const std::function<void(int)>& f) {
  if (n <= 1 || in_pool_task || static_cast<int>(workers_.size()) + 1 < n) return false;
  std::unique_lock<std::mutex> call(call_mu_, std::defer_lock);
  if (!call.try_lock()) return false;
  if (static_cast<int>(workers_.size()) + 1 < n) return false;  // shrunk before we got the lock
  // Every worker is idle (we hold call_mu_) and each task blocks its thread until the team is
  // done, so no thread takes two tasks: the n tasks run on n distinct threads.
  dispatch(n, f);
  return true;
}

void ThreadPool::dispatch(int n, const std::function<void(int)>& f) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &f;
    job_n_ = n;
    next_.store(0);
    error_ = nullptr;
    ++generation_;
  }
  cv_.notify_all();
  work(f);
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return active_ == 0 && next_.load() >= job_n_; });
    job_ = nullptr;
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace fastrnn
