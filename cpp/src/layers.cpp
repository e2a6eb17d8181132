// SPDX-License-Identifier: MIT
// Network and Linear: weights owned in torch's layout, forward and backward over whole batches.

#include "gatecell/layers.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "detail/sequence.hpp"

namespace gatecell {

namespace {

// uniform(-bound, bound) from 53 random bits: the same numbers on every platform.
template <typename Scalar>
Tensor<Scalar> uniform_tensor(std::vector<index_t> shape, double bound, std::mt19937_64& rng) {
  index_t size = 1;
  for (index_t d : shape) size *= d;
  Tensor<Scalar> t{std::move(shape), std::vector<Scalar>(size)};
  for (auto& v : t.data) {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    v = static_cast<Scalar>((2.0 * u - 1.0) * bound);
  }
  return t;
}

template <typename Scalar>
ParameterMap<Scalar> zeros_like(const ParameterMap<Scalar>& params) {
  ParameterMap<Scalar> out;
  for (const auto& [name, t] : params) out[name] = Tensor<Scalar>{t.shape, std::vector<Scalar>(t.data.size())};
  return out;
}

void check_size(const char* name, std::size_t got, index_t expected) {
  if (static_cast<index_t>(got) != expected)
    throw ShapeError(std::string(name) + ": expected " + std::to_string(expected) + " values, got " +
                     std::to_string(got));
}

template <typename Scalar>
const Scalar* data_or_null(const std::vector<Scalar>& v) {
  return v.empty() ? nullptr : v.data();
}

}  // namespace

template <typename Scalar>
Network<Scalar>::Network(const NetworkConfig& config, bool batch_first, std::uint64_t seed, bool cell_names)
    : config_(config), batch_first_(batch_first), seed_(seed) {
  config_.validate();
  if (cell_names && (config_.num_layers != 1 || config_.bidirectional || config_.proj_size != 0))
    throw ShapeError("cell_names: a cell has one layer, one direction and no projection");
  const index_t G = config_.gates() * config_.hidden_size, P = config_.output_size();
  const double bound = 1.0 / std::sqrt(static_cast<double>(config_.hidden_size));
  std::mt19937_64 rng(seed);
  for (index_t l = 0; l < config_.num_layers; ++l) {
    for (index_t d = 0; d < config_.directions(); ++d) {
      const std::string sfx = cell_names ? "" : "_l" + std::to_string(l) + (d == 1 ? "_reverse" : "");
      std::vector<std::string> names{"weight_ih" + sfx, "weight_hh" + sfx, "", "", "", ""};
      params_[names[0]] = uniform_tensor<Scalar>({G, config_.layer_input_size(l)}, bound, rng);
      params_[names[1]] = uniform_tensor<Scalar>({G, P}, bound, rng);
      if (config_.bias) {
        names[2] = "bias_ih" + sfx;
        names[3] = "bias_hh" + sfx;
        params_[names[2]] = uniform_tensor<Scalar>({G}, bound, rng);
        params_[names[3]] = uniform_tensor<Scalar>({G}, bound, rng);
      }
      if (P != config_.hidden_size) {
        names[4] = "weight_hr" + sfx;
        params_[names[4]] = uniform_tensor<Scalar>({P, config_.hidden_size}, bound, rng);
      }
      if (config_.peepholes) {  // (p_i, p_f, p_o), named like the Python layers' extra parameter
        names[5] = "weight_peep" + sfx;
        params_[names[5]] = uniform_tensor<Scalar>({3 * config_.hidden_size}, bound, rng);
      }
      entries_.push_back(std::move(names));
    }
  }
  grads_ = zeros_like(params_);
}

template <typename Scalar>
Tensor<Scalar>& Network<Scalar>::parameter(const std::string& name) {
  auto it = params_.find(name);
  if (it == params_.end()) throw ShapeError("parameter: no parameter called '" + name + "'");
  weights_changed();
  return it->second;
}

template <typename Scalar>
void Network<Scalar>::zero_grad() {
  for (auto& [name, g] : grads_) std::fill(g.data.begin(), g.data.end(), Scalar(0));
}

template <typename Scalar>
std::vector<LayerWeights<Scalar>> Network<Scalar>::layer_weights() const {
  std::vector<LayerWeights<Scalar>> out;
  auto ptr = [&](const std::string& n) -> const Scalar* { return n.empty() ? nullptr : params_.at(n).data.data(); };
  for (const auto& e : entries_) out.push_back({ptr(e[0]), ptr(e[1]), ptr(e[2]), ptr(e[3]), ptr(e[4]), ptr(e[5])});
  return out;
}

template <typename Scalar>
std::vector<LayerGrads<Scalar>> Network<Scalar>::layer_grads() {
  std::vector<LayerGrads<Scalar>> out;
  auto ptr = [&](const std::string& n) -> Scalar* { return n.empty() ? nullptr : grads_.at(n).data.data(); };
  for (const auto& e : entries_) out.push_back({ptr(e[0]), ptr(e[1]), ptr(e[2]), ptr(e[3]), ptr(e[4]), ptr(e[5])});
  return out;
}

template <typename Scalar>
SequenceOutput<Scalar> Network<Scalar>::forward(const std::vector<Scalar>& x, index_t steps, index_t batch,
                                                const std::vector<index_t>& lengths,
                                                const std::vector<Scalar>& h0, const std::vector<Scalar>& c0) {
  const index_t LD = config_.num_layers * config_.directions();
  const index_t P = config_.output_size(), H = config_.hidden_size;
  if (steps < 0 || batch < 0) throw ShapeError("steps and batch must be >= 0");
  check_size("x", x.size(), steps * batch * config_.input_size);
  if (!lengths.empty()) check_size("lengths", lengths.size(), batch);
  if (!h0.empty()) check_size("h0", h0.size(), LD * batch * P);
  if (!c0.empty()) {
    if (!config_.has_cell_state()) throw ShapeError("c0: only LSTM has a cell state");
    check_size("c0", c0.size(), LD * batch * H);
  }
  SequenceOutput<Scalar> out;
  out.y.resize(steps * batch * config_.directions() * P);
  out.h_n.resize(LD * batch * P);
  if (config_.has_cell_state()) out.c_n.resize(LD * batch * H);
  if (training_) {
    x_saved_ = x;
    ++calls_;
  }
  network_forward<Scalar>(config_, layer_weights(), SequenceShape{steps, batch, batch_first_}, x.data(),
                          data_or_null(lengths), data_or_null(h0), data_or_null(c0), out.y.data(),
                          out.h_n.data(), config_.has_cell_state() ? out.c_n.data() : nullptr,
                          training_ ? &cache_ : nullptr, seed_ + 0x632BE59BD9B4E019ull * calls_, packs_.store.get());
  return out;
}

template <typename Scalar>
void Network<Scalar>::keep_packed_weights(bool keep) {
  if (keep && packs_.store == nullptr) packs_.store = std::make_unique<WeightPacks<Scalar>>();
  if (!keep) packs_.store.reset();
}

template <typename Scalar>
SequenceGradients<Scalar> Network<Scalar>::backward(const std::vector<Scalar>& dy, const std::vector<Scalar>& dh_n,
                                                    const std::vector<Scalar>& dc_n) {
  if (!cache_.filled) throw ShapeError("backward: no forward call in training mode to differentiate");
  const index_t LD = config_.num_layers * config_.directions();
  const index_t P = config_.output_size(), H = config_.hidden_size;
  const index_t T = cache_.shape.steps, N = cache_.shape.batch;
  if (!dy.empty()) check_size("dy", dy.size(), T * N * config_.directions() * P);
  if (!dh_n.empty()) check_size("dh_n", dh_n.size(), LD * N * P);
  if (!dc_n.empty()) {
    if (!config_.has_cell_state()) throw ShapeError("dc_n: only LSTM has a cell state");
    check_size("dc_n", dc_n.size(), LD * N * H);
  }
  SequenceGradients<Scalar> g;
  g.dx.resize(x_saved_.size());
  g.dh0.resize(LD * N * P);
  if (config_.has_cell_state()) g.dc0.resize(LD * N * H);
  network_backward<Scalar>(layer_weights(), layer_grads(), x_saved_.data(), cache_, data_or_null(dy),
                           data_or_null(dh_n), data_or_null(dc_n), g.dx.data(), g.dh0.data(),
                           config_.has_cell_state() ? g.dc0.data() : nullptr);
  return g;
}

template <typename Scalar>
Linear<Scalar>::Linear(index_t in_features, index_t out_features, bool bias, std::uint64_t seed)
    : in_(in_features), out_(out_features), bias_(bias) {
  if (in_ <= 0) throw ShapeError("in_features must be positive, got " + std::to_string(in_));
  if (out_ <= 0) throw ShapeError("out_features must be positive, got " + std::to_string(out_));
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
  params_["weight"] = uniform_tensor<Scalar>({out_, in_}, bound, rng);
  if (bias_) params_["bias"] = uniform_tensor<Scalar>({out_}, bound, rng);
  grads_ = zeros_like(params_);
}

template <typename Scalar>
void Linear<Scalar>::zero_grad() {
  for (auto& [name, g] : grads_) std::fill(g.data.begin(), g.data.end(), Scalar(0));
}

template <typename Scalar>
void Linear<Scalar>::apply(const Scalar* x, index_t rows, Scalar* y) const {
  auto y_map = detail::matrix(y, rows, out_);
  y_map.noalias() = detail::matrix(x, rows, in_) * detail::matrix(params_.at("weight").data.data(), out_, in_).transpose();
  if (bias_) y_map.rowwise() += detail::ConstVectorMap<Scalar>(params_.at("bias").data.data(), out_);
}

template <typename Scalar>
std::vector<Scalar> Linear<Scalar>::forward(const std::vector<Scalar>& x, index_t rows) {
  check_size("x", x.size(), rows * in_);
  std::vector<Scalar> y(rows * out_);
  apply(x.data(), rows, y.data());
  if (training_) {
    x_saved_ = x;
    rows_saved_ = rows;
  }
  return y;
}

template <typename Scalar>
std::vector<Scalar> Linear<Scalar>::backward(const std::vector<Scalar>& dy) {
  if (rows_saved_ < 0)
    throw ShapeError("backward: no forward call in training mode to differentiate");
  check_size("dy", dy.size(), rows_saved_ * out_);
  auto dy_map = detail::matrix(dy.data(), rows_saved_, out_);
  detail::matrix(grads_.at("weight").data.data(), out_, in_).noalias() +=
      dy_map.transpose() * detail::matrix(x_saved_.data(), rows_saved_, in_);
  if (bias_) detail::VectorMap<Scalar>(grads_.at("bias").data.data(), out_).noalias() += dy_map.colwise().sum();
  std::vector<Scalar> dx(rows_saved_ * in_);
  detail::matrix(dx.data(), rows_saved_, in_).noalias() =
      dy_map * detail::matrix(params_.at("weight").data.data(), out_, in_);
  return dx;
}

template class Network<float>;
template class Network<double>;
template class Linear<float>;
template class Linear<double>;

}  // namespace gatecell
