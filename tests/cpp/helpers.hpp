// SPDX-License-Identifier: MIT
#pragma once
// Shared by the C++ tests: random data, the allocation counter, a comparison.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <vector>

#include <gatecell/shapes.hpp>

namespace gatecell_test {

// Every cell kind in two variants: with bias (GRU linear-before-reset), and without bias or with
// the original GRU form / an LSTM projection of width 2; `stacked` makes the second variant two layers.
inline std::vector<gatecell::NetworkConfig> config_grid(gatecell::index_t input, gatecell::index_t hidden,
                                                        bool stacked) {
  std::vector<gatecell::NetworkConfig> out;
  for (auto kind : {gatecell::CellKind::rnn_tanh, gatecell::CellKind::rnn_relu, gatecell::CellKind::lstm,
                    gatecell::CellKind::gru}) {
    for (int variant = 0; variant < 2; ++variant) {
      gatecell::NetworkConfig c;
      c.kind = kind;
      c.input_size = input;
      c.hidden_size = hidden;
      c.num_layers = stacked ? 1 + variant : 1;
      c.bias = variant == 0 || kind != gatecell::CellKind::gru;
      c.proj_size = kind == gatecell::CellKind::lstm && variant == 1 ? 2 : 0;
      c.linear_before_reset = variant == 0;
      out.push_back(c);
    }
  }
  return out;
}

extern std::atomic<long> allocations;  // global operator new calls so far

template <typename Scalar>
std::vector<Scalar> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<Scalar> v(n);
  for (auto& x : v) x = static_cast<Scalar>(u(rng));
  return v;
}

template <typename Scalar>
double max_abs_diff(const Scalar* a, const Scalar* b, std::size_t n) {
  double d = 0.0;
  for (std::size_t k = 0; k < n; ++k) d = std::max(d, std::abs(static_cast<double>(a[k]) - static_cast<double>(b[k])));
  return d;
}

template <typename Scalar>
constexpr double tolerance() {
  return sizeof(Scalar) == 4 ? 2e-5 : 1e-12;
}

}  // namespace gatecell_test
