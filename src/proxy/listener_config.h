// ListenerConfig: one listener of the configuration (address, protocol, limits, the cluster
// it forwards to). Immutable once loaded; shared by all workers through the config snapshot.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/units.h"
#include "base/validation.h"
#include "net/address.h"
#include "net/socket_options.h"
#include "proxy/access_log.h"
#include "proxy/http/route_config.h"
#include "proxy/udp/udp_config.h"
#include "stun/server_config.h"
#include "tls/cert_store.h"
#include "tls/config.h"

namespace sluice::proxy {

// tcp and http accept connections; udp and stun read datagrams from a bound UDP socket.
enum class Protocol { kTcp, kHttp, kUdp, kStun };

inline constexpr const char* kProtocolNames[] = {"tcp", "http", "udp", "stun"};
constexpr const char* to_string(Protocol p) {
  return kProtocolNames[static_cast<size_t>(p)];
}
// Whether the listener's sockets are UDP sockets (no accept, no connections).
constexpr bool is_datagram(Protocol p) {
  return p == Protocol::kUdp || p == Protocol::kStun;
}

// socket_options.defer_accept of HTTP listeners unless configured. One second: a client's
// request follows its handshake at once, so nearly every connection is accepted with its
// first bytes, while one that connects and waits (a preconnect, a port check) is accepted
// after about a second and meets header_read_timeout as before; a longer wait would only
// hide such clients from the metrics for longer.
inline constexpr Duration kDefaultHttpDeferAccept = std::chrono::seconds(1);

// A tcp listener's route by the server name (SNI) of the client's TLS ClientHello, read
// without terminating TLS (proxy/tcp/sni_router.h matches them).
struct SniRoute {
  // Exact names ("api.example.com") or wildcards of one leftmost label ("*.example.com"
  // matches "a.example.com", not "example.com" nor "a.b.example.com"); compared without
  // regard to case.
  std::vector<std::string> names;
  std::string cluster;
  bool operator==(const SniRoute&) const = default;
};

struct ListenerConfig {
  std::string name;
  net::Address address;
  Protocol protocol = Protocol::kTcp;
  std::string cluster;  // tcp: where connections go; udp: where sessions go
  int backlog = 1024;
  uint32_t max_connections = 10000;  // per listener, across all workers
  net::SocketOptions socket_options;
  AccessLogConfig access_log;

  // protocol: tcp
  Duration idle_timeout = std::chrono::seconds(300);  // 0: none
  Duration max_duration{0};                           // 0: none
  bool splice = true;
  // The key for ring_hash and maglev clusters: the client's address, with or without port.
  enum class HashKey { kSourceIp, kSourceIpPort };
  HashKey hash_key = HashKey::kSourceIp;
  // Non-empty: each connection is routed by the server name of its ClientHello (exact names
  // first, then wildcards; none sent or none matching: `cluster`), waiting at most
  // `sni_timeout` for the whole ClientHello. A client that sends something else is closed.
  std::vector<SniRoute> sni_routes;
  Duration sni_timeout = std::chrono::seconds(5);

  // protocol: http
  http::HttpOptions http;

  // protocol: udp (hash_key above picks the ring_hash / maglev key of a session too)
  udp::UdpOptions udp;
  // protocol: stun
  ::sluice::stun::ServerOptions stun;

  // TLS termination; absent: plain TCP.
  std::optional<tls::ServerConfig> tls;
  // The certificates of `tls`, read and checked once when the configuration was loaded
  // (config::load_file), for the workers' contexts. Filled by the loader after validate()
  // passed, hence mutable in a struct that is otherwise immutable once shared; null for a
  // configuration built in code or when `tls` is absent.
  mutable std::shared_ptr<const tls::CertStore> cert_store;

  // Every rule of this block and the blocks inside it (listener_config.cc). Routes naming a
  // cluster are checked against the clusters by config::Config::validate().
  ConfigIssues validate() const;
  // stun.alternate_address against `address` (validate_datagram() calls it).
  void check_alternate_address(ConfigChecker& c) const;
  // The rules of a udp or stun listener (validate() calls it).
  ConfigIssues validate_datagram() const;

  // Field by field; `cert_store` by identity (two loads of the same files differ): compare
  // copies without it to compare what was configured.
  bool operator==(const ListenerConfig&) const = default;
};

}  // namespace sluice::proxy
