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

// The eleven activation functions of the ONNX RNN, LSTM and GRU operators (Operators.md):
// relu max(0,x); tanh; sigmoid; affine a*x+b; leaky_relu x<0 ? a*x : x; thresholded_relu x>a ? x : 0;
// scaled_tanh a*tanh(b*x); hard_sigmoid max(0, min(1, a*x+b)); elu x<0 ? a*(e^x-1) : x;
// softsign x/(1+|x|); softplus log(1+e^x).
enum class Activation {
  relu, tanh, sigmoid, affine, leaky_relu, thresholded_relu, scaled_tanh, hard_sigmoid, elu, softsign,
  softplus
};

// One activation with its parameters (alpha, beta are ignored by the functions that take none).
struct ActivationSpec {
  Activation kind = Activation::tanh;
  double alpha = 0.0;
  double beta = 0.0;
};

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

  // Variants beyond torch.nn (the ONNX operators' attributes); the defaults are torch's cells.
  // activations: empty for the default functions, else activation_count() functions per direction,
  // [directions() * activation_count()], direction-major, the same for every layer:
  // RNN (f) - the cell; GRU (f, g) - gates, candidate; LSTM (f, g, h) - gates, cell input, cell output.
  std::vector<ActivationSpec> activations;
  double clip = 0.0;          // > 0: every gate pre-activation is clipped to [-clip, clip] (ONNX `clip`)
  bool input_forget = false;  // LSTM: coupled gates, f = 1 - i (ONNX `input_forget`)
  bool peepholes = false;     // LSTM: w_peep [3H] = (p_i, p_f, p_o) per layer and direction (ONNX `P`)
  bool reverse = false;       // unidirectional only: the one direction runs backwards in time, each
                              // sequence from its own last valid step (ONNX direction="reverse")

  // Number of gate blocks stacked in W_ih rows: 1 (RNN), 4 (LSTM), 3 (GRU).
  index_t gates() const { return kind == CellKind::lstm ? 4 : kind == CellKind::gru ? 3 : 1; }
  index_t directions() const { return bidirectional ? 2 : 1; }
  // Width of h: proj_size when projecting, hidden_size otherwise.
  index_t output_size() const { return proj_size > 0 ? proj_size : hidden_size; }
  index_t layer_input_size(index_t layer) const {
    return layer == 0 ? input_size : directions() * output_size();
  }
  bool has_cell_state() const { return kind == CellKind::lstm; }
  // Functions per direction in `activations`: 1 (RNN), 2 (GRU), 3 (LSTM).
  index_t activation_count() const { return kind == CellKind::lstm ? 3 : kind == CellKind::gru ? 2 : 1; }
  // True when any variant option is set, i.e. the cells are not torch.nn's.
  bool has_variants() const { return !activations.empty() || clip > 0.0 || input_forget || peepholes; }
  // (reverse is not a cell variant: the cells are torch's, only the time order differs)

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
// b_ih and b_hh [G*H] (null when bias=false), w_hr [P, H] (null unless proj_size > 0),
// w_peep [3H] = (p_i, p_f, p_o) (null unless peepholes).
template <typename Scalar>
struct LayerWeights {
  const Scalar* w_ih = nullptr;
  const Scalar* w_hh = nullptr;
  const Scalar* b_ih = nullptr;
  const Scalar* b_hh = nullptr;
  const Scalar* w_hr = nullptr;
  const Scalar* w_peep = nullptr;
};

// Gradient buffers with the shapes of LayerWeights; kernels add (+=) into them.
template <typename Scalar>
struct LayerGrads {
  Scalar* w_ih = nullptr;
  Scalar* w_hh = nullptr;
  Scalar* b_ih = nullptr;
  Scalar* b_hh = nullptr;
  Scalar* w_hr = nullptr;
  Scalar* w_peep = nullptr;
};

}  // namespace gatecell
