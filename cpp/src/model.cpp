// SPDX-License-Identifier: MIT
// A model's children applied in order over whole sequences (inference), and its streams.

#include <algorithm>

#include "detail/sequence.hpp"
#include "gatecell/stream.hpp"

namespace gatecell {

template <typename Scalar>
index_t Model<Scalar>::input_size() const {
  for (const auto& c : children_) {
    if (c.network) return c.network->config().input_size;
    if (c.linear) return c.linear->in_features();
  }
  throw ShapeError("model: no child has weights, so the input size is unknown");
}

template <typename Scalar>
index_t Model<Scalar>::output_size() const {
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    if (it->network) return it->network->config().directions() * it->network->config().output_size();
    if (it->linear) return it->linear->out_features();
  }
  throw ShapeError("model: no child has weights, so the output size is unknown");
}

template <typename Scalar>
bool Model<Scalar>::batch_first() const {
  for (const auto& c : children_)
    if (c.kind == ModuleKind::recurrent) return c.network->batch_first();
  return false;
}

template <typename Scalar>
bool Model<Scalar>::reduces_steps() const {
  return std::any_of(children_.begin(), children_.end(), [](const ModelChild<Scalar>& c) {
    return c.kind == ModuleKind::last_step || c.kind == ModuleKind::cell;
  });
}

template <typename Scalar>
void Model<Scalar>::keep_packed_weights(bool keep) {
  for (ModelChild<Scalar>& c : children_)
    if (c.network != nullptr) c.network->keep_packed_weights(keep);
}

template <typename Scalar>
std::vector<Scalar> Model<Scalar>::forward(const std::vector<Scalar>& x, index_t steps, index_t batch,
                                           const std::vector<index_t>& lengths) {
  if (steps < 1 || batch < 0) throw ShapeError("forward: steps must be >= 1 and batch >= 0");
  if (static_cast<index_t>(x.size()) != steps * batch * input_size())
    throw ShapeError("x: expected " + std::to_string(steps * batch * input_size()) + " values, got " +
                     std::to_string(x.size()));
  if (!lengths.empty() && static_cast<index_t>(lengths.size()) != batch)
    throw ShapeError("lengths: expected " + std::to_string(batch) + " values, got " + std::to_string(lengths.size()));
  std::vector<Scalar> cur = x;
  index_t rows_steps = steps;  // 1 once the step axis is gone
  bool batch_first = false;
  for (auto& c : children_) {
    if (c.kind == ModuleKind::recurrent || c.kind == ModuleKind::cell) {
      if (c.kind == ModuleKind::cell && rows_steps != 1)
        throw ShapeError("module '" + c.name + "': a cell takes one step, got " + std::to_string(rows_steps));
      if (rows_steps == 1 && steps != 1 && c.kind == ModuleKind::recurrent)
        throw ShapeError("module '" + c.name + "': needs a sequence, but a LastStep came before it");
      const bool was_training = c.network->training();
      c.network->eval();
      batch_first = c.network->batch_first();
      cur = c.network->forward(cur, rows_steps, batch, rows_steps == steps ? lengths : std::vector<index_t>{}).y;
      c.network->train(was_training);
    } else if (c.kind == ModuleKind::linear) {
      const index_t rows = static_cast<index_t>(cur.size()) / c.linear->in_features();
      if (rows * c.linear->in_features() != static_cast<index_t>(cur.size()))
        throw ShapeError("module '" + c.name + "': rows of " + std::to_string(c.linear->in_features()) +
                         " features expected, got " + std::to_string(cur.size()) + " values");
      std::vector<Scalar> y(rows * c.linear->out_features());
      c.linear->apply(cur.data(), rows, y.data());
      cur.swap(y);
    } else if (c.kind == ModuleKind::last_step) {
      if (rows_steps == 1 && steps != 1) throw ShapeError("module '" + c.name + "': a second LastStep");
      const index_t C = static_cast<index_t>(cur.size()) / (steps * batch);
      const detail::Layout lay{steps, batch, batch_first};
      std::vector<Scalar> y(batch * C);
      for (index_t n = 0; n < batch; ++n) {
        const index_t t = lengths.empty() ? steps - 1 : lengths[n] - 1;
        if (t < 0) throw ShapeError("lengths[" + std::to_string(n) + "] must be >= 1 for LastStep");
        std::copy_n(cur.data() + lay.row(t, n) * C, C, y.data() + n * C);
      }
      cur.swap(y);
      rows_steps = 1;
    }
  }
  return cur;
}

template <typename Scalar>
Stream<Scalar> Model<Scalar>::stream(index_t batch) const {
  // The streaming step code runs torch's cells forwards in time; refuse what it would get wrong.
  for (const auto& c : children_) {
    if (!c.network) continue;
    if (c.network->config().reverse)
      throw ShapeError("module '" + c.name + "': a reverse layer needs the whole sequence; streaming runs forwards");
    if (c.network->config().has_variants())
      throw ShapeError("module '" + c.name + "': streaming does not run cell variants (activations, clip, "
                       "input_forget, peepholes) yet");
  }
  return Stream<Scalar>(*this, batch);
}

template class Model<float>;
template class Model<double>;

}  // namespace gatecell
