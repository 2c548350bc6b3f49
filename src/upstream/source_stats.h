// The counters of one cluster's endpoint source (discovery/endpoint_source.h), declared here,
// below both the discovery layer that counts them and the admin layer that exports them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>

#include "base/metric.h"

namespace sluice::upstream {

// What a source knows of its endpoints: not read yet (starting), the last read or answer was
// applied (synced), or the last one failed and the last good set stays (stale).
enum class SourceState : uint8_t { kStarting, kSynced, kStale };
inline constexpr const char* kSourceStates[] = {"starting", "synced", "stale"};
inline constexpr size_t kSourceStateCount = 3;
static_assert(std::size(kSourceStates) == kSourceStateCount);
static_assert(kSourceStateCount == static_cast<size_t>(SourceState::kStale) + 1);
inline constexpr metric::Dimension kSourceStateDimension{"state", kSourceStates};
constexpr const char* to_string(SourceState s) {
  return kSourceStates[static_cast<size_t>(s)];
}

// clang-format off
#define SLUICE_SOURCE_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                           \
  GAUGES(state, ::sluice::upstream::kSourceStateCount, "sluice_discovery_source_state",                \
         ::sluice::upstream::kSourceStateDimension, "state",                                       \
         "1 for the state the cluster's endpoint source is in.")                                   \
  GAUGE(endpoints, "sluice_discovery_endpoints", "", "endpoints",                                  \
        "Endpoints the source lists now (the last good set).")                                     \
  COUNTER(updates, "sluice_discovery_updates_total", "", "updates",                                \
          "Endpoint sets the source read and applied.")                                            \
  COUNTER(failures, "sluice_discovery_failures_total", "", "failures",                             \
          "Reads that failed (missing or unreadable source, invalid document, a DNS round with "   \
          "a failed name): the last good set was kept.")                                           \
  COUNTER(invalid_entries, "sluice_discovery_invalid_entries_total", "", "invalid entries",        \
          "Entries skipped because they did not describe an endpoint (logged with the entry).")   \
  COUNTER(reconnects, "sluice_discovery_reconnects_total", "", "reconnects",                       \
          "Registry calls made again after a failure, a dead watch or a compaction (etcd).")      \
  GAUGE(revision, "sluice_discovery_revision", "", "revision",                                     \
        "The last registry revision the source has seen (etcd; 0 for other sources).")             \
  GAUGE(stale_ns, "sluice_discovery_stale_seconds", "", "stale for",                              \
        "How long the source has served its last good set without reaching the registry "         \
        "(etcd; 0 while synced).")                                                                 \
  COUNTER(auth_renewals, "sluice_discovery_auth_renewals_total", "", "auth renewals",              \
          "Auth tokens etcd refused (expired, or lost when a member restarted) or that went "      \
          "unanswered, and replaced by authenticating again (etcd).")
// clang-format on

struct SourceStats {
  SLUICE_METRIC_MEMBERS(SLUICE_SOURCE_STATS)
  void set_state(SourceState s) {
    for (size_t i = 0; i < std::size(state); ++i) state[i] = i == static_cast<size_t>(s);
  }
};

}  // namespace sluice::upstream
