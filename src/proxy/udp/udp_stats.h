// The counters of one UDP listener on one worker, declared once (base/metric.h says how to
// add one). Loop thread only; merged across workers when scraped.
#pragma once

#include <cstdint>

#include "base/metric.h"

namespace sluice::proxy::udp {

#define SLUICE_UDP_CLOSED_HELP "UDP proxy sessions ended, by reason."
#define SLUICE_UDP_DROPPED_HELP "Datagrams UDP listeners dropped, by reason."
#define SLUICE_UDP_DATAGRAMS_HELP "Datagrams proxied by UDP listeners."
#define SLUICE_UDP_BYTES_HELP "Payload bytes proxied by UDP listeners."
#define SLUICE_UDP_BATCHES_HELP \
  "recvmmsg and sendmmsg calls on UDP listener and session sockets that moved a datagram."

#define SLUICE_UDP_OFFLOAD_HELP \
  "Datagrams UDP listeners received joined by the kernel (gro) or sent joined (gso)."

// clang-format off
#define SLUICE_UDP_PROXY_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                        \
  COUNTER(sessions, "sluice_udp_sessions_total", "", "sessions",                                   \
          "UDP proxy sessions opened (a client address seen without an open session).")            \
  COUNTER(closed_idle, "sluice_udp_sessions_closed_total", "reason=\"idle_timeout\"",              \
          "idle timeouts", SLUICE_UDP_CLOSED_HELP)                                                 \
  COUNTER(closed_responses, "sluice_udp_sessions_closed_total", "reason=\"max_responses\"",        \
          "max responses reached", SLUICE_UDP_CLOSED_HELP)                                         \
  COUNTER(closed_upstream_error, "sluice_udp_sessions_closed_total",                               \
          "reason=\"upstream_error\"", "upstream errors", SLUICE_UDP_CLOSED_HELP)                  \
  COUNTER(closed_endpoint_removed, "sluice_udp_sessions_closed_total",                             \
          "reason=\"endpoint_removed\"", "endpoint removed", SLUICE_UDP_CLOSED_HELP)               \
  COUNTER(closed_drain, "sluice_udp_sessions_closed_total", "reason=\"drain_deadline\"",           \
          "closed at drain deadline", SLUICE_UDP_CLOSED_HELP)                                      \
  COUNTER(closed_shutdown, "sluice_udp_sessions_closed_total", "reason=\"shutdown\"",              \
          "closed at shutdown", SLUICE_UDP_CLOSED_HELP)                                            \
  COUNTER(closed_upgrade, "sluice_udp_sessions_closed_total", "reason=\"upgrade\"",                \
          "ended by a binary upgrade", SLUICE_UDP_CLOSED_HELP)                                     \
  COUNTER(dropped_max_sessions, "sluice_udp_datagrams_dropped_total",                              \
          "reason=\"max_sessions\"", "dropped (max_sessions)", SLUICE_UDP_DROPPED_HELP)            \
  COUNTER(dropped_max_sessions_per_source, "sluice_udp_datagrams_dropped_total",                   \
          "reason=\"max_sessions_per_source\"", "dropped (max_sessions_per_source)",               \
          SLUICE_UDP_DROPPED_HELP)                                                                 \
  COUNTER(dropped_too_large, "sluice_udp_datagrams_dropped_total", "reason=\"too_large\"",         \
          "dropped (too large)", SLUICE_UDP_DROPPED_HELP)                                          \
  COUNTER(dropped_no_endpoint, "sluice_udp_datagrams_dropped_total",                               \
          "reason=\"no_healthy_endpoint\"", "dropped (no healthy endpoint)",                       \
          SLUICE_UDP_DROPPED_HELP)                                                                 \
  COUNTER(dropped_draining, "sluice_udp_datagrams_dropped_total", "reason=\"draining\"",           \
          "dropped (draining)", SLUICE_UDP_DROPPED_HELP)                                           \
  COUNTER(dropped_send_failed, "sluice_udp_datagrams_dropped_total", "reason=\"send_failed\"",     \
          "dropped (send failed)", SLUICE_UDP_DROPPED_HELP)                                        \
  COUNTER(datagrams_to_upstream, "sluice_udp_datagrams_total", "direction=\"upstream\"",           \
          "datagrams to upstream", SLUICE_UDP_DATAGRAMS_HELP)                                      \
  COUNTER(datagrams_to_downstream, "sluice_udp_datagrams_total", "direction=\"downstream\"",       \
          "datagrams to downstream", SLUICE_UDP_DATAGRAMS_HELP)                                    \
  COUNTER(bytes_to_upstream, "sluice_udp_bytes_total", "direction=\"upstream\"",                   \
          "bytes to upstream", SLUICE_UDP_BYTES_HELP)                                              \
  COUNTER(bytes_to_downstream, "sluice_udp_bytes_total", "direction=\"downstream\"",               \
          "bytes to downstream", SLUICE_UDP_BYTES_HELP)                                            \
  COUNTER(receive_batches, "sluice_udp_batches_total", "call=\"recvmmsg\"", "recvmmsg calls",      \
          SLUICE_UDP_BATCHES_HELP)                                                                 \
  COUNTER(send_batches, "sluice_udp_batches_total", "call=\"sendmmsg\"", "sendmmsg calls",         \
          SLUICE_UDP_BATCHES_HELP)                                                                 \
  COUNTER(gro_datagrams, "sluice_udp_offload_datagrams_total", "offload=\"gro\"",                  \
          "datagrams received joined (GRO)", SLUICE_UDP_OFFLOAD_HELP)                              \
  COUNTER(gso_datagrams, "sluice_udp_offload_datagrams_total", "offload=\"gso\"",                  \
          "datagrams sent joined (GSO)", SLUICE_UDP_OFFLOAD_HELP)                                  \
  COUNTER(sockets_reused, "sluice_udp_upstream_sockets_reused_total", "",                          \
          "upstream sockets reused",                                                               \
          "UDP proxy sessions that got the upstream socket of an ended session (disconnected, "    \
          "connected again from a new port) instead of a new socket.")
// clang-format on

struct UdpProxyStats {
  SLUICE_METRIC_MEMBERS(SLUICE_UDP_PROXY_STATS)
  SLUICE_METRIC_MERGE(UdpProxyStats, SLUICE_UDP_PROXY_STATS)
  void add(const UdpProxyStats& o) { add_declared(o); }
};

}  // namespace sluice::proxy::udp
