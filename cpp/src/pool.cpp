// SPDX-License-Identifier: MIT
// The helper threads behind run_shared (detail/pool.hpp): one pool per process, made on first use,
// grown to the most helpers a call has asked for, never shut down (its threads sleep when idle).
// One run at a time holds it; a run that finds it held runs on its own thread.

#include "detail/pool.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "detail/simd_avx2.hpp"

namespace gatecell::detail {
namespace {

thread_local bool running_item = false;  // inside Job::work on this thread

// A helper that finds no new run spins this many pauses (~26 ns each on Zen 3: 50 us), then
// yields its core between checks this many times (~0.5 ms in all: a time loop's next GEMM, or the
// next short call from Python, finds it awake), then sleeps until a run wakes it. Yielding lets
// another runnable thread on its core (an OpenMP team's) go first.
constexpr long kPauseSpins = 2048;
constexpr long kYieldSpins = 1024;
// Pauses of the calling thread waiting for the helpers' items before it yields between checks.
constexpr long kCallerSpins = 4096;

inline void pause_once() {
#ifdef GATECELL_X86_AVX2
  _mm_pause();  // SSE2: every x86-64 CPU
#endif
}

// One run_shared call: the items, who may still join, and the first error.
struct Job {
  void (*body)(const void*, index_t) = nullptr;
  const void* context = nullptr;
  index_t items = 0;
  std::atomic<index_t> next{0};  // the next item to claim
  std::atomic<int> seats{0};     // helpers that may still join
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;

  // Claims and runs items until none is left, or until one failed.
  void work() {
    const bool outer = running_item;
    running_item = true;
    while (!failed.load(std::memory_order_relaxed)) {
      const index_t item = next.fetch_add(1, std::memory_order_relaxed);
      if (item >= items) break;
      try {
        body(context, item);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
      }
    }
    running_item = outer;
  }
};

class Pool {
 public:
  // Runs `job` on the calling thread and on up to `helpers` helpers, and returns once every item
  // claimed has run; false (nothing run) when another thread's run holds the pool.
  bool run(Job& job, int helpers) {
    const std::unique_lock<std::mutex> turn(turn_, std::try_to_lock);
    if (!turn.owns_lock()) return false;
    try {
      for (; started_ < helpers; ++started_) std::thread([this] { serve(); }).detach();
    } catch (const std::system_error&) {
      // No more threads to be had: the ones started share the work.
    }
    job.seats.store(std::min(helpers, started_), std::memory_order_relaxed);
    // The stores and loads between job_/active_ and epoch_/sleepers_ are sequentially consistent:
    // a helper that counts itself active either sees this job or sees it closed (and the caller
    // then sees it active and waits); a helper going to sleep either sees the new epoch or is seen
    // sleeping and woken.
    job_.store(&job);
    epoch_.fetch_add(1);
    if (sleepers_.load() > 0) {
      const std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    job.work();
    job_.store(nullptr);
    for (long spins = 1; active_.load() != 0; ++spins) {
      pause_once();
      if (spins > kCallerSpins) std::this_thread::yield();
    }
    return true;
  }

 private:
  void serve() {
    std::uint64_t seen = epoch_.load();
    for (;;) {
      for (long spins = 0; epoch_.load(std::memory_order_acquire) == seen; ++spins) {
        if (spins < kPauseSpins) {
          pause_once();
        } else if (spins < kPauseSpins + kYieldSpins) {
          std::this_thread::yield();
        } else {
          std::unique_lock<std::mutex> lock(sleep_mutex_);
          sleepers_.fetch_add(1);
          wake_.wait(lock, [&] { return epoch_.load() != seen; });
          sleepers_.fetch_sub(1);
        }
      }
      seen = epoch_.load();
      active_.fetch_add(1);
      Job* job = job_.load();
      if (job != nullptr && job->seats.fetch_sub(1, std::memory_order_relaxed) > 0) job->work();
      active_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::mutex turn_;  // held by the run in progress
  int started_ = 0;  // helpers started (under turn_)
  std::atomic<Job*> job_{nullptr};
  std::atomic<std::uint64_t> epoch_{0};  // runs started
  std::atomic<int> active_{0};           // helpers between joining a run and leaving it
  std::atomic<int> sleepers_{0};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

// The pool, never deleted: its helpers may outlive static destruction. A child process made by
// fork has none of the parent's helpers and makes a new pool (the old one is kept reachable).
std::atomic<Pool*> the_pool{nullptr};
std::atomic<Pool*> pool_before_fork{nullptr};

Pool& pool() {
  Pool* p = the_pool.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
#if defined(__unix__) || defined(__APPLE__)
  static const int registered = pthread_atfork(nullptr, nullptr, [] {
    pool_before_fork.store(the_pool.load(std::memory_order_relaxed), std::memory_order_relaxed);
    the_pool.store(nullptr, std::memory_order_relaxed);
  });
  (void)registered;
#endif
  Pool* made = new Pool;
  if (the_pool.compare_exchange_strong(p, made, std::memory_order_acq_rel)) return *made;
  delete made;  // another thread's came first (no helper started yet)
  return *p;
}

}  // namespace

bool in_parallel() { return running_item || omp_in_parallel(); }

void run_shared_items(index_t items, int threads, void (*body)(const void*, index_t), const void* context) {
  const int helpers = static_cast<int>(std::min<index_t>(threads, items)) - 1;
  if (helpers > 0 && !in_parallel()) {
    Job job;
    job.body = body;
    job.context = context;
    job.items = items;
    if (pool().run(job, helpers)) {
      if (job.error) std::rethrow_exception(job.error);
      return;
    }
  }
  for (index_t item = 0; item < items; ++item) body(context, item);
}

}  // namespace gatecell::detail
