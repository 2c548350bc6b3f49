#include "proxy/http/grpc.h"

#include "http/headers.h"

namespace sluice::proxy::http {

bool is_grpc_request(const sluice::http::MessageHead& head) {
  const std::string* ct = head.headers.get("content-type");
  if (!ct) return false;
  constexpr std::string_view kGrpc = "application/grpc";
  if (ct->size() < kGrpc.size() ||
      !sluice::http::iequals(std::string_view(*ct).substr(0, kGrpc.size()), kGrpc))
    return false;
  // application/grpc, application/grpc+proto, application/grpc;charset=...
  return ct->size() == kGrpc.size() || (*ct)[kGrpc.size()] == '+' || (*ct)[kGrpc.size()] == ';';
}

GrpcStatus grpc_status_for_http(int status) {
  switch (status) {
    case 400:
      return GrpcStatus::kInternal;
    case 401:
      return GrpcStatus::kUnauthenticated;
    case 403:
      return GrpcStatus::kPermissionDenied;
    case 404:
    case 405:
    case 501:
      return GrpcStatus::kUnimplemented;
    case 413:
    case 431:
      return GrpcStatus::kResourceExhausted;
    case 408:
    case 504:
      return GrpcStatus::kDeadlineExceeded;
    case 425:
    case 429:
    case 502:
    case 503:
      return GrpcStatus::kUnavailable;
    default:
      return GrpcStatus::kUnknown;
  }
}

std::optional<Duration> parse_grpc_timeout(std::string_view v) {
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  uint64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  using namespace std::chrono;
  auto d = [](auto x) { return duration_cast<Duration>(x); };
  // Hours, minutes and seconds can name more than a Duration holds: beyond 30 days a
  // deadline is as good as none, and is held there.
  constexpr uint64_t kMaxSeconds = 30ull * 24 * 3600;
  auto capped = [&](uint64_t unit_seconds) {
    return d(seconds(std::min(n * unit_seconds, kMaxSeconds)));
  };
  switch (v.back()) {
    case 'H':
      return capped(3600);
    case 'M':
      return capped(60);
    case 'S':
      return capped(1);
    case 'm':
      return d(milliseconds(n));
    case 'u':
      return d(microseconds(n));
    case 'n':
      return d(nanoseconds(n));
    default:
      return std::nullopt;
  }
}

int parse_grpc_status(std::string_view value) {
  if (value.empty() || value.size() > 2) return -1;
  int code = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return -1;
    code = code * 10 + (c - '0');
  }
  return code;
}

void append_grpc_message(std::string_view text, std::string& out) {
  constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

}  // namespace sluice::proxy::http
