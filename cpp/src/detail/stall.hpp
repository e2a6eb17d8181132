// SPDX-License-Identifier: MIT
#pragma once
// Keeping to one thread for a while after parallel work stalled. On a busy host a thread of a
// team can lose its core for a whole time slice (milliseconds); a time loop that meets its team
// at every step would then wait that long at every step.

#include <algorithm>
#include <chrono>

namespace gatecell::detail {

// One calling thread's pause from parallel work (keep one per thread: thread_local): none at
// first; 50 ms after a stall that came within 200 ms of the one before (a lone stall is a hiccup
// of the host, ~1 ms a few times a minute here even when it is quiet, and a pause would cost
// more than it); doubled at each stall that follows (up to 1.6 s) while the host stays busy; back
// to 50 ms after parallel work that went smoothly.
class StallPause {
 public:
  // True while the caller should run on one thread.
  bool active() const { return Clock::now() < until_; }
  // Parallel work stalled: pause, if the stall before was a recent one.
  void stalled() {
    const Clock::time_point now = Clock::now();
    const bool again = now - last_stall_ < std::chrono::milliseconds(kRepeatMs);
    last_stall_ = now;
    if (!again) return;
    until_ = now + std::chrono::milliseconds(pause_ms_);
    pause_ms_ = std::min(2 * pause_ms_, kLongestMs);
  }
  // Parallel work went smoothly: the next pause is a short one again.
  void ran_smoothly() { pause_ms_ = kFirstMs; }
  // No pause, as at first.
  void reset() { *this = StallPause(); }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr int kFirstMs = 50, kLongestMs = 1600, kRepeatMs = 200;
  Clock::time_point until_{}, last_stall_{};
  int pause_ms_ = kFirstMs;
};

}  // namespace gatecell::detail
