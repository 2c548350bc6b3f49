// HttpProxy: the HTTP/1.1 reverse proxy of one listener on one worker. Each accepted
// connection becomes an HttpConnection, which parses requests strictly, routes them,
// forwards them through the upstream connection pools (with retries), and streams bodies
// both ways with backpressure. Loop thread only; one instance per listener per worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/histogram.h"
#include "event/loop.h"
#include "http/http1/parser.h"
#include "net/listener.h"
#include "net/tcp_info.h"
#include "proxy/http/http_stats.h"
#include "proxy/listener_config.h"
#include "upstream/cluster.h"

namespace sluice::proxy::http {

class HttpConnection;

using ClusterMap = std::map<std::string, upstream::Cluster*, std::less<>>;

class HttpProxy final : public net::ListenerCallbacks {
 public:
  HttpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config, ClusterMap clusters,
            std::shared_ptr<std::atomic<uint32_t>> active_connections);
  ~HttpProxy();

  void on_accept(net::Fd fd, const net::Address& peer) override;

  // Drain: idle keep-alive connections close now; busy ones after their current response,
  // which carries Connection: close.
  void drain();
  void close_all();
  size_t active() const { return connections_; }
  void set_on_idle(std::function<void()> fn) { on_idle_ = std::move(fn); }
  HttpProxyStats& stats() { return stats_; }
  const ListenerConfig& config() const { return *config_; }
  bool draining() const { return draining_; }
  // Appends this worker's downstream connections of this listener.
  void report_connections(std::vector<net::ConnectionReport>& out) const;
  // Where finished requests are logged (null: nowhere).
  void set_access_log(std::shared_ptr<AccessLog> log) { access_log_ = std::move(log); }

 private:
  friend class HttpConnection;
  void remove(HttpConnection* c);

  event::Loop& loop_;
  std::shared_ptr<const ListenerConfig> config_;
  ClusterMap clusters_;
  std::shared_ptr<std::atomic<uint32_t>> active_connections_;
  sluice::http::http1::ParserLimits parser_limits_;  // every connection's parser points here
  HttpConnection* head_ = nullptr;
  size_t connections_ = 0;
  bool draining_ = false;
  std::function<void()> on_idle_;
  HttpProxyStats stats_;
  MonoTime last_refusal_log_{};
  std::shared_ptr<AccessLog> access_log_;
};

}  // namespace sluice::proxy::http
