// SPDX-License-Identifier: MIT
#pragma once
// How many threads the kernels use. Results never depend on it: every output and gradient is
// bitwise the same at any thread count.

#include "gatecell/shapes.hpp"

namespace gatecell {

// Sets the number of OpenMP threads the kernels of the calling thread use.
//   n: threads, >= 1 (ShapeError otherwise)
void set_num_threads(int n);

// The number of threads the kernels of the calling thread use.
int get_num_threads();

// The float kernels this process runs, chosen once from the CPU: "avx512" (16-float GEMM tiles),
// "avx2" (AVX2 + FMA) or "portable" (Eigen and scalar code, any CPU). The two vector paths give
// bitwise the same results. GATECELL_NO_AVX512=1 in the environment stops at "avx2",
// GATECELL_PORTABLE=1 at "portable".
const char* simd_path();

namespace detail {
// A forward pass (and in training the backward loop) with large weights and too few sequences
// to give each thread its own (batch 1, or a few sequences) splits every step by units over the
// threads; a thread kept waiting at a step's barrier longer than this (default 100 us) plus four
// times its own work in the step, twice, takes it that another thread lost its core, and the first
// thread then runs every slice alone (and the calling thread's next calls do not split for a
// while). For tests, which lower it to force that switch; it also ends the calling thread's pause.
//   microseconds: >= -1 (ShapeError otherwise); -1: every wait counts as long
void set_split_patience(double microseconds);

// For tests: how many directions have run split by units (batch 1 or a few sequences, on a team
// of threads) in this process, so that a test can tell that it exercised the split.
long split_runs();

// For the benchmark's ceiling: C = A B (row-major float, A [m, k], B [k, n], C [m, n]) through the
// kernels' GEMM on the calling thread's thread count, `repeats` times after packing B once (as a
// time loop packs its weights); returns the fastest run in seconds.
//   m, k, n, repeats: >= 1 (ShapeError otherwise)
double time_gemm(const float* a, const float* b, float* c, index_t m, index_t k, index_t n, int repeats);
}  // namespace detail

}  // namespace gatecell
