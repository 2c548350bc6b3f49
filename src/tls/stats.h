// The TLS counters of one listener on one worker, declared once (base/metric.h says how to
// add one). Loop thread only; merged across workers when scraped. Only listeners with `tls:`
// report them.
#pragma once

#include <cstdint>

#include "base/metric.h"

namespace sluice::tls {

#define SLUICE_TLS_FAILURES_HELP "Downstream TLS handshakes that failed, by reason."

// clang-format off
#define SLUICE_TLS_LISTENER_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                     \
  COUNTER(handshakes, "sluice_tls_handshakes_total", "", "handshakes",                             \
          "Downstream TLS handshakes completed.")                                                  \
  COUNTER(resumed, "sluice_tls_resumed_total", "", "resumed",                                      \
          "Downstream TLS handshakes that resumed a session (a ticket).")                          \
  COUNTER(failed_protocol, "sluice_tls_handshake_failures_total", "reason=\"protocol\"",           \
          "failed (protocol)", SLUICE_TLS_FAILURES_HELP)                                           \
  COUNTER(failed_timeout, "sluice_tls_handshake_failures_total", "reason=\"timeout\"",             \
          "failed (timeout)", SLUICE_TLS_FAILURES_HELP)                                            \
  COUNTER(failed_closed, "sluice_tls_handshake_failures_total", "reason=\"closed\"",               \
          "failed (closed by the client)", SLUICE_TLS_FAILURES_HELP)                               \
  COUNTER(early_data_requests, "sluice_tls_early_data_requests_total", "",                        \
          "requests served from early data",                                                       \
          "Requests forwarded from TLS early data (0-RTT), with Early-Data: 1.")                   \
  COUNTER(early_data_held, "sluice_tls_early_data_held_total", "", "early requests held",          \
          "Connections whose request in early data waited for the handshake (not a safe method).")  \
  COUNTER(early_data_rejected, "sluice_tls_early_data_rejected_total", "",                         \
          "early requests answered 425",                                                           \
          "Requests in early data answered 425 Too Early (not a safe method, reject_unsafe).")    \
  COUNTER(client_certificates, "sluice_tls_client_certificates_total", "",                         \
          "client certificates verified",                                                          \
          "Downstream TLS handshakes with a verified client certificate.")                         \
  HISTOGRAM(handshake_duration, "sluice_tls_handshake_duration_seconds", "",                    \
            "handshake duration", "From the connection's first byte to the finished handshake.")
// clang-format on

struct ListenerTlsStats {
  SLUICE_METRIC_MEMBERS(SLUICE_TLS_LISTENER_STATS)
  SLUICE_METRIC_MERGE(ListenerTlsStats, SLUICE_TLS_LISTENER_STATS)
  void add(const ListenerTlsStats& o) { add_declared(o); }
};

}  // namespace sluice::tls
