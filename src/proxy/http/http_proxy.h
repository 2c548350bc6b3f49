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
#include "proxy/listener.h"
#include "proxy/listener_config.h"
#include "upstream/cluster.h"

namespace sluice::proxy::http {

class DownstreamConnection;

struct HttpProxyStats {
  uint64_t accepted = 0;
  uint64_t refused_max_connections = 0;
  uint64_t requests = 0;
  uint64_t responses_1xx = 0, responses_2xx = 0, responses_3xx = 0, responses_4xx = 0,
           responses_5xx = 0;
  uint64_t local_replies = 0;
  uint64_t retries = 0;
  uint64_t stale_connection_retries = 0;
  uint64_t upstream_timeouts = 0;
  uint64_t parse_errors = 0;
  // Trailer fields not forwarded (RFC 9110 §6.5.1: framing, routing, authentication and
  // control fields), both directions.
  uint64_t trailers_dropped = 0;
  Histogram request_duration;  // head received → response complete (or failure)
  struct RouteStats {
    uint64_t responses[5] = {};  // 1xx..5xx
    Histogram duration;
  };
  std::vector<RouteStats> routes;  // by Route::id

  void add(const HttpProxyStats& o) {
    accepted += o.accepted;
    refused_max_connections += o.refused_max_connections;
    requests += o.requests;
    responses_1xx += o.responses_1xx;
    responses_2xx += o.responses_2xx;
    responses_3xx += o.responses_3xx;
    responses_4xx += o.responses_4xx;
    responses_5xx += o.responses_5xx;
    local_replies += o.local_replies;
    retries += o.retries;
    stale_connection_retries += o.stale_connection_retries;
    upstream_timeouts += o.upstream_timeouts;
    parse_errors += o.parse_errors;
    trailers_dropped += o.trailers_dropped;
    request_duration.add(o.request_duration);
    if (routes.size() < o.routes.size()) routes.resize(o.routes.size());
    for (size_t i = 0; i < o.routes.size(); ++i) {
      for (int c = 0; c < 5; ++c) routes[i].responses[c] += o.routes[i].responses[c];
      routes[i].duration.add(o.routes[i].duration);
    }
  }
};

using ClusterMap = std::map<std::string, upstream::Cluster*, std::less<>>;

class HttpProxy final : public ProxyListener {
 public:
  HttpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config, ClusterMap clusters,
            std::shared_ptr<std::atomic<uint32_t>> active_connections);
  ~HttpProxy();

  void on_accept(net::Fd fd, const net::Address& peer) override;

  // Drain: idle keep-alive connections close now; busy ones after their current response,
  // which carries Connection: close.
  void drain() override;
  void close_all(bool drain_deadline = false) override;
  size_t active() const override { return connections_; }
  void set_on_idle(std::function<void()> fn) override { on_idle_ = std::move(fn); }
  HttpProxyStats& stats() { return stats_; }
  const ListenerConfig& config() const override { return *config_; }
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
  }

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
};

}  // namespace sluice::proxy::http
