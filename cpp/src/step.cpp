// SPDX-License-Identifier: MIT
// The fused single-step kernel (detail/step.hpp). Equation numbers refer to rnn.cpp (R),
// lstm.cpp (L) and gru.cpp (G). For each block of 8 hidden units, the pre-activations of all
// its gates come from one pass over that block's contiguous weights:
//   a_x[s] = b_ih[s] + sum_k x[k] W_ih[s][k]      (or x W_ih^T + b_ih computed beforehand)
//   a_h[s] = b_hh[s] + sum_k h_prev[k] W_hh[s][k]
// and the gate math runs on them while they are still in registers. a_x and a_h stay apart
// because the GRU candidate needs them apart (G3); for the other gates they are simply added.

#include "detail/step.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <type_traits>

#include "detail/activations.hpp"
#include "detail/simd.hpp"
#include "detail/simd_avx2.hpp"

namespace gatecell::detail {

namespace {

constexpr index_t L8 = kStepLanes;
// gemv's panels: rows packed column by column, kPanel rows at a time ([cols, kPanel], zero-padded),
// so a panel is one contiguous stream of weights and its outputs are sums of scaled columns,
// vectorised along the output without horizontal sums.
constexpr index_t kPanel = 64;  // eight AVX registers of floats

index_t panel_rows(index_t rows) { return (rows + kPanel - 1) / kPanel * kPanel; }

// Where the parts of one block sit in the packed buffer.
template <typename Scalar>
struct Block {
  const Scalar *w_x, *w_h, *b_x, *b_h;
  Block(const CellShape& s, const Scalar* packed, index_t b) {
    w_x = packed + b * s.block_size();
    w_h = w_x + s.in * s.slots_x() * L8;
    b_x = w_h + s.P * s.slots_h() * L8;
    b_h = b_x + s.slots_x() * L8;
  }
};

// ---- Portable path (double, and float without AVX2) --------------------------------------------

// acc[s][v] += sum_k u[k] w[k][s][v] over one block's [K, S, 8] weights.
template <typename Scalar>
void accumulate_portable(const Scalar* w, index_t K, index_t S, const Scalar* u, Scalar (*acc)[L8]) {
  for (index_t k = 0; k < K; ++k, w += S * L8) {
    const Scalar uk = u[k];
    for (index_t s = 0; s < S; ++s)
      for (index_t v = 0; v < L8; ++v) acc[s][v] += w[s * L8 + v] * uk;
  }
}

template <typename Scalar>
void gemv_portable(const Scalar* w, index_t rows, index_t cols, const Scalar* x, const Scalar* b, Scalar* y) {
  for (index_t r = 0; r < rows; r += kPanel, w += kPanel * cols) {
    Scalar acc[kPanel] = {};
    for (index_t k = 0; k < cols; ++k) {
      const Scalar xk = x[k];
      const Scalar* col = w + k * kPanel;
      for (index_t v = 0; v < kPanel; ++v) acc[v] += col[v] * xk;
    }
    const index_t n = std::min(kPanel, rows - r);
    for (index_t v = 0; v < n; ++v) y[r + v] = acc[v] + (b != nullptr ? b[r + v] : Scalar(0));
  }
}

template <typename Scalar>
void cell_step_portable(const CellShape& s, const Scalar* packed, const Scalar* x, const Scalar* x_gates,
                        const Scalar* h_prev, Scalar* c, Scalar* h, Scalar* work) {
  const index_t H = s.H, Sx = s.slots_x(), Sh = s.slots_h(), Hp = s.blocks() * L8;
  const bool proj = s.P != H;
  Scalar* m = work;            // LSTM with projection: o * tanh(c)  (L4)
  Scalar* rh = work;           // original GRU: r * h_prev, then z, x_n, W_hn rh + b_hn
  Scalar* z_keep = work + Hp;
  Scalar* xn_keep = work + 2 * Hp;
  Scalar* hn = work + 3 * Hp;
  for (index_t b = 0; b < s.blocks(); ++b) {
    const Block<Scalar> blk(s, packed, b);
    const index_t j0 = b * L8, n = std::min(L8, H - j0);
    Scalar ax[4][L8] = {}, ah[4][L8] = {};
    for (index_t g = 0; g < Sx; ++g)
      for (index_t v = 0; v < n; ++v) ax[g][v] = x_gates != nullptr ? x_gates[g * H + j0 + v] : blk.b_x[g * L8 + v];
    if (x_gates == nullptr) accumulate_portable(blk.w_x, s.in, Sx, x, ax);
    for (index_t g = 0; g < Sh; ++g)
      for (index_t v = 0; v < L8; ++v) ah[g][v] = blk.b_h[g * L8 + v];
    accumulate_portable(blk.w_h, s.P, Sh, h_prev, ah);
    for (index_t v = 0; v < n; ++v) {
      const index_t j = j0 + v;
      switch (s.kind) {
        case CellKind::rnn_tanh: h[j] = std::tanh(ax[0][v] + ah[0][v]); break;  // (R2)
        case CellKind::rnn_relu: h[j] = relu(ax[0][v] + ah[0][v]); break;
        case CellKind::lstm: {
          const Scalar i = sigmoid(ax[0][v] + ah[0][v]), f = sigmoid(ax[1][v] + ah[1][v]);  // (L2)
          const Scalar g = std::tanh(ax[2][v] + ah[2][v]), o = sigmoid(ax[3][v] + ah[3][v]);
          c[j] = f * c[j] + i * g;                            // (L3)
          (proj ? m : h)[j] = o * std::tanh(c[j]);            // (L4)
          break;
        }
        case CellKind::gru: {
          const Scalar r = sigmoid(ax[0][v] + ah[0][v]), z = sigmoid(ax[1][v] + ah[1][v]);  // (G2)
          if (!s.linear_before_reset) {  // (G4) needs r * h_prev of every unit first
            rh[j] = r * h_prev[j];
            z_keep[j] = z;
            xn_keep[j] = ax[2][v];
            break;
          }
          const Scalar n_new = std::tanh(ax[2][v] + r * ah[2][v]);  // (G3)
          h[j] = (Scalar(1) - z) * n_new + z * h_prev[j];          // (G5)
          break;
        }
      }
    }
  }
  const Scalar* tail = packed + s.blocks() * s.block_size();
  if (s.kind == CellKind::lstm && proj) gemv_portable(tail, s.P, H, m, static_cast<const Scalar*>(nullptr), h);  // (L5)
  if (s.kind == CellKind::gru && !s.linear_before_reset) {
    gemv_portable(tail, H, H, rh, tail + packed_matrix_size(H, H), hn);  // (G4)
    for (index_t j = 0; j < H; ++j) {
      const Scalar n_new = std::tanh(xn_keep[j] + hn[j]);
      h[j] = (Scalar(1) - z_keep[j]) * n_new + z_keep[j] * h_prev[j];  // (G5)
    }
  }
}

// ---- AVX2 + FMA path (float) -------------------------------------------------------------------

#ifdef GATECELL_X86_AVX2
using namespace avx2;

// acc[s] += sum_k u[k] w[k][s] over one block's [K, S, 8] weights, in C interleaved chains of
// S accumulators: C * S = 8 independent FMAs in flight hide the FMA latency.
template <int S>
GATECELL_TARGET_AVX2 inline void accumulate_avx2(const float* w, index_t K, const float* u, V (&acc)[S]) {
  constexpr int C = S >= 4 ? 2 : S == 3 ? 2 : 8 / S;
  V part[C][S];
#pragma GCC unroll 4
  for (int q = 0; q < S; ++q) part[0][q] = acc[q];
#pragma GCC unroll 8
  for (int ch = 1; ch < C; ++ch)
#pragma GCC unroll 4
    for (int q = 0; q < S; ++q) part[ch][q] = _mm256_setzero_ps();
  index_t k = 0;
  for (; k + C <= K; k += C, w += C * S * L8) {
#pragma GCC unroll 8
    for (int ch = 0; ch < C; ++ch) {
      const V uk = _mm256_broadcast_ss(u + k + ch);
#pragma GCC unroll 4
      for (int q = 0; q < S; ++q) part[ch][q] = _mm256_fmadd_ps(ld(w + (ch * S + q) * L8), uk, part[ch][q]);
    }
  }
  for (; k < K; ++k, w += S * L8) {
    const V uk = _mm256_broadcast_ss(u + k);
#pragma GCC unroll 4
    for (int q = 0; q < S; ++q) part[0][q] = _mm256_fmadd_ps(ld(w + q * L8), uk, part[0][q]);
  }
#pragma GCC unroll 4
  for (int q = 0; q < S; ++q) {
    V sum = part[0][q];
#pragma GCC unroll 8
    for (int ch = 1; ch < C; ++ch) sum = _mm256_add_ps(sum, part[ch][q]);
    acc[q] = sum;
  }
}

// Lanes [0, n) of a block: full blocks load and store plainly, the last one through a mask.
struct Lanes {
  __m256i mask;
  bool full;
  GATECELL_TARGET_AVX2 explicit Lanes(index_t n)
      : mask(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))),
        full(n == L8) {}
  GATECELL_TARGET_AVX2 V load(const float* p) const { return full ? ld(p) : _mm256_maskload_ps(p, mask); }
  GATECELL_TARGET_AVX2 void store(float* p, V v) const {
    if (full) st(p, v);
    else _mm256_maskstore_ps(p, mask, v);
  }
};

// The pre-activations of one block: ax from x (or from x_gates), ah from h_prev.
template <int SX, int SH>
GATECELL_TARGET_AVX2 inline void block_products(const CellShape& s, const Block<float>& blk, const Lanes& lanes,
                                                index_t j0, const float* x, const float* x_gates,
                                                const float* h_prev, V (&ax)[SX], V (&ah)[SH]) {
  if (x_gates != nullptr) {
#pragma GCC unroll 4
    for (int q = 0; q < SX; ++q) ax[q] = lanes.load(x_gates + q * s.H + j0);
  } else {
#pragma GCC unroll 4
    for (int q = 0; q < SX; ++q) ax[q] = ld(blk.b_x + q * L8);
    accumulate_avx2<SX>(blk.w_x, s.in, x, ax);
  }
#pragma GCC unroll 4
  for (int q = 0; q < SH; ++q) ah[q] = ld(blk.b_h + q * L8);
  accumulate_avx2<SH>(blk.w_h, s.P, h_prev, ah);
}

GATECELL_TARGET_AVX2 void gemv_avx2(const float* w, index_t rows, index_t cols, const float* x, const float* b,
                                    float* y) {
  for (index_t r = 0; r < rows; r += kPanel, w += kPanel * cols) {
    V acc[8];  // unrolled, so the eight stay in registers at any optimisation level
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) acc[v] = _mm256_setzero_ps();
    const float* col = w;
    for (index_t k = 0; k < cols; ++k, col += kPanel) {
      const V xk = _mm256_broadcast_ss(x + k);
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) acc[v] = _mm256_fmadd_ps(ld(col + 8 * v), xk, acc[v]);
    }
    const index_t n = std::min(kPanel, rows - r);
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) {
      if (8 * v >= n) break;
      const Lanes lanes(std::min<index_t>(8, n - 8 * v));
      const V sum = b != nullptr ? _mm256_add_ps(acc[v], lanes.load(b + r + 8 * v)) : acc[v];
      lanes.store(y + r + 8 * v, sum);
    }
  }
}

GATECELL_TARGET_AVX2 void cell_step_avx2(const CellShape& s, const float* packed, const float* x,
                                         const float* x_gates, const float* h_prev, float* c, float* h,
                                         float* work) {
  const index_t H = s.H, Hp = s.blocks() * L8;
  const bool proj = s.P != H;
  const V one = set1(1.0f);
  for (index_t b = 0; b < s.blocks(); ++b) {
    const Block<float> blk(s, packed, b);
    const index_t j0 = b * L8;
    const Lanes lanes(std::min(L8, H - j0));
    switch (s.kind) {
      case CellKind::rnn_tanh:
      case CellKind::rnn_relu: {
        V ax[1], ah[1];
        block_products(s, blk, lanes, j0, x, x_gates, h_prev, ax, ah);
        const V pre = _mm256_add_ps(ax[0], ah[0]);  // (R2); max(0, NaN) keeps the NaN, like relu()
        lanes.store(h + j0, s.kind == CellKind::rnn_relu ? _mm256_max_ps(_mm256_setzero_ps(), pre) : tanh8(pre));
        break;
      }
      case CellKind::lstm: {
        V ax[4], ah[4];
        block_products(s, blk, lanes, j0, x, x_gates, h_prev, ax, ah);
        const V i = sigmoid8(_mm256_add_ps(ax[0], ah[0]));  // (L2)
        const V f = sigmoid8(_mm256_add_ps(ax[1], ah[1]));
        const V g = tanh8(_mm256_add_ps(ax[2], ah[2]));
        const V o = sigmoid8(_mm256_add_ps(ax[3], ah[3]));
        const V c_new = _mm256_fmadd_ps(f, lanes.load(c + j0), _mm256_mul_ps(i, g));  // (L3)
        lanes.store(c + j0, c_new);
        const V m = _mm256_mul_ps(o, tanh8(c_new));  // (L4)
        if (proj) st(work + j0, m);
        else lanes.store(h + j0, m);
        break;
      }
      case CellKind::gru: {
        if (s.linear_before_reset) {
          V ax[3], ah[3];
          block_products(s, blk, lanes, j0, x, x_gates, h_prev, ax, ah);
          const V r = sigmoid8(_mm256_add_ps(ax[0], ah[0]));  // (G2)
          const V z = sigmoid8(_mm256_add_ps(ax[1], ah[1]));
          const V n = tanh8(_mm256_fmadd_ps(r, ah[2], ax[2]));  // (G3)
          const V h_old = lanes.load(h_prev + j0);
          lanes.store(h + j0, _mm256_fmadd_ps(_mm256_sub_ps(one, z), n, _mm256_mul_ps(z, h_old)));  // (G5)
        } else {
          V ax[3], ah[2];
          block_products(s, blk, lanes, j0, x, x_gates, h_prev, ax, ah);
          const V r = sigmoid8(_mm256_add_ps(ax[0], ah[0]));  // (G2)
          st(work + j0, _mm256_mul_ps(r, lanes.load(h_prev + j0)));  // (G4) r * h_prev, for every unit first
          st(work + Hp + j0, sigmoid8(_mm256_add_ps(ax[1], ah[1])));
          st(work + 2 * Hp + j0, ax[2]);
        }
        break;
      }
    }
  }
  const float* tail = packed + s.blocks() * s.block_size();
  if (s.kind == CellKind::lstm && proj) gemv_avx2(tail, s.P, H, work, nullptr, h);  // (L5)
  if (s.kind == CellKind::gru && !s.linear_before_reset) {
    float* hn = work + 3 * Hp;
    gemv_avx2(tail, H, H, work, tail + packed_matrix_size(H, H), hn);  // (G4) W_hn (r * h_prev) + b_hn
    for (index_t j0 = 0; j0 < H; j0 += L8) {
      const Lanes lanes(std::min(L8, H - j0));
      const V z = ld(work + Hp + j0);
      const V n = tanh8(_mm256_add_ps(ld(work + 2 * Hp + j0), lanes.load(hn + j0)));
      lanes.store(h + j0, _mm256_fmadd_ps(_mm256_sub_ps(one, z), n, _mm256_mul_ps(z, lanes.load(h_prev + j0))));  // (G5)
    }
  }
}
#endif

// Inputs at least this wide are projected for a window of steps by one GEMM (GateWindow), whose
// weights are reused across steps, before the step loop; narrower ones ride along in the fused
// product, which then needs no second pass over the gates.
constexpr index_t kWindowInput = 48;

}  // namespace

index_t CellShape::packed_size() const {
  index_t tail = 0;
  if (kind == CellKind::gru && !linear_before_reset) tail = packed_matrix_size(H, H) + H;
  if (kind == CellKind::lstm && P != H) tail = packed_matrix_size(P, H);
  return blocks() * block_size() + tail;
}

index_t packed_matrix_size(index_t rows, index_t cols) { return panel_rows(rows) * cols; }

template <typename Scalar>
void pack_matrix(const Scalar* w, index_t rows, index_t cols, std::vector<Scalar>& out) {
  const index_t offset = static_cast<index_t>(out.size());
  out.resize(offset + packed_matrix_size(rows, cols), Scalar(0));
  Scalar* dst = out.data() + offset;
  for (index_t r = 0; r < rows; ++r)
    for (index_t k = 0; k < cols; ++k) dst[(r / kPanel) * kPanel * cols + k * kPanel + r % kPanel] = w[r * cols + k];
}

template <typename Scalar>
void pack_cell(const CellShape& s, const LayerWeights<Scalar>& w, std::vector<Scalar>& out) {
  const index_t H = s.H, Sx = s.slots_x(), Sh = s.slots_h();
  const index_t offset = static_cast<index_t>(out.size());
  out.resize(offset + s.blocks() * s.block_size(), Scalar(0));
  for (index_t b = 0; b < s.blocks(); ++b) {
    Scalar* w_x = out.data() + offset + b * s.block_size();
    Scalar* w_h = w_x + s.in * Sx * L8;
    Scalar* b_x = w_h + s.P * Sh * L8;
    Scalar* b_h = b_x + Sx * L8;
    for (index_t v = 0; v < L8 && b * L8 + v < H; ++v) {
      const index_t j = b * L8 + v;
      for (index_t g = 0; g < Sx; ++g) {
        for (index_t k = 0; k < s.in; ++k) w_x[(k * Sx + g) * L8 + v] = w.w_ih[(g * H + j) * s.in + k];
        if (w.b_ih != nullptr) b_x[g * L8 + v] = w.b_ih[g * H + j];
      }
      for (index_t g = 0; g < Sh; ++g) {
        for (index_t k = 0; k < s.P; ++k) w_h[(k * Sh + g) * L8 + v] = w.w_hh[(g * H + j) * s.P + k];
        if (w.b_hh != nullptr) b_h[g * L8 + v] = w.b_hh[g * H + j];
      }
    }
  }
  if (s.kind == CellKind::gru && !s.linear_before_reset) {
    pack_matrix(w.w_hh + 2 * H * H, H, H, out);  // W_hn, multiplied by r * h_prev  (G4)
    if (w.b_hh != nullptr) out.insert(out.end(), w.b_hh + 2 * H, w.b_hh + 3 * H);
    else out.resize(out.size() + H, Scalar(0));
  }
  if (s.kind == CellKind::lstm && s.P != H) pack_matrix(w.w_hr, s.P, H, out);  // (L5)
}

template <typename Scalar>
void gemv(const Scalar* w, index_t rows, index_t cols, const Scalar* x, const Scalar* b, Scalar* y) {
#ifdef GATECELL_X86_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) return gemv_avx2(w, rows, cols, x, b, y);
  }
#endif
  gemv_portable(w, rows, cols, x, b, y);
}

template <typename Scalar>
void cell_step(const CellShape& shape, const Scalar* packed, const Scalar* x, const Scalar* x_gates,
               const Scalar* h_prev, Scalar* c, Scalar* h, Scalar* work) {
#ifdef GATECELL_X86_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) return cell_step_avx2(shape, packed, x, x_gates, h_prev, c, h, work);
  }
#endif
  cell_step_portable(shape, packed, x, x_gates, h_prev, c, h, work);
}

template <typename Scalar>
void step_direction_forward(const DirectionForward<Scalar>& a) {
  const NetworkConfig& config = *a.config;
  const CellShape s{config.kind, config.linear_before_reset, a.x.cols, config.hidden_size, config.output_size()};
  std::vector<Scalar> packed, work(s.work_size()), h0, c;
  pack_cell(s, a.w, packed);
  load_state(a.h0, s.P, h0);
  load_state(a.c0, s.H, c);
  std::optional<GateWindow<Scalar>> gates;
  if (s.in >= kWindowInput) gates.emplace(a, s.slots_x() * s.H, nullptr);
  const index_t length = a.lengths != nullptr ? a.lengths[0] : a.lay.steps;
  const Scalar* h_prev = h0.data();
  for (index_t k = 0; k < a.lay.steps; ++k) {
    const index_t t = a.step_at(k);
    Scalar* y = a.y.at(a.lay, t, 0);
    if (t >= length) {  // past the sequence's end: output zero, state unchanged
      std::fill(y, y + s.P, Scalar(0));
      continue;
    }
    const Scalar* x_gates = nullptr;
    if (gates) {
      gates->prepare(t);
      x_gates = gates->at(t, 0);
    }
    cell_step(s, packed.data(), a.x.at(a.lay, t, 0), x_gates, h_prev, c.data(), y, work.data());
    h_prev = y;  // this step's output row is the next step's h_prev
  }
  std::copy(h_prev, h_prev + s.P, a.h_n);
  if (a.c_n != nullptr) std::copy(c.begin(), c.end(), a.c_n);
}

#define GATECELL_STEP_INSTANTIATE(Scalar)                                                                     \
  template void pack_matrix<Scalar>(const Scalar*, index_t, index_t, std::vector<Scalar>&);                  \
  template void pack_cell<Scalar>(const CellShape&, const LayerWeights<Scalar>&, std::vector<Scalar>&);      \
  template void gemv<Scalar>(const Scalar*, index_t, index_t, const Scalar*, const Scalar*, Scalar*);        \
  template void cell_step<Scalar>(const CellShape&, const Scalar*, const Scalar*, const Scalar*,             \
                                  const Scalar*, Scalar*, Scalar*, Scalar*);                                 \
  template void step_direction_forward<Scalar>(const DirectionForward<Scalar>&);
GATECELL_STEP_INSTANTIATE(float)
GATECELL_STEP_INSTANTIATE(double)

}  // namespace gatecell::detail
