// SPDX-License-Identifier: MIT
#pragma once
// Run-time choice of the AVX2 + FMA (and AVX-512) path and the float row kernels that use it
// (simd.cpp). Each `*_avx2` function handles the whole row (in blocks of 16 where use_avx512(),
// else 8, the last one through masked lanes) and returns H; elsewhere they do nothing and return
// 0, and the scalar loops in cell_math.hpp do the row.

#include "gatecell/shapes.hpp"

namespace gatecell::detail {

// True when this CPU has AVX2 and FMA (GATECELL_PORTABLE=1 in the environment forces false).
bool use_avx2();
// True when use_avx2() holds and this CPU (and OS) has AVX-512F: the GEMM tiles, the gate math
// and the batch-1 step panels then run on 16-float registers. GATECELL_NO_AVX512=1 in the
// environment forces false. Results are bitwise those of the AVX2 path (the same operations per
// element, in the same order).
bool use_avx512();

index_t rnn_row_forward_avx2(float* gate, const float* hp, float* h, index_t H, bool use_relu);
// b_hh, b_ih: [4H] or null, added to hp and to gate first (see lstm_row_forward).
index_t lstm_row_forward_avx2(float* gate, const float* hp, const float* b_hh, const float* b_ih, const float* c_prev,
                              float* c, float* m, index_t H);
index_t gru_row_forward_lbr_avx2(float* gate, const float* hp, float* h, float* hn, index_t H);
index_t gru_row_reset_avx2(float* gate, const float* hp, const float* h_prev, float* rh, index_t H);
index_t gru_row_forward_original_avx2(float* gate, const float* hp, float* h, index_t H);
// LSTM backward through (L2)-(L4) of one row; see lstm_row_backward. The scalar loop's operations
// in its order, but the compiler may fuse a multiply and an add: the last bit can differ.
index_t lstm_row_backward_avx2(const float* gate, const float* tanh_c, const float* c_prev, const float* dm,
                               const float* dy, float* dc, float* da, index_t H);
// GRU backward through (G5)-(G2) of one row; see gru_row_backward (the same caveat).
index_t gru_row_backward_avx2(const float* gate, const float* h_prev, const float* hn, const float* dh, const float* dy,
                              float* dh_direct, float* da, float* da_h, index_t H);
// sum[j] = sum over r in [0, rows) of a[r * ld + j], summed in row order from zero (as a scalar loop
// would), for j below cols rounded down to 8 (returned; the caller sums the rest).
index_t column_sums_avx2(const float* a, index_t rows, index_t cols, index_t ld, float* sum);
// y = tanh(x) over n elements.
index_t tanh_avx2(const float* x, float* y, index_t n);

}  // namespace gatecell::detail
