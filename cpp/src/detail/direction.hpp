// SPDX-License-Identifier: MIT
#pragma once
// One direction of one layer: the unit each cell kernel implements and the network stacks.

#include <vector>

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
  Scalar* record_dh = nullptr;    // [rows, Hout] out, or null: per-step dL/dh_t (introspection)
  Scalar* record_dc = nullptr;    // [rows, H] out, or null: per-step dL/dc_t (LSTM)

  bool active(index_t t, index_t n) const { return lengths == nullptr || t < lengths[n]; }
  index_t step_at(index_t k) const { return reverse ? lay.steps - 1 - k : k; }
};

template <typename Scalar> void rnn_direction_forward(const DirectionForward<Scalar>& a);
template <typename Scalar> void rnn_direction_backward(const DirectionBackward<Scalar>& a);
template <typename Scalar> void lstm_direction_forward(const DirectionForward<Scalar>& a);
template <typename Scalar> void lstm_direction_backward(const DirectionBackward<Scalar>& a);
template <typename Scalar> void gru_direction_forward(const DirectionForward<Scalar>& a);
template <typename Scalar> void gru_direction_backward(const DirectionBackward<Scalar>& a);

// gates_all = X W_ih^T + b_ih over every step at once (one GEMM, not one per step).
template <typename Scalar>
void input_projection(const DirectionForward<Scalar>& a, index_t gate_rows, MatrixMap<Scalar> gates_all) {
  const index_t in = a.x.cols;
  auto w_ih = matrix(a.w.w_ih, gate_rows, in);
  gates_all.noalias() = a.x.all(a.lay) * w_ih.transpose();
  if (a.w.b_ih != nullptr) gates_all.rowwise() += ConstVectorMap<Scalar>(a.w.b_ih, gate_rows);
}

// After the step loop: the weight gradients of the input side, and dx += dA W_ih.
template <typename Scalar>
void input_side_gradients(const DirectionBackward<Scalar>& a, index_t gate_rows,
                          ConstMatrixMap<Scalar> da_all) {
  const index_t in = a.x.cols;
  matrix(a.g.w_ih, gate_rows, in).noalias() += da_all.transpose() * a.x.all(a.lay);
  if (a.g.b_ih != nullptr) VectorMap<Scalar>(a.g.b_ih, gate_rows).noalias() += da_all.colwise().sum();
  a.dx.all(a.lay).noalias() += da_all * matrix(a.w.w_ih, gate_rows, in);
}

// Introspection: stores dL/dh_t = dh (carried from later steps) + dy_t for every active sequence
// of step t, when backward records; `dh` is [N, width] and already holds dy_t if dy_added.
template <typename Scalar>
void record_step_dh(const DirectionBackward<Scalar>& a, index_t t, const Scalar* dh, index_t width, bool dy_added) {
  if (a.record_dh == nullptr) return;
  for (index_t n = 0; n < a.lay.batch; ++n) {
    if (!a.active(t, n)) continue;
    Scalar* out = a.record_dh + a.lay.row(t, n) * width;
    const Scalar* dy = (dy_added || a.dy.data == nullptr) ? nullptr : a.dy.at(a.lay, t, n);
    for (index_t j = 0; j < width; ++j) out[j] = dh[n * width + j] + (dy != nullptr ? dy[j] : Scalar(0));
  }
}

// Copies a [N, C] state (null = zeros) into a dense buffer.
template <typename Scalar>
void load_state(const Scalar* src, index_t size, std::vector<Scalar>& dst) {
  dst.assign(size, Scalar(0));
  if (src != nullptr) std::copy(src, src + size, dst.begin());
}

}  // namespace gatecell::detail
