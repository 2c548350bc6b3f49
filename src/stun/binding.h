// The STUN server's answer to one datagram (RFC 8489 §6.3, §7.3): a Binding success
// response, a 400 or 420 error response, or nothing. Stateless and pure: the listener
// (proxy/stun) does the I/O and the rate limits. Any thread.
//
// Amplification: the minimal success response (XOR-MAPPED-ADDRESS and FINGERPRINT: 40
// bytes for IPv4, 52 for IPv6) is always sent; everything optional (SOFTWARE, OTHER-ADDRESS,
// RESPONSE-ORIGIN, the reason phrase of an error) only when the request is at least as large as the
// response with it, or when the request carries PADDING (RFC 5780 §7.6: the client asks for a
// larger answer).
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
  kUnauthenticated,   // 401: an unknown USERNAME or a wrong MESSAGE-INTEGRITY(-SHA256)
  kDropNotStun,       // too short, first two bits, magic cookie
  kDropMalformed,     // length, an attribute past the end
  kDropBadFingerprint,
  kDropNotRequest,  // indications and responses are not answered
};
const char* to_string(Outcome o);
constexpr bool answered(Outcome o) {
  return o == Outcome::kSuccess || o == Outcome::kBadRequest || o == Outcome::kUnknownAttribute ||
         o == Outcome::kUnauthenticated;
}

// CHANGE-REQUEST flags (RFC 5780 §7.2).
inline constexpr uint8_t kChangeIp = 0x04;
inline constexpr uint8_t kChangePort = 0x02;

// RFC 5780 NAT behaviour discovery: the address a request came in on and the listener's
// address that differs from it in both IP and port (its OTHER-ADDRESS). The listener answers
// on the four combinations of the two IPs and two ports.
struct NatDiscovery {
  net::Address local;
  net::Address other;
};

struct Answer {
  Outcome outcome = Outcome::kDropNotStun;
  std::vector<uint8_t> response;  // empty unless answered()
  // Where the response goes and comes from (RFC 5780): the CHANGE-REQUEST flags honoured
  // (kChangeIp, kChangePort: send from the other IP and/or port) and RESPONSE-PORT's port
  // (0: the source's port).
  uint8_t change = 0;
  uint16_t response_port = 0;
};

// The answer to `request`, received from `source`; `nat` given when the listener has an
// alternate address.
Answer answer_binding(std::span<const uint8_t> request, const net::Address& source,
                      const ServerOptions& options, const NatDiscovery* nat = nullptr);
// The same into `out`, whose response buffer is reused: a server answering request after
// request into one Answer allocates nothing once the buffer has grown.
void answer_binding(std::span<const uint8_t> request, const net::Address& source,
                    const ServerOptions& options, const NatDiscovery* nat, Answer& out);

// The address with `ip_of`'s IP and `port_of`'s port (both of one family).
net::Address combine(const net::Address& ip_of, const net::Address& port_of);

}  // namespace sluice::stun
