// SPDX-License-Identifier: MIT
// Thread count of the kernels: OpenMP's, with Eigen kept single-threaded inside our own splits.

#include "gatecell/threads.hpp"

#include <omp.h>

#include <Eigen/Core>
#include <string>

#include "detail/simd.hpp"
#include "gatecell/shapes.hpp"

namespace gatecell {

void set_num_threads(int n) {
  if (n < 1) throw ShapeError("num_threads must be >= 1, got " + std::to_string(n));
  omp_set_num_threads(n);
  // Eigen's GEMM blocking depends on its thread count, so it stays at one thread and the
  // kernels split work themselves in blocks whose sizes do not depend on n.
  Eigen::setNbThreads(1);
}

int get_num_threads() { return omp_get_max_threads(); }

const char* simd_path() { return detail::use_avx512() ? "avx512" : detail::use_avx2() ? "avx2" : "portable"; }

}  // namespace gatecell
