// SPDX-License-Identifier: MIT
// GRU over one direction of one layer, in both published forms, forward and backward through time.
//
// (G1) [x_r, x_z, x_n] = x W_ih^T + b_ih
// (G2) r = σ(x_r + h_prev W_hr^T + b_hr)      z = σ(x_z + h_prev W_hz^T + b_hz)
// (G3) linear before reset (PyTorch, cuDNN, ONNX linear_before_reset=1):
//        hn = h_prev W_hn^T + b_hn,           n = tanh(x_n + r * hn)
// (G4) original (Cho et al. 2014, Keras reset_after=False, ONNX linear_before_reset=0):
//        rh = r * h_prev,                     n = tanh(x_n + rh W_hn^T + b_hn)
// (G5) h = (1 - z) * n + z * h_prev
// A step past a sequence's length leaves h unchanged and outputs zero.

#include <algorithm>
#include <cmath>

#include "detail/activations.hpp"
#include "detail/batch_split.hpp"
#include "detail/cell_math.hpp"
#include "detail/direction.hpp"

namespace gatecell::detail {

template <typename Scalar>
void gru_direction_forward(const DirectionForward<Scalar>& a) {
  const index_t H = a.config->hidden_size, N = a.lay.batch, T = a.lay.steps, G = 3 * H;
  const bool lbr = a.config->linear_before_reset;
  LayerCache<Scalar>* cache = a.cache;

  // Training keeps the activated gates in the cache; inference overwrites a window of steps.
  if (cache != nullptr) {
    cache->h_prev.resize(a.lay.rows() * H);
    (lbr ? cache->hn : cache->rh).resize(a.lay.rows() * H);
  }
  GateWindow<Scalar> window(a, G, cache != nullptr ? &cache->gates : nullptr);  // (G1)
  // Packed once, multiplied at every step: all of W_hh^T (linear before reset), or its r z
  // columns and its n columns apart (original form, where the n product waits for r).
  const auto w_hh_kept = kept_pack(a.packs, MatView<Scalar>{a.w.w_hh, H, lbr ? G : 2 * H, 1, H});
  const auto w_hn_kept = lbr ? w_hh_kept : kept_pack(a.packs, MatView<Scalar>{a.w.w_hh + 2 * H * H, H, H, 1, H});
  const PackedMatrix<Scalar>&w_hh_t = *w_hh_kept, &w_hn_t = *w_hn_kept;  // w_hn_t: read in the original form only

  for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    auto gates = window.rows(n0, n1);
    std::vector<Scalar> h, rh(lbr ? 0 : nb * H, Scalar(0));
    Buffer<Scalar> hp(nb * G);  // recurrent products, written in full by each step's GEMMs
    load_state(a.h0, H, n0, n1, h);
    auto add_bias = [&](index_t i, index_t from, index_t count) {  // b_hh's columns [from, from + count)
      if (a.w.b_hh != nullptr)
        VectorMap<Scalar>(hp.data() + i * G + from, count).noalias() += ConstVectorMap<Scalar>(a.w.b_hh + from, count);
    };
    for (index_t k = 0; k < T; ++k) {
      const index_t t = a.step_at(k);
      gates.prepare(t);
      if (cache != nullptr)
        for (index_t n = n0; n < n1; ++n)
          std::copy(h.data() + (n - n0) * H, h.data() + (n - n0 + 1) * H, cache->h_prev.data() + a.lay.row(t, n) * H);
      const MatView<Scalar> h_view = rows_view(h.data(), nb, H, H);

      if (lbr) {
        gemm(h_view, w_hh_t, hp.data(), G, false);  // (G2), (G3) recurrent products in one GEMM
        for (index_t i = 0; i < nb; ++i) add_bias(i, 0, G);
      } else {
        gemm(h_view, w_hh_t, hp.data(), G, false);  // (G2)
        for (index_t n = n0; n < n1; ++n) {
          const index_t i = n - n0;
          add_bias(i, 0, 2 * H);
          if (!a.active(t, n)) continue;
          gru_row_reset(gates.at(t, n), hp.data() + i * G, h.data() + i * H, rh.data() + i * H, H);  // (G2), (G4)
        }
        // (G4) the second recurrent product needs r first.
        gemm(rows_view(rh.data(), nb, H, H), w_hn_t, hp.data() + 2 * H, G, false);
        for (index_t n = n0; n < n1; ++n) {
          add_bias(n - n0, 2 * H, H);
          if (cache != nullptr)
            std::copy(rh.data() + (n - n0) * H, rh.data() + (n - n0 + 1) * H, cache->rh.data() + a.lay.row(t, n) * H);
        }
      }

      for (index_t n = n0; n < n1; ++n) {
        const index_t i = n - n0;
        Scalar* y = a.y.at(a.lay, t, n);
        if (!a.active(t, n)) {
          std::fill(y, y + H, Scalar(0));
          continue;  // h keeps its value
        }
        Scalar* gate = gates.at(t, n);
        const Scalar* p = hp.data() + i * G;
        Scalar* h_row = h.data() + i * H;
        Scalar* hn_out = (cache != nullptr && lbr) ? cache->hn.data() + a.lay.row(t, n) * H : nullptr;
        if (lbr) gru_row_forward_lbr(gate, p, h_row, hn_out, H);  // (G2), (G3), (G5)
        else gru_row_forward_original(gate, p, h_row, H);           // (G2), (G4), (G5)
        std::copy(h_row, h_row + H, y);
      }
    }
    std::copy(h.begin(), h.end(), a.h_n + n0 * H);
  });
}

template <typename Scalar>
void gru_direction_backward(const DirectionBackward<Scalar>& a) {
  const index_t H = a.config->hidden_size, N = a.lay.batch, T = a.lay.steps, G = 3 * H;
  const bool lbr = a.config->linear_before_reset;
  const LayerCache<Scalar>& cache = *a.cache;
  const Seq<const Scalar> gates{cache.gates.data(), G, G};
  const Seq<const Scalar> h_prev_seq{cache.h_prev.data(), H, H};

  // da: gradient of the input-side pre-activations [x_r, x_z, x_n] (G1). With linear before
  // reset, the recurrent side's differs in the n block (r * da_n), so it gets its own buffer.
  // Both are kept in the cache between calls.
  std::vector<Scalar>& da = cache.da;
  std::vector<Scalar>& da_h = cache.da_h;
  da.resize(a.lay.rows() * G);  // no zero fill: the step loop writes every row (tens of MiB a call)
  da_h.resize(lbr ? a.lay.rows() * G : 0);
  const Seq<Scalar> da_seq{da.data(), G, G}, da_h_seq{da_h.data(), G, G};
  const int unit_team = backward_unit_team(a);  // > 1: the step loop split by units (batch_split.cpp)
  PackedMatrix<Scalar> w_hh_p, w_hn_p;  // lbr: all of W_hh; original: its r z rows, then its n rows
  if (unit_team == 1) w_hh_p.pack(rows_view(a.w.w_hh, lbr ? G : 2 * H, H, H));  // else each slice its columns
  if (!lbr) w_hn_p.pack(rows_view(a.w.w_hh + 2 * H * H, H, H, H));

  // A few sequences with large weights (linear before reset): each thread takes a slice of the
  // units at every step. Otherwise the dh recurrence of rows n needs only rows n: each thread
  // carries its own block.
  if (unit_team > 1) batch_split_direction_backward(a, da.data(), da_h.data(), unit_team);
  else for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    std::vector<Scalar> dh, dh_direct(nb * H), dh_next(nb * H), drh(lbr ? 0 : nb * H);
    load_state(a.dh_n, H, n0, n1, dh);
    // Rows [n0, n1) of step t of a [rows, G] buffer, as the A operand of a GEMM.
    auto block = [&](Scalar* data, index_t t, index_t col, index_t cols) {
      const MatView<Scalar> all = step_view(data, G, a.lay, t);
      return MatView<Scalar>{all.data + n0 * all.rs + col, nb, cols, all.rs, 1};
    };
    for (index_t k = T - 1; k >= 0; --k) {
      const index_t t = a.step_at(k);
      record_step_dh(a, t, dh.data(), H, false, n0, n1);
      for (index_t n = n0; n < n1; ++n) {
        Scalar* d = da_seq.at(a.lay, t, n);
        Scalar* d_h = lbr ? da_h_seq.at(a.lay, t, n) : nullptr;
        if (!a.active(t, n)) {  // the step did nothing: da is zero
          std::fill(d, d + G, Scalar(0));
          if (lbr) std::fill(d_h, d_h + G, Scalar(0));
          continue;
        }
        const index_t i = n - n0;
        const Scalar* dy = a.dy.data != nullptr ? a.dy.at(a.lay, t, n) : nullptr;
        const Scalar* hn = lbr ? cache.hn.data() + a.lay.row(t, n) * H : nullptr;
        gru_row_backward(gates.at(a.lay, t, n), h_prev_seq.at(a.lay, t, n), hn, dh.data() + i * H, dy,
                         dh_direct.data() + i * H, d, d_h, H);  // (G5)-(G2)
      }

      if (lbr) {
        gemm(block(da_h.data(), t, 0, G), w_hh_p, dh_next.data(), H, false);
      } else {
        // (G4) d(rh) = da_n W_hn, then r's gradient and rh's share of dh_prev.
        gemm(block(da.data(), t, 2 * H, H), w_hn_p, drh.data(), H, false);
        for (index_t n = n0; n < n1; ++n) {
          if (!a.active(t, n)) continue;
          const index_t i = n - n0;
          const Scalar* gate = gates.at(a.lay, t, n);
          const Scalar* h_prev = h_prev_seq.at(a.lay, t, n);
          Scalar* d = da_seq.at(a.lay, t, n);
          for (index_t j = 0; j < H; ++j) {
            const Scalar r = gate[j], drh_j = drh[i * H + j];
            d[j] = drh_j * h_prev[j] * r * (Scalar(1) - r);         // (G2)
            dh_direct[i * H + j] += drh_j * r;
          }
        }
        gemm(block(da.data(), t, 0, 2 * H), w_hh_p, dh_next.data(), H, false);
      }
      for (index_t n = n0; n < n1; ++n) {
        if (!a.active(t, n)) continue;
        const index_t i = n - n0;
        for (index_t j = 0; j < H; ++j) dh[i * H + j] = dh_next[i * H + j] + dh_direct[i * H + j];
      }
    }
    std::copy(dh.begin(), dh.end(), a.dh0 + n0 * H);
  });

  const Seq<const Scalar> da_c{da.data(), G, G};
  auto da_all = da_c.all(a.lay);
  input_side_gradients(a, G, da_all);
  const index_t rows = a.lay.rows();
  const MatView<Scalar> h_prev_all = rows_view(cache.h_prev.data(), rows, H, H);
  if (lbr) {
    gemm(rows_view(da_h.data(), rows, G, G).t(), h_prev_all, a.g.w_hh, H, true);
    if (a.g.b_hh != nullptr) add_column_sums(da_h.data(), rows, G, G, a.g.b_hh);
  } else {
    const Seq<const Scalar> rh_seq{cache.rh.data(), H, H};
    gemm(rows_view(da.data(), rows, 2 * H, G).t(), h_prev_all, a.g.w_hh, H, true);
    gemm(rows_view(da.data() + 2 * H, rows, H, G).t(), rows_view(rh_seq.data, rows, H, H), a.g.w_hh + 2 * H * H, H,
         true);
    if (a.g.b_hh != nullptr) add_column_sums(da.data(), rows, G, G, a.g.b_hh);
  }
}

template void gru_direction_forward<float>(const DirectionForward<float>&);
template void gru_direction_forward<double>(const DirectionForward<double>&);
template void gru_direction_backward<float>(const DirectionBackward<float>&);
template void gru_direction_backward<double>(const DirectionBackward<double>&);

}  // namespace gatecell::detail
