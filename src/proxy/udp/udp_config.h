// UdpOptions: the settings of a `protocol: udp` listener (the `udp:` block), with their
// defaults and validate(). Immutable once loaded; shared by the workers with the config.
#pragma once

#include <cstdint>

#include "base/units.h"
#include "base/validation.h"

namespace sluice::proxy::udp {

struct UdpOptions {
  // What makes two datagrams belong to one session: the client's address and port (each
  // client socket its own session and upstream socket), or its address alone (every port of
  // one client shares a session; answers go to the port that sent last).
  enum class SessionKey { kSourceIpPort, kSourceIp };
  SessionKey session_key = SessionKey::kSourceIpPort;
  // A session without a datagram either way for this long ends.
  Duration idle_timeout = std::chrono::seconds(60);
  // The session ends once the upstream has sent this many datagrams back (DNS: 1); 0: never.
  uint32_t max_responses = 0;
  // Open sessions of the listener across all workers; a datagram that would open one more
  // is dropped and counted.
  uint32_t max_sessions = 10000;
  // Open sessions of one client IP address, per worker (the kernel spreads one client's
  // ports over the workers); 0: no limit.
  uint32_t max_sessions_per_source = 256;
  // Datagrams larger than this (either way) are dropped and counted.
  uint32_t max_datagram_size = 4096;
  // Each datagram to the upstream starts with a PROXY protocol v2 header (PROXY command,
  // UDP over IPv4 or IPv6) naming the client and the listener's address, so the endpoint
  // sees who sent it. Not counted in max_datagram_size nor in the byte counters.
  bool proxy_protocol = false;
  // Receive with UDP_GRO (the kernel may hand several datagrams of one sender over in one
  // read; they are cut apart again, boundaries kept) on the listener's and the sessions'
  // sockets, where the kernel offers it.
  bool gro = true;
  // Send consecutive datagrams of one session that go the same way in one wake-up, of one
  // size, as one UDP_SEGMENT (GSO) message the kernel cuts into the same datagrams.
  bool gso = true;

  static constexpr uint32_t kMaxDatagram = 65507;  // IPv4's largest UDP payload

  ConfigIssues validate() const;
  bool operator==(const UdpOptions&) const = default;
};

inline constexpr const char* kSessionKeyNames[] = {"source_ip_port", "source_ip"};

}  // namespace sluice::proxy::udp
