// SPDX-License-Identifier: MIT
#pragma once
// One direction of one layer: the unit each cell kernel implements and the network stacks.

#include <algorithm>
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

// The N rows of step t of a [rows, cols] buffer in the layout `lay`, as the A operand of a GEMM.
template <typename Scalar>
MatView<Scalar> step_view(const Scalar* data, index_t cols, const Layout& lay, index_t t) {
  return {data + lay.row(t, 0) * cols, lay.batch, cols, cols * lay.batch_stride(), 1};
}

// x W_ih^T + b_ih, the input half of the gate pre-activations (one GEMM over many steps, not one
// per step). Training projects every step at once into the buffer the cache keeps (it ends up
// holding the activated gates); inference projects a window of steps at a time into a scratch
// buffer of bounded size, so its memory does not grow with the sequence length.
template <typename Scalar>
class GateWindow {
 public:
  // a: the direction; gate_rows: G*H; keep: the cache's gate buffer (training) or null (inference)
  GateWindow(const DirectionForward<Scalar>& a, index_t gate_rows, std::vector<Scalar>* keep)
      : a_(a), G_(gate_rows), all_(keep != nullptr) {
    const index_t in = a.x.cols, N = a.lay.batch, T = a.lay.steps;
    w_ih_t_.pack({a.w.w_ih, in, G_, 1, in});
    if (all_) {
      keep->resize(a.lay.rows() * G_);
      data_ = keep->data();
      project(rows_view(a.x.data, a.lay.rows(), in, a.x.ld), data_, G_);
      return;
    }
    span_ = std::max<index_t>(1, std::min<index_t>(T, kWindowElements / std::max<index_t>(1, N * G_)));
    scratch_.resize(span_ * N * G_);
    data_ = scratch_.data();
  }

  // Makes step t available; called by one thread at the start of each step.
  void prepare(index_t t) {
    if (all_ || (t >= lo_ && t < hi_)) return;
    const index_t N = a_.lay.batch, T = a_.lay.steps, in = a_.x.cols;
    lo_ = a_.reverse ? std::max<index_t>(0, t - span_ + 1) : t;
    hi_ = a_.reverse ? t + 1 : std::min<index_t>(T, t + span_);
    if (!a_.lay.batch_first) {
      project(rows_view(a_.x.data + lo_ * N * a_.x.ld, (hi_ - lo_) * N, in, a_.x.ld), data_, G_);
    } else {
      for (index_t n = 0; n < N; ++n)  // the window's rows of one sequence, interleaved by batch
        project(rows_view(a_.x.data + (n * T + lo_) * a_.x.ld, hi_ - lo_, in, a_.x.ld), data_ + n * G_, N * G_);
    }
  }

  // The G*H projections of (t, n); t must have been prepared (training: any t).
  Scalar* at(index_t t, index_t n) const {
    return all_ ? data_ + a_.lay.row(t, n) * G_ : data_ + ((t - lo_) * a_.lay.batch + n) * G_;
  }

 private:
  static constexpr index_t kWindowElements = index_t(1) << 18;  // 1 MiB of float scratch at most

  void project(const MatView<Scalar>& x, Scalar* out, index_t ld_out) {
    gemm(x, w_ih_t_, out, ld_out, false);
    if (a_.w.b_ih == nullptr) return;
    for (index_t r = 0; r < x.rows; ++r)
      VectorMap<Scalar>(out + r * ld_out, G_).noalias() += ConstVectorMap<Scalar>(a_.w.b_ih, G_);
  }

  const DirectionForward<Scalar>& a_;
  index_t G_;
  bool all_;
  PackedMatrix<Scalar> w_ih_t_;
  std::vector<Scalar> scratch_;
  Scalar* data_ = nullptr;
  index_t span_ = 0, lo_ = 0, hi_ = 0;
};

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
