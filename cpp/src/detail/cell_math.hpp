// SPDX-License-Identifier: MIT
#pragma once
// The pointwise part of one time step for one batch row, shared by the sequence kernels and
// the streaming step. Equation numbers refer to the headers of rnn.cpp, lstm.cpp and gru.cpp.
// Each runs over H contiguous elements; for float on a CPU with AVX2 + FMA the vector kernels of
// simd.cpp do the whole row (the last block through masked lanes), elsewhere the scalar loop here.

#include <cmath>
#include <type_traits>

#include "detail/activations.hpp"
#include "detail/simd.hpp"
#include "gatecell/shapes.hpp"

namespace gatecell::detail {

// (R2) h = act(a_x + a_h). gate: in a_x [H], out h [H]; hp: a_h [H]; h: out [H].
template <typename Scalar>
inline void rnn_row_forward(Scalar* gate, const Scalar* hp, Scalar* h, index_t H, bool use_relu) {
  index_t j = 0;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) j = rnn_row_forward_avx2(gate, hp, h, H, use_relu);
  }
  for (; j < H; ++j) {
    const Scalar pre = gate[j] + hp[j];
    const Scalar h_new = use_relu ? relu(pre) : std::tanh(pre);
    gate[j] = h_new;
    h[j] = h_new;
  }
}

// (R2) backwards: da = (dh + dy) * act'(a), from h = act(a). h: [H]; dh: [H]; dy: [H] or null;
// da: out [H].
template <typename Scalar>
inline void rnn_row_backward(const Scalar* h, const Scalar* dh, const Scalar* dy, Scalar* da, index_t H,
                             bool use_relu) {
  for (index_t j = 0; j < H; ++j) {
    const Scalar dh_j = dh[j] + (dy != nullptr ? dy[j] : Scalar(0));
    // 1 - h^2 for tanh, [h > 0] for relu
    da[j] = use_relu ? (h[j] > Scalar(0) ? dh_j : Scalar(0)) : dh_j * (Scalar(1) - h[j] * h[j]);
  }
}

// (L2)-(L4). gate: in x W_ih^T (+ b_ih) [4H], out i f g o [4H]; hp: h_prev W_hh^T [4H];
// c_prev: [H]; c: out [H] (may alias c_prev); m: out o * tanh(c) [H]; b_hh, b_ih: [4H] or null,
// added on the fly (a = (gate + b_ih) + (hp + b_hh)), which saves the time loop a pass over hp per
// row, and the input projection a pass over its whole window; the sums are those of the passes.
template <typename Scalar>
inline void lstm_row_forward(Scalar* gate, const Scalar* hp, const Scalar* c_prev, Scalar* c, Scalar* m,
                             index_t H, const Scalar* b_hh = nullptr, const Scalar* b_ih = nullptr) {
  index_t j = 0;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) j = lstm_row_forward_avx2(gate, hp, b_hh, b_ih, c_prev, c, m, H);
  }
  auto a = [&](index_t k) {  // (L1)
    return (b_ih != nullptr ? gate[k] + b_ih[k] : gate[k]) + (b_hh != nullptr ? hp[k] + b_hh[k] : hp[k]);
  };
  for (; j < H; ++j) {
    const Scalar i = sigmoid(a(j));                               // (L2)
    const Scalar f = sigmoid(a(H + j));
    const Scalar g = std::tanh(a(2 * H + j));
    const Scalar o = sigmoid(a(3 * H + j));
    const Scalar c_new = f * c_prev[j] + i * g;                   // (L3)
    m[j] = o * std::tanh(c_new);                                  // (L4)
    c[j] = c_new;
    gate[j] = i; gate[H + j] = f; gate[2 * H + j] = g; gate[3 * H + j] = o;
  }
}

// LSTM backward through (L4)-(L2) for one row. gate: i f g o [4H]; tanh_c: tanh(c) [H];
// c_prev: [H]; dm: dL/dm from later steps [H]; dy: this step's dL/dy [H] or null (added to dm);
// dc: in dL/dc from later steps, out dL/dc_prev [H]; da: out dL/da [4H].
template <typename Scalar>
inline void lstm_row_backward(const Scalar* gate, const Scalar* tanh_c, const Scalar* c_prev, const Scalar* dm,
                              const Scalar* dy, Scalar* dc, Scalar* da, index_t H) {
  index_t j = 0;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) j = lstm_row_backward_avx2(gate, tanh_c, c_prev, dm, dy, dc, da, H);
  }
  for (; j < H; ++j) {
    const Scalar i = gate[j], f = gate[H + j], g = gate[2 * H + j], o = gate[3 * H + j];
    const Scalar dm_j = dm[j] + (dy != nullptr ? dy[j] : Scalar(0));
    const Scalar tc = tanh_c[j];
    const Scalar do_ = dm_j * tc;                                      // (L4)
    const Scalar dc_j = dc[j] + dm_j * o * (Scalar(1) - tc * tc);
    const Scalar di = dc_j * g, df = dc_j * c_prev[j], dg = dc_j * i;  // (L3)
    dc[j] = dc_j * f;
    da[j] = di * i * (Scalar(1) - i);                                  // (L2)
    da[H + j] = df * f * (Scalar(1) - f);
    da[2 * H + j] = dg * (Scalar(1) - g * g);
    da[3 * H + j] = do_ * o * (Scalar(1) - o);
  }
}

// GRU backward through (G5)-(G2) for one row, but r's gradient in the original form (which
// needs d(rh) from the n product first). gate: r z n [3H]; h_prev: [H]; hn: W_hn h_prev + b_hn
// [H] (linear before reset) or null (original); dh: dL/dh from later steps [H]; dy: dL/dy [H] or
// null (added to dh); dh_direct: out, dh_prev's share through z [H]; da: out dL/da [3H] (r's part
// only with hn); da_h: out, the recurrent side's dL/da [3H] (with hn, else unused).
template <typename Scalar>
inline void gru_row_backward(const Scalar* gate, const Scalar* h_prev, const Scalar* hn, const Scalar* dh,
                             const Scalar* dy, Scalar* dh_direct, Scalar* da, Scalar* da_h, index_t H) {
  index_t j = 0;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) j = gru_row_backward_avx2(gate, h_prev, hn, dh, dy, dh_direct, da, da_h, H);
  }
  for (; j < H; ++j) {
    const Scalar r = gate[j], z = gate[H + j], n = gate[2 * H + j];
    const Scalar dh_j = dh[j] + (dy != nullptr ? dy[j] : Scalar(0));
    const Scalar dn = dh_j * (Scalar(1) - z);                  // (G5)
    const Scalar dz = dh_j * (h_prev[j] - n);
    dh_direct[j] = dh_j * z;
    const Scalar da_n = dn * (Scalar(1) - n * n);              // (G3), (G4)
    da[H + j] = dz * z * (Scalar(1) - z);                      // (G2)
    da[2 * H + j] = da_n;
    if (hn != nullptr) {
      const Scalar dr = da_n * hn[j];                          // (G3)
      da[j] = dr * r * (Scalar(1) - r);                        // (G2)
      da_h[j] = da[j]; da_h[H + j] = da[H + j]; da_h[2 * H + j] = da_n * r;
    }
  }
}

// GRU, linear before reset: (G2), (G3), (G5). gate: in [x_r, x_z, x_n], out r z n [3H];
// hp: h_prev W_hh^T + b_hh [3H]; h: in h_prev, out h [H]; hn: out W_hn h_prev + b_hn [H] or null.
template <typename Scalar>
inline void gru_row_forward_lbr(Scalar* gate, const Scalar* hp, Scalar* h, Scalar* hn, index_t H) {
  index_t j = 0;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) j = gru_row_forward_lbr_avx2(gate, hp, h, hn, H);
  }
  for (; j < H; ++j) {
    const Scalar r = sigmoid(gate[j] + hp[j]);                    // (G2)
    const Scalar z = sigmoid(gate[H + j] + hp[H + j]);
    const Scalar n = std::tanh(gate[2 * H + j] + r * hp[2 * H + j]);  // (G3)
    h[j] = (Scalar(1) - z) * n + z * h[j];                        // (G5)
    gate[j] = r; gate[H + j] = z; gate[2 * H + j] = n;
    if (hn != nullptr) hn[j] = hp[2 * H + j];
  }
}

// GRU, original form, first half: (G2) r and (G4) rh = r * h_prev.
// gate: in x_r, out r (first H entries); hp: h_prev W_hr^T + b_hr [H]; h_prev: [H]; rh: out [H].
template <typename Scalar>
inline void gru_row_reset(Scalar* gate, const Scalar* hp, const Scalar* h_prev, Scalar* rh, index_t H) {
  index_t j = 0;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) j = gru_row_reset_avx2(gate, hp, h_prev, rh, H);
  }
  for (; j < H; ++j) {
    const Scalar r = sigmoid(gate[j] + hp[j]);
    gate[j] = r;
    rh[j] = r * h_prev[j];
  }
}

// GRU, original form, second half: (G2) z, (G4) n, (G5). gate: [r, x_z, x_n] in, r z n out;
// hp: [unused, h_prev W_hz^T + b_hz, rh W_hn^T + b_hn] [3H]; h: in h_prev, out h [H].
template <typename Scalar>
inline void gru_row_forward_original(Scalar* gate, const Scalar* hp, Scalar* h, index_t H) {
  index_t j = 0;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) j = gru_row_forward_original_avx2(gate, hp, h, H);
  }
  for (; j < H; ++j) {
    const Scalar z = sigmoid(gate[H + j] + hp[H + j]);
    const Scalar n = std::tanh(gate[2 * H + j] + hp[2 * H + j]);
    h[j] = (Scalar(1) - z) * n + z * h[j];
    gate[H + j] = z; gate[2 * H + j] = n;
  }
}

// y = tanh(x) over n elements (y may alias x).
template <typename Scalar>
inline void tanh_row(const Scalar* x, Scalar* y, index_t n) {
  index_t j = 0;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) j = tanh_avx2(x, y, n);
  }
  for (; j < n; ++j) y[j] = std::tanh(x[j]);
}

}  // namespace gatecell::detail
