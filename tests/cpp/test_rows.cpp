// SPDX-License-Identifier: MIT
// The AVX2 backward row kernels (simd.cpp) against the scalar loops they replace: the same
// operations in the same order, to a few ulp of the incoming gradients (the compiler may fuse a
// multiply and an add in the vector lanes), the last partial register of a row included; rows of
// fewer than 8 units, which stay scalar, exactly.

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "detail/cell_math.hpp"
#include "detail/simd.hpp"

namespace {

using gatecell::index_t;

std::vector<float> uniform(index_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace

TEST_CASE("LSTM row backward: the vector kernel agrees with the scalar loop") {
  std::mt19937 rng(3);
  for (index_t H : {1, 8, 37, 64}) {
    for (bool with_dy : {false, true}) {
      const std::vector<float> gate = uniform(4 * H, 0.0f, 1.0f, rng), tanh_c = uniform(H, -1.0f, 1.0f, rng);
      const std::vector<float> c_prev = uniform(H, -2.0f, 2.0f, rng), dm = uniform(H, -1.0f, 1.0f, rng);
      const std::vector<float> dy = uniform(H, -1.0f, 1.0f, rng), dc0 = uniform(H, -1.0f, 1.0f, rng);
      std::vector<float> dc = dc0, da(4 * H);
      gatecell::detail::lstm_row_backward(gate.data(), tanh_c.data(), c_prev.data(), dm.data(),
                                          with_dy ? dy.data() : nullptr, dc.data(), da.data(), H);
      for (index_t j = 0; j < H; ++j) {  // (L4)-(L2) written out
        const float i = gate[j], f = gate[H + j], g = gate[2 * H + j], o = gate[3 * H + j];
        const float dm_j = dm[j] + (with_dy ? dy[j] : 0.0f), tc = tanh_c[j];
        const float dc_j = dc0[j] + dm_j * o * (1.0f - tc * tc);
        INFO("H=" << H << " j=" << j << " dy=" << with_dy);
        const bool scalar = !gatecell::detail::use_avx2() || H < 8;
        // Gates lie in [0, 1], so every term is bounded by the incoming gradients: a fused multiply
        // and add (1 - g g, dc + dm o (1 - tc tc)) moves it by a few ulp of those, none when scalar.
        const float scale = std::fabs(dc_j) + std::fabs(dm_j);
        auto same = [&](float got, float want) {
          return scalar ? got == want : std::fabs(got - want) <= 5e-7f * scale;
        };
        CHECK(same(dc[j], dc_j * f));
        CHECK(same(da[j], dc_j * g * i * (1.0f - i)));
        CHECK(same(da[H + j], dc_j * c_prev[j] * f * (1.0f - f)));
        CHECK(same(da[2 * H + j], dc_j * i * (1.0f - g * g)));
        CHECK(same(da[3 * H + j], dm_j * tc * o * (1.0f - o)));
      }
    }
  }
}

TEST_CASE("column sums: the vector kernel adds each column in row order, as the scalar loop") {
  // Its callers run it only where use_avx2() holds: it is compiled for AVX2 (GATECELL_PORTABLE=1
  // turns that off on a CPU that has it, and a CPU without AVX2 would fault on it).
  if (!gatecell::detail::use_avx2()) return;
  std::mt19937 rng(5);
  for (index_t cols : {5, 8, 37, 130, 300}) {
    for (index_t rows : {1, 7, 100}) {
      const index_t ld = cols + 3;
      const std::vector<float> a = uniform(rows * ld, -1.0f, 1.0f, rng);
      std::vector<float> sum(cols, 0.0f);
      const index_t done = gatecell::detail::column_sums_avx2(a.data(), rows, cols, ld, sum.data());
      CHECK(done == cols / 8 * 8);
      for (index_t j = 0; j < done; ++j) {
        float want = 0.0f;
        for (index_t r = 0; r < rows; ++r) want += a[r * ld + j];
        INFO("cols=" << cols << " rows=" << rows << " j=" << j);
        CHECK(sum[j] == want);  // adds only: the same bits
      }
    }
  }
}

TEST_CASE("GRU row backward: the vector kernel agrees with the scalar loop, in both forms") {
  std::mt19937 rng(4);
  for (index_t H : {3, 16, 45}) {
    for (bool lbr : {false, true}) {
      for (bool with_dy : {false, true}) {
        const std::vector<float> gate = uniform(3 * H, 0.0f, 1.0f, rng), h_prev = uniform(H, -1.0f, 1.0f, rng);
        const std::vector<float> hn = uniform(H, -2.0f, 2.0f, rng), dh = uniform(H, -1.0f, 1.0f, rng);
        const std::vector<float> dy = uniform(H, -1.0f, 1.0f, rng);
        std::vector<float> dh_direct(H), da(3 * H, 7.0f), da_h(3 * H, 7.0f);
        gatecell::detail::gru_row_backward(gate.data(), h_prev.data(), lbr ? hn.data() : nullptr, dh.data(),
                                           with_dy ? dy.data() : nullptr, dh_direct.data(), da.data(), da_h.data(), H);
        for (index_t j = 0; j < H; ++j) {  // (G5)-(G2) written out
          const float r = gate[j], z = gate[H + j], n = gate[2 * H + j];
          const float dh_j = dh[j] + (with_dy ? dy[j] : 0.0f);
          const float da_n = dh_j * (1.0f - z) * (1.0f - n * n), da_z = dh_j * (h_prev[j] - n) * z * (1.0f - z);
          const bool scalar = !gatecell::detail::use_avx2() || H < 8;
          const float scale = std::fabs(dh_j) * 4;  // |h_prev - n| <= 2, hn within [-2, 2]
          auto same = [&](float got, float want) {
          return scalar ? got == want : std::fabs(got - want) <= 5e-7f * scale;
        };
          INFO("H=" << H << " j=" << j << " lbr=" << lbr << " dy=" << with_dy);
          CHECK(same(dh_direct[j], dh_j * z));
          CHECK(same(da[H + j], da_z));
          CHECK(same(da[2 * H + j], da_n));
          if (lbr) {
            const float da_r = da_n * hn[j] * r * (1.0f - r);
            CHECK(same(da[j], da_r));
            CHECK(same(da_h[j], da_r));
            CHECK(same(da_h[H + j], da_z));
            CHECK(same(da_h[2 * H + j], da_n * r));
          } else {
            CHECK(da[j] == 7.0f);  // r's part comes later in the original form
            CHECK(da_h[j] == 7.0f);
          }
        }
      }
    }
  }
}
