// SPDX-License-Identifier: MIT
// AVX2 + FMA and AVX-512 versions of the row kernels of detail/cell_math.hpp, for float (their
// bodies: detail/gate_rows.inc); compiled for any x86-64 (function-level target attributes) and
// called only when the CPU has the instructions; the vector sigmoid and tanh are in
// detail/simd_avx2.hpp and detail/simd_avx512.hpp.

#include "detail/simd.hpp"

#include <cstdlib>

#include "detail/vector_ops.hpp"

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

namespace rows8 {
GATECELL_USE_VECTOR_OPS(vec8);
#define GATECELL_ROW_TARGET GATECELL_TARGET_AVX2
#include "detail/gate_rows.inc"
#undef GATECELL_ROW_TARGET
}  // namespace rows8

namespace rows16 {
GATECELL_USE_VECTOR_OPS(vec16);
#define GATECELL_ROW_TARGET GATECELL_TARGET_AVX512
#include "detail/gate_rows.inc"
#undef GATECELL_ROW_TARGET
}  // namespace rows16

// Each *_avx2 entry point runs the sixteen-float kernel where the CPU has AVX-512, else the
// eight-float one; either finishes the row (its last block masked). Rows of fewer than eight
// units, a whole register on neither width, are left to the scalar loops of cell_math.hpp, as on
// the portable path: with std::exp a saturated gate is exactly 0 or 1 there, where the vector
// sigmoid reads about 1e-7 (a one-unit cell keeps exact gates, as it always had).
#define GATECELL_ROWS(name, n, ...) \
  ((n) < 8 ? index_t(0) : use_avx512() ? rows16::name(__VA_ARGS__) : rows8::name(__VA_ARGS__))

index_t rnn_row_forward_avx2(float* gate, const float* hp, float* h, index_t H, bool use_relu) {
  return GATECELL_ROWS(rnn_row_forward, H, gate, hp, h, H, use_relu);
}

index_t lstm_row_forward_avx2(float* gate, const float* hp, const float* b_hh, const float* b_ih, const float* c_prev,
                              float* c, float* m, index_t H) {
  return GATECELL_ROWS(lstm_row_forward, H, gate, hp, b_hh, b_ih, c_prev, c, m, H);
}

index_t lstm_row_backward_avx2(const float* gate, const float* tanh_c, const float* c_prev, const float* dm,
                               const float* dy, float* dc, float* da, index_t H) {
  return GATECELL_ROWS(lstm_row_backward, H, gate, tanh_c, c_prev, dm, dy, dc, da, H);
}

index_t gru_row_backward_avx2(const float* gate, const float* h_prev, const float* hn, const float* dh,
                              const float* dy, float* dh_direct, float* da, float* da_h, index_t H) {
  return GATECELL_ROWS(gru_row_backward, H, gate, h_prev, hn, dh, dy, dh_direct, da, da_h, H);
}

index_t gru_row_forward_lbr_avx2(float* gate, const float* hp, float* h, float* hn, index_t H) {
  return GATECELL_ROWS(gru_row_forward_lbr, H, gate, hp, h, hn, H);
}

index_t gru_row_reset_avx2(float* gate, const float* hp, const float* h_prev, float* rh, index_t H) {
  return GATECELL_ROWS(gru_row_reset, H, gate, hp, h_prev, rh, H);
}

index_t gru_row_forward_original_avx2(float* gate, const float* hp, float* h, index_t H) {
  return GATECELL_ROWS(gru_row_forward_original, H, gate, hp, h, H);
}

index_t tanh_avx2(const float* x, float* y, index_t n) { return GATECELL_ROWS(tanh_row, n, x, y, n); }

#undef GATECELL_ROWS

using avx2::V;
using avx2::st;

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

#else

index_t rnn_row_forward_avx2(float*, const float*, float*, index_t, bool) { return 0; }
index_t lstm_row_forward_avx2(float*, const float*, const float*, const float*, const float*, float*, float*, index_t) {
  return 0;
}
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
