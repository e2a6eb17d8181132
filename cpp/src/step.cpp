// SPDX-License-Identifier: MIT
// The single-step kernel (detail/step.hpp). Equation numbers refer to rnn.cpp (R), lstm.cpp (L)
// and gru.cpp (G). A step runs in two passes:
//   1. the gate pre-activations of every row group, 64 rows at a time, from one contiguous
//      stream of packed weights per panel (eight accumulators, one FMA per weight):
//        a[s] = b[s] + sum_k x[k] W_ih[s][k] + sum_k h_prev[k] W_hh[s][k]
//      (with x W_ih^T + b_ih given, the accumulators start from it and b_hh instead);
//   2. the gate math over all hidden units, eight at a time; the units are independent, so the
//      activations of many run side by side.
// At batch 1 each weight is used once per step: the time goes into reading them. Alternate
// calls run the panels in reverse order, so the panels read last, still in L1, come first.

#include "detail/step.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

#include "detail/activations.hpp"
#include "detail/pool.hpp"
#include "detail/simd.hpp"
#include "detail/vector_ops.hpp"
#include "detail/team.hpp"
#include "gatecell/threads.hpp"

namespace gatecell::detail {

namespace {

constexpr index_t R = kStepPanel;
constexpr index_t L8 = 8;  // work_size keeps its two vectors of H rounded up to a multiple of this

index_t round_up(index_t n, index_t to) { return (n + to - 1) / to * to; }

// Narrowest panel but a matrix's only one: eight accumulators' worth of FMA chains in flight, so
// that every panel sums each row in one chain (panel_avx2), whatever the panel's width.
constexpr index_t kMinPanel = 40;
constexpr index_t kMaxPanel = R + kMinPanel - 8;

// A [rows, K] matrix in panels: panel p holds rows [64p, 64p + width) as [K, width], width = 64
// but for the last, which holds the rest, rows rounded up to 8 (zero-padded): 8 to 64 rows, or 72
// to 96 when the rest (under kMinPanel rows) joins the panel before it. At offset 64 K p;
// K * padded(rows) in all.
index_t padded(index_t rows) { return CellShape::padded(rows); }
index_t panel_count(index_t rows) {
  const index_t full = padded(rows) / R, rest = padded(rows) % R;
  return full + (rest >= kMinPanel || (rest > 0 && full == 0) ? 1 : 0);
}
index_t panel_width(index_t rows, index_t p) {
  return p + 1 == panel_count(rows) ? padded(rows) - p * R : R;
}
#ifdef GATECELL_X86_AVX2
// The AVX2 part of put_rows8: columns [0, n rounded down to 8) of dst (the first row's place,
// rows `width` apart along k); returns how many it wrote.
GATECELL_TARGET_AVX2 index_t put_rows8_avx2(float* dst, index_t width, const float* const* src, index_t n) {
  index_t k = 0;
  for (; k + 8 <= n; k += 8) {
    avx2::V r[8];
    for (int i = 0; i < 8; ++i) r[i] = src[i] != nullptr ? avx2::ld(src[i] + k) : _mm256_setzero_ps();
    avx2::transpose8(r);
    for (int j = 0; j < 8; ++j) avx2::st(dst + (k + j) * width, r[j]);
  }
  return k;
}
#endif

// Writes the rows [r0, r0 + 8) (r0 a multiple of 8) of a panelled [rows, K] matrix m, columns
// [k0, k0 + n), from src[i] for row r0 + i (null: zeros). The 8 rows lie in one panel, where each
// k holds them side by side: 8 x 8 tiles are transposed in registers on the AVX2 path.
template <typename Scalar>
void put_rows8(Scalar* m, index_t rows, index_t K, index_t r0, index_t k0, const Scalar* const* src, index_t n) {
  const index_t p = std::min(r0 / R, panel_count(rows) - 1), width = panel_width(rows, p);
  Scalar* dst = m + p * R * K + k0 * width + r0 - p * R;
  index_t k = 0;
#ifdef GATECELL_X86_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (use_avx2()) k = put_rows8_avx2(dst, width, src, n);
  }
#endif
  for (; k < n; ++k)
    for (index_t i = 0; i < 8; ++i) dst[k * width + i] = src[i] != nullptr ? src[i][k] : Scalar(0);
}

// Where one group sits in the packed buffer and in the scratch buffer.
template <typename Scalar>
struct GroupView {
  RowGroup g;
  index_t K;                 // columns of a panel: x's, then h_prev's
  const Scalar* panels;      // the panels of a [rows, K] matrix (layout above)
  const Scalar* bias_all;    // [rows padded]
  const Scalar* bias_h;      // [rows padded]
  Scalar* pre;               // [rows padded] pre-activations (scratch)
};

// ---- Panel products ------------------------------------------------------------------------

// out[0, width) = init + add + sum_k u[k] w[k][.] over x (kx columns) then h (kh columns), for a
// panel [kx + kh, width]. add: null, or the first n_add rows of a precomputed x W_ih^T + b_ih.
template <typename Scalar>
void panel_portable(const Scalar* w, index_t width, index_t kx, const Scalar* x, index_t kh, const Scalar* h,
                    const Scalar* init, const Scalar* add, index_t n_add, Scalar* out) {
  Scalar acc[kMaxPanel];
  for (index_t v = 0; v < width; ++v) acc[v] = init[v] + (add != nullptr && v < n_add ? add[v] : Scalar(0));
  auto columns = [&](const Scalar* u, index_t K) {
    for (index_t k = 0; k < K; ++k, w += width) {
      const Scalar uk = u[k];
      for (index_t v = 0; v < width; ++v) acc[v] += w[v] * uk;
    }
  };
  columns(x, kx);
  columns(h, kh);
  std::copy(acc, acc + width, out);
}

#ifdef GATECELL_X86_AVX2
using namespace avx2;

using vec8::Lanes;

// The AVX2 form of panel_portable for width = 8 NV. The accumulators are unrolled, so that they
// stay in registers; each k costs one broadcast and NV FMAs reading the weights from memory.
// Narrow panels (a matrix of fewer than kMinPanel rows) split k over C chains per register
// (k mod C), so that at least six FMAs are in flight to cover the FMA latency; the chains are
// summed at the end. Every wider panel sums each row in one chain, so a row's value does not
// depend on which panel holds it (a slice of units of a split step, split_direction_forward).
template <int NV>
GATECELL_TARGET_AVX2 void panel_avx2(const float* w, index_t kx, const float* x, index_t kh, const float* h,
                                     const float* init, const float* add, index_t n_add, float* out) {
  constexpr int C = NV >= 5 ? 1 : NV >= 3 ? 2 : 4;
  V acc[C][NV];
#pragma GCC unroll 12
  for (int v = 0; v < NV; ++v) {
    acc[0][v] = ld(init + 8 * v);
    if (add != nullptr) acc[0][v] = _mm256_add_ps(acc[0][v], Lanes(n_add - 8 * v).load(add + 8 * v));
#pragma GCC unroll 4
    for (int c = 1; c < C; ++c) acc[c][v] = _mm256_setzero_ps();
  }
  auto columns = [&](const float* u, index_t K) GATECELL_TARGET_AVX2 {
    index_t k = 0;
    for (; k + C <= K; k += C) {
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c, w += 8 * NV) {
        const V s = _mm256_broadcast_ss(u + k + c);
#pragma GCC unroll 12
        for (int v = 0; v < NV; ++v) acc[c][v] = _mm256_fmadd_ps(ld(w + 8 * v), s, acc[c][v]);
      }
    }
    for (; k < K; ++k, w += 8 * NV) {
      const V s = _mm256_broadcast_ss(u + k);
#pragma GCC unroll 12
      for (int v = 0; v < NV; ++v) acc[0][v] = _mm256_fmadd_ps(ld(w + 8 * v), s, acc[0][v]);
    }
  };
  columns(x, kx);
  columns(h, kh);
#pragma GCC unroll 12
  for (int v = 0; v < NV; ++v) {
    V sum = acc[0][v];
#pragma GCC unroll 4
    for (int c = 1; c < C; ++c) sum = _mm256_add_ps(sum, acc[c][v]);
    st(out + 8 * v, sum);
  }
}

// panel_avx2 on sixteen-float registers, for CPUs with AVX-512: the same C chains per row, the
// same FMAs in the same order, each pair of eight-float accumulators in one register (and the last
// eight, when NV is odd, in an eight-float one), so every sum is bitwise panel_avx2's.
template <int NV>
GATECELL_TARGET_AVX512 void panel_avx512(const float* w, index_t kx, const float* x, index_t kh, const float* h,
                                         const float* init, const float* add, index_t n_add, float* out) {
  constexpr int C = NV >= 5 ? 1 : NV >= 3 ? 2 : 4;
  constexpr int NZ = NV / 2;          // sixteen-float accumulators per chain
  constexpr bool tail = NV % 2 != 0;  // and one of eight
  constexpr int L16 = 16;
  __m512 acc[C][NZ];
  __m256 last[C];
#pragma GCC unroll 6
  for (int v = 0; v < NZ; ++v) {
    acc[0][v] = _mm512_loadu_ps(init + L16 * v);
    if (add != nullptr) acc[0][v] = _mm512_add_ps(acc[0][v], vec16::Lanes(n_add - L16 * v).load(add + L16 * v));
#pragma GCC unroll 4
    for (int c = 1; c < C; ++c) acc[c][v] = _mm512_setzero_ps();
  }
  if constexpr (tail) {
    last[0] = ld(init + L16 * NZ);
    if (add != nullptr) last[0] = _mm256_add_ps(last[0], Lanes(n_add - L16 * NZ).load(add + L16 * NZ));
#pragma GCC unroll 4
    for (int c = 1; c < C; ++c) last[c] = _mm256_setzero_ps();
  }
  auto columns = [&](const float* u, index_t K) GATECELL_TARGET_AVX512 {
    auto one_k = [&](int c, float uk) GATECELL_TARGET_AVX512 {
      const __m512 s = _mm512_set1_ps(uk);
#pragma GCC unroll 6
      for (int v = 0; v < NZ; ++v) acc[c][v] = _mm512_fmadd_ps(_mm512_loadu_ps(w + L16 * v), s, acc[c][v]);
      if constexpr (tail) last[c] = _mm256_fmadd_ps(ld(w + L16 * NZ), _mm256_set1_ps(uk), last[c]);
      w += 8 * NV;
    };
    index_t k = 0;
    for (; k + C <= K; k += C) {
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) one_k(c, u[k + c]);
    }
    for (; k < K; ++k) one_k(0, u[k]);
  };
  columns(x, kx);
  columns(h, kh);
#pragma GCC unroll 6
  for (int v = 0; v < NZ; ++v) {
    __m512 sum = acc[0][v];
#pragma GCC unroll 4
    for (int c = 1; c < C; ++c) sum = _mm512_add_ps(sum, acc[c][v]);
    _mm512_storeu_ps(out + L16 * v, sum);
  }
  if constexpr (tail) {
    __m256 sum = last[0];
#pragma GCC unroll 4
    for (int c = 1; c < C; ++c) sum = _mm256_add_ps(sum, last[c]);
    st(out + L16 * NZ, sum);
  }
}

using PanelKernel = void (*)(const float*, index_t, const float*, index_t, const float*, const float*,
                             const float*, index_t, float*);
constexpr PanelKernel kPanelAvx2[kMaxPanel / 8] = {
    panel_avx2<1>, panel_avx2<2>, panel_avx2<3>, panel_avx2<4>,  panel_avx2<5>,  panel_avx2<6>,
    panel_avx2<7>, panel_avx2<8>, panel_avx2<9>, panel_avx2<10>, panel_avx2<11>, panel_avx2<12>};
// One eight-float panel has nothing to pair: panel_avx2<1> serves both paths.
constexpr PanelKernel kPanelAvx512[kMaxPanel / 8] = {
    panel_avx2<1>,    panel_avx512<2>, panel_avx512<3>, panel_avx512<4>,  panel_avx512<5>,  panel_avx512<6>,
    panel_avx512<7>, panel_avx512<8>, panel_avx512<9>, panel_avx512<10>, panel_avx512<11>, panel_avx512<12>};
#endif

// One panel of width (a multiple of 8) on the path `avx2` picks (float only).
template <typename Scalar>
void panel(bool avx2, const Scalar* w, index_t width, index_t kx, const Scalar* x, index_t kh, const Scalar* h,
           const Scalar* init, const Scalar* add, index_t n_add, Scalar* out) {
#ifdef GATECELL_X86_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (avx2) return (use_avx512() ? kPanelAvx512 : kPanelAvx2)[width / 8 - 1](w, kx, x, kh, h, init, add, n_add, out);
  }
#endif
  (void)avx2;
  panel_portable(w, width, kx, x, kh, h, init, add, n_add, out);
}

// Pass 1 over every group (in reverse when `backwards`). A group fed by x alone is skipped when
// x_gates is given: pass 2 reads those rows from x_gates.
template <typename Scalar>
void pre_activations(bool avx2, const CellShape& s, const Scalar* packed, const Scalar* x, const Scalar* x_gates,
                     const Scalar* h_prev, Scalar* pre, bool backwards) {
  const index_t groups = s.group_count();
  GroupView<Scalar> views[3];
  for (index_t g = 0, at = 0; g < groups; at += s.group_size(g), ++g) {
    const RowGroup rg = s.group(g);
    const index_t K = s.columns(rg);
    const Scalar* panels = packed + at;
    const Scalar* bias_all = panels + padded(rg.rows) * K;
    views[g] = {rg, K, panels, bias_all, bias_all + padded(rg.rows), pre + s.group_offset(g)};
  }
  for (index_t q = 0; q < groups; ++q) {
    const GroupView<Scalar>& v = views[backwards ? groups - 1 - q : q];
    const bool given = x_gates != nullptr && v.g.from_x;
    if (given && !v.g.from_h) continue;
    const index_t skip = given ? s.x_columns(v.g) : 0;  // x's columns, when x W_ih^T + b_ih is given
    const index_t kx = s.x_columns(v.g) - skip, kh = v.g.from_h ? s.P : 0;
    const Scalar* init = given ? v.bias_h : v.bias_all;
    const index_t panels = panel_count(v.g.rows);
    for (index_t r = 0; r < panels; ++r) {
      const index_t p = backwards ? panels - 1 - r : r, width = panel_width(v.g.rows, p);
      // x_gates holds the first group's rows (the only one fed by both) in the same order.
      const Scalar* add = given ? x_gates + p * R : nullptr;
      panel(avx2, v.panels + p * v.K * R + skip * width, width, kx, x, kh, h_prev, init + p * R, add,
            v.g.rows - p * R, v.pre + p * R);
    }
  }
}

// ---- Gate math: portable path (double, and float without AVX2) --------------------------------

template <typename Scalar>
void gates_portable(const CellShape& s, const Scalar* pre, const Scalar* xn, const Scalar* hn,
                    const Scalar* h_prev, Scalar* c, Scalar* h, Scalar* m) {
  const index_t H = s.H;
  for (index_t j = 0; j < H; ++j) {
    switch (s.kind) {
      case CellKind::rnn_tanh: h[j] = std::tanh(pre[j]); break;  // (R2)
      case CellKind::rnn_relu: h[j] = relu(pre[j]); break;
      case CellKind::lstm: {
        const Scalar i = sigmoid(pre[j]), f = sigmoid(pre[H + j]);  // (L2)
        const Scalar g = std::tanh(pre[2 * H + j]), o = sigmoid(pre[3 * H + j]);
        c[j] = f * c[j] + i * g;                      // (L3)
        (m != nullptr ? m : h)[j] = o * std::tanh(c[j]);  // (L4)
        break;
      }
      case CellKind::gru: {
        const Scalar r = sigmoid(pre[j]), z = sigmoid(pre[H + j]);  // (G2)
        if (!s.linear_before_reset) {  // (G4) needs r * h_prev of every unit first: pass 3
          m[j] = r * h_prev[j];
          break;
        }
        const Scalar n = std::tanh(xn[j] + r * hn[j]);  // (G3)
        h[j] = (Scalar(1) - z) * n + z * h_prev[j];    // (G5)
        break;
      }
    }
  }
}

#ifdef GATECELL_X86_AVX2
// ---- Gate math: AVX2 + FMA and AVX-512 paths (float) ---------------------------------------------

namespace gates8 {
GATECELL_USE_VECTOR_OPS(vec8);
#define GATECELL_ROW_TARGET GATECELL_TARGET_AVX2
#include "detail/step_gates.inc"
#undef GATECELL_ROW_TARGET
}  // namespace gates8

namespace gates16 {
GATECELL_USE_VECTOR_OPS(vec16);
#define GATECELL_ROW_TARGET GATECELL_TARGET_AVX512
#include "detail/step_gates.inc"
#undef GATECELL_ROW_TARGET
}  // namespace gates16

#endif

// y = W x + b over gemv's panels (pack_matrix), on the path `avx2` picks.
template <typename Scalar>
void gemv_panels(bool avx2, const Scalar* w, index_t rows, index_t cols, const Scalar* x, const Scalar* b,
                 Scalar* y) {
  static const Scalar zeros[kMaxPanel] = {};
  Scalar acc[kMaxPanel];
  for (index_t p = 0; p < panel_count(rows); ++p) {
    const index_t r = p * R, width = panel_width(rows, p);
    panel(avx2, w + r * cols, width, 0, x, cols, x, zeros, b != nullptr ? b + r : nullptr, rows - r, acc);
    std::copy(acc, acc + std::min(width, rows - r), y + r);
  }
}

// Inputs at least this wide are projected for a window of steps by one GEMM (windowed_steps), whose
// weights are reused across steps, before the step loop; narrower ones ride along in the
// per-step product.
constexpr index_t kWindowInput = 48;

}  // namespace

index_t CellShape::packed_size() const {
  index_t size = 0;
  for (index_t g = 0; g < group_count(); ++g) size += group_size(g);
  if (kind == CellKind::gru && !linear_before_reset) size += packed_matrix_size(H, H) + H;
  if (projected()) size += packed_matrix_size(P, H);
  return size;
}

// Pre-activations of every group, then two vectors of H (m or r * h_prev, and W_hn (r * h_prev)).
index_t CellShape::work_size() const { return group_offset(group_count()) + 2 * round_up(H, L8); }

index_t packed_matrix_size(index_t rows, index_t cols) { return padded(rows) * cols; }

template <typename Scalar>
void pack_matrix(const Scalar* w, index_t rows, index_t cols, AlignedVector<Scalar>& out) {
  const index_t offset = static_cast<index_t>(out.size());
  out.resize(offset + packed_matrix_size(rows, cols));  // every element, padding included, is written below
  Scalar* dst = out.data() + offset;
  for (index_t r0 = 0; r0 < rows; r0 += 8) {
    const Scalar* src[8];
    for (index_t i = 0; i < 8; ++i) src[i] = r0 + i < rows ? w + (r0 + i) * cols : nullptr;
    put_rows8(dst, rows, cols, r0, 0, src, cols);
  }
}

template <typename Scalar>
void pack_cell(const CellShape& s, const LayerWeights<Scalar>& w, AlignedVector<Scalar>& out) {
  const index_t H = s.H, layer_H = std::max(s.H, s.P);  // a slice's layer has P units
  // Group g's row r is unit r mod H of gate `first + r / H`: torch's row of W_ih and W_hh for it
  // is that gate's block of layer_H rows, at unit unit0 + r mod H.
  index_t first = 0;
  for (index_t g = 0; g < s.group_count(); ++g) {
    const RowGroup rg = s.group(g);
    const index_t kx = s.x_columns(rg), K = s.columns(rg), rows = padded(rg.rows);
    const index_t offset = static_cast<index_t>(out.size());
    out.resize(offset + s.group_size(g));  // every element, padding included, is written below
    Scalar* panels = out.data() + offset;
    Scalar* bias_all = panels + rows * K;
    Scalar* bias_h = bias_all + rows;
    for (index_t r0 = 0; r0 < rows; r0 += 8) {  // eight rows at a time: one tile of each panel row
      const Scalar* x_rows[8];
      const Scalar* h_rows[8];
      for (index_t i = 0; i < 8; ++i) {
        const index_t r = r0 + i, row = (first + r / H) * layer_H + s.unit0 + r % H;
        const bool real = r < rg.rows;  // else a padding row: zeros
        x_rows[i] = real ? w.w_ih + row * s.in : nullptr;
        h_rows[i] = real ? w.w_hh + row * s.P : nullptr;
        const Scalar b_x = real && rg.from_x && w.b_ih != nullptr ? w.b_ih[row] : Scalar(0);
        const Scalar b_h = real && rg.from_h && w.b_hh != nullptr ? w.b_hh[row] : Scalar(0);
        bias_all[r] = b_x + b_h;
        bias_h[r] = b_h;
      }
      if (kx > 0) put_rows8(panels, rg.rows, K, r0, 0, x_rows, kx);
      if (rg.from_h) put_rows8(panels, rg.rows, K, r0, kx, h_rows, s.P);
    }
    // The GRU's x_n and h_n groups are the same gate (n) of W_ih and W_hh.
    if (!(s.kind == CellKind::gru && g == 1)) first += rg.rows / H;
  }
  if (s.kind == CellKind::gru && !s.linear_before_reset) {
    pack_matrix(w.w_hh + 2 * H * H, H, H, out);  // W_hn, multiplied by r * h_prev  (G4)
    if (w.b_hh != nullptr) out.insert(out.end(), w.b_hh + 2 * H, w.b_hh + 3 * H);
    else out.resize(out.size() + H, Scalar(0));
  }
  if (s.projected()) pack_matrix(w.w_hr, s.P, H, out);  // (L5)
}

// pack_cell's weights for one call: kept in `packs` when the call has them (kept_pack).
template <typename Scalar>
std::shared_ptr<const AlignedVector<Scalar>> kept_cell(WeightPacks<Scalar>* packs, const CellShape& s,
                                                       const LayerWeights<Scalar>& w) {
  PackKey key{static_cast<std::intptr_t>(PackKind::cell)};
  auto at = [](const Scalar* p) { return reinterpret_cast<std::intptr_t>(p); };
  key.insert(key.end(), {static_cast<std::intptr_t>(s.kind), s.linear_before_reset, s.in, s.H, s.P, s.unit0,
                         s.x_ahead, at(w.w_ih), at(w.w_hh), at(w.b_ih), at(w.b_hh), at(w.w_hr)});
  return kept_pack<AlignedVector<Scalar>>(packs, key, [&](AlignedVector<Scalar>& out) { pack_cell(s, w, out); });
}

template <typename Scalar>
bool avx2_path() {
  if constexpr (std::is_same_v<Scalar, float>) return use_avx2();
  return false;
}

template <typename Scalar>
void gemv(const Scalar* w, index_t rows, index_t cols, const Scalar* x, const Scalar* b, Scalar* y) {
  gemv_panels(avx2_path<Scalar>(), w, rows, cols, x, b, y);
}

template <typename Scalar>
void cell_step(const CellShape& s, const Scalar* packed, const Scalar* x, const Scalar* x_gates,
               const Scalar* h_prev, Scalar* c, Scalar* h, Scalar* work, bool backwards) {
  const bool avx2 = avx2_path<Scalar>();
  const index_t H = s.H;
  Scalar* pre = work;
  pre_activations(avx2, s, packed, x, x_gates, h_prev, pre, backwards);
  const bool gru = s.kind == CellKind::gru;
  // x_n: from x_gates (its third block of H) or from the x-only group.
  const Scalar* xn = !gru ? nullptr : x_gates != nullptr ? x_gates + 2 * H : pre + s.group_offset(1);
  const Scalar* hn = gru && s.linear_before_reset ? pre + s.group_offset(2) : nullptr;
  Scalar* m = work + s.group_offset(s.group_count());  // o * tanh(c) (projection) or r * h_prev
  Scalar* hn_original = m + padded(H);                 // W_hn (r * h_prev) + b_hn  (G4)
  const bool proj = s.projected(), original = gru && !s.linear_before_reset;
  const Scalar* tail = packed;
  for (index_t g = 0; g < s.group_count(); ++g) tail += s.group_size(g);
#ifdef GATECELL_X86_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (avx2) {
      float* mv = proj || original ? m : nullptr;
      if (use_avx512()) gates16::gates(s, pre, xn, hn, h_prev + s.unit0, c, h, mv);
      else gates8::gates(s, pre, xn, hn, h_prev + s.unit0, c, h, mv);
    }
  }
#endif
  if (!avx2) {
    gates_portable(s, pre, xn, hn, h_prev + s.unit0, c, h, proj || original ? m : static_cast<Scalar*>(nullptr));
  }
  if (proj) gemv_panels(avx2, tail, s.P, H, m, static_cast<const Scalar*>(nullptr), h);  // (L5)
  if (!original) return;
  gemv_panels(avx2, tail, H, H, m, tail + packed_matrix_size(H, H), hn_original);  // (G4)
#ifdef GATECELL_X86_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (avx2) {
      return use_avx512() ? gates16::gru_original(H, pre, xn, hn_original, h_prev, h)
                          : gates8::gru_original(H, pre, xn, hn_original, h_prev, h);
    }
  }
#endif
  for (index_t j = 0; j < H; ++j) {
    const Scalar z = sigmoid(pre[H + j]), n = std::tanh(xn[j] + hn_original[j]);  // (G3)
    h[j] = (Scalar(1) - z) * n + z * h_prev[j];                                 // (G5)
  }
}

namespace {

// Steps per window of the pipelined batch-1 path (below).
constexpr index_t kPipeSteps = 32;

// Window w of a direction's steps: k in [w * kPipeSteps, w * kPipeSteps + count), which are the
// times [t_lo, t_lo + count) in either order.
template <typename Scalar>
void window_of(const DirectionForward<Scalar>& a, index_t w, index_t& t_lo, index_t& count) {
  const index_t k0 = w * kPipeSteps;
  count = std::min(kPipeSteps, a.lay.steps - k0);
  t_lo = std::min(a.step_at(k0), a.step_at(k0 + count - 1));
}

// The steps of one direction over a batch-1 sequence, with the input projections made by one GEMM
// per window of kPipeSteps steps (x W_ih^T + b_ih; small windows keep the projections, W_hh and
// W_ih in L2 together). With `ahead`, a second thread projects the coming windows into two
// alternating buffers while the first runs the steps (two items of run_shared). The steps never
// wait: a window the projecting thread has not delivered yet (at the start, or when that thread
// is late or descheduled on a busy machine) the stepping thread projects into a buffer of its
// own. Each projected row is the same whoever computes it and in whichever window
// (gemm_rows_independent), so the results equal the single-threaded path's bit for bit.
// run(k, x_gates): step k of the direction's order, with its projections.
template <typename Scalar, typename Run>
void windowed_steps(const DirectionForward<Scalar>& a, index_t gate_rows, bool ahead, const Run& run) {
  const index_t T = a.lay.steps, G = gate_rows, in = a.x.cols, windows = (T + kPipeSteps - 1) / kPipeSteps;
  const index_t span = kPipeSteps * G;
  const auto w_ih_kept = kept_pack(a.packs, MatView<Scalar>{a.w.w_ih, in, G, 1, in});
  const PackedMatrix<Scalar>& w_ih_t = *w_ih_kept;
  AlignedVector<Scalar> buffers((ahead ? 3 : 1) * span);  // the calling thread's last, the helper's first
  Scalar* own = buffers.data() + (ahead ? 2 : 0) * span;
  // Window w: steps k in [w * kPipeSteps, ...), times [t_lo, t_lo + count) in either order.
  auto project = [&](index_t w, Scalar* out) {
    index_t t_lo, count;
    window_of(a, w, t_lo, count);
    project_inputs(rows_view(a.x.at(a.lay, t_lo, 0), count, in, a.x.ld), w_ih_t, a.w.b_ih, out);
  };
  // What the two threads tell each other, on a cache line of its own: the helper spins reading
  // it, and a variable of the steps' sharing the line (h_prev of the caller's frame, say) would
  // move between the cores at every step. Measured, warm, 2 threads: LSTM T 512 B 1 I 64 H 64
  // took 0.34-0.36 ms in one build and 0.20 in another, with one thread's 0.27 between.
  struct alignas(64) Pipe {
    std::atomic<index_t> consumed{0};          // windows the calling thread has finished
    std::atomic<index_t> holds[2] = {-1, -1};  // which window each helper buffer holds
    std::atomic<bool> failed{false};
  } pipe;
  std::atomic<index_t>& consumed = pipe.consumed;
  std::atomic<index_t>* holds = pipe.holds;
  auto steps = [&] {
    for (index_t w = 0; w < windows; ++w) {
      const Scalar* gates = buffers.data() + (w % 2) * span;
      if (!ahead || holds[w % 2].load(std::memory_order_acquire) != w) {
        project(w, own);
        gates = own;
      }
      index_t t_lo, count;
      window_of(a, w, t_lo, count);
      for (index_t k = w * kPipeSteps; k < w * kPipeSteps + count; ++k) run(k, gates + (a.step_at(k) - t_lo) * G);
      consumed.store(w + 1, std::memory_order_release);
    }
  };
  if (!ahead) return steps();
  // Item 0 runs the steps, item 1 projects windows ahead of them; the calling thread runs item 1
  // too if no helper has started it by then, and finds every window done.
  std::atomic<bool>& failed = pipe.failed;
  run_shared(2, 2, [&](index_t item) {
    if (item == 0) {
      try {
        steps();
      } catch (...) {
        failed.store(true, std::memory_order_release);
        throw;
      }
      return;
    }
    for (index_t w = 1; w < windows; ++w) {
      // Buffer w % 2 held window w - 2: free once the steps are past it. Windows the steps have
      // reached already are skipped.
      if (!wait_until([&] { return consumed.load(std::memory_order_acquire) >= w - 1; }, failed)) break;
      w = std::max(w, consumed.load(std::memory_order_acquire) + 1);
      if (w >= windows) break;
      project(w, buffers.data() + (w % 2) * span);
      holds[w % 2].store(w, std::memory_order_release);
    }
  });
}

// Threads that share each step of a batch-1 direction by units (1: no split). Only where every
// projection comes out the same whoever computes it (gemm_rows_independent), not for cells that
// need all units before a second product (LSTM projection, the original GRU), and only with
// slices whose row groups are at least kMinPanel rows, summed in one chain per row as unsplit.
template <typename Scalar>
int unit_team(const CellShape& s) {
  if (in_parallel() || !gemm_rows_independent<Scalar>() || s.projected()) return 1;
  if (s.kind == CellKind::gru && !s.linear_before_reset) return 1;
  if (split_pause().active()) return 1;
  const index_t columns = s.P + (s.x_ahead ? 0 : s.in);
  if (s.gates() * s.H * columns * static_cast<index_t>(sizeof(Scalar)) < kSplitBytes) return 1;
  for (index_t nt = std::min<index_t>(omp_get_max_threads(), s.H / 8); nt > 1; --nt) {
    CellShape slice = s;  // the narrowest slice
    for (index_t id = 0; id < nt; ++id)
      slice.H = std::min(slice.H, slice_start(s.H, id + 1, nt) - slice_start(s.H, id, nt));
    index_t group_rows = slice.gates() * slice.H;  // its narrowest row group
    for (index_t g = 0; g < slice.group_count(); ++g) group_rows = std::min(group_rows, slice.group(g).rows);
    if (slice.H >= kSplitUnits && group_rows >= kMinPanel) return static_cast<int>(nt);
  }
  return 1;
}

// One thread's share of a split step: the units [j0, j1) with their rows of the weights, packed,
// their cell state and the projections of the current window.
template <typename Scalar>
struct UnitSlice {
  const DirectionForward<Scalar>& a;
  CellShape shape;
  index_t j0, j1, length;  // length: the sequence's steps
  const Scalar* h_prev;    // the whole h of the last step run (the output row), or h0
  std::shared_ptr<const AlignedVector<Scalar>> packed;  // pack_cell's layout (kept_cell)
  AlignedVector<Scalar> work;
  std::vector<Scalar> c;
  std::shared_ptr<const PackedMatrix<Scalar>> w_ih_t;  // with x_ahead: the slice's rows of W_ih (kept_unit_rows)
  std::vector<Scalar> b_ih;                            // the slice's part of b_ih, or empty
  Buffer<Scalar> x_gates;                              // [kPipeSteps, gates * (j1 - j0)]
  index_t window = -1, t_lo = 0;

  UnitSlice(const DirectionForward<Scalar>& a_, const CellShape& s, const std::vector<Scalar>& h0,
            const std::vector<Scalar>& c0, index_t j0_, index_t j1_)
      : a(a_), shape(s), j0(j0_), j1(j1_), length(a_.lengths != nullptr ? a_.lengths[0] : a_.lay.steps),
        h_prev(h0.data()), c(c0.begin() + j0_, c0.begin() + j1_) {
    shape.H = j1 - j0;
    shape.unit0 = j0;
    packed = kept_cell(a.packs, shape, a.w);
    work.resize(shape.work_size());
    if (!s.x_ahead) return;
    const index_t gates = s.gates();
    w_ih_t = kept_unit_rows(a.packs, a.w.w_ih, s.in, gates, s.H, j0, shape.H);
    b_ih = unit_bias(a.w.b_ih, gates, s.H, j0, shape.H);
    x_gates.resize(kPipeSteps * gates * shape.H);
  }

  // Step k (time t) of this slice into y[j0, j1), from the whole h_prev; false past the
  // sequence's end (nothing to do: y is zeroed after the team).
  bool step(index_t k) {
    const index_t t = a.step_at(k), G = shape.gates() * shape.H;
    if (t >= length) return false;
    const Scalar* gates = nullptr;
    if (!x_gates.empty()) {
      if (k / kPipeSteps != window) {  // x W_ih^T + b_ih of this slice's rows for a window of steps
        window = k / kPipeSteps;
        index_t count;
        window_of(a, window, t_lo, count);
        const MatView<Scalar> x = rows_view(a.x.at(a.lay, t_lo, 0), count, shape.in, a.x.ld);
        project_inputs(x, *w_ih_t, b_ih.empty() ? nullptr : b_ih.data(), x_gates.data());
      }
      gates = x_gates.data() + (t - t_lo) * G;
    }
    cell_step(shape, packed->data(), a.x.at(a.lay, t, 0), gates, h_prev, c.data(), a.y.at(a.lay, t, 0) + j0,
              work.data(), (k & 1) != 0);
    h_prev = a.y.at(a.lay, t, 0);  // the whole row, once the team has met
    return true;
  }
};

// One direction of batch-1 inference on a team of threads, each owning a slice of the units
// (multiples of 8; run_unit_team). Every value is the one the unsplit step computes (the same
// sums in the same order), bit for bit.
template <typename Scalar>
void split_direction_forward(const DirectionForward<Scalar>& a, const CellShape& s, int team) {
  const index_t T = a.lay.steps, length = a.lengths != nullptr ? a.lengths[0] : T;
  std::vector<Scalar> h0, c0;
  load_state(a.h0, s.P, h0);
  load_state(a.c0, s.H, c0);
  const auto slices = run_unit_team<UnitSlice<Scalar>>(team, T, [&](index_t id, index_t nt) {
    return std::make_unique<UnitSlice<Scalar>>(a, s, h0, c0, slice_start(s.H, id, nt), slice_start(s.H, id + 1, nt));
  });
  for (index_t t = length; t < T; ++t) std::fill(a.y.at(a.lay, t, 0), a.y.at(a.lay, t, 0) + s.P, Scalar(0));
  const Scalar* h_last = slices[0]->h_prev;
  std::copy(h_last, h_last + s.P, a.h_n);
  if (a.c_n != nullptr)
    for (const auto& slice : slices)
      if (slice != nullptr) std::copy(slice->c.begin(), slice->c.end(), a.c_n + slice->j0);  // nt may be < team
}

}  // namespace

void set_split_patience(double microseconds) {
  if (!(microseconds >= -1)) throw ShapeError("microseconds must be >= -1, got " + std::to_string(microseconds));
  split_patience_us.store(microseconds, std::memory_order_relaxed);
  split_pause().reset();
}

long split_runs() { return split_team_runs.load(std::memory_order_relaxed); }

template <typename Scalar>
void step_direction_forward(const DirectionForward<Scalar>& a) {
  const NetworkConfig& config = *a.config;
  CellShape s{config.kind, config.linear_before_reset, a.x.cols, config.hidden_size, config.output_size()};
  s.x_ahead = s.in >= kWindowInput;  // then W_ih is packed for the window GEMM, not in the panels
  if (const int team = unit_team<Scalar>(s); team > 1) return split_direction_forward(a, s, team);
  const auto packed = kept_cell(a.packs, s, a.w);
  AlignedVector<Scalar> work(s.work_size());
  std::vector<Scalar> h0, c;
  load_state(a.h0, s.P, h0);
  load_state(a.c0, s.H, c);
  const index_t T = a.lay.steps, length = a.lengths != nullptr ? a.lengths[0] : T;
  const Scalar* h_prev = h0.data();
  // Step k of the direction's order; x_gates: its x W_ih^T + b_ih, or null (x rides along).
  auto run = [&](index_t k, const Scalar* x_gates) {
    const index_t t = a.step_at(k);
    Scalar* y = a.y.at(a.lay, t, 0);
    if (t >= length) {  // past the sequence's end: output zero, state unchanged
      std::fill(y, y + s.P, Scalar(0));
      return;
    }
    cell_step(s, packed->data(), a.x.at(a.lay, t, 0), x_gates, h_prev, c.data(), y, work.data(), (k & 1) != 0);
    h_prev = y;  // this step's output row is the next step's h_prev
  };
  if (!s.x_ahead) {
    for (index_t k = 0; k < T; ++k) run(k, nullptr);
  } else {
    // Projecting ahead pays while the helper keeps up with the steps: a window's projection (in
    // columns a step) costs no more than its steps (P columns and the gate math). With wider
    // inputs the steps would catch up and project their windows themselves, twice the work; each
    // window's GEMM is then shared by the threads instead. Measured, warm, 2 threads, median ms
    // (ahead / shared GEMM): LSTM T 512 B 1 I 64 H 64 0.20 / 0.24-0.28; I 512 H 32 0.30 / 0.22-0.27.
    const bool ahead = T >= 2 * kPipeSteps && s.in <= s.P && omp_get_max_threads() >= 2 && !in_parallel() &&
                       gemm_rows_independent<Scalar>();
    windowed_steps(a, config.gates() * s.H, ahead, run);
  }
  std::copy(h_prev, h_prev + s.P, a.h_n);
  if (a.c_n != nullptr) std::copy(c.begin(), c.end(), a.c_n);
}

#define GATECELL_STEP_INSTANTIATE(Scalar)                                                                     \
  template void pack_matrix<Scalar>(const Scalar*, index_t, index_t, AlignedVector<Scalar>&);                  \
  template void pack_cell<Scalar>(const CellShape&, const LayerWeights<Scalar>&, AlignedVector<Scalar>&);      \
  template void gemv<Scalar>(const Scalar*, index_t, index_t, const Scalar*, const Scalar*, Scalar*);        \
  template void cell_step<Scalar>(const CellShape&, const Scalar*, const Scalar*, const Scalar*,             \
                                  const Scalar*, Scalar*, Scalar*, Scalar*, bool);                           \
  template void step_direction_forward<Scalar>(const DirectionForward<Scalar>&);
GATECELL_STEP_INSTANTIATE(float)
GATECELL_STEP_INSTANTIATE(double)

}  // namespace gatecell::detail
