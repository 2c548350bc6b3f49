#include "http/headers.h"

#include <algorithm>

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
