// SPDX-License-Identifier: MIT
// Streaming: one time step through every layer, batch rows one at a time, each layer on the
// fused step kernel (detail/step.hpp) with weights packed by the constructor and preallocated
// buffers. Equation numbers refer to rnn.cpp (R), lstm.cpp (L) and gru.cpp (G).

#include <algorithm>

#include "detail/step.hpp"
#include "gatecell/stream.hpp"

namespace gatecell {

using detail::CellShape;

template <typename Scalar>
Stream<Scalar>::Stream(const Model<Scalar>& model, index_t batch) : batch_(batch) {
  if (batch < 1) throw ShapeError("batch: expected at least 1, got " + std::to_string(batch));
  input_size_ = model.input_size();
  output_size_ = model.output_size();
  index_t state_size = 0, max_work = 0, max_out = 0, max_width = 0;
  index_t width = input_size_;  // of the rows reaching the next child
  auto check_width = [&](const ModelChild<Scalar>& child, index_t in, index_t out) {
    if (in != width)
      throw ShapeError("module '" + child.name + "': input size " + std::to_string(in) +
                       " does not match the previous module's output size " + std::to_string(width));
    width = out;
  };
  auto append = [this](auto&& pack_into) {
    packed_.resize((packed_.size() + 15) / 16 * 16, Scalar(0));  // each part on a cache line
    const index_t offset = static_cast<index_t>(packed_.size());
    pack_into(packed_);
    return offset;
  };
  for (const auto& child : model.children()) {
    if (child.network) {
      const NetworkConfig& c = child.network->config();
      if (c.bidirectional)
        throw ShapeError("module '" + child.name + "': a bidirectional layer needs the whole sequence; "
                         "streaming supports unidirectional models only");
      Stage stage{true, {}, -1, -1, 0, c.output_size()};
      const auto weights = child.network->layer_weights();
      const index_t L = c.num_layers, H = c.hidden_size, P = c.output_size();
      check_width(child, c.input_size, P);
      for (index_t l = 0; l < L; ++l) {
        const CellShape shape{c.kind, c.linear_before_reset, c.layer_input_size(l), H, P};
        const index_t cell = append([&](AlignedVector<Scalar>& out) { detail::pack_cell(shape, weights[l], out); });
        stage.layers.push_back({c.kind, c.linear_before_reset, shape.in, H, P, cell,
                                state_size + l * batch * P,
                                c.has_cell_state() ? state_size + L * batch * P + l * batch * H : -1});
        max_work = std::max(max_work, shape.work_size());
      }
      state_size += L * batch * P + (c.has_cell_state() ? L * batch * H : 0);
      max_out = std::max(max_out, P);
      stages_.push_back(std::move(stage));
    } else if (child.linear) {
      const auto& params = child.linear->parameters();
      const index_t in = child.linear->in_features(), out = child.linear->out_features();
      check_width(child, in, out);
      const index_t weight =
          append([&](AlignedVector<Scalar>& dst) { detail::pack_matrix(params.at("weight").data.data(), out, in, dst); });
      const index_t bias = child.linear->has_bias() ? append([&](AlignedVector<Scalar>& dst) {
        const Scalar* b = params.at("bias").data.data();
        dst.insert(dst.end(), b, b + out);
      }) : -1;
      stages_.push_back(Stage{false, {}, weight, bias, in, out});
      max_width = std::max(max_width, out);
    }
    // Dropout is the identity at inference; LastStep is too when each step is the last so far.
  }
  state_.assign(state_size, Scalar(0));
  work_.assign(max_work, Scalar(0));
  h_prev_.assign(max_out, Scalar(0));
  ping_.assign(batch * max_width, Scalar(0));
  pong_.assign(batch * max_width, Scalar(0));
  out_.assign(batch * output_size_, Scalar(0));
}

template <typename Scalar>
void Stream<Scalar>::step(const Scalar* x, Scalar* y) {
  const index_t N = batch_;
  const Scalar* in = x;
  index_t in_width = input_size_;
  Scalar* spare = ping_.data();
  for (const Stage& stage : stages_) {
    if (!stage.recurrent) {
      for (index_t n = 0; n < N; ++n)
        detail::gemv(packed(stage.weight), stage.out, stage.in, in + n * in_width, packed(stage.bias),
                     spare + n * stage.out);
      in = spare;
      spare = spare == ping_.data() ? pong_.data() : ping_.data();
      in_width = stage.out;
      continue;
    }
    for (const Layer& layer : stage.layers) {
      const CellShape shape{layer.kind, layer.linear_before_reset, layer.in, layer.H, layer.P};
      for (index_t n = 0; n < N; ++n) {
        const std::uint64_t call = calls_ + static_cast<std::uint64_t>(n);  // alternates for each layer
        Scalar* h = state_.data() + layer.h_offset + n * layer.P;
        Scalar* c = layer.c_offset >= 0 ? state_.data() + layer.c_offset + n * layer.H : nullptr;
        std::copy(h, h + layer.P, h_prev_.data());  // the kernel writes h while it still reads h_prev
        detail::cell_step(shape, packed(layer.cell), in + n * in_width, static_cast<const Scalar*>(nullptr),
                          static_cast<const Scalar*>(h_prev_.data()), c, h, work_.data(), (call & 1) != 0);
      }
      in = state_.data() + layer.h_offset;  // [N, P]: the next layer's input
      in_width = layer.P;
    }
  }
  std::copy(in, in + N * output_size_, y);
  calls_ += N;  // each layer's kernel ran N times: the next step starts on the other panel order
}

template <typename Scalar>
const Scalar* Stream<Scalar>::step(const Scalar* x) {
  step(x, out_.data());
  return out_.data();
}

template <typename Scalar>
void Stream<Scalar>::reset() {
  std::fill(state_.begin(), state_.end(), Scalar(0));
}

template <typename Scalar>
void Stream<Scalar>::get_state(Scalar* state) const {
  std::copy(state_.begin(), state_.end(), state);
}

template <typename Scalar>
void Stream<Scalar>::set_state(const Scalar* state) {
  std::copy(state, state + state_.size(), state_.begin());
}

template class Stream<float>;
template class Stream<double>;

}  // namespace gatecell
