// HeaderMap: an ordered list of header fields as received (names keep their case; lookups
// ignore it). Small and flat: a request has a few dozen headers at most, and a linear scan
// over contiguous strings beats hashing at that size.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::http {

// ASCII case-insensitive comparison of n bytes.
bool iequals_bytes(const char* a, const char* b, size_t n);
// Inline: most comparisons on the request path (a field name against a known one) differ in
// length and end here.
inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && iequals_bytes(a.data(), b.data(), a.size());
}

namespace detail {
// RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
constexpr bool tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  for (char t : std::string_view("!#$%&'*+-.^_`|~")) {
    if (c == static_cast<unsigned char>(t)) return true;
  }
  return false;
}
struct TcharTable {
  bool is[256];
};
constexpr TcharTable make_tchar_table() {
  TcharTable t{};
  for (int c = 0; c < 256; ++c) t.is[c] = tchar(static_cast<unsigned char>(c));
  return t;
}
// A lookup per byte: header names are checked byte by byte on every message.
inline constexpr TcharTable kTchars = make_tchar_table();
}  // namespace detail

// RFC 9110 §5.6.2: a token character (tchar).
inline bool is_tchar(unsigned char c) {
  return detail::kTchars.is[c];
}

// RFC 9110 §5.5: field-value bytes are VCHAR, obs-text, SP and HTAB; no CR, LF, NUL, other
// CTL or DEL. (The reason phrase of a status line takes the same, RFC 9112 §4.)
inline bool is_field_value_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}
// The position of the first byte of `s` that is not a field-value byte, or npos.
size_t find_invalid_field_value_char(std::string_view s);

struct Header {
  std::string name;
  std::string value;
};

class HeaderMap {
 public:
  void add(std::string name, std::string value) {
    headers_.push_back({std::move(name), std::move(value)});
  }
  // The first value of `name`, or nullptr.
  const std::string* get(std::string_view name) const;
  size_t count(std::string_view name) const;
  // Removes every field named `name`; returns how many.
  size_t remove(std::string_view name);
  void set(std::string name, std::string value) {
    remove(name);
    add(std::move(name), std::move(value));
  }
  // True when a comma-separated list header (Connection, Transfer-Encoding) holds `token`.
  bool has_token(std::string_view name, std::string_view token) const;

  size_t size() const { return headers_.size(); }
  bool empty() const { return headers_.empty(); }
  void clear() { headers_.clear(); }
  auto begin() const { return headers_.begin(); }
  auto end() const { return headers_.end(); }
  std::vector<Header>& fields() { return headers_; }

 private:
  std::vector<Header> headers_;
};

// Calls fn(token) for each comma-separated, trimmed, non-empty token of a list value.
template <typename Fn>
void for_each_token(std::string_view value, Fn&& fn) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view token = value.substr(0, comma);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
      token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (!token.empty()) fn(token);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

}  // namespace sluice::http
