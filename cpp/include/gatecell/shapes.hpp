// SPDX-License-Identifier: MIT
#pragma once
// Configuration, shapes and weight pointers shared by every recurrent kernel.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace gatecell {

using index_t = std::int64_t;  // all index arithmetic is 64-bit: T*N*G*H overflows int

// A wrong shape, size or value: surfaces in Python as ValueError.
class ShapeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A wrong element type or memory layout: surfaces in Python as TypeError.
class TypeError_ : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class CellKind { rnn_tanh, rnn_relu, lstm, gru };

// What a multi-layer recurrent network is; mirrors the torch.nn constructor arguments.
struct NetworkConfig {
  CellKind kind = CellKind::lstm;
  index_t input_size = 0;
  index_t hidden_size = 0;
  index_t proj_size = 0;          // LSTM only: h_t = W_hr (o * tanh(c_t)) when > 0
  index_t num_layers = 1;
  bool bidirectional = false;
  bool bias = true;
  bool linear_before_reset = true;  // GRU only: true = PyTorch/cuDNN form, false = Cho et al. 2014
  double dropout = 0.0;             // between layers, training mode only

  // Number of gate blocks stacked in W_ih rows: 1 (RNN), 4 (LSTM), 3 (GRU).
  index_t gates() const { return kind == CellKind::lstm ? 4 : kind == CellKind::gru ? 3 : 1; }
  index_t directions() const { return bidirectional ? 2 : 1; }
  // Width of h: proj_size when projecting, hidden_size otherwise.
  index_t output_size() const { return proj_size > 0 ? proj_size : hidden_size; }
  index_t layer_input_size(index_t layer) const {
    return layer == 0 ? input_size : directions() * output_size();
  }
  bool has_cell_state() const { return kind == CellKind::lstm; }

  // Throws ShapeError naming the first inconsistent field.
  void validate() const;
};

// Layout of a sequence tensor: [steps, batch, features] or, batch_first, [batch, steps, features].
struct SequenceShape {
  index_t steps = 0;
  index_t batch = 0;
  bool batch_first = false;
};

// One direction of one layer, in torch's layout: w_ih [G*H, in], w_hh [G*H, Hout],
// b_ih and b_hh [G*H] (null when bias=false), w_hr [P, H] (null unless proj_size > 0).
template <typename Scalar>
struct LayerWeights {
  const Scalar* w_ih = nullptr;
  const Scalar* w_hh = nullptr;
  const Scalar* b_ih = nullptr;
  const Scalar* b_hh = nullptr;
  const Scalar* w_hr = nullptr;
};

// Gradient buffers with the shapes of LayerWeights; kernels add (+=) into them.
template <typename Scalar>
struct LayerGrads {
  Scalar* w_ih = nullptr;
  Scalar* w_hh = nullptr;
  Scalar* b_ih = nullptr;
  Scalar* b_hh = nullptr;
  Scalar* w_hr = nullptr;
};

}  // namespace gatecell
