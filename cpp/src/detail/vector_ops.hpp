// SPDX-License-Identifier: MIT
#pragma once
// The float vector operations the width-generic kernels use (gate_rows.inc in simd.cpp,
// step_gates.inc in step.cpp), on eight lanes (vec8: AVX2 + FMA) and on sixteen (vec16: AVX-512).
// A kernel written against them and included once in each namespace runs, lane by lane, the
// same operations in the same order on either width, so its results do not depend on it.

#include <algorithm>

#include "detail/simd_avx512.hpp"
#include "gatecell/shapes.hpp"

#ifdef GATECELL_X86_AVX2

// The operations on one width (P: the intrinsics' prefix).
#define GATECELL_VECTOR_OPS(TARGET, P, TANH, SIGMOID)                    \
  TARGET inline V zero() { return P##_setzero_ps(); }                    \
  TARGET inline V add(V a, V b) { return P##_add_ps(a, b); }             \
  TARGET inline V sub(V a, V b) { return P##_sub_ps(a, b); }             \
  TARGET inline V mul(V a, V b) { return P##_mul_ps(a, b); }             \
  TARGET inline V fmadd(V a, V b, V c) { return P##_fmadd_ps(a, b, c); } \
  TARGET inline V vmax(V a, V b) { return P##_max_ps(a, b); }            \
  TARGET inline V tanhv(V x) { return TANH(x); }                         \
  TARGET inline V sigmoidv(V x) { return SIGMOID(x); }

namespace gatecell::detail {

namespace vec8 {
using namespace avx2;
constexpr index_t W = 8;
GATECELL_VECTOR_OPS(GATECELL_TARGET_AVX2, _mm256, tanh8, sigmoid8)

// Lanes [0, n) of eight: full registers load and store plainly, the last one through a mask
// (masked lanes load as zero and are never written).
struct Lanes {
  __m256i mask;
  bool full;
  GATECELL_TARGET_AVX2 explicit Lanes(index_t n)
      : mask(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::max<index_t>(0, std::min<index_t>(n, W)))),
                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))),
        full(n >= W) {}
  GATECELL_TARGET_AVX2 V load(const float* p) const { return full ? ld(p) : _mm256_maskload_ps(p, mask); }
  GATECELL_TARGET_AVX2 void store(float* p, V v) const {
    if (full) st(p, v);
    else _mm256_maskstore_ps(p, mask, v);
  }
};
}  // namespace vec8

namespace vec16 {
using namespace avx512;
constexpr index_t W = 16;
GATECELL_VECTOR_OPS(GATECELL_TARGET_AVX512, _mm512, tanh16, sigmoid16)

// vec8::Lanes on sixteen lanes.
struct Lanes {
  __mmask16 mask;
  bool full;
  GATECELL_TARGET_AVX512 explicit Lanes(index_t n)
      : mask(static_cast<__mmask16>(n >= W ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1u)), full(n >= W) {}
  GATECELL_TARGET_AVX512 V load(const float* p) const { return full ? ld(p) : _mm512_maskz_loadu_ps(mask, p); }
  GATECELL_TARGET_AVX512 void store(float* p, V v) const {
    if (full) st(p, v);
    else _mm512_mask_storeu_ps(p, mask, v);
  }
};
}  // namespace vec16

}  // namespace gatecell::detail

#undef GATECELL_VECTOR_OPS

// Declares the operations of vec8 or vec16 in the current namespace, so that they take precedence
// over an avx2 or avx512 namespace made visible around it.
#define GATECELL_USE_VECTOR_OPS(NS)                                                                      \
  using NS::V; using NS::W; using NS::Lanes; using NS::set1; using NS::ld; using NS::st; using NS::zero; \
  using NS::add; using NS::sub; using NS::mul; using NS::fmadd; using NS::vmax; using NS::tanhv;          \
  using NS::sigmoidv

#endif
