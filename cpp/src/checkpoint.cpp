// SPDX-License-Identifier: MIT
// Safetensors checkpoints: a strict reader, and models rebuilt from their JSON description.
// File layout: u64 little-endian header length N, N bytes of JSON, then the data block.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

#include "detail/json.hpp"

namespace gatecell {

namespace detail {

namespace {

constexpr int kMaxDepth = 64;

class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& what) : s_(text), what_(what) {}

  Json document() {
    Json v = value(0);
    skip_space();
    if (pos_ != s_.size()) fail("unexpected characters after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw CheckpointError(what_ + ": malformed JSON at offset " + std::to_string(pos_) + ": " + why);
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) ++pos_;
  }
  char peek() {
    skip_space();
    if (pos_ >= s_.size()) fail("unexpected end of text");
    return s_[pos_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool literal(const char* word) {
    const std::size_t n = std::strlen(word);
    if (s_.compare(pos_, n, word) != 0) return false;
    pos_ += n;
    return true;
  }

  Json value(int depth) {
    if (depth > kMaxDepth) fail("nested too deeply");
    Json v;
    const char c = peek();
    if (c == '{') {
      v.type = Json::Type::object;
      ++pos_;
      if (peek() == '}') { ++pos_; return v; }
      for (;;) {
        if (peek() != '"') fail("expected a string key");
        std::string key = string();
        if (v.find(key) != nullptr) fail("duplicate key \"" + key + "\"");
        expect(':');
        v.object.emplace_back(std::move(key), value(depth + 1));
        if (peek() == ',') { ++pos_; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type = Json::Type::array;
      ++pos_;
      if (peek() == ']') { ++pos_; return v; }
      for (;;) {
        v.array.push_back(value(depth + 1));
        if (peek() == ',') { ++pos_; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type = Json::Type::string;
      v.string = string();
      return v;
    }
    if (literal("true")) { v.type = Json::Type::boolean; v.boolean = true; return v; }
    if (literal("false")) { v.type = Json::Type::boolean; return v; }
    if (literal("null")) return v;
    return number();
  }

  Json number() {
    const std::size_t start = pos_;
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    auto digits = [&] {
      const std::size_t d = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ > d;
    };
    if (!digits()) fail("expected a value");
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digits()) fail("expected digits after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digits()) fail("expected an exponent");
    }
    Json v;
    v.type = Json::Type::number;
    v.number = std::strtod(s_.substr(start, pos_ - start).c_str(), nullptr);
    return v;
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[pos_++];
      u <<= 4;
      if (h >= '0' && h <= '9') u |= h - '0';
      else if (h >= 'a' && h <= 'f') u |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') u |= h - 'A' + 10;
      else fail("bad \\u escape");
    }
    return u;
  }

  void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') { out += c; continue; }
      if (pos_ >= s_.size()) fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair encodes one code point
            if (!literal("\\u")) fail("unpaired surrogate");
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("unpaired surrogate");
          }
          utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  const std::string& s_;
  const std::string& what_;
  std::size_t pos_ = 0;
};

}  // namespace

Json parse_json(const std::string& text, const std::string& what) { return JsonParser(text, what).document(); }

}  // namespace detail

namespace {

using detail::Json;

std::string shape_text(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// A non-negative integer that a double holds exactly.
index_t as_count(const Json& v, const std::string& what) {
  if (v.type != Json::Type::number || !(v.number >= 0) || v.number > 9007199254740992.0 ||
      std::floor(v.number) != v.number)
    throw CheckpointError(what + ": expected a non-negative integer");
  return static_cast<index_t>(v.number);
}

}  // namespace

CheckpointFile read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw CheckpointError(path + ": cannot open the file");
  const auto file_size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8)
    throw CheckpointError(path + ": truncated: " + std::to_string(file_size) +
                          " bytes, fewer than the 8-byte header length");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  std::uint64_t header_len = 0;
  for (int k = 7; k >= 0; --k) header_len = (header_len << 8) | len_bytes[k];  // little-endian
  if (header_len > file_size - 8)
    throw CheckpointError(path + ": truncated or corrupt: the header claims " + std::to_string(header_len) +
                          " bytes but only " + std::to_string(file_size - 8) + " follow");
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  if (!in) throw CheckpointError(path + ": cannot read the header");
  const Json doc = detail::parse_json(header, path + " header");
  if (doc.type != Json::Type::object) throw CheckpointError(path + ": the header is not a JSON object");

  const std::uint64_t data_size = file_size - 8 - header_len;
  CheckpointFile file;
  struct Span { std::uint64_t begin, end; std::string name; };
  std::vector<Span> spans;
  for (const auto& [name, entry] : doc.object) {
    if (name == "__metadata__") {
      if (entry.type != Json::Type::object) throw CheckpointError(path + ": __metadata__ is not an object");
      for (const auto& [key, value] : entry.object) {
        if (value.type != Json::Type::string)
          throw CheckpointError(path + ": __metadata__[\"" + key + "\"] is not a string");
        file.metadata[key] = value.string;
      }
      continue;
    }
    const std::string what = path + ": tensor '" + name + "'";
    if (entry.type != Json::Type::object) throw CheckpointError(what + ": expected an object");
    for (const auto& kv : entry.object)
      if (kv.first != "dtype" && kv.first != "shape" && kv.first != "data_offsets")
        throw CheckpointError(what + ": unknown field \"" + kv.first + "\"");
    const Json* dtype = entry.find("dtype");
    const Json* shape = entry.find("shape");
    const Json* offsets = entry.find("data_offsets");
    if (dtype == nullptr || shape == nullptr || offsets == nullptr)
      throw CheckpointError(what + ": expected the fields dtype, shape and data_offsets");
    if (dtype->type != Json::Type::string || (dtype->string != "F32" && dtype->string != "F64"))
      throw CheckpointError(what + ": unsupported dtype " +
                            (dtype->type == Json::Type::string ? dtype->string : std::string("(not a string)")) +
                            "; expected F32 or F64");
    if (file.dtype.empty()) file.dtype = dtype->string;
    if (dtype->string != file.dtype)
      throw CheckpointError(what + ": mixed dtypes: " + dtype->string + " after " + file.dtype);
    if (shape->type != Json::Type::array) throw CheckpointError(what + ": shape is not an array");
    Tensor<double> t;
    std::uint64_t count = 1;
    for (const Json& d : shape->array) {
      t.shape.push_back(as_count(d, what + " shape"));
      if (t.shape.back() != 0 && count > data_size / static_cast<std::uint64_t>(t.shape.back()))
        throw CheckpointError(what + ": shape " + shape_text(t.shape) + " is larger than the file");
      count *= static_cast<std::uint64_t>(t.shape.back());
    }
    if (offsets->type != Json::Type::array || offsets->array.size() != 2)
      throw CheckpointError(what + ": data_offsets must be [begin, end]");
    const auto begin = static_cast<std::uint64_t>(as_count(offsets->array[0], what + " data_offsets"));
    const auto end = static_cast<std::uint64_t>(as_count(offsets->array[1], what + " data_offsets"));
    const std::uint64_t elem = dtype->string == "F32" ? 4 : 8;
    if (begin > end || end > data_size)
      throw CheckpointError(what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                            "] out of range (the data block has " + std::to_string(data_size) + " bytes)");
    if (end - begin != count * elem)
      throw CheckpointError(what + ": data_offsets span " + std::to_string(end - begin) + " bytes, shape " +
                            shape_text(t.shape) + " needs " + std::to_string(count * elem));
    spans.push_back({begin, end, name});
    file.tensors[name] = std::move(t);
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  std::uint64_t covered = 0;
  for (const Span& s : spans) {
    if (s.begin < covered) throw CheckpointError(path + ": tensor '" + s.name + "' overlaps another tensor");
    if (s.begin > covered) throw CheckpointError(path + ": gap in the data block before tensor '" + s.name + "'");
    covered = s.end;
  }
  if (covered != data_size)
    throw CheckpointError(path + ": " + std::to_string(data_size - covered) +
                          " bytes after the last tensor (corrupt or not a safetensors file)");

  std::vector<unsigned char> bytes(data_size);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(data_size));
  if (!in) throw CheckpointError(path + ": cannot read the data block");
  const std::uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  if (first != 1) throw CheckpointError(path + ": this reader supports little-endian machines only");
  for (const Span& s : spans) {
    Tensor<double>& t = file.tensors[s.name];
    if (file.dtype == "F32") {
      std::vector<float> tmp((s.end - s.begin) / 4);
      std::memcpy(tmp.data(), bytes.data() + s.begin, s.end - s.begin);
      t.data.assign(tmp.begin(), tmp.end());
    } else {
      t.data.resize((s.end - s.begin) / 8);
      std::memcpy(t.data.data(), bytes.data() + s.begin, s.end - s.begin);
    }
  }
  return file;
}

namespace {

// Reads one child's config, checking that every key is known and has the right type.
class ConfigReader {
 public:
  ConfigReader(const Json& cfg, std::string what) : cfg_(cfg), what_(std::move(what)) {
    if (cfg.type != Json::Type::object) throw CheckpointError(what_ + ": expected a JSON object");
  }
  void allow(std::initializer_list<const char*> keys) const {
    for (const auto& kv : cfg_.object) {
      bool known = false;
      for (const char* k : keys) known = known || kv.first == k;
      if (!known) throw CheckpointError(what_ + ": unknown config key \"" + kv.first + "\"");
    }
  }
  index_t count(const char* key, index_t fallback, bool required) const {
    const Json* v = cfg_.find(key);
    if (v == nullptr) {
      if (required) throw CheckpointError(what_ + ": missing config key \"" + key + "\"");
      return fallback;
    }
    return as_count(*v, what_ + " \"" + key + "\"");
  }
  bool flag(const char* key, bool fallback) const {
    const Json* v = cfg_.find(key);
    if (v == nullptr) return fallback;
    if (v->type != Json::Type::boolean) throw CheckpointError(what_ + ": \"" + key + "\" must be true or false");
    return v->boolean;
  }
  double real(const char* key, double fallback) const {
    const Json* v = cfg_.find(key);
    if (v == nullptr) return fallback;
    if (v->type != Json::Type::number) throw CheckpointError(what_ + ": \"" + key + "\" must be a number");
    return v->number;
  }
  // A number, or `fallback` when the key is absent or null.
  double optional_real(const char* key, double fallback) const {
    const Json* v = cfg_.find(key);
    if (v == nullptr || v->type == Json::Type::null) return fallback;
    return real(key, fallback);
  }
  std::string text(const char* key, const std::string& fallback) const {
    const Json* v = cfg_.find(key);
    if (v == nullptr) return fallback;
    if (v->type != Json::Type::string) throw CheckpointError(what_ + ": \"" + key + "\" must be a string");
    return v->string;
  }

 private:
  const Json& cfg_;
  std::string what_;
};

// The ONNX spellings config() writes, in the order of gatecell::Activation.
constexpr const char* kActivationNames[] = {"Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu",
                                            "ScaledTanh", "HardSigmoid", "Elu", "Softsign", "Softplus"};

// config()'s "activations": null (torch's functions) or a list of [OnnxName, alpha, beta].
std::vector<ActivationSpec> read_activations(const Json* v, const std::string& what) {
  std::vector<ActivationSpec> out;
  if (v == nullptr || v->type == Json::Type::null) return out;
  const std::string bad = what + ": \"activations\" must be null or a list of [name, alpha, beta]";
  if (v->type != Json::Type::array) throw CheckpointError(bad);
  for (const Json& item : v->array) {
    if (item.type != Json::Type::array || item.array.size() != 3 || item.array[0].type != Json::Type::string ||
        item.array[1].type != Json::Type::number || item.array[2].type != Json::Type::number)
      throw CheckpointError(bad);
    ActivationSpec spec;
    bool known = false;
    for (std::size_t k = 0; k < std::size(kActivationNames); ++k) {
      if (item.array[0].string == kActivationNames[k]) {
        spec.kind = static_cast<Activation>(k);
        known = true;
      }
    }
    if (!known) throw CheckpointError(what + ": unknown activation \"" + item.array[0].string + "\"");
    spec.alpha = item.array[1].number;
    spec.beta = item.array[2].number;
    out.push_back(spec);
  }
  return out;
}

template <typename Scalar>
const char* dtype_word() {
  return sizeof(Scalar) == 4 ? "float32" : "float64";
}

// Fills `params` (already shaped) from tensors[prefix + name], recording the names used.
template <typename Scalar>
void fill_parameters(ParameterMap<Scalar>& params, const std::map<std::string, Tensor<Scalar>>& tensors,
                     const std::string& prefix, const std::string& what, std::set<std::string>& used) {
  for (auto& [name, p] : params) {
    const std::string full = prefix + name;
    auto it = tensors.find(full);
    if (it == tensors.end()) throw CheckpointError(what + ": missing tensor '" + full + "'");
    if (it->second.shape != p.shape)
      throw CheckpointError("tensor '" + full + "': expected shape " + shape_text(p.shape) + ", got " +
                            shape_text(it->second.shape));
    p.data = it->second.data;
    used.insert(full);
  }
}

template <typename Scalar>
ModelChild<Scalar> build_child(const Json& cfg, const std::string& name,
                               const std::map<std::string, Tensor<Scalar>>& tensors, std::set<std::string>& used) {
  const std::string what = name.empty() ? std::string("model") : "module '" + name + "'";
  const ConfigReader r(cfg, what);
  const std::string type = r.text("type", "");
  const std::string prefix = name.empty() ? "" : name + ".";
  ModelChild<Scalar> child;
  child.name = name;
  auto check_dtype = [&] {
    const std::string dtype = r.text("dtype", dtype_word<Scalar>());
    if (dtype != "float32" && dtype != "float64")
      throw CheckpointError(what + ": dtype must be \"float32\" or \"float64\", got \"" + dtype + "\"");
    if (dtype != dtype_word<Scalar>())
      throw CheckpointError(what + ": the model is " + dtype + ", requested " + dtype_word<Scalar>());
  };
  const bool is_cell = type == "RNNCell" || type == "LSTMCell" || type == "GRUCell";
  if (type == "RNN" || type == "LSTM" || type == "GRU" || is_cell) {
    const std::string base = is_cell ? type.substr(0, type.size() - 4) : type;
    if (is_cell) {
      if (base == "RNN")
        r.allow({"name", "type", "input_size", "hidden_size", "bias", "nonlinearity", "activations", "clip", "dtype"});
      else if (base == "LSTM")
        r.allow({"name", "type", "input_size", "hidden_size", "bias", "activations", "clip", "input_forget",
                 "peepholes", "dtype"});
      else
        r.allow({"name", "type", "input_size", "hidden_size", "bias", "linear_before_reset", "activations", "clip",
                 "dtype"});
    } else {
      if (base == "RNN")
        r.allow({"name", "type", "input_size", "hidden_size", "num_layers", "nonlinearity", "bias", "batch_first",
                 "dropout", "bidirectional", "reverse", "activations", "clip", "dtype"});
      else if (base == "LSTM")
        r.allow({"name", "type", "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional", "reverse", "proj_size", "activations", "clip", "input_forget", "peepholes",
                 "dtype"});
      else
        r.allow({"name", "type", "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional", "reverse", "linear_before_reset", "activations", "clip", "dtype"});
    }
    check_dtype();
    NetworkConfig c;
    if (base == "RNN") {
      const std::string nl = r.text("nonlinearity", "tanh");
      if (nl != "tanh" && nl != "relu")
        throw CheckpointError(what + ": nonlinearity must be \"tanh\" or \"relu\", got \"" + nl + "\"");
      c.kind = nl == "relu" ? CellKind::rnn_relu : CellKind::rnn_tanh;
    } else {
      c.kind = base == "LSTM" ? CellKind::lstm : CellKind::gru;
    }
    c.input_size = r.count("input_size", 0, true);
    c.hidden_size = r.count("hidden_size", 0, true);
    c.num_layers = r.count("num_layers", 1, false);
    c.proj_size = r.count("proj_size", 0, false);
    c.bias = r.flag("bias", true);
    c.bidirectional = r.flag("bidirectional", false);
    c.linear_before_reset = r.flag("linear_before_reset", true);
    c.dropout = r.real("dropout", 0.0);
    c.reverse = r.flag("reverse", false);
    c.input_forget = r.flag("input_forget", false);
    c.peepholes = r.flag("peepholes", false);
    c.clip = r.optional_real("clip", 0.0);  // null: no clipping, which the core spells 0
    if (cfg.find("clip") != nullptr && cfg.find("clip")->type != Json::Type::null && !(c.clip > 0.0))
      throw CheckpointError(what + ": \"clip\" must be null or a positive number");
    c.activations = read_activations(cfg.find("activations"), what);
    try {
      c.validate();
    } catch (const CheckpointError&) {
      throw;
    } catch (const ShapeError& e) {
      throw CheckpointError(what + ": " + e.what());
    }
    child.kind = is_cell ? ModuleKind::cell : ModuleKind::recurrent;
    child.network = std::make_unique<Network<Scalar>>(c, r.flag("batch_first", false), 0, is_cell);
    fill_parameters(child.network->parameters(), tensors, prefix, what, used);
  } else if (type == "Linear") {
    r.allow({"name", "type", "in_features", "out_features", "bias", "dtype"});
    check_dtype();
    const index_t in = r.count("in_features", 0, true), out = r.count("out_features", 0, true);
    if (in == 0 || out == 0) throw CheckpointError(what + ": in_features and out_features must be positive");
    child.kind = ModuleKind::linear;
    child.linear = std::make_unique<Linear<Scalar>>(in, out, r.flag("bias", true));
    fill_parameters(child.linear->parameters(), tensors, prefix, what, used);
  } else if (type == "Dropout") {
    r.allow({"name", "type", "p"});
    child.kind = ModuleKind::dropout;
    child.p = r.real("p", 0.5);
    if (!(child.p >= 0.0 && child.p <= 1.0)) throw CheckpointError(what + ": p must be in [0, 1]");
  } else if (type == "LastStep") {
    r.allow({"name", "type"});
    child.kind = ModuleKind::last_step;
  } else {
    throw CheckpointError(what + ": unknown module type \"" + type + "\"");
  }
  return child;
}

}  // namespace

template <typename Scalar>
Model<Scalar> Model<Scalar>::from_config(const std::string& config_json,
                                         const std::map<std::string, Tensor<Scalar>>& tensors) {
  const Json cfg = detail::parse_json(config_json, "model description");
  if (cfg.type != Json::Type::object) throw CheckpointError("model description: expected a JSON object");
  Model model;
  std::set<std::string> used;
  const Json* type = cfg.find("type");
  if (type != nullptr && type->type == Json::Type::string && type->string == "Sequential") {
    for (const auto& kv : cfg.object)
      if (kv.first != "type" && kv.first != "modules")
        throw CheckpointError("Sequential: unknown config key \"" + kv.first + "\"");
    const Json* modules = cfg.find("modules");
    if (modules == nullptr || modules->type != Json::Type::array || modules->array.empty())
      throw CheckpointError("Sequential: \"modules\" must be a non-empty list");
    std::set<std::string> names;
    for (const Json& m : modules->array) {
      const Json* name = m.find("name");
      if (name == nullptr || name->type != Json::Type::string || name->string.empty())
        throw CheckpointError("Sequential: every module needs a non-empty \"name\"");
      if (!names.insert(name->string).second)
        throw CheckpointError("Sequential: duplicate module name '" + name->string + "'");
      model.children_.push_back(build_child(m, name->string, tensors, used));
    }
  } else {
    if (cfg.find("name") != nullptr) throw CheckpointError("model: unknown config key \"name\"");
    model.children_.push_back(build_child(cfg, "", tensors, used));
  }
  for (const auto& [name, t] : tensors)
    if (used.count(name) == 0) throw CheckpointError("unknown tensor '" + name + "' for the described model");
  // Each child's input width must be its predecessor's output width.
  index_t width = -1;
  for (const auto& c : model.children_) {
    index_t in = -1, out = width;
    if (c.network) {
      in = c.network->config().input_size;
      out = c.network->config().directions() * c.network->config().output_size();
    } else if (c.linear) {
      in = c.linear->in_features();
      out = c.linear->out_features();
    }
    if (in >= 0 && width >= 0 && in != width)
      throw CheckpointError("module '" + c.name + "': input size " + std::to_string(in) +
                            " does not match the previous module's output size " + std::to_string(width));
    width = out;
  }
  return model;
}

template <typename Scalar>
Model<Scalar> load_model(const std::string& path) {
  CheckpointFile file = read_checkpoint(path);
  auto it = file.metadata.find("gatecell_model");
  if (it == file.metadata.end())
    throw CheckpointError(path + ": no \"gatecell_model\" entry in __metadata__ (not saved by gatecell.save?)");
  const char* want = sizeof(Scalar) == 4 ? "F32" : "F64";
  if (!file.dtype.empty() && file.dtype != want)
    throw CheckpointError(path + ": the tensors are " + file.dtype + ", requested " + want);
  std::map<std::string, Tensor<Scalar>> tensors;
  for (auto& [name, t] : file.tensors)
    tensors[name] = Tensor<Scalar>{t.shape, std::vector<Scalar>(t.data.begin(), t.data.end())};
  try {
    return Model<Scalar>::from_config(it->second, tensors);
  } catch (const CheckpointError& e) {
    throw CheckpointError(path + ": " + e.what());
  }
}

template Model<float> Model<float>::from_config(const std::string&, const std::map<std::string, Tensor<float>>&);
template Model<double> Model<double>::from_config(const std::string&, const std::map<std::string, Tensor<double>>&);
template Model<float> load_model<float>(const std::string&);
template Model<double> load_model<double>(const std::string&);

}  // namespace gatecell
