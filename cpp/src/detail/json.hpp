// SPDX-License-Identifier: MIT
#pragma once
// A small strict JSON reader for safetensors headers and model descriptions. Every error is a
// CheckpointError naming the offset; depth is bounded so hostile input cannot exhaust the stack.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gatecell/model.hpp"

namespace gatecell::detail {

struct Json {
  enum class Type { null, boolean, number, string, array, object };
  Type type = Type::null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;  // in file order, keys unique

  // The member called `key`, or null.
  const Json* find(const std::string& key) const {
    for (const auto& kv : object)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
};

// Parses `text` (what: names the document in error messages).
Json parse_json(const std::string& text, const std::string& what);

}  // namespace gatecell::detail
