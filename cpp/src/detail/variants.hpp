// SPDX-License-Identifier: MIT
#pragma once
// The cell variants (ONNX activations, clip, input_forget, peepholes) over one direction of one
// layer: the network runs these instead of the torch-form kernels when config.has_variants().

#include "detail/direction.hpp"

namespace gatecell::detail {

// Forward over one direction, any cell kind with its variants (variants.cpp).
template <typename Scalar> void variant_direction_forward(const DirectionForward<Scalar>& a);
// Backpropagation through time for the forward call that filled a.cache.
template <typename Scalar> void variant_direction_backward(const DirectionBackward<Scalar>& a);

}  // namespace gatecell::detail
