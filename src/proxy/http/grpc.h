// gRPC over HTTP/2 as a proxy sees it (the gRPC "PROTOCOL-HTTP2" specification): which
// requests are gRPC calls, the status a local reply becomes, the deadline a call carries.
// Pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/units.h"
#include "http/message.h"

namespace sluice::proxy::http {

// gRPC status codes sluice answers with.
enum class GrpcStatus : int {
  kUnknown = 2,
  kDeadlineExceeded = 4,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kUnauthenticated = 16,
};

// A request whose content-type is application/grpc (or application/grpc+proto, ...).
bool is_grpc_request(const sluice::http::MessageHead& head);

// The gRPC status a local reply of HTTP status `status` means to a gRPC client: 504 (sluice
// timed the call out) is DEADLINE_EXCEEDED, 502/503 UNAVAILABLE, 404 UNIMPLEMENTED, ...
GrpcStatus grpc_status_for_http(int status);

// The grpc-timeout header's value ("100m", "5S", at most 8 digits and a unit of H, M, S, m,
// u, n); nullopt when malformed.
std::optional<Duration> parse_grpc_timeout(std::string_view value);

// A grpc-status value: a decimal code from 0 to 99 (-1 when malformed).
int parse_grpc_status(std::string_view value);

// grpc-message is percent-encoded: bytes outside printable ASCII, and '%', become %XX.
void append_grpc_message(std::string_view text, std::string& out);

}  // namespace sluice::proxy::http
