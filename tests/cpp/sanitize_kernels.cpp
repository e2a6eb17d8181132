// SPDX-License-Identifier: MIT
// network_forward / network_backward against a naive scalar loop and float64 finite differences,
// plus the error paths; small enough to run under AddressSanitizer, UBSan and valgrind.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "gatecell/gatecell.hpp"
#include "naive_cell.hpp"

using gatecell::CellKind;
using gatecell::index_t;
using gatecell::LayerGrads;
using gatecell::LayerWeights;
using gatecell::NetworkCache;
using gatecell::NetworkConfig;
using gatecell::SequenceShape;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

// Owned parameters of one (layer, direction) in torch's layout.
struct Params {
  std::vector<double> w_ih, w_hh, b_ih, b_hh, w_hr;
};

struct Net {
  NetworkConfig c;
  std::vector<Params> p;  // [L*D]
};

Net make_net(const NetworkConfig& c, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-0.8, 0.8);
  Net net{c, {}};
  const index_t G = c.gates() * c.hidden_size, P = c.output_size();
  for (index_t ld = 0; ld < c.num_layers * c.directions(); ++ld) {
    const index_t in = c.layer_input_size(ld / c.directions());
    Params p;
    auto fill = [&](std::vector<double>& v, index_t n) {
      v.resize(n);
      for (auto& e : v) e = u(rng);
    };
    fill(p.w_ih, G * in);
    fill(p.w_hh, G * P);
    if (c.bias) {
      fill(p.b_ih, G);
      fill(p.b_hh, G);
    }
    if (c.proj_size > 0) fill(p.w_hr, P * c.hidden_size);
    net.p.push_back(p);
  }
  return net;
}

template <typename V>
auto ptr(V& v) -> decltype(v.data()) {
  return v.empty() ? nullptr : v.data();
}

std::vector<LayerWeights<double>> weights_of(Net& net) {
  std::vector<LayerWeights<double>> w;
  for (auto& p : net.p) w.push_back({ptr(p.w_ih), ptr(p.w_hh), ptr(p.b_ih), ptr(p.b_hh), ptr(p.w_hr)});
  return w;
}

// The layer's parameters as naive_step reads them.
struct ParamsView {
  const Params& p;
  index_t in, P, H;
  double w_ih(index_t r, index_t k) const { return p.w_ih[r * in + k]; }
  double w_hh(index_t r, index_t k) const { return p.w_hh[r * P + k]; }
  double b_ih(index_t r) const { return p.b_ih.empty() ? 0.0 : p.b_ih[r]; }
  double b_hh(index_t r) const { return p.b_hh.empty() ? 0.0 : p.b_hh[r]; }
  double w_hr(index_t q, index_t j) const { return p.w_hr[q * H + j]; }
};

// One direction of one layer, one sequence and step at a time (naive_cell.hpp).
void naive_direction(const NetworkConfig& c, const Params& p, const std::vector<double>& in, index_t in_size,
                     index_t T, index_t N, bool bf, const index_t* lengths, bool reverse, const double* h0,
                     const double* c0, std::vector<double>& out, index_t out_width, index_t col0, double* h_n,
                     double* c_n) {
  const index_t H = c.hidden_size, P = c.output_size();
  const ParamsView view{p, in_size, P, H};
  auto row = [&](index_t t, index_t n) { return bf ? n * T + t : t * N + n; };
  for (index_t n = 0; n < N; ++n) {
    std::vector<double> h(h0 ? h0 + n * P : nullptr, h0 ? h0 + (n + 1) * P : nullptr);
    std::vector<double> cs(c0 ? c0 + n * H : nullptr, c0 ? c0 + (n + 1) * H : nullptr);
    if (h.empty()) h.assign(P, 0.0);
    if (cs.empty()) cs.assign(H, 0.0);
    const index_t len = lengths ? lengths[n] : T;
    for (index_t t = 0; t < T; ++t) for (index_t j = 0; j < P; ++j) out[row(t, n) * out_width + col0 + j] = 0.0;
    for (index_t k = 0; k < len; ++k) {
      const index_t t = reverse ? len - 1 - k : k;
      const double* x = in.data() + row(t, n) * in_size;
      gatecell_test::naive_step(c, in_size, [x](index_t i) { return x[i]; }, view, h, cs);
      for (index_t j = 0; j < P; ++j) out[row(t, n) * out_width + col0 + j] = h[j];
    }
    std::copy(h.begin(), h.end(), h_n + n * P);
    if (c_n) std::copy(cs.begin(), cs.end(), c_n + n * H);
  }
}

// The whole network without dropout: layer by layer, directions side by side.
void naive_network(Net& net, const SequenceShape& s, const std::vector<double>& x, const index_t* lengths,
                   const double* h0, const double* c0, std::vector<double>& y, double* h_n, double* c_n) {
  const NetworkConfig& c = net.c;
  const index_t D = c.directions(), P = c.output_size(), H = c.hidden_size, N = s.batch;
  std::vector<double> in = x;
  for (index_t l = 0; l < c.num_layers; ++l) {
    std::vector<double> out(s.steps * N * D * P);
    for (index_t d = 0; d < D; ++d) {
      const index_t ld = l * D + d;
      naive_direction(c, net.p[ld], in, c.layer_input_size(l), s.steps, N, s.batch_first, lengths, d == 1,
                      h0 ? h0 + ld * N * P : nullptr, c0 ? c0 + ld * N * H : nullptr, out, D * P, d * P,
                      h_n + ld * N * P, c_n ? c_n + ld * N * H : nullptr);
    }
    in.swap(out);
  }
  y = in;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0.0;
  for (std::size_t k = 0; k < a.size(); ++k) m = std::max(m, std::abs(a[k] - b[k]));
  return a.size() == b.size() ? m : std::numeric_limits<double>::infinity();
}

struct Case {
  CellKind kind;
  index_t layers;
  bool bidir, bias, bf, use_lengths, lbr;
  index_t proj;
  double dropout;
};

std::string name_of(const Case& k) {
  const char* kinds[] = {"rnn_tanh", "rnn_relu", "lstm", "gru"};
  return std::string(kinds[static_cast<int>(k.kind)]) + " L" + std::to_string(k.layers) + (k.bidir ? " bidir" : "") +
         (k.bias ? "" : " nobias") + (k.bf ? " batch_first" : "") + (k.use_lengths ? " lengths" : "") +
         (k.lbr ? "" : " original") + (k.proj ? " proj" : "") + (k.dropout > 0 ? " dropout" : "");
}

void run_case(const Case& k, std::mt19937_64& rng) {
  NetworkConfig c;
  c.kind = k.kind;
  c.input_size = 3;
  c.hidden_size = 4;
  c.proj_size = k.proj;
  c.num_layers = k.layers;
  c.bidirectional = k.bidir;
  c.bias = k.bias;
  c.linear_before_reset = k.lbr;
  c.dropout = k.dropout;
  Net net = make_net(c, rng);
  const index_t T = 4, N = 3, D = c.directions(), P = c.output_size(), H = c.hidden_size, L = c.num_layers;
  const SequenceShape s{T, N, k.bf};
  std::normal_distribution<double> nd;
  auto randn = [&](index_t n) {
    std::vector<double> v(n);
    for (auto& e : v) e = nd(rng);
    return v;
  };
  std::vector<double> x = randn(T * N * 3), h0 = randn(L * D * N * P), c0 = randn(L * D * N * H);
  std::vector<index_t> lengths{T, 2, 1};
  const index_t* lens = k.use_lengths ? lengths.data() : nullptr;
  const bool lstm = c.kind == CellKind::lstm;
  const std::string name = name_of(k);
  std::vector<double> y(T * N * D * P), h_n(L * D * N * P), c_n(lstm ? L * D * N * H : 0);
  auto weights = weights_of(net);

  // Forward against the naive loop (inference; dropout is off there).
  gatecell::network_forward<double>(c, weights, s, x.data(), lens, h0.data(), lstm ? c0.data() : nullptr, y.data(),
                                    h_n.data(), lstm ? c_n.data() : nullptr, nullptr, 0);
  std::vector<double> y_ref, h_ref(h_n.size()), c_ref(c_n.size());
  naive_network(net, s, x, lens, h0.data(), lstm ? c0.data() : nullptr, y_ref, h_ref.data(),
                lstm ? c_ref.data() : nullptr);
  check(max_abs_diff(y, y_ref) < 1e-12, name + ": y vs naive loop");
  check(max_abs_diff(h_n, h_ref) < 1e-12, name + ": h_n vs naive loop");
  check(max_abs_diff(c_n, c_ref) < 1e-12, name + ": c_n vs naive loop");

  // Backward against central differences of L = <y, dy> + <h_n, dh_n> + <c_n, dc_n>, in training mode
  // with a fixed dropout seed (the same masks in every call).
  const std::vector<double> dy = randn(y.size()), dh_n = randn(h_n.size()), dc_n = randn(c_n.size());
  const std::uint64_t seed = 1234;
  auto loss = [&]() {
    NetworkCache<double> cache;
    std::vector<double> yy(y.size()), hh(h_n.size()), cc(c_n.size());
    gatecell::network_forward<double>(c, weights_of(net), s, x.data(), lens, h0.data(), lstm ? c0.data() : nullptr,
                                      yy.data(), hh.data(), lstm ? cc.data() : nullptr, &cache, seed);
    double total = 0.0;
    for (std::size_t q = 0; q < yy.size(); ++q) total += yy[q] * dy[q];
    for (std::size_t q = 0; q < hh.size(); ++q) total += hh[q] * dh_n[q];
    for (std::size_t q = 0; q < cc.size(); ++q) total += cc[q] * dc_n[q];
    return total;
  };
  NetworkCache<double> cache;
  gatecell::network_forward<double>(c, weights, s, x.data(), lens, h0.data(), lstm ? c0.data() : nullptr, y.data(),
                                    h_n.data(), lstm ? c_n.data() : nullptr, &cache, seed);
  std::vector<Params> g(net.p.size());
  std::vector<LayerGrads<double>> grads;
  for (std::size_t q = 0; q < net.p.size(); ++q) {
    g[q].w_ih.assign(net.p[q].w_ih.size(), 0.0);
    g[q].w_hh.assign(net.p[q].w_hh.size(), 0.0);
    g[q].b_ih.assign(net.p[q].b_ih.size(), 0.0);
    g[q].b_hh.assign(net.p[q].b_hh.size(), 0.0);
    g[q].w_hr.assign(net.p[q].w_hr.size(), 0.0);
    grads.push_back({ptr(g[q].w_ih), ptr(g[q].w_hh), ptr(g[q].b_ih), ptr(g[q].b_hh), ptr(g[q].w_hr)});
  }
  std::vector<double> dx(x.size()), dh0(h0.size()), dc0(lstm ? c0.size() : 0);
  gatecell::network_backward<double>(weights, grads, x.data(), cache, dy.data(), dh_n.data(),
                                     lstm ? dc_n.data() : nullptr, dx.data(), dh0.data(), lstm ? dc0.data() : nullptr);

  double worst = 0.0;
  auto fd = [&](std::vector<double>& v, const std::vector<double>& analytic) {
    const double eps = 1e-6;
    for (std::size_t q = 0; q < v.size(); ++q) {
      const double old = v[q];
      v[q] = old + eps;
      const double up = loss();
      v[q] = old - eps;
      const double down = loss();
      v[q] = old;
      worst = std::max(worst, std::abs((up - down) / (2 * eps) - analytic[q]));
    }
  };
  fd(x, dx);
  fd(h0, dh0);
  if (lstm) fd(c0, dc0);
  for (std::size_t q = 0; q < net.p.size(); ++q) {
    fd(net.p[q].w_ih, g[q].w_ih);
    fd(net.p[q].w_hh, g[q].w_hh);
    fd(net.p[q].b_ih, g[q].b_ih);
    fd(net.p[q].b_hh, g[q].b_hh);
    fd(net.p[q].w_hr, g[q].w_hr);
  }
  check(worst < 1e-6, name + ": gradients vs finite differences, worst " + std::to_string(worst));
}

// Every error path throws a gatecell exception (or std::length_error for sizes past int64).
void error_paths() {
  NetworkConfig c;
  c.kind = CellKind::lstm;
  c.input_size = 2;
  c.hidden_size = 3;
  auto throws = [](const std::function<void()>& f, const char* what, bool memory = false) {
    try {
      f();
    } catch (const gatecell::ShapeError&) {
      check(!memory, std::string(what) + ": ShapeError where a size error was expected");
      return;
    } catch (const std::length_error&) {
      check(memory, std::string(what) + ": length_error where a ShapeError was expected");
      return;
    }
    check(false, std::string(what) + ": no exception");
  };
  NetworkConfig big = c;
  big.hidden_size = index_t(1) << 62;
  throws([&] { big.validate(); }, "4 * hidden_size past int64");
  big.hidden_size = index_t(1) << 40;
  throws([&] { big.validate(); }, "weight element count past int64");
  NetworkConfig bad = c;
  bad.dropout = std::nan("");
  throws([&] { bad.validate(); }, "dropout NaN");

  std::vector<double> w_ih(12 * 2, 0.1), w_hh(12 * 3, 0.1), x(2 * 2 * 2, 0.0), y(2 * 2 * 3), h(2 * 3), cc(2 * 3);
  std::vector<LayerWeights<double>> w{{w_ih.data(), w_hh.data(), nullptr, nullptr, nullptr}};
  c.bias = false;
  std::vector<index_t> lengths{3, 1};
  throws([&] {
    gatecell::network_forward<double>(c, w, {2, 2, false}, x.data(), lengths.data(), nullptr, nullptr, y.data(),
                                      h.data(), cc.data(), nullptr, 0);
  }, "lengths past T");
  throws([&] {
    gatecell::network_forward<double>(c, {}, {2, 2, false}, x.data(), nullptr, nullptr, nullptr, y.data(), h.data(),
                                      cc.data(), nullptr, 0);
  }, "weights count");
  throws([&] {  // buffers of T*N*G*H elements whose size wraps: refused before anything is read
    const index_t huge = index_t(1) << 31;
    gatecell::network_forward<double>(c, w, {huge, huge, false}, x.data(), nullptr, nullptr, nullptr, y.data(),
                                      h.data(), cc.data(), nullptr, 0);
  }, "T*N*G*H past int64", true);
  NetworkCache<double> empty;
  std::vector<LayerGrads<double>> g(1);
  throws([&] {
    gatecell::network_backward<double>(w, g, x.data(), empty, nullptr, nullptr, nullptr, x.data(), h.data(), cc.data());
  }, "backward without forward");
}

}  // namespace

int main() {
  std::mt19937_64 rng(7);
  const CellKind kinds[] = {CellKind::rnn_tanh, CellKind::rnn_relu, CellKind::lstm, CellKind::gru};
  int cases = 0;
  for (CellKind kind : kinds) {
    for (int variant = 0; variant < 4; ++variant) {
      Case k{kind, variant >= 2 ? 2 : 1, variant % 2 == 1, variant != 2, variant == 3, variant >= 1, true, 0, 0.0};
      run_case(k, rng);
      ++cases;
    }
  }
  run_case({CellKind::lstm, 2, true, true, false, true, true, 2, 0.0}, rng);     // projection
  run_case({CellKind::gru, 2, true, true, true, true, false, 0, 0.0}, rng);      // original GRU
  run_case({CellKind::gru, 1, false, false, false, false, false, 0, 0.0}, rng);
  run_case({CellKind::lstm, 3, true, true, false, true, true, 0, 0.4}, rng);     // dropout between layers
  cases += 4;
  error_paths();
  std::printf("%d kernel cases, %s\n", cases, failures == 0 ? "all passed" : "FAILURES");
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
