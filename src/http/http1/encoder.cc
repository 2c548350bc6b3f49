#include "http/http1/encoder.h"

#include <fmt/format.h>

#include <cstring>

namespace sluice::http::http1 {
namespace {
// One resize, then the bytes copied in place: four appends per field cost each their own
// capacity check.
void encode_headers(const HeaderMap& headers, std::string& out) {
  size_t total = 2;
  for (const auto& h : headers) total += h.name.size() + h.value.size() + 4;
  size_t at = out.size();
  out.resize(at + total);
  char* p = out.data() + at;
  for (const auto& h : headers) {
    std::memcpy(p, h.name.data(), h.name.size());
    p += h.name.size();
    *p++ = ':';
    *p++ = ' ';
    std::memcpy(p, h.value.data(), h.value.size());
    p += h.value.size();
    *p++ = '\r';
    *p++ = '\n';
  }
  *p++ = '\r';
  *p = '\n';
}
}  // namespace

void encode_request_head(const MessageHead& head, std::string& out) {
  out.append(head.method);
  out.push_back(' ');
  out.append(head.target);
  out.append(" HTTP/1.1\r\n");
  encode_headers(head.headers, out);
}

void encode_response_head(const MessageHead& head, std::string& out) {
  fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} ", head.status);
  out.append(head.reason.empty() ? reason_phrase(head.status) : head.reason);
  out.append("\r\n");
  encode_headers(head.headers, out);
}

void encode_chunk(std::string_view data, std::string& out) {
  if (data.empty()) return;
  fmt::format_to(std::back_inserter(out), "{:x}\r\n", data.size());
  out.append(data);
  out.append("\r\n");
}

void encode_last_chunk(const HeaderMap& trailers, std::string& out) {
  out.append("0\r\n");
  encode_headers(trailers, out);
}

}  // namespace sluice::http::http1
