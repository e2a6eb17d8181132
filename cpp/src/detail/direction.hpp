// SPDX-License-Identifier: MIT
#pragma once
// One direction of one layer: the unit each cell kernel implements and the network stacks.

#include <vector>

#include "detail/gemm.hpp"
#include "detail/sequence.hpp"
#include "gatecell/network.hpp"

namespace gatecell::detail {

// Pointwise loops go parallel only when a step has enough work to pay for the fork.
constexpr index_t kParallelWork = 1 << 14;

template <typename Scalar>
struct DirectionForward {
  const NetworkConfig* config;
  Layout lay;
  const index_t* lengths;  // [N] or null
  bool reverse;
  LayerWeights<Scalar> w;
  Seq<const Scalar> x;     // [rows, in] layer input
  Seq<Scalar> y;           // [rows, Hout] column slice of the layer output
  const Scalar* h0;        // [N, Hout] or null
  const Scalar* c0;        // [N, H] or null (LSTM)
  Scalar* h_n;             // [N, Hout]
  Scalar* c_n;             // [N, H] (LSTM)
  LayerCache<Scalar>* cache;  // null in inference

  bool active(index_t t, index_t n) const { return lengths == nullptr || t < lengths[n]; }
  index_t step_at(index_t k) const { return reverse ? lay.steps - 1 - k : k; }
};

template <typename Scalar>
struct DirectionBackward {
  const NetworkConfig* config;
  Layout lay;
  const index_t* lengths;
  bool reverse;
  LayerWeights<Scalar> w;
  LayerGrads<Scalar> g;           // accumulated (+=)
  Seq<const Scalar> x;            // [rows, in] layer input of the forward call
  const LayerCache<Scalar>* cache;
  Seq<const Scalar> dy;           // [rows, Hout] column slice, data may be null (zero)
  const Scalar* dh_n;             // [N, Hout] or null
  const Scalar* dc_n;             // [N, H] or null
  Seq<Scalar> dx;                 // [rows, in] accumulated (+=)
  Scalar* dh0;                    // [N, Hout] out
  Scalar* dc0;                    // [N, H] out (LSTM)

  bool active(index_t t, index_t n) const { return lengths == nullptr || t < lengths[n]; }
  index_t step_at(index_t k) const { return reverse ? lay.steps - 1 - k : k; }
};

template <typename Scalar> void rnn_direction_forward(const DirectionForward<Scalar>& a);
template <typename Scalar> void rnn_direction_backward(const DirectionBackward<Scalar>& a);
template <typename Scalar> void lstm_direction_forward(const DirectionForward<Scalar>& a);
template <typename Scalar> void lstm_direction_backward(const DirectionBackward<Scalar>& a);
template <typename Scalar> void gru_direction_forward(const DirectionForward<Scalar>& a);
template <typename Scalar> void gru_direction_backward(const DirectionBackward<Scalar>& a);

// The N rows of step t of a [rows, cols] buffer in the layout `lay`, as the A operand of a GEMM.
template <typename Scalar>
MatView<Scalar> step_view(const Scalar* data, index_t cols, const Layout& lay, index_t t) {
  return {data + lay.row(t, 0) * cols, lay.batch, cols, cols * lay.batch_stride(), 1};
}

// gates_all = X W_ih^T + b_ih over every step at once (one GEMM, not one per step).
template <typename Scalar>
void input_projection(const DirectionForward<Scalar>& a, index_t gate_rows, MatrixMap<Scalar> gates_all) {
  const index_t in = a.x.cols;
  gemm(rows_view(a.x.data, a.lay.rows(), in, a.x.ld), MatView<Scalar>{a.w.w_ih, in, gate_rows, 1, in},
       gates_all.data(), gates_all.outerStride(), false);
  if (a.w.b_ih != nullptr) gates_all.rowwise() += ConstVectorMap<Scalar>(a.w.b_ih, gate_rows);
}

// After the step loop: the weight gradients of the input side, and dx += dA W_ih.
template <typename Scalar>
void input_side_gradients(const DirectionBackward<Scalar>& a, index_t gate_rows,
                          ConstMatrixMap<Scalar> da_all) {
  const index_t in = a.x.cols, rows = a.lay.rows(), ld_da = da_all.outerStride();
  const MatView<Scalar> da = rows_view(da_all.data(), rows, gate_rows, ld_da);
  gemm(da.t(), rows_view(a.x.data, rows, in, a.x.ld), a.g.w_ih, in, true);
  if (a.g.b_ih != nullptr) VectorMap<Scalar>(a.g.b_ih, gate_rows).noalias() += da_all.colwise().sum();
  gemm(da, rows_view(a.w.w_ih, gate_rows, in, in), a.dx.data, a.dx.ld, true);
}

// Copies a [N, C] state (null = zeros) into a dense buffer.
template <typename Scalar>
void load_state(const Scalar* src, index_t size, std::vector<Scalar>& dst) {
  dst.assign(size, Scalar(0));
  if (src != nullptr) std::copy(src, src + size, dst.begin());
}

}  // namespace gatecell::detail
