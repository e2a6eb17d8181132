// SPDX-License-Identifier: MIT
#pragma once
// Work the calling thread shares with helper threads that may come late.
//
// The kernels' parallel loops that span a whole call, or one GEMM, have few and coarse items: a
// row team's blocks of batch rows, a GEMM's column ranges. In an OpenMP region every thread of the
// team must arrive before the region ends, so a helper that wakes late holds the calling thread
// for as long. After an idle pause it often does: the first 2-thread call after 0.15 s asleep took
// 1-5 ms here where one thread took 0.3-0.7 ms. run_shared lets the calling thread claim every
// item that no helper has claimed yet, and it waits only for items a helper is running; a helper
// that comes after the last item was claimed finds nothing to do.

#include "gatecell/shapes.hpp"

namespace gatecell::detail {

// True inside an OpenMP parallel region or inside an item of run_shared: work started there stays
// on its thread.
bool in_parallel();

// Runs body(context, item) once for every item in [0, items), on the calling thread and on up to
// threads - 1 helpers of a process-wide pool; items are claimed in increasing order, one at a
// time. Returns when every item has run; the first exception an item threw is rethrown then
// (items not yet claimed by that time are skipped). Every item runs on the calling thread, in
// order, when threads <= 1, items <= 1, in_parallel(), or another thread's run holds the pool.
void run_shared_items(index_t items, int threads, void (*body)(const void*, index_t), const void* context);

// run_shared_items for any callable body(item).
template <typename Body>
void run_shared(index_t items, int threads, const Body& body) {
  run_shared_items(
      items, threads, [](const void* context, index_t item) { (*static_cast<const Body*>(context))(item); }, &body);
}

// Runs body(context, id, team) for every id in [0, team) at the same time, each on a thread of its
// own (the calling thread and team - 1 helpers of the pool), for work whose threads wait for one
// another (a barrier per step); a helper that wakes late is waited for. The team is smaller when
// fewer helpers can be had, and 1 (body(context, 0, 1) on the calling thread) inside
// in_parallel() or when another thread's run holds the pool. The first exception a member threw
// is rethrown once every member has returned.
void run_team_members(int team, void (*body)(const void*, index_t, index_t), const void* context);

// run_team_members for any callable body(id, team).
template <typename Body>
void run_team(int team, const Body& body) {
  run_team_members(
      team,
      [](const void* context, index_t id, index_t size) { (*static_cast<const Body*>(context))(id, size); },
      &body);
}

}  // namespace gatecell::detail
