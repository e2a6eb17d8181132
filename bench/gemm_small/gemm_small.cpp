// SPDX-License-Identifier: MIT
// The recurrent product of small batches, h [M, K] times a packed W_hh^T [K, N], for two versions
// of gemm.cpp linked side by side (build.sh): alternating runs, best of several, in one process.
// Prints per shape the GB/s of B streamed and the GFLOP/s of each version, their ratio, and
// whether both versions give bitwise the same C.
//
//   gemm_small [rounds] [calls] [K N M...]   (OMP_NUM_THREADS picks the thread count; one K, N
//                                             and a list of M replace the default grid)

#include "gemm_new.hpp"
#include "gemm_old.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace gd = gatecell::detail;
using gatecell::index_t;

namespace {

template <typename Packed, typename Gemm>
double time_calls(const std::vector<float>& h, index_t M, index_t K, const Packed& w, std::vector<float>& c, index_t N,
                  int calls, Gemm gemm) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < calls; ++r) gemm(h.data(), M, K, w, c.data(), N);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7, calls = argc > 2 ? std::atoi(argv[2]) : 200;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<std::vector<index_t>> shapes = {{512, 2048}, {256, 1024}, {512, 1536}, {2048, 512}, {1536, 512}};
  std::vector<index_t> rows = {1, 2, 3, 4, 5, 6, 8, 12};
  if (argc > 5) {
    shapes = {{std::atol(argv[3]), std::atol(argv[4])}};
    rows.clear();
    for (int i = 5; i < argc; ++i) rows.push_back(std::atol(argv[i]));
  }
  std::printf("%4s %5s %5s | %8s %8s | %8s %8s | %6s %s\n", "M", "K", "N", "old GB/s", "GFLOP/s", "new GB/s", "GFLOP/s",
              "new/old", "bitwise");
  for (const auto& s : shapes) {
    const index_t K = s[0], N = s[1];
    std::vector<float> w(K * N);
    for (float& x : w) x = u(rng);
    gd::gv_old::PackedMatrix<float> w_old;
    gd::gv_new::PackedMatrix<float> w_new;
    w_old.pack({w.data(), K, N, N, 1});
    w_new.pack({w.data(), K, N, N, 1});
    for (index_t M : rows) {
      std::vector<float> h(M * K), c_old(M * N), c_new(M * N);
      for (float& x : h) x = u(rng);
      auto run_old = [](const float* a, index_t m, index_t k, const gd::gv_old::PackedMatrix<float>& b, float* c,
                        index_t n) { gd::gv_old::gemm<float>({a, m, k, k, 1}, b, c, n, false); };
      auto run_new = [](const float* a, index_t m, index_t k, const gd::gv_new::PackedMatrix<float>& b, float* c,
                        index_t n) { gd::gv_new::gemm<float>({a, m, k, k, 1}, b, c, n, false); };
      double best_old = 1e9, best_new = 1e9;
      for (int r = 0; r < rounds; ++r) {
        best_old = std::min(best_old, time_calls(h, M, K, w_old, c_old, N, calls, run_old));
        best_new = std::min(best_new, time_calls(h, M, K, w_new, c_new, N, calls, run_new));
      }
      const bool same = std::memcmp(c_old.data(), c_new.data(), c_old.size() * sizeof(float)) == 0;
      const double bytes = 4.0 * K * N, flops = 2.0 * M * K * N;
      std::printf("%4ld %5ld %5ld | %8.1f %8.1f | %8.1f %8.1f | %6.3f %s\n", static_cast<long>(M), static_cast<long>(K),
                  static_cast<long>(N), bytes / best_old * 1e-9, flops / best_old * 1e-9, bytes / best_new * 1e-9,
                  flops / best_new * 1e-9, best_old / best_new, same ? "same" : "DIFFERENT");
    }
  }
  // Packing a transposed weight (W^T of a row-major W [N, K]), as the time loops do at every call.
  std::printf("\npack W^T  %5s %5s | %8s | %8s | %6s %s\n", "K", "N", "old GB/s", "new GB/s", "new/old", "bitwise");
  for (const auto& s : shapes) {
    const index_t K = s[0], N = s[1];
    std::vector<float> w(K * N);
    for (float& x : w) x = u(rng);
    const gd::gv_old::MatView<float> v_old{w.data(), K, N, 1, K};
    const gd::gv_new::MatView<float> v_new{w.data(), K, N, 1, K};
    gd::gv_old::PackedMatrix<float> p_old;
    gd::gv_new::PackedMatrix<float> p_new;
    double best_old = 1e9, best_new = 1e9;
    for (int r = 0; r < rounds; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < calls / 10 + 1; ++i) p_old.pack(v_old);
      auto t1 = std::chrono::steady_clock::now();
      for (int i = 0; i < calls / 10 + 1; ++i) p_new.pack(v_new);
      auto t2 = std::chrono::steady_clock::now();
      best_old = std::min(best_old, std::chrono::duration<double>(t1 - t0).count() / (calls / 10 + 1));
      best_new = std::min(best_new, std::chrono::duration<double>(t2 - t1).count() / (calls / 10 + 1));
    }
    const bool same = std::memcmp(p_old.panels(), p_new.panels(), sizeof(float) * K * N) == 0;
    const double bytes = 4.0 * K * N;
    std::printf("          %5ld %5ld | %8.1f | %8.1f | %6.3f %s\n", static_cast<long>(K), static_cast<long>(N),
                bytes / best_old * 1e-9, bytes / best_new * 1e-9, best_old / best_new, same ? "same" : "DIFFERENT");
  }
  return 0;
}
