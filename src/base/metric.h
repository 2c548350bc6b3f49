// Metrics, declared once.
//
// Every counter, gauge and histogram of sluice is one line of an X-macro list beside the
// struct that holds it: SLUICE_HTTP_PROXY_STATS (proxy/http/http_stats.h),
// SLUICE_TCP_PROXY_STATS (proxy/tcp/tcp_stats.h), SLUICE_CLUSTER_STATS (upstream/cluster.h),
// SLUICE_POOL_STATS (upstream/pool/conn_pool.h), SLUICE_HEALTH_STATS, SLUICE_RESOLVER_STATS,
// SLUICE_LOOP_STATS, and the gauges the admin layer computes (admin/metrics.h). From that
// line come the struct field, the merge of the workers' copies (add()), the Prometheus family
// (name, HELP, TYPE, labels), the key in the admin JSON views (/listeners, /clusters) and the
// item of the exit summary. Nothing else names a metric.
//
// How to add a metric:
//   1. Add a line to the list of the struct whose owner counts it, e.g. in
//      SLUICE_CLUSTER_STATS:
//        COUNTER(connect_timeouts, "sluice_cluster_connect_timeouts_total", "",
//                "connect timeouts", "Upstream connects that timed out.")
//      - field: the member, moved with ++stats.field on the owner's thread (and the JSON key);
//      - name: the Prometheus family. Several lines may share one family when they differ by
//        their constant labels (3rd argument, e.g. "reason=\"idle_timeout\"") and agree on the
//        kind and the help text;
//      - summary: its words in the exit summary (counters are summarised at exit);
//      - help: one sentence for # HELP.
//      The labels saying where the struct lives (listener, route, cluster, endpoint, worker)
//      are added by the renderer; declare only constant ones.
//   2. Move it where the event happens. That is all: admin/metrics.cc renders every declared
//      line, and tests/unit/admin/metrics_test.cc fails when one is missing from /metrics.
//
// Kinds: COUNTER (only goes up; its name ends in _total), GAUGE (a level; the workers' levels
// add up), HISTOGRAM (base/histogram.h: observes microseconds, exports seconds), and COUNTERS /
// GAUGES (an array field: one sample per value of a Dimension label, e.g. connections by
// state). Units come from the field's name: a field with an `_ns` part is exported in seconds
// (/ 1e9), one with an `_us` part in seconds (/ 1e6); the family's name then says _seconds.
//
// Threads: a struct belongs to one thread (a worker's listener or cluster, or the main thread);
// nothing is shared or atomic on the request path. The main thread asks each worker for a copy
// of its structs and merges them with add().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/histogram.h"

namespace sluice::metric {

enum class Kind { kCounter, kGauge, kHistogram };

constexpr const char* to_string(Kind k) {
  switch (k) {
    case Kind::kCounter:
      return "counter";
    case Kind::kGauge:
      return "gauge";
    case Kind::kHistogram:
      return "histogram";
  }
  return "?";
}

// The label an array field's slots are told apart by, and the value of each slot. Slots past
// the values are not metrics (PoolStats counts closed connections in one, for its own use).
struct Dimension {
  const char* key;
  std::span<const char* const> values;
};

// One declared line.
struct Desc {
  const char* field;
  const char* name;
  const char* labels;  // constant labels of its samples (`reason="completed"`), or ""
  const char* summary;
  const char* help;
  Kind kind;
  const Dimension* dimension = nullptr;  // COUNTERS / GAUGES
  size_t extent = 0;                     // COUNTERS / GAUGES: the array's slots
};

// Field units per exported unit (see the units above): the value exported is field / this.
constexpr double divisor(std::string_view field) {
  auto has_part = [field](std::string_view part) {
    for (size_t at = field.find(part); at != std::string_view::npos;
         at = field.find(part, at + 1)) {
      size_t end = at + part.size();
      if (end == field.size() || field[end] == '_') return true;
    }
    return false;
  };
  if (has_part("_ns")) return 1e9;
  if (has_part("_us")) return 1e6;
  return 1;
}

inline void merge(uint64_t& into, uint64_t from) {
  into += from;
}
inline void merge(Histogram& into, const Histogram& from) {
  into.add(from);
}
template <size_t N>
void merge(uint64_t (&into)[N], const uint64_t (&from)[N]) {
  for (size_t i = 0; i < N; ++i) into[i] += from[i];
}

}  // namespace sluice::metric

// --- generators (used through SLUICE_METRIC_MEMBERS below) --------------------------------

#define SLUICE_METRIC_FIELD_(field, name, labels, summary, help) uint64_t field = 0;
#define SLUICE_METRIC_HISTOGRAM_FIELD_(field, name, labels, summary, help) \
  ::sluice::Histogram field;
#define SLUICE_METRIC_ARRAY_FIELD_(field, extent, name, dimension, summary, help) \
  uint64_t field[extent] = {};

#define SLUICE_METRIC_MERGE_(field, ...) ::sluice::metric::merge(field, o.field);

#define SLUICE_METRIC_VISIT_(kind, field, name, labels, summary, help)                          \
  fn(::sluice::metric::Desc{#field, name, labels, summary, help, ::sluice::metric::Kind::kind}, \
     field);
#define SLUICE_METRIC_VISIT_COUNTER_(...) SLUICE_METRIC_VISIT_(kCounter, __VA_ARGS__)
#define SLUICE_METRIC_VISIT_GAUGE_(...) SLUICE_METRIC_VISIT_(kGauge, __VA_ARGS__)
#define SLUICE_METRIC_VISIT_HISTOGRAM_(...) SLUICE_METRIC_VISIT_(kHistogram, __VA_ARGS__)
#define SLUICE_METRIC_VISIT_ARRAY_(kind, field, extent, name, dimension, summary, help)    \
  static_assert((dimension).values.size() <= (extent));                                    \
  fn(::sluice::metric::Desc{#field, name, "", summary, help, ::sluice::metric::Kind::kind, \
                            &(dimension), (extent)},                                       \
     std::span(field).first((dimension).values.size()));
#define SLUICE_METRIC_VISIT_COUNTERS_(...) SLUICE_METRIC_VISIT_ARRAY_(kCounter, __VA_ARGS__)
#define SLUICE_METRIC_VISIT_GAUGES_(...) SLUICE_METRIC_VISIT_ARRAY_(kGauge, __VA_ARGS__)

// Inside a struct: the fields of LIST, and visit(fn), which calls fn(const Desc&, value) for
// each line in order, value being a uint64_t, a Histogram or a span of uint64_t (arrays);
// const on a const struct.
#define SLUICE_METRIC_VISIT_ALL_(LIST)                                                           \
  LIST(SLUICE_METRIC_VISIT_COUNTER_, SLUICE_METRIC_VISIT_GAUGE_, SLUICE_METRIC_VISIT_HISTOGRAM_, \
       SLUICE_METRIC_VISIT_COUNTERS_, SLUICE_METRIC_VISIT_GAUGES_)
#define SLUICE_METRIC_MEMBERS(LIST)                                                \
  LIST(SLUICE_METRIC_FIELD_, SLUICE_METRIC_FIELD_, SLUICE_METRIC_HISTOGRAM_FIELD_, \
       SLUICE_METRIC_ARRAY_FIELD_, SLUICE_METRIC_ARRAY_FIELD_)                     \
  template <typename Fn>                                                           \
  void visit(Fn&& fn) const {                                                      \
    SLUICE_METRIC_VISIT_ALL_(LIST)                                                 \
  }                                                                                \
  template <typename Fn>                                                           \
  void visit(Fn&& fn) {                                                            \
    SLUICE_METRIC_VISIT_ALL_(LIST)                                                 \
  }

// Inside a struct of per-worker copies: add_declared(o) merges another worker's copy of LIST's
// lines into this one (counters, gauges and histograms add up); the struct's add() calls it.
#define SLUICE_METRIC_MERGE(Self, LIST)                                                          \
  void add_declared(const Self& o) {                                                             \
    LIST(SLUICE_METRIC_MERGE_, SLUICE_METRIC_MERGE_, SLUICE_METRIC_MERGE_, SLUICE_METRIC_MERGE_, \
         SLUICE_METRIC_MERGE_)                                                                   \
  }
