#include "config/yaml_reader.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <set>

namespace sluice::config {

std::string YamlReader::location(const YAML::Mark& mark) const {
  if (mark.is_null()) return file_;
  return fmt::format("{}:{}:{}", file_, mark.line + 1, mark.column + 1);
}

void YamlReader::error(const YAML::Mark& mark, const std::string& path, const std::string& what) {
  errors_.push_back(fmt::format("{}: {}: {}", location(mark), path.empty() ? "(top)" : path, what));
}

MapReader::MapReader(YamlReader& reader, const YAML::Node& node, std::string path,
                     std::initializer_list<const char*> known)
    : reader_(reader), node_(node), path_(std::move(path)) {
  if (!node_.IsMap()) {
    reader_.error(node_, path_, "expected a mapping of keys to values");
    ok_ = false;
    return;
  }
  std::set<std::string> seen;
  for (const auto& kv : node_) {
    std::string key = kv.first.Scalar();
    bool is_known = false;
    for (const char* k : known) is_known = is_known || key == k;
    std::string where = path_.empty() ? key : path_ + "." + key;
    if (!is_known) {
      std::string list;
      for (const char* k : known) list += list.empty() ? k : std::string(", ") + k;
      reader_.error(kv.first, where, fmt::format("unknown key (expected one of: {})", list));
      ok_ = false;
    } else if (!seen.insert(key).second) {
      reader_.error(kv.first, where, "duplicate key");
      ok_ = false;
    }
  }
}

bool MapReader::has(const char* key) const {
  return ok_ && node_[key].IsDefined();
}

YAML::Node MapReader::get(const char* key) const {
  return node_[key];
}

std::string MapReader::path(const char* key) const {
  return path_.empty() ? key : path_ + "." + key;
}

bool MapReader::require(const char* key) {
  if (!node_.IsMap()) return false;
  if (node_[key].IsDefined() && !node_[key].IsNull()) return true;
  reader_.error(node_, path_, fmt::format("missing required key '{}'", key));
  return false;
}

std::optional<std::string> MapReader::scalar(const char* key, const char* expected) {
  YAML::Node v = node_[key];
  if (!v.IsScalar()) {
    reader_.error(v, path(key), fmt::format("expected {}", expected));
    return std::nullopt;
  }
  return v.Scalar();
}

void MapReader::read_string(const char* key, std::string& out) {
  if (!has(key)) return;
  if (auto s = scalar(key, "a string")) out = *s;
}

void MapReader::read_bool(const char* key, bool& out) {
  if (!has(key)) return;
  auto s = scalar(key, "true or false");
  if (!s) return;
  if (*s == "true") {
    out = true;
  } else if (*s == "false") {
    out = false;
  } else {
    reader_.error(get(key), path(key), fmt::format("expected true or false, got '{}'", *s));
  }
}

void MapReader::read_uint(const char* key, uint32_t& out, uint32_t min, uint32_t max) {
  if (!has(key)) return;
  auto s = scalar(key, "an integer");
  if (!s) return;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || end != s->data() + s->size()) {
    reader_.error(get(key), path(key), fmt::format("expected an integer, got '{}'", *s));
    return;
  }
  if (v < min || v > max) {
    reader_.error(get(key), path(key),
                  fmt::format("expected an integer from {} to {}, got {}", min, max, v));
    return;
  }
  out = static_cast<uint32_t>(v);
}

void MapReader::read_number(const char* key, double& out, double min, double max) {
  if (!has(key)) return;
  auto s = scalar(key, "a number");
  if (!s) return;
  double v = 0;
  auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || end != s->data() + s->size() || !std::isfinite(v)) {
    reader_.error(get(key), path(key), fmt::format("expected a number, got '{}'", *s));
    return;
  }
  if (v < min || v > max) {
    reader_.error(get(key), path(key),
                  fmt::format("expected a number from {} to {}, got {}", min, max, *s));
    return;
  }
  out = v;
}

void MapReader::read_int(const char* key, int& out, int min, int max) {
  uint32_t v = static_cast<uint32_t>(out);
  read_uint(key, v, static_cast<uint32_t>(min), static_cast<uint32_t>(max));
  out = static_cast<int>(v);
}

void MapReader::read_duration(const char* key, Duration& out, Duration min, Duration max) {
  if (!has(key)) return;
  auto s = scalar(key, "a duration such as 250ms, 1s or 5m");
  if (!s) return;
  auto d = parse_duration(*s);
  if (!d) {
    reader_.error(get(key), path(key),
                  fmt::format("expected a duration with a unit (ms, s, m, h) such as 250ms, 1s "
                              "or 5m, got '{}'",
                              *s));
    return;
  }
  if (*d < min || *d > max) {
    reader_.error(get(key), path(key),
                  fmt::format("expected a duration from {} to {}, got {}", format_duration(min),
                              format_duration(max), *s));
    return;
  }
  out = *d;
}

void MapReader::read_size(const char* key, uint32_t& out, uint64_t min, uint64_t max) {
  if (!has(key)) return;
  auto s = scalar(key, "a size such as 64KiB");
  if (!s) return;
  auto v = parse_size(*s);
  if (!v) {
    reader_.error(get(key), path(key),
                  fmt::format("expected a size such as 4096, 64KiB or 1MiB, got '{}'", *s));
    return;
  }
  if (*v < min || *v > max) {
    reader_.error(get(key), path(key),
                  fmt::format("expected a size from {} to {} bytes, got {}", min, max, *s));
    return;
  }
  out = static_cast<uint32_t>(*v);
}

}  // namespace sluice::config
