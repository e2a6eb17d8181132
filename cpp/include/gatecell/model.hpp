// SPDX-License-Identifier: MIT
#pragma once
// Models described by a checkpoint: a recurrent layer, a cell, a Linear, or a Sequential of them
// with Dropout and LastStep, rebuilt from the safetensors files gatecell writes from Python.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gatecell/layers.hpp"

namespace gatecell {

// A checkpoint that cannot be read: truncated, malformed, inconsistent with its model
// description, or of another dtype than requested. Derives from ShapeError, so it surfaces in
// Python as ValueError and one catch (const ShapeError&) handles every bad-input error.
class CheckpointError : public ShapeError {
 public:
  using ShapeError::ShapeError;
};

enum class ModuleKind { recurrent, cell, linear, dropout, last_step };

// One child of a model, in order of application; exactly one of network / linear is set for
// recurrent (or cell) / linear children.
template <typename Scalar>
struct ModelChild {
  std::string name;  // "" for a single-module model
  ModuleKind kind = ModuleKind::dropout;
  std::unique_ptr<Network<Scalar>> network;
  std::unique_ptr<Linear<Scalar>> linear;
  double p = 0.0;  // Dropout probability (identity at inference)
};

template <typename Scalar>
class Stream;

// The contents of a safetensors file: tensors by name, dtype ("F32" or "F64") and metadata.
struct CheckpointFile {
  std::string dtype;
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor<double>> tensors;  // values widened to double (exact for F32)
};

// Reads and checks a safetensors file; throws CheckpointError naming the problem.
//   path: the file
CheckpointFile read_checkpoint(const std::string& path);

// A model rebuilt from its description: children applied in order, inference only.
template <typename Scalar>
class Model {
 public:
  Model() = default;
  Model(const Model&) = delete;  // children own their weights; streams point into them
  Model& operator=(const Model&) = delete;
  Model(Model&&) noexcept = default;
  Model& operator=(Model&&) noexcept = default;

  // Builds the model a "gatecell_model" JSON description gives and fills its weights.
  //   config_json: the description (a module's config() or {"type": "Sequential", ...})
  //   tensors: every parameter by state-dict name; missing, extra or misshapen ones throw
  static Model from_config(const std::string& config_json, const std::map<std::string, Tensor<Scalar>>& tensors);

  const std::vector<ModelChild<Scalar>>& children() const { return children_; }
  std::vector<ModelChild<Scalar>>& children() { return children_; }
  // Width of the input rows and of the output rows.
  index_t input_size() const;
  index_t output_size() const;
  // Whether sequences are [N,T,C] (the first recurrent child is batch-first).
  bool batch_first() const;
  // Whether the output is one row per sequence (a LastStep or a cell) rather than per step.
  bool reduces_steps() const;

  // Inference over a batch of sequences.
  //   x: [T,N,I] ([N,T,I] if the first recurrent child is batch-first); lengths: [N] or empty
  //   returns [T,N,O] (the layout of x), or [N,O] after a LastStep or for a cell (T must be 1)
  std::vector<Scalar> forward(const std::vector<Scalar>& x, index_t steps, index_t batch,
                              const std::vector<index_t>& lengths = {});

  // Keeps every recurrent child's weights packed from one forward call to the next (off at
  // first; see Network::keep_packed_weights): for a deployed model whose weights stay as loaded.
  void keep_packed_weights(bool keep);

  // A streaming runner (with its own copy of the weights) for `batch` sequences at once.
  Stream<Scalar> stream(index_t batch = 1) const;

 private:
  std::vector<ModelChild<Scalar>> children_;
};

// Loads a checkpoint saved by gatecell.save; throws CheckpointError if it is unreadable or its
// tensors are not of Scalar's dtype (check read_checkpoint(path).dtype first to choose).
//   path: the safetensors file
template <typename Scalar>
Model<Scalar> load_model(const std::string& path);

}  // namespace gatecell
