// SPDX-License-Identifier: MIT
#pragma once
// The single-step kernel: one time step of one layer (direction) for one sequence, as one
// matrix-vector product of [x_t, h_prev] with weights packed once into panels of gate rows,
// then the gate math over all units. Used by Stream (every step) and by batch-1 sequence inference (network.cpp).

#include <vector>

#include "detail/direction.hpp"
#include "gatecell/aligned.hpp"

namespace gatecell::detail {

// Gate rows per panel: eight AVX registers of floats (a matrix's last panel may take up to 32
// more, see step.cpp). A panel's weights are one contiguous stream, [K, width], so its outputs
// are sums of scaled columns, vectorised along the rows.
constexpr index_t kStepPanel = 64;

// A run of gate rows (torch order) computed by one pass over its panels, from x, h_prev or both.
struct RowGroup {
  index_t rows;
  bool from_x, from_h;
};

// Which cell a packed weight buffer holds; the packed layout follows from it alone.
struct CellShape {
  CellKind kind;
  bool linear_before_reset;  // GRU only
  index_t in, H, P;          // input width, hidden size, output width (P < H: LSTM projection)
  // A slice: the units [unit0, unit0 + H) of a cell whose h is P > H wide (no projection), for one
  // thread of a step split by units; its weights are those units' rows of each gate block.
  index_t unit0 = 0;
  // x W_ih^T + b_ih comes precomputed at every step (a window of steps projected by one GEMM): the
  // panels then hold no columns of x, and a group fed by x alone none at all.
  bool x_ahead = false;

  bool projected() const { return kind == CellKind::lstm && P < H; }
  // Gate blocks of H rows in torch's W_ih and W_hh.
  index_t gates() const { return kind == CellKind::lstm ? 4 : kind == CellKind::gru ? 3 : 1; }

  // The row groups, at most three: RNN and LSTM, all G*H gate rows from x and h_prev; GRU, the
  // r and z rows from both, then x_n from x alone and (linear_before_reset) h_n from h_prev alone.
  // The original GRU multiplies W_hn by r * h_prev after the groups (a tail matrix), as does the
  // LSTM projection W_hr by o * tanh(c).
  index_t group_count() const { return kind == CellKind::gru ? (linear_before_reset ? 3 : 2) : 1; }
  RowGroup group(index_t g) const {
    if (kind != CellKind::gru) return {gates() * H, true, true};
    if (g == 0) return {2 * H, true, true};  // r, z
    if (g == 1) return {H, true, false};     // x_n = x W_in^T + b_in
    return {H, false, true};                 // h_n = h_prev W_hn^T + b_hn
  }
  // Columns of group g's panels: x's (unless x_ahead), then h_prev's.
  index_t x_columns(const RowGroup& rg) const { return rg.from_x && !x_ahead ? in : 0; }
  index_t columns(const RowGroup& rg) const { return x_columns(rg) + (rg.from_h ? P : 0); }
  // Where group g's pre-activations start in the scratch buffer (rows padded to 8).
  index_t group_offset(index_t g) const {
    index_t at = 0;
    for (index_t k = 0; k < g; ++k) at += padded(group(k).rows);
    return at;
  }
  // One group: its panels (see step.cpp) and two bias vectors [rows padded to 8]: the sum of its
  // sources' biases, and b_hh alone (used when x W_ih^T + b_ih comes precomputed).
  index_t group_size(index_t g) const {
    const RowGroup rg = group(g);
    return padded(rg.rows) * (columns(rg) + 2);
  }
  static index_t padded(index_t rows) { return (rows + 7) / 8 * 8; }
  // All groups, then W_hn and b_hn (original GRU) or W_hr (projection) in gemv's panel layout.
  index_t packed_size() const;
  // Scratch elements cell_step needs.
  index_t work_size() const;
};

// Appends the packed weights of one layer direction to `out`.
// shape: the cell; w: torch-layout weights (biases may be null); out: grows by shape.packed_size()
template <typename Scalar>
void pack_cell(const CellShape& shape, const LayerWeights<Scalar>& w, AlignedVector<Scalar>& out);

// One time step of one sequence: (R1)-(R2), (L1)-(L5) or (G1)-(G5).
// shape: the cell; packed: from pack_cell; x: [in] input (unused when x_gates is given);
// x_gates: [slots * H] x W_ih^T + b_ih computed beforehand (torch gate order), or null (not with
// shape.x_ahead);
// h_prev: [P]; c: in/out [H] cell state (LSTM, else unused); h: out [P] (a slice: [H], its units),
// must not alias h_prev;
// work: [work_size()] scratch; backwards: run the panels in reverse order. Successive calls on
// the same weights should alternate it: the panels read last are still in L1 for the next call.
template <typename Scalar>
void cell_step(const CellShape& shape, const Scalar* packed, const Scalar* x, const Scalar* x_gates,
               const Scalar* h_prev, Scalar* c, Scalar* h, Scalar* work, bool backwards);

// Elements that pack_matrix appends for a [rows, cols] matrix.
index_t packed_matrix_size(index_t rows, index_t cols);

// Appends W [rows, cols] (row-major) in gemv's panel layout to `out`.
template <typename Scalar>
void pack_matrix(const Scalar* w, index_t rows, index_t cols, AlignedVector<Scalar>& out);

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
