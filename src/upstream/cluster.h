// Cluster configuration (a named set of endpoints and how to connect to them) and the
// per-worker Cluster state built from it. ClusterConfig is immutable once loaded and shared
// by all workers through the config snapshot; a Cluster belongs to one worker.
#pragma once

#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/histogram.h"
#include "base/metric.h"
#include "base/units.h"
#include "event/loop.h"
#include "event/timer.h"
#include "http/http2/client_codec.h"
#include "net/address.h"
#include "net/socket_options.h"
#include "tls/config.h"
#include "upstream/endpoint.h"
#include "upstream/health/health.h"
#include "upstream/lb/load_balancer.h"
#include "upstream/pool/conn_pool.h"
#include "upstream/pool/http2_pool.h"

namespace sluice::upstream {

// Fail-fast limits for the whole cluster across all workers (0 = no limit). Connection and
// pending-request limits are per endpoint, in the pool settings.
struct CircuitBreakers {
  uint32_t max_active_requests = 0;
  uint32_t max_active_retries = 0;
  // Retry budget: retries in flight at most budget_percent of the active requests, but
  // always at least min_retry_concurrency. budget_percent 0 = no budget.
  uint32_t budget_percent = 0;
  uint32_t min_retry_concurrency = 3;

  ConfigIssues validate() const;

  bool operator==(const CircuitBreakers&) const = default;
};

// A name a DNS cluster resolves, with the port and weight its addresses get.
struct DnsTarget {
  std::string host;
  uint16_t port = 0;
  uint32_t weight = 1;
  bool operator==(const DnsTarget&) const = default;
};

// type: etcd: the endpoints are the values of the keys under `prefix` (discovery/etcd_source.h).
struct EtcdSourceConfig {
  std::vector<net::Address> endpoints;  // etcd members' client URLs (host:port), tried in turn
  std::string prefix;                   // "/services/api/"
  std::string username;                 // empty: no auth
  std::string password;
  // A watch that shows neither an event nor a progress notification for this long is made
  // again (set etcd's --experimental-watch-progress-notify-interval below it).
  Duration watch_timeout = std::chrono::seconds(60);
  // HTTPS to the members (a CA to verify them, a client certificate when they ask for one);
  // absent: plain HTTP.
  std::optional<tls::ClientConfig> tls;
  // Stale (etcd not reached) for longer than this: /ready says 503 while the last good set
  // still serves, so an orchestrator can tell. 0: never.
  Duration max_staleness{};
  // Startup waits this long for a first good read (retrying meanwhile) before it goes on
  // without the cluster's endpoints. 0: it waits for the first attempt only, good or not.
  Duration initial_fetch_timeout{};
  // Each applied set is also written to this file (atomically, off the main loop); a start
  // that cannot reach etcd serves the set found there, stale. Empty: nothing persisted.
  std::string persist;
  // Events within this long of the first are applied as one set (0: each message at once).
  Duration batch_window = std::chrono::milliseconds(100);
  bool operator==(const EtcdSourceConfig&) const = default;
};

struct ClusterConfig {
  static constexpr uint32_t kMaxWeight = EndpointConfig::kMaxWeight;

  // Where the endpoints come from: the list below (static), every address of every name
  // (strict_dns), the first address of the name (logical_dns), SRV records (dns_srv), or a
  // JSON file watched for changes (file; see discovery/file_source.h).
  enum class Type { kStatic, kStrictDns, kLogicalDns, kDnsSrv, kFile, kEtcd };
  // What happens to an endpoint whose address left the DNS answer: it takes no new requests
  // either way; kDrain also closes its idle pooled connections at once and its busy ones
  // after their request, kKeep lets them live out their idle or max lifetime, kClose closes
  // every connection to it at once (requests in flight on them fail, TCP sessions end).
  enum class OnAddressChange { kDrain, kKeep, kClose };

  // What HTTP requests speak to the endpoints: HTTP/1.1, HTTP/2 (prior knowledge on
  // cleartext, ALPN h2 over TLS), or auto (whatever ALPN agrees over TLS; HTTP/1.1 on
  // cleartext).
  enum class Protocol { kHttp1, kHttp2, kAuto };

  std::string name;
  Type type = Type::kStatic;
  Protocol protocol = Protocol::kHttp1;
  // The HTTP/2 client settings (windows, limits) of connections that speak it.
  http::http2::ClientOptions http2;
  Duration connect_timeout = std::chrono::seconds(5);
  uint32_t max_connect_attempts = 3;
  std::optional<net::Address> source_address;  // bound with IP_BIND_ADDRESS_NO_PORT
  net::SocketOptions socket_options;
  std::vector<EndpointConfig> endpoints;  // static
  std::vector<DnsTarget> dns_targets;     // strict_dns, logical_dns
  std::string srv_name;                   // dns_srv ("_http._tcp.example.com")
  std::string file_path;                  // file: the endpoint list
  // file: changes within this long of the first are read as one (0: each change at once).
  Duration file_batch_window = std::chrono::milliseconds(100);
  EtcdSourceConfig etcd;  // etcd
  OnAddressChange on_address_change = OnAddressChange::kDrain;
  // logical_dns: how long a connect to one address of the answer may go unanswered before
  // the next address is tried as well (RFC 8305's Connection Attempt Delay).
  Duration connection_attempt_delay = std::chrono::milliseconds(250);
  // Re-resolution when an answer gives no usable TTL (a failure without a stale answer).
  Duration dns_failure_refresh = std::chrono::seconds(5);
  // HTTP connection pools; max_connections is per endpoint across all workers.
  pool::PoolConfig pool;
  lb::LbConfig lb;
  health::HealthCheckConfig health_check;
  std::optional<health::OutlierConfig> outlier;  // absent: no passive health checking
  // Below this share of usable endpoints (percent), balance over all of them; 0 = never.
  uint32_t panic_threshold = 50;
  // TLS to the endpoints; absent: plain TCP.
  std::optional<tls::ClientConfig> tls;
  CircuitBreakers circuit_breakers;

  // Every rule of this block and the blocks inside it (implemented in cluster_config.cc).
  ConfigIssues validate() const;

  bool operator==(const ClusterConfig&) const = default;
};

// The names of ClusterConfig::Type, in its order (the config's values; /config and /clusters).
inline constexpr const char* kClusterTypeNames[] = {"static",  "strict_dns", "logical_dns",
                                                    "dns_srv", "file",       "etcd"};
static_assert(std::size(kClusterTypeNames) == static_cast<size_t>(ClusterConfig::Type::kEtcd) + 1);
// Whether the cluster's endpoints come from DNS (resolved by discovery::DnsSource).
constexpr bool is_dns(ClusterConfig::Type t) {
  return t == ClusterConfig::Type::kStrictDns || t == ClusterConfig::Type::kLogicalDns ||
         t == ClusterConfig::Type::kDnsSrv;
}
// Whether an endpoint source (DNS, a file) lists the endpoints over time, rather than the
// configuration.
constexpr bool is_discovered(ClusterConfig::Type t) {
  return t != ClusterConfig::Type::kStatic;
}
constexpr const char* to_string(ClusterConfig::Type t) {
  return kClusterTypeNames[static_cast<size_t>(t)];
}

inline constexpr const char* kClusterProtocolNames[] = {"http1", "http2", "auto"};
constexpr const char* to_string(ClusterConfig::Protocol p) {
  return kClusterProtocolNames[static_cast<size_t>(p)];
}

// The name TLS connections to the cluster's endpoints send and check when `tls.sni` does not
// give one: a DNS cluster's one name; "" for endpoints given as addresses (or several names),
// which are then checked by IP.
std::string default_tls_host(const ClusterConfig& config);

// Whether `a` is one of the endpoint's addresses (its own or a fallback).
bool has_address(const EndpointConfig& e, const net::Address& a);

// The snapshot in force before the health manager has published one.
health::HealthSnapshot initial_health(const ClusterConfig& config);
// Whether too few endpoints are usable (0 flags) for `threshold` percent.
bool below_panic_threshold(const health::HealthSnapshot& snapshot, uint32_t threshold);

#define SLUICE_CLUSTER_OVERFLOW_HELP \
  "Requests failed fast or not retried because a circuit breaker was full."

// Counters for one cluster on one worker, declared once (base/metric.h says how to add one);
// merged across workers when exported.
// clang-format off
#define SLUICE_CLUSTER_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                          \
  COUNTER(connect_attempts, "sluice_cluster_connect_attempts_total", "", "connect attempts",       \
          "Upstream connect attempts.")                                                            \
  COUNTER(connect_failures, "sluice_cluster_connect_failures_total", "", "connect failures",       \
          "Upstream connects that failed.")                                                        \
  COUNTER(no_healthy_endpoint, "sluice_cluster_no_healthy_endpoint_total", "",                     \
          "no healthy endpoint",                                                                   \
          "Requests or connections refused because no endpoint was usable.")                       \
  COUNTER(overflow_active_requests, "sluice_cluster_overflow_total",                               \
          "breaker=\"max_active_requests\"", "overflow (max_active_requests)",                     \
          SLUICE_CLUSTER_OVERFLOW_HELP)                                                            \
  /* a retry refused by max_active_retries or the budget */                                        \
  COUNTER(overflow_retries, "sluice_cluster_overflow_total", "breaker=\"retries\"",                \
          "retries refused (breaker or budget)", SLUICE_CLUSTER_OVERFLOW_HELP)                     \
  COUNTER(connect_timeouts, "sluice_cluster_connect_timeouts_total", "", "connect timeouts",       \
          "Upstream connects that timed out (counted in the connect failures too).")               \
  COUNTER(connect_refused, "sluice_cluster_connect_refused_total", "", "connects refused",         \
          "Upstream connects refused by the endpoint (counted in the connect failures too).")      \
  COUNTER(no_endpoint_reachable, "sluice_cluster_no_endpoint_reachable_total", "",                 \
          "no endpoint reachable",                                                                 \
          "TCP connections closed because max_connect_attempts connects failed.")                  \
  COUNTER(ports_exhausted, "sluice_cluster_ports_exhausted_total", "", "ports exhausted",          \
          "TCP connects that found no free local port towards the endpoint (EADDRNOTAVAIL).")      \
  COUNTER(quick_acks, "sluice_cluster_quick_acks_total", "", "quick ACKs",                         \
          "Responses read in part and acknowledged at once (TCP_QUICKACK), so a Nagle-bound "      \
          "upstream sends the rest without waiting for a delayed ACK.")                            \
  COUNTER(delayed_ack_stalls, "sluice_cluster_delayed_ack_stalls_total", "",                      \
          "delayed-ACK stalls",                                                                    \
          "Responses whose body followed the head after 35-250 ms on a reused connection: a "      \
          "Nagle-bound upstream waiting for a delayed ACK (see socket_options.quickack).")         \
  /* HTTP: from an attempt's start to a connection in hand */                                      \
  HISTOGRAM(pool_wait, "sluice_cluster_pool_wait_seconds", "", "pool wait",                        \
            "HTTP: from an attempt's start until it had a connection (a new one's connect "        \
            "included).")
// clang-format on

struct ClusterStats {
  SLUICE_METRIC_MEMBERS(SLUICE_CLUSTER_STATS)
  SLUICE_METRIC_MERGE(ClusterStats, SLUICE_CLUSTER_STATS)
  void add(const ClusterStats& o) { add_declared(o); }
};

class Cluster {
 public:
  // `workers` shares the pool's max_connections among the workers. `shared` is this
  // cluster's cross-worker state; `sink` (null without outlier detection) hears outcomes,
  // tagged with `index`, the cluster's position in the config.
  Cluster(event::Loop& loop, std::shared_ptr<const ClusterConfig> config, uint32_t workers,
          size_t index, health::ClusterShared& shared, health::OutcomeSink* sink);
  ~Cluster();

  const ClusterConfig& config() const { return *config_; }
  // The worker's TLS context for this cluster (when it has `tls:`); before the first pool.
  void set_tls(std::shared_ptr<tls::ClientContext> context) { tls_ = std::move(context); }
  tls::ClientContext* tls_context() const { return tls_.get(); }
  // The name TLS connections send and check when `tls.sni` does not give one.
  std::string tls_host() const;
  ClusterStats& stats() { return stats_; }
  // The endpoint table, by slot (health::HealthSnapshot says how slots are reused).
  const EndpointConfig& endpoint(size_t index) const { return (*health_->endpoints)[index]; }
  size_t endpoint_count() const { return health_->endpoints->size(); }

  // Whether any endpoint may take a new request or connection now.
  bool has_endpoints() const { return lb_ != nullptr; }
  // Requires has_endpoints().
  size_t pick(const lb::PickContext& ctx) { return lb_->pick(ctx); }
  // A new health snapshot from the manager: rebuilds the balancer and drains the pools of
  // endpoints that started draining.
  void set_health(std::shared_ptr<const health::HealthSnapshot> snapshot);
  // With on_address_change: close, `fn(endpoint, removed)` hears that connections to an
  // endpoint that left the answer (`removed`), or to addresses an endpoint no longer has
  // (logical_dns), must close now: for connections the pools do not own (TCP sessions).
  // Until `owner` removes it.
  void add_close_listener(const void* owner, std::function<void(size_t, bool)> fn) {
    close_listeners_.emplace_back(owner, std::move(fn));
  }
  void remove_close_listeners(const void* owner) {
    std::erase_if(close_listeners_, [owner](const auto& l) { return l.first == owner; });
  }

  // An exchange with `endpoint` ended this way (fed to outlier detection).
  void report(size_t endpoint, health::Outcome outcome);
  // Requests in flight per endpoint on this worker (least_request).
  void request_started(size_t endpoint) { ++active_[endpoint]; }
  void request_finished(size_t endpoint) { --active_[endpoint]; }
  uint32_t active_requests(size_t endpoint) const {
    return endpoint < active_.size() ? active_[endpoint] : 0;
  }
  // The endpoint's pool counters on this worker (null: no pool made yet).
  template <typename Fn>
  void for_each_pool(Fn fn) const {
    for (size_t i = 0; i < pools_.size(); ++i) {
      if (pools_[i]) fn(i, *pools_[i]);
    }
  }
  const pool::PoolStats* pool_stats(size_t endpoint) const {
    return endpoint < pools_.size() && pools_[endpoint] ? &pools_[endpoint]->stats() : nullptr;
  }

  // Circuit breakers: false when the limit is reached (nothing is taken then).
  bool try_start_request();
  void finish_request();
  bool try_start_retry();
  void finish_retry();
  // This worker's HTTP connection pool for endpoint `index`, made on first use.
  pool::ConnPool& pool(size_t index);
  // This worker's HTTP/2 streams to endpoint `index` (over pool(index)), made on first use.
  pool::Http2Pool& http2_pool(size_t index);
  // Whether requests go out as HTTP/2: protocol http2 says so for every request; auto
  // decides by ALPN per connection, and once an endpoint's TLS agreed on h2 its requests
  // take HTTP/2 streams.
  bool speaks_http2() const { return config_->protocol == ClusterConfig::Protocol::kHttp2; }
  bool speaks_http2(size_t endpoint) const {
    return speaks_http2() ||
           (config_->protocol == ClusterConfig::Protocol::kAuto && endpoint < http2_pools_.size() &&
            http2_pools_[endpoint] && http2_pools_[endpoint]->learned());
  }
  // protocol auto over TLS: the endpoint's connections may turn out to speak HTTP/2.
  bool may_speak_http2() const {
    return config_->protocol == ClusterConfig::Protocol::kAuto && config_->tls;
  }
  void drain_pools();
  // Takes drain_pools() back (a removed cluster that a reload brings back): pools of
  // endpoints that may take requests keep connections again.
  void undrain_pools();
  // New settings for the same cluster (a reload). Load-balancer state, requests in flight
  // and the pools stay; pool limits and timeouts apply from now on; when what a connection
  // is (protocol, TLS, socket options, source address) changed, pooled connections close
  // (idle ones now, busy ones after their request) and new ones are made the new way.
  void reconfigure(std::shared_ptr<const ClusterConfig> config, health::OutcomeSink* sink,
                   std::shared_ptr<tls::ClientContext> tls);
  // Opens every endpoint's pool now when min_idle asks for warm connections.
  void warm_up_pools();

 private:
  void rebuild_balancer();
  void set_worker_pool_config();
  // Whether nothing on this worker refers to endpoint `i`: no request or session in flight,
  // no pooled connection, no waiting request.
  bool unused(size_t i) const;
  // Releases (ClusterShared::release) every removed endpoint this worker no longer uses, and
  // looks again later while some are still in use.
  void release_departed();
  static constexpr Duration kReleaseRecheck = std::chrono::milliseconds(200);

  event::Loop& loop_;
  std::shared_ptr<const ClusterConfig> config_;
  size_t index_;
  health::ClusterShared& shared_;
  health::OutcomeSink* sink_;
  std::shared_ptr<const health::HealthSnapshot> health_;
  std::vector<uint32_t> active_;
  // By slot: the removal this worker last released (HealthSnapshot::removals).
  std::vector<uint32_t> released_;
  // By slot: 1 + the loop iteration in which a removed endpoint was first seen unused (0: not).
  std::vector<uint64_t> quiet_since_;
  // By slot: this worker reported a failure and no success since. The main thread's streak
  // flag lags behind the reports it has not handled yet, so a success right after a
  // failure is reported on this worker's own word.
  std::vector<bool> failed_last_;
  uint32_t workers_;
  uint64_t lb_seed_;
  std::unique_ptr<lb::LoadBalancer> lb_;  // null while no endpoint is usable
  pool::PoolConfig worker_pool_config_;
  std::shared_ptr<tls::ClientContext> tls_;
  std::vector<std::unique_ptr<pool::ConnPool>> pools_;
  // After pools_: destroyed first, as they borrow the pools' connections.
  std::vector<std::unique_ptr<pool::Http2Pool>> http2_pools_;
  // HTTP/2 pools replaced by a reload, draining their streams; after pools_.
  std::vector<std::unique_ptr<pool::Http2Pool>> retired_http2_pools_;
  std::vector<std::pair<const void*, std::function<void(size_t, bool)>>> close_listeners_;
  ClusterStats stats_;
  event::Timer release_timer_;
};

}  // namespace sluice::upstream
