// ServerOptions: the settings of a `protocol: stun` listener (the `stun:` block), with their
// defaults and validate(). Immutable once loaded; shared by the workers with the config.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/validation.h"
#include "net/address.h"

namespace sluice::stun {

// A short-term credential (RFC 8489 §9.1): the key is the password's bytes (OpaqueString of
// an ASCII password is the password itself; sluice does not normalise other text).
struct Credential {
  std::string username;
  std::string password;
  bool operator==(const Credential&) const = default;
};

struct ServerOptions {
  // The SOFTWARE attribute, sent only when the request leaves room for it (see
  // stun/binding.h); empty: never.
  std::string software;
  // Requests answered per second per client IP address (a token bucket holding `rate_burst`
  // tokens); beyond it requests are dropped and counted. 0: no limit.
  uint32_t rate_limit = 20;
  uint32_t rate_burst = 40;
  // Client addresses a worker keeps a bucket for. When full, the least recently seen one is
  // forgotten: a flood of spoofed sources costs this table, never more.
  uint32_t max_sources = 65536;
  // RFC 5780 NAT behaviour discovery: a second IP and port. The listener then also answers
  // on the other three combinations of the two IPs and two ports, honours CHANGE-REQUEST
  // and RESPONSE-PORT, and advertises OTHER-ADDRESS and RESPONSE-ORIGIN. Unset: none of
  // these (CHANGE-REQUEST gets 420). The listener's validate() checks it against `address`.
  std::optional<net::Address> alternate_address;
  // Short-term credentials: when any, every request must carry USERNAME and MESSAGE-INTEGRITY
  // or MESSAGE-INTEGRITY-SHA256 under one of them (400 without, 401 for an unknown user or a
  // wrong HMAC), and every answer to an authenticated request carries the same integrity.
  std::vector<Credential> credentials;
  // STUN over TCP (RFC 8489 §6.2.2) on the same address and port as well: messages back to
  // back on each connection, answered as over UDP (without RFC 5780: no CHANGE-REQUEST).
  bool tcp = false;
  // Open TCP connections per worker; one more is closed at once and counted.
  uint32_t max_tcp_connections = 1024;
  // A TCP connection with no complete request for this long is closed.
  Duration tcp_idle_timeout = std::chrono::seconds(30);

  static constexpr size_t kMaxSoftware = 128;  // RFC 8489 §14.14: fewer than 128 characters

  ConfigIssues validate() const;
  bool operator==(const ServerOptions&) const = default;
};

}  // namespace sluice::stun
