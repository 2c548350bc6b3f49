#include "admin/metrics.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "base/histogram.h"
#include "net/socket_options.h"

namespace sluice::admin {
namespace {

// Label values: backslash, double quote and newline escaped.
std::string escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class Writer {
 public:
  // Starts a metric family: HELP and TYPE once.
  void family(const char* name, const char* type, const char* help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                   type);
  }
  template <typename Value>
  void sample(std::string_view name, std::string_view labels, Value value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    fmt::format_to(std::back_inserter(out_), " {}\n", value);
  }
  void histogram(std::string_view name, const std::string& labels, const Histogram& h) {
    uint64_t cumulative = 0;
    std::string sep = labels.empty() ? "" : ",";
    for (size_t i = 0; i < Histogram::kBoundsUs.size(); ++i) {
      cumulative += h.bucket(i);
      sample(fmt::format("{}_bucket", name),
             fmt::format("{}{}le=\"{}\"", labels, sep,
                         static_cast<double>(Histogram::kBoundsUs[i]) / 1e6),
             cumulative);
    }
    cumulative += h.bucket(Histogram::kBoundsUs.size());
    sample(fmt::format("{}_bucket", name), fmt::format("{}{}le=\"+Inf\"", labels, sep), cumulative);
    sample(fmt::format("{}_sum", name), labels, static_cast<double>(h.sum_us()) / 1e6);
    sample(fmt::format("{}_count", name), labels, cumulative);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string label(const char* k, std::string_view v) {
  return fmt::format("{}=\"{}\"", k, escape(v));
}

}  // namespace

std::string render_prometheus(const MetricsInput& in) {
  Writer w;
  // Merge the workers.
  std::map<std::string, proxy::tcp::TcpProxyStats> tcp;
  std::map<std::string, proxy::http::HttpProxyStats> http;
  size_t nclusters = in.clusters ? in.clusters->size() : 0;
  std::vector<upstream::ClusterStats> cstats(nclusters);
  for (const auto& r : in.workers) {
    for (const auto& [name, s] : r.tcp) tcp[name].add(s);
    for (const auto& [name, s] : r.http) http[name].add(s);
    for (size_t i = 0; i < nclusters && i < r.clusters.size(); ++i)
      cstats[i].add(r.clusters[i].stats);
  }

  w.family("sluice_listener_connections_active", "gauge", "Open downstream connections.");
  for (const auto& [name, n] : in.active_connections) {
    w.sample("sluice_listener_connections_active", label("listener", name), uint64_t{n});
  }
  w.family("sluice_listener_connections_accepted_total", "counter",
           "Downstream connections accepted.");
  for (const auto& [name, s] : tcp) {
    w.sample("sluice_listener_connections_accepted_total", label("listener", name), s.accepted);
  }
  for (const auto& [name, s] : http) {
    w.sample("sluice_listener_connections_accepted_total", label("listener", name), s.accepted);
  }
  w.family("sluice_listener_connections_rejected_total", "counter",
           "Downstream connections refused because max_connections was reached.");
  for (const auto& [name, s] : tcp) {
    w.sample("sluice_listener_connections_rejected_total", label("listener", name),
             s.refused_max_connections);
  }
  for (const auto& [name, s] : http) {
    w.sample("sluice_listener_connections_rejected_total", label("listener", name),
             s.refused_max_connections);
  }

  w.family("sluice_tcp_bytes_total", "counter", "Bytes proxied by TCP listeners.");
  for (const auto& [name, s] : tcp) {
    w.sample("sluice_tcp_bytes_total", label("listener", name) + ",direction=\"upstream\"",
             s.bytes_to_upstream);
    w.sample("sluice_tcp_bytes_total", label("listener", name) + ",direction=\"downstream\"",
             s.bytes_to_downstream);
  }
  w.family("sluice_tcp_connections_closed_total", "counter",
           "TCP proxy connections ended, by reason.");
  for (const auto& [name, s] : tcp) {
    std::string l = label("listener", name);
    w.sample("sluice_tcp_connections_closed_total", l + ",reason=\"completed\"", s.completed);
    w.sample("sluice_tcp_connections_closed_total", l + ",reason=\"idle_timeout\"",
             s.idle_timeouts);
    w.sample("sluice_tcp_connections_closed_total", l + ",reason=\"max_duration\"",
             s.max_duration_reached);
    w.sample("sluice_tcp_connections_closed_total", l + ",reason=\"no_endpoint_reachable\"",
             s.no_endpoint_reachable);
    w.sample("sluice_tcp_connections_closed_total", l + ",reason=\"drain_deadline\"",
             s.drain_closed);
  }

  w.family("sluice_http_requests_total", "counter", "HTTP requests received.");
  for (const auto& [name, s] : http) {
    w.sample("sluice_http_requests_total", label("listener", name), s.requests);
  }
  w.family("sluice_http_responses_total", "counter", "HTTP responses sent, by status class.");
  for (const auto& [name, s] : http) {
    std::string l = label("listener", name);
    const uint64_t classes[] = {s.responses_1xx, s.responses_2xx, s.responses_3xx, s.responses_4xx,
                                s.responses_5xx};
    for (int c = 0; c < 5; ++c) {
      w.sample("sluice_http_responses_total", fmt::format("{},class=\"{}xx\"", l, c + 1),
               classes[c]);
    }
  }
  w.family("sluice_http_local_replies_total", "counter",
           "HTTP responses generated by sluice rather than an upstream.");
  for (const auto& [name, s] : http) {
    w.sample("sluice_http_local_replies_total", label("listener", name), s.local_replies);
  }
  w.family("sluice_http_retries_total", "counter", "Retries of HTTP requests.");
  for (const auto& [name, s] : http) {
    std::string l = label("listener", name);
    w.sample("sluice_http_retries_total", l + ",kind=\"policy\"", s.retries);
    w.sample("sluice_http_retries_total", l + ",kind=\"stale_connection\"",
             s.stale_connection_retries);
  }
  w.family("sluice_http_upstream_timeouts_total", "counter", "Requests that timed out upstream.");
  for (const auto& [name, s] : http) {
    w.sample("sluice_http_upstream_timeouts_total", label("listener", name), s.upstream_timeouts);
  }
  w.family("sluice_http_rejected_requests_total", "counter",
           "Requests refused as malformed or over a limit (4xx from the parser).");
  for (const auto& [name, s] : http) {
    w.sample("sluice_http_rejected_requests_total", label("listener", name), s.parse_errors);
  }
  w.family("sluice_http_request_duration_seconds", "histogram",
           "From the request head to the end of the response.");
  for (const auto& [name, s] : http) {
    w.histogram("sluice_http_request_duration_seconds", label("listener", name),
                s.request_duration);
  }

  if (in.listeners) {
    // Per route: responses by class and the duration histogram, labelled with the route's
    // name (configured, or "<virtual host>/<index>").
    auto for_each_route = [&](auto fn) {
      for (const auto& l : *in.listeners) {
        auto it = http.find(l->name);
        if (it == http.end()) continue;
        for (const auto& vh : l->http.virtual_hosts) {
          for (const auto& r : vh.routes) {
            if (r.id < it->second.routes.size()) {
              fn(label("listener", l->name) + "," + label("route", r.name),
                 it->second.routes[r.id]);
            }
          }
        }
      }
    };
    w.family("sluice_route_responses_total", "counter",
             "HTTP responses per route, by status class.");
    for_each_route([&](const std::string& l, const proxy::http::HttpProxyStats::RouteStats& rs) {
      for (int c = 0; c < 5; ++c) {
        w.sample("sluice_route_responses_total", fmt::format("{},class=\"{}xx\"", l, c + 1),
                 rs.responses[c]);
      }
    });
    w.family("sluice_route_request_duration_seconds", "histogram",
             "Per route: from the request head to the end of the response.");
    for_each_route([&](const std::string& l, const proxy::http::HttpProxyStats::RouteStats& rs) {
      w.histogram("sluice_route_request_duration_seconds", l, rs.duration);
    });
  }

  w.family("sluice_cluster_connect_attempts_total", "counter", "Upstream connect attempts.");
  for (size_t i = 0; i < nclusters; ++i) {
    w.sample("sluice_cluster_connect_attempts_total", label("cluster", (*in.clusters)[i]->name),
             cstats[i].connect_attempts);
  }
  w.family("sluice_cluster_connect_failures_total", "counter", "Upstream connects that failed.");
  for (size_t i = 0; i < nclusters; ++i) {
    w.sample("sluice_cluster_connect_failures_total", label("cluster", (*in.clusters)[i]->name),
             cstats[i].connect_failures);
  }
  w.family("sluice_cluster_no_healthy_endpoint_total", "counter",
           "Requests or connections refused because no endpoint was usable.");
  for (size_t i = 0; i < nclusters; ++i) {
    w.sample("sluice_cluster_no_healthy_endpoint_total", label("cluster", (*in.clusters)[i]->name),
             cstats[i].no_healthy_endpoint);
  }
  w.family("sluice_cluster_overflow_total", "counter",
           "Requests failed fast or not retried because a circuit breaker was full.");
  for (size_t i = 0; i < nclusters; ++i) {
    std::string l = label("cluster", (*in.clusters)[i]->name);
    w.sample("sluice_cluster_overflow_total", l + ",breaker=\"max_active_requests\"",
             cstats[i].overflow_active_requests);
    w.sample("sluice_cluster_overflow_total", l + ",breaker=\"retries\"",
             cstats[i].overflow_retries);
  }

  w.family(
      "sluice_cluster_pool_wait_seconds", "histogram",
      "HTTP: from an attempt's start until it had a connection (a new one's connect included).");
  for (size_t i = 0; i < nclusters; ++i) {
    w.histogram("sluice_cluster_pool_wait_seconds", label("cluster", (*in.clusters)[i]->name),
                cstats[i].pool_wait);
  }

  if (in.health) {
    w.family("sluice_cluster_panic", "gauge", "1 while the cluster balances in panic mode.");
    for (size_t i = 0; i < nclusters; ++i) {
      w.sample("sluice_cluster_panic", label("cluster", (*in.clusters)[i]->name),
               uint64_t{in.health->snapshot(i).panic});
    }
    w.family("sluice_endpoint_usable", "gauge",
             "1 when the endpoint takes new requests (healthy, not ejected, not draining).");
    for (size_t i = 0; i < nclusters; ++i) {
      const auto& snap = in.health->snapshot(i);
      for (size_t e = 0; e < snap.flags.size(); ++e) {
        if (snap.flags[e] & upstream::health::kRemoved) continue;
        std::string l = label("cluster", (*in.clusters)[i]->name) + "," +
                        label("endpoint", (*snap.endpoints)[e].address.to_string());
        w.sample("sluice_endpoint_usable", l, uint64_t{snap.flags[e] == 0});
      }
    }
    w.family("sluice_endpoint_state", "gauge",
             "1 for each reason the endpoint takes no new requests.");
    for (size_t i = 0; i < nclusters; ++i) {
      const auto& snap = in.health->snapshot(i);
      for (size_t e = 0; e < snap.flags.size(); ++e) {
        if (snap.flags[e] & upstream::health::kRemoved) continue;
        std::string l = label("cluster", (*in.clusters)[i]->name) + "," +
                        label("endpoint", (*snap.endpoints)[e].address.to_string());
        uint8_t f = snap.flags[e];
        w.sample("sluice_endpoint_state", l + ",state=\"failed_health_check\"",
                 uint64_t{(f & upstream::health::kFailedActiveCheck) != 0});
        w.sample("sluice_endpoint_state", l + ",state=\"ejected\"",
                 uint64_t{(f & upstream::health::kEjected) != 0});
        w.sample("sluice_endpoint_state", l + ",state=\"draining\"",
                 uint64_t{(f & upstream::health::kDraining) != 0});
      }
    }
    w.family("sluice_endpoint_ejections", "gauge",
             "Ejections counted against the endpoint (its next ejection time multiplier).");
    for (size_t i = 0; i < nclusters; ++i) {
      const auto& snap = in.health->snapshot(i);
      for (size_t e = 0; e < snap.flags.size(); ++e) {
        if (snap.flags[e] & upstream::health::kRemoved) continue;
        w.sample("sluice_endpoint_ejections",
                 label("cluster", (*in.clusters)[i]->name) + "," +
                     label("endpoint", (*snap.endpoints)[e].address.to_string()),
                 uint64_t{in.health->ejections(i, e)});
      }
    }
    const auto& hs = in.health->stats();
    w.family("sluice_health_ejections_total", "counter", "Endpoints ejected by outlier detection.");
    w.sample("sluice_health_ejections_total", "", hs.ejections);
    w.family("sluice_health_check_failures_total", "counter", "Active health checks that failed.");
    w.sample("sluice_health_check_failures_total", "", hs.active_check_failures);
    w.family("sluice_health_panic_entered_total", "counter", "Times a cluster entered panic mode.");
    w.sample("sluice_health_panic_entered_total", "", hs.panic_entered);
  }

  // Per endpoint pool state, summed over workers.
  struct PoolSum {
    upstream::pool::PoolStats s;
    uint64_t active = 0;
  };
  const char* kStates[] = {"connecting", "idle", "busy", "draining"};
  w.family("sluice_endpoint_connections", "gauge", "Pooled upstream connections by state.");
  std::vector<std::vector<PoolSum>> sums(nclusters);
  for (size_t i = 0; i < nclusters; ++i) {
    for (const auto& r : in.workers) {
      if (i >= r.clusters.size()) continue;
      const auto& c = r.clusters[i];
      if (sums[i].size() < c.pools.size()) sums[i].resize(c.pools.size());
      for (size_t e = 0; e < c.pools.size(); ++e) {
        auto& d = sums[i][e].s;
        for (int st = 0; st < upstream::pool::PooledConnection::kStates; ++st) {
          d.state_count[st] += c.pools[e].state_count[st];
        }
        d.connects += c.pools[e].connects;
        d.connect_failures += c.pools[e].connect_failures;
        d.reuses += c.pools[e].reuses;
        d.overflows += c.pools[e].overflows;
        d.pending_timeouts += c.pools[e].pending_timeouts;
        sums[i][e].active += e < c.active_requests.size() ? c.active_requests[e] : 0;
      }
    }
  }
  auto endpoint_label = [&](size_t i, size_t e) {
    std::string name = "?";
    if (in.health) {
      const auto& snap = in.health->snapshot(i);
      if (e < snap.endpoints->size()) name = (*snap.endpoints)[e].address.to_string();
    }
    return label("cluster", (*in.clusters)[i]->name) + "," + label("endpoint", name);
  };
  for (size_t i = 0; i < nclusters; ++i) {
    for (size_t e = 0; e < sums[i].size(); ++e) {
      for (int st = 0; st < 4; ++st) {
        w.sample("sluice_endpoint_connections",
                 fmt::format("{},state=\"{}\"", endpoint_label(i, e), kStates[st]),
                 sums[i][e].s.state_count[st]);
      }
    }
  }
  auto per_endpoint = [&](const char* name, const char* type, const char* help, auto field) {
    w.family(name, type, help);
    for (size_t i = 0; i < nclusters; ++i) {
      for (size_t e = 0; e < sums[i].size(); ++e)
        w.sample(name, endpoint_label(i, e), field(sums[i][e]));
    }
  };
  per_endpoint("sluice_endpoint_active_requests", "gauge", "Requests in flight to the endpoint.",
               [](const PoolSum& p) { return p.active; });
  per_endpoint("sluice_endpoint_connects_total", "counter", "Pool connections opened.",
               [](const PoolSum& p) { return p.s.connects; });
  per_endpoint("sluice_endpoint_connect_failures_total", "counter", "Pool connects that failed.",
               [](const PoolSum& p) { return p.s.connect_failures; });
  per_endpoint("sluice_endpoint_connection_reuses_total", "counter",
               "Requests sent on a reused pooled connection.",
               [](const PoolSum& p) { return p.s.reuses; });
  per_endpoint("sluice_endpoint_pool_overflows_total", "counter",
               "Requests refused because the pool's queue was full.",
               [](const PoolSum& p) { return p.s.overflows; });
  per_endpoint("sluice_endpoint_pool_timeouts_total", "counter",
               "Requests that waited longer than pending_timeout for a connection.",
               [](const PoolSum& p) { return p.s.pending_timeouts; });

  w.family("sluice_ephemeral_ports", "gauge",
           "Local ports available for upstream connections (net.ipv4.ip_local_port_range). Each "
           "connection closed by sluice holds one in TIME_WAIT for 60 s: "
           "rate(sluice_endpoint_connects_total[1m]) * 60 / this is the share in use.");
  w.sample("sluice_ephemeral_ports", "", uint64_t{net::ephemeral_port_count()});

  if (in.dns) {
    const auto& d = *in.dns;
    struct {
      const char* name;
      const char* help;
      uint64_t value;
    } dns_counters[] = {
        {"sluice_dns_lookups_total", "Name lookups asked of the resolver.", d.lookups},
        {"sluice_dns_queries_total", "DNS queries sent to servers.", d.queries},
        {"sluice_dns_cache_hits_total", "Lookups answered from the cache.", d.cache_hits},
        {"sluice_dns_cache_misses_total", "Lookups the cache could not answer.", d.cache_misses},
        {"sluice_dns_timeouts_total", "Lookups that timed out.", d.timeouts},
        {"sluice_dns_nxdomain_total", "NXDOMAIN answers.", d.nxdomain},
        {"sluice_dns_servfail_total", "SERVFAIL answers.", d.servfail},
        {"sluice_dns_failures_total", "Lookups that failed otherwise.", d.failures},
        {"sluice_dns_stale_answers_total", "Stale answers served after a failed refresh.",
         d.stale_served},
    };
    for (const auto& c : dns_counters) {
      w.family(c.name, "counter", c.help);
      w.sample(c.name, "", c.value);
    }
    w.family("sluice_dns_resolution_seconds", "histogram",
             "Time to resolve a name, for lookups that went to the servers.");
    w.histogram("sluice_dns_resolution_seconds", "", d.latency);
    w.family("sluice_dns_resolution_seconds_max", "gauge", "The slowest resolution so far.");
    w.sample("sluice_dns_resolution_seconds_max", "", static_cast<double>(d.latency_us_max) / 1e6);
  }

  w.family("sluice_worker_busy_seconds_total", "counter",
           "Time each worker loop spent handling events, timers and posts.");
  for (size_t i = 0; i < in.workers.size(); ++i) {
    w.sample("sluice_worker_busy_seconds_total", fmt::format("worker=\"{}\"", i),
             static_cast<double>(in.workers[i].loop.busy_ns) / 1e9);
  }
  w.family("sluice_worker_events_total", "counter", "I/O events each worker handled.");
  for (size_t i = 0; i < in.workers.size(); ++i) {
    w.sample("sluice_worker_events_total", fmt::format("worker=\"{}\"", i),
             in.workers[i].loop.events);
  }
  w.family("sluice_worker_iterations_total", "counter", "Loop iterations of each worker.");
  for (size_t i = 0; i < in.workers.size(); ++i) {
    w.sample("sluice_worker_iterations_total", fmt::format("worker=\"{}\"", i),
             in.workers[i].loop.iterations);
  }
  w.family("sluice_worker_longest_iteration_seconds", "gauge",
           "The longest single loop iteration of each worker so far.");
  for (size_t i = 0; i < in.workers.size(); ++i) {
    w.sample("sluice_worker_longest_iteration_seconds", fmt::format("worker=\"{}\"", i),
             static_cast<double>(in.workers[i].loop.longest_iteration_ns) / 1e9);
  }
  return w.take();
}

namespace {

nlohmann::json tcp_json(const net::TcpInfo& t) {
  return {{"rtt_us", t.rtt_us},
          {"rttvar_us", t.rttvar_us},
          {"min_rtt_us", t.min_rtt_us},
          {"retransmits", t.retransmits},
          {"total_retransmits", t.total_retrans},
          {"lost", t.lost},
          {"cwnd", t.snd_cwnd},
          {"ssthresh", t.snd_ssthresh},
          {"mss", t.snd_mss},
          {"delivery_rate_bytes_per_s", t.delivery_rate},
          {"bytes_acked", t.bytes_acked},
          {"bytes_received", t.bytes_received},
          {"congestion", t.congestion}};
}

}  // namespace

std::string render_clusters_json(const MetricsInput& in) {
  nlohmann::json out = nlohmann::json::array();
  size_t n = in.clusters ? in.clusters->size() : 0;
  for (size_t i = 0; i < n; ++i) {
    const auto& cfg = *(*in.clusters)[i];
    nlohmann::json c;
    c["name"] = cfg.name;
    const char* types[] = {"static", "strict_dns", "logical_dns", "dns_srv"};
    const char* policies[] = {"round_robin", "least_request", "random", "ring_hash", "maglev"};
    c["type"] = types[static_cast<int>(cfg.type)];
    c["lb_policy"] = policies[static_cast<int>(cfg.lb.policy)];
    upstream::ClusterStats stats;
    for (const auto& w : in.workers) {
      if (i < w.clusters.size()) stats.add(w.clusters[i].stats);
    }
    c["connect_attempts"] = stats.connect_attempts;
    c["connect_failures"] = stats.connect_failures;
    c["no_healthy_endpoint"] = stats.no_healthy_endpoint;
    nlohmann::json eps = nlohmann::json::array();
    if (in.health) {
      const auto& snap = in.health->snapshot(i);
      c["panic"] = snap.panic;
      for (size_t e = 0; e < snap.flags.size(); ++e) {
        uint8_t f = snap.flags[e];
        nlohmann::json ep;
        ep["address"] = (*snap.endpoints)[e].address.to_string();
        ep["weight"] = (*snap.endpoints)[e].weight;
        if (!(*snap.endpoints)[e].fallbacks.empty()) {
          // logical_dns: the rest of the answer, raced after `address` by each connect.
          nlohmann::json fb = nlohmann::json::array();
          for (const auto& a : (*snap.endpoints)[e].fallbacks) fb.push_back(a.to_string());
          ep["fallbacks"] = std::move(fb);
        }
        ep["usable"] = f == 0;
        ep["health_check_failed"] = (f & upstream::health::kFailedActiveCheck) != 0;
        ep["ejected"] = (f & upstream::health::kEjected) != 0;
        ep["ejections"] = in.health->ejections(i, e);
        ep["draining"] = (f & upstream::health::kDraining) != 0;
        ep["removed"] = (f & upstream::health::kRemoved) != 0;
        uint64_t states[upstream::pool::PooledConnection::kStates] = {};
        uint64_t active = 0, connects = 0, failures = 0;
        for (const auto& w : in.workers) {
          if (i >= w.clusters.size()) continue;
          const auto& wc = w.clusters[i];
          if (e < wc.pools.size()) {
            for (int st = 0; st < upstream::pool::PooledConnection::kStates; ++st) {
              states[st] += wc.pools[e].state_count[st];
            }
            connects += wc.pools[e].connects;
            failures += wc.pools[e].connect_failures;
          }
          if (e < wc.active_requests.size()) active += wc.active_requests[e];
        }
        ep["active_requests"] = active;
        ep["pool"] = {{"connecting", states[0]}, {"idle", states[1]},
                      {"busy", states[2]},       {"draining", states[3]},
                      {"connects", connects},    {"connect_failures", failures}};
        eps.push_back(std::move(ep));
      }
    }
    c["endpoints"] = std::move(eps);
    out.push_back(std::move(c));
  }
  return out.dump(2) + "\n";
}

std::string render_listeners_json(
    const MetricsInput& in, const std::vector<std::pair<std::string, std::string>>& addresses) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, address] : addresses) {
    nlohmann::json l;
    l["name"] = name;
    l["address"] = address;
    auto it = in.active_connections.find(name);
    l["active_connections"] = it == in.active_connections.end() ? 0u : it->second;
    proxy::tcp::TcpProxyStats tcp;
    proxy::http::HttpProxyStats http;
    bool is_http = false;
    for (const auto& w : in.workers) {
      if (auto t = w.tcp.find(name); t != w.tcp.end()) tcp.add(t->second);
      if (auto h = w.http.find(name); h != w.http.end()) {
        http.add(h->second);
        is_http = true;
      }
    }
    l["protocol"] = is_http ? "http" : "tcp";
    if (is_http) {
      l["accepted"] = http.accepted;
      l["requests"] = http.requests;
      l["responses"] = {{"1xx", http.responses_1xx},
                        {"2xx", http.responses_2xx},
                        {"3xx", http.responses_3xx},
                        {"4xx", http.responses_4xx},
                        {"5xx", http.responses_5xx}};
      l["retries"] = http.retries;
    } else {
      l["accepted"] = tcp.accepted;
      l["bytes_to_upstream"] = tcp.bytes_to_upstream;
      l["bytes_to_downstream"] = tcp.bytes_to_downstream;
    }
    out.push_back(std::move(l));
  }
  return out.dump(2) + "\n";
}

std::string render_connections_json(const MetricsInput& in, std::string_view cluster,
                                    std::string_view listener) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t w = 0; w < in.workers.size(); ++w) {
    for (const auto& c : in.workers[w].connections) {
      if (!cluster.empty() && (c.role != "upstream" || c.owner != cluster)) continue;
      if (!listener.empty() && (c.role != "downstream" || c.owner != listener)) continue;
      nlohmann::json j;
      j["worker"] = w;
      j["role"] = c.role;
      j[c.role == "upstream" ? "cluster" : "listener"] = c.owner;
      j["state"] = c.state;
      j["local"] = c.local.to_string();
      j["peer"] = c.peer.to_string();
      if (c.tcp) j["tcp_info"] = tcp_json(*c.tcp);
      out.push_back(std::move(j));
    }
  }
  return out.dump(2) + "\n";
}

}  // namespace sluice::admin
