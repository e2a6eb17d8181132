// SPDX-License-Identifier: MIT
#pragma once
// Streaming inference: one time step at a time through every layer of a model, keeping the state.

#include <cstdint>
#include <vector>

#include "gatecell/aligned.hpp"
#include "gatecell/model.hpp"

namespace gatecell {

// Runs a unidirectional model one step at a time for a fixed batch. Every buffer is allocated
// by the constructor, so step() never touches the heap. The constructor copies the weights
// (packed for fast matrix-vector products): later changes to the model do not reach the
// stream, and the stream does not need the model afterwards.
//
// State layout (get_state / set_state): for each recurrent child in order, h [L,N,Hout], then,
// for LSTM, c [L,N,H] — torch's h_n and c_n shapes, concatenated.
template <typename Scalar>
class Stream {
 public:
  // model: a model without bidirectional layers (throws ShapeError otherwise); batch: N >= 1
  Stream(const Model<Scalar>& model, index_t batch);

  index_t batch() const { return batch_; }
  index_t input_size() const { return input_size_; }
  index_t output_size() const { return output_size_; }
  index_t state_size() const { return static_cast<index_t>(state_.size()); }

  // Feeds one time step. x: [N, I]; y: out [N, O] (may not alias x). No heap allocation.
  void step(const Scalar* x, Scalar* y);
  // The same, returning a pointer to the stream's own [N, O] output (valid until the next step).
  const Scalar* step(const Scalar* x);

  // Zeroes every state (as at the start of a sequence).
  void reset();
  // state: out [state_size()] copy of the state, layout above.
  void get_state(Scalar* state) const;
  // state: [state_size()] new state, layout above.
  void set_state(const Scalar* state);
  const std::vector<Scalar>& state() const { return state_; }

 private:
  struct Layer {
    CellKind kind;
    bool linear_before_reset;
    index_t in, H, P;     // input width, hidden size, output width (P = H without projection)
    index_t cell;         // offset into packed_ of the step kernel's weights
    index_t h_offset, c_offset;  // into state_ (c_offset -1: no cell state)
  };
  struct Stage {  // one child: a run of recurrent layers, or a Linear (offsets into packed_)
    bool recurrent;
    std::vector<Layer> layers;
    index_t weight = -1, bias = -1;
    index_t in = 0, out = 0;
  };
  const Scalar* packed(index_t offset) const { return offset < 0 ? nullptr : packed_.data() + offset; }
  index_t batch_, input_size_ = 0, output_size_ = 0;
  std::vector<Stage> stages_;
  std::vector<Scalar> state_;
  AlignedVector<Scalar> packed_;  // every part starts on a cache line
  AlignedVector<Scalar> work_;
  std::vector<Scalar> h_prev_, ping_, pong_, out_;
  std::uint64_t calls_ = 0;  // kernel calls per layer so far: their parity picks the panel order
};

}  // namespace gatecell
