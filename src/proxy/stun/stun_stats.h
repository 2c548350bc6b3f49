// The counters of one STUN listener on one worker, declared once (base/metric.h says how to
// add one). Loop thread only; merged across workers when scraped.
#pragma once

#include <cstdint>

#include "base/metric.h"

namespace sluice::proxy::stun {

#define SLUICE_STUN_RESPONSES_HELP "STUN responses sent, by status (success, 400, 401, 420)."
#define SLUICE_STUN_DROPPED_HELP "Datagrams STUN listeners dropped without an answer, by reason."
#define SLUICE_STUN_BYTES_HELP                                                          \
  "Bytes of the STUN requests answered and of their responses: sent / received is the " \
  "listener's amplification ratio."

#define SLUICE_STUN_TCP_HELP \
  "TCP connections to STUN listeners: accepted, or refused over max_tcp_connections."

// clang-format off
#define SLUICE_STUN_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                             \
  COUNTER(success, "sluice_stun_responses_total", "status=\"success\"", "success responses",       \
          SLUICE_STUN_RESPONSES_HELP)                                                              \
  COUNTER(bad_request, "sluice_stun_responses_total", "status=\"400\"", "400 responses",           \
          SLUICE_STUN_RESPONSES_HELP)                                                              \
  COUNTER(unknown_attribute, "sluice_stun_responses_total", "status=\"420\"", "420 responses",     \
          SLUICE_STUN_RESPONSES_HELP)                                                              \
  COUNTER(unauthenticated, "sluice_stun_responses_total", "status=\"401\"", "401 responses",        \
          SLUICE_STUN_RESPONSES_HELP)                                                              \
  COUNTER(dropped_not_stun, "sluice_stun_dropped_total", "reason=\"not_stun\"",                    \
          "dropped (not STUN)", SLUICE_STUN_DROPPED_HELP)                                          \
  COUNTER(dropped_malformed, "sluice_stun_dropped_total", "reason=\"malformed\"",                  \
          "dropped (malformed)", SLUICE_STUN_DROPPED_HELP)                                         \
  COUNTER(dropped_bad_fingerprint, "sluice_stun_dropped_total", "reason=\"bad_fingerprint\"",      \
          "dropped (bad FINGERPRINT)", SLUICE_STUN_DROPPED_HELP)                                   \
  COUNTER(dropped_not_request, "sluice_stun_dropped_total", "reason=\"not_request\"",              \
          "dropped (not a request)", SLUICE_STUN_DROPPED_HELP)                                     \
  COUNTER(dropped_rate_limited, "sluice_stun_dropped_total", "reason=\"rate_limited\"",            \
          "dropped (rate limited)", SLUICE_STUN_DROPPED_HELP)                                      \
  COUNTER(dropped_send_failed, "sluice_stun_dropped_total", "reason=\"send_failed\"",              \
          "dropped (send failed)", SLUICE_STUN_DROPPED_HELP)                                       \
  COUNTER(tcp_accepted, "sluice_stun_tcp_connections_total", "result=\"accepted\"",                \
          "TCP connections accepted", SLUICE_STUN_TCP_HELP)                                        \
  COUNTER(tcp_refused, "sluice_stun_tcp_connections_total", "result=\"refused\"",                  \
          "TCP connections closed at once (max_tcp_connections)", SLUICE_STUN_TCP_HELP)            \
  COUNTER(bytes_received, "sluice_stun_bytes_total", "direction=\"received\"",                    \
          "bytes of answered requests", SLUICE_STUN_BYTES_HELP)                                    \
  COUNTER(bytes_sent, "sluice_stun_bytes_total", "direction=\"sent\"", "bytes of responses",       \
          SLUICE_STUN_BYTES_HELP)
// clang-format on

struct StunStats {
  SLUICE_METRIC_MEMBERS(SLUICE_STUN_STATS)
  SLUICE_METRIC_MERGE(StunStats, SLUICE_STUN_STATS)
  void add(const StunStats& o) { add_declared(o); }
};

}  // namespace sluice::proxy::stun
