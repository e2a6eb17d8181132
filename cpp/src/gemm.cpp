// SPDX-License-Identifier: MIT
// The GEMMs of the kernels: a packed AVX2 + FMA micro-kernel for float, chosen at run time, and
// Eigen (single-threaded) for double and for CPUs without AVX2. Each element of C is one chain
// of multiply-adds over k in a fixed order (k blocks of fixed size), so splitting C's column
// panels over threads never changes a result.

#include "detail/gemm.hpp"
#include "detail/pool.hpp"
#include "detail/simd.hpp"
#include "detail/vector_ops.hpp"
#include "detail/stall.hpp"
#include "gatecell/threads.hpp"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace gatecell::detail {

namespace {

constexpr index_t kPanel = 16;          // columns per packed panel: two 8-float vectors
constexpr index_t kDepthBlock = 256;    // k per block: a 16 KiB panel slice stays in L1
constexpr index_t kRowBlock = 96;       // rows of A per block: stays in L2 across panels
constexpr index_t kSmallRows = 12;      // up to two row groups: B's stream order matters, A is tiny
// Bytes of B in one group of panels a small A reads in turn (PackedMatrix::turn). Measured, LSTM
// 200-1-256-512 training step (its backward product has K 2048), median ms, 1 thread 19.1 -> 18.6,
// 2 threads 10.9 -> 10.1.
constexpr index_t kTurnGroupBytes = 512 << 10;
constexpr double kParallelMacs = 1 << 19;  // below this, a fork costs more than it saves
constexpr double kParallelPack = 1 << 16;  // elements of B: 256 KiB of float take longer to pack than a fork

index_t panel_count(index_t cols) { return (cols + kPanel - 1) / kPanel; }

}  // namespace

#ifdef GATECELL_X86_AVX2
namespace {

// A parallel GEMM ends when the last range a helper started is done (run_shared: the calling
// thread runs the ranges no helper has started). On a busy machine a helper that lost its core in
// the middle of its range holds that end back for a time slice (milliseconds), and a time loop
// forks a GEMM every step (100 steps of 70 us took 0.5 s instead of 13 ms here, with another
// process on the other core). A GEMM that took far longer than its work should (kStallFactor
// times the time at kSerialMacRate per thread, plus kStallSlack) sends the calling thread's GEMMs
// to one thread for a while (StallPause); results are the same either way (fixed column panels).
// Multiply-adds per second of one thread, low on purpose (an AVX2 core of Zen 3 reaches about 45e9,
// an AVX-512 one of Zen 5 about 130e9): only a GEMM far slower than its work counts as stalled.
constexpr double kSerialMacRate = 20e9;
constexpr double kStallFactor = 5;
constexpr double kStallSlack = 200e-6;   // seconds
thread_local StallPause gemm_pause;

// One whole panel of a B whose k runs contiguously (a transposed weight, W^T with W row-major):
// 8 x 8 tiles transposed in registers, instead of 16 loads from 16 rows for every k.
GATECELL_TARGET_AVX2 void pack_panel_transposed(const float* src, index_t cs, index_t K, float* dst) {
  index_t k0 = 0;
  for (; k0 + 8 <= K; k0 += 8) {
    for (index_t half = 0; half < 2; ++half) {
      const float* s = src + half * 8 * cs + k0;
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(s + i * cs);
      avx2::transpose8(r);
      float* d = dst + k0 * kPanel + half * 8;
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(d + j * kPanel, r[j]);
    }
  }
  for (; k0 < K; ++k0)
    for (index_t j = 0; j < kPanel; ++j) dst[k0 * kPanel + j] = src[j * cs + k0];
}

// One panel of a B whose rows are contiguous (cs = 1), `width` columns of it (the rest zero):
// each k's 16 values are one copy, instead of 16 loads and stores of one float.
GATECELL_TARGET_AVX2 void pack_panel_rows(const float* src, index_t rs, index_t K, index_t width, float* dst) {
  const vec8::Lanes lo(width), hi(width - 8);  // masked lanes load as zero
  for (index_t k = 0; k < K; ++k, src += rs, dst += kPanel) {
    _mm256_storeu_ps(dst, lo.load(src));
    _mm256_storeu_ps(dst + 8, hi.load(src + 8));
  }
}

}  // namespace
#endif

template <typename Scalar>
void PackedMatrix<Scalar>::pack(const MatView<Scalar>& b) {
  blocks_.clear();  // an earlier refer() no longer holds
  b_ = b;
  if (!std::is_same_v<Scalar, float> || !use_avx2()) {
    panels_.clear();
    return;
  }
  panels_.resize(panel_count(b.cols) * b.rows * kPanel);  // every element, padding included, is written below
  pack_panels(b, panels_.data());
}

template <typename Scalar>
void PackedMatrix<Scalar>::pack(const std::vector<MatView<Scalar>>& blocks) {
  blocks_.clear();
  const index_t K = blocks.at(0).rows;
  index_t cols = 0;
  bool whole_panels = std::is_same_v<Scalar, float> && use_avx2();
  for (std::size_t q = 0; q < blocks.size(); ++q) {
    if (blocks[q].rows != K) throw std::logic_error("PackedMatrix::pack: blocks of different heights");
    cols += blocks[q].cols;
    if (q + 1 < blocks.size() && blocks[q].cols % kPanel != 0) whole_panels = false;
  }
  if (!whole_panels) {  // gathered into one matrix (the portable path keeps referring to it)
    gathered_.resize(K * cols);
    index_t at = 0;
    for (const MatView<Scalar>& blk : blocks) {
      for (index_t k = 0; k < K; ++k)
        for (index_t j = 0; j < blk.cols; ++j) gathered_[k * cols + at + j] = blk.data[k * blk.rs + j * blk.cs];
      at += blk.cols;
    }
    pack({gathered_.data(), K, cols, cols, 1});
    if (packed()) Buffer<Scalar>().swap(gathered_);
    return;
  }
  b_ = {nullptr, K, cols, 0, 0};
  panels_.resize(panel_count(cols) * K * kPanel);
  Scalar* dst = panels_.data();
  for (const MatView<Scalar>& blk : blocks) {  // each block starts a panel
    pack_panels(blk, dst);
    dst += panel_count(blk.cols) * K * kPanel;
  }
}

template <typename Scalar>
void PackedMatrix<Scalar>::refer(const std::vector<MatView<Scalar>>& blocks) {
  if (!std::is_same_v<Scalar, float> || !use_avx2()) {
    pack(blocks);
    return;
  }
  const index_t K = blocks.at(0).rows;
  index_t cols = 0;
  for (const MatView<Scalar>& blk : blocks) {
    if (blk.rows != K) throw std::logic_error("PackedMatrix::refer: blocks of different heights");
    cols += blk.cols;
  }
  panels_.clear();
  b_ = {nullptr, K, cols, 0, 0};
  blocks_ = blocks;
}

template <typename Scalar>
void PackedMatrix<Scalar>::pack_rows(index_t p, index_t k0, index_t kc, Scalar* out) const {
  const index_t j0 = p * kPanel, width = std::min(kPanel, b_.cols - j0);
  index_t at = 0;  // the first column of block q
  for (const MatView<Scalar>& blk : blocks_) {
    const index_t lo = std::max(j0, at), hi = std::min(j0 + width, at + blk.cols);
    if (lo < hi) {  // columns [lo, hi) of this panel come from this block
      const MatView<Scalar> part{blk.data + k0 * blk.rs + (lo - at) * blk.cs, kc, hi - lo, blk.rs, blk.cs};
#ifdef GATECELL_X86_AVX2
      if constexpr (std::is_same_v<Scalar, float>) {
        if (lo == j0 && part.cs == 1) {  // the panel's first columns, rows contiguous
          pack_panel_rows(part.data, part.rs, kc, hi - lo, out);
          at += blk.cols;
          continue;
        }
        if (lo == j0 && hi - lo == kPanel && part.rs == 1) {
          pack_panel_transposed(part.data, part.cs, kc, out);
          at += blk.cols;
          continue;
        }
      }
#endif
      for (index_t k = 0; k < kc; ++k)
        for (index_t j = lo; j < hi; ++j) out[k * kPanel + j - j0] = part.data[k * part.rs + (j - lo) * part.cs];
    }
    at += blk.cols;
  }
  if (width < kPanel)  // the columns past B (the element loop leaves them)
    for (index_t k = 0; k < kc; ++k)
      for (index_t j = width; j < kPanel; ++j) out[k * kPanel + j] = Scalar(0);
}

template <typename Scalar>
void PackedMatrix<Scalar>::pack_panels(const MatView<Scalar>& b, Scalar* out) {
  const index_t K = b.rows, P = panel_count(b.cols);
  // The time loops pack their weights before their thread team starts: a serial pack of W_hh
  // (1 MiB for H = 256) would keep the other threads waiting.
  const bool parallel = P > 1 && static_cast<double>(K) * b.cols >= kParallelPack;
  run_shared(P, parallel ? omp_get_max_threads() : 1, [&](index_t p) {
    const index_t width = std::min(kPanel, b.cols - p * kPanel);
    Scalar* dst = out + p * K * kPanel;
#ifdef GATECELL_X86_AVX2
    if constexpr (std::is_same_v<Scalar, float>) {
      if (b.rs == 1 && width == kPanel) {
        pack_panel_transposed(b.data + p * kPanel * b.cs, b.cs, K, dst);
        return;
      }
      if (b.cs == 1) {  // rows of B contiguous (x, h or dA in the weight gradients): a copy per k
        pack_panel_rows(b.data + p * kPanel, b.rs, K, width, dst);
        return;
      }
    }
#endif
    for (index_t k = 0; k < K; ++k) {
      const Scalar* src = b.data + k * b.rs + p * kPanel * b.cs;
      for (index_t j = 0; j < width; ++j) dst[k * kPanel + j] = src[j * b.cs];
      for (index_t j = width; j < kPanel; ++j) dst[k * kPanel + j] = Scalar(0);
    }
  });
}

#ifdef GATECELL_X86_AVX2
namespace {

// Where C goes: one row-major array, or two side by side (the split gemm): panels before `split`
// at c (rows ldc apart), the others at c2 (rows ldc2 apart). Panel numbers count from `base` (a
// streamed B's buffer holds one thread's panels, numbered from its first).
struct Dest {
  float* c;
  index_t ldc, split;
  float* c2;
  index_t ldc2, base = 0;

  float* at(index_t p) const { return p + base < split ? c + (p + base) * kPanel : c2 + (p + base - split) * kPanel; }
  index_t ld(index_t p) const { return p + base < split ? ldc : ldc2; }
  // How many of the n panels from p on lie in p's array.
  index_t run(index_t p, index_t n) const { return p + base < split ? std::min(n, split - p - base) : n; }
  Dest from(index_t p0) const {
    Dest d = *this;
    d.base += p0;
    return d;
  }
};

// Adds (load_c) or writes one row of a C tile: the columns [0, width) of lo|hi.
GATECELL_TARGET_AVX2 inline void store_row(float* row, __m256 lo, __m256 hi, index_t width, bool load_c) {
  if (width == kPanel) {
    _mm256_storeu_ps(row, load_c ? _mm256_add_ps(_mm256_loadu_ps(row), lo) : lo);
    _mm256_storeu_ps(row + 8, load_c ? _mm256_add_ps(_mm256_loadu_ps(row + 8), hi) : hi);
    return;
  }
  alignas(32) float tile[kPanel];
  _mm256_store_ps(tile, lo);
  _mm256_store_ps(tile + 8, hi);
  for (index_t j = 0; j < width; ++j) row[j] = load_c ? row[j] + tile[j] : tile[j];
}

// MR (<= 6) rows of C times one panel of `width` columns: C (+)= A[MR, kc] B[kc, 16], one FMA
// chain per element in k order. Named accumulators, so that all twelve stay in registers.
template <int MR>
GATECELL_TARGET_AVX2 inline void micro_kernel(index_t kc, const float* a, index_t rs_a, index_t cs_a,
                                              const float* b, float* c, index_t ldc, index_t width, bool load_c) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (index_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * kPanel), b1 = _mm256_loadu_ps(b + k * kPanel + 8);
    const float* ak = a + k * cs_a;
    __m256 av = _mm256_broadcast_ss(ak);
    c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    if constexpr (MR > 1) {
      av = _mm256_broadcast_ss(ak + rs_a);
      c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    }
    if constexpr (MR > 2) {
      av = _mm256_broadcast_ss(ak + 2 * rs_a);
      c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
    }
    if constexpr (MR > 3) {
      av = _mm256_broadcast_ss(ak + 3 * rs_a);
      c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
    }
    if constexpr (MR > 4) {
      av = _mm256_broadcast_ss(ak + 4 * rs_a);
      c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
    }
    if constexpr (MR > 5) {
      av = _mm256_broadcast_ss(ak + 5 * rs_a);
      c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    }
  }
  store_row(c, c00, c01, width, load_c);
  if constexpr (MR > 1) store_row(c + ldc, c10, c11, width, load_c);
  if constexpr (MR > 2) store_row(c + 2 * ldc, c20, c21, width, load_c);
  if constexpr (MR > 3) store_row(c + 3 * ldc, c30, c31, width, load_c);
  if constexpr (MR > 4) store_row(c + 4 * ldc, c40, c41, width, load_c);
  if constexpr (MR > 5) store_row(c + 5 * ldc, c50, c51, width, load_c);
}

// One row of C times four whole panels (a matrix-vector product for batch 1): eight
// independent FMA chains in flight instead of two. Same per-element order as micro_kernel.
GATECELL_TARGET_AVX2 inline void row_kernel(index_t kc, const float* a, index_t cs_a, const float* b,
                                            index_t panel_stride, float* c, bool load_c) {
  __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  const float *b_0 = b, *b_1 = b + panel_stride, *b_2 = b + 2 * panel_stride, *b_3 = b + 3 * panel_stride;
  for (index_t k = 0; k < kc; ++k) {
    const __m256 av = _mm256_broadcast_ss(a + k * cs_a);
    const index_t o = k * kPanel;
    c0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b_0 + o), c0); c1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b_0 + o + 8), c1);
    c2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b_1 + o), c2); c3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b_1 + o + 8), c3);
    c4 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b_2 + o), c4); c5 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b_2 + o + 8), c5);
    c6 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b_3 + o), c6); c7 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b_3 + o + 8), c7);
  }
  store_row(c, c0, c1, kPanel, load_c);
  store_row(c + kPanel, c2, c3, kPanel, load_c);
  store_row(c + 2 * kPanel, c4, c5, kPanel, load_c);
  store_row(c + 3 * kPanel, c6, c7, kPanel, load_c);
}

// Two rows of C times three whole panels (batch 2): B is read once for both rows, in three
// streams, with twelve FMA chains in flight; row_kernel would read every panel twice. a: the
// block of A packed two rows per k. Same per-element order as micro_kernel.
GATECELL_TARGET_AVX2 inline void pair_kernel(index_t kc, const float* a, const float* b, index_t panel_stride,
                                             float* c, index_t ldc, bool load_c) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c04 = c00, c05 = c00;
  __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00, c14 = c00, c15 = c00;
  const float *b_0 = b, *b_1 = b + panel_stride, *b_2 = b + 2 * panel_stride;
  for (index_t k = 0; k < kc; ++k) {
    const index_t o = k * kPanel;
    const __m256 b0 = _mm256_loadu_ps(b_0 + o), b1 = _mm256_loadu_ps(b_0 + o + 8);
    const __m256 b2 = _mm256_loadu_ps(b_1 + o), b3 = _mm256_loadu_ps(b_1 + o + 8);
    const __m256 b4 = _mm256_loadu_ps(b_2 + o), b5 = _mm256_loadu_ps(b_2 + o + 8);
    __m256 av = _mm256_broadcast_ss(a + 2 * k);
    c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    c02 = _mm256_fmadd_ps(av, b2, c02); c03 = _mm256_fmadd_ps(av, b3, c03);
    c04 = _mm256_fmadd_ps(av, b4, c04); c05 = _mm256_fmadd_ps(av, b5, c05);
    av = _mm256_broadcast_ss(a + 2 * k + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    c12 = _mm256_fmadd_ps(av, b2, c12); c13 = _mm256_fmadd_ps(av, b3, c13);
    c14 = _mm256_fmadd_ps(av, b4, c14); c15 = _mm256_fmadd_ps(av, b5, c15);
  }
  store_row(c, c00, c01, kPanel, load_c);
  store_row(c + kPanel, c02, c03, kPanel, load_c);
  store_row(c + 2 * kPanel, c04, c05, kPanel, load_c);
  store_row(c + ldc, c10, c11, kPanel, load_c);
  store_row(c + ldc + kPanel, c12, c13, kPanel, load_c);
  store_row(c + ldc + 2 * kPanel, c14, c15, kPanel, load_c);
}

// Three rows of C times two whole panels (batch 3): as pair_kernel, twelve chains in two streams
// instead of micro_kernel's six in one. a: the block of A packed three rows per k.
GATECELL_TARGET_AVX2 inline void triple_kernel(index_t kc, const float* a, const float* b, index_t panel_stride,
                                               float* c, index_t ldc, bool load_c) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00;
  __m256 c12 = c00, c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00;
  const float *b_0 = b, *b_1 = b + panel_stride;
  for (index_t k = 0; k < kc; ++k) {
    const index_t o = k * kPanel;
    const __m256 b0 = _mm256_loadu_ps(b_0 + o), b1 = _mm256_loadu_ps(b_0 + o + 8);
    const __m256 b2 = _mm256_loadu_ps(b_1 + o), b3 = _mm256_loadu_ps(b_1 + o + 8);
    __m256 av = _mm256_broadcast_ss(a + 3 * k);
    c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    c02 = _mm256_fmadd_ps(av, b2, c02); c03 = _mm256_fmadd_ps(av, b3, c03);
    av = _mm256_broadcast_ss(a + 3 * k + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    c12 = _mm256_fmadd_ps(av, b2, c12); c13 = _mm256_fmadd_ps(av, b3, c13);
    av = _mm256_broadcast_ss(a + 3 * k + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
    c22 = _mm256_fmadd_ps(av, b2, c22); c23 = _mm256_fmadd_ps(av, b3, c23);
  }
  store_row(c, c00, c01, kPanel, load_c);
  store_row(c + kPanel, c02, c03, kPanel, load_c);
  store_row(c + ldc, c10, c11, kPanel, load_c);
  store_row(c + ldc + kPanel, c12, c13, kPanel, load_c);
  store_row(c + 2 * ldc, c20, c21, kPanel, load_c);
  store_row(c + 2 * ldc + kPanel, c22, c23, kPanel, load_c);
}

// Four rows of C times 24 columns (batch 4, or 8 as two groups): three 8-column streams, each
// half a panel (b0, b1, b2 point at their k = 0 vectors, kPanel apart along k), twelve FMA chains
// in flight instead of micro_kernel<4>'s eight. Two calls cover three panels; C's 24 columns are
// contiguous. a: the group of A packed four rows per k. Same per-element order as micro_kernel.
GATECELL_TARGET_AVX2 inline void quad_kernel(index_t kc, const float* a, const float* b0, const float* b1,
                                             const float* b2, float* c, index_t ldc, bool load_c) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (index_t k = 0; k < kc; ++k) {
    const index_t o = k * kPanel;
    const __m256 v0 = _mm256_loadu_ps(b0 + o), v1 = _mm256_loadu_ps(b1 + o), v2 = _mm256_loadu_ps(b2 + o);
    __m256 av = _mm256_broadcast_ss(a + 4 * k);
    c00 = _mm256_fmadd_ps(av, v0, c00); c01 = _mm256_fmadd_ps(av, v1, c01); c02 = _mm256_fmadd_ps(av, v2, c02);
    av = _mm256_broadcast_ss(a + 4 * k + 1);
    c10 = _mm256_fmadd_ps(av, v0, c10); c11 = _mm256_fmadd_ps(av, v1, c11); c12 = _mm256_fmadd_ps(av, v2, c12);
    av = _mm256_broadcast_ss(a + 4 * k + 2);
    c20 = _mm256_fmadd_ps(av, v0, c20); c21 = _mm256_fmadd_ps(av, v1, c21); c22 = _mm256_fmadd_ps(av, v2, c22);
    av = _mm256_broadcast_ss(a + 4 * k + 3);
    c30 = _mm256_fmadd_ps(av, v0, c30); c31 = _mm256_fmadd_ps(av, v1, c31); c32 = _mm256_fmadd_ps(av, v2, c32);
  }
  const __m256 rows[4][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32}};
  for (int r = 0; r < 4; ++r)
    for (int v = 0; v < 3; ++v) {
      float* dst = c + r * ldc + 8 * v;
      _mm256_storeu_ps(dst, load_c ? _mm256_add_ps(_mm256_loadu_ps(dst), rows[r][v]) : rows[r][v]);
    }
}

// The rows [0, rows) of a block cut into ceil(rows / 6) groups as even as possible, each one call
// of the micro-kernel: 32 rows run as 6 6 5 5 5 5, not 6 6 6 6 6 2, whose last call would keep
// only four FMA chains in flight (latency-bound) for a third of a full call's work.
struct RowGroups {
  index_t count, base, extra;  // extra groups of base + 1 rows first, then groups of base rows
  explicit RowGroups(index_t rows)
      : count((rows + 5) / 6), base(count > 0 ? rows / count : 0), extra(count > 0 ? rows % count : 0) {}
  index_t start(index_t g) const { return g * base + std::min(g, extra); }
  index_t size(index_t g) const { return base + (g < extra ? 1 : 0); }
};

// Copies A[m0:m1, k0:k0+kc] group by group (RowGroups), each k-major ([k][rows of the group]):
// the micro-kernel then reads A contiguously whatever its strides (a transposed A, as in the
// weight gradients, would otherwise touch one cache line per k, 4 KiB apart).
// Both common layouts move eight k at a time in registers (the element loop took 12% of an LSTM
// training step, B 256 H 128): rows of A contiguous along k (cs = 1: the step's h, dA) by 8 x 8
// transposes; columns contiguous (rs = 1: a transposed dA) by one masked load per k. Each k's MR
// values are stored as eight, the extra lanes overwritten by the next k's store (MR >= 4: they
// never reach past the group's block); the block's last k stores only its MR.
template <int MR>
GATECELL_TARGET_AVX2 void pack_group(const float* src, index_t rs, index_t cs, index_t kc, float* dst) {
  const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(MR), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  index_t k = 0;
  if (MR >= 4 && cs == 1) {
    for (; k + 8 <= kc; k += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = i < MR ? _mm256_loadu_ps(src + i * rs + k) : _mm256_setzero_ps();
      avx2::transpose8(r);
      for (int j = 0; j < 7; ++j) _mm256_storeu_ps(dst + (k + j) * MR, r[j]);
      _mm256_maskstore_ps(dst + (k + 7) * MR, lanes, r[7]);
    }
  } else if (MR >= 4 && rs == 1) {
    for (; k + 1 < kc; ++k) _mm256_storeu_ps(dst + k * MR, _mm256_maskload_ps(src + k * cs, lanes));
  }
  for (; k < kc; ++k)
    for (int i = 0; i < MR; ++i) dst[k * MR + i] = src[k * cs + i * rs];
}

// pack_a for an A whose columns are contiguous (rs = 1: dA^T in the weight gradients) in groups
// of four to six rows: k by k, each k's run of the block's rows read once and put in every group.
// Group by group (pack_group), each group would read a piece of every k's cache lines, and with k
// 8 KiB apart (2048 gate rows) those lines share a few L1 sets: each group fetched them again.
// Every k lies on other pages, where the hardware prefetcher stops: the lines kPrefetchK k ahead
// are asked for in software (pack time in an LSTM 100-4-256-512 training step: 3.3% -> 1%).
// Stores as pack_group's: eight lanes, the extra ones overwritten by the next k; the last k masked.
constexpr index_t kPrefetchK = 8;
GATECELL_TARGET_AVX2 void pack_a_by_k(const float* src, index_t cs, const RowGroups& groups, index_t kc, float* out) {
  const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i wide = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(groups.base + 1)), step);
  const __m256i narrow = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(groups.base)), step);
  const index_t block_rows = groups.start(groups.count);
  for (index_t k = 0; k < kc; ++k, src += cs) {
    if (k + kPrefetchK < kc)
      for (index_t r = 0; r < block_rows; r += 16)
        _mm_prefetch(reinterpret_cast<const char*>(src + kPrefetchK * cs + r), _MM_HINT_T0);
    for (index_t g = 0; g < groups.count; ++g) {
      const index_t first = groups.start(g), rows = groups.size(g);
      const __m256i lanes = g < groups.extra ? wide : narrow;
      const __m256 v = _mm256_maskload_ps(src + first, lanes);
      float* dst = out + first * kc + k * rows;
      if (k + 1 < kc) _mm256_storeu_ps(dst, v);
      else _mm256_maskstore_ps(dst, lanes, v);
    }
  }
}

void pack_a(const MatView<float>& a, index_t m0, index_t m1, index_t k0, index_t kc, float* out) {
  const RowGroups groups(m1 - m0);
  if (a.rs == 1 && a.cs != 1 && groups.base >= 4) {
    pack_a_by_k(a.data + m0 + k0 * a.cs, a.cs, groups, kc, out);
    return;
  }
  for (index_t g = 0; g < groups.count; ++g) {
    const index_t first = m0 + groups.start(g);
    const float* src = a.data + first * a.rs + k0 * a.cs;
    float* dst = out + (first - m0) * kc;
    switch (groups.size(g)) {
      case 6: pack_group<6>(src, a.rs, a.cs, kc, dst); break;
      case 5: pack_group<5>(src, a.rs, a.cs, kc, dst); break;
      case 4: pack_group<4>(src, a.rs, a.cs, kc, dst); break;
      case 3: pack_group<3>(src, a.rs, a.cs, kc, dst); break;
      case 2: pack_group<2>(src, a.rs, a.cs, kc, dst); break;
      default: pack_group<1>(src, a.rs, a.cs, kc, dst); break;
    }
  }
}

// Panels one kernel call covers for a block of `rows` rows of A: row_kernel (1 row) four,
// pair_kernel three, triple_kernel two, two quad_kernel calls per group of four rows three, the
// micro-kernel one.
constexpr index_t panels_per_call(index_t rows) {
  return rows == 1 ? 4 : rows == 2 || rows == 4 || rows == 8 ? 3 : rows == 3 ? 2 : 1;
}

// Rows [m0, m1) of C for one k block, panels [p0, p1); ap: that block of A as pack_a leaves it.
GATECELL_TARGET_AVX2 void block_avx2(const float* ap, const float* panels, index_t K, index_t cols,
                                     index_t k0, index_t kc, index_t m0, index_t m1, index_t p0, index_t p1,
                                     const Dest& out, bool load_c) {
  const index_t stride = K * kPanel;
  const RowGroups groups(m1 - m0);
  for (index_t p = p0; p < p1;) {
    const float* b = panels + p * stride + k0 * kPanel;
    const index_t width = std::min(kPanel, cols - p * kPanel);
    float* cp = out.at(p);
    const index_t ldc = out.ld(p);
    // One to four rows, or eight (batch 1 to 4, 8): several whole panels at once keep eight or
    // twelve independent FMA chains in flight instead of two to eight.
    const index_t block_rows = m1 - m0, wide = panels_per_call(block_rows);
    if (wide > 1 && p + wide <= p1 && (p + wide) * kPanel <= cols && out.run(p, wide) == wide) {
      if (block_rows == 1) {
        row_kernel(kc, ap, 1, b, stride, cp + m0 * ldc, load_c);
      } else if (block_rows == 2) {
        pair_kernel(kc, ap, b, stride, cp + m0 * ldc, ldc, load_c);
      } else if (block_rows == 3) {
        triple_kernel(kc, ap, b, stride, cp + m0 * ldc, ldc, load_c);
      } else {  // groups of four rows (RowGroups): the first 24 columns for each, then the last 24
        for (index_t m = m0; m < m1; m += 4)
          quad_kernel(kc, ap + (m - m0) * kc, b, b + 8, b + stride, cp + m * ldc, ldc, load_c);
        for (index_t m = m0; m < m1; m += 4)
          quad_kernel(kc, ap + (m - m0) * kc, b + stride + 8, b + 2 * stride, b + 2 * stride + 8,
                      cp + m * ldc + 24, ldc, load_c);
      }
      p += wide;
      continue;
    }
    for (index_t g = 0; g < groups.count; ++g) {
      const index_t m = m0 + groups.start(g), rows = groups.size(g);
      const float* am = ap + (m - m0) * kc;
      float* cm = cp + m * ldc;
      switch (rows) {
        case 6: micro_kernel<6>(kc, am, 1, 6, b, cm, ldc, width, load_c); break;
        case 5: micro_kernel<5>(kc, am, 1, 5, b, cm, ldc, width, load_c); break;
        case 4: micro_kernel<4>(kc, am, 1, 4, b, cm, ldc, width, load_c); break;
        case 3: micro_kernel<3>(kc, am, 1, 3, b, cm, ldc, width, load_c); break;
        case 2: micro_kernel<2>(kc, am, 1, 2, b, cm, ldc, width, load_c); break;
        default: micro_kernel<1>(kc, am, 1, 1, b, cm, ldc, width, load_c); break;
      }
    }
    ++p;
  }
}

// ---- AVX-512: a panel is one 16-float register --------------------------------------------

// MR rows of C times NP panels, the last `last_width` columns wide: C (+)= A[MR, kc] B[kc, 16 NP],
// one FMA chain per element in k order (so the same sums as the AVX2 kernels, bit for bit).
// a: MR values per k (pack_a's group); b: the first panel at this k block, the others
// panel_stride apart. Up to 24 accumulators of the 32 registers.
template <int MR, int NP>
GATECELL_TARGET_AVX512 inline void tile512(index_t kc, const float* a, const float* b, index_t panel_stride,
                                           float* c, index_t ldc, index_t last_width, bool load_c) {
  // The C tile this call adds to, asked for now so that it is in L1 when the k loop ends: a weight
  // gradient's C (6 MiB for an LSTM with I 256, H 512) lies in L3, and each tile's load of it stalled
  // the core. LSTM 100-4-256-512, 1 thread, alternating runs: that dW product about 5% faster, the
  // training step about 1.5%. The same in the AVX2 kernel measured under 1%, so it has none.
  if (load_c)
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + j * kPanel), _MM_HINT_T0);
  __m512 acc[MR][NP];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_ps();
  for (index_t k = 0; k < kc; ++k) {
    __m512 bv[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) bv[j] = _mm512_loadu_ps(b + j * panel_stride + k * kPanel);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[k * MR + i]);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  const __mmask16 last = static_cast<__mmask16>((1u << last_width) - 1u);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) {
      float* dst = c + i * ldc + j * kPanel;
      const __mmask16 m = j + 1 < NP ? __mmask16(0xFFFF) : last;
      const __m512 v = load_c ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), acc[i][j]) : acc[i][j];
      _mm512_mask_storeu_ps(dst, m, v);
    }
}

// Panels one tile512 call covers for a group of `rows` rows: eight (one row), six (two) or four
// (three to six), so that 8 to 24 independent FMA chains are in flight.
constexpr index_t panels_per_tile512(index_t rows) { return rows == 1 ? 8 : rows == 2 ? 6 : 4; }

template <int MR>
GATECELL_TARGET_AVX512 void tile512_panels(index_t np, index_t kc, const float* a, const float* b,
                                           index_t panel_stride, float* c, index_t ldc, index_t last_width,
                                           bool load_c) {
  switch (np) {
    case 8: if constexpr (MR == 1) { tile512<MR, 8>(kc, a, b, panel_stride, c, ldc, last_width, load_c); return; } break;
    case 7: if constexpr (MR == 1) { tile512<MR, 7>(kc, a, b, panel_stride, c, ldc, last_width, load_c); return; } break;
    case 6: if constexpr (MR <= 2) { tile512<MR, 6>(kc, a, b, panel_stride, c, ldc, last_width, load_c); return; } break;
    case 5: if constexpr (MR <= 2) { tile512<MR, 5>(kc, a, b, panel_stride, c, ldc, last_width, load_c); return; } break;
    case 4: tile512<MR, 4>(kc, a, b, panel_stride, c, ldc, last_width, load_c); return;
    case 3: tile512<MR, 3>(kc, a, b, panel_stride, c, ldc, last_width, load_c); return;
    case 2: tile512<MR, 2>(kc, a, b, panel_stride, c, ldc, last_width, load_c); return;
    default: tile512<MR, 1>(kc, a, b, panel_stride, c, ldc, last_width, load_c); return;
  }
  throw std::logic_error("tile512_panels: too many panels for the rows");
}

// block_avx2 for AVX-512: rows [m0, m1) of C for one k block, panels [p0, p1).
GATECELL_TARGET_AVX512 void block_avx512(const float* ap, const float* panels, index_t K, index_t cols,
                                         index_t k0, index_t kc, index_t m0, index_t m1, index_t p0, index_t p1,
                                         const Dest& out, bool load_c) {
  const index_t stride = K * kPanel;
  const RowGroups groups(m1 - m0);
  const index_t wide = panels_per_tile512(groups.count > 0 ? groups.size(0) : 1);
  for (index_t p = p0, np = 0; p < p1; p += np) {
    np = out.run(p, std::min(wide, p1 - p));
    const float* b = panels + p * stride + k0 * kPanel;
    const index_t last_width = std::min(kPanel, cols - (p + np - 1) * kPanel);
    float* cp = out.at(p);
    const index_t ldc = out.ld(p);
    for (index_t g = 0; g < groups.count; ++g) {
      const index_t m = m0 + groups.start(g), rows = groups.size(g);
      const float* am = ap + (m - m0) * kc;
      float* cm = cp + m * ldc;
      switch (rows) {
        case 6: tile512_panels<6>(np, kc, am, b, stride, cm, ldc, last_width, load_c); break;
        case 5: tile512_panels<5>(np, kc, am, b, stride, cm, ldc, last_width, load_c); break;
        case 4: tile512_panels<4>(np, kc, am, b, stride, cm, ldc, last_width, load_c); break;
        case 3: tile512_panels<3>(np, kc, am, b, stride, cm, ldc, last_width, load_c); break;
        case 2: tile512_panels<2>(np, kc, am, b, stride, cm, ldc, last_width, load_c); break;
        default: tile512_panels<1>(np, kc, am, b, stride, cm, ldc, last_width, load_c); break;
      }
    }
  }
}

void gemm_avx2(const MatView<float>& a, const PackedMatrix<float>& b, const Dest& out, bool accumulate) {
  const index_t M = a.rows, K = a.cols, cols = b.view().cols, P = panel_count(cols);
  const bool wide = use_avx512();
  const auto block = wide ? block_avx512 : block_avx2;
  const bool backwards = b.turn();
  auto run = [&](index_t p0, index_t p1) {
    // Per thread, grown once and kept: the time loops call this at every step.
    thread_local std::vector<float> a_pack;
    const std::size_t need = static_cast<std::size_t>(kRowBlock) * kDepthBlock;
    if (a_pack.size() < need) a_pack.resize(need);
    if (!b.streamed() && M <= kSmallRows && M * K <= kRowBlock * kDepthBlock && K > kDepthBlock) {
      // A small A (the recurrent product of a small batch) packed whole, then B read panel by
      // panel over all its k blocks: one sequential stream through memory instead of one
      // 16 KiB piece per panel and k block. Every element still sums its k blocks in order.
      // Every other call walks the groups of panels backwards (PackedMatrix::turn).
      for (index_t k0 = 0; k0 < K; k0 += kDepthBlock)
        pack_a(a, 0, M, k0, std::min(kDepthBlock, K - k0), a_pack.data() + k0 * M);
      // A group's panels are read over all of K before the next group: past kTurnGroupBytes (eight
      // panels of K 2048, 1 MiB) a group no longer fits L2 for the next call to start from, so
      // deep Bs take groups of fewer panels, four at least.
      index_t chunk = wide ? panels_per_tile512(RowGroups(M).size(0)) : panels_per_call(M);
      chunk = std::min(chunk, std::max<index_t>(4, kTurnGroupBytes / (K * kPanel * index_t(sizeof(float)))));
      const index_t chunks = (p1 - p0 + chunk - 1) / chunk;
      for (index_t i = 0; i < chunks; ++i) {
        const index_t p = p0 + (backwards ? chunks - 1 - i : i) * chunk, q = std::min(p1, p + chunk);
        for (index_t k0 = 0; k0 < K; k0 += kDepthBlock)
          block(a_pack.data() + k0 * M, b.panels(), K, cols, k0, std::min(kDepthBlock, K - k0), 0, M, p, q, out,
                accumulate || k0 > 0);
      }
      return;
    }
    // A streamed B: this thread's panels, one k block at a time, packed into a buffer it keeps
    // and multiplied by every row of A (the same k blocks in the same order: the same sums).
    thread_local Buffer<float> b_rows;
    const std::size_t rows_need = b.streamed() ? static_cast<std::size_t>(p1 - p0) * kDepthBlock * kPanel : 0;
    if (b_rows.size() < rows_need) b_rows.resize(rows_need);
    for (index_t k0 = 0; k0 < K || k0 == 0; k0 += kDepthBlock) {
      const index_t kc = std::min(kDepthBlock, K - k0);
      if (b.streamed())
        for (index_t p = p0; p < p1; ++p) b.pack_rows(p, k0, kc, b_rows.data() + (p - p0) * kc * kPanel);
      for (index_t m0 = 0; m0 < M; m0 += kRowBlock) {
        const index_t m1 = std::min(M, m0 + kRowBlock);
        pack_a(a, m0, m1, k0, kc, a_pack.data());
        if (b.streamed())  // the buffer holds panels [p0, p1) of this k block alone
          block(a_pack.data(), b_rows.data(), kc, cols - p0 * kPanel, 0, kc, m0, m1, 0, p1 - p0, out.from(p0),
                accumulate || k0 > 0);
        else
          block(a_pack.data(), b.panels(), K, cols, k0, kc, m0, m1, p0, p1, out, accumulate || k0 > 0);
      }
      if (K == 0) break;
    }
  };
  using Clock = std::chrono::steady_clock;
  const double macs = static_cast<double>(M) * K * cols;
  const int threads = static_cast<int>(std::min<index_t>(omp_get_max_threads(), P));
  const bool parallel = macs >= kParallelMacs && threads > 1 && !in_parallel() && !gemm_pause.active();
  if (!parallel) {
    run(0, P);
    return;
  }
  const Clock::time_point start = Clock::now();
  // One range of panels per thread; the calling thread takes a range no helper has started.
  run_shared(threads, threads, [&](index_t id) { run(P * id / threads, P * (id + 1) / threads); });
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  if (took > kStallFactor * macs / (kSerialMacRate * threads) + kStallSlack) gemm_pause.stalled();
  else gemm_pause.ran_smoothly();
}

}  // namespace
#endif

template <typename Scalar>
void gemm(const MatView<Scalar>& a, const PackedMatrix<Scalar>& b, Scalar* c, index_t ldc, bool accumulate) {
  if (a.rows == 0 || b.view().cols == 0) return;
#ifdef GATECELL_X86_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (b.packed()) {
      gemm_avx2(a, b, Dest{c, ldc, panel_count(b.view().cols), nullptr, 0}, accumulate);
      return;
    }
  }
#endif
  using Strided = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                             Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
  using Out = Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                         Eigen::OuterStride<>>;
  const MatView<Scalar>& bv = b.view();
  Strided am(a.data, a.rows, a.cols, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(a.rs, a.cs));
  Strided bm(bv.data, bv.rows, bv.cols, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(bv.rs, bv.cs));
  Out cm(c, a.rows, bv.cols, Eigen::OuterStride<>(ldc));
  if (a.cols == 0) {
    if (!accumulate) cm.setZero();
  } else if (accumulate) {
    cm.noalias() += am * bm;
  } else {
    cm.noalias() = am * bm;
  }
}

template <typename Scalar>
void gemm(const MatView<Scalar>& a, const PackedMatrix<Scalar>& b, index_t split, Scalar* c, index_t ldc, Scalar* c2,
          index_t ldc2, bool accumulate) {
  const index_t M = a.rows, cols = b.view().cols;
  if (split < 0 || split > cols) throw std::logic_error("gemm: split past B's columns");
  if (M == 0 || cols == 0) return;
#ifdef GATECELL_X86_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (b.packed() && split % kPanel == 0) {  // each panel in one array: written in place
      gemm_avx2(a, b, Dest{c, ldc, split / kPanel, c2, ldc2}, accumulate);
      return;
    }
  }
#endif
  // A panel across the split, or Eigen (whose order depends on the sizes): C gathered, multiplied
  // whole, and put back.
  Buffer<Scalar> whole(M * cols);
  for (index_t r = 0; r < M; ++r) {
    std::copy(c + r * ldc, c + r * ldc + split, whole.data() + r * cols);
    std::copy(c2 + r * ldc2, c2 + r * ldc2 + cols - split, whole.data() + r * cols + split);
  }
  gemm(a, b, whole.data(), cols, accumulate);
  for (index_t r = 0; r < M; ++r) {
    std::copy(whole.data() + r * cols, whole.data() + r * cols + split, c + r * ldc);
    std::copy(whole.data() + r * cols + split, whole.data() + (r + 1) * cols, c2 + r * ldc2);
  }
}

template <typename Scalar>
bool gemm_rows_independent() {
#ifdef GATECELL_X86_AVX2
  return std::is_same_v<Scalar, float> && use_avx2();
#else
  return false;
#endif
}

double time_gemm(const float* a, const float* b, float* c, index_t m, index_t k, index_t n, int repeats) {
  if (m < 1 || k < 1 || n < 1 || repeats < 1)
    throw ShapeError("time_gemm: m, k, n and repeats must be >= 1, got " + std::to_string(m) + ", " +
                     std::to_string(k) + ", " + std::to_string(n) + ", " + std::to_string(repeats));
  PackedMatrix<float> packed;
  packed.pack(rows_view(b, k, n, n));
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    gemm(rows_view(a, m, k, k), packed, c, n, false);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r == 0 || took < best) best = took;
  }
  return best;
}

template bool gemm_rows_independent<float>();
template bool gemm_rows_independent<double>();
template class PackedMatrix<float>;
template class PackedMatrix<double>;
template void gemm<float>(const MatView<float>&, const PackedMatrix<float>&, float*, index_t, bool);
template void gemm<double>(const MatView<double>&, const PackedMatrix<double>&, double*, index_t, bool);
template void gemm<float>(const MatView<float>&, const PackedMatrix<float>&, index_t, float*, index_t, float*, index_t,
                          bool);
template void gemm<double>(const MatView<double>&, const PackedMatrix<double>&, index_t, double*, index_t, double*,
                           index_t, bool);

}  // namespace gatecell::detail
