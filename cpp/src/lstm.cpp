// SPDX-License-Identifier: MIT
// LSTM over one direction of one layer, forward and backward through time.
//
// (L1) a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh,   a = [a_i, a_f, a_g, a_o]
// (L2) i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)
// (L3) c = f * c_prev + i * g
// (L4) m = o * tanh(c)
// (L5) h = m, or h = m W_hr^T with a projection (proj_size > 0)
// A step past a sequence's length leaves h and c unchanged and outputs zero.

#include <algorithm>
#include <cmath>

#include "detail/activations.hpp"
#include "detail/batch_split.hpp"
#include "detail/cell_math.hpp"
#include "detail/direction.hpp"

namespace gatecell::detail {

template <typename Scalar>
void lstm_direction_forward(const DirectionForward<Scalar>& a) {
  const index_t H = a.config->hidden_size, P = a.config->output_size(), N = a.lay.batch;
  const index_t T = a.lay.steps, G = 4 * H;
  const bool proj = a.config->proj_size > 0;
  LayerCache<Scalar>* cache = a.cache;

  // Training keeps the activated gates in the cache; inference overwrites a window of steps.
  if (cache != nullptr) {
    cache->h_prev.resize(a.lay.rows() * P);
    cache->c_prev.resize(a.lay.rows() * H);
    cache->c.resize(a.lay.rows() * H);
    if (proj) cache->m.resize(a.lay.rows() * H);
  }
  // (L1), input half: x W_ih^T; lstm_row_forward adds b_ih.
  GateWindow<Scalar> window(a, G, cache != nullptr ? &cache->gates : nullptr, false);
  // Packed once (or kept from an earlier call), multiplied at every step.
  const auto w_hh_kept = kept_pack(a.packs, MatView<Scalar>{a.w.w_hh, P, G, 1, P});
  const auto w_hr_kept = proj ? kept_pack(a.packs, MatView<Scalar>{a.w.w_hr, H, P, 1, H}) : w_hh_kept;
  const PackedMatrix<Scalar>&w_hh_t = *w_hh_kept, &w_hr_t = *w_hr_kept;  // w_hr_t: read with proj only

  for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    auto gates = window.rows(n0, n1);
    std::vector<Scalar> h, h_next(nb * P), c, c_next(nb * H), m(proj ? nb * H : 0);
    Buffer<Scalar> hp(nb * G);  // h_prev W_hh^T, written in full by each step's GEMM
    load_state(a.h0, P, n0, n1, h);
    load_state(a.c0, H, n0, n1, c);
    for (index_t k = 0; k < T; ++k) {
      const index_t t = a.step_at(k);
      gates.prepare(t);
      gemm(rows_view(h.data(), nb, P, P), w_hh_t, hp.data(), G, false);  // (L1), recurrent half
      for (index_t n = n0; n < n1; ++n) {
        const index_t i = n - n0;
        const Scalar* h_prev = h.data() + i * P;
        const Scalar* c_prev = c.data() + i * H;
        Scalar* y = a.y.at(a.lay, t, n);
        Scalar* c_out = c_next.data() + i * H;
        if (cache != nullptr) {
          std::copy(h_prev, h_prev + P, cache->h_prev.data() + a.lay.row(t, n) * P);
          std::copy(c_prev, c_prev + H, cache->c_prev.data() + a.lay.row(t, n) * H);
        }
        if (!a.active(t, n)) {
          std::fill(y, y + P, Scalar(0));
          std::copy(c_prev, c_prev + H, c_out);
          std::copy(h_prev, h_prev + P, h_next.data() + i * P);
          continue;
        }
        Scalar* m_out = proj ? m.data() + i * H : h_next.data() + i * P;
        lstm_row_forward(gates.at(t, n), hp.data() + i * G, c_prev, c_out, m_out, H, a.w.b_hh, a.w.b_ih);  // (L1)-(L4)
        if (!proj) std::copy(m_out, m_out + H, y);
      }

      if (proj) project_block(a, t, n0, n1, w_hr_t, m.data(), h.data(), h_next.data());  // (L5)
      if (cache != nullptr) keep_rows(c_next.data(), H, a.lay, t, n0, n1, cache->c.data());
      h.swap(h_next);
      c.swap(c_next);
    }
    std::copy(h.begin(), h.end(), a.h_n + n0 * P);
    if (a.c_n != nullptr) std::copy(c.begin(), c.end(), a.c_n + n0 * H);
  });
}

// Introspection: dL/dh_t (see record_step_dh) and dL/dc_t = dc (carried) + dm_t o (1 - tanh^2 c_t)  (L3)-(L4)
// for the sequences [n0, n1) of step t; dh and dc are [n1 - n0, P] and [n1 - n0, H]; dm is
// [n1 - n0, H] with a projection (dh already holds dy_t then), else null (dm_t = dL/dh_t).
template <typename Scalar>
void record_step_dc(const DirectionBackward<Scalar>& a, index_t t, const Scalar* dh, const Scalar* dm,
                    const Scalar* dc, index_t n0, index_t n1) {
  const index_t H = a.config->hidden_size, P = a.config->output_size();
  record_step_dh(a, t, dh, P, dm != nullptr, n0, n1);
  for (index_t n = n0; n < n1; ++n) {
    if (!a.active(t, n)) continue;
    const index_t row = a.lay.row(t, n), i = n - n0;
    const Scalar* o = a.cache->gates.data() + row * 4 * H + 3 * H;
    const Scalar* c = a.cache->c.data() + row * H;
    const Scalar* dm_row = dm != nullptr ? dm + i * H : a.record_dh + row * P;
    for (index_t j = 0; j < H; ++j) {
      const Scalar tc = std::tanh(c[j]);
      a.record_dc[row * H + j] = dc[i * H + j] + dm_row[j] * o[j] * (Scalar(1) - tc * tc);
    }
  }
}

template <typename Scalar>
void lstm_direction_backward(const DirectionBackward<Scalar>& a) {
  const index_t H = a.config->hidden_size, P = a.config->output_size(), N = a.lay.batch;
  const index_t T = a.lay.steps, G = 4 * H;
  const bool proj = a.config->proj_size > 0;
  const LayerCache<Scalar>& cache = *a.cache;
  const Seq<const Scalar> gates{cache.gates.data(), G, G};
  const Seq<const Scalar> c_seq{cache.c.data(), H, H}, c_prev_seq{cache.c_prev.data(), H, H};

  std::vector<Scalar>& da = cache.da;          // dL/da for every step, row order of x
  std::vector<Scalar>& dh_seq = cache.dh_seq;  // dL/dh per step (for dW_hr)
  da.resize(a.lay.rows() * G);  // no zero fill: the step loop writes every row (tens of MiB a call)
  dh_seq.assign(proj ? a.lay.rows() * P : 0, Scalar(0));
  const Seq<Scalar> da_seq{da.data(), G, G};
  const int unit_team = backward_unit_team(a);  // > 1: the step loop split by units (batch_split.cpp)
  PackedMatrix<Scalar> w_hh_p, w_hr_p;
  if (unit_team == 1) w_hh_p.pack(rows_view(a.w.w_hh, G, P, P));  // each slice packs its own columns
  if (proj) w_hr_p.pack(rows_view(a.w.w_hr, P, H, H));

  // A few sequences with large weights: each thread takes a slice of the units at every step.
  // Otherwise the dh and dc recurrences of rows n need only rows n: each thread carries its own
  // block of rows.
  if (unit_team > 1) batch_split_direction_backward(a, da.data(), static_cast<Scalar*>(nullptr), unit_team);
  else for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    std::vector<Scalar> dh, dc, dh_next(nb * P), dm(proj ? nb * H : 0);
    load_state(a.dh_n, P, n0, n1, dh);
    load_state(a.dc_n, H, n0, n1, dc);
    std::vector<Scalar> tanh_c(H);  // tanh(c) of one row, vectorised ahead of the scalar loop
    for (index_t k = T - 1; k >= 0; --k) {
      const index_t t = a.step_at(k);
      if (proj) project_block_backward(a, t, n0, n1, w_hr_p, dh.data(), dh_seq.data(), dm.data());  // (L5)
      if (a.record_dh != nullptr) record_step_dc(a, t, dh.data(), proj ? dm.data() : nullptr, dc.data(), n0, n1);

      for (index_t n = n0; n < n1; ++n) {
        if (!a.active(t, n)) {  // the step did nothing: da is zero
          Scalar* d = da_seq.at(a.lay, t, n);
          std::fill(d, d + G, Scalar(0));
          continue;
        }
        const index_t i_row = n - n0;
        const Scalar* gate = gates.at(a.lay, t, n);
        const Scalar* c = c_seq.at(a.lay, t, n);
        const Scalar* c_prev = c_prev_seq.at(a.lay, t, n);
        const Scalar* dy = (proj || a.dy.data == nullptr) ? nullptr : a.dy.at(a.lay, t, n);
        const Scalar* dm_row = proj ? dm.data() + i_row * H : dh.data() + i_row * P;
        Scalar* dc_row = dc.data() + i_row * H;
        Scalar* d = da_seq.at(a.lay, t, n);
        tanh_row(c, tanh_c.data(), H);
        lstm_row_backward(gate, tanh_c.data(), c_prev, dm_row, dy, dc_row, d, H);  // (L4)-(L2)
      }

      // (L1) dh_prev = da W_hh; sequences already finished keep carrying dh unchanged.
      gemm(step_view(static_cast<const Scalar*>(da.data()), G, a.lay, t, n0, n1), w_hh_p, dh_next.data(), P, false);
      carry_active_rows(a, t, n0, n1, dh_next.data(), P, dh.data());
    }
    std::copy(dh.begin(), dh.end(), a.dh0 + n0 * P);
    if (a.dc0 != nullptr) std::copy(dc.begin(), dc.end(), a.dc0 + n0 * H);
  });

  const Seq<const Scalar> da_c{da.data(), G, G};
  auto da_all = da_c.all(a.lay);
  input_side_gradients(a, G, da_all, true, cache.h_prev.data(), a.g.w_hh);  // and b_hh's and W_hh's gradients
  if (proj) {
    const Seq<const Scalar> dh_c{dh_seq.data(), P, P}, m_seq{cache.m.data(), H, H};
    gemm(rows_view(dh_c.data, a.lay.rows(), P, P).t(), rows_view(m_seq.data, a.lay.rows(), H, H), a.g.w_hr, H,
         true);
  }
}

template void lstm_direction_forward<float>(const DirectionForward<float>&);
template void lstm_direction_forward<double>(const DirectionForward<double>&);
template void lstm_direction_backward<float>(const DirectionBackward<float>&);
template void lstm_direction_backward<double>(const DirectionBackward<double>&);

}  // namespace gatecell::detail
