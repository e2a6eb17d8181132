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
index_t gru_row_forward_lbr_avx2(float*, const float*, float*, float*, index_t) { return 0; }
index_t gru_row_reset_avx2(float*, const float*, const float*, float*, index_t) { return 0; }
index_t gru_row_forward_original_avx2(float*, const float*, float*, index_t) { return 0; }
index_t tanh_avx2(const float*, float*, index_t) { return 0; }

#endif

}  // namespace gatecell::detail
