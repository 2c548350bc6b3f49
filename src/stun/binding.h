// The STUN server's answer to one datagram (RFC 8489 §6.3, §7.3): a Binding success
// response, a 400 or 420 error response, or nothing. Stateless and pure: the listener
// (proxy/stun) does the I/O and the rate limits. Any thread.
//
// Amplification: the minimal success response (XOR-MAPPED-ADDRESS and FINGERPRINT: 40
// bytes for IPv4, 52 for IPv6) is always sent; everything optional (SOFTWARE, the reason
// phrase of an error) only when the request is at least as large as the response with it,
// or when the request carries PADDING (RFC 5780 §7.6: the client asks for a larger answer).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "net/address.h"
#include "stun/message.h"
#include "stun/server_config.h"

namespace sluice::stun {

enum class Outcome {
  kSuccess,           // a Binding success response
  kBadRequest,        // 400
  kUnknownAttribute,  // 420 with UNKNOWN-ATTRIBUTES
  kDropNotStun,       // too short, first two bits, magic cookie
  kDropMalformed,     // length, an attribute past the end
  kDropBadFingerprint,
  kDropNotRequest,  // indications and responses are not answered
};
const char* to_string(Outcome o);
constexpr bool answered(Outcome o) {
  return o == Outcome::kSuccess || o == Outcome::kBadRequest || o == Outcome::kUnknownAttribute;
}

struct Answer {
  Outcome outcome = Outcome::kDropNotStun;
  std::vector<uint8_t> response;  // empty unless answered()
};

// The answer to `request`, received from `source`.
Answer answer_binding(std::span<const uint8_t> request, const net::Address& source,
                      const ServerOptions& options);

}  // namespace sluice::stun
