// SPDX-License-Identifier: MIT
// run_shared (detail/pool.hpp): every item runs exactly once at any thread count, from any number
// of calling threads at once; an item's exception reaches the caller and the pool goes on; work
// inside an item stays on its thread; a child process made by fork gets a pool of its own.
// run_team: every member runs at the same time as the others, each on its own thread.

#include <doctest/doctest.h>
#include <omp.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "detail/pool.hpp"

namespace {

using gatecell::index_t;
using gatecell::detail::in_parallel;
using gatecell::detail::run_shared;
using gatecell::detail::run_team;

// Runs a team of `team` whose members each wait (up to 10 s) until all have arrived; true if they
// all did, each on its own thread, and the team had `team` members.
bool team_meets(int team) {
  std::atomic<int> arrived{0}, sizes_ok{0};
  std::mutex ids_mutex;
  std::set<std::thread::id> threads;
  std::atomic<bool> timed_out{false};
  run_team(team, [&](index_t, index_t size) {
    if (size == team) sizes_ok.fetch_add(1);
    {
      const std::lock_guard<std::mutex> lock(ids_mutex);
      threads.insert(std::this_thread::get_id());
    }
    arrived.fetch_add(1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < size) {
      if (std::chrono::steady_clock::now() > until) {
        timed_out.store(true);
        return;
      }
      std::this_thread::yield();
    }
  });
  return !timed_out.load() && sizes_ok.load() == team && static_cast<int>(threads.size()) == team;
}

// Runs `rounds` runs of `items` items at `threads` threads; true if each item ran once per run.
bool each_item_once(index_t items, int threads, int rounds) {
  std::vector<std::atomic<int>> ran(static_cast<std::size_t>(items));
  for (int r = 0; r < rounds; ++r) {
    for (auto& n : ran) n.store(0);
    run_shared(items, threads, [&](index_t i) { ran[static_cast<std::size_t>(i)].fetch_add(1); });
    for (auto& n : ran)
      if (n.load() != 1) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("run_shared runs every item exactly once at any thread count") {
  for (int threads : {1, 2, 3, 4, 8})
    for (index_t items : {0, 1, 2, 3, 5, 16, 97}) {
      CAPTURE(threads);
      CAPTURE(items);
      CHECK(each_item_once(items, threads, 200));
    }
}

TEST_CASE("run_shared from several calling threads at once") {
  std::atomic<int> bad{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      if (!each_item_once(7, 2, 500)) bad.fetch_add(1);
    });
  for (auto& t : callers) t.join();
  CHECK(bad.load() == 0);
}

TEST_CASE("an item's exception reaches the caller, and the pool goes on") {
  for (int threads : {1, 2, 4}) {
    CAPTURE(threads);
    for (int round = 0; round < 50; ++round) {
      CHECK_THROWS_AS(run_shared(8, threads,
                                 [](index_t i) {
                                   if (i == 3) throw std::runtime_error("item 3");
                                 }),
                      std::runtime_error);
      CHECK(each_item_once(8, threads, 1));
    }
  }
}

TEST_CASE("work inside an item stays on its thread") {
  CHECK_FALSE(in_parallel());
  std::atomic<int> nested_parallel{0}, inner_items{0};
  run_shared(4, 2, [&](index_t) {
    if (!in_parallel()) nested_parallel.fetch_add(1);
    const std::thread::id outer = std::this_thread::get_id();
    run_shared(3, 2, [&](index_t) {
      inner_items.fetch_add(1);
      if (std::this_thread::get_id() != outer) nested_parallel.fetch_add(100);
    });
  });
  CHECK(nested_parallel.load() == 0);
  CHECK(inner_items.load() == 12);
  CHECK_FALSE(in_parallel());
  int in_region = 0;
#pragma omp parallel num_threads(2) reduction(+ : in_region)
  in_region += in_parallel() ? 1 : 0;
  CHECK(in_region >= 1);
}

TEST_CASE("run_team runs its members at the same time, each on its own thread") {
  for (int round = 0; round < 100; ++round) {
    CAPTURE(round);
    REQUIRE(team_meets(2));
    REQUIRE(team_meets(3));
    CHECK(each_item_once(5, 2, 1));  // shared runs between teams
  }
  int size_inside = 0;
  run_shared(2, 2, [&](index_t item) {
    if (item == 0) run_team(2, [&](index_t, index_t size) { size_inside = static_cast<int>(size); });
  });
  CHECK(size_inside == 1);  // inside an item: a team of one
  CHECK_THROWS_AS(run_team(2,
                           [](index_t id, index_t) {
                             if (id == 1) throw std::runtime_error("member 1");
                           }),
                  std::runtime_error);
  CHECK(team_meets(2));
}

#if defined(__unix__) || defined(__APPLE__)
TEST_CASE("a child process made by fork runs items on a pool of its own") {
  CHECK(each_item_once(16, 2, 10));  // the parent's pool has helpers now
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(team_meets(2) && each_item_once(16, 2, 100) ? 0 : 1);  // a team first: its helper starts late
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
#endif
