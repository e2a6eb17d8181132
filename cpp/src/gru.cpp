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
  GateWindow<Scalar> gates(a, G, cache != nullptr ? &cache->gates : nullptr);  // (G1)

  std::vector<Scalar> h, hp(N * G), rh(lbr ? 0 : N * H, Scalar(0));
  load_state(a.h0, N * H, h);
  // Packed once, multiplied at every step: all of W_hh^T (linear before reset), or its r z
  // columns and its n columns apart (original form, where the n product waits for r).
  PackedMatrix<Scalar> w_hh_t, w_hn_t;
  w_hh_t.pack({a.w.w_hh, H, lbr ? G : 2 * H, 1, H});
  if (!lbr) w_hn_t.pack({a.w.w_hh + 2 * H * H, H, H, 1, H});
  MatrixMap<Scalar> hp_map{hp.data(), N, G, Eigen::OuterStride<>(G)};

  for (index_t k = 0; k < T; ++k) {
    const index_t t = a.step_at(k);
    gates.prepare(t);
    if (cache != nullptr) Seq<Scalar>{cache->h_prev.data(), H, H}.step(a.lay, t) = matrix(h.data(), N, H);
    const MatView<Scalar> h_view = rows_view(h.data(), N, H, H);

    if (lbr) {
      gemm(h_view, w_hh_t, hp.data(), G, false);  // (G2), (G3) recurrent products in one GEMM
      if (a.w.b_hh != nullptr) hp_map.rowwise() += ConstVectorMap<Scalar>(a.w.b_hh, G);
    } else {
      gemm(h_view, w_hh_t, hp.data(), G, false);  // (G2)
      if (a.w.b_hh != nullptr)
        hp_map.leftCols(2 * H).rowwise() += ConstVectorMap<Scalar>(a.w.b_hh, 2 * H);
#pragma omp parallel for schedule(static) if (N * G >= kParallelWork)
      for (index_t n = 0; n < N; ++n) {
        if (!a.active(t, n)) continue;
        Scalar* gate = gates.at(t, n);
        const Scalar* p = hp.data() + n * G;
        const Scalar* h_row = h.data() + n * H;
        gru_row_reset(gate, p, h_row, rh.data() + n * H, H);  // (G2), (G4)
      }
      // (G4) the second recurrent product needs r first.
      gemm(rows_view(rh.data(), N, H, H), w_hn_t, hp.data() + 2 * H, G, false);
      if (a.w.b_hh != nullptr) hp_map.rightCols(H).rowwise() += ConstVectorMap<Scalar>(a.w.b_hh + 2 * H, H);
      if (cache != nullptr) Seq<Scalar>{cache->rh.data(), H, H}.step(a.lay, t) = matrix(rh.data(), N, H);
    }

#pragma omp parallel for schedule(static) if (N * G >= kParallelWork)
    for (index_t n = 0; n < N; ++n) {
      Scalar* y = a.y.at(a.lay, t, n);
      if (!a.active(t, n)) {
        std::fill(y, y + H, Scalar(0));
        continue;  // h keeps its value
      }
      Scalar* gate = gates.at(t, n);
      const Scalar* p = hp.data() + n * G;
      Scalar* h_row = h.data() + n * H;
      Scalar* hn_out = (cache != nullptr && lbr) ? cache->hn.data() + a.lay.row(t, n) * H : nullptr;
      if (lbr) gru_row_forward_lbr(gate, p, h_row, hn_out, H);  // (G2), (G3), (G5)
      else gru_row_forward_original(gate, p, h_row, H);           // (G2), (G4), (G5)
      std::copy(h_row, h_row + H, y);
    }
  }
  std::copy(h.begin(), h.end(), a.h_n);
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
  std::vector<Scalar> da(a.lay.rows() * G, Scalar(0)), da_h(lbr ? a.lay.rows() * G : 0, Scalar(0));
  std::vector<Scalar> dh, dh_direct(N * H), dh_next(N * H), drh(lbr ? 0 : N * H);
  load_state(a.dh_n, N * H, dh);
  const Seq<Scalar> da_seq{da.data(), G, G}, da_h_seq{da_h.data(), G, G};
  PackedMatrix<Scalar> w_hh_p, w_hn_p;  // lbr: all of W_hh; original: its r z rows, then its n rows
  w_hh_p.pack(rows_view(a.w.w_hh, lbr ? G : 2 * H, H, H));
  if (!lbr) w_hn_p.pack(rows_view(a.w.w_hh + 2 * H * H, H, H, H));

  for (index_t k = T - 1; k >= 0; --k) {
    const index_t t = a.step_at(k);
    record_step_dh(a, t, dh.data(), H, false);
#pragma omp parallel for schedule(static) if (N * G >= kParallelWork)
    for (index_t n = 0; n < N; ++n) {
      if (!a.active(t, n)) continue;
      const Scalar* gate = gates.at(a.lay, t, n);
      const Scalar* h_prev = h_prev_seq.at(a.lay, t, n);
      const Scalar* dy = a.dy.data != nullptr ? a.dy.at(a.lay, t, n) : nullptr;
      const Scalar* hn = lbr ? cache.hn.data() + a.lay.row(t, n) * H : nullptr;
      Scalar* d = da_seq.at(a.lay, t, n);
      Scalar* d_h = lbr ? da_h_seq.at(a.lay, t, n) : nullptr;
      for (index_t j = 0; j < H; ++j) {
        const Scalar r = gate[j], z = gate[H + j], n_ = gate[2 * H + j];
        const Scalar dh_j = dh[n * H + j] + (dy != nullptr ? dy[j] : Scalar(0));
        const Scalar dn = dh_j * (Scalar(1) - z);                  // (G5)
        const Scalar dz = dh_j * (h_prev[j] - n_);
        dh_direct[n * H + j] = dh_j * z;
        const Scalar da_n = dn * (Scalar(1) - n_ * n_);            // (G3), (G4)
        d[H + j] = dz * z * (Scalar(1) - z);                       // (G2)
        d[2 * H + j] = da_n;
        if (lbr) {
          const Scalar dr = da_n * hn[j];                          // (G3)
          d[j] = dr * r * (Scalar(1) - r);                         // (G2)
          d_h[j] = d[j]; d_h[H + j] = d[H + j]; d_h[2 * H + j] = da_n * r;
        }
      }
    }

    if (lbr) {
      gemm(step_view(da_h.data(), G, a.lay, t), w_hh_p, dh_next.data(), H, false);
    } else {
      // (G4) d(rh) = da_n W_hn, then r's gradient and rh's share of dh_prev.
      MatView<Scalar> da_t = step_view(da.data(), G, a.lay, t);
      gemm(MatView<Scalar>{da_t.data + 2 * H, N, H, da_t.rs, 1}, w_hn_p, drh.data(), H, false);
#pragma omp parallel for schedule(static) if (N * G >= kParallelWork)
      for (index_t n = 0; n < N; ++n) {
        if (!a.active(t, n)) continue;
        const Scalar* gate = gates.at(a.lay, t, n);
        const Scalar* h_prev = h_prev_seq.at(a.lay, t, n);
        Scalar* d = da_seq.at(a.lay, t, n);
        for (index_t j = 0; j < H; ++j) {
          const Scalar r = gate[j], drh_j = drh[n * H + j];
          d[j] = drh_j * h_prev[j] * r * (Scalar(1) - r);         // (G2)
          dh_direct[n * H + j] += drh_j * r;
        }
      }
      gemm(MatView<Scalar>{da_t.data, N, 2 * H, da_t.rs, 1}, w_hh_p, dh_next.data(), H, false);
    }
    for (index_t n = 0; n < N; ++n) {
      if (!a.active(t, n)) continue;
      for (index_t j = 0; j < H; ++j) dh[n * H + j] = dh_next[n * H + j] + dh_direct[n * H + j];
    }
  }

  const Seq<const Scalar> da_c{da.data(), G, G};
  auto da_all = da_c.all(a.lay);
  input_side_gradients(a, G, da_all);
  const index_t rows = a.lay.rows();
  const MatView<Scalar> h_prev_all = rows_view(cache.h_prev.data(), rows, H, H);
  if (lbr) {
    const Seq<const Scalar> da_h_c{da_h.data(), G, G};
    auto da_h_all = da_h_c.all(a.lay);
    gemm(rows_view(da_h.data(), rows, G, G).t(), h_prev_all, a.g.w_hh, H, true);
    if (a.g.b_hh != nullptr) VectorMap<Scalar>(a.g.b_hh, G).noalias() += da_h_all.colwise().sum();
  } else {
    const Seq<const Scalar> rh_seq{cache.rh.data(), H, H};
    gemm(rows_view(da.data(), rows, 2 * H, G).t(), h_prev_all, a.g.w_hh, H, true);
    gemm(rows_view(da.data() + 2 * H, rows, H, G).t(), rows_view(rh_seq.data, rows, H, H), a.g.w_hh + 2 * H * H, H,
         true);
    if (a.g.b_hh != nullptr) VectorMap<Scalar>(a.g.b_hh, G).noalias() += da_all.colwise().sum();
  }
  std::copy(dh.begin(), dh.end(), a.dh0);
}

template void gru_direction_forward<float>(const DirectionForward<float>&);
template void gru_direction_forward<double>(const DirectionForward<double>&);
template void gru_direction_backward<float>(const DirectionBackward<float>&);
template void gru_direction_backward<double>(const DirectionBackward<double>&);

}  // namespace gatecell::detail
