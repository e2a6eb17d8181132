// SPDX-License-Identifier: MIT
#pragma once
// The entries of a WeightPacks, and kept_pack: a packed weight for one call, taken from the
// caller's WeightPacks when it has one (packed on first use, then kept), else packed for the call.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "detail/gemm.hpp"
#include "gatecell/network.hpp"

namespace gatecell {

template <typename Scalar>
struct WeightPacks<Scalar>::Store {
  struct Entry {
    std::shared_ptr<const void> value;  // a PackedMatrix or an AlignedVector, by the key's type
    std::uint64_t call;                 // the last call that used it
  };
  // Several threads of one call (the two directions, a split team) look up entries at once.
  std::mutex mutex;
  std::map<std::vector<std::intptr_t>, Entry> entries;
  std::uint64_t call = 0, made = 0;

  // network_forward, before and after each call: entries the call did not use are dropped.
  void begin_call() {
    std::lock_guard<std::mutex> lock(mutex);
    ++call;
  }
  void end_call() {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto it = entries.begin(); it != entries.end();) it = it->second.call == call ? std::next(it) : entries.erase(it);
  }
};

namespace detail {

// Identifies a packed weight: the kind of packing (which also fixes the type kept) and every
// address and extent it was packed from.
enum class PackKind : std::intptr_t { matrix, blocks, cell };  // PackedMatrix, PackedMatrix, AlignedVector
using PackKey = std::vector<std::intptr_t>;

template <typename Scalar>
void add_view(PackKey& key, const MatView<Scalar>& v) {
  key.insert(key.end(), {reinterpret_cast<std::intptr_t>(v.data), static_cast<std::intptr_t>(v.rows),
                         static_cast<std::intptr_t>(v.cols), static_cast<std::intptr_t>(v.rs),
                         static_cast<std::intptr_t>(v.cs)});
}

// fill(Packed&) packs the weight; called once per key while `packs` keeps it, at every call without.
template <typename Packed, typename Scalar, typename Fill>
std::shared_ptr<const Packed> kept_pack(WeightPacks<Scalar>* packs, const PackKey& key, const Fill& fill) {
  if (packs == nullptr) {
    auto own = std::make_shared<Packed>();
    fill(*own);
    return own;
  }
  typename WeightPacks<Scalar>::Store& store = packs->store();
  {
    std::lock_guard<std::mutex> lock(store.mutex);
    auto it = store.entries.find(key);
    if (it != store.entries.end()) {
      it->second.call = store.call;
      return std::static_pointer_cast<const Packed>(it->second.value);
    }
  }
  auto made = std::make_shared<Packed>();  // packed outside the lock: the team's threads pack at once
  fill(*made);
  std::lock_guard<std::mutex> lock(store.mutex);
  store.entries[key] = {made, store.call};
  ++store.made;
  return made;
}

// W^T (a view of a row-major W) packed for gemm.
template <typename Scalar>
std::shared_ptr<const PackedMatrix<Scalar>> kept_pack(WeightPacks<Scalar>* packs, const MatView<Scalar>& b) {
  PackKey key{static_cast<std::intptr_t>(PackKind::matrix)};
  add_view(key, b);
  return kept_pack<PackedMatrix<Scalar>>(packs, key, [&](PackedMatrix<Scalar>& p) { p.pack(b); });
}

// Blocks packed side by side for gemm (PackedMatrix::pack(blocks)).
template <typename Scalar>
std::shared_ptr<const PackedMatrix<Scalar>> kept_pack(WeightPacks<Scalar>* packs,
                                                      const std::vector<MatView<Scalar>>& blocks) {
  PackKey key{static_cast<std::intptr_t>(PackKind::blocks)};
  for (const MatView<Scalar>& b : blocks) add_view(key, b);
  return kept_pack<PackedMatrix<Scalar>>(packs, key, [&](PackedMatrix<Scalar>& p) { p.pack(blocks); });
}

}  // namespace detail
}  // namespace gatecell
