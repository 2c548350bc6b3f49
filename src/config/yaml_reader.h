// YamlReader: maps YAML nodes to typed values and reports each problem as
// "FILE:LINE:COL: key.path: what was expected". It knows nothing of sluice's config blocks;
// the map_*.cc files use it to fill each module's own config struct, and it places the
// issues those structs' validate() find at the YAML node their key path names. Main thread,
// at load time.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/units.h"
#include "base/validation.h"

namespace sluice::config {

class YamlReader {
 public:
  explicit YamlReader(std::string file) : file_(std::move(file)) {}

  // Remembers where every key path of the document is (and its text, for scalars), so that
  // issues named by path can be placed.
  void index(const YAML::Node& root);

  // A problem reading the text at `path`; validate() issues at or below it are dropped
  // (they would only repeat it).
  void error(const YAML::Mark& mark, const std::string& path, const std::string& what);
  void error(const YAML::Node& node, const std::string& path, const std::string& what) {
    error(node.Mark(), path, what);
  }
  void warning(const YAML::Node& node, const std::string& path, const std::string& what);
  // Marks `path` as unreadable without reporting (its error was reported elsewhere).
  void failed(const std::string& path) { failed_.insert(path); }
  // Places an issue that validate() found, named by its path from the document's top.
  void add(const ConfigIssue& issue);

  bool has_errors() const { return error_count_ > 0; }
  // Every error and warning, one per line, in document order.
  std::string report(bool warnings) const;
  std::string location(const YAML::Mark& mark) const;

 private:
  struct Place {
    YAML::Mark mark;
    std::optional<std::string> scalar;
  };
  struct Message {
    int line;
    int column;
    bool warning;
    std::string text;
  };
  void index(const YAML::Node& node, const std::string& path);
  // The place of `path`, or of the nearest enclosing path the document has.
  const Place* find(const std::string& path) const;
  bool under_failed(const std::string& path) const;
  void push(const YAML::Mark& mark, bool warning, std::string text);

  std::string file_;
  std::map<std::string, Place> places_;
  std::set<std::string> failed_;
  std::vector<Message> messages_;
  size_t error_count_ = 0;
};

// One YAML mapping with a known set of keys. Construction reports a node that is not a
// mapping, unknown keys and duplicate keys; the read_* calls leave `out` untouched when the
// key is absent and report a value that is not of the type asked for at its location.
// Ranges and every other rule are the struct's validate()'s.
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
  void read_uint(const char* key, uint32_t& out);
  void read_int(const char* key, int& out);
  void read_number(const char* key, double& out);
  void read_duration(const char* key, Duration& out);
  void read_size(const char* key, uint32_t& out);
  void read_size(const char* key, uint64_t& out);
  // A scalar as text, or nullopt after reporting what was expected.
  std::optional<std::string> scalar(const char* key, const char* expected);

 private:
  YamlReader& reader_;
  YAML::Node node_;
  std::string path_;
  bool ok_ = true;
};

}  // namespace sluice::config
