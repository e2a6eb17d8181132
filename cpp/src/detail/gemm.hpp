// SPDX-License-Identifier: MIT
#pragma once
// C = A B (or C += A B) for the kernels, with results that do not depend on the thread count.
// float on a CPU with AVX2 + FMA goes through a packed micro-kernel (gemm.cpp), chosen at run
// time; everything else through single-threaded Eigen. Threads split C by fixed column panels,
// so every element is summed in the same order whatever the number of threads.

#include <atomic>
#include <utility>
#include <vector>

#include "gatecell/aligned.hpp"
#include "gatecell/shapes.hpp"

namespace gatecell::detail {

// An allocator whose resize leaves new elements uninitialised, on 64-byte boundaries: a buffer
// written in full before it is read skips a zero-fill pass, its fresh pages are first touched by
// the threads that write them, and the kernels' 32-byte loads from it never straddle two lines.
template <typename T>
struct UninitAllocator : AlignedAllocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <typename U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// A scratch buffer of scalars whose resize does not zero (see UninitAllocator).
template <typename Scalar>
using Buffer = std::vector<Scalar, UninitAllocator<Scalar>>;

// A strided matrix: element (i, j) at data[i * rs + j * cs].
template <typename Scalar>
struct MatView {
  const Scalar* data;
  index_t rows, cols, rs, cs;
  MatView t() const { return {data, cols, rows, cs, rs}; }
};

// A row-major [rows, cols] block whose rows are `ld` apart.
template <typename Scalar>
inline MatView<Scalar> rows_view(const Scalar* p, index_t rows, index_t cols, index_t ld) {
  return {p, rows, cols, ld, 1};
}

// The B operand of many products (a weight matrix), packed once before the time loop.
template <typename Scalar>
class PackedMatrix {
 public:
  // Packs b (the data stays referenced on the portable path); reuses the buffer when it fits.
  // Outside a parallel region a large b is packed by all threads, one block of panels each.
  void pack(const MatView<Scalar>& b);
  // Packs the blocks side by side, [b_0 | b_1 | ...] (all of the same rows), without gathering
  // them first when each but the last is whole panels wide (multiples of 16 columns).
  void pack(const std::vector<MatView<Scalar>>& blocks);
  // For a B used once (an activation, not a weight): on the AVX2 path keeps only the views, and
  // the GEMM packs one k block of its panels at a time as it goes, so that B (tens of MiB in the
  // weight gradients) is read once and no packed copy of it is made; elsewhere pack(blocks).
  void refer(const std::vector<MatView<Scalar>>& blocks);
  // The dimensions of B; its data only on the portable path (packed(): the panels hold B).
  const MatView<Scalar>& view() const { return b_; }
  const Scalar* panels() const { return panels_.data(); }
  bool packed() const { return !panels_.empty() || streamed(); }
  // refer() took the blocks: the GEMM packs them k block by k block (pack_rows).
  bool streamed() const { return !blocks_.empty(); }
  // Rows [k0, k0 + kc) of panel p of a streamed B into out, [kc, 16] (zero past B's columns).
  void pack_rows(index_t p, index_t k0, index_t kc, Scalar* out) const;
  // Whether this product should walk the panels backwards: true every other call. A time loop
  // multiplies by the same weights at every step; walking them back and forth, a step starts with
  // the panels the step before read last, still in L2 (a quarter of an LSTM's 4 MiB W_hh for H =
  // 512, half of it on two threads) instead of fetching all of them from L3. The order of the
  // panels changes no sum. Safe to call from several threads at once.
  bool turn() const { return (uses_.fetch_add(1, std::memory_order_relaxed) & 1u) != 0; }

 private:
  static void pack_panels(const MatView<Scalar>& b, Scalar* out);  // b's panels, into out

  MatView<Scalar> b_{nullptr, 0, 0, 0, 0};
  Buffer<Scalar> panels_;    // [ceil(cols/16), rows, 16], zero-padded
  Buffer<Scalar> gathered_;  // blocks gathered for the portable path, [rows, cols]
  std::vector<MatView<Scalar>> blocks_;  // refer()'s blocks, side by side
  mutable std::atomic<unsigned> uses_{0};  // turn()'s calls
};

// c = a b (accumulate: c += a b); c is row-major [a.rows, b.cols] with rows ldc apart.
template <typename Scalar>
void gemm(const MatView<Scalar>& a, const PackedMatrix<Scalar>& b, Scalar* c, index_t ldc, bool accumulate);

// The same with C in two arrays: its columns [0, split) at c (rows ldc apart), the others at c2
// (rows ldc2 apart); each element the same sum as the one-array form gives. (The weight gradients
// [dW_ih | dW_hh] += dA^T [x | h_prev], one product that reads dA once.)
template <typename Scalar>
void gemm(const MatView<Scalar>& a, const PackedMatrix<Scalar>& b, index_t split, Scalar* c, index_t ldc, Scalar* c2,
          index_t ldc2, bool accumulate);

// True when every element of C comes out the same whichever block of A's rows a call gets (the
// packed path: one FMA chain per element in fixed k blocks). Only then may the time loops give
// each thread its own batch rows; Eigen's kernels pick their order by the operand sizes.
template <typename Scalar>
bool gemm_rows_independent();

// The same for a B used once (PackedMatrix::refer).
template <typename Scalar>
void gemm(const MatView<Scalar>& a, const MatView<Scalar>& b, Scalar* c, index_t ldc, bool accumulate) {
  PackedMatrix<Scalar> once;
  once.refer({b});
  gemm(a, once, c, ldc, accumulate);
}

}  // namespace gatecell::detail
