#include "http/headers.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace sluice::http {

bool iequals_bytes(const char* a, const char* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

size_t find_invalid_field_value_char(std::string_view s) {
  // Eight bytes at a time while none is below 0x20 or is 0x7f (bit tricks that never miss
  // one: a borrow only adds reports above a byte that is reported already); a word with one
  // (a HTAB, usually) and the tail are checked byte by byte.
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  const char* p = s.data();
  size_t n = s.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    std::memcpy(&x, p + i, 8);
    uint64_t below_space = (x - kOnes * 0x20) & ~x & kHigh;
    uint64_t d = x ^ (kOnes * 0x7f);
    uint64_t del = (d - kOnes) & ~d & kHigh;
    if ((below_space | del) != 0) break;
  }
  for (; i < n; ++i) {
    if (!is_field_value_char(static_cast<unsigned char>(p[i]))) return i;
  }
  return std::string_view::npos;
}

const std::string* HeaderMap::get(std::string_view name) const {
  for (const auto& h : headers_) {
    if (iequals(h.name, name)) return &h.value;
  }
  return nullptr;
}

size_t HeaderMap::count(std::string_view name) const {
  size_t n = 0;
  for (const auto& h : headers_) n += iequals(h.name, name);
  return n;
}

size_t HeaderMap::remove(std::string_view name) {
  size_t before = headers_.size();
  headers_.erase(std::remove_if(headers_.begin(), headers_.end(),
                                [&](const Header& h) { return iequals(h.name, name); }),
                 headers_.end());
  return before - headers_.size();
}

bool HeaderMap::has_token(std::string_view name, std::string_view token) const {
  bool found = false;
  for (const auto& h : headers_) {
    if (!iequals(h.name, name)) continue;
    for_each_token(h.value, [&](std::string_view t) { found = found || iequals(t, token); });
  }
  return found;
}

}  // namespace sluice::http
