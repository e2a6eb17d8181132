// SPDX-License-Identifier: MIT
// The streaming API against network_forward, state handling, errors, and no heap allocation per step.

#include <doctest/doctest.h>

#include <gatecell/gatecell.hpp>

#include "helpers.hpp"

using gatecell::CellKind;
using gatecell::index_t;

namespace {

template <typename Scalar>
gatecell::Model<Scalar> model_of(const gatecell::Network<Scalar>& net, bool with_head) {
  gatecell::Model<Scalar> model;
  gatecell::ModelChild<Scalar> rnn;
  rnn.name = "rnn";
  rnn.kind = gatecell::ModuleKind::recurrent;
  rnn.network = std::make_unique<gatecell::Network<Scalar>>(net);
  model.children().push_back(std::move(rnn));
  if (with_head) {
    gatecell::ModelChild<Scalar> drop;
    drop.kind = gatecell::ModuleKind::dropout;
    drop.p = 0.3;
    model.children().push_back(std::move(drop));
    gatecell::ModelChild<Scalar> head;
    head.name = "head";
    head.kind = gatecell::ModuleKind::linear;
    head.linear = std::make_unique<gatecell::Linear<Scalar>>(net.config().output_size(), 2, true, 9);
    model.children().push_back(std::move(head));
  }
  return model;
}

}  // namespace

TEST_CASE_TEMPLATE("stream steps reproduce network_forward and its final state", Scalar, float, double) {
  for (const auto& c : gatecell_test::config_grid(4, 6, true)) {
    for (index_t N : {1, 3}) {
      CAPTURE(static_cast<int>(c.kind));
      CAPTURE(c.num_layers);
      CAPTURE(N);
      gatecell::Network<Scalar> net(c, false, 17);
      const index_t T = 5, P = c.output_size();
      const auto x = gatecell_test::random_vector<Scalar>(T * N * c.input_size, 23);
      const auto h0 = gatecell_test::random_vector<Scalar>(c.num_layers * N * P, 29);
      const auto c0 = c.has_cell_state() ? gatecell_test::random_vector<Scalar>(c.num_layers * N * c.hidden_size, 31)
                                         : std::vector<Scalar>{};
      const auto out = net.forward(x, T, N, {}, h0, c0);
      const auto model = model_of(net, false);
      gatecell::Stream<Scalar> s = model.stream(N);
      std::vector<Scalar> state(h0);
      state.insert(state.end(), c0.begin(), c0.end());
      REQUIRE(s.state_size() == static_cast<index_t>(state.size()));
      s.set_state(state.data());
      for (index_t t = 0; t < T; ++t) {
        const Scalar* y = s.step(x.data() + t * N * c.input_size);
        CHECK(gatecell_test::max_abs_diff(y, out.y.data() + t * N * P, N * P) < gatecell_test::tolerance<Scalar>());
      }
      std::vector<Scalar> final_state(s.state_size());
      s.get_state(final_state.data());
      std::vector<Scalar> expected(out.h_n);
      expected.insert(expected.end(), out.c_n.begin(), out.c_n.end());
      CHECK(gatecell_test::max_abs_diff(final_state.data(), expected.data(), expected.size()) <
            gatecell_test::tolerance<Scalar>());
      s.reset();
      s.get_state(final_state.data());
      CHECK(std::all_of(final_state.begin(), final_state.end(), [](Scalar v) { return v == Scalar(0); }));
    }
  }
}

TEST_CASE("stream steps allocate nothing") {
  for (const auto& c : gatecell_test::config_grid(4, 6, true)) {
    for (index_t N : {1, 4}) {
      gatecell::Network<float> net(c, false, 1);
      const auto model = model_of(net, true);
      gatecell::Stream<float> s = model.stream(N);
      const auto x = gatecell_test::random_vector<float>(N * c.input_size, 2);
      std::vector<float> y(N * s.output_size());
      std::vector<float> state(s.state_size());
      s.step(x.data(), y.data());  // warm-up outside the counted region
      const long before = gatecell_test::allocations.load();
      for (int k = 0; k < 50; ++k) {
        s.step(x.data(), y.data());
        s.step(x.data());
        s.get_state(state.data());
        s.set_state(state.data());
      }
      s.reset();
      CHECK(gatecell_test::allocations.load() == before);
    }
  }
}

TEST_CASE("the allocation counter sees allocations") {
  const long before = gatecell_test::allocations.load();
  void* p = ::operator new(64);  // a direct call: unlike a new-expression, never elided
  ::operator delete(p);
  CHECK(gatecell_test::allocations.load() == before + 1);
}

TEST_CASE("stream errors") {
  gatecell::NetworkConfig c;
  c.kind = CellKind::gru;
  c.input_size = 2;
  c.hidden_size = 3;
  c.bidirectional = true;
  const auto model = model_of(gatecell::Network<double>(c), false);
  CHECK_THROWS_WITH_AS(model.stream(1), doctest::Contains("bidirectional"), gatecell::ShapeError);
  c.bidirectional = false;
  const auto ok = model_of(gatecell::Network<double>(c), false);
  CHECK_THROWS_AS(ok.stream(0), gatecell::ShapeError);
}

TEST_CASE("a hand-built model whose widths disagree is refused") {
  gatecell::NetworkConfig c;
  c.kind = CellKind::lstm;
  c.input_size = 2;
  c.hidden_size = 3;
  auto model = model_of(gatecell::Network<float>(c), false);
  gatecell::ModelChild<float> head;
  head.name = "head";
  head.kind = gatecell::ModuleKind::linear;
  head.linear = std::make_unique<gatecell::Linear<float>>(4, 1);
  model.children().push_back(std::move(head));
  CHECK_THROWS_WITH_AS(model.stream(1), doctest::Contains("head"), gatecell::ShapeError);
  CHECK_THROWS_AS(model.forward(std::vector<float>(2 * 2), 2, 1), gatecell::ShapeError);
}
