// SPDX-License-Identifier: MIT
// Loads a checkpoint written by gatecell.save in Python and runs it one time step at a time.
//
//   stream_checkpoint model.safetensors < steps.txt
//
// Each input line holds one step's input_size numbers (batch 1); each output line holds the
// model's outputs for that step, printed with full precision.

#include <gatecell/gatecell.hpp>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

template <typename Scalar>
int run(const std::string& path) {
  const gatecell::Model<Scalar> model = gatecell::load_model<Scalar>(path);
  gatecell::Stream<Scalar> stream = model.stream(1);
  std::fprintf(stderr, "%s: %s, input %lld, output %lld\n", path.c_str(), sizeof(Scalar) == 4 ? "float32" : "float64",
               static_cast<long long>(stream.input_size()), static_cast<long long>(stream.output_size()));
  std::vector<Scalar> x(stream.input_size());
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    for (auto& v : x) {
      double d;
      if (!(in >> d)) {
        std::fprintf(stderr, "each line needs %lld numbers\n", static_cast<long long>(x.size()));
        return 1;
      }
      v = static_cast<Scalar>(d);
    }
    const Scalar* y = stream.step(x.data());
    for (gatecell::index_t j = 0; j < stream.output_size(); ++j)
      std::printf(j ? " %.17g" : "%.17g", static_cast<double>(y[j]));
    std::printf("\n");
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL.safetensors < steps.txt\n", argv[0]);
    return 2;
  }
  try {
    const std::string dtype = gatecell::read_checkpoint(argv[1]).dtype;
    return dtype == "F64" ? run<double>(argv[1]) : run<float>(argv[1]);
  } catch (const gatecell::ShapeError& e) {  // CheckpointError included
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
