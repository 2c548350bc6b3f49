// The counters of one TCP listener on one worker, declared once (base/metric.h says how to
// add one). Loop thread only; merged across workers when scraped.
#pragma once

#include <cstdint>

#include "base/metric.h"

namespace sluice::proxy::tcp {

#define SLUICE_TCP_CLOSED_HELP "TCP proxy connections ended, by reason."
#define SLUICE_TCP_BYTES_HELP "Bytes proxied by TCP listeners."
#define SLUICE_TCP_SNI_HELP \
  "Connections of TCP listeners with sni_routes, by what their ClientHello decided."

// Lines sharing a family share its help text (the listener families with HTTP's).
// clang-format off
#define SLUICE_TCP_PROXY_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                        \
  COUNTER(accepted, "sluice_listener_connections_accepted_total", "", "accepted",                  \
          "Downstream connections accepted.")                                                      \
  COUNTER(refused_max_connections, "sluice_listener_connections_rejected_total", "",               \
          "refused (max_connections)",                                                             \
          "Downstream connections refused because max_connections was reached.")                   \
  COUNTER(sni_routed, "sluice_tcp_sni_connections_total", "outcome=\"routed\"", "routed by SNI",   \
          SLUICE_TCP_SNI_HELP)                                                                     \
  COUNTER(sni_default, "sluice_tcp_sni_connections_total", "outcome=\"default\"",                  \
          "SNI default cluster", SLUICE_TCP_SNI_HELP)                                              \
  COUNTER(sni_not_tls, "sluice_tcp_sni_connections_total", "outcome=\"not_tls\"", "not TLS",       \
          SLUICE_TCP_SNI_HELP)                                                                     \
  COUNTER(sni_malformed, "sluice_tcp_sni_connections_total", "outcome=\"malformed\"",              \
          "malformed ClientHello", SLUICE_TCP_SNI_HELP)                                            \
  COUNTER(sni_timeouts, "sluice_tcp_sni_connections_total", "outcome=\"timeout\"",                 \
          "ClientHello timeouts", SLUICE_TCP_SNI_HELP)                                             \
  COUNTER(completed, "sluice_tcp_connections_closed_total", "reason=\"completed\"", "completed",   \
          SLUICE_TCP_CLOSED_HELP)                                                                  \
  COUNTER(idle_timeouts, "sluice_tcp_connections_closed_total", "reason=\"idle_timeout\"",         \
          "idle timeouts", SLUICE_TCP_CLOSED_HELP)                                                 \
  COUNTER(no_endpoint_reachable, "sluice_tcp_connections_closed_total",                            \
          "reason=\"no_endpoint_reachable\"", "no endpoint reachable", SLUICE_TCP_CLOSED_HELP)     \
  COUNTER(drain_closed, "sluice_tcp_connections_closed_total", "reason=\"drain_deadline\"",        \
          "closed at drain deadline", SLUICE_TCP_CLOSED_HELP)                                      \
  COUNTER(bytes_to_upstream, "sluice_tcp_bytes_total", "direction=\"upstream\"",                   \
          "bytes to upstream", SLUICE_TCP_BYTES_HELP)                                              \
  COUNTER(bytes_to_downstream, "sluice_tcp_bytes_total", "direction=\"downstream\"",               \
          "bytes to downstream", SLUICE_TCP_BYTES_HELP)                                            \
  COUNTER(max_duration_reached, "sluice_tcp_connections_closed_total", "reason=\"max_duration\"",  \
          "max duration reached", SLUICE_TCP_CLOSED_HELP)                                          \
  COUNTER(downstream_resets, "sluice_tcp_connections_closed_total",                                \
          "reason=\"downstream_reset\"", "downstream resets", SLUICE_TCP_CLOSED_HELP)              \
  COUNTER(upstream_resets, "sluice_tcp_connections_closed_total", "reason=\"upstream_reset\"",     \
          "upstream resets", SLUICE_TCP_CLOSED_HELP)
// clang-format on

// Counters for one listener on one worker; merged across workers when exported.
struct TcpProxyStats {
  SLUICE_METRIC_MEMBERS(SLUICE_TCP_PROXY_STATS)
  SLUICE_METRIC_MERGE(TcpProxyStats, SLUICE_TCP_PROXY_STATS)
  void add(const TcpProxyStats& o) { add_declared(o); }
};

}  // namespace sluice::proxy::tcp
