// Metrics: the counters of every worker, merged when scraped, and their Prometheus text
// exposition (format 0.0.4). Workers keep plain per-thread counters; the main thread asks
// each for a copy, so nothing on the request path is shared or atomic.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "admin/dashboard_events_types.h"
#include "base/metric.h"
#include "bgp/speaker.h"
#include "dns/resolver.h"
#include "event/loop.h"
#include "net/tcp_info.h"
#include "proxy/http/http_stats.h"
#include "proxy/http/recent_requests.h"
#include "proxy/listener_config.h"
#include "proxy/stun/stun_stats.h"
#include "proxy/tcp/tcp_stats.h"
#include "proxy/udp/udp_stats.h"
#include "tls/stats.h"
#include "upstream/cluster.h"
#include "upstream/health/health_manager.h"
#include "upstream/registration_stats.h"
#include "upstream/source_stats.h"

namespace sluice::admin {

// The gauges computed at scrape time (from the shared connection counts, the health
// manager's snapshots and the workers' balancer state), declared like the counters
// (base/metric.h).
// clang-format off
#define SLUICE_LISTENER_GAUGES(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                        \
  GAUGE(connections_active, "sluice_listener_connections_active", "", "open connections",          \
        "Open downstream connections.")
#define SLUICE_CLUSTER_GAUGES(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                         \
  GAUGE(panic, "sluice_cluster_panic", "", "panic", "1 while the cluster balances in panic mode.") \
  GAUGE(endpoint_slots, "sluice_cluster_endpoint_slots", "", "endpoint slots",                     \
        "Slots of the cluster's endpoint table: listed endpoints, and departed ones until no "     \
        "worker uses them.")
#define SLUICE_ENDPOINT_STATE_HELP "1 for each reason the endpoint takes no new requests."
#define SLUICE_ENDPOINT_HEALTH_GAUGES(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                 \
  GAUGE(usable, "sluice_endpoint_usable", "", "usable",                                            \
        "1 when the endpoint takes new requests (healthy, not ejected, not draining).")            \
  GAUGE(health_check_failed, "sluice_endpoint_state", "state=\"failed_health_check\"",             \
        "failed health check", SLUICE_ENDPOINT_STATE_HELP)                                         \
  GAUGE(ejected, "sluice_endpoint_state", "state=\"ejected\"", "ejected",                          \
        SLUICE_ENDPOINT_STATE_HELP)                                                                \
  GAUGE(draining, "sluice_endpoint_state", "state=\"draining\"", "draining",                       \
        SLUICE_ENDPOINT_STATE_HELP)                                                                \
  GAUGE(ejections, "sluice_endpoint_ejections", "", "ejections",                                   \
        "Ejections counted against the endpoint (its next ejection time multiplier).")
#define SLUICE_ENDPOINT_LOAD_GAUGES(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                   \
  GAUGE(active_requests, "sluice_endpoint_active_requests", "", "active requests",                 \
        "Requests in flight to the endpoint.")
#define SLUICE_PROCESS_GAUGES(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                         \
  GAUGE(ephemeral_ports, "sluice_ephemeral_ports", "", "ephemeral ports",                          \
        "Local ports available for upstream connections (net.ipv4.ip_local_port_range). Each "     \
        "connection closed by sluice holds one in TIME_WAIT for 60 s: "                            \
        "rate(sluice_endpoint_connects_total[1m]) * 60 / this is the share in use.")
#define SLUICE_CERTIFICATE_GAUGES(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                     \
  GAUGE(expiry_seconds, "sluice_tls_certificate_expiry_seconds", "", "seconds until expiry",       \
        "Seconds until the certificate a TLS listener serves expires (0: expired).")        \
  GAUGE(reloads, "sluice_tls_certificate_reloads", "", "reloads",                                  \
        "Times the listener's certificate files were read again and swapped in.")                  \
  GAUGE(reload_failures, "sluice_tls_certificate_reload_failures", "", "reload failures",          \
        "Times new certificate files were rejected and the last good ones kept.")
// clang-format on

struct ListenerGauges {
  SLUICE_METRIC_MEMBERS(SLUICE_LISTENER_GAUGES)
};
struct ClusterGauges {
  SLUICE_METRIC_MEMBERS(SLUICE_CLUSTER_GAUGES)
};
struct EndpointHealthGauges {
  SLUICE_METRIC_MEMBERS(SLUICE_ENDPOINT_HEALTH_GAUGES)
};
struct EndpointLoadGauges {
  SLUICE_METRIC_MEMBERS(SLUICE_ENDPOINT_LOAD_GAUGES)
  SLUICE_METRIC_MERGE(EndpointLoadGauges, SLUICE_ENDPOINT_LOAD_GAUGES)
};
struct ProcessGauges {
  SLUICE_METRIC_MEMBERS(SLUICE_PROCESS_GAUGES)
};
struct CertificateGauges {
  SLUICE_METRIC_MEMBERS(SLUICE_CERTIFICATE_GAUGES)
};

// One certificate a TLS listener serves now (main thread's view).
struct CertificateReport {
  std::string listener;
  std::string file;  // its certificate_chain
  std::string subject;
  std::vector<std::string> names;
  std::chrono::system_clock::time_point not_after;
  bool ocsp_stapled = false;
  uint64_t reloads = 0;
  uint64_t reload_failures = 0;
};

// What a gather asks for beyond the counters.
struct GatherScope {
  bool connections = false;  // the open connections (with TCP_INFO)
  bool recent = false;       // the slowest and failed recent requests
  bool dns = false;          // the resolver's cache, name by name
};

// One worker's copy of its counters.
struct WorkerReport {
  struct Cluster {
    upstream::ClusterStats stats;
    std::vector<upstream::pool::PoolStats> pools;  // by endpoint index (zero: no pool)
    std::vector<uint32_t> active_requests;         // by endpoint index
  };
  std::map<std::string, proxy::tcp::TcpProxyStats> tcp;
  std::map<std::string, proxy::http::HttpProxyStats> http;
  std::map<std::string, tls::ListenerTlsStats> tls;  // listeners with `tls:`
  std::map<std::string, proxy::udp::UdpProxyStats> udp;
  std::map<std::string, proxy::stun::StunStats> stun;
  std::vector<Cluster> clusters;  // config order
  event::LoopStats loop;
  std::vector<net::ConnectionReport> connections;  // only when asked for
  // Only when asked for: per HTTP listener, its slowest and failed recent requests.
  struct Recent {
    std::vector<proxy::http::RecentRequest> slow, failed;
  };
  std::map<std::string, Recent> recent;
};

struct MetricsInput {
  std::vector<WorkerReport> workers;
  std::map<std::string, uint32_t> active_connections;  // per listener, across workers
  const std::vector<std::shared_ptr<const upstream::ClusterConfig>>* clusters = nullptr;
  const std::vector<std::shared_ptr<const proxy::ListenerConfig>>* listeners = nullptr;
  std::shared_ptr<const void> keep;  // keeps `clusters` and `listeners` alive
  // The HealthManager's (and the worker reports') index of each of `clusters`; empty: the
  // same as its position.
  std::vector<size_t> cluster_index;
  size_t index_of(size_t cluster) const {
    return cluster < cluster_index.size() ? cluster_index[cluster] : cluster;
  }
  const upstream::health::HealthManager* health = nullptr;
  const dns::ResolverStats* dns = nullptr;   // null without DNS clusters
  std::vector<dns::Cache::Saved> dns_names;  // GatherScope::dns: the resolver's cache
  std::vector<CertificateReport> certificates;
  // The BGP speaker's sessions (by peer address) and prefixes; empty without `bgp:`.
  std::vector<std::pair<std::string, bgp::PeerStats>> bgp_peers;
  std::vector<std::pair<std::string, bgp::PrefixStats>> bgp_prefixes;
  // sluice's own registration in etcd; empty without `registration:`.
  std::optional<upstream::RegistrationStats> registration;
  // The endpoint source of each cluster that has one (type: file), by cluster name.
  struct Source {
    std::string kind;    // "file"
    std::string target;  // its path
    upstream::SourceState state = upstream::SourceState::kStarting;
    upstream::SourceStats stats;
  };
  std::map<std::string, Source> sources;
  // The dashboard's event streams (zero without a dashboard).
  DashboardEventStats dashboard_events;
};

// GET /metrics: every declared metric, in the Prometheus text format 0.0.4. A family is
// written (# HELP, # TYPE) even without samples, except DNS families without a resolver.
std::string render_prometheus(const MetricsInput& in);
// The same in OpenMetrics 1.0 (before to_openmetrics()), the request-duration and pool-wait
// histograms' buckets with exemplars: a recent request of the listener or cluster
// (`in.workers[].recent`, gathered with GatherScope::recent) whose value falls in the bucket,
// with its trace id (admin/exemplars.h).
std::string render_openmetrics(const MetricsInput& in);
// Prometheus text to OpenMetrics: a counter family is named without its _total suffix (its
// samples keep it), and the exposition ends with # EOF.
std::string to_openmetrics(std::string_view text);
// Whether an Accept header asks for OpenMetrics (application/openmetrics-text, q > 0).
bool wants_openmetrics(std::string_view accept);
// The lines logged at exit: each listener's, each cluster's and the health manager's
// counters, by their summary words ("listener web: accepted 3, refused (max_connections) 0,
// ..."). Uses `workers`, `clusters` and `health` (and `dns` when set).
std::vector<std::string> exit_summary(const MetricsInput& in);
// GET /clusters: every cluster's endpoints with weight, health, ejections, pool state.
std::string render_clusters_json(const MetricsInput& in);
// GET /listeners
std::string render_listeners_json(
    const MetricsInput& in, const std::vector<std::pair<std::string, std::string>>& addresses);
// GET /connections[?cluster=NAME|listener=NAME]: live connections with TCP_INFO.
std::string render_connections_json(const MetricsInput& in, std::string_view cluster,
                                    std::string_view listener);

}  // namespace sluice::admin
