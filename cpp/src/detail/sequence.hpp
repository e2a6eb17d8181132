// SPDX-License-Identifier: MIT
#pragma once
// Eigen views of sequence buffers, in either layout, without copies.

#include <Eigen/Core>

#include "gatecell/shapes.hpp"

namespace gatecell::detail {

template <typename Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename Scalar>
using MatrixMap = Eigen::Map<RowMatrix<Scalar>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename Scalar>
using ConstMatrixMap = Eigen::Map<const RowMatrix<Scalar>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename Scalar>
using ConstVectorMap = Eigen::Map<const Eigen::Matrix<Scalar, 1, Eigen::Dynamic>>;
template <typename Scalar>
using VectorMap = Eigen::Map<Eigen::Matrix<Scalar, 1, Eigen::Dynamic>>;

// Row order of a [T*N, C] sequence buffer: row t*N + n (time-major) or n*T + t (batch-first).
struct Layout {
  index_t steps, batch;
  bool batch_first;
  index_t rows() const { return steps * batch; }
  index_t row(index_t t, index_t n) const { return batch_first ? n * steps + t : t * batch + n; }
  // Rows between consecutive batch elements of one step.
  index_t batch_stride() const { return batch_first ? steps : 1; }
};

// A [rows, cols] sequence buffer whose consecutive rows are `ld` elements apart; a column slice
// of a wider buffer (one direction of a bidirectional output) is a Seq with ld > cols.
template <typename Scalar>
struct Seq {
  Scalar* data = nullptr;
  index_t cols = 0;
  index_t ld = 0;

  Scalar* at(const Layout& lay, index_t t, index_t n) const { return data + lay.row(t, n) * ld; }
  // All T*N rows, in buffer order (for the GEMMs that run over every step at once).
  Eigen::Map<std::conditional_t<std::is_const_v<Scalar>, const RowMatrix<std::remove_const_t<Scalar>>,
                                RowMatrix<Scalar>>,
             Eigen::Unaligned, Eigen::OuterStride<>>
  all(const Layout& lay) const {
    return {data, lay.rows(), cols, Eigen::OuterStride<>(ld)};
  }
  // The N rows of step t.
  Eigen::Map<std::conditional_t<std::is_const_v<Scalar>, const RowMatrix<std::remove_const_t<Scalar>>,
                                RowMatrix<Scalar>>,
             Eigen::Unaligned, Eigen::OuterStride<>>
  step(const Layout& lay, index_t t) const {
    return {data + lay.row(t, 0) * ld, lay.batch, cols, Eigen::OuterStride<>(ld * lay.batch_stride())};
  }
};

template <typename Scalar>
inline ConstMatrixMap<Scalar> matrix(const Scalar* p, index_t rows, index_t cols) {
  return {p, rows, cols, Eigen::OuterStride<>(cols)};
}
template <typename Scalar>
inline MatrixMap<Scalar> matrix(Scalar* p, index_t rows, index_t cols) {
  return {p, rows, cols, Eigen::OuterStride<>(cols)};
}

}  // namespace gatecell::detail
