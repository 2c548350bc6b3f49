// EndpointSource: where a cluster's endpoint set comes from over time (every cluster type has
// one; discovery::Sources makes and owns them). A source only reports addresses (with
// weight); the HealthManager alone decides which are usable. Each source belongs to one
// cluster and runs on the main thread's loop; it never blocks.
//
// The contract every source keeps:
// - it reports whole sets (`on_update`), never deltas, so a missed event cannot leave a
//   stale endpoint behind: the receiver diffs;
// - losing the backing store (file gone, registry unreachable) never reports an empty set:
//   the last good one stays, the state says kStale, and it is logged once;
// - bad entries are logged with where they came from, counted and skipped; the rest applies.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "upstream/endpoint.h"
#include "upstream/source_stats.h"

namespace sluice::discovery {

class EndpointSource {
 public:
  // A new endpoint set (the whole set, possibly empty when the source says so itself).
  using OnUpdate = std::function<void(std::vector<upstream::EndpointConfig>)>;

  virtual ~EndpointSource() = default;
  // Starts watching; the first read or answer (good or not) leaves kStarting.
  virtual void start() = 0;
  virtual void stop() = 0;
  // The cluster type the source serves: "static", "strict_dns", "logical_dns", "dns_srv",
  // "file" or "etcd".
  virtual const char* kind() const = 0;
  // Where it reads from, for logs and /clusters (a path, a list of URLs).
  virtual std::string target() const = 0;
  virtual upstream::SourceState state() const = 0;
  virtual const upstream::SourceStats& stats() const = 0;
  // Why sluice should say not-ready on this source's account (stale past a configured bound),
  // though it still serves its last good set; "" when there is no such reason.
  virtual std::string staleness_problem() const { return {}; }
  // Whether startup (and a reload adding the cluster) may go on without waiting for it: by
  // default once the first read or answer came, good or not.
  virtual bool first_round_done() const { return state() != upstream::SourceState::kStarting; }
};

}  // namespace sluice::discovery
