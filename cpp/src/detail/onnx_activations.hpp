// SPDX-License-Identifier: MIT
#pragma once
// The eleven ONNX activation functions with their derivatives, and the gate clip, for the cell
// variants (variants.cpp). Derivatives take the pre-activation x and the value y = act(x),
// because several functions (relu, hard_sigmoid, elu, ...) cannot be differentiated from y alone.
// The row functions at the end (act_row, act_gradient_row) run one function over a whole gate
// block: the kind is dispatched once per block, so the inner loops carry no switch, and for float
// on a CPU with AVX2 + FMA all kinds but elu and softplus run eight lanes at a time.

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "detail/activations.hpp"
#include "detail/simd.hpp"
#include "detail/simd_avx2.hpp"
#include "gatecell/network.hpp"

namespace gatecell::detail {

// Calls body(std::integral_constant<Activation, K>{}) for K = kind: one switch, after which the
// body's code is specialised for the kind.
template <typename Body>
inline void with_kind(Activation kind, Body&& body) {
  using A = Activation;
  switch (kind) {
    case A::relu: body(std::integral_constant<A, A::relu>{}); break;
    case A::tanh: body(std::integral_constant<A, A::tanh>{}); break;
    case A::sigmoid: body(std::integral_constant<A, A::sigmoid>{}); break;
    case A::affine: body(std::integral_constant<A, A::affine>{}); break;
    case A::leaky_relu: body(std::integral_constant<A, A::leaky_relu>{}); break;
    case A::thresholded_relu: body(std::integral_constant<A, A::thresholded_relu>{}); break;
    case A::scaled_tanh: body(std::integral_constant<A, A::scaled_tanh>{}); break;
    case A::hard_sigmoid: body(std::integral_constant<A, A::hard_sigmoid>{}); break;
    case A::elu: body(std::integral_constant<A, A::elu>{}); break;
    case A::softsign: body(std::integral_constant<A, A::softsign>{}); break;
    case A::softplus: body(std::integral_constant<A, A::softplus>{}); break;
  }
}

// One activation function with its parameters, in the kernel's precision.
template <typename Scalar>
struct Act {
  Activation kind = Activation::tanh;
  Scalar alpha = 0, beta = 0;

  Act() = default;
  explicit Act(const ActivationSpec& s)
      : kind(s.kind), alpha(static_cast<Scalar>(s.alpha)), beta(static_cast<Scalar>(s.beta)) {}
  explicit Act(Activation k) : kind(k) {}

  // y = act(x) for the kind K, as Operators.md defines it.
  template <Activation K>
  Scalar value(Scalar x) const {
    using A = Activation;
    if constexpr (K == A::relu) return relu(x);
    if constexpr (K == A::tanh) return std::tanh(x);
    if constexpr (K == A::sigmoid) return sigmoid(x);
    if constexpr (K == A::affine) return alpha * x + beta;
    if constexpr (K == A::leaky_relu) return x >= Scalar(0) ? x : alpha * x;
    if constexpr (K == A::thresholded_relu) return x >= alpha ? x : Scalar(0);
    if constexpr (K == A::scaled_tanh) return alpha * std::tanh(beta * x);
    if constexpr (K == A::hard_sigmoid) {  // written out so that a NaN passes, as on the vector path
      const Scalar w = alpha * x + beta;
      return w < Scalar(0) ? Scalar(0) : w > Scalar(1) ? Scalar(1) : w;
    }
    if constexpr (K == A::elu) return x >= Scalar(0) ? x : alpha * std::expm1(x);
    if constexpr (K == A::softsign) return x / (Scalar(1) + std::abs(x));
    if constexpr (K == A::softplus)  // log(1 + e^x) without overflow for large x
      return x > Scalar(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
  }

  // d act / dx at x for the kind K, given y = act(x).
  template <Activation K>
  Scalar slope(Scalar x, Scalar y) const {
    using A = Activation;
    if constexpr (K == A::relu) return x > Scalar(0) ? Scalar(1) : Scalar(0);
    if constexpr (K == A::tanh) return Scalar(1) - y * y;
    if constexpr (K == A::sigmoid) return y * (Scalar(1) - y);
    if constexpr (K == A::affine) return alpha;
    if constexpr (K == A::leaky_relu) return x >= Scalar(0) ? Scalar(1) : alpha;
    if constexpr (K == A::thresholded_relu) return x >= alpha ? Scalar(1) : Scalar(0);
    if constexpr (K == A::scaled_tanh) {
      const Scalar t = std::tanh(beta * x);
      return alpha * beta * (Scalar(1) - t * t);
    }
    if constexpr (K == A::hard_sigmoid) {
      const Scalar u = alpha * x + beta;
      return u > Scalar(0) && u < Scalar(1) ? alpha : Scalar(0);
    }
    if constexpr (K == A::elu) return x >= Scalar(0) ? Scalar(1) : alpha * std::exp(x);
    if constexpr (K == A::softsign) {
      const Scalar d = Scalar(1) + std::abs(x);
      return Scalar(1) / (d * d);
    }
    if constexpr (K == A::softplus) return sigmoid(x);
  }
};

// clip(a): a limited to [-bound, bound]; bound 0 means no clip. A NaN passes (std::max(-bound, NaN)
// would give -bound).
template <typename Scalar>
inline Scalar clip_to(Scalar a, Scalar bound) {
  if (!(bound > Scalar(0))) return a;
  return a < -bound ? -bound : a > bound ? bound : a;
}

// d clip(a) / da: zero where the clip holds the value at a bound.
template <typename Scalar>
inline Scalar dclip_at(Scalar a, Scalar bound) {
  return bound > Scalar(0) && (a > bound || a < -bound) ? Scalar(0) : Scalar(1);
}

// The functions of one direction of a variant cell: f (gates), g (cell input / candidate),
// h (LSTM cell output), and the clip of the gate pre-activations.
template <typename Scalar>
struct CellFunctions {
  Act<Scalar> f, g, h;
  Scalar bound = 0;  // 0: no clip

  // config: the network; direction: 0 forward, 1 the reverse half of a bidirectional layer
  CellFunctions(const NetworkConfig& config, index_t direction) {
    if (config.activations.empty()) {  // torch's functions
      f = Act<Scalar>(config.kind == CellKind::rnn_relu ? Activation::relu
                      : config.kind == CellKind::rnn_tanh ? Activation::tanh
                                                          : Activation::sigmoid);
      g = Act<Scalar>(Activation::tanh);
      h = Act<Scalar>(Activation::tanh);
    } else {
      const index_t k = config.activation_count(), base = direction * k;
      f = Act<Scalar>(config.activations[base]);
      if (k > 1) g = Act<Scalar>(config.activations[base + 1]);
      if (k > 2) h = Act<Scalar>(config.activations[base + 2]);
    }
    bound = static_cast<Scalar>(config.clip);
  }
};

// Scalar loops over [j, n), instantiated per kind by with_kind: no switch inside the loop.
template <typename Scalar, typename F>
inline void map_row(const Scalar* x, Scalar* y, index_t j, index_t n, Scalar bound, F act) {
  for (; j < n; ++j) y[j] = act(clip_to(x[j], bound));
}

template <typename Scalar, typename F>
inline void map_gradient_row(const Scalar* u, const Scalar* x, const Scalar* y, Scalar* d, index_t j, index_t n,
                             Scalar bound, F derivative) {
  for (; j < n; ++j) d[j] = u[j] * derivative(clip_to(x[j], bound), y[j]) * dclip_at(x[j], bound);
}

#ifdef GATECELL_X86_AVX2

// Eight-lane float versions (AVX2 + FMA) of all functions but elu and softplus, which stay scalar.
template <Activation K>
constexpr bool has_avx2_row = K != Activation::elu && K != Activation::softplus;

namespace avx2 {

// The broadcast constants of one function and clip.
struct ActConstants {
  V alpha, beta, zero, one, sign, hi, lo;
};

GATECELL_TARGET_AVX2 inline ActConstants constants(const Act<float>& act, float bound) {
  return {set1(act.alpha), set1(act.beta), _mm256_setzero_ps(), set1(1.0f), set1(-0.0f), set1(bound), set1(-bound)};
}

// act(v) for the kind K.
template <Activation K>
GATECELL_TARGET_AVX2 inline V value8(const ActConstants& k, V v) {
  using A = Activation;
  if constexpr (K == A::relu) return _mm256_max_ps(k.zero, v);  // v when NaN (max's second operand)
  if constexpr (K == A::tanh) return tanh8(v);
  if constexpr (K == A::sigmoid) return sigmoid8(v);
  if constexpr (K == A::affine) return _mm256_fmadd_ps(k.alpha, v, k.beta);
  if constexpr (K == A::leaky_relu)
    return _mm256_blendv_ps(_mm256_mul_ps(k.alpha, v), v, _mm256_cmp_ps(v, k.zero, _CMP_GE_OQ));
  if constexpr (K == A::thresholded_relu) return _mm256_and_ps(v, _mm256_cmp_ps(v, k.alpha, _CMP_GE_OQ));
  if constexpr (K == A::scaled_tanh) return _mm256_mul_ps(k.alpha, tanh8(_mm256_mul_ps(k.beta, v)));
  if constexpr (K == A::hard_sigmoid)
    return _mm256_min_ps(k.one, _mm256_max_ps(k.zero, _mm256_fmadd_ps(k.alpha, v, k.beta)));
  if constexpr (K == A::softsign) return _mm256_div_ps(v, _mm256_add_ps(k.one, _mm256_andnot_ps(k.sign, v)));
}

// d act / dv at v for the kind K, given y = act(v).
template <Activation K>
GATECELL_TARGET_AVX2 inline V slope8(const ActConstants& k, V v, V y) {
  using A = Activation;
  if constexpr (K == A::relu) return _mm256_and_ps(k.one, _mm256_cmp_ps(v, k.zero, _CMP_GT_OQ));
  if constexpr (K == A::tanh) return _mm256_sub_ps(k.one, _mm256_mul_ps(y, y));
  if constexpr (K == A::sigmoid) return _mm256_mul_ps(y, _mm256_sub_ps(k.one, y));
  if constexpr (K == A::affine) return k.alpha;
  if constexpr (K == A::leaky_relu) return _mm256_blendv_ps(k.alpha, k.one, _mm256_cmp_ps(v, k.zero, _CMP_GE_OQ));
  if constexpr (K == A::thresholded_relu) return _mm256_and_ps(k.one, _mm256_cmp_ps(v, k.alpha, _CMP_GE_OQ));
  if constexpr (K == A::scaled_tanh) {
    const V t = tanh8(_mm256_mul_ps(k.beta, v));
    return _mm256_mul_ps(_mm256_mul_ps(k.alpha, k.beta), _mm256_sub_ps(k.one, _mm256_mul_ps(t, t)));
  }
  if constexpr (K == A::hard_sigmoid) {
    const V w = _mm256_fmadd_ps(k.alpha, v, k.beta);
    return _mm256_and_ps(k.alpha,
                         _mm256_and_ps(_mm256_cmp_ps(w, k.zero, _CMP_GT_OQ), _mm256_cmp_ps(w, k.one, _CMP_LT_OQ)));
  }
  if constexpr (K == A::softsign) {
    const V s = _mm256_add_ps(k.one, _mm256_andnot_ps(k.sign, v));
    return _mm256_div_ps(k.one, _mm256_mul_ps(s, s));
  }
}

// y = act(clip(x)) for the first floor(n / 8) * 8 elements; returns how many it did.
template <Activation K>
GATECELL_TARGET_AVX2 index_t act_row8(const Act<float>& act, float bound, const float* x, float* y, index_t n) {
  const ActConstants k = constants(act, bound);
  index_t j = 0;
  for (; j + 8 <= n; j += 8) {
    V v = ld(x + j);
    if (bound > 0.0f) v = _mm256_min_ps(k.hi, _mm256_max_ps(k.lo, v));  // v as second operand: a NaN passes
    st(y + j, value8<K>(k, v));
  }
  return j;
}

// d = u * act'(clip(x), y) * dclip(x) for the first floor(n / 8) * 8 elements; returns how many.
template <Activation K>
GATECELL_TARGET_AVX2 index_t act_gradient_row8(const Act<float>& act, float bound, const float* u, const float* x,
                                               const float* y, float* d, index_t n) {
  const ActConstants k = constants(act, bound);
  index_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const V a = ld(x + j);
    V du = _mm256_mul_ps(ld(u + j), slope8<K>(k, bound > 0.0f ? _mm256_min_ps(k.hi, _mm256_max_ps(k.lo, a)) : a,
                                                ld(y + j)));
    // dclip is 0 or 1: a mask instead of a product
    if (bound > 0.0f)
      du = _mm256_andnot_ps(_mm256_or_ps(_mm256_cmp_ps(a, k.hi, _CMP_GT_OQ), _mm256_cmp_ps(a, k.lo, _CMP_LT_OQ)), du);
    st(d + j, du);
  }
  return j;
}

}  // namespace avx2

#endif

// y = act(clip(x)) over n elements (y may alias x); bound 0: no clip.
template <typename Scalar>
inline void act_row(const Act<Scalar>& act, Scalar bound, const Scalar* x, Scalar* y, index_t n) {
  with_kind(act.kind, [&](auto kind) {
    constexpr Activation K = decltype(kind)::value;
    index_t j = 0;
#ifdef GATECELL_X86_AVX2
    if constexpr (std::is_same_v<Scalar, float> && has_avx2_row<K>) {
      if (use_avx2()) j = avx2::act_row8<K>(act, bound, x, y, n);
    }
#endif
    map_row(x, y, j, n, bound, [&act](Scalar v) { return act.template value<K>(v); });
  });
}

// d = u * act'(clip(x), y) * dclip(x) over n elements, y = act(clip(x)); d may alias u.
template <typename Scalar>
inline void act_gradient_row(const Act<Scalar>& act, Scalar bound, const Scalar* u, const Scalar* x, const Scalar* y,
                             Scalar* d, index_t n) {
  with_kind(act.kind, [&](auto kind) {
    constexpr Activation K = decltype(kind)::value;
    index_t j = 0;
#ifdef GATECELL_X86_AVX2
    if constexpr (std::is_same_v<Scalar, float> && has_avx2_row<K>) {
      if (use_avx2()) j = avx2::act_gradient_row8<K>(act, bound, u, x, y, d, n);
    }
#endif
    map_gradient_row(u, x, y, d, j, n, bound, [&act](Scalar v, Scalar w) { return act.template slope<K>(v, w); });
  });
}

}  // namespace gatecell::detail
