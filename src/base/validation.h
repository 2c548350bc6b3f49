// Configuration checks shared by every module's validate(): a ConfigIssue names the key it
// is about by its path within the block that was checked, and ConfigChecker collects them
// for one block, nesting the issues of the blocks inside it under their keys. The YAML
// layer turns each path into FILE:LINE:COL; a configuration built in code gets the same
// issues, named by path only. Main thread, at load time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/units.h"

namespace sluice {

struct ConfigIssue {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  // The key the issue is about: "pool.max_connections", "endpoints[1].weight"; "" is the
  // checked block itself.
  std::string path;
  std::string message;
  // The offending value as validate() saw it ("" = none); shown as "<message>, got <got>".
  // The YAML layer shows the text as written instead.
  std::string got;
  // A required key without a value: shown at the enclosing block, as there is no value to
  // point at.
  bool missing = false;
  // For a duplicate: the path of the first one ("" = none); shown as "(first defined at
  // PATH)", or at its line by the YAML layer.
  std::string related;

  // The path it is shown under: the enclosing block's for a missing key.
  std::string shown_path() const;
  // "message" or "message, got X".
  std::string describe(std::string_view got_text) const;
  // "key.path: message[, got X]"; a warning's is prefixed "warning: ".
  std::string text() const;
};
using ConfigIssues = std::vector<ConfigIssue>;

// "a" + "b" → "a.b"; "a" + "[2]" → "a[2]"; "" + "b" → "b".
std::string join_path(std::string_view prefix, std::string_view key);
// The enclosing path: "a.b[2].c" → "a.b[2]" → "a.b" → "a" → "".
std::string parent_path(std::string_view path);
// A name of a listener, cluster or route: 1-64 letters, digits, '_', '-', '.'.
bool valid_config_name(std::string_view name);
// A DNS name: labels of letters, digits, '-' and '_', 1-63 bytes each, 253 in all (a final
// dot allowed).
bool valid_host_name(std::string_view name);
// An HTTP field name (RFC 9110 §5.1: a token).
bool valid_header_name(std::string_view name);
// An HTTP field value without control characters (tab allowed).
bool valid_header_value(std::string_view value);

// Whether any issue is an error (warnings do not stop a load).
bool has_errors(const ConfigIssues& issues);

class ConfigChecker {
 public:
  void error(std::string_view key, std::string message);
  void warning(std::string_view key, std::string message);
  // "missing required key 'KEY'".
  void missing(std::string_view key);
  // A required name: missing when empty, else valid_config_name().
  void check_name(std::string_view key, const std::string& name);
  // Range checks: "expected an integer from MIN to MAX, got V" and the like.
  void check_uint(std::string_view key, uint64_t value, uint64_t min, uint64_t max);
  void check_number(std::string_view key, double value, double min, double max);
  void check_duration(std::string_view key, Duration value, Duration min, Duration max);
  void check_size(std::string_view key, uint64_t value, uint64_t min, uint64_t max);
  // `message` about `key`, which repeats what `first` (a path) already defined.
  void duplicate(std::string_view key, std::string message, std::string_view first);
  // Adds the issues of a block nested under `key`.
  void nested(std::string_view key, const ConfigIssues& issues);

  const ConfigIssues& issues() const { return issues_; }
  ConfigIssues take() { return std::move(issues_); }

 private:
  void add(ConfigIssue::Severity severity, std::string_view key, std::string message,
           std::string got, bool missing);

  ConfigIssues issues_;
};

}  // namespace sluice
