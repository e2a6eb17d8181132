// SPDX-License-Identifier: MIT
// Builds an LSTM from a config, runs a sequence forward, streams the same steps, and prints the
// largest difference; a bad call must throw gatecell::ShapeError.

#include <gatecell/gatecell.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

int main() {
  gatecell::NetworkConfig config;
  config.kind = gatecell::CellKind::lstm;
  config.input_size = 3;
  config.hidden_size = 8;
  config.num_layers = 2;
  gatecell::Network<double> lstm(config, false, 42);

  const gatecell::index_t T = 6, N = 1;
  std::vector<double> x(T * N * 3);
  for (std::size_t k = 0; k < x.size(); ++k) x[k] = std::sin(0.7 * static_cast<double>(k));
  const auto out = lstm.forward(x, T, N);

  gatecell::Model<double> model;
  gatecell::ModelChild<double> child;
  child.kind = gatecell::ModuleKind::recurrent;
  child.network = std::make_unique<gatecell::Network<double>>(lstm);
  model.children().push_back(std::move(child));
  gatecell::Stream<double> stream = model.stream(1);
  double diff = 0.0;
  std::vector<double> y(8);
  for (gatecell::index_t t = 0; t < T; ++t) {
    stream.step(x.data() + t * 3, y.data());
    for (int j = 0; j < 8; ++j) diff = std::max(diff, std::abs(y[j] - out.y[t * 8 + j]));
  }
  bool threw = false;
  try {
    lstm.forward(x, T + 1, N);
  } catch (const gatecell::ShapeError&) {
    threw = true;
  }
  std::printf("max_diff %.3g threw %d\n", diff, threw ? 1 : 0);
  return diff < 1e-12 && threw ? 0 : 1;
}
