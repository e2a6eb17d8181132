// SPDX-License-Identifier: MIT
// The kernels' GEMM (detail/gemm.hpp) against a naive product, over every row count the row
// grouping of the micro-kernel treats differently, depths across the k blocks, partial panels,
// transposed A, accumulation; and the property the time loops rely on: a block of A's rows gives
// exactly (bitwise) the same rows of C as the whole A, at any thread count.

#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include "detail/gemm.hpp"
#include "detail/stall.hpp"
#include "gatecell/threads.hpp"

namespace {

using gatecell::index_t;
using gatecell::detail::MatView;
using gatecell::detail::PackedMatrix;

template <typename Scalar>
std::vector<Scalar> random_values(index_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<Scalar> v(n);
  for (auto& x : v) x = static_cast<Scalar>(u(rng));
  return v;
}

// A [M, K], stored row-major, or column-major when transposed (as the weight gradients pass dA^T).
template <typename Scalar>
MatView<Scalar> a_view(const std::vector<Scalar>& data, index_t M, index_t K, bool transposed) {
  return transposed ? MatView<Scalar>{data.data(), K, M, M, 1}.t() : MatView<Scalar>{data.data(), M, K, K, 1};
}

}  // namespace

TEST_CASE_TEMPLATE("gemm matches a naive product for every row count, depth, width and layout", Scalar, float,
                   double) {
  std::mt19937 rng(7);
  const double eps = std::is_same_v<Scalar, float> ? 1e-6 : 1e-15;
  for (index_t K : {1, 37, 300}) {
    for (index_t N : {5, 17, 40, 100}) {  // 100: whole panels for the 2- and 3-row kernels, then a rest
      const std::vector<Scalar> b = random_values<Scalar>(K * N, rng);
      PackedMatrix<Scalar> packed;
      packed.pack({b.data(), K, N, N, 1});
      for (index_t M = 1; M <= 40; ++M) {
        for (bool transposed : {false, true}) {
          for (bool accumulate : {false, true}) {
            const std::vector<Scalar> a = random_values<Scalar>(M * K, rng);
            const MatView<Scalar> av = a_view(a, M, K, transposed);
            const index_t ldc = N + 3;  // C rows with a gap: nothing past column N may be written
            std::vector<Scalar> c = random_values<Scalar>(M * ldc, rng);
            const std::vector<Scalar> c0 = c;
            gatecell::detail::gemm(av, packed, c.data(), ldc, accumulate);
            double worst = 0.0;  // largest error over C
            bool gap_kept = true;
            for (index_t i = 0; i < M; ++i) {
              for (index_t j = 0; j < N; ++j) {
                double want = accumulate ? static_cast<double>(c0[i * ldc + j]) : 0.0;
                for (index_t k = 0; k < K; ++k)
                  want += static_cast<double>(av.data[i * av.rs + k * av.cs]) * static_cast<double>(b[k * N + j]);
                worst = std::max(worst, std::abs(static_cast<double>(c[i * ldc + j]) - want));
              }
              for (index_t j = N; j < ldc; ++j) gap_kept = gap_kept && c[i * ldc + j] == c0[i * ldc + j];
            }
            INFO("M=" << M << " K=" << K << " N=" << N << " transposed=" << transposed << " accumulate=" << accumulate);
            CHECK(worst <= 4.0 * eps * (K + 1));
            CHECK(gap_kept);
          }
        }
      }
    }
  }
}

TEST_CASE("gemm rows are independent of the block they come in and of the thread count (packed float)") {
  if (!gatecell::detail::gemm_rows_independent<float>()) return;  // Eigen's order depends on the sizes
  std::mt19937 rng(11);
  // Past the k block, several row groups and a partial panel; blocks of up to 12 rows read B panel
  // by panel (2, 4 and 8 rows with kernels over 3 panels, 3 rows over 2), the whole in k blocks.
  const index_t M = 100, K = 600;
  const int threads = omp_get_max_threads();
  for (index_t N : {70, 100}) {
    for (bool transposed : {false, true}) {
      const std::vector<float> a = random_values<float>(M * K, rng), b = random_values<float>(K * N, rng);
      PackedMatrix<float> packed;
      packed.pack({b.data(), K, N, N, 1});
      const MatView<float> av = a_view(a, M, K, transposed);
      std::vector<float> whole(M * N), other(M * N);
      omp_set_num_threads(1);
      gatecell::detail::gemm(av, packed, whole.data(), N, false);
      omp_set_num_threads(2);
      gatecell::detail::gemm(av, packed, other.data(), N, false);
      omp_set_num_threads(threads);
      CHECK(other == whole);
      for (index_t r0 = 0; r0 < M; r0 += 7) {
        for (index_t rows : {1, 2, 3, 4, 5, 6, 8, 12, 13, 32}) {
          if (r0 + rows > M) continue;
          const MatView<float> block{av.data + r0 * av.rs, rows, K, av.rs, av.cs};
          std::vector<float> part(rows * N);
          gatecell::detail::gemm(block, packed, part.data(), N, false);
          INFO("rows [" << r0 << ", " << r0 + rows << ") N=" << N << " transposed=" << transposed);
          CHECK(std::equal(part.begin(), part.end(), whole.begin() + r0 * N));
        }
      }
    }
  }
}

TEST_CASE("successive small products walk B's panels both ways and give the same bits") {
  if (!gatecell::detail::gemm_rows_independent<float>()) return;
  std::mt19937 rng(13);
  // A small A (up to 12 rows) deeper than a k block reads B chunk of panels by chunk of panels,
  // every other call from the last chunk back (PackedMatrix::turn); 19 panels, the last partial.
  // K 2100: the chunks of one and two rows narrow to four panels.
  const int threads = omp_get_max_threads();
  for (index_t K : {600, 2100}) {
    const index_t N = 300;
    const std::vector<float> b = random_values<float>(K * N, rng);
    PackedMatrix<float> packed;
    packed.pack({b.data(), K, N, N, 1});
    for (index_t M : {1, 2, 3, 4, 6, 8, 12}) {
      const std::vector<float> a = random_values<float>(M * K, rng);
      const MatView<float> av = a_view(a, M, K, false);
      std::vector<float> first(M * N);
      omp_set_num_threads(1);
      gatecell::detail::gemm(av, packed, first.data(), N, false);
      for (index_t i = 0; i < M; ++i)
        for (index_t j = 0; j < N; j += 37) {
          double want = 0;
          for (index_t k = 0; k < K; ++k) want += double(a[i * K + k]) * b[k * N + j];
          CHECK(std::abs(first[i * N + j] - want) <= 1e-6 * K);
        }
      for (int t : {1, 1, 2, 2, 2}) {  // both directions at each thread count
        omp_set_num_threads(t);
        std::vector<float> again(M * N, -1.0f);
        gatecell::detail::gemm(av, packed, again.data(), N, false);
        INFO("M=" << M << " K=" << K << " threads=" << t);
        CHECK(again == first);
      }
    }
  }
  omp_set_num_threads(threads);
}

TEST_CASE_TEMPLATE("column blocks packed side by side multiply as the matrix they make up", Scalar, float, double) {
  // B = [B_0 | B_1 | ...], each block a column slice of a wider matrix (as a thread's units of each
  // gate block of W^T): whole panels but the last (packed in place), then widths that cut panels
  // (gathered first), and a lone block.
  std::mt19937 rng(13);
  const index_t K = 70, ld = 200;
  const std::vector<Scalar> w = random_values<Scalar>(K * ld, rng);
  for (const std::vector<index_t>& widths :
       {std::vector<index_t>{16, 32, 16, 7}, std::vector<index_t>{48, 48}, std::vector<index_t>{10, 16, 5},
        std::vector<index_t>{33}}) {
    std::vector<MatView<Scalar>> blocks;
    index_t cols = 0;
    for (std::size_t q = 0; q < widths.size(); ++q) {
      blocks.push_back({w.data() + 50 * q, K, widths[q], ld, 1});  // block q from column 50 q
      cols += widths[q];
    }
    std::vector<Scalar> gathered(K * cols);
    for (index_t k = 0, at = 0; k < K; ++k, at = 0)
      for (const MatView<Scalar>& blk : blocks)
        for (index_t j = 0; j < blk.cols; ++j) gathered[k * cols + at++] = blk.data[k * blk.rs + j];
    PackedMatrix<Scalar> side_by_side, whole;
    side_by_side.pack(blocks);
    whole.pack({gathered.data(), K, cols, cols, 1});
    CHECK(side_by_side.view().rows == K);
    CHECK(side_by_side.view().cols == cols);
    for (index_t M : {1, 3, 4, 17}) {
      const std::vector<Scalar> a = random_values<Scalar>(M * K, rng);
      std::vector<Scalar> c(M * cols), expected(M * cols);
      gatecell::detail::gemm(a_view(a, M, K, false), side_by_side, c.data(), cols, false);
      gatecell::detail::gemm(a_view(a, M, K, false), whole, expected.data(), cols, false);
      INFO("M=" << M << " blocks=" << widths.size() << " first width=" << widths[0]);
      CHECK(c == expected);  // bitwise: the same sums in the same order
    }
  }
  const std::vector<MatView<Scalar>> uneven{{w.data(), K, 16, ld, 1}, {w.data(), K - 1, 16, ld, 1}};
  PackedMatrix<Scalar> bad;
  CHECK_THROWS_AS(bad.pack(uneven), std::logic_error);
}

TEST_CASE_TEMPLATE("a B used once, packed k block by k block inside the GEMM, gives the packed B's results",
                   Scalar, float, double) {
  // refer() keeps the blocks; on the AVX2 path the GEMM packs each thread's panels one k block at
  // a time (rows contiguous, columns contiguous, or neither; blocks that cut panels), elsewhere it
  // packs them. Either way every element is the same sum as with the whole B packed first.
  std::mt19937 rng(17);
  const int threads = omp_get_max_threads();
  gatecell::set_num_threads(threads);  // Eigen (the double path) single-threaded, as the kernels run it
  for (index_t K : {1, 255, 256, 257, 600}) {
    const index_t ld = 90;
    const std::vector<Scalar> w = random_values<Scalar>(K * ld, rng), wt = random_values<Scalar>(K * ld, rng);
    for (int layout = 0; layout < 4; ++layout) {
      std::vector<MatView<Scalar>> blocks;
      if (layout == 0) blocks = {{w.data(), K, 70, ld, 1}};                   // rows contiguous
      if (layout == 1) blocks = {{wt.data(), K, 32, 1, K}, {wt.data() + 32 * K, K, 21, 1, K}};  // columns
      if (layout == 2) blocks = {{w.data(), K, 16, ld, 1}, {w.data() + 40, K, 37, ld, 1}};  // whole panel, rest
      if (layout == 3) blocks = {{w.data(), K, 10, ld, 1}, {wt.data(), K, 19, 1, K}, {w.data() + 3, K, 12, ld, 2}};
      index_t N = 0;
      for (const MatView<Scalar>& blk : blocks) N += blk.cols;
      std::vector<Scalar> gathered(K * N);
      for (index_t k = 0; k < K; ++k) {
        index_t at = 0;
        for (const MatView<Scalar>& blk : blocks)
          for (index_t j = 0; j < blk.cols; ++j) gathered[k * N + at++] = blk.data[k * blk.rs + j * blk.cs];
      }
      PackedMatrix<Scalar> once, whole;
      whole.refer({{wt.data(), K, N, ld, 1}});  // other values: a pack after a refer replaces it
      whole.pack({gathered.data(), K, N, N, 1});
      once.refer(blocks);
      CHECK(once.view().rows == K);
      CHECK(once.view().cols == N);
      for (index_t M : {1, 2, 3, 4, 7, 13, 40, 130}) {
        for (bool transposed : {false, true}) {
          const std::vector<Scalar> a = random_values<Scalar>(M * K, rng);
          const index_t ldc = N + 2;
          const std::vector<Scalar> c0 = random_values<Scalar>(M * ldc, rng);
          for (bool accumulate : {false, true}) {
            std::vector<Scalar> expected = c0;
            gatecell::detail::gemm(a_view(a, M, K, transposed), whole, expected.data(), ldc, accumulate);
            for (int n : {1, 2}) {
              std::vector<Scalar> c = c0;
              gatecell::set_num_threads(n);
              gatecell::detail::gemm(a_view(a, M, K, transposed), once, c.data(), ldc, accumulate);
              gatecell::set_num_threads(threads);
              INFO("K=" << K << " layout=" << layout << " M=" << M << " transposed=" << transposed
                        << " accumulate=" << accumulate << " threads=" << n);
              CHECK(c == expected);  // bitwise, the gap past column N included
            }
          }
        }
      }
    }
  }
}

TEST_CASE_TEMPLATE("a product into two arrays gives the one-array product's columns", Scalar, float, double) {
  // C = [C_0 | C_1] with C_0 and C_1 apart ([dW_ih | dW_hh]): splits on a panel boundary (written
  // in place, the wide kernels of 1 to 8 rows stopping at it) or inside a panel (gathered), at
  // either end; B packed or streamed (refer), one or two threads, with accumulation.
  std::mt19937 rng(19);
  const int threads = omp_get_max_threads();
  const index_t K = 300, N = 100;
  const std::vector<Scalar> w = random_values<Scalar>(K * N, rng);
  PackedMatrix<Scalar> packed, streamed;
  packed.pack({w.data(), K, N, N, 1});
  streamed.refer({{w.data(), K, 40, N, 1}, {w.data() + 40, K, N - 40, N, 1}});
  for (index_t split : {0, 16, 32, 48, 96, 40, 7, 100}) {
    for (index_t M : {1, 2, 3, 4, 8, 13, 40}) {
      const std::vector<Scalar> a = random_values<Scalar>(M * K, rng), c0 = random_values<Scalar>(M * N, rng);
      for (const PackedMatrix<Scalar>* b : {&packed, &streamed}) {
        for (int t : {1, 2}) {
          gatecell::set_num_threads(t);
          std::vector<Scalar> whole = c0;
          gatecell::detail::gemm(a_view(a, M, K, true), *b, whole.data(), N, true);
          const index_t ld0 = split + 3, ld1 = N - split + 5;  // gaps after each row: left alone
          std::vector<Scalar> left(M * ld0, Scalar(-7)), right(M * ld1, Scalar(-7));
          for (index_t i = 0; i < M; ++i) {
            std::copy(c0.begin() + i * N, c0.begin() + i * N + split, left.begin() + i * ld0);
            std::copy(c0.begin() + i * N + split, c0.begin() + (i + 1) * N, right.begin() + i * ld1);
          }
          gatecell::detail::gemm(a_view(a, M, K, true), *b, split, left.data(), ld0, right.data(), ld1, true);
          INFO("split=" << split << " M=" << M << " streamed=" << (b == &streamed) << " threads=" << t);
          bool same = true;
          for (index_t i = 0; i < M; ++i) {
            for (index_t j = 0; j < N; ++j)
              same = same && (j < split ? left[i * ld0 + j] : right[i * ld1 + j - split]) == whole[i * N + j];
            for (index_t j = split; j < ld0; ++j) same = same && left[i * ld0 + j] == Scalar(-7);
            for (index_t j = N - split; j < ld1; ++j) same = same && right[i * ld1 + j] == Scalar(-7);
          }
          CHECK(same);
        }
      }
    }
  }
  gatecell::set_num_threads(threads);
  std::vector<Scalar> c(N);
  CHECK_THROWS_AS(gatecell::detail::gemm(a_view(w, 1, K, false), packed, N + 1, c.data(), N, c.data(), N, false),
                  std::logic_error);
}

TEST_CASE("a stall pause starts at a repeated stall, doubles while stalls repeat, and resets") {
  using gatecell::detail::StallPause;
  using Clock = std::chrono::steady_clock;
  StallPause pause;
  CHECK_FALSE(pause.active());
  pause.ran_smoothly();
  pause.stalled();  // a lone stall: a hiccup of the host
  CHECK_FALSE(pause.active());
  // Stalls in a row pause for twice as long each time: 50, 100, 200 ms; a pause that is over
  // lets parallel work run again.
  const Clock::time_point start = Clock::now();
  pause.stalled();
  CHECK(pause.active());
  pause.stalled();
  pause.stalled();
  while (pause.active() && Clock::now() - start < std::chrono::seconds(5)) std::this_thread::yield();
  const double waited = std::chrono::duration<double>(Clock::now() - start).count();
  CHECK(waited >= 0.2);
  CHECK(waited < 5);
  pause.stalled();  // the one before is over 200 ms old: a lone stall again
  CHECK_FALSE(pause.active());
  pause.stalled();
  CHECK(pause.active());
  pause.reset();
  CHECK_FALSE(pause.active());
  pause.stalled();
  CHECK_FALSE(pause.active());
}
