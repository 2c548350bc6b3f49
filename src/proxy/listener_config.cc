// validate() of ListenerConfig and AccessLogConfig.
#include "proxy/listener_config.h"

#include <fmt/format.h>

#include "proxy/tcp/sni_router.h"

namespace sluice::proxy {

ConfigIssues AccessLogConfig::validate() const {
  ConfigChecker c;
  if (path.empty()) return c.take();  // no access log
  AccessLogConfig defaults;
  c.check_duration("slow_threshold", slow, Duration{0}, std::chrono::hours(1));
  c.check_uint("sample_percent", sample_percent, 0, 100);
  // Each is read by one mode only; under another it would be silently unused.
  if (mode != Mode::kErrorsAndSlow && slow != defaults.slow) {
    c.error("slow_threshold", "only for mode: errors_and_slow");
  }
  if (mode != Mode::kSample && sample_percent != defaults.sample_percent) {
    c.error("sample_percent", "only for mode: sample");
  }
  return c.take();
}

ConfigIssues ListenerConfig::validate() const {
  using std::chrono::hours;
  ConfigChecker c;
  c.check_name("name", name);
  if (address.length() == 0) c.missing("address");
  if (is_datagram(protocol)) return validate_datagram();
  if (!(udp == udp::UdpOptions{})) c.error("udp", "only for protocol: udp");
  if (!(stun == ::sluice::stun::ServerOptions{})) c.error("stun", "only for protocol: stun");
  if (protocol == Protocol::kTcp) {
    if (cluster.empty()) c.missing("cluster");
    if (!http.virtual_hosts.empty()) c.error("virtual_hosts", "only for protocol: http");
    if (http.http2) c.error("http2", "only for protocol: http");
    c.nested("sni_routes", tcp::validate_sni_routes(sni_routes));
    if (tls && tls->early_data.enabled)
      c.error("tls.early_data",
              "only for protocol: http (a TCP stream cannot tell what is safe "
              "to replay)");
    // sni_routes passes TLS through unread; `tls` terminates it.
    if (!sni_routes.empty() && tls)
      c.error("sni_routes", "cannot be used with tls: sni_routes passes TLS through untouched");
    c.check_duration("sni_timeout", sni_timeout, std::chrono::milliseconds(1), hours(1));
  } else {
    if (!cluster.empty()) c.error("cluster", "only for protocol: tcp");
    if (!sni_routes.empty()) c.error("sni_routes", "only for protocol: tcp");
    if (tls) {
      for (size_t i = 0; i < tls->alpn.size(); ++i) {
        const std::string& p = tls->alpn[i];
        if (p == "h2" && !http.http2) {
          c.error(fmt::format("tls.alpn[{}]", i),
                  "h2 needs an http2 block on the listener (http2: {} serves HTTP/2 with its "
                  "defaults)");
        } else if (p != "h2" && p != "http/1.1" && p != "http/1.0") {
          c.error(fmt::format("tls.alpn[{}]", i),
                  fmt::format("an http listener speaks h2, http/1.1 and http/1.0, got {}", p));
        }
      }
    }
    if (http.http2) {
      c.nested("http2", http.http2->validate());
      if (!tls && !http.http2->prior_knowledge) {
        c.error("http2",
                "a cleartext listener serves HTTP/2 only with prior_knowledge: true (clients "
                "that know it speaks HTTP/2); with tls, ALPN h2 selects it");
      }
      if (tls && http.http2->prior_knowledge) {
        c.error("http2.prior_knowledge", "only for cleartext listeners: with tls, ALPN selects h2");
      }
    }
    if (hash_key != HashKey::kSourceIp) c.error("hash_key", "only for protocol: tcp");
    c.nested("http", http.validate());
    c.nested("virtual_hosts", http::validate_virtual_hosts(http.virtual_hosts));
  }
  c.check_uint("backlog", static_cast<uint64_t>(std::max(backlog, 0)), 1, 65535);
  c.check_uint("max_connections", max_connections, 0, 10'000'000);
  c.nested("socket_options", socket_options.validate(/*listener=*/true));
  c.check_duration("idle_timeout", idle_timeout, Duration{0}, hours(24 * 7));
  c.check_duration("max_duration", max_duration, Duration{0}, hours(24 * 7));
  c.nested("access_log", access_log.validate());
  if (tls) c.nested("tls", tls->validate());
  return c.take();
}

// RFC 5780 needs two IPs and two ports. An OTHER-ADDRESS on the listener's own IP is the
// well-known cause of wrong answers: a NAT that maps or filters by address then looks
// endpoint-independent. A wildcard has no one address to advertise.
void ListenerConfig::check_alternate_address(ConfigChecker& c) const {
  const net::Address& alt = *stun.alternate_address;
  const char* key = "stun.alternate_address";
  auto wildcard = [](const net::Address& a) {
    return a.ip_string() == "0.0.0.0" || a.ip_string() == "::";
  };
  if (alt.family() != address.family()) {
    c.error(key, fmt::format("expected an address of the family of 'address' ({})",
                             address.to_string()));
  } else if (wildcard(address)) {
    c.error(key, fmt::format("needs 'address' to be one IP, not the wildcard {}: OTHER-ADDRESS "
                             "and RESPONSE-ORIGIN name the address that answered",
                             address.ip_string()));
  } else if (wildcard(alt)) {
    c.error(key, "expected one IP, not a wildcard: it is advertised as OTHER-ADDRESS");
  } else if (alt.ip_string() == address.ip_string()) {
    c.error(key, fmt::format("expected another IP than the listener's ({}): an OTHER-ADDRESS on "
                             "the same IP makes an address-dependent NAT look "
                             "endpoint-independent",
                             address.ip_string()));
  } else if (alt.port() == address.port() && alt.port() != 0) {
    c.error(key, fmt::format("expected another port than the listener's ({}): RFC 5780's "
                             "tests change the port and the IP apart",
                             address.port()));
  }
}

ConfigIssues ListenerConfig::validate_datagram() const {
  ConfigChecker c;
  c.check_name("name", name);
  if (address.length() == 0) c.missing("address");
  // The stream settings have no meaning for datagrams: written, they would be ignored.
  ListenerConfig stream;
  const char* what =
      protocol == Protocol::kUdp ? "not for protocol: udp" : "not for protocol: stun";
  if (backlog != stream.backlog) c.error("backlog", what);
  if (max_connections != stream.max_connections) c.error("max_connections", what);
  if (!(socket_options == stream.socket_options)) c.error("socket_options", what);
  if (idle_timeout != stream.idle_timeout) c.error("idle_timeout", what);
  if (max_duration != stream.max_duration) c.error("max_duration", what);
  if (splice != stream.splice) c.error("splice", what);
  if (!sni_routes.empty()) c.error("sni_routes", what);
  if (tls) c.error("tls", what);
  if (!http.virtual_hosts.empty() || http.http2) c.error("virtual_hosts", what);
  if (protocol == Protocol::kUdp) {
    if (cluster.empty()) c.missing("cluster");
    c.nested("udp", udp.validate());
    if (!(stun == ::sluice::stun::ServerOptions{})) c.error("stun", "only for protocol: stun");
    c.nested("access_log", access_log.validate());
  } else {
    if (!cluster.empty()) c.error("cluster", what);
    if (hash_key != HashKey::kSourceIp) c.error("hash_key", what);
    if (!access_log.path.empty()) c.error("access_log", what);
    if (!(udp == udp::UdpOptions{})) c.error("udp", "only for protocol: udp");
    c.nested("stun", stun.validate());
    if (stun.alternate_address) check_alternate_address(c);
  }
  return c.take();
}

}  // namespace sluice::proxy
