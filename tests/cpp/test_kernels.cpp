// SPDX-License-Identifier: MIT
// The sequence kernels (through gatecell::Network) against a naive scalar loop written straight
// from the equations, every cell kind, float and double; Linear likewise; backward by finite
// differences.

#include <doctest/doctest.h>

#include <utility>

#include <gatecell/gatecell.hpp>

#include "helpers.hpp"
#include "naive_cell.hpp"

using gatecell::CellKind;
using gatecell::index_t;
using gatecell_test::max_abs_diff;

namespace {

// One layer, one direction, time-major x [T,N,I] -> y [T,N,P]; everything in double (naive_cell.hpp).
template <typename Scalar>
std::vector<double> naive_forward(const gatecell::NetworkConfig& c, const gatecell::ParameterMap<Scalar>& p,
                                  const std::vector<Scalar>& x, index_t T, index_t N) {
  const index_t I = c.input_size, H = c.hidden_size, P = c.output_size();
  struct View {
    const gatecell::ParameterMap<Scalar>& p;
    const gatecell::NetworkConfig& c;
    double w(const char* name, index_t r, index_t col, index_t cols) const {
      return static_cast<double>(p.at(name).data[r * cols + col]);
    }
    double w_ih(index_t r, index_t k) const { return w("weight_ih_l0", r, k, c.input_size); }
    double w_hh(index_t r, index_t k) const { return w("weight_hh_l0", r, k, c.output_size()); }
    double b_ih(index_t r) const { return c.bias ? static_cast<double>(p.at("bias_ih_l0").data[r]) : 0.0; }
    double b_hh(index_t r) const { return c.bias ? static_cast<double>(p.at("bias_hh_l0").data[r]) : 0.0; }
    double w_hr(index_t q, index_t j) const { return w("weight_hr_l0", q, j, c.hidden_size); }
  };
  const View view{p, c};
  std::vector<double> y(T * N * P);
  for (index_t n = 0; n < N; ++n) {
    std::vector<double> h(P, 0.0), cell(H, 0.0);
    for (index_t t = 0; t < T; ++t) {
      const Scalar* xt = x.data() + (t * N + n) * I;
      gatecell_test::naive_step(c, I, [xt](index_t k) { return static_cast<double>(xt[k]); }, view, h, cell);
      std::copy(h.begin(), h.end(), y.begin() + (t * N + n) * P);
    }
  }
  return y;
}

}  // namespace

// N = 1 runs on the step kernel (8-unit blocks, a GEMM for inputs of 48 and more), N = 3 on
// the batched kernels: widths below, at and across the blocks.
TEST_CASE_TEMPLATE("sequence forward matches a naive loop", Scalar, float, double) {
  for (const auto& [I, H] : std::vector<std::pair<index_t, index_t>>{{3, 5}, {9, 16}, {50, 13}}) {
    for (const auto& c : gatecell_test::config_grid(I, H, false)) {
      for (index_t N : {1, 3}) {
        CAPTURE(I);
        CAPTURE(H);
        CAPTURE(static_cast<int>(c.kind));
        CAPTURE(c.proj_size);
        CAPTURE(c.linear_before_reset);
        CAPTURE(N);
        gatecell::Network<Scalar> net(c, false, 7);
        const index_t T = 6;
        const auto x = gatecell_test::random_vector<Scalar>(T * N * c.input_size, 11);
        const auto out = net.forward(x, T, N);
        const auto ref = naive_forward(c, net.parameters(), x, T, N);
        std::vector<Scalar> ref_s(ref.begin(), ref.end());
        CHECK(max_abs_diff(out.y.data(), ref_s.data(), ref.size()) < 10 * gatecell_test::tolerance<Scalar>());
      }
    }
  }
}

TEST_CASE_TEMPLATE("a batch-1 sequence of length 0 outputs zeros and keeps its initial state", Scalar, float,
                   double) {
  for (const auto& c : gatecell_test::config_grid(4, 9, true)) {
    CAPTURE(static_cast<int>(c.kind));
    gatecell::Network<Scalar> net(c, false, 3);
    const index_t T = 4, P = c.output_size(), L = c.num_layers;
    const auto x = gatecell_test::random_vector<Scalar>(T * c.input_size, 5);
    const auto h0 = gatecell_test::random_vector<Scalar>(L * P, 6);
    const auto c0 = c.has_cell_state() ? gatecell_test::random_vector<Scalar>(L * c.hidden_size, 7)
                                       : std::vector<Scalar>{};
    const auto out = net.forward(x, T, 1, {0}, h0, c0);
    CHECK(out.y == std::vector<Scalar>(T * P, Scalar(0)));
    CHECK(out.h_n == h0);
    CHECK(out.c_n == c0);
  }
}

TEST_CASE_TEMPLATE("Linear matches a naive loop, backward adds gradients", Scalar, float, double) {
  gatecell::Linear<Scalar> lin(4, 3, true, 5);
  lin.train();
  const auto x = gatecell_test::random_vector<Scalar>(2 * 4, 3);
  const auto y = lin.forward(x, 2);
  const auto& w = lin.parameters().at("weight").data;
  const auto& b = lin.parameters().at("bias").data;
  for (index_t r = 0; r < 2; ++r) {
    for (index_t o = 0; o < 3; ++o) {
      double ref = b[o];
      for (index_t k = 0; k < 4; ++k) ref += static_cast<double>(w[o * 4 + k]) * x[r * 4 + k];
      CHECK(std::abs(y[r * 3 + o] - ref) < 10 * gatecell_test::tolerance<Scalar>());
    }
  }
  const std::vector<Scalar> dy(6, Scalar(1));
  const auto dx = lin.backward(dy);
  for (index_t k = 0; k < 4; ++k) CHECK(std::abs(dx[k] - (w[k] + w[4 + k] + w[8 + k])) < 1e-5);
  CHECK(std::abs(lin.grads().at("bias").data[0] - 2) < 1e-6);
  CHECK_THROWS_AS(lin.forward(x, 3), gatecell::ShapeError);
}

TEST_CASE("backward matches finite differences (double, every kind, two layers)") {
  for (auto c : gatecell_test::config_grid(3, 5, false)) {
    c.num_layers = 2;
    CAPTURE(static_cast<int>(c.kind));
    gatecell::Network<double> net(c, false, 3);
    net.train();
    const index_t T = 4, N = 2;
    auto x = gatecell_test::random_vector<double>(T * N * c.input_size, 5);
    const auto probe = gatecell_test::random_vector<double>(T * N * c.output_size(), 6);
    auto loss = [&](const std::vector<double>& xs) {
      gatecell::Network<double> copy = net;
      copy.eval();
      const auto y = copy.forward(xs, T, N).y;
      double s = 0.0;
      for (std::size_t k = 0; k < y.size(); ++k) s += y[k] * probe[k];
      return s;
    };
    net.forward(x, T, N);
    const auto g = net.backward(probe);
    for (std::size_t k = 0; k < x.size(); k += 3) {
      auto xp = x, xm = x;
      xp[k] += 1e-6;
      xm[k] -= 1e-6;
      CHECK(std::abs((loss(xp) - loss(xm)) / 2e-6 - g.dx[k]) < 1e-6);
    }
    const auto& grad_w = net.grads().at("weight_ih_l1").data;
    auto& w = net.parameter("weight_ih_l1").data;
    for (std::size_t k = 0; k < w.size(); k += 5) {
      const double saved = w[k];
      w[k] = saved + 1e-6;
      const double lp = loss(x);
      w[k] = saved - 1e-6;
      const double lm = loss(x);
      w[k] = saved;
      CHECK(std::abs((lp - lm) / 2e-6 - grad_w[k]) < 1e-6);
    }
  }
}

// keep_packed_weights: repeat calls reuse what the first packed and give the same bits as a
// network that packs at every call; writes through parameters() or parameter(), and
// weights_changed() after a write through an old reference, are followed; Model forwards the switch.
TEST_CASE_TEMPLATE("kept packed weights give the same results and follow weight changes", Scalar, float, double) {
  for (const gatecell::NetworkConfig& c : gatecell_test::config_grid(19, 24, true)) {
    for (index_t N : {1, 3, 6}) {
      CAPTURE(static_cast<int>(c.kind));
      CAPTURE(c.num_layers);
      CAPTURE(N);
      const index_t T = 5;
      gatecell::Network<Scalar> kept(c, false, 7), fresh(c, false, 7);
      kept.keep_packed_weights(true);
      CHECK(kept.keeps_packed_weights());
      const auto x = gatecell_test::random_vector<Scalar>(T * N * c.input_size, 3);
      auto same = [&] {
        fresh.parameters() = std::as_const(kept).parameters();
        const auto a = kept.forward(x, T, N), b = fresh.forward(x, T, N);
        return a.y == b.y && a.h_n == b.h_n && a.c_n == b.c_n;
      };
      CHECK(same());
      const std::uint64_t made = kept.packed_weights()->made();
      CHECK(made > 0);
      CHECK(same());
      CHECK(kept.packed_weights()->made() == made);  // nothing packed again

      kept.parameters()["weight_hh_l0"].data[1] += Scalar(0.5);
      CHECK(same());
      kept.parameter("weight_ih_l0").data[2] -= Scalar(0.25);
      CHECK(same());
      gatecell::Tensor<Scalar>& held = kept.parameter("weight_hh_l0");
      CHECK(same());
      held.data[0] = Scalar(2);  // through a reference from before the last call
      kept.weights_changed();
      CHECK(same());
      kept.keep_packed_weights(false);
      CHECK(kept.packed_weights() == nullptr);
      CHECK(same());
    }
  }
}

TEST_CASE("a copy of a network that keeps packed weights keeps its own") {
  gatecell::Network<float> net(gatecell_test::config_grid(33, 40, false)[4], false, 2);  // LSTM
  net.keep_packed_weights(true);
  const auto x = gatecell_test::random_vector<float>(4 * 2 * 33, 5);
  const auto y = net.forward(x, 4, 2).y;
  gatecell::Network<float> copy = net;
  REQUIRE(copy.packed_weights() != nullptr);
  CHECK(copy.packed_weights() != net.packed_weights());
  CHECK(copy.packed_weights()->size() == 0);
  copy.parameters()["weight_ih_l0"].data[0] += 1.0f;
  CHECK(net.forward(x, 4, 2).y == y);
  CHECK(copy.forward(x, 4, 2).y != y);
  gatecell::Model<float> model;
  model.keep_packed_weights(true);  // no children: nothing to do
}
