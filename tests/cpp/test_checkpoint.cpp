// SPDX-License-Identifier: MIT
// Checkpoint loading: a valid file round-trips; truncated, corrupt and mismatched files throw
// gatecell::CheckpointError naming the problem, never crash.

#include <doctest/doctest.h>

#include <gatecell/gatecell.hpp>

#include <cstdio>
#include <fstream>
#include <string>

#include "helpers.hpp"

using gatecell::CheckpointError;
using gatecell::index_t;

namespace {

std::string temp_path(const std::string& tag) {
  return (std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp")) + "/gatecell_test_" + tag + ".safetensors";
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string u64le(std::uint64_t n) {
  std::string s(8, '\0');
  for (int k = 0; k < 8; ++k) s[k] = static_cast<char>((n >> (8 * k)) & 0xFF);
  return s;
}

// A safetensors file of a double-precision network's parameters with the given model description.
// `edit` may rewrite the JSON header text before it is written.
std::string checkpoint_bytes(const gatecell::Network<double>& net, const std::string& model_json,
                             const std::string& dtype = "F64") {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\",\"gatecell_model\":\"";
  for (char ch : model_json) header += ch == '"' ? std::string("\\\"") : std::string(1, ch);
  header += "\"}";
  std::string data;
  for (const auto& [name, t] : net.parameters()) {
    header += ",\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[";
    for (std::size_t k = 0; k < t.shape.size(); ++k) header += (k ? "," : "") + std::to_string(t.shape[k]);
    const std::size_t begin = data.size();
    if (dtype == "F64") {
      data.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(double));
    } else {
      for (double v : t.data) {
        const float f = static_cast<float>(v);
        data.append(reinterpret_cast<const char*>(&f), sizeof f);
      }
    }
    header += "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
  }
  header += "}";
  return u64le(header.size()) + header + data;
}

gatecell::NetworkConfig lstm_config() {
  gatecell::NetworkConfig c;
  c.kind = gatecell::CellKind::lstm;
  c.input_size = 2;
  c.hidden_size = 3;
  c.num_layers = 2;
  return c;
}

const char* kLstmJson =
    "{\"type\": \"LSTM\", \"input_size\": 2, \"hidden_size\": 3, \"num_layers\": 2, \"batch_first\": false, "
    "\"dropout\": 0.0, \"bidirectional\": false, \"bias\": true, \"proj_size\": 0, \"dtype\": \"float64\"}";

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a checkpoint round-trips into a model that streams like the network") {
  gatecell::Network<double> net(lstm_config(), false, 5);
  const std::string path = temp_path("valid");
  write_raw(path, checkpoint_bytes(net, kLstmJson));
  const auto file = gatecell::read_checkpoint(path);
  CHECK(file.dtype == "F64");
  CHECK(file.tensors.size() == net.parameters().size());
  const auto model = gatecell::load_model<double>(path);
  const auto x = gatecell_test::random_vector<double>(4 * 2, 1);
  const auto out = net.forward(x, 4, 1);
  auto s = model.stream(1);
  for (index_t t = 0; t < 4; ++t)
    CHECK(gatecell_test::max_abs_diff(s.step(x.data() + 2 * t), out.y.data() + 3 * t, 3) < 1e-14);
  CHECK(error_of([&] { gatecell::load_model<float>(path); }).find("requested F32") != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("truncated files throw at every length") {
  gatecell::Network<double> net(lstm_config(), false, 5);
  const std::string bytes = checkpoint_bytes(net, kLstmJson);
  const std::string path = temp_path("truncated");
  for (std::size_t cut = 0; cut < bytes.size(); cut += (cut < 64 ? 1 : 13)) {
    write_raw(path, bytes.substr(0, cut));
    CAPTURE(cut);
    CHECK(!error_of([&] { gatecell::load_model<double>(path); }).empty());
  }
  std::remove(path.c_str());
}

TEST_CASE("corrupt and mismatched files throw a clear CheckpointError") {
  gatecell::Network<double> net(lstm_config(), false, 5);
  const std::string good = checkpoint_bytes(net, kLstmJson);
  const std::string path = temp_path("corrupt");
  auto check = [&](const std::string& bytes, const std::string& expected) {
    write_raw(path, bytes);
    const std::string msg = error_of([&] { gatecell::load_model<double>(path); });
    CAPTURE(msg);
    CHECK(msg.find(expected) != std::string::npos);
  };
  auto replace = [&](std::string s, const std::string& from, const std::string& to) {
    const std::size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    return s;
  };
  // Edits the JSON header of a file and rewrites its length prefix.
  auto edit_header = [&](const std::string& bytes, const std::string& from, const std::string& to) {
    std::uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(bytes[k]);
    const std::string header = replace(bytes.substr(8, n), from, to);
    return u64le(header.size()) + header + bytes.substr(8 + n);
  };
  check(u64le(1u << 30) + "{}", "truncated");
  check(u64le(5) + "{\"a\":", "malformed JSON");
  check(u64le(9) + "[1, 2, 3]", "not a JSON object");
  check(u64le(4000) + std::string(2000, '[') + std::string(2000, ']'), "nested too deeply");
  check(edit_header(good, "\"F64\"", "\"I64\""), "unsupported dtype");
  check(checkpoint_bytes(net, kLstmJson, "F32"), "the tensors are F32, requested F64");
  check(good + "12345678", "after the last tensor");
  check(edit_header(good, "\"data_offsets\":[96,192]", "\"data_offsets\":[0,96]"), "overlaps");
  check(edit_header(good, "\"data_offsets\":[0,96]", "\"data_offsets\":[100000,100096]"), "out of range");
  check(edit_header(good, "\"shape\":[12]", "\"shape\":[13]"), "needs");
  check(checkpoint_bytes(net, replace(kLstmJson, "LSTM", "Mamba")), "unknown module type");
  check(checkpoint_bytes(net, replace(kLstmJson, "\"num_layers\": 2", "\"num_layers\": 3")), "missing tensor");
  check(checkpoint_bytes(net, replace(kLstmJson, "\"num_layers\": 2", "\"num_layers\": 1")), "unknown tensor");
  check(checkpoint_bytes(net, replace(kLstmJson, "\"hidden_size\": 3", "\"hidden_size\": 4")), "expected shape");
  check(checkpoint_bytes(net, replace(kLstmJson, "\"bias\": true", "\"bias\": true, \"zoneout\": 0.1")),
        "unknown config key");
  check(checkpoint_bytes(net, replace(kLstmJson, "\"bias\": true", "\"bias\": true, \"clip\": -1")),
        "\"clip\" must be null or a positive number");
  check(checkpoint_bytes(net, replace(kLstmJson, "\"bias\": true", "\"bias\": true, \"activations\": \"tanh\"")),
        "\"activations\" must be null or a list");
  check(checkpoint_bytes(net, replace(kLstmJson, "\"bias\": true",
                                      "\"bias\": true, \"activations\": [[\"Swish\", 1, 0], [\"Tanh\", 0, 0], "
                                      "[\"Tanh\", 0, 0]]")),
        "unknown activation \"Swish\"");
  check(checkpoint_bytes(net, replace(kLstmJson, "\"bidirectional\": false", "\"bidirectional\": true, \"reverse\": true")),
        "reverse applies to unidirectional networks only");
  check(checkpoint_bytes(net, replace(kLstmJson, "\"input_size\": 2", "\"input_size\": -2")), "non-negative");
  CHECK(error_of([] { gatecell::read_checkpoint("/nonexistent/x.safetensors"); }).find("cannot open") !=
        std::string::npos);
  // Random byte changes: an error or a successful load, never a crash.
  std::mt19937 rng(7);
  for (int k = 0; k < 300; ++k) {
    std::string bytes = good;
    for (int j = 0; j < 3; ++j) bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xFF);
    write_raw(path, bytes);
    try {
      gatecell::load_model<double>(path);
    } catch (const gatecell::ShapeError&) {
    }
  }
  std::remove(path.c_str());
}

namespace {

// Each sequence's first lengths[n] steps of a time-major [T, N, C] buffer in reverse order.
std::vector<double> flip(const std::vector<double>& a, index_t T, index_t N, const std::vector<index_t>& lengths) {
  const index_t C = static_cast<index_t>(a.size()) / (T * N);
  std::vector<double> out = a;
  for (index_t n = 0; n < N; ++n)
    for (index_t t = 0; t < lengths[n]; ++t)
      std::copy_n(a.data() + ((lengths[n] - 1 - t) * N + n) * C, C, out.data() + (t * N + n) * C);
  return out;
}

// The message of the ShapeError model.stream() throws, or "" when it streams.
std::string stream_error(const gatecell::Model<double>& model) {
  try {
    model.stream(1);
  } catch (const gatecell::ShapeError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a reverse layer's checkpoint runs like the forward network on flipped sequences") {
  for (auto kind : {gatecell::CellKind::rnn_tanh, gatecell::CellKind::lstm, gatecell::CellKind::gru}) {
    gatecell::NetworkConfig c = lstm_config();
    c.kind = kind;
    c.reverse = true;
    gatecell::Network<double> rev(c, false, 9);
    c.reverse = false;
    gatecell::Network<double> fwd(c, false, 1);
    for (auto& [name, t] : fwd.parameters()) t.data = rev.parameters().at(name).data;
    const std::string type = kind == gatecell::CellKind::lstm ? "LSTM" : kind == gatecell::CellKind::gru ? "GRU" : "RNN";
    const std::string json = "{\"type\": \"" + type + "\", \"input_size\": 2, \"hidden_size\": 3, \"num_layers\": 2, "
                             "\"reverse\": true, \"dtype\": \"float64\"}";
    const std::string path = temp_path("reverse");
    write_raw(path, checkpoint_bytes(rev, json));
    auto model = gatecell::load_model<double>(path);
    std::remove(path.c_str());
    CAPTURE(type);

    const index_t T = 5, N = 3;
    const std::vector<index_t> lengths{5, 2, 4};
    const auto x = gatecell_test::random_vector<double>(T * N * 2, 3);
    const auto y = model.forward(x, T, N, lengths);
    const auto y_fwd = flip(fwd.forward(flip(x, T, N, lengths), T, N, lengths).y, T, N, lengths);
    REQUIRE(y.size() == y_fwd.size());
    CHECK(gatecell_test::max_abs_diff(y.data(), y_fwd.data(), y.size()) < 1e-12);

    // Backward: the gradients of the reverse network are those of the forward one on flipped data.
    rev.train();
    fwd.train();
    const auto dy = gatecell_test::random_vector<double>(y.size(), 4);
    const auto out_rev = rev.forward(x, T, N, lengths);
    fwd.forward(flip(x, T, N, lengths), T, N, lengths);
    const auto dh_n = gatecell_test::random_vector<double>(out_rev.h_n.size(), 5);
    const auto g_rev = rev.backward(dy, dh_n);
    const auto g_fwd = fwd.backward(flip(dy, T, N, lengths), dh_n);
    const auto dx_fwd = flip(g_fwd.dx, T, N, lengths);
    CHECK(gatecell_test::max_abs_diff(g_rev.dx.data(), dx_fwd.data(), dx_fwd.size()) < 1e-12);
    CHECK(gatecell_test::max_abs_diff(g_rev.dh0.data(), g_fwd.dh0.data(), g_fwd.dh0.size()) < 1e-12);
    for (const auto& [name, g] : fwd.grads()) {
      CAPTURE(name);
      CHECK(gatecell_test::max_abs_diff(rev.grads().at(name).data.data(), g.data.data(), g.data.size()) < 1e-12);
    }
    CHECK(stream_error(model).find("reverse") != std::string::npos);
  }
}

TEST_CASE("a variant layer's checkpoint rebuilds the same network: activations, clip, input_forget, peepholes") {
  using gatecell::Activation;
  gatecell::NetworkConfig c = lstm_config();
  c.bidirectional = true;
  c.clip = 0.75;
  c.input_forget = true;
  c.peepholes = true;
  c.activations = {{Activation::hard_sigmoid, 0.3, 0.4}, {Activation::leaky_relu, 0.2, 0.0},
                   {Activation::softsign, 0.0, 0.0}, {Activation::scaled_tanh, 0.9, 1.2},
                   {Activation::elu, 0.7, 0.0}, {Activation::thresholded_relu, 0.1, 0.0}};
  gatecell::Network<double> net(c, false, 11);
  CHECK(net.parameters().count("weight_peep_l1_reverse") == 1);
  const std::string json =
      "{\"type\": \"LSTM\", \"input_size\": 2, \"hidden_size\": 3, \"num_layers\": 2, \"bidirectional\": true, "
      "\"clip\": 0.75, \"input_forget\": true, \"peepholes\": true, \"activations\": [[\"HardSigmoid\", 0.3, 0.4], "
      "[\"LeakyRelu\", 0.2, 0.0], [\"Softsign\", 0.0, 0.0], [\"ScaledTanh\", 0.9, 1.2], [\"Elu\", 0.7, 0.0], "
      "[\"ThresholdedRelu\", 0.1, 0.0]], \"dtype\": \"float64\"}";
  const std::string path = temp_path("variants");
  write_raw(path, checkpoint_bytes(net, json));
  auto model = gatecell::load_model<double>(path);
  std::remove(path.c_str());
  const index_t T = 4, N = 2;
  const auto x = gatecell_test::random_vector<double>(T * N * 2, 6);
  const auto y = model.forward(x, T, N, {4, 3});
  const auto expected = net.forward(x, T, N, {4, 3}).y;
  REQUIRE(y.size() == expected.size());
  CHECK(gatecell_test::max_abs_diff(y.data(), expected.data(), y.size()) == 0.0);
  const gatecell::NetworkConfig& read = model.children()[0].network->config();
  CHECK(read.clip == 0.75);
  CHECK(read.input_forget);
  CHECK(read.peepholes);
  REQUIRE(read.activations.size() == c.activations.size());
  for (std::size_t k = 0; k < c.activations.size(); ++k) {
    CHECK(read.activations[k].kind == c.activations[k].kind);
    CHECK(read.activations[k].alpha == c.activations[k].alpha);
    CHECK(read.activations[k].beta == c.activations[k].beta);
  }
  CHECK(stream_error(model).find("variants") != std::string::npos);
}
