// SPDX-License-Identifier: MIT
// AVX2 + FMA versions of the row kernels of detail/cell_math.hpp, for float; compiled for any
// x86-64 (function-level target attributes) and called only when the CPU has the instructions;
// the vector sigmoid and tanh are in detail/simd_avx2.hpp.

#include "detail/simd.hpp"

#include <cstdlib>

#include "detail/simd_avx2.hpp"

namespace gatecell::detail {

bool use_avx2() {
#ifdef GATECELL_X86_AVX2
  static const bool yes = [] {
    const char* env = std::getenv("GATECELL_PORTABLE");
    if (env != nullptr && env[0] != '\0' && env[0] != '0') return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
#else
  return false;
#endif
}

bool use_avx512() {
#ifdef GATECELL_X86_AVX2
  static const bool yes = [] {
    const char* env = std::getenv("GATECELL_NO_AVX512");
    if (env != nullptr && env[0] != '\0' && env[0] != '0') return false;
    // libgcc's check includes the OS's consent to save the 512-bit registers (XCR0).
    return use_avx2() && __builtin_cpu_supports("avx512f");
  }();
  return yes;
#else
  return false;
#endif
}

#ifdef GATECELL_X86_AVX2

using namespace avx2;

GATECELL_TARGET_AVX2 index_t rnn_row_forward_avx2(float* gate, const float* hp, float* h, index_t H,
                                                 bool use_relu) {
  index_t j = 0;
  for (; j + 8 <= H; j += 8) {
    const V pre = _mm256_add_ps(ld(gate + j), ld(hp + j));  // (R2)
    const V h_new = use_relu ? _mm256_max_ps(pre, _mm256_setzero_ps()) : tanh8(pre);
    st(gate + j, h_new);
    st(h + j, h_new);
  }
  return j;
}

namespace {

// (L1) eight pre-activations from k: x W_ih^T + b_ih, plus h_prev W_hh^T + b_hh summed first.
GATECELL_TARGET_AVX2 inline V lstm_pre8(const float* gate, const float* hp, const float* b_hh, index_t k) {
  const V h = b_hh != nullptr ? _mm256_add_ps(ld(hp + k), ld(b_hh + k)) : ld(hp + k);
  return _mm256_add_ps(ld(gate + k), h);
}

}  // namespace

GATECELL_TARGET_AVX2 index_t lstm_row_forward_avx2(float* gate, const float* hp, const float* b_hh,
                                                  const float* c_prev, float* c, float* m, index_t H) {
  index_t j = 0;
  for (; j + 8 <= H; j += 8) {
    const V i = sigmoid8(lstm_pre8(gate, hp, b_hh, j));  // (L2)
    const V f = sigmoid8(lstm_pre8(gate, hp, b_hh, H + j));
    const V g = tanh8(lstm_pre8(gate, hp, b_hh, 2 * H + j));
    const V o = sigmoid8(lstm_pre8(gate, hp, b_hh, 3 * H + j));
    const V c_new = _mm256_fmadd_ps(f, ld(c_prev + j), _mm256_mul_ps(i, g));  // (L3)
    st(m + j, _mm256_mul_ps(o, tanh8(c_new)));                              // (L4)
    st(c + j, c_new);
    st(gate + j, i); st(gate + H + j, f); st(gate + 2 * H + j, g); st(gate + 3 * H + j, o);
  }
  return j;
}

GATECELL_TARGET_AVX2 index_t lstm_row_backward_avx2(const float* gate, const float* tanh_c, const float* c_prev,
                                                   const float* dm, const float* dy, float* dc, float* da,
                                                   index_t H) {
  const V one = set1(1.0f);
  index_t j = 0;
  for (; j + 8 <= H; j += 8) {
    const V i = ld(gate + j), f = ld(gate + H + j), g = ld(gate + 2 * H + j), o = ld(gate + 3 * H + j);
    const V dm_j = _mm256_add_ps(ld(dm + j), dy != nullptr ? ld(dy + j) : _mm256_setzero_ps());
    const V tc = ld(tanh_c + j);
    const V do_ = _mm256_mul_ps(dm_j, tc);  // (L4)
    const V dc_j = _mm256_add_ps(ld(dc + j),
                                 _mm256_mul_ps(_mm256_mul_ps(dm_j, o), _mm256_sub_ps(one, _mm256_mul_ps(tc, tc))));
    const V di = _mm256_mul_ps(dc_j, g), df = _mm256_mul_ps(dc_j, ld(c_prev + j)), dg = _mm256_mul_ps(dc_j, i);  // (L3)
    st(dc + j, _mm256_mul_ps(dc_j, f));
    st(da + j, _mm256_mul_ps(_mm256_mul_ps(di, i), _mm256_sub_ps(one, i)));  // (L2)
    st(da + H + j, _mm256_mul_ps(_mm256_mul_ps(df, f), _mm256_sub_ps(one, f)));
    st(da + 2 * H + j, _mm256_mul_ps(dg, _mm256_sub_ps(one, _mm256_mul_ps(g, g))));
    st(da + 3 * H + j, _mm256_mul_ps(_mm256_mul_ps(do_, o), _mm256_sub_ps(one, o)));
  }
  return j;
}

GATECELL_TARGET_AVX2 index_t gru_row_backward_avx2(const float* gate, const float* h_prev, const float* hn,
                                                  const float* dh, const float* dy, float* dh_direct, float* da,
                                                  float* da_h, index_t H) {
  const V one = set1(1.0f);
  index_t j = 0;
  for (; j + 8 <= H; j += 8) {
    const V r = ld(gate + j), z = ld(gate + H + j), n = ld(gate + 2 * H + j);
    const V dh_j = _mm256_add_ps(ld(dh + j), dy != nullptr ? ld(dy + j) : _mm256_setzero_ps());
    const V dn = _mm256_mul_ps(dh_j, _mm256_sub_ps(one, z));  // (G5)
    const V dz = _mm256_mul_ps(dh_j, _mm256_sub_ps(ld(h_prev + j), n));
    st(dh_direct + j, _mm256_mul_ps(dh_j, z));
    const V da_n = _mm256_mul_ps(dn, _mm256_sub_ps(one, _mm256_mul_ps(n, n)));  // (G3), (G4)
    const V da_z = _mm256_mul_ps(_mm256_mul_ps(dz, z), _mm256_sub_ps(one, z));  // (G2)
    st(da + H + j, da_z);
    st(da + 2 * H + j, da_n);
    if (hn != nullptr) {
      const V dr = _mm256_mul_ps(da_n, ld(hn + j));  // (G3)
      const V da_r = _mm256_mul_ps(_mm256_mul_ps(dr, r), _mm256_sub_ps(one, r));  // (G2)
      st(da + j, da_r);
      st(da_h + j, da_r);
      st(da_h + H + j, da_z);
      st(da_h + 2 * H + j, _mm256_mul_ps(da_n, r));
    }
  }
  return j;
}

namespace {

// Columns [0, 8 NV) of column_sums_avx2: the NV partial sums stay in registers down all the rows.
template <int NV>
GATECELL_TARGET_AVX2 void column_sums8(const float* a, index_t rows, index_t ld, float* sum) {
  V acc[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
  for (index_t r = 0; r < rows; ++r, a += ld) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[v] = _mm256_add_ps(acc[v], _mm256_loadu_ps(a + 8 * v));
  }
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) st(sum + 8 * v, acc[v]);
}

}  // namespace

GATECELL_TARGET_AVX2 index_t column_sums_avx2(const float* a, index_t rows, index_t cols, index_t ld, float* sum) {
  index_t j = 0;
  for (; j + 128 <= cols; j += 128) column_sums8<16>(a + j, rows, ld, sum + j);
  for (; j + 32 <= cols; j += 32) column_sums8<4>(a + j, rows, ld, sum + j);
  for (; j + 8 <= cols; j += 8) column_sums8<1>(a + j, rows, ld, sum + j);
  return j;
}

GATECELL_TARGET_AVX2 index_t gru_row_forward_lbr_avx2(float* gate, const float* hp, float* h, float* hn,
                                                     index_t H) {
  index_t j = 0;
  for (; j + 8 <= H; j += 8) {
    const V r = sigmoid8(_mm256_add_ps(ld(gate + j), ld(hp + j)));  // (G2)
    const V z = sigmoid8(_mm256_add_ps(ld(gate + H + j), ld(hp + H + j)));
    const V n = tanh8(_mm256_fmadd_ps(r, ld(hp + 2 * H + j), ld(gate + 2 * H + j)));  // (G3)
    const V h_prev = ld(h + j);
    st(h + j, _mm256_fmadd_ps(_mm256_sub_ps(set1(1.0f), z), n, _mm256_mul_ps(z, h_prev)));  // (G5)
    st(gate + j, r); st(gate + H + j, z); st(gate + 2 * H + j, n);
    if (hn != nullptr) st(hn + j, ld(hp + 2 * H + j));
  }
  return j;
}

GATECELL_TARGET_AVX2 index_t gru_row_reset_avx2(float* gate, const float* hp, const float* h_prev, float* rh,
                                               index_t H) {
  index_t j = 0;
  for (; j + 8 <= H; j += 8) {
    const V r = sigmoid8(_mm256_add_ps(ld(gate + j), ld(hp + j)));  // (G2)
    st(gate + j, r);
    st(rh + j, _mm256_mul_ps(r, ld(h_prev + j)));  // (G4)
  }
  return j;
}

GATECELL_TARGET_AVX2 index_t gru_row_forward_original_avx2(float* gate, const float* hp, float* h, index_t H) {
  index_t j = 0;
  for (; j + 8 <= H; j += 8) {
    const V z = sigmoid8(_mm256_add_ps(ld(gate + H + j), ld(hp + H + j)));  // (G2)
    const V n = tanh8(_mm256_add_ps(ld(gate + 2 * H + j), ld(hp + 2 * H + j)));  // (G4)
    st(h + j, _mm256_fmadd_ps(_mm256_sub_ps(set1(1.0f), z), n, _mm256_mul_ps(z, ld(h + j))));  // (G5)
    st(gate + H + j, z); st(gate + 2 * H + j, n);
  }
  return j;
}

GATECELL_TARGET_AVX2 index_t tanh_avx2(const float* x, float* y, index_t n) {
  index_t j = 0;
  for (; j + 8 <= n; j += 8) st(y + j, tanh8(ld(x + j)));
  return j;
}

#else

index_t rnn_row_forward_avx2(float*, const float*, float*, index_t, bool) { return 0; }
index_t lstm_row_forward_avx2(float*, const float*, const float*, const float*, float*, float*, index_t) { return 0; }
index_t lstm_row_backward_avx2(const float*, const float*, const float*, const float*, const float*, float*, float*,
                               index_t) {
  return 0;
}
index_t gru_row_backward_avx2(const float*, const float*, const float*, const float*, const float*, float*, float*,
                              float*, index_t) {
  return 0;
}
index_t column_sums_avx2(const float*, index_t, index_t, index_t, float*) { return 0; }
index_t gru_row_forward_lbr_avx2(float*, const float*, float*, float*, index_t) { return 0; }
index_t gru_row_reset_avx2(float*, const float*, const float*, float*, index_t) { return 0; }
index_t gru_row_forward_original_avx2(float*, const float*, float*, index_t) { return 0; }
index_t tanh_avx2(const float*, float*, index_t) { return 0; }

#endif

}  // namespace gatecell::detail
