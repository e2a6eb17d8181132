// SPDX-License-Identifier: MIT
// The cell variants of the ONNX RNN, GRU and LSTM operators over one direction of one layer,
// forward and backward through time: any activation functions f, g, h (onnx_activations.hpp),
// the clip of the gate pre-activations, the coupled input-forget gate and the LSTM peepholes.
// Matrix products go through the packed GEMMs like the torch-form kernels; the pointwise math
// runs gate block by gate block (act_row, act_gradient_row: one dispatch on the function per
// block, vector code inside). clip(a) is a limited to [-clip, clip] (the identity when clip = 0).
//
// (V1) a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh   (GRU: a_n as in (V5)/(V6))
// RNN   (V2) h = f(clip(a))
// LSTM  (V3) i = f(clip(a_i + p_i * c_prev))   f_ = 1 - i (input_forget) or f(clip(a_f + p_f * c_prev))
//            g = g(clip(a_g))   c = f_ * c_prev + i * g
// LSTM  (V4) o = f(clip(a_o + p_o * c))   m = o * h(c)   h = m, or m W_hr^T with a projection
// GRU   (V5) r = f(clip(a_r))  z = f(clip(a_z))  linear before reset: n = g(clip(x_n + r * hn)), hn = h_prev W_hn^T + b_hn
//       (V6) original form: n = g(clip(x_n + (r * h_prev) W_hn^T + b_hn))
//       (V7) h = (1 - z) * n + z * h_prev
// The cell state c is not clipped before h (ONNX Runtime clips only the gate inputs).
// The cache keeps the unclipped pre-activations `pre` next to the activated gates: the
// derivatives of relu, hard_sigmoid, elu, ... and of the clip need them.
// A step past a sequence's length leaves h and c unchanged and outputs zero.

#include <algorithm>
#include <cmath>

#include "detail/direction.hpp"
#include "detail/onnx_activations.hpp"
#include "detail/variants.hpp"

namespace gatecell::detail {

namespace {

// The direction index of `activations` a direction uses: 1 only for the reverse half of a
// bidirectional layer (a unidirectional reverse layer has one set of functions).
template <typename A>
index_t direction_index(const A& a) {
  return a.config->bidirectional && a.reverse ? 1 : 0;
}

// hp = h W^T + b for the N rows of h; b may be null.
template <typename Scalar>
void recurrent_product(const Scalar* h, index_t N, index_t in, const PackedMatrix<Scalar>& w_t, const Scalar* b,
                       Scalar* hp, index_t cols, index_t ld) {
  gemm(rows_view(h, N, in, in), w_t, hp, ld, false);
  if (b == nullptr) return;
  for (index_t n = 0; n < N; ++n)
    for (index_t j = 0; j < cols; ++j) hp[n * ld + j] += b[j];
}

// After the step loop: the recurrent-side weight gradients dW_hh += dA^T h_prev, db_hh += sum dA.
template <typename Scalar>
void recurrent_side_gradients(const DirectionBackward<Scalar>& a, const std::vector<Scalar>& da, index_t G,
                              const std::vector<Scalar>& h_prev, index_t Hin) {
  const index_t rows = a.lay.rows();
  gemm(rows_view(da.data(), rows, G, G).t(), rows_view(h_prev.data(), rows, Hin, Hin), a.g.w_hh, Hin, true);
  if (a.g.b_hh != nullptr) VectorMap<Scalar>(a.g.b_hh, G).noalias() += matrix(da.data(), rows, G).colwise().sum();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// RNN

template <typename Scalar>
void rnn_variant_forward(const DirectionForward<Scalar>& a) {
  const index_t H = a.config->hidden_size, N = a.lay.batch, T = a.lay.steps;
  const CellFunctions<Scalar> fn(*a.config, direction_index(a));
  LayerCache<Scalar>* cache = a.cache;
  if (cache != nullptr) {
    cache->h_prev.resize(a.lay.rows() * H);
    cache->pre.resize(a.lay.rows() * H);
  }
  GateWindow<Scalar> window(a, H, cache != nullptr ? &cache->gates : nullptr);  // (V1), input half
  PackedMatrix<Scalar> w_hh_t;
  w_hh_t.pack({a.w.w_hh, H, H, 1, H});

  // Each thread of the team carries the batch rows [n0, n1) through every step (see row_team).
  for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    auto gates = window.rows(n0, n1);
    std::vector<Scalar> h, hp(nb * H);
    load_state(a.h0, H, n0, n1, h);
    for (index_t k = 0; k < T; ++k) {
      const index_t t = a.step_at(k);
      gates.prepare(t);
      if (cache != nullptr) keep_rows(h.data(), H, a.lay, t, n0, n1, cache->h_prev.data());
      recurrent_product(h.data(), nb, H, w_hh_t, a.w.b_hh, hp.data(), H, H);  // (V1), recurrent half
      for (index_t n = n0; n < n1; ++n) {
        Scalar* y = a.y.at(a.lay, t, n);
        if (!a.active(t, n)) {
          std::fill(y, y + H, Scalar(0));
          continue;
        }
        Scalar* gate = gates.at(t, n);
        Scalar* pre = cache != nullptr ? cache->pre.data() + a.lay.row(t, n) * H : nullptr;
        const Scalar* p = hp.data() + (n - n0) * H;
        Scalar* h_row = h.data() + (n - n0) * H;
        for (index_t j = 0; j < H; ++j) gate[j] += p[j];  // (V1)
        if (pre != nullptr) std::copy(gate, gate + H, pre);
        act_row(fn.f, fn.bound, gate, gate, H);  // (V2)
        std::copy(gate, gate + H, h_row);
        std::copy(h_row, h_row + H, y);
      }
    }
    std::copy(h.begin(), h.end(), a.h_n + n0 * H);
  });
}

template <typename Scalar>
void rnn_variant_backward(const DirectionBackward<Scalar>& a) {
  const index_t H = a.config->hidden_size, N = a.lay.batch, T = a.lay.steps;
  const CellFunctions<Scalar> fn(*a.config, direction_index(a));
  const LayerCache<Scalar>& cache = *a.cache;
  std::vector<Scalar>& da = cache.da;  // kept in the cache between calls
  da.assign(a.lay.rows() * H, Scalar(0));
  PackedMatrix<Scalar> w_hh_p;
  w_hh_p.pack(rows_view(a.w.w_hh, H, H, H));

  // The dh recurrence of rows n needs only rows n: each thread carries its own block.
  for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    std::vector<Scalar> dh, dh_next(nb * H);
    load_state(a.dh_n, H, n0, n1, dh);
    for (index_t k = T - 1; k >= 0; --k) {
      const index_t t = a.step_at(k);
      record_step_dh(a, t, dh.data(), H, false, n0, n1);
      for (index_t n = n0; n < n1; ++n) {
        if (!a.active(t, n)) continue;
        const index_t row = a.lay.row(t, n);
        const Scalar* h = cache.gates.data() + row * H;
        const Scalar* pre = cache.pre.data() + row * H;
        const Scalar* dy = a.dy.data != nullptr ? a.dy.at(a.lay, t, n) : nullptr;
        const Scalar* dh_row = dh.data() + (n - n0) * H;
        Scalar* d = da.data() + row * H;
        for (index_t j = 0; j < H; ++j) d[j] = dh_row[j] + (dy != nullptr ? dy[j] : Scalar(0));
        act_gradient_row(fn.f, fn.bound, d, pre, h, d, H);  // (V2)
      }
      gemm(step_view(static_cast<const Scalar*>(da.data()), H, a.lay, t, n0, n1), w_hh_p, dh_next.data(), H,
           false);  // (V1)
      carry_active_rows(a, t, n0, n1, dh_next.data(), H, dh.data());
    }
    std::copy(dh.begin(), dh.end(), a.dh0 + n0 * H);
  });
  input_side_gradients(a, H, matrix(static_cast<const Scalar*>(da.data()), a.lay.rows(), H));
  recurrent_side_gradients(a, da, H, cache.h_prev, H);
}

// ---------------------------------------------------------------------------------------------
// GRU (buffers in torch's gate order r, z, n)

template <typename Scalar>
void gru_variant_forward(const DirectionForward<Scalar>& a) {
  const index_t H = a.config->hidden_size, N = a.lay.batch, T = a.lay.steps, G = 3 * H;
  const bool lbr = a.config->linear_before_reset;
  const CellFunctions<Scalar> fn(*a.config, direction_index(a));
  LayerCache<Scalar>* cache = a.cache;
  if (cache != nullptr) {
    cache->h_prev.resize(a.lay.rows() * H);
    cache->pre.resize(a.lay.rows() * G);
    (lbr ? cache->hn : cache->rh).resize(a.lay.rows() * H);
  }
  GateWindow<Scalar> window(a, G, cache != nullptr ? &cache->gates : nullptr);
  PackedMatrix<Scalar> w_hh_t, w_hn_t;  // lbr: all of W_hh^T; original: its r z columns, then its n columns
  w_hh_t.pack({a.w.w_hh, H, lbr ? G : 2 * H, 1, H});
  if (!lbr) w_hn_t.pack({a.w.w_hh + 2 * H * H, H, H, 1, H});

  // Each thread of the team carries the batch rows [n0, n1) through every step (see row_team).
  for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    auto gates = window.rows(n0, n1);
    std::vector<Scalar> h, hp(nb * G), rh(lbr ? 0 : nb * H, Scalar(0));
    load_state(a.h0, H, n0, n1, h);
    for (index_t k = 0; k < T; ++k) {
      const index_t t = a.step_at(k);
      gates.prepare(t);
      if (cache != nullptr) keep_rows(h.data(), H, a.lay, t, n0, n1, cache->h_prev.data());
      recurrent_product(h.data(), nb, H, w_hh_t, a.w.b_hh, hp.data(), lbr ? G : 2 * H, G);
      if (!lbr) {
        for (index_t n = n0; n < n1; ++n) {
          if (!a.active(t, n)) continue;
          const index_t i = n - n0;
          Scalar* gate = gates.at(t, n);
          Scalar* pre = cache != nullptr ? cache->pre.data() + a.lay.row(t, n) * G : nullptr;
          const Scalar* p = hp.data() + i * G;
          for (index_t j = 0; j < H; ++j) gate[j] += p[j];  // (V1)
          if (pre != nullptr) std::copy(gate, gate + H, pre);
          act_row(fn.f, fn.bound, gate, gate, H);  // (V5)
          for (index_t j = 0; j < H; ++j) rh[i * H + j] = gate[j] * h[i * H + j];  // (V6)
        }
        // (V6) the candidate's recurrent product needs r first.
        recurrent_product(rh.data(), nb, H, w_hn_t, a.w.b_hh != nullptr ? a.w.b_hh + 2 * H : nullptr,
                          hp.data() + 2 * H, H, G);
        if (cache != nullptr) keep_rows(rh.data(), H, a.lay, t, n0, n1, cache->rh.data());
      }
      for (index_t n = n0; n < n1; ++n) {
        Scalar* y = a.y.at(a.lay, t, n);
        if (!a.active(t, n)) {
          std::fill(y, y + H, Scalar(0));
          continue;
        }
        const index_t row = a.lay.row(t, n);
        Scalar* gate = gates.at(t, n);
        Scalar* pre = cache != nullptr ? cache->pre.data() + row * G : nullptr;
        Scalar* hn = cache != nullptr && lbr ? cache->hn.data() + row * H : nullptr;
        const Scalar* p = hp.data() + (n - n0) * G;
        Scalar* h_row = h.data() + (n - n0) * H;
        // (V1), (V5): r (unless the original form computed it above) and z, one block of f
        const index_t first = lbr ? 0 : H;
        for (index_t j = first; j < 2 * H; ++j) gate[j] += p[j];
        if (pre != nullptr) std::copy(gate + first, gate + 2 * H, pre + first);
        act_row(fn.f, fn.bound, gate + first, gate + first, 2 * H - first);
        if (hn != nullptr) std::copy(p + 2 * H, p + 3 * H, hn);
        Scalar* n_ = gate + 2 * H;
        if (lbr) {
          for (index_t j = 0; j < H; ++j) n_[j] += gate[j] * p[2 * H + j];  // (V5)
        } else {
          for (index_t j = 0; j < H; ++j) n_[j] += p[2 * H + j];  // (V6)
        }
        if (pre != nullptr) std::copy(n_, n_ + H, pre + 2 * H);
        act_row(fn.g, fn.bound, n_, n_, H);
        const Scalar* z = gate + H;
        for (index_t j = 0; j < H; ++j) h_row[j] = (Scalar(1) - z[j]) * n_[j] + z[j] * h_row[j];  // (V7)
        std::copy(h_row, h_row + H, y);
      }
    }
    std::copy(h.begin(), h.end(), a.h_n + n0 * H);
  });
}

template <typename Scalar>
void gru_variant_backward(const DirectionBackward<Scalar>& a) {
  const index_t H = a.config->hidden_size, N = a.lay.batch, T = a.lay.steps, G = 3 * H;
  const bool lbr = a.config->linear_before_reset;
  const CellFunctions<Scalar> fn(*a.config, direction_index(a));
  const LayerCache<Scalar>& cache = *a.cache;
  // da: gradient of the input-side pre-activations; with linear before reset the recurrent
  // side's n block differs (r * da_n), so it gets its own buffer da_h.
  // Both are kept in the cache between calls.
  std::vector<Scalar>& da = cache.da;
  std::vector<Scalar>& da_h = cache.da_h;
  da.assign(a.lay.rows() * G, Scalar(0));
  da_h.assign(lbr ? a.lay.rows() * G : 0, Scalar(0));
  PackedMatrix<Scalar> w_hh_p, w_hn_p;
  w_hh_p.pack(rows_view(a.w.w_hh, lbr ? G : 2 * H, H, H));
  if (!lbr) w_hn_p.pack(rows_view(a.w.w_hh + 2 * H * H, H, H, H));

  // The dh recurrence of rows n needs only rows n: each thread carries its own block.
  for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    std::vector<Scalar> dh, dh_direct(nb * H), dh_next(nb * H), drh(lbr ? 0 : nb * H);
    load_state(a.dh_n, H, n0, n1, dh);
    for (index_t k = T - 1; k >= 0; --k) {
      const index_t t = a.step_at(k);
      record_step_dh(a, t, dh.data(), H, false, n0, n1);
      for (index_t n = n0; n < n1; ++n) {
        if (!a.active(t, n)) continue;
        const index_t row = a.lay.row(t, n), i = n - n0;
        const Scalar* gate = cache.gates.data() + row * G;
        const Scalar* pre = cache.pre.data() + row * G;
        const Scalar* h_prev = cache.h_prev.data() + row * H;
        const Scalar* dy = a.dy.data != nullptr ? a.dy.at(a.lay, t, n) : nullptr;
        Scalar* d = da.data() + row * G;
        for (index_t j = 0; j < H; ++j) {
          const Scalar z = gate[H + j], n_ = gate[2 * H + j];
          const Scalar dh_j = dh[i * H + j] + (dy != nullptr ? dy[j] : Scalar(0));
          d[2 * H + j] = dh_j * (Scalar(1) - z);  // (V7): dn, then dz
          d[H + j] = dh_j * (h_prev[j] - n_);
          dh_direct[i * H + j] = dh_j * z;
        }
        act_gradient_row(fn.g, fn.bound, d + 2 * H, pre + 2 * H, gate + 2 * H, d + 2 * H, H);  // (V5), (V6)
        act_gradient_row(fn.f, fn.bound, d + H, pre + H, gate + H, d + H, H);
        if (lbr) {
          const Scalar* hn = cache.hn.data() + row * H;
          for (index_t j = 0; j < H; ++j) d[j] = d[2 * H + j] * hn[j];  // (V5): dr
          act_gradient_row(fn.f, fn.bound, d, pre, gate, d, H);
          Scalar* d_h = da_h.data() + row * G;
          std::copy(d, d + 2 * H, d_h);
          for (index_t j = 0; j < H; ++j) d_h[2 * H + j] = d[2 * H + j] * gate[j];
        }
      }
      if (lbr) {
        gemm(step_view(static_cast<const Scalar*>(da_h.data()), G, a.lay, t, n0, n1), w_hh_p, dh_next.data(), H,
             false);
      } else {
        // (V6) d(rh) = da_n W_hn, then r's gradient and rh's share of dh_prev.
        const MatView<Scalar> da_t = step_view(static_cast<const Scalar*>(da.data()), G, a.lay, t, n0, n1);
        gemm(MatView<Scalar>{da_t.data + 2 * H, nb, H, da_t.rs, 1}, w_hn_p, drh.data(), H, false);
        for (index_t n = n0; n < n1; ++n) {
          if (!a.active(t, n)) continue;
          const index_t row = a.lay.row(t, n), i = n - n0;
          const Scalar* h_prev = cache.h_prev.data() + row * H;
          const Scalar* pre = cache.pre.data() + row * G;
          const Scalar* r = cache.gates.data() + row * G;
          Scalar* d = da.data() + row * G;
          for (index_t j = 0; j < H; ++j) {
            d[j] = drh[i * H + j] * h_prev[j];
            dh_direct[i * H + j] += drh[i * H + j] * r[j];
          }
          act_gradient_row(fn.f, fn.bound, d, pre, r, d, H);  // (V5)
        }
        gemm(MatView<Scalar>{da_t.data, nb, 2 * H, da_t.rs, 1}, w_hh_p, dh_next.data(), H, false);
      }
      for (index_t n = n0; n < n1; ++n) {
        if (!a.active(t, n)) continue;
        const index_t i = n - n0;
        for (index_t j = 0; j < H; ++j) dh[i * H + j] = dh_next[i * H + j] + dh_direct[i * H + j];
      }
    }
    std::copy(dh.begin(), dh.end(), a.dh0 + n0 * H);
  });

  const index_t rows = a.lay.rows();
  input_side_gradients(a, G, matrix(static_cast<const Scalar*>(da.data()), rows, G));
  const MatView<Scalar> h_prev_all = rows_view(cache.h_prev.data(), rows, H, H);
  if (lbr) {
    recurrent_side_gradients(a, da_h, G, cache.h_prev, H);
  } else {
    gemm(rows_view(da.data(), rows, 2 * H, G).t(), h_prev_all, a.g.w_hh, H, true);
    gemm(rows_view(da.data() + 2 * H, rows, H, G).t(), rows_view(cache.rh.data(), rows, H, H),
         a.g.w_hh + 2 * H * H, H, true);
    if (a.g.b_hh != nullptr) VectorMap<Scalar>(a.g.b_hh, G).noalias() += matrix(da.data(), rows, G).colwise().sum();
  }
}

// ---------------------------------------------------------------------------------------------
// LSTM (buffers in torch's gate order i, f, g, o; peepholes (p_i, p_f, p_o))

template <typename Scalar>
void lstm_variant_forward(const DirectionForward<Scalar>& a) {
  const index_t H = a.config->hidden_size, P = a.config->output_size(), N = a.lay.batch;
  const index_t T = a.lay.steps, G = 4 * H;
  const bool proj = a.config->proj_size > 0, coupled = a.config->input_forget;
  const Scalar* peep = a.config->peepholes ? a.w.w_peep : nullptr;
  const CellFunctions<Scalar> fn(*a.config, direction_index(a));
  LayerCache<Scalar>* cache = a.cache;
  if (cache != nullptr) {
    cache->h_prev.resize(a.lay.rows() * P);
    cache->c_prev.resize(a.lay.rows() * H);
    cache->c.resize(a.lay.rows() * H);
    cache->pre.resize(a.lay.rows() * G);
    if (proj) cache->m.resize(a.lay.rows() * H);
  }
  GateWindow<Scalar> window(a, G, cache != nullptr ? &cache->gates : nullptr);  // (V1), input half
  PackedMatrix<Scalar> w_hh_t, w_hr_t;
  w_hh_t.pack({a.w.w_hh, P, G, 1, P});
  if (proj) w_hr_t.pack({a.w.w_hr, H, P, 1, H});

  // Each thread of the team carries the batch rows [n0, n1) through every step (see row_team).
  for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    auto gates = window.rows(n0, n1);
    std::vector<Scalar> h, h_next(nb * P), c, c_next(nb * H), hp(nb * G), m(proj ? nb * H : 0);
    load_state(a.h0, P, n0, n1, h);
    load_state(a.c0, H, n0, n1, c);
    for (index_t k = 0; k < T; ++k) {
      const index_t t = a.step_at(k);
      gates.prepare(t);
      if (cache != nullptr) {
        keep_rows(h.data(), P, a.lay, t, n0, n1, cache->h_prev.data());
        keep_rows(c.data(), H, a.lay, t, n0, n1, cache->c_prev.data());
      }
      recurrent_product(h.data(), nb, P, w_hh_t, a.w.b_hh, hp.data(), G, G);  // (V1), recurrent half
      for (index_t n = n0; n < n1; ++n) {
        const index_t r = n - n0;
        Scalar* y = a.y.at(a.lay, t, n);
        const Scalar* c_prev = c.data() + r * H;
        Scalar* c_out = c_next.data() + r * H;
        if (!a.active(t, n)) {
          std::fill(y, y + P, Scalar(0));
          std::copy(c_prev, c_prev + H, c_out);
          std::copy(h.data() + r * P, h.data() + (r + 1) * P, h_next.data() + r * P);
          continue;
        }
        Scalar* gate = gates.at(t, n);
        Scalar* pre = cache != nullptr ? cache->pre.data() + a.lay.row(t, n) * G : nullptr;
        const Scalar* p = hp.data() + r * G;
        Scalar* m_out = proj ? m.data() + r * H : h_next.data() + r * P;
        Scalar *i = gate, *f = gate + H, *g = gate + 2 * H, *o = gate + 3 * H;
        for (index_t j = 0; j < G; ++j) gate[j] += p[j];  // (V1)
        if (peep != nullptr) {
          for (index_t j = 0; j < H; ++j) {
            i[j] += peep[j] * c_prev[j];
            f[j] += peep[H + j] * c_prev[j];
          }
        }
        if (pre != nullptr) std::copy(gate, gate + 3 * H, pre);
        // (V3): i and f are one block of f unless f = 1 - i
        act_row(fn.f, fn.bound, i, i, coupled ? H : 2 * H);
        if (coupled) {
          for (index_t j = 0; j < H; ++j) f[j] = Scalar(1) - i[j];
        }
        act_row(fn.g, fn.bound, g, g, H);
        for (index_t j = 0; j < H; ++j) c_out[j] = f[j] * c_prev[j] + i[j] * g[j];
        if (peep != nullptr) {
          for (index_t j = 0; j < H; ++j) o[j] += peep[2 * H + j] * c_out[j];
        }
        if (pre != nullptr) std::copy(o, o + H, pre + 3 * H);
        act_row(fn.f, fn.bound, o, o, H);  // (V4)
        act_row(fn.h, Scalar(0), c_out, m_out, H);
        for (index_t j = 0; j < H; ++j) m_out[j] *= o[j];
        if (!proj) std::copy(m_out, m_out + H, y);
      }
      if (proj) project_block(a, t, n0, n1, w_hr_t, m.data(), h.data(), h_next.data());  // (V4)
      if (cache != nullptr) keep_rows(c_next.data(), H, a.lay, t, n0, n1, cache->c.data());
      h.swap(h_next);
      c.swap(c_next);
    }
    std::copy(h.begin(), h.end(), a.h_n + n0 * P);
    if (a.c_n != nullptr) std::copy(c.begin(), c.end(), a.c_n + n0 * H);
  });
}

template <typename Scalar>
void lstm_variant_backward(const DirectionBackward<Scalar>& a) {
  const index_t H = a.config->hidden_size, P = a.config->output_size(), N = a.lay.batch;
  const index_t T = a.lay.steps, G = 4 * H, rows = a.lay.rows();
  const bool proj = a.config->proj_size > 0, coupled = a.config->input_forget;
  const Scalar* peep = a.config->peepholes ? a.w.w_peep : nullptr;
  const CellFunctions<Scalar> fn(*a.config, direction_index(a));
  const LayerCache<Scalar>& cache = *a.cache;
  std::vector<Scalar>& da = cache.da;  // both kept in the cache between calls
  std::vector<Scalar>& dh_seq = cache.dh_seq;
  da.assign(rows * G, Scalar(0));
  dh_seq.assign(proj ? rows * P : 0, Scalar(0));
  PackedMatrix<Scalar> w_hh_p, w_hr_p;
  w_hh_p.pack(rows_view(a.w.w_hh, G, P, P));
  if (proj) w_hr_p.pack(rows_view(a.w.w_hr, P, H, H));

  // The dh and dc recurrences of rows n need only rows n: each thread carries its own block.
  for_each_row_block(N, row_team<Scalar>(N, *a.config), [&](index_t n0, index_t n1) {
    const index_t nb = n1 - n0;
    std::vector<Scalar> dh, dc, dh_next(nb * P), dm(proj ? nb * H : 0);
    std::vector<Scalar> work(3 * H);  // h(c), the gradient of m, the gradient of c (one batch row)
    load_state(a.dh_n, P, n0, n1, dh);
    load_state(a.dc_n, H, n0, n1, dc);
    for (index_t k = T - 1; k >= 0; --k) {
      const index_t t = a.step_at(k);
      if (proj) project_block_backward(a, t, n0, n1, w_hr_p, dh.data(), dh_seq.data(), dm.data());  // (V4)
      record_step_dh(a, t, dh.data(), P, proj, n0, n1);
      for (index_t n = n0; n < n1; ++n) {
        if (!a.active(t, n)) continue;
        const index_t row = a.lay.row(t, n), r = n - n0;
        const Scalar* gate = cache.gates.data() + row * G;
        const Scalar* pre = cache.pre.data() + row * G;
        const Scalar* c = cache.c.data() + row * H;
        const Scalar* c_prev = cache.c_prev.data() + row * H;
        const Scalar* dy = (proj || a.dy.data == nullptr) ? nullptr : a.dy.at(a.lay, t, n);
        const Scalar* dm_row = proj ? dm.data() + r * H : dh.data() + r * P;
        Scalar* dc_row = dc.data() + r * H;
        Scalar* d = da.data() + row * G;
        const Scalar *i = gate, *f = gate + H, *g = gate + 2 * H, *o = gate + 3 * H;
        Scalar *hc = work.data(), *dm_j = hc + H, *dc_j = hc + 2 * H;
        for (index_t j = 0; j < H; ++j) dm_j[j] = dm_row[j] + (dy != nullptr ? dy[j] : Scalar(0));
        act_row(fn.h, Scalar(0), c, hc, H);
        for (index_t j = 0; j < H; ++j) d[3 * H + j] = dm_j[j] * hc[j];  // (V4): da_o
        act_gradient_row(fn.f, fn.bound, d + 3 * H, pre + 3 * H, o, d + 3 * H, H);
        for (index_t j = 0; j < H; ++j) dc_j[j] = dm_j[j] * o[j];
        act_gradient_row(fn.h, Scalar(0), dc_j, c, hc, dc_j, H);
        for (index_t j = 0; j < H; ++j) dc_j[j] += dc_row[j];
        if (peep != nullptr) {
          for (index_t j = 0; j < H; ++j) dc_j[j] += d[3 * H + j] * peep[2 * H + j];
        }
        if (a.record_dc != nullptr) std::copy(dc_j, dc_j + H, a.record_dc + row * H);
        for (index_t j = 0; j < H; ++j) {
          const Scalar df = dc_j[j] * c_prev[j];  // (V3)
          d[j] = coupled ? dc_j[j] * g[j] - df : dc_j[j] * g[j];  // f = 1 - i when coupled
          d[H + j] = coupled ? Scalar(0) : df;
          d[2 * H + j] = dc_j[j] * i[j];
        }
        act_gradient_row(fn.f, fn.bound, d, pre, i, d, coupled ? H : 2 * H);
        act_gradient_row(fn.g, fn.bound, d + 2 * H, pre + 2 * H, g, d + 2 * H, H);
        for (index_t j = 0; j < H; ++j) {
          Scalar dc_prev = dc_j[j] * f[j];
          if (peep != nullptr) dc_prev += d[j] * peep[j] + d[H + j] * peep[H + j];
          dc_row[j] = dc_prev;
        }
      }
      // (V1) dh_prev = da W_hh; sequences already finished keep carrying dh unchanged.
      gemm(step_view(static_cast<const Scalar*>(da.data()), G, a.lay, t, n0, n1), w_hh_p, dh_next.data(), P, false);
      carry_active_rows(a, t, n0, n1, dh_next.data(), P, dh.data());
    }
    std::copy(dh.begin(), dh.end(), a.dh0 + n0 * P);
    if (a.dc0 != nullptr) std::copy(dc.begin(), dc.end(), a.dc0 + n0 * H);
  });

  input_side_gradients(a, G, matrix(static_cast<const Scalar*>(da.data()), rows, G));
  recurrent_side_gradients(a, da, G, cache.h_prev, P);
  if (proj)
    gemm(rows_view(dh_seq.data(), rows, P, P).t(), rows_view(cache.m.data(), rows, H, H), a.g.w_hr, H, true);
  if (peep != nullptr && a.g.w_peep != nullptr) {
    // (V3), (V4): dp_i = sum da_i c_prev, dp_f = sum da_f c_prev, dp_o = sum da_o c (da is zero on idle steps)
    Scalar* dp = a.g.w_peep;
    for (index_t r = 0; r < rows; ++r) {
      const Scalar* d = da.data() + r * G;
      const Scalar* c_prev = cache.c_prev.data() + r * H;
      const Scalar* c = cache.c.data() + r * H;
      for (index_t j = 0; j < H; ++j) {
        dp[j] += d[j] * c_prev[j];
        dp[H + j] += d[H + j] * c_prev[j];
        dp[2 * H + j] += d[3 * H + j] * c[j];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

template <typename Scalar>
void variant_direction_forward(const DirectionForward<Scalar>& a) {
  switch (a.config->kind) {
    case CellKind::rnn_tanh:
    case CellKind::rnn_relu: rnn_variant_forward(a); break;
    case CellKind::lstm: lstm_variant_forward(a); break;
    case CellKind::gru: gru_variant_forward(a); break;
  }
}

template <typename Scalar>
void variant_direction_backward(const DirectionBackward<Scalar>& a) {
  switch (a.config->kind) {
    case CellKind::rnn_tanh:
    case CellKind::rnn_relu: rnn_variant_backward(a); break;
    case CellKind::lstm: lstm_variant_backward(a); break;
    case CellKind::gru: gru_variant_backward(a); break;
  }
}

template void variant_direction_forward<float>(const DirectionForward<float>&);
template void variant_direction_forward<double>(const DirectionForward<double>&);
template void variant_direction_backward<float>(const DirectionBackward<float>&);
template void variant_direction_backward<double>(const DirectionBackward<double>&);

}  // namespace gatecell::detail
