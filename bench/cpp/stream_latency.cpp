// SPDX-License-Identifier: MIT
// Nanoseconds per streaming step (batch 1, float32) for LSTM and GRU over a grid of sizes.
// Prints "kind H I ns_per_step" lines: the median of several timed runs after a warm-up, in
// this thread's CPU time (the machine is shared: wall-clock time would count other processes).
//
//   stream_latency [repeats] [kind H I ...]

#include <gatecell/gatecell.hpp>

#include <algorithm>
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

double ns_per_step(gatecell::CellKind kind, gatecell::index_t H, gatecell::index_t I, int repeats) {
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
  std::vector<double> runs;
  for (int r = 0; r < repeats; ++r) {
    stream.reset();
    const double t0 = thread_cpu_ns();
    for (long k = 0; k < steps; ++k) stream.step(x.data(), y.data());
    runs.push_back((thread_cpu_ns() - t0) / static_cast<double>(steps));
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
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
    std::printf("%s %ld %ld %.1f\n", c.kind.c_str(), c.H, c.I, ns_per_step(kind, c.H, c.I, repeats));
    std::fflush(stdout);
  }
  return 0;
}
