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

#include "detail/spin.hpp"

namespace gatecell::detail {
namespace {

thread_local bool running_item = false;  // inside Job::work on this thread

// A helper that finds no new run spins this many pauses (~26 ns each on Zen 3: 50 us), then
// yields its core between checks this many times (~0.5 ms in all: a time loop's next GEMM, or the
// next short call from Python, finds it awake), then sleeps until a run wakes it. Yielding lets
// another runnable thread on its core (an OpenMP team's) go first.
constexpr long kPauseSpins = 2048;
constexpr long kYieldSpins = 1024;

const std::atomic<bool> never_fails{false};  // the pool's own waits have no other thread to fail

// One run_shared or run_team call: the items (a team's members), who may still join, and the
// first error.
struct Job {
  void (*body)(const void*, index_t) = nullptr;
  void (*member)(const void*, index_t, index_t) = nullptr;  // a team's body, or null
  const void* context = nullptr;
  index_t items = 0;
  std::atomic<index_t> next{0};  // the next item to claim
  std::atomic<int> seats{0};     // helpers that may still join
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;

  // Claims and runs items until none is left, or until one failed; a team's member claims one.
  void work() {
    const bool outer = running_item;
    running_item = true;
    while (member != nullptr || !failed.load(std::memory_order_relaxed)) {
      const index_t item = next.fetch_add(1, std::memory_order_relaxed);
      if (item >= items) break;
      try {
        if (member != nullptr) member(context, item, items);
        else body(context, item);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
      }
      if (member != nullptr) break;
    }
    running_item = outer;
  }
};

class Pool {
 public:
  // Runs `job` on the calling thread and on up to `helpers` helpers, and returns once every item
  // claimed has run; false (nothing run) when another thread's run holds the pool. A team's job
  // (job.member) gets as many members as there are helpers to run them, and returns once every
  // member has run.
  bool run(Job& job, int helpers) {
    const std::unique_lock<std::mutex> turn(turn_, std::try_to_lock);
    if (!turn.owns_lock()) return false;
    try {
      // A new helper starts from the epoch before this run's, so that it joins this run (a team
      // waits for it) however late it starts.
      const std::uint64_t before = epoch_.load();
      for (; started_ < helpers; ++started_) std::thread([this, before] { serve(before); }).detach();
    } catch (const std::system_error&) {
      // No more threads to be had: the ones started share the work.
    }
    helpers = std::min(helpers, started_);
    if (job.member != nullptr) job.items = std::min<index_t>(job.items, helpers + 1);
    job.seats.store(helpers, std::memory_order_relaxed);
    // The stores and loads between job_/active_ and epoch_/sleepers_ are sequentially consistent:
    // a helper that counts itself active either sees this job or sees it closed (and the caller
    // then sees it active and waits); a helper going to sleep either sees the new epoch or is seen
    // sleeping and woken.
    job_.store(&job);
    wake_helpers();
    job.work();
    // A team's members all run, each on its own thread: every helper seat is taken before closing.
    // Waiting long, the call starts a new epoch now and then, so that no helper could sleep through
    // the one this run started.
    if (job.member != nullptr) {
      long checks = 0;
      wait_until(
          [&] {
            if (++checks % kSpinsBeforeYield == 0) wake_helpers();
            return job.next.load(std::memory_order_relaxed) >= job.items;
          },
          never_fails);
    }
    job_.store(nullptr);
    wait_until([&] { return active_.load() == 0; }, never_fails);
    return true;
  }

 private:
  // Starts a new epoch (after job_ is set) and wakes the helpers asleep.
  void wake_helpers() {
    epoch_.fetch_add(1);
    if (sleepers_.load() > 0) {
      const std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
  }

  void serve(std::uint64_t seen) {
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

void run_team_members(int team, void (*body)(const void*, index_t, index_t), const void* context) {
  if (team > 1 && !in_parallel()) {
    Job job;
    job.member = body;
    job.context = context;
    job.items = team;
    if (pool().run(job, team - 1)) {
      if (job.error) std::rethrow_exception(job.error);
      return;
    }
  }
  body(context, 0, 1);
}

}  // namespace gatecell::detail
