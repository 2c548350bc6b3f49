// JsonWriter: a minimal streaming JSON writer for `sluice probe --json` (no dependency for
// one output format). Commas and nesting are tracked; strings are escaped per RFC 8259 §7,
// and bytes that are not valid UTF-8 (obs-text in a header) are written as \u00XX, the
// character of the same Latin-1 value, so the output always parses. One owner.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"

namespace sluice::probe {

class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view name);
  JsonWriter& str(std::string_view v);
  JsonWriter& num(int64_t v);
  JsonWriter& boolean(bool v);
  JsonWriter& null();
  // A number, or null when negative (a phase that was never reached).
  JsonWriter& num_or_null(int64_t v) { return v < 0 ? null() : num(v); }

  const std::string& text() const { return out_; }

 private:
  void before_value();

  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

}  // namespace sluice::probe
