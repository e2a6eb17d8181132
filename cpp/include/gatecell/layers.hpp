// SPDX-License-Identifier: MIT
#pragma once
// Layers that own their weights, like the Python ones: a stacked recurrent Network and Linear.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gatecell/network.hpp"

namespace gatecell {

// A dense row-major array: a parameter, a gradient or a checkpoint tensor.
template <typename Scalar>
struct Tensor {
  std::vector<index_t> shape;
  std::vector<Scalar> data;

  index_t size() const { return static_cast<index_t>(data.size()); }
};

// Parameters or gradients keyed exactly like a torch.nn state dict ("weight_ih_l0", "bias").
template <typename Scalar>
using ParameterMap = std::map<std::string, Tensor<Scalar>>;

// What a forward pass over sequences returns: y [T,N,D*Hout] (or [N,T,D*Hout] batch-first),
// h_n [L*D,N,Hout] and, for LSTM, c_n [L*D,N,H].
template <typename Scalar>
struct SequenceOutput {
  std::vector<Scalar> y, h_n, c_n;
};

// Gradients with respect to the inputs of a forward pass: dx (shape of x), dh0, dc0 (LSTM).
template <typename Scalar>
struct SequenceGradients {
  std::vector<Scalar> dx, dh0, dc0;
};

// A multi-layer, optionally bidirectional RNN/LSTM/GRU owning its weights in torch's layout.
template <typename Scalar>
class Network {
 public:
  // Builds a network with torch's default initialisation, uniform(-1/sqrt(H), 1/sqrt(H)).
  //   config: kind, sizes, layers, directions, bias, projection, GRU form, dropout, variants, reverse
  //   batch_first: sequences are [N,T,C] instead of [T,N,C]
  //   seed: seeds the initial weights and the dropout masks
  //   cell_names: name parameters like torch's cells ("weight_ih") instead of "weight_ih_l0"
  explicit Network(const NetworkConfig& config, bool batch_first = false, std::uint64_t seed = 0,
                   bool cell_names = false);

  const NetworkConfig& config() const { return config_; }
  bool batch_first() const { return batch_first_; }
  // Live parameters and gradients (same keys and shapes); update them in place. The non-const
  // accessors drop the weights kept packed (keep_packed_weights).
  ParameterMap<Scalar>& parameters() {
    weights_changed();
    return params_;
  }
  const ParameterMap<Scalar>& parameters() const { return params_; }
  ParameterMap<Scalar>& grads() { return grads_; }
  // The parameter called `name`; throws ShapeError for an unknown name.
  Tensor<Scalar>& parameter(const std::string& name);

  // Keeps the weights packed for the kernels from one forward call to the next (off at first),
  // instead of packing them at every call: a quarter of a short call's time for H = 512, more for
  // a single step. While on, forward assumes that the parameters have not changed since the call
  // before. parameters() and parameter() (non-const) drop what is kept, which covers a change made
  // through the reference they return before the next call; after writing through a reference
  // kept from earlier, call weights_changed().
  void keep_packed_weights(bool keep);
  bool keeps_packed_weights() const { return packs_.store != nullptr; }
  // Drops the weights kept packed (if any): the next forward packs them again.
  void weights_changed() {
    if (packs_.store != nullptr) packs_.store->clear();
  }
  // The weights kept packed, or null when keep_packed_weights is off (tests count what it made).
  const WeightPacks<Scalar>* packed_weights() const { return packs_.store.get(); }
  // Training mode keeps what backward needs and applies dropout; eval mode saves nothing.
  void train(bool mode = true) { training_ = mode; }
  void eval() { train(false); }
  bool training() const { return training_; }
  void zero_grad();

  // Runs forward over a batch of sequences.
  //   x: [T,N,I] (or [N,T,I] batch-first); steps T, batch N
  //   lengths: [N] valid steps per sequence, or empty for all T
  //   h0, c0: initial states [L*D,N,Hout], [L*D,N,H] (LSTM), or empty for zeros
  SequenceOutput<Scalar> forward(const std::vector<Scalar>& x, index_t steps, index_t batch,
                                 const std::vector<index_t>& lengths = {}, const std::vector<Scalar>& h0 = {},
                                 const std::vector<Scalar>& c0 = {});

  // Backpropagation through time for the latest training-mode forward; adds into grads().
  //   dy: gradient of y (its shape) or empty for zero; dh_n, dc_n: of the final states, or empty
  SequenceGradients<Scalar> backward(const std::vector<Scalar>& dy, const std::vector<Scalar>& dh_n = {},
                                     const std::vector<Scalar>& dc_n = {});

  // Pointers into parameters() / grads() per (layer, direction), as network_forward takes them.
  std::vector<LayerWeights<Scalar>> layer_weights() const;
  std::vector<LayerGrads<Scalar>> layer_grads();

 private:
  NetworkConfig config_;
  bool batch_first_;
  bool training_ = false;
  std::uint64_t seed_;
  std::uint64_t calls_ = 0;
  ParameterMap<Scalar> params_, grads_;
  std::vector<std::vector<std::string>> entries_;  // [L*D] names of w_ih, w_hh, b_ih, b_hh, w_hr, w_peep ("" if absent)
  NetworkCache<Scalar> cache_;
  std::vector<Scalar> x_saved_;
  // Null unless keep_packed_weights(true); a copy keeps its own (empty at first) if the original does.
  struct KeptPacks {
    std::unique_ptr<WeightPacks<Scalar>> store;
    KeptPacks() = default;
    KeptPacks(const KeptPacks& o) : store(o.store != nullptr ? std::make_unique<WeightPacks<Scalar>>() : nullptr) {}
    KeptPacks& operator=(const KeptPacks& o) {
      store = o.store != nullptr ? std::make_unique<WeightPacks<Scalar>>() : nullptr;
      return *this;
    }
    KeptPacks(KeptPacks&&) noexcept = default;
    KeptPacks& operator=(KeptPacks&&) noexcept = default;
  } packs_;
};

// y = x W^T + b on the last axis, like torch.nn.Linear (weight [out, in], bias [out]).
template <typename Scalar>
class Linear {
 public:
  // in_features, out_features: sizes; bias: with a bias; seed: initial weights, uniform(+-1/sqrt(in))
  Linear(index_t in_features, index_t out_features, bool bias = true, std::uint64_t seed = 0);

  index_t in_features() const { return in_; }
  index_t out_features() const { return out_; }
  bool has_bias() const { return bias_; }
  ParameterMap<Scalar>& parameters() { return params_; }
  const ParameterMap<Scalar>& parameters() const { return params_; }
  ParameterMap<Scalar>& grads() { return grads_; }
  void train(bool mode = true) { training_ = mode; }
  void eval() { train(false); }
  void zero_grad();

  // x: [rows, in] -> y [rows, out]; training mode keeps x for backward.
  std::vector<Scalar> forward(const std::vector<Scalar>& x, index_t rows);
  // The same without saving anything. x: [rows, in]; y: out [rows, out] (must not alias x).
  void apply(const Scalar* x, index_t rows, Scalar* y) const;
  // dy: [rows, out] gradient of the latest training-mode forward -> dx [rows, in]; adds into grads().
  std::vector<Scalar> backward(const std::vector<Scalar>& dy);

 private:
  index_t in_, out_;
  bool bias_;
  bool training_ = false;
  ParameterMap<Scalar> params_, grads_;
  std::vector<Scalar> x_saved_;
  index_t rows_saved_ = -1;  // -1: no training-mode forward yet
};

}  // namespace gatecell
