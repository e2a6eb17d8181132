// SPDX-License-Identifier: MIT
// Stacks directions and layers: bidirectional outputs side by side, inter-layer dropout, BPTT.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

#include "detail/batch_split.hpp"
#include "detail/direction.hpp"
#include "detail/pool.hpp"
#include "detail/step.hpp"
#include "detail/variants.hpp"

namespace gatecell {

namespace {

// a * b for non-negative sizes, or ShapeError when the product leaves the 64-bit range.
index_t checked_product(index_t a, index_t b, const std::string& what) {
  if (a != 0 && b > std::numeric_limits<index_t>::max() / a)
    throw ShapeError(what + " overflows 64-bit indexing (" + std::to_string(a) + " * " + std::to_string(b) + ")");
  return a * b;
}

}  // namespace

void NetworkConfig::validate() const {
  auto fail = [](const std::string& what) { throw ShapeError(what); };
  if (input_size <= 0) fail("input_size must be positive, got " + std::to_string(input_size));
  if (hidden_size <= 0) fail("hidden_size must be positive, got " + std::to_string(hidden_size));
  if (num_layers <= 0) fail("num_layers must be positive, got " + std::to_string(num_layers));
  if (proj_size < 0) fail("proj_size must be >= 0, got " + std::to_string(proj_size));
  if (proj_size > 0 && kind != CellKind::lstm) fail("proj_size is only supported by LSTM");
  if (proj_size >= hidden_size && proj_size > 0)
    fail("proj_size must be smaller than hidden_size (" + std::to_string(hidden_size) + "), got " +
         std::to_string(proj_size));
  if (!(dropout >= 0.0 && dropout <= 1.0)) fail("dropout must be in [0, 1], got " + std::to_string(dropout));
  if (!(clip >= 0.0)) fail("clip must be >= 0 (0 for no clipping), got " + std::to_string(clip));
  if ((input_forget || peepholes) && kind != CellKind::lstm) fail("input_forget and peepholes are LSTM only");
  if (!activations.empty() && static_cast<index_t>(activations.size()) != directions() * activation_count())
    fail("activations: expected " + std::to_string(directions() * activation_count()) + " functions, got " +
         std::to_string(activations.size()));
  if (reverse && bidirectional) fail("reverse applies to unidirectional networks only");
  for (std::size_t k = 0; k < activations.size(); ++k) {
    const ActivationSpec& s = activations[k];
    if (static_cast<int>(s.kind) < 0 || static_cast<int>(s.kind) > static_cast<int>(Activation::softplus))
      fail("activations[" + std::to_string(k) + "]: unknown activation function");
    if (!std::isfinite(s.alpha) || !std::isfinite(s.beta))
      fail("activations[" + std::to_string(k) + "]: alpha and beta must be finite, got " + std::to_string(s.alpha) +
           ", " + std::to_string(s.beta));
  }
  // Every weight matrix's element count must be representable: G*H rows times the widest input.
  const index_t gate_rows = checked_product(gates(), hidden_size, "hidden_size: gates * hidden_size");
  const index_t layer_in = checked_product(directions(), output_size(), "hidden_size: directions * output size");
  checked_product(gate_rows, std::max({input_size, layer_in, output_size()}), "input_size/hidden_size: weight size");
}

namespace {

using detail::DirectionBackward;
using detail::DirectionForward;
using detail::Layout;
using detail::Seq;

template <typename Scalar>
void run_forward(const DirectionForward<Scalar>& a) {
  if (a.config->has_variants()) return detail::variant_direction_forward(a);
  if (detail::step_kernel_applies(a)) return detail::step_direction_forward(a);  // batch-1 inference
  if (const int team = detail::batch_unit_team(a); team > 1) return detail::batch_split_direction_forward(a, team);
  switch (a.config->kind) {
    case CellKind::rnn_tanh:
    case CellKind::rnn_relu: detail::rnn_direction_forward(a); break;
    case CellKind::lstm: detail::lstm_direction_forward(a); break;
    case CellKind::gru: detail::gru_direction_forward(a); break;
  }
}

template <typename Scalar>
void run_backward(const DirectionBackward<Scalar>& a) {
  if (a.config->has_variants()) return detail::variant_direction_backward(a);
  switch (a.config->kind) {
    case CellKind::rnn_tanh:
    case CellKind::rnn_relu: detail::rnn_direction_backward(a); break;
    case CellKind::lstm: detail::lstm_direction_backward(a); break;
    case CellKind::gru: detail::gru_direction_backward(a); break;
  }
}

// Inverted dropout like torch's: keep with probability 1-p, scale kept values by 1/(1-p).
template <typename Scalar>
void make_mask(std::vector<Scalar>& mask, index_t size, double p, std::uint64_t seed) {
  mask.resize(size);
  if (p >= 1.0) {
    std::fill(mask.begin(), mask.end(), Scalar(0));
    return;
  }
  std::mt19937_64 rng(seed);
  const Scalar scale = Scalar(1.0 / (1.0 - p));
  for (auto& v : mask) {
    // 53 random bits to a double in [0, 1): portable, unlike std::uniform_real_distribution.
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    v = u >= p ? scale : Scalar(0);
  }
}

// Runs body(d) for every direction d. The two directions of a bidirectional layer are
// independent, so with two threads they run side by side (their GEMMs then run on one thread
// each, which gives the same results: see detail/gemm.hpp); run_shared never starts more helpers
// than there are directions beyond the first.
template <typename Body>
void for_each_direction(index_t D, const Body& body) {
  detail::run_shared(D, omp_get_max_threads(), [&](index_t d) { body(d); });
}

void check_lengths(const index_t* lengths, const SequenceShape& shape) {
  if (lengths == nullptr) return;
  for (index_t n = 0; n < shape.batch; ++n) {
    if (lengths[n] < 0 || lengths[n] > shape.steps)
      throw ShapeError("lengths[" + std::to_string(n) + "] must be in [0, " + std::to_string(shape.steps) +
                       "], got " + std::to_string(lengths[n]));
  }
}

// The largest sequence buffer (T*N rows of the widest row) must be indexable with 64 bits; a
// wrapped product would size a buffer too small and the kernels would write past it.
void check_buffer_sizes(const NetworkConfig& config, const SequenceShape& shape) {
  const index_t rows = checked_product(shape.steps, shape.batch, "steps * batch");
  const index_t widest = std::max({config.input_size, config.gates() * config.hidden_size,
                                   config.directions() * config.output_size()});
  if (rows != 0 && widest > std::numeric_limits<index_t>::max() / rows)
    throw std::length_error("gatecell: a sequence buffer of " + std::to_string(rows) + " rows of " +
                            std::to_string(widest) + " elements exceeds 64-bit indexing");
}

// Empties every buffer the kernels fill while keeping its memory, so that the next fill of the same
// size maps and faults in no fresh pages; a refilled cache reads exactly like a new one.
template <typename Scalar>
void refill(NetworkCache<Scalar>& cache, const NetworkConfig& config, const SequenceShape& shape,
            const index_t* lengths) {
  const index_t L = config.num_layers, D = config.directions();
  cache.config = config;
  cache.shape = shape;
  cache.lengths.assign(lengths, lengths == nullptr ? lengths : lengths + shape.batch);
  cache.layers.resize(L * D);
  for (LayerCache<Scalar>& layer : cache.layers) {
    // Not gates: GateWindow overwrites every row with x W_ih^T before the steps (no zero fill needed).
    for (std::vector<Scalar>* v : {&layer.h_prev, &layer.c_prev, &layer.c, &layer.m, &layer.hn, &layer.rh,
                                   &layer.pre, &layer.dh_total, &layer.dc_total})
      v->clear();
  }
  cache.inputs.resize(L - 1);
  cache.masks.resize(L - 1);
  for (std::vector<Scalar>& mask : cache.masks) mask.clear();  // refilled only with dropout
  cache.filled = false;
}

}  // namespace

template <typename Scalar>
void network_forward(const NetworkConfig& config, const std::vector<LayerWeights<Scalar>>& weights,
                     const SequenceShape& shape, const Scalar* x, const index_t* lengths,
                     const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                     NetworkCache<Scalar>* cache, std::uint64_t dropout_seed, WeightPacks<Scalar>* packs) {
  config.validate();
  Eigen::setNbThreads(1);  // results must not depend on the thread count (see threads.hpp)
  const index_t L = config.num_layers, D = config.directions();
  const index_t H = config.hidden_size, P = config.output_size(), N = shape.batch;
  if (static_cast<index_t>(weights.size()) != L * D)
    throw ShapeError("weights: expected " + std::to_string(L * D) + " (layer, direction) entries, got " +
                     std::to_string(weights.size()));
  if (config.peepholes)
    for (index_t ld = 0; ld < L * D; ++ld)
      if (weights[ld].w_peep == nullptr) throw ShapeError("weights: peepholes need w_peep for every (layer, direction)");
  if (shape.steps < 0 || shape.batch < 0) throw ShapeError("steps and batch must be >= 0");
  check_buffer_sizes(config, shape);
  check_lengths(lengths, shape);
  const Layout lay{shape.steps, shape.batch, shape.batch_first};
  const index_t width = D * P;  // one layer's output row

  if (cache != nullptr) refill(*cache, config, shape, lengths);
  const bool drop = cache != nullptr && config.dropout > 0.0 && L > 1;

  if (packs != nullptr) packs->store().begin_call();
  std::vector<Scalar> out_buf, in_buf;  // inference: ping-pong between layers
  Seq<const Scalar> input{x, config.input_size, config.input_size};
  for (index_t l = 0; l < L; ++l) {
    const bool last = l == L - 1;
    Scalar* out;
    if (last) {
      out = y;
    } else {
      // Training writes straight into the cache's input buffer of layer l+1 (kept between calls).
      std::vector<Scalar>& next = cache != nullptr ? cache->inputs[l] : out_buf;
      next.assign(lay.rows() * width, Scalar(0));
      out = next.data();
    }
    for_each_direction(D, [&](index_t d) {
      const index_t ld = l * D + d;
      DirectionForward<Scalar> a{&config,
                                 lay,
                                 lengths,
                                 d == 1 || config.reverse,
                                 weights[ld],
                                 input,
                                 Seq<Scalar>{out + d * P, P, width},
                                 h0 != nullptr ? h0 + ld * N * P : nullptr,
                                 c0 != nullptr ? c0 + ld * N * H : nullptr,
                                 h_n + ld * N * P,
                                 c_n != nullptr ? c_n + ld * N * H : nullptr,
                                 cache != nullptr ? &cache->layers[ld] : nullptr,
                                 packs};
      run_forward(a);
    });
    if (last) break;
    if (cache != nullptr) {
      if (drop) {
        make_mask(cache->masks[l], lay.rows() * width, config.dropout,
                  dropout_seed + 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(l + 1));
        for (index_t k = 0; k < lay.rows() * width; ++k) out[k] *= cache->masks[l][k];
      }
      input = Seq<const Scalar>{out, width, width};
    } else {
      in_buf.swap(out_buf);
      input = Seq<const Scalar>{in_buf.data(), width, width};
    }
  }
  if (cache != nullptr) cache->filled = true;
  if (packs != nullptr) packs->store().end_call();
}

template <typename Scalar>
WeightPacks<Scalar>::WeightPacks() : store_(std::make_unique<Store>()) {}
template <typename Scalar>
WeightPacks<Scalar>::~WeightPacks() = default;

template <typename Scalar>
void WeightPacks<Scalar>::clear() {
  std::lock_guard<std::mutex> lock(store_->mutex);
  store_->entries.clear();
}

template <typename Scalar>
std::size_t WeightPacks<Scalar>::size() const {
  std::lock_guard<std::mutex> lock(store_->mutex);
  return store_->entries.size();
}

template <typename Scalar>
std::uint64_t WeightPacks<Scalar>::made() const {
  std::lock_guard<std::mutex> lock(store_->mutex);
  return store_->made;
}

template <typename Scalar>
void network_backward(const std::vector<LayerWeights<Scalar>>& weights,
                      const std::vector<LayerGrads<Scalar>>& grads, const Scalar* x,
                      const NetworkCache<Scalar>& cache, const Scalar* dy, const Scalar* dh_n,
                      const Scalar* dc_n, Scalar* dx, Scalar* dh0, Scalar* dc0) {
  if (!cache.filled) throw ShapeError("backward needs a forward call in training mode first");
  Eigen::setNbThreads(1);
  const NetworkConfig& config = cache.config;
  const index_t L = config.num_layers, D = config.directions();
  const index_t H = config.hidden_size, P = config.output_size(), N = cache.shape.batch;
  if (static_cast<index_t>(weights.size()) != L * D || static_cast<index_t>(grads.size()) != L * D)
    throw ShapeError("weights and grads: expected " + std::to_string(L * D) + " (layer, direction) entries");
  const Layout lay{cache.shape.steps, cache.shape.batch, cache.shape.batch_first};
  const index_t width = D * P;
  const index_t* lengths = cache.lengths.empty() ? nullptr : cache.lengths.data();

  // The cache's work buffers serve one backward at a time.
  const std::lock_guard<std::mutex> turn(cache.turns.mutex);
  // The reverse direction adds its dx into a buffer of its own, so that both directions can run
  // at once; the sum is then taken in the same order at any thread count.
  std::vector<Scalar>& dout_buf = cache.dout_buf;
  std::vector<Scalar>& dx_buf = cache.dx_buf;
  std::vector<Scalar>& dx_reverse = cache.dx_reverse;
  Seq<const Scalar> dout{dy, width, width};
  // The kernels' work buffers (LayerCache::da, ...) move down the layers with the backward pass,
  // so that one set per direction serves every layer: the last call left them in layer 0.
  auto hand_over = [&](index_t from, index_t to) {
    for (index_t d = 0; d < D; ++d) {
      const LayerCache<Scalar>& src = cache.layers[from * D + d];
      const LayerCache<Scalar>& dst = cache.layers[to * D + d];
      src.da.swap(dst.da);
      src.da_h.swap(dst.da_h);
      src.dh_seq.swap(dst.dh_seq);
    }
  };
  hand_over(0, L - 1);
  for (index_t l = L - 1; l >= 0; --l) {
    if (l < L - 1) hand_over(l + 1, l);
    const index_t in = config.layer_input_size(l);
    Scalar* dx_l;
    if (l == 0) {
      dx_l = dx;
    } else {
      dx_buf.resize(lay.rows() * in);
      dx_l = dx_buf.data();
    }
    std::fill(dx_l, dx_l + lay.rows() * in, Scalar(0));
    const Scalar* x_l = l == 0 ? x : cache.inputs[l - 1].data();
    if (D == 2) dx_reverse.assign(lay.rows() * in, Scalar(0));
    for_each_direction(D, [&](index_t d) {
      const index_t ld = l * D + d;
      DirectionBackward<Scalar> a{&config,
                                  lay,
                                  lengths,
                                  d == 1 || config.reverse,
                                  weights[ld],
                                  grads[ld],
                                  Seq<const Scalar>{x_l, in, in},
                                  &cache.layers[ld],
                                  Seq<const Scalar>{dout.data != nullptr ? dout.data + d * P : nullptr, P, width},
                                  dh_n != nullptr ? dh_n + ld * N * P : nullptr,
                                  dc_n != nullptr ? dc_n + ld * N * H : nullptr,
                                  Seq<Scalar>{d == 1 ? dx_reverse.data() : dx_l, in, in},
                                  dh0 + ld * N * P,
                                  dc0 != nullptr ? dc0 + ld * N * H : nullptr};
      if (cache.record_grads) {
        const LayerCache<Scalar>& layer = cache.layers[ld];  // its records are mutable
        layer.dh_total.assign(lay.rows() * P, Scalar(0));
        layer.dc_total.assign(config.has_cell_state() ? lay.rows() * H : 0, Scalar(0));
        a.record_dh = layer.dh_total.data();
        a.record_dc = config.has_cell_state() ? layer.dc_total.data() : nullptr;
      }
      run_backward(a);
    });
    if (D == 2)
      for (index_t k = 0; k < lay.rows() * in; ++k) dx_l[k] += dx_reverse[k];
    if (l > 0) {
      // The gradient reaching layer l-1's output passes back through its dropout mask.
      if (!cache.masks[l - 1].empty()) {
        for (index_t k = 0; k < lay.rows() * in; ++k) dx_buf[k] *= cache.masks[l - 1][k];
      }
      dout_buf.swap(dx_buf);
      dout = Seq<const Scalar>{dout_buf.data(), width, width};
    }
  }
}

template class WeightPacks<float>;
template class WeightPacks<double>;
template void network_forward<float>(const NetworkConfig&, const std::vector<LayerWeights<float>>&,
                                     const SequenceShape&, const float*, const index_t*, const float*,
                                     const float*, float*, float*, float*, NetworkCache<float>*,
                                     std::uint64_t, WeightPacks<float>*);
template void network_forward<double>(const NetworkConfig&, const std::vector<LayerWeights<double>>&,
                                      const SequenceShape&, const double*, const index_t*, const double*,
                                      const double*, double*, double*, double*, NetworkCache<double>*,
                                      std::uint64_t, WeightPacks<double>*);
template void network_backward<float>(const std::vector<LayerWeights<float>>&,
                                      const std::vector<LayerGrads<float>>&, const float*,
                                      const NetworkCache<float>&, const float*, const float*,
                                      const float*, float*, float*, float*);
template void network_backward<double>(const std::vector<LayerWeights<double>>&,
                                       const std::vector<LayerGrads<double>>&, const double*,
                                       const NetworkCache<double>&, const double*, const double*,
                                       const double*, double*, double*, double*);

}  // namespace gatecell
