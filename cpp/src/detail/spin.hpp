// SPDX-License-Identifier: MIT
#pragma once
// Spin-then-yield waits, shared by the pool (pool.cpp) and the teams (team.hpp, step.cpp).

#include <atomic>
#include <chrono>
#include <thread>

#include "detail/simd_avx2.hpp"

namespace gatecell::detail {

// One spin of a waiting thread: a pause (~26 ns on Zen 3) that lets the core's other hardware
// thread go first; nothing on other targets.
inline void pause_once() {
#ifdef GATECELL_X86_AVX2
  _mm_pause();  // SSE2: every x86-64 CPU
#endif
}

// Spins before a waiting thread yields its core (each spin a pause, ~26 ns on Zen 3).
constexpr long kSpinsBeforeYield = 4096;
// Spins between two readings of the clock by a thread that reports how long it waited.
constexpr long kSpinsPerClock = 512;

// Spins (then yields, on a busy machine) until ready() or until the other thread failed.
// waited_us: null, or out: how long it waited in microseconds, roughly (the clock is read every
// kSpinsPerClock spins from then on: shorter waits read 0, longer ones lose up to that much).
template <typename Ready>
bool wait_until(const Ready& ready, const std::atomic<bool>& failed, double* waited_us = nullptr) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point since;
  if (waited_us != nullptr) *waited_us = 0;
  for (long spins = 1; !ready(); ++spins) {
    if (failed.load(std::memory_order_acquire)) return false;
    pause_once();
    if (spins > kSpinsBeforeYield) std::this_thread::yield();
    if (waited_us != nullptr && spins % kSpinsPerClock == 0) {
      const Clock::time_point now = Clock::now();
      if (spins == kSpinsPerClock) since = now;
      *waited_us = std::chrono::duration<double, std::micro>(now - since).count();
    }
  }
  return true;
}

}  // namespace gatecell::detail
