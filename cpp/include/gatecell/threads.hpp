// SPDX-License-Identifier: MIT
#pragma once
// How many threads the kernels use. Results never depend on it: every output and gradient is
// bitwise the same at any thread count.

namespace gatecell {

// Sets the number of OpenMP threads the kernels of the calling thread use.
//   n: threads, >= 1 (ShapeError otherwise)
void set_num_threads(int n);

// The number of threads the kernels of the calling thread use.
int get_num_threads();

}  // namespace gatecell
