// SPDX-License-Identifier: MIT
#pragma once
// A team of threads that shares every step of one direction by units: each thread owns a slice
// of the hidden units (their rows of the weights, their state) and runs that slice of each step;
// the threads meet at a barrier after every step, because the next step reads the whole h.
// Used by batch-1 inference (step.cpp) and small-batch inference (batch_split.cpp).


#include <atomic>
#include <chrono>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "detail/pool.hpp"
#include "detail/spin.hpp"
#include "detail/stall.hpp"
#include "gatecell/shapes.hpp"

namespace gatecell::detail {

// A barrier for the threads of one parallel region that spins, then yields, and tells a wait
// that lasted long (another thread, on a busy machine, lost its core) from a short one. On a cache
// line of its own, so that no variable a thread writes every step shares it (see windowed_steps).
class alignas(64) SpinBarrier {
 public:
  enum Wait { quick, slow, failed };
  void reset(int threads) { threads_ = threads; }
  // Waits for the other threads; `failed` (at once) when one of them failed, `slow` when the wait
  // lasted more than patience_us microseconds (roughly; negative: always).
  Wait wait(const std::atomic<bool>& error, double patience_us) {
    const unsigned generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == threads_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return patience_us < 0 ? slow : quick;
    }
    double waited_us = 0;
    const bool done = wait_until([&] { return generation_.load(std::memory_order_acquire) != generation; }, error,
                                 &waited_us);
    return !done ? failed : waited_us > patience_us ? slow : quick;
  }

 private:
  int threads_ = 1;
  std::atomic<int> arrived_{0};
  std::atomic<unsigned> generation_{0};
};

// See gatecell/threads.hpp (set_split_patience).
inline std::atomic<double> split_patience_us{100.0};

// Directions run by run_unit_team (see gatecell/threads.hpp, split_runs).
inline std::atomic<long> split_team_runs{0};

// After a split call whose team fell back to one thread, the calling thread's next calls do not
// split for a while: on a host that stays busy, each short call would otherwise lose a time slice
// before its team fell back.
inline StallPause& split_pause() {
  thread_local StallPause pause;
  return pause;
}

// Bytes of weights a step reads from which splitting it by units pays for a barrier per step (two
// threads then stream half the weights each, from two caches). Measured at 2 threads (median
// us/step, split vs not): 64 KiB 0.99-0.56 (LSTM H 64, RNN H 128), 144 KiB 1.26 (LSTM H 96),
// 192 KiB 1.38 (GRU H 128), 1 MiB 1.68 (LSTM H 256), 4 MiB 1.52-1.83.
constexpr index_t kSplitBytes = 128 << 10;
// Fewest units per thread of a split step: fewer would leave the gate math and the barrier a
// large share of a step.
constexpr index_t kSplitUnits = 16;

// Where thread id's slice of H units starts when nt threads split a step (id = nt: H). Slices
// start at multiples of `align` (a multiple of 8), so that each unit falls in the same lane of an
// AVX register of the gate math as in the unsplit step, and slices keep whole registers.
inline index_t slice_start(index_t H, index_t id, index_t nt, index_t align = 8) {
  return id == nt ? H : H * id / nt / align * align;
}

// A wait at a step's barrier counts as long beyond the patience (split_patience_us) plus this many
// times the waiting thread's own work in the step.
constexpr double kSlowSteps = 4;

// Runs `steps` steps on a team of `team` threads (run_team: the calling thread and helpers of the
// pool; fewer when fewer can be had, nt below). Thread id makes its slice (make(id, nt), on its
// own thread, so that the slice's pages land in its cache), then runs slice->step(k) for every k
// and waits at a barrier after each step the slice ran (step returns false for a step it skipped,
// which every slice skips alike). When a thread has waited long twice (another lost its core, on
// a busy machine), the first thread runs every slice from then on: the team switches at a step
// all threads agree on (two barriers after the request). Returns the slices (null past the team
// that ran); the first exception thrown is rethrown.
template <typename Slice, typename Make>
std::vector<std::unique_ptr<Slice>> run_unit_team(int team, index_t steps, const Make& make) {
  split_team_runs.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::unique_ptr<Slice>> slices(team);
  SpinBarrier barrier;
  constexpr index_t kNever = std::numeric_limits<index_t>::max();
  std::atomic<index_t> solo_from{kNever};  // the first step the first thread runs alone
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;
  const double patience_us = split_patience_us.load(std::memory_order_relaxed);
  run_team(team, [&](index_t id, index_t nt) {
    barrier.reset(static_cast<int>(nt));  // every member sets the same size before its first wait
    try {
      slices[id] = make(id, nt);
      if (barrier.wait(failed, patience_us) == SpinBarrier::failed) throw std::runtime_error("split step: failed");
      index_t solo = kNever;
      int slow_waits = 0;  // a lone one is a hiccup of the host: the second makes the switch
      for (index_t k = 0; k < steps; ++k) {
        if (k >= solo) {
          if (id != 0) break;
          for (index_t q = 0; q < nt; ++q) slices[q]->step(k);
          continue;
        }
        const auto start = std::chrono::steady_clock::now();
        if (!slices[id]->step(k)) continue;
        // A wait is long against the step's own work too: a step of 100 us whose partner ran late
        // by as much is load imbalance, not a lost core.
        const double work_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
        const double allowed_us = patience_us < 0 ? patience_us : patience_us + kSlowSteps * work_us;
        const SpinBarrier::Wait waited = barrier.wait(failed, allowed_us);  // the whole h is the next h_prev
        if (waited == SpinBarrier::failed) break;
        index_t never = kNever;
        if (waited == SpinBarrier::slow && ++slow_waits >= 2) solo_from.compare_exchange_strong(never, k + 2);
        solo = solo_from.load(std::memory_order_acquire);
      }
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed.store(true, std::memory_order_release);
    }
  });
  if (error) std::rethrow_exception(error);
  if (solo_from.load(std::memory_order_relaxed) == kNever) split_pause().ran_smoothly();
  else split_pause().stalled();
  return slices;
}

}  // namespace gatecell::detail
