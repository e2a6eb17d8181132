// SPDX-License-Identifier: MIT
// Nanoseconds per streaming step (batch 1, float32) for LSTM and GRU over a grid of sizes.
// Prints "kind H I median min read arith" lines: the median and the fastest of several timed
// runs after a warm-up, in this thread's CPU time (the machine is shared: wall-clock time would
// count other processes); then two floors measured on this core: `read`, one pass over as many
// bytes as the cell's weights with the kernel's access pattern (eight FMAs per broadcast, every
// weight loaded once), and `arith`, the cell's multiply-adds at this core's peak FMA rate.
// (Where AVX2 + FMA are missing, both floors print as 0.)
//
//   stream_latency [repeats] [kind H I ...]

#include <gatecell/gatecell.hpp>

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

double thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return 1e9 * static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double median, min;
};

template <typename Run>
Timing time_runs(int repeats, long steps, const Run& run) {
  std::vector<double> runs;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = thread_cpu_ns();
    run();
    runs.push_back((thread_cpu_ns() - t0) / static_cast<double>(steps));
  }
  std::sort(runs.begin(), runs.end());
  return {runs[runs.size() / 2], runs.front()};
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BENCH_AVX2 __attribute__((target("avx2,fma")))

// One pass over `floats` weights in rows of 64, eight accumulators, one broadcast per row.
BENCH_AVX2 __attribute__((noinline)) void read_pass(const float* w, long floats, const float* u, float* out) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (long k = 0; k < floats; k += 64, w += 64) {
    const __m256 s = _mm256_broadcast_ss(u + ((k >> 6) & 63));
    a0 = _mm256_fmadd_ps(_mm256_load_ps(w), s, a0), a1 = _mm256_fmadd_ps(_mm256_load_ps(w + 8), s, a1);
    a2 = _mm256_fmadd_ps(_mm256_load_ps(w + 16), s, a2), a3 = _mm256_fmadd_ps(_mm256_load_ps(w + 24), s, a3);
    a4 = _mm256_fmadd_ps(_mm256_load_ps(w + 32), s, a4), a5 = _mm256_fmadd_ps(_mm256_load_ps(w + 40), s, a5);
    a6 = _mm256_fmadd_ps(_mm256_load_ps(w + 48), s, a6), a7 = _mm256_fmadd_ps(_mm256_load_ps(w + 56), s, a7);
  }
  const __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                   _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  _mm256_storeu_ps(out, sum);
}

// Peak multiply-adds per ns of one core: ten independent FMA chains (enough to cover the latency).
BENCH_AVX2 __attribute__((noinline)) double fma_per_ns() {
  __m256 a[10];
  for (int v = 0; v < 10; ++v) a[v] = _mm256_set1_ps(0.001f * static_cast<float>(v));
  const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
  const long n = 2000000;
  double best = 1e300;
  for (int r = 0; r < 5; ++r) {
    const double t0 = thread_cpu_ns();
    for (long i = 0; i < n; ++i) {
#pragma GCC unroll 10
      for (int v = 0; v < 10; ++v) a[v] = _mm256_fmadd_ps(a[v], b, c);
    }
    best = std::min(best, thread_cpu_ns() - t0);
  }
  float sink[8];
  _mm256_storeu_ps(sink, a[3]);
  if (sink[0] == 12345.0f) std::printf(" ");
  return 80.0 * static_cast<double>(n) / best;
}

bool have_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#else
void read_pass(const float*, long, const float*, float*) {}
double fma_per_ns() { return 0.0; }
bool have_avx2() { return false; }
#endif

// The two floors of a cell with `macs` multiply-adds (= weights) per step.
void floors(long macs, int repeats, double& read, double& arith) {
  read = arith = 0.0;
  if (!have_avx2()) return;
  const long floats = (macs + 63) / 64 * 64;
  float* w = static_cast<float*>(::operator new(floats * sizeof(float), std::align_val_t{64}));
  std::fill(w, w + floats, 0.01f);
  std::vector<float> u(64, 0.5f), out(64);
  const long passes = std::max(1000L, 5000000L / floats);
  read_pass(w, floats, u.data(), out.data());
  read = time_runs(repeats, passes, [&] { for (long p = 0; p < passes; ++p) read_pass(w, floats, u.data(), out.data()); }).min;
  ::operator delete(w, std::align_val_t{64});
  arith = static_cast<double>(macs) / fma_per_ns();
}

Timing ns_per_step(gatecell::CellKind kind, gatecell::index_t H, gatecell::index_t I, int repeats) {
  gatecell::NetworkConfig c;
  c.kind = kind;
  c.input_size = I;
  c.hidden_size = H;
  gatecell::Model<float> model;
  gatecell::ModelChild<float> child;
  child.kind = gatecell::ModuleKind::recurrent;
  child.network = std::make_unique<gatecell::Network<float>>(c, false, 1);
  model.children().push_back(std::move(child));
  gatecell::Stream<float> stream = model.stream(1);
  std::vector<float> x(I, 0.5f), y(H);
  // Enough steps per run for ~5 ms, so the clock's resolution does not matter.
  const long steps = std::max(1000L, 5000000L / std::max<long>(1, 4 * H * (H + I)));
  for (long k = 0; k < steps; ++k) stream.step(x.data(), y.data());
  return time_runs(repeats, steps, [&] {
    stream.reset();
    for (long k = 0; k < steps; ++k) stream.step(x.data(), y.data());
  });
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 9;
  struct Case { std::string kind; long H, I; };
  std::vector<Case> cases;
  for (int k = 2; k + 2 < argc; k += 3) cases.push_back({argv[k], std::atol(argv[k + 1]), std::atol(argv[k + 2])});
  if (cases.empty()) {
    for (const char* kind : {"lstm", "gru"})
      for (long I : {1L, 16L})
        for (long H : {16L, 32L, 64L, 128L}) cases.push_back({kind, H, I});
  }
  for (const Case& c : cases) {
    const auto kind = c.kind == "gru" ? gatecell::CellKind::gru : gatecell::CellKind::lstm;
    const Timing t = ns_per_step(kind, c.H, c.I, repeats);
    double read, arith;
    floors((c.kind == "gru" ? 3 : 4) * c.H * (c.H + c.I), repeats, read, arith);
    std::printf("%s %ld %ld %.1f %.1f %.1f %.1f\n", c.kind.c_str(), c.H, c.I, t.median, t.min, read, arith);
    std::fflush(stdout);
  }
  return 0;
}
