// SPDX-License-Identifier: MIT
#pragma once
// Scalar activations; their derivatives are taken from outputs in the kernels.

#include <cmath>

namespace gatecell::detail {

// exp of a non-positive number only, so no overflow for large |x|.
template <typename Scalar>
inline Scalar sigmoid(Scalar x) {
  if (x >= Scalar(0)) return Scalar(1) / (Scalar(1) + std::exp(-x));
  const Scalar e = std::exp(x);
  return e / (Scalar(1) + e);
}

// A NaN passes through (as in torch and NumPy's maximum) instead of becoming a silent 0.
template <typename Scalar>
inline Scalar relu(Scalar x) {
  return x < Scalar(0) ? Scalar(0) : x;
}

}  // namespace gatecell::detail
