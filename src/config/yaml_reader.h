// YamlReader: maps YAML nodes to typed values and reports each problem as
// "FILE:LINE:COL: key.path: what was expected". It knows nothing of sluice's config blocks;
// config.cc uses it to fill each module's own config struct. Main thread, at load time.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "base/units.h"

namespace sluice::config {

class YamlReader {
 public:
  explicit YamlReader(std::string file) : file_(std::move(file)) {}

  void error(const YAML::Mark& mark, const std::string& path, const std::string& what);
  void error(const YAML::Node& node, const std::string& path, const std::string& what) {
    error(node.Mark(), path, what);
  }
  const std::vector<std::string>& errors() const { return errors_; }
  std::string location(const YAML::Mark& mark) const;

 private:
  std::string file_;
  std::vector<std::string> errors_;
};

// One YAML mapping with a known set of keys. Construction reports a node that is not a
// mapping, unknown keys and duplicate keys; the read_* calls leave `out` untouched when the
// key is absent and report a wrong type or an out-of-range value at the value's location.
class MapReader {
 public:
  MapReader(YamlReader& reader, const YAML::Node& node, std::string path,
            std::initializer_list<const char*> known);

  bool ok() const { return ok_; }
  bool has(const char* key) const;
  YAML::Node get(const char* key) const;
  std::string path(const char* key) const;
  // Reports a required key that is missing, at the mapping's location.
  bool require(const char* key);

  void read_string(const char* key, std::string& out);
  void read_bool(const char* key, bool& out);
  void read_uint(const char* key, uint32_t& out, uint32_t min, uint32_t max);
  void read_int(const char* key, int& out, int min, int max);
  void read_number(const char* key, double& out, double min, double max);
  void read_duration(const char* key, Duration& out, Duration min, Duration max);
  void read_size(const char* key, uint32_t& out, uint64_t min, uint64_t max);
  // A scalar as text, or nullopt after reporting what was expected.
  std::optional<std::string> scalar(const char* key, const char* expected);

 private:
  YamlReader& reader_;
  YAML::Node node_;
  std::string path_;
  bool ok_ = true;
};

}  // namespace sluice::config
