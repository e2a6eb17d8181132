// SPDX-License-Identifier: MIT
#pragma once
// Eight-float AVX2 + FMA building blocks (exp, tanh, sigmoid) shared by the row kernels (simd.cpp)
// and the fused step kernel (step.cpp). Function-level target attributes: any x86-64 build
// compiles them, and callers run them only when use_avx2() says the CPU has the instructions.
// exp is a range reduction x = n ln2 + r with a degree-7 polynomial for e^r (relative error
// about 2e-7); tanh is a rational function (below) and sigmoid is built from tanh.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GATECELL_X86_AVX2 1
#include <immintrin.h>
#define GATECELL_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace gatecell::detail::avx2 {

using V = __m256;

GATECELL_TARGET_AVX2 inline V set1(float v) { return _mm256_set1_ps(v); }

// e^x, x clamped to [-87.3, 88.3] so that 2^n stays a normal float. The clamps take x as their
// second operand, which max/min return when either is NaN: a NaN stays NaN (all clamps here).
GATECELL_TARGET_AVX2 inline V exp8(V x) {
  x = _mm256_min_ps(set1(88.3f), _mm256_max_ps(set1(-87.3f), x));
  const V n = _mm256_round_ps(_mm256_mul_ps(x, set1(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2, with ln2 split in two so that n * ln2_hi is exact.
  V r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
  V p = set1(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, set1(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, set1(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, set1(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, set1(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, set1(5.0000001201e-1f));
  const V r2 = _mm256_mul_ps(r, r);
  const V er = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), set1(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(er, _mm256_castsi256_ps(e));
}

// tanh x = x P(x^2) / Q(x^2) on |x| <= 8 (beyond, tanh rounds to +-1 within 2.3e-7): a rational
// minimax fit made for gatecell (tools: numpy, Lawson-weighted linearised least squares on the
// relative error). Evaluated in float, the absolute and relative errors stay below 3.4e-7 over
// the whole line, and tanh(x) = x exactly for tiny x. One division, no exponential.
// The coefficients of P and Q, highest power first (shared with the AVX-512 form).
inline constexpr float kTanhClamp = 8.0f;
inline constexpr float kTanhP[] = {-1.15642034e-13f, 6.36549702e-11f, -2.23145928e-08f, 1.16424271e-05f,
                                   3.14936321e-03f,  1.31243482e-01f, 1.0f};
inline constexpr float kTanhQ[] = {2.61297188e-04f, 2.46749949e-02f, 4.64576811e-01f, 1.0f};

GATECELL_TARGET_AVX2 inline V tanh8(V x) {
  x = _mm256_min_ps(set1(kTanhClamp), _mm256_max_ps(set1(-kTanhClamp), x));
  const V u = _mm256_mul_ps(x, x);
  V p = set1(kTanhP[0]);
#pragma GCC unroll 8
  for (int i = 1; i < 7; ++i) p = _mm256_fmadd_ps(p, u, set1(kTanhP[i]));
  V q = set1(kTanhQ[0]);
#pragma GCC unroll 4
  for (int i = 1; i < 4; ++i) q = _mm256_fmadd_ps(q, u, set1(kTanhQ[i]));
  return _mm256_div_ps(_mm256_mul_ps(x, p), q);
}

// sigmoid x = (1 + tanh(x / 2)) / 2: absolute error below 1.8e-7, never below 0 or above 1. Not
// relatively accurate where sigmoid is tiny: 4e-5 at x = -8, and from x ~ -17 on the result stays
// near 2^-23 (the rounding of 1 + tanh), where the exact value keeps falling.
GATECELL_TARGET_AVX2 inline V sigmoid8(V x) {
  const V half = set1(0.5f);
  return _mm256_fmadd_ps(half, tanh8(_mm256_mul_ps(x, half)), half);
}

// 8 rows of 8 floats -> 8 columns (r[j] becomes what column j was), in registers: the weight
// packers turn rows of W into runs along k with it.
GATECELL_TARGET_AVX2 inline void transpose8(V r[8]) {
  const V t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const V t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const V t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const V t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const V u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const V u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const V u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const V u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

GATECELL_TARGET_AVX2 inline V ld(const float* p) { return _mm256_loadu_ps(p); }
GATECELL_TARGET_AVX2 inline void st(float* p, V v) { _mm256_storeu_ps(p, v); }

}  // namespace gatecell::detail::avx2

#endif
