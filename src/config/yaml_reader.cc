#include "config/yaml_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <set>

namespace sluice::config {

std::string YamlReader::location(const YAML::Mark& mark) const {
  if (mark.is_null()) return file_;
  return fmt::format("{}:{}:{}", file_, mark.line + 1, mark.column + 1);
}

void YamlReader::index(const YAML::Node& root) {
  index(root, "");
}

void YamlReader::index(const YAML::Node& node, const std::string& path) {
  Place place{node.Mark(), std::nullopt};
  if (node.IsScalar()) place.scalar = node.Scalar();
  places_.emplace(path, std::move(place));
  if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) continue;
      index(kv.second, join_path(path, kv.first.Scalar()));
    }
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) index(node[i], fmt::format("{}[{}]", path, i));
  }
}

const YamlReader::Place* YamlReader::find(const std::string& path) const {
  std::string p = path;
  while (true) {
    auto it = places_.find(p);
    if (it != places_.end()) return &it->second;
    if (p.empty()) return nullptr;
    p = parent_path(p);
  }
}

bool YamlReader::under_failed(const std::string& path) const {
  std::string p = path;
  while (true) {
    if (failed_.count(p)) return true;
    if (p.empty()) return false;
    p = parent_path(p);
  }
}

void YamlReader::push(const YAML::Mark& mark, bool warning, std::string text) {
  int line = mark.is_null() ? -1 : mark.line;
  int column = mark.is_null() ? -1 : mark.column;
  messages_.push_back(Message{line, column, warning, std::move(text)});
  if (!warning) ++error_count_;
}

void YamlReader::error(const YAML::Mark& mark, const std::string& path, const std::string& what) {
  failed_.insert(path);
  push(mark, false, fmt::format("{}: {}: {}", location(mark), path.empty() ? "(top)" : path, what));
}

void YamlReader::warning(const YAML::Node& node, const std::string& path, const std::string& what) {
  push(node.Mark(), true,
       fmt::format("{}: warning: {}: {}", location(node.Mark()), path.empty() ? "(top)" : path,
                   what));
}

void YamlReader::add(const ConfigIssue& issue) {
  if (under_failed(issue.path)) return;
  std::string shown = issue.shown_path();
  const Place* place = find(issue.missing ? shown : issue.path);
  YAML::Mark mark = place ? place->mark : YAML::Mark::null_mark();
  // The value as written ("90m"), rather than as validate() saw it ("5400s").
  std::string got = issue.got;
  if (!got.empty() && place && place->scalar && places_.count(issue.path)) got = *place->scalar;
  std::string text = issue.describe(got);
  if (!issue.related.empty()) {
    const Place* first = find(issue.related);
    text += first && !first->mark.is_null()
                ? fmt::format(" (first defined at line {})", first->mark.line + 1)
                : fmt::format(" (first defined at {})", issue.related);
  }
  bool warning = issue.severity == ConfigIssue::Severity::kWarning;
  push(mark, warning,
       fmt::format("{}: {}{}: {}", location(mark), warning ? "warning: " : "",
                   shown.empty() ? "(top)" : shown, text));
}

std::string YamlReader::report(bool warnings) const {
  std::vector<const Message*> shown;
  for (const auto& m : messages_) {
    if (warnings || !m.warning) shown.push_back(&m);
  }
  std::stable_sort(shown.begin(), shown.end(), [](const Message* a, const Message* b) {
    return std::pair(a->line, a->column) < std::pair(b->line, b->column);
  });
  std::string all;
  for (const Message* m : shown) all += (all.empty() ? "" : "\n") + m->text;
  return all;
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
  // Nothing of a mapping with a bad key is read: what validate() would find in the
  // struct's defaults would only be noise.
  if (!ok_) reader_.failed(path_);
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
  reader_.failed(path(key));
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

void MapReader::read_uint(const char* key, uint32_t& out) {
  if (!has(key)) return;
  auto s = scalar(key, "an integer");
  if (!s) return;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || end != s->data() + s->size()) {
    reader_.error(get(key), path(key), fmt::format("expected an integer, got '{}'", *s));
    return;
  }
  if (v > UINT32_MAX) {
    reader_.error(get(key), path(key),
                  fmt::format("expected an integer from 0 to {}, got {}", UINT32_MAX, *s));
    return;
  }
  out = static_cast<uint32_t>(v);
}

void MapReader::read_number(const char* key, double& out) {
  if (!has(key)) return;
  auto s = scalar(key, "a number");
  if (!s) return;
  double v = 0;
  auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || end != s->data() + s->size() || !std::isfinite(v)) {
    reader_.error(get(key), path(key), fmt::format("expected a number, got '{}'", *s));
    return;
  }
  out = v;
}

void MapReader::read_int(const char* key, int& out) {
  uint32_t v = static_cast<uint32_t>(out);
  read_uint(key, v);
  if (v > static_cast<uint32_t>(INT32_MAX)) {
    reader_.error(get(key), path(key),
                  fmt::format("expected an integer from 0 to {}, got {}", INT32_MAX, v));
    return;
  }
  out = static_cast<int>(v);
}

void MapReader::read_duration(const char* key, Duration& out) {
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
  out = *d;
}

void MapReader::read_size(const char* key, uint64_t& out) {
  if (!has(key)) return;
  auto s = scalar(key, "a size such as 64KiB");
  if (!s) return;
  auto v = parse_size(*s);
  if (!v) {
    reader_.error(get(key), path(key),
                  fmt::format("expected a size such as 4096, 64KiB or 1MiB, got '{}'", *s));
    return;
  }
  out = *v;
}

void MapReader::read_size(const char* key, uint32_t& out) {
  uint64_t v = out;
  read_size(key, v);
  if (v > UINT32_MAX) {
    reader_.error(
        get(key), path(key),
        fmt::format("expected a size from 0 to {} bytes, got {}", UINT32_MAX, get(key).Scalar()));
    return;
  }
  out = static_cast<uint32_t>(v);
}

}  // namespace sluice::config
