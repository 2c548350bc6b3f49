// ProxyListener: what a worker does with the proxy behind one of its listeners, whatever the
// protocol (the TCP proxy, the HTTP proxy): it accepts connections (net::ListenerCallbacks),
// drains, closes, counts its open connections, reports them and its counters. The worker
// holds one list of these. Loop thread only.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/listener.h"
#include "net/tcp_info.h"

namespace sluice::proxy {

struct ListenerConfig;
class AccessLog;
namespace tcp {
struct TcpProxyStats;
}
namespace http {
struct HttpProxyStats;
struct RecentRequest;
}  // namespace http
namespace udp {
struct UdpProxyStats;
}
namespace stun {
struct StunStats;
}
}  // namespace sluice::proxy
namespace sluice::tls {
struct ListenerTlsStats;
class ServerContext;
}  // namespace sluice::tls
namespace sluice::proxy {

// Receives a listener's counters, by protocol.
class ListenerStatsSink {
 public:
  virtual void on_tcp_stats(const std::string& listener, const tcp::TcpProxyStats& stats) = 0;
  virtual void on_http_stats(const std::string& listener, const http::HttpProxyStats& stats) = 0;
  virtual void on_udp_stats(const std::string& listener, const udp::UdpProxyStats& stats) = 0;
  virtual void on_stun_stats(const std::string& listener, const stun::StunStats& stats) = 0;
  // Listeners with `tls:` only.
  virtual void on_tls_stats(const std::string& listener, const tls::ListenerTlsStats& stats) = 0;

 protected:
  ~ListenerStatsSink() = default;
};

class ProxyListener : public net::ListenerCallbacks {
 public:
  virtual ~ProxyListener() = default;

  virtual const ListenerConfig& config() const = 0;
  // The worker drains: no new work; connections end when their work does (HTTP closes idle
  // keep-alive connections now, TCP sessions run until the drain deadline).
  virtual void drain() = 0;
  // A drain for a binary upgrade: the same, except that idle keep-alive connections stay
  // open until their next request, answered with Connection: close (closing them now would
  // race with a request the client is sending on one). Their own idle timeout still applies.
  virtual void drain_keeping_idle() { drain(); }
  // The drain of the process a binary upgrade replaced (its sockets serve on in the new
  // one): drain_keeping_idle(), unless the proxy counts what the upgrade ends.
  virtual void drain_for_upgrade() { drain_keeping_idle(); }
  // Closes every open connection now: `drain_deadline` (the drain ran out of time) or
  // shutdown.
  virtual void close_all(bool drain_deadline) = 0;
  // Open downstream connections.
  virtual size_t active() const = 0;
  // Called whenever the last open connection closes.
  virtual void set_on_idle(std::function<void()> fn) = 0;
  // Where finished requests or connections are logged (null: nowhere).
  virtual void set_access_log(std::shared_ptr<AccessLog> log) = 0;
  // Appends this worker's connections of this listener.
  virtual void report_connections(std::vector<net::ConnectionReport>& out) const = 0;
  virtual void report_stats(ListenerStatsSink& sink) const = 0;
  // Appends the slowest and the failed recent requests (HTTP listeners only).
  virtual void report_recent(std::vector<http::RecentRequest>& /*slow*/,
                             std::vector<http::RecentRequest>& /*failed*/) const {}
  // Connections accepted from now on handshake with `context`; open ones keep theirs.
  virtual void set_tls(std::shared_ptr<tls::ServerContext> context) = 0;

  // The configuration generation (0 at start, one more per applied reload) that requests
  // and sessions starting now are logged with.
  uint64_t generation() const { return generation_; }
  void set_generation(uint64_t generation) { generation_ = generation; }

 private:
  uint64_t generation_ = 0;
};

}  // namespace sluice::proxy
