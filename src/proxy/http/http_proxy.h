// HttpProxy: the HTTP/1.1 reverse proxy of one listener on one worker. Each accepted
// connection becomes a DownstreamConnection, whose Streams route requests, forward them
// through UpstreamExchanges on the upstream connection pools (with retries), and stream
// bodies both ways with backpressure. It holds what they share: the listener's config, the
// worker's clusters, the counters and the access log. Loop thread only; one instance per
// listener per worker.
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
#include "proxy/http/header_mutation.h"
#include "proxy/http/http_stats.h"
#include "proxy/http/recent_requests.h"
#include "proxy/listener.h"
#include "proxy/listener_config.h"
#include "tls/context.h"
#include "tls/stats.h"
#include "upstream/cluster.h"

namespace sluice::proxy::http {

class DownstreamConnection;

using ClusterMap = std::map<std::string, upstream::Cluster*, std::less<>>;

class HttpProxy final : public ProxyListener {
 public:
  // `tls`: the worker's TLS context for this listener (null: cleartext).
  HttpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config, ClusterMap clusters,
            std::shared_ptr<std::atomic<uint32_t>> active_connections,
            std::shared_ptr<tls::ServerContext> tls = nullptr);
  ~HttpProxy();

  void on_accept(net::Fd fd, const net::Address& peer) override;

  // Drain: idle keep-alive connections close now; busy ones after their current response,
  // which carries Connection: close.
  void drain() override;
  void drain_keeping_idle() override;
  void close_all(bool drain_deadline = false) override;
  size_t active() const override { return connections_; }
  void set_on_idle(std::function<void()> fn) override { on_idle_ = std::move(fn); }
  HttpProxyStats& stats() { return stats_; }
  const ListenerConfig& config() const override { return *config_; }
  const std::shared_ptr<const ListenerConfig>& config_ptr() const { return config_; }
  // A reload: requests that start from now on are routed by `config` (those under way keep
  // the configuration they started with); new connections get its limits and timeouts.
  // Counters of routes that keep their name carry over.
  void set_config(std::shared_ptr<const ListenerConfig> config);
  // The worker's clusters changed (a reload added some).
  void set_clusters(ClusterMap clusters) { clusters_ = std::move(clusters); }
  bool draining() const { return draining_; }
  // Appends this worker's downstream connections of this listener.
  void report_connections(std::vector<net::ConnectionReport>& out) const override;
  // Where finished requests are logged (null: nowhere).
  void set_access_log(std::shared_ptr<AccessLog> log) override { access_log_ = std::move(log); }
  AccessLog* access_log() const { return access_log_.get(); }
  event::Loop& loop() const { return loop_; }
  // The worker's cluster of that name (null: none).
  upstream::Cluster* cluster(std::string_view name) const {
    auto it = clusters_.find(name);
    return it == clusters_.end() ? nullptr : it->second;
  }
  // Every connection's parser points here.
  const sluice::http::http1::ParserLimits& parser_limits() const { return parser_limits_; }
  // A connection closed: it leaves the list and is deleted once the iteration ends.
  void remove(DownstreamConnection* c);
  // Where request ids, trace ids and retry jitter come from (tests fix it).
  RandomSource random() const { return random_; }
  void set_random(RandomSource source) { random_ = source; }
  void report_stats(ListenerStatsSink& sink) const override {
    sink.on_http_stats(config_->name, stats_);
    if (tls_) sink.on_tls_stats(config_->name, tls_stats_);
  }
  void report_recent(std::vector<RecentRequest>& slow,
                     std::vector<RecentRequest>& failed) const override {
    recent_.report(slow, failed, loop_.now());
  }
  // The slowest and the failed recent requests, for the dashboard.
  RecentRequests& recent() { return recent_; }
  void set_tls(std::shared_ptr<tls::ServerContext> context) override { tls_ = std::move(context); }
  // The TLS context new connections handshake with (null: cleartext).
  tls::ServerContext* tls() const { return tls_.get(); }
  tls::ListenerTlsStats& tls_stats() { return tls_stats_; }

 private:
  event::Loop& loop_;
  std::shared_ptr<const ListenerConfig> config_;
  ClusterMap clusters_;
  std::shared_ptr<std::atomic<uint32_t>> active_connections_;
  sluice::http::http1::ParserLimits parser_limits_;  // every connection's parser points here
  DownstreamConnection* head_ = nullptr;
  size_t connections_ = 0;
  bool draining_ = false;
  std::function<void()> on_idle_;
  HttpProxyStats stats_;
  MonoTime last_refusal_log_{};
  std::shared_ptr<AccessLog> access_log_;
  RandomSource random_ = thread_random;
  std::shared_ptr<tls::ServerContext> tls_;
  tls::ListenerTlsStats tls_stats_;
  RecentRequests recent_;
};

}  // namespace sluice::proxy::http
