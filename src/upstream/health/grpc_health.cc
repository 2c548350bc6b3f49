#include "upstream/health/grpc_health.h"

#include <array>

#include <fmt/format.h>

namespace sluice::upstream::health::grpc {
namespace {

// Protobuf wire types (protobuf encoding guide, "Message Structure").
enum WireType : uint64_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void write_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view to_string(ServingStatus status) {
  switch (status) {
    case ServingStatus::kUnknown:
      return "UNKNOWN";
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
  }
  return "";
}

std::string encode_check_request(std::string_view service) {
  std::string out;
  if (service.empty()) return out;
  out.push_back(static_cast<char>((1 << 3) | kLengthDelimited));  // field 1, tag 0x0a
  write_varint(out, service.size());
  out.append(service);
  return out;
}

std::string frame_message(std::string_view message) {
  std::string out;
  out.reserve(5 + message.size());
  out.push_back('\0');  // not compressed
  auto n = static_cast<uint32_t>(message.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((n >> shift) & 0xff));
  out.append(message);
  return out;
}

Result<std::string_view> unframe_message(std::string_view body, size_t max) {
  if (body.empty()) return Status::error("no response message");
  if (body.size() < 5) {
    return Status::error(fmt::format("truncated message prefix ({} bytes)", body.size()));
  }
  auto flag = static_cast<uint8_t>(body[0]);
  if (flag == 1) return Status::error("compressed response message (none was accepted)");
  if (flag != 0) return Status::error(fmt::format("invalid message flag {}", flag));
  uint32_t n = 0;
  for (size_t i = 1; i < 5; ++i) n = (n << 8) | static_cast<uint8_t>(body[i]);
  if (n > max) return Status::error(fmt::format("response message of {} bytes is too large", n));
  if (body.size() - 5 < n) {
    return Status::error(
        fmt::format("truncated message ({} of {} bytes)", body.size() - 5, static_cast<size_t>(n)));
  }
  if (body.size() - 5 > n) return Status::error("more than one response message");
  return body.substr(5, n);
}

bool read_varint(std::string_view in, size_t& pos, uint64_t& value) {
  uint64_t v = 0;
  for (size_t i = 0; i < 10; ++i) {
    if (pos + i >= in.size()) return false;
    auto byte = static_cast<uint8_t>(in[pos + i]);
    // The tenth byte holds bit 63 only.
    if (i == 9 && byte > 1) return false;
    v |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      pos += i + 1;
      value = v;
      return true;
    }
  }
  return false;
}

Result<ServingStatus> decode_check_response(std::string_view message) {
  ServingStatus status = ServingStatus::kUnknown;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t at = pos;
    uint64_t key = 0;
    if (!read_varint(message, pos, key)) {
      return Status::error(
          fmt::format("malformed HealthCheckResponse: bad field key at byte {}", at));
    }
    uint64_t field = key >> 3;
    uint64_t type = key & 7;
    if (field == 0 || field > 0x1fffffff) {
      return Status::error(
          fmt::format("malformed HealthCheckResponse: field number {} at byte {}", field, at));
    }
    if (field == 1 && type != kVarint) {
      return Status::error(
          fmt::format("malformed HealthCheckResponse: status has wire type {}", type));
    }
    uint64_t value = 0;
    bool ok = true;
    switch (type) {
      case kVarint:
        ok = read_varint(message, pos, value);
        if (ok && field == 1) status = static_cast<ServingStatus>(value);
        break;
      case kFixed64:
        ok = message.size() - pos >= 8;
        if (ok) pos += 8;
        break;
      case kFixed32:
        ok = message.size() - pos >= 4;
        if (ok) pos += 4;
        break;
      case kLengthDelimited:
        ok = read_varint(message, pos, value) && value <= message.size() - pos;
        if (ok) pos += static_cast<size_t>(value);
        break;
      default:  // groups (3, 4) are not used by this message; 6 and 7 do not exist
        return Status::error(fmt::format(
            "malformed HealthCheckResponse: wire type {} of field {} at byte {}", type, field, at));
    }
    if (!ok) {
      return Status::error(
          fmt::format("malformed HealthCheckResponse: field {} at byte {} is cut", field, at));
    }
  }
  return status;
}

std::string_view status_code_name(uint64_t code) {
  static constexpr std::array<std::string_view, 17> kNames = {
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED",
  };
  return code < kNames.size() ? kNames[code] : std::string_view();
}

std::string decode_grpc_message(std::string_view value, size_t max) {
  std::string out;
  for (size_t i = 0; i < value.size() && out.size() < max; ++i) {
    char c = value[i];
    if (c == '%' && i + 2 < value.size() && hex_value(value[i + 1]) >= 0 &&
        hex_value(value[i + 2]) >= 0) {
      c = static_cast<char>(hex_value(value[i + 1]) * 16 + hex_value(value[i + 2]));
      i += 2;
    }
    auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  return out;
}

}  // namespace sluice::upstream::health::grpc
