// Metrics: the counters of every worker, merged when scraped, and their Prometheus text
// exposition (format 0.0.4). Workers keep plain per-thread counters; the main thread asks
// each for a copy, so nothing on the request path is shared or atomic.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dns/resolver.h"
#include "event/loop.h"
#include "proxy/http/http_proxy.h"
#include "proxy/tcp/tcp_proxy.h"
#include "upstream/cluster.h"
#include "upstream/health/health_manager.h"

namespace sluice::admin {

// One worker's copy of its counters.
struct WorkerReport {
  struct Cluster {
    upstream::ClusterStats stats;
    std::vector<upstream::pool::PoolStats> pools;  // by endpoint index (zero: no pool)
    std::vector<uint32_t> active_requests;         // by endpoint index
  };
  std::map<std::string, proxy::tcp::TcpProxyStats> tcp;
  std::map<std::string, proxy::http::HttpProxyStats> http;
  std::vector<Cluster> clusters;  // config order
  event::LoopStats loop;
  std::vector<net::ConnectionReport> connections;  // only when asked for
};

struct MetricsInput {
  std::vector<WorkerReport> workers;
  std::map<std::string, uint32_t> active_connections;  // per listener, across workers
  const std::vector<std::shared_ptr<const upstream::ClusterConfig>>* clusters = nullptr;
  const std::vector<std::shared_ptr<const proxy::ListenerConfig>>* listeners = nullptr;
  const upstream::health::HealthManager* health = nullptr;
  const dns::ResolverStats* dns = nullptr;  // null without DNS clusters
};

std::string render_prometheus(const MetricsInput& in);
// GET /clusters: every cluster's endpoints with weight, health, ejections, pool state.
std::string render_clusters_json(const MetricsInput& in);
// GET /listeners
std::string render_listeners_json(
    const MetricsInput& in, const std::vector<std::pair<std::string, std::string>>& addresses);
// GET /connections[?cluster=NAME|listener=NAME]: live connections with TCP_INFO.
std::string render_connections_json(const MetricsInput& in, std::string_view cluster,
                                    std::string_view listener);

}  // namespace sluice::admin
