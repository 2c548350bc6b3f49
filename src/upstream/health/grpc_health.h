// The wire pieces of the gRPC health-checking protocol (grpc.health.v1.Health/Check), by
// hand: the request message, the 5-byte gRPC message framing, the response message, and the
// names of gRPC status codes. Pure functions, no I/O; every decoder is bounds-checked and
// reports malformed input as an error, never reads past its input.
//
//   message HealthCheckRequest  { string service = 1; }
//   message HealthCheckResponse { ServingStatus status = 1; }
//   enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace sluice::upstream::health::grpc {

inline constexpr std::string_view kCheckPath = "/grpc.health.v1.Health/Check";
// A health response is a few bytes; anything longer than this is not one.
inline constexpr size_t kMaxResponseMessage = 4096;

enum class ServingStatus : uint64_t {
  kUnknown = 0,
  kServing = 1,
  kNotServing = 2,
  kServiceUnknown = 3,
};
// "SERVING", "NOT_SERVING", ...; "" for a value the protocol does not define.
std::string_view to_string(ServingStatus status);

// The protobuf encoding of HealthCheckRequest{service}; empty for the whole server (a
// proto3 string field at its default is not written).
std::string encode_check_request(std::string_view service);
// `message` behind the gRPC length prefix: flag 0 (not compressed), 4-byte big-endian length.
std::string frame_message(std::string_view message);

// The one uncompressed message a unary response body carries; an error when the body is
// not exactly one length-prefixed message, or is compressed, or longer than `max`.
Result<std::string_view> unframe_message(std::string_view body, size_t max = kMaxResponseMessage);

// The status field of a HealthCheckResponse (UNKNOWN when absent; the last one when
// repeated, as protobuf merges). Unknown fields are skipped; truncated or malformed input is
// an error.
Result<ServingStatus> decode_check_response(std::string_view message);

// Reads one base-128 varint at `pos`, advancing it; false (pos unchanged) when the input ends
// inside it or it is longer than 10 bytes or overflows 64 bits.
bool read_varint(std::string_view in, size_t& pos, uint64_t& value);

// "OK", "UNIMPLEMENTED", ... for the 17 gRPC status codes; "" for any other.
std::string_view status_code_name(uint64_t code);

// grpc-message is percent-encoded (gRPC over HTTP/2, "Responses"): decoded, with control
// characters replaced by '?' and cut to `max` bytes so that it may go into a log line.
std::string decode_grpc_message(std::string_view value, size_t max = 200);

}  // namespace sluice::upstream::health::grpc
