// SPDX-License-Identifier: MIT
// Vanilla (Elman) RNN over one direction of one layer, forward and backward through time.
//
// (R1) a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh
// (R2) h = tanh(a)  or  h = relu(a)
// A step past a sequence's length leaves h unchanged and outputs zero.

#include <algorithm>
#include <cmath>

#include "detail/activations.hpp"
#include "detail/batch_split.hpp"
#include "detail/cell_math.hpp"
#include "detail/direction.hpp"

namespace gatecell::detail {

template <typename Scalar>
void rnn_direction_forward(const DirectionForward<Scalar>& a) {
  const index_t H = a.config->hidden_size, N = a.lay.batch, T = a.lay.steps;
  const bool use_relu = a.config->kind == CellKind::rnn_relu;
  LayerCache<Scalar>* cache = a.cache;

  // Training keeps the activated gates in the cache; inference overwrites a window of steps.
  if (cache != nullptr) {
    cache->h_prev.resize(a.lay.rows() * H);
  }
  GateWindow<Scalar> window(a, H, cache != nullptr ? &cache->gates : nullptr);  // (R1), input half; holds a, then h, per step
  // Packed once (or kept from an earlier call), multiplied at every step.
  const auto w_hh_kept = kept_pack(a.packs, MatView<Scalar>{a.w.w_hh, H, H, 1, H});
  const PackedMatrix<Scalar>& w_hh_t = *w_hh_kept;

  for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    auto gates = window.rows(n0, n1);
    std::vector<Scalar> h;
    Buffer<Scalar> hp(nb * H);  // h_prev W_hh^T, written in full by each step's GEMM
    load_state(a.h0, H, n0, n1, h);
    for (index_t k = 0; k < T; ++k) {
      const index_t t = a.step_at(k);
      gates.prepare(t);
      gemm(rows_view(h.data(), nb, H, H), w_hh_t, hp.data(), H, false);  // (R1), recurrent half
      for (index_t n = n0; n < n1; ++n) {
        const index_t i = n - n0;
        Scalar* h_row = h.data() + i * H;  // h_prev of this row was consumed by the GEMM above
        if (cache != nullptr) std::copy(h_row, h_row + H, cache->h_prev.data() + a.lay.row(t, n) * H);
        Scalar* y = a.y.at(a.lay, t, n);
        if (!a.active(t, n)) {
          std::fill(y, y + H, Scalar(0));
          continue;  // h keeps its value
        }
        Scalar* r = hp.data() + i * H;
        if (a.w.b_hh != nullptr) VectorMap<Scalar>(r, H).noalias() += ConstVectorMap<Scalar>(a.w.b_hh, H);
        rnn_row_forward(gates.at(t, n), r, h_row, H, use_relu);  // (R2)
        std::copy(h_row, h_row + H, y);
      }
    }
    std::copy(h.begin(), h.end(), a.h_n + n0 * H);
  });
}

template <typename Scalar>
void rnn_direction_backward(const DirectionBackward<Scalar>& a) {
  const index_t H = a.config->hidden_size, N = a.lay.batch, T = a.lay.steps;
  const bool use_relu = a.config->kind == CellKind::rnn_relu;
  const LayerCache<Scalar>& cache = *a.cache;
  const Seq<const Scalar> gates{cache.gates.data(), H, H};

  std::vector<Scalar>& da = cache.da;  // kept in the cache between calls
  da.resize(a.lay.rows() * H);  // no zero fill: the step loop writes every row
  const Seq<Scalar> da_seq{da.data(), H, H};
  const int unit_team = backward_unit_team(a);  // > 1: the step loop split by units (batch_split.cpp)
  PackedMatrix<Scalar> w_hh_p;
  if (unit_team == 1) w_hh_p.pack(rows_view(a.w.w_hh, H, H, H));  // each slice packs its own columns

  // A few sequences with large weights: each thread takes a slice of the units at every step.
  // Otherwise the dh recurrence of rows n needs only rows n: each thread carries its own block.
  if (unit_team > 1) batch_split_direction_backward(a, da.data(), static_cast<Scalar*>(nullptr), unit_team);
  else for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    std::vector<Scalar> dh, dh_next(nb * H);
    load_state(a.dh_n, H, n0, n1, dh);
    for (index_t k = T - 1; k >= 0; --k) {
      const index_t t = a.step_at(k);
      record_step_dh(a, t, dh.data(), H, false, n0, n1);
      for (index_t n = n0; n < n1; ++n) {
        Scalar* d = da_seq.at(a.lay, t, n);
        if (!a.active(t, n)) {  // the step did nothing: da is zero
          std::fill(d, d + H, Scalar(0));
          continue;
        }
        const Scalar* dy = a.dy.data != nullptr ? a.dy.at(a.lay, t, n) : nullptr;
        rnn_row_backward(gates.at(a.lay, t, n), dh.data() + (n - n0) * H, dy, d, H, use_relu);  // (R2)
      }
      gemm(step_view(static_cast<const Scalar*>(da.data()), H, a.lay, t, n0, n1), w_hh_p, dh_next.data(), H,
           false);  // (R1)
      carry_active_rows(a, t, n0, n1, dh_next.data(), H, dh.data());
    }
    std::copy(dh.begin(), dh.end(), a.dh0 + n0 * H);
  });

  const Seq<const Scalar> da_c{da.data(), H, H};
  auto da_all = da_c.all(a.lay);
  input_side_gradients(a, H, da_all, true, cache.h_prev.data(), a.g.w_hh);  // and b_hh's and W_hh's gradients
}

template void rnn_direction_forward<float>(const DirectionForward<float>&);
template void rnn_direction_forward<double>(const DirectionForward<double>&);
template void rnn_direction_backward<float>(const DirectionBackward<float>&);
template void rnn_direction_backward<double>(const DirectionBackward<double>&);

}  // namespace gatecell::detail
