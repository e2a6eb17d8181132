// SPDX-License-Identifier: MIT
#pragma once
// One time step of one sequence, one element at a time in double, written straight from the
// equations of rnn.cpp, lstm.cpp and gru.cpp: the reference loop of the C++ kernel tests.

#include <cmath>
#include <vector>

#include <gatecell/shapes.hpp>

namespace gatecell_test {

inline double naive_sigmoid(double a) { return 1.0 / (1.0 + std::exp(-a)); }

// Advances h and cell by one step.
// c: the network; x: x(k), the step's input k of in_size; p: the layer's parameters as
// p.w_ih(r, k), p.w_hh(r, k), p.b_ih(r), p.b_hh(r) (0 without bias), p.w_hr(q, j);
// h: in h_prev, out h [P]; cell: in c_prev, out c [H] (LSTM only)
template <typename Input, typename Params>
void naive_step(const gatecell::NetworkConfig& c, gatecell::index_t in_size, Input x, const Params& p,
                std::vector<double>& h, std::vector<double>& cell) {
  using gatecell::CellKind;
  using gatecell::index_t;
  const index_t H = c.hidden_size, P = c.output_size(), G = c.gates() * H;
  std::vector<double> ax(G), ah(G);
  for (index_t r = 0; r < G; ++r) {
    ax[r] = p.b_ih(r);
    for (index_t k = 0; k < in_size; ++k) ax[r] += p.w_ih(r, k) * x(k);
    ah[r] = p.b_hh(r);
    for (index_t k = 0; k < P; ++k) ah[r] += p.w_hh(r, k) * h[k];
  }
  std::vector<double> hn(P);
  if (c.kind == CellKind::rnn_tanh || c.kind == CellKind::rnn_relu) {
    for (index_t j = 0; j < H; ++j) {
      const double a = ax[j] + ah[j];
      hn[j] = c.kind == CellKind::rnn_tanh ? std::tanh(a) : (a > 0 ? a : 0.0);
    }
  } else if (c.kind == CellKind::lstm) {
    std::vector<double> m(H);
    for (index_t j = 0; j < H; ++j) {
      const double i = naive_sigmoid(ax[j] + ah[j]), f = naive_sigmoid(ax[H + j] + ah[H + j]);
      const double g = std::tanh(ax[2 * H + j] + ah[2 * H + j]), o = naive_sigmoid(ax[3 * H + j] + ah[3 * H + j]);
      cell[j] = f * cell[j] + i * g;
      m[j] = o * std::tanh(cell[j]);
    }
    for (index_t q = 0; q < P; ++q) {
      if (c.proj_size == 0) {
        hn[q] = m[q];
        continue;
      }
      hn[q] = 0.0;
      for (index_t j = 0; j < H; ++j) hn[q] += p.w_hr(q, j) * m[j];
    }
  } else {
    std::vector<double> r(H);
    for (index_t j = 0; j < H; ++j) r[j] = naive_sigmoid(ax[j] + ah[j]);
    for (index_t j = 0; j < H; ++j) {
      const double z = naive_sigmoid(ax[H + j] + ah[H + j]);
      double a_n = ax[2 * H + j];
      if (c.linear_before_reset) {
        a_n += r[j] * ah[2 * H + j];
      } else {  // W_hn (r * h) + b_hn
        a_n += p.b_hh(2 * H + j);
        for (index_t k = 0; k < H; ++k) a_n += p.w_hh(2 * H + j, k) * r[k] * h[k];
      }
      hn[j] = (1.0 - z) * std::tanh(a_n) + z * h[j];
    }
  }
  h = hn;
}

}  // namespace gatecell_test
