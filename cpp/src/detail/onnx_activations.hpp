// SPDX-License-Identifier: MIT
#pragma once
// The eleven ONNX activation functions with their derivatives, and the gate clip, for the cell
// variants (variants.cpp). Derivatives take the pre-activation x and the value y = act(x),
// because several functions (relu, hard_sigmoid, elu, ...) cannot be differentiated from y alone.

#include <algorithm>
#include <cmath>

#include "detail/activations.hpp"
#include "gatecell/network.hpp"

namespace gatecell::detail {

// One activation function with its parameters, in the kernel's precision.
template <typename Scalar>
struct Act {
  Activation kind = Activation::tanh;
  Scalar alpha = 0, beta = 0;

  Act() = default;
  explicit Act(const ActivationSpec& s)
      : kind(s.kind), alpha(static_cast<Scalar>(s.alpha)), beta(static_cast<Scalar>(s.beta)) {}
  explicit Act(Activation k) : kind(k) {}

  // y = act(x), as Operators.md defines it.
  Scalar operator()(Scalar x) const {
    switch (kind) {
      case Activation::relu: return relu(x);
      case Activation::tanh: return std::tanh(x);
      case Activation::sigmoid: return sigmoid(x);
      case Activation::affine: return alpha * x + beta;
      case Activation::leaky_relu: return x >= Scalar(0) ? x : alpha * x;
      case Activation::thresholded_relu: return x >= alpha ? x : Scalar(0);
      case Activation::scaled_tanh: return alpha * std::tanh(beta * x);
      case Activation::hard_sigmoid: return std::min(Scalar(1), std::max(Scalar(0), alpha * x + beta));
      case Activation::elu: return x >= Scalar(0) ? x : alpha * std::expm1(x);
      case Activation::softsign: return x / (Scalar(1) + std::abs(x));
      case Activation::softplus:  // log(1 + e^x) without overflow for large x
        return x > Scalar(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
    }
    return x;
  }

  // d act / dx at x, given y = act(x).
  Scalar derivative(Scalar x, Scalar y) const {
    switch (kind) {
      case Activation::relu: return x > Scalar(0) ? Scalar(1) : Scalar(0);
      case Activation::tanh: return Scalar(1) - y * y;
      case Activation::sigmoid: return y * (Scalar(1) - y);
      case Activation::affine: return alpha;
      case Activation::leaky_relu: return x >= Scalar(0) ? Scalar(1) : alpha;
      case Activation::thresholded_relu: return x >= alpha ? Scalar(1) : Scalar(0);
      case Activation::scaled_tanh: {
        const Scalar t = std::tanh(beta * x);
        return alpha * beta * (Scalar(1) - t * t);
      }
      case Activation::hard_sigmoid: {
        const Scalar u = alpha * x + beta;
        return u > Scalar(0) && u < Scalar(1) ? alpha : Scalar(0);
      }
      case Activation::elu: return x >= Scalar(0) ? Scalar(1) : alpha * std::exp(x);
      case Activation::softsign: {
        const Scalar d = Scalar(1) + std::abs(x);
        return Scalar(1) / (d * d);
      }
      case Activation::softplus: return sigmoid(x);
    }
    return Scalar(1);
  }
};

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

  // A gate pre-activation as its function sees it: clipped to [-clip, clip] when clipping.
  Scalar clip(Scalar a) const { return bound > Scalar(0) ? std::min(bound, std::max(-bound, a)) : a; }
  // d clip(a) / da: zero where the clip holds the value at a bound.
  Scalar dclip(Scalar a) const { return bound > Scalar(0) && (a > bound || a < -bound) ? Scalar(0) : Scalar(1); }
};

}  // namespace gatecell::detail
