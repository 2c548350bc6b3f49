#include "base/validation.h"

#include <fmt/format.h>

#include <cctype>

namespace sluice {

std::string join_path(std::string_view prefix, std::string_view key) {
  if (prefix.empty()) return std::string(key);
  if (key.empty()) return std::string(prefix);
  if (key.front() == '[') return fmt::format("{}{}", prefix, key);
  return fmt::format("{}.{}", prefix, key);
}

std::string parent_path(std::string_view path) {
  size_t cut = path.find_last_of(".[");
  if (cut == std::string_view::npos) return "";
  return std::string(path.substr(0, cut));
}

bool valid_config_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

bool valid_host_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char ch : name) {
    if (ch == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_')) return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

bool valid_header_name(std::string_view n) {
  if (n.empty()) return false;
  for (unsigned char c : n) {
    if (!(std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                                 std::string_view::npos)) {
      return false;
    }
  }
  return true;
}

bool valid_header_value(std::string_view v) {
  for (unsigned char c : v) {
    if (c != '\t' && (c < 0x20 || c == 0x7f)) return false;
  }
  return true;
}

bool has_errors(const ConfigIssues& issues) {
  for (const auto& i : issues) {
    if (i.severity == ConfigIssue::Severity::kError) return true;
  }
  return false;
}

std::string ConfigIssue::shown_path() const {
  return missing ? parent_path(path) : path;
}

std::string ConfigIssue::describe(std::string_view got_text) const {
  if (got_text.empty()) return message;
  return fmt::format("{}, got {}", message, got_text);
}

std::string ConfigIssue::text() const {
  std::string where = shown_path();
  std::string first = related.empty() ? "" : fmt::format(" (first defined at {})", related);
  return fmt::format("{}{}: {}{}", severity == Severity::kWarning ? "warning: " : "",
                     where.empty() ? "(top)" : where, describe(got), first);
}

void ConfigChecker::add(ConfigIssue::Severity severity, std::string_view key, std::string message,
                        std::string got, bool missing) {
  ConfigIssue issue;
  issue.severity = severity;
  issue.path = std::string(key);
  issue.message = std::move(message);
  issue.got = std::move(got);
  issue.missing = missing;
  issues_.push_back(std::move(issue));
}

void ConfigChecker::error(std::string_view key, std::string message) {
  add(ConfigIssue::Severity::kError, key, std::move(message), "", false);
}

void ConfigChecker::warning(std::string_view key, std::string message) {
  add(ConfigIssue::Severity::kWarning, key, std::move(message), "", false);
}

void ConfigChecker::missing(std::string_view key) {
  add(ConfigIssue::Severity::kError, key,
      fmt::format("missing required key '{}'", key.substr(key.find_last_of('.') + 1)), "", true);
}

void ConfigChecker::check_name(std::string_view key, const std::string& name) {
  if (name.empty()) return missing(key);
  if (!valid_config_name(name)) {
    error(key, fmt::format("'{}' is not a valid name (1-64 letters, digits, '_', '-', '.')", name));
  }
}

void ConfigChecker::check_uint(std::string_view key, uint64_t value, uint64_t min, uint64_t max) {
  if (value >= min && value <= max) return;
  add(ConfigIssue::Severity::kError, key,
      fmt::format("expected an integer from {} to {}", min, max), std::to_string(value), false);
}

void ConfigChecker::check_number(std::string_view key, double value, double min, double max) {
  if (value >= min && value <= max) return;
  add(ConfigIssue::Severity::kError, key, fmt::format("expected a number from {} to {}", min, max),
      fmt::format("{}", value), false);
}

void ConfigChecker::check_duration(std::string_view key, Duration value, Duration min,
                                   Duration max) {
  if (value >= min && value <= max) return;
  add(ConfigIssue::Severity::kError, key,
      fmt::format("expected a duration from {} to {}", format_duration(min), format_duration(max)),
      format_duration(value), false);
}

void ConfigChecker::check_size(std::string_view key, uint64_t value, uint64_t min, uint64_t max) {
  if (value >= min && value <= max) return;
  add(ConfigIssue::Severity::kError, key,
      fmt::format("expected a size from {} to {} bytes", min, max), std::to_string(value), false);
}

void ConfigChecker::duplicate(std::string_view key, std::string message, std::string_view first) {
  ConfigIssue issue;
  issue.path = std::string(key);
  issue.message = std::move(message);
  issue.related = std::string(first);
  issues_.push_back(std::move(issue));
}

void ConfigChecker::nested(std::string_view key, const ConfigIssues& issues) {
  for (const auto& i : issues) {
    ConfigIssue copy = i;
    copy.path = join_path(key, i.path);
    if (!copy.related.empty()) copy.related = join_path(key, i.related);
    issues_.push_back(std::move(copy));
  }
}

}  // namespace sluice
