// SPDX-License-Identifier: MIT
#pragma once
// Multi-layer, optionally bidirectional RNN/LSTM/GRU over whole sequences: forward and BPTT.

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "gatecell/shapes.hpp"

namespace gatecell {

// Activations one direction of one layer saved in training mode; rows follow the sequence
// layout of the input (time-major or batch-first), one row per (t, n).
template <typename Scalar>
struct LayerCache {
  std::vector<Scalar> gates;   // [rows, G*H] activated gates: RNN h; LSTM i f g o; GRU r z n
  std::vector<Scalar> h_prev;  // [rows, Hout] state entering each step
  std::vector<Scalar> c_prev;  // [rows, H] LSTM cell state entering each step
  std::vector<Scalar> c;       // [rows, H] LSTM cell state leaving each step
  std::vector<Scalar> m;       // [rows, H] LSTM o*tanh(c) before the projection (proj_size > 0)
  std::vector<Scalar> hn;      // [rows, H] GRU, linear-before-reset: W_hn h_prev + b_hn
  std::vector<Scalar> rh;      // [rows, H] GRU, original form: r * h_prev
  std::vector<Scalar> pre;     // [rows, G*H] cell variants only: gate pre-activations before clip and
                               // activation (LSTM peephole terms included; GRU n: x_n + r*hn or + rh W_hn^T)
  // Introspection, filled by network_backward when NetworkCache::record_grads is set (zero where a
  // step is past its sequence's end); mutable because backward reads the cache as const.
  mutable std::vector<Scalar> dh_total;  // [rows, Hout] dL/dh_t, this step's output gradient included
  mutable std::vector<Scalar> dc_total;  // [rows, H] LSTM dL/dc_t
  // Backward's work buffers, kept between calls so that a steady training loop maps no fresh pages
  // (each is tens of MiB for a large layer, above malloc's mmap threshold); mutable like the records.
  mutable std::vector<Scalar> da;      // [rows, G*H] dL/da, the gate pre-activations' gradient
  mutable std::vector<Scalar> da_h;    // [rows, G*H] GRU, linear before reset: the recurrent side's dL/da
  mutable std::vector<Scalar> dh_seq;  // [rows, Hout] LSTM with a projection: dL/dh per step
};

// A mutex that copies as a new one: backward calls on one cache take turns over its work buffers,
// and a copied cache has turns of its own.
struct TurnLock {
  std::mutex mutex;
  TurnLock() = default;
  TurnLock(const TurnLock&) {}
  TurnLock& operator=(const TurnLock&) { return *this; }
};

// Everything network_backward needs from the forward call that filled it. A cache may be passed to
// network_forward again: its buffers are then refilled (grown only when they must), never shared
// between two forward calls, so a cache must not be refilled while a backward still reads it.
template <typename Scalar>
struct NetworkCache {
  NetworkConfig config;
  SequenceShape shape;
  std::vector<index_t> lengths;               // empty: every sequence has all steps
  std::vector<LayerCache<Scalar>> layers;     // index layer * directions + direction
  std::vector<std::vector<Scalar>> inputs;    // [L-1] inputs of layers 1.., after dropout
  std::vector<std::vector<Scalar>> masks;     // [L-1] dropout masks (0 or 1/(1-p)); empty if none
  bool filled = false;
  bool record_grads = false;  // network_backward also stores per-step dL/dh_t, dL/dc_t in the layers
  // network_backward's work buffers between layers (see LayerCache::da), and its turns over them.
  mutable std::vector<Scalar> dout_buf, dx_buf, dx_reverse;
  mutable TurnLock turns;
};

// Weights packed by network_forward (for its GEMMs and step kernels) and kept for its next calls,
// instead of packing them anew at every call. Entries are keyed by the weight arrays' addresses and
// shapes, so a call with other arrays packs its own; an entry the last call did not use is dropped.
// The owner promises what the keys cannot see: the arrays' contents have not changed since the call
// that packed them (clear() otherwise). Concurrent calls may share one: an entry is never changed
// once made, and a call keeps the entries it took until it ends.
template <typename Scalar>
class WeightPacks {
 public:
  WeightPacks();
  ~WeightPacks();
  WeightPacks(const WeightPacks&) = delete;
  WeightPacks& operator=(const WeightPacks&) = delete;
  void clear();
  std::size_t size() const;    // packed weights held
  std::uint64_t made() const;  // weights packed since construction (tests: a kept entry is not repacked)

  struct Store;  // the entries (cpp/src/detail/weight_packs.hpp)
  Store& store() { return *store_; }

 private:
  std::unique_ptr<Store> store_;
};

// Runs the network over a batch of sequences.
//   config:  the network; weights: [L*D] per (layer, direction), index layer*D + direction
//   shape:   steps T, batch N, layout of x and y
//   x:       [T,N,I] or [N,T,I] (batch_first)
//   lengths: [N] valid steps per sequence, each in [0, T], or null for all T
//   h0, c0:  [L*D, N, Hout], [L*D, N, H] initial states, or null for zeros (c0: LSTM only)
//   y:       out [T,N,D*Hout] or [N,T,D*Hout]; zero past each sequence's length
//   h_n, c_n: out final states, shapes of h0 and c0 (c_n: LSTM only, may be null otherwise)
//   cache:   null for inference (nothing saved), else filled for network_backward (in/out: a cache
//            from an earlier call is refilled in place; record_grads is kept, older records dropped)
//   dropout_seed: seeds the inter-layer dropout masks (training only)
//   packs:   packed weights kept from earlier calls and for later ones (see WeightPacks), or null
//            to pack them for this call only
template <typename Scalar>
void network_forward(const NetworkConfig& config, const std::vector<LayerWeights<Scalar>>& weights,
                     const SequenceShape& shape, const Scalar* x, const index_t* lengths,
                     const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                     NetworkCache<Scalar>* cache, std::uint64_t dropout_seed, WeightPacks<Scalar>* packs = nullptr);

// Backpropagation through time for the forward call that filled `cache`.
//   weights, x: exactly those given to network_forward
//   grads:   [L*D] gradient buffers; parameter gradients are added (+=)
//   dy:      [T,N,D*Hout] (layout of x) gradient of y, or null for zero
//   dh_n, dc_n: gradients of the final states, or null for zero
//   dx:      out, shape of x (overwritten); dh0, dc0: out, shapes of h0, c0 (overwritten)
template <typename Scalar>
void network_backward(const std::vector<LayerWeights<Scalar>>& weights,
                      const std::vector<LayerGrads<Scalar>>& grads, const Scalar* x,
                      const NetworkCache<Scalar>& cache, const Scalar* dy, const Scalar* dh_n,
                      const Scalar* dc_n, Scalar* dx, Scalar* dh0, Scalar* dc0);

}  // namespace gatecell
