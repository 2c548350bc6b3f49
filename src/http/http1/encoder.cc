#include "http/http1/encoder.h"

#include <fmt/format.h>

namespace sluice::http::http1 {
namespace {
void encode_headers(const HeaderMap& headers, std::string& out) {
  for (const auto& h : headers) {
    out.append(h.name);
    out.append(": ");
    out.append(h.value);
    out.append("\r\n");
  }
  out.append("\r\n");
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
