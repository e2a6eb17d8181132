// SPDX-License-Identifier: MIT
#pragma once
// Sixteen-float AVX-512 forms of simd_avx2.hpp's tanh and sigmoid, for CPUs where use_avx512()
// holds: the same operations in the same order on twice the lanes, so each lane's result is
// bitwise the eight-float one.

#include "detail/simd_avx2.hpp"

#ifdef GATECELL_X86_AVX2
#define GATECELL_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))

namespace gatecell::detail::avx512 {

using V = __m512;

GATECELL_TARGET_AVX512 inline V set1(float v) { return _mm512_set1_ps(v); }
GATECELL_TARGET_AVX512 inline V ld(const float* p) { return _mm512_loadu_ps(p); }
GATECELL_TARGET_AVX512 inline void st(float* p, V v) { _mm512_storeu_ps(p, v); }

// avx2::tanh8 on sixteen lanes.
GATECELL_TARGET_AVX512 inline V tanh16(V x) {
  x = _mm512_min_ps(set1(avx2::kTanhClamp), _mm512_max_ps(set1(-avx2::kTanhClamp), x));  // a NaN stays NaN
  const V u = _mm512_mul_ps(x, x);
  V p = set1(avx2::kTanhP[0]);
#pragma GCC unroll 8
  for (int i = 1; i < 7; ++i) p = _mm512_fmadd_ps(p, u, set1(avx2::kTanhP[i]));
  V q = set1(avx2::kTanhQ[0]);
#pragma GCC unroll 4
  for (int i = 1; i < 4; ++i) q = _mm512_fmadd_ps(q, u, set1(avx2::kTanhQ[i]));
  return _mm512_div_ps(_mm512_mul_ps(x, p), q);
}

// avx2::sigmoid8 on sixteen lanes.
GATECELL_TARGET_AVX512 inline V sigmoid16(V x) {
  const V half = set1(0.5f);
  return _mm512_fmadd_ps(half, tanh16(_mm512_mul_ps(x, half)), half);
}

}  // namespace gatecell::detail::avx512

#endif
