// SPDX-License-Identifier: MIT
#pragma once
// The forward pass of a few sequences at once (inference or training) with each step split by
// units over a team of threads (batch_split.cpp): where a row team would leave threads idle (fewer
// sequences than it needs) and the weights are large enough to pay for a barrier per step.

#include "detail/direction.hpp"

namespace gatecell::detail {

// Threads that share each step of the direction by units: 1 when the split does not apply
// (cell variants, an LSTM projection, the original GRU, ONNX's reverse direction, a batch a row
// team takes, nested parallelism, small weights).
template <typename Scalar>
int batch_unit_team(const DirectionForward<Scalar>& a);

// The direction's steps on `team` threads (from batch_unit_team), bit for bit the results of the
// unsplit kernels.
template <typename Scalar>
void batch_split_direction_forward(const DirectionForward<Scalar>& a, int team);

// Threads that share each step of the backward loop by units: 1 when the split does not apply
// (as batch_unit_team; also introspection's records, and batch 1 with recurrent weights past
// 2 MiB, where it measured no faster).
template <typename Scalar>
int backward_unit_team(const DirectionBackward<Scalar>& a);

// The backward step loop on `team` threads (from backward_unit_team): dA of every step into da
// ([rows, gates * H]; GRU: the recurrent side's into da_h, else null), and dh0 (dc0); bit for bit
// the unsplit loop's. The weight gradients and dx follow from them as after the unsplit loop.
template <typename Scalar>
void batch_split_direction_backward(const DirectionBackward<Scalar>& a, Scalar* da, Scalar* da_h, int team);

}  // namespace gatecell::detail
