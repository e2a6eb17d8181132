// SPDX-License-Identifier: MIT
#pragma once
// The fused single-step kernel: one time step of one layer (direction) for one sequence, as
// one matrix-vector product of [x_t, h_prev] with weights packed once, followed on the spot by
// the gate math. Used by Stream (every step) and by batch-1 sequence inference (network.cpp).

#include <vector>

#include "detail/direction.hpp"

namespace gatecell::detail {

// Hidden units per block: one AVX register of floats. Every block's weights are contiguous.
constexpr index_t kStepLanes = 8;

// Which cell a packed weight buffer holds; the packed layout follows from it alone.
struct CellShape {
  CellKind kind;
  bool linear_before_reset;  // GRU only
  index_t in, H, P;          // input width, hidden size, output width (P < H: LSTM projection)

  // Gate blocks fed by x and by h_prev: G, except the original GRU, whose candidate's
  // recurrent product waits for r (a separate matrix-vector product after the blocks).
  index_t slots_x() const { return kind == CellKind::lstm ? 4 : kind == CellKind::gru ? 3 : 1; }
  index_t slots_h() const { return kind == CellKind::gru && !linear_before_reset ? 2 : slots_x(); }
  index_t blocks() const { return (H + kStepLanes - 1) / kStepLanes; }
  // One block: w_x [in, slots_x, 8], w_h [P, slots_h, 8], b_x [slots_x, 8], b_h [slots_h, 8].
  index_t block_size() const { return (in * slots_x() + P * slots_h() + slots_x() + slots_h()) * kStepLanes; }
  // All blocks, then W_hn and b_hn (original GRU) or W_hr (projection) in gemv's panel layout.
  index_t packed_size() const;
  // Scratch elements cell_step needs.
  index_t work_size() const { return 4 * blocks() * kStepLanes; }
};

// Appends the packed weights of one layer direction to `out`.
// shape: the cell; w: torch-layout weights (biases may be null); out: grows by shape.packed_size()
template <typename Scalar>
void pack_cell(const CellShape& shape, const LayerWeights<Scalar>& w, std::vector<Scalar>& out);

// One time step of one sequence: (R1)-(R2), (L1)-(L5) or (G1)-(G5).
// shape: the cell; packed: from pack_cell; x: [in] input (unused when x_gates is given);
// x_gates: [slots_x * H] x W_ih^T + b_ih computed beforehand, or null; h_prev: [P];
// c: in/out [H] cell state (LSTM, else unused); h: out [P], must not alias h_prev;
// work: [work_size()] scratch
template <typename Scalar>
void cell_step(const CellShape& shape, const Scalar* packed, const Scalar* x, const Scalar* x_gates,
               const Scalar* h_prev, Scalar* c, Scalar* h, Scalar* work);

// Elements that pack_matrix appends for a [rows, cols] matrix.
index_t packed_matrix_size(index_t rows, index_t cols);

// Appends W [rows, cols] (row-major) in gemv's panel layout to `out`.
template <typename Scalar>
void pack_matrix(const Scalar* w, index_t rows, index_t cols, std::vector<Scalar>& out);

// y = W x + b. w: from pack_matrix; x: [cols]; b: [rows] or null; y: out [rows] (not aliasing x)
template <typename Scalar>
void gemv(const Scalar* w, index_t rows, index_t cols, const Scalar* x, const Scalar* b, Scalar* y);

// True when one direction runs on the step kernel: inference of a single sequence with
// torch's cells in the forward or the bidirectional-reverse time order.
template <typename Scalar>
bool step_kernel_applies(const DirectionForward<Scalar>& a) {
  return a.lay.batch == 1 && a.cache == nullptr && !a.config->has_variants() && !a.config->reverse;
}

// One direction of one layer over a whole sequence of batch 1 (see step_kernel_applies).
template <typename Scalar>
void step_direction_forward(const DirectionForward<Scalar>& a);

}  // namespace gatecell::detail
