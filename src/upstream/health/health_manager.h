// HealthManager: decides endpoint health for every cluster, on the main thread's loop.
// It runs the active checks, combines the outcomes all workers report into one streak per
// endpoint (outlier detection), ejects and returns endpoints, applies the panic threshold,
// and publishes each cluster's new HealthSnapshot through `publish` (which hands it to the
// workers). State changes are logged here, once, not by each worker.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/metric.h"
#include "event/loop.h"
#include "event/timer.h"
#include "upstream/cluster.h"
#include "upstream/health/health.h"
#include "upstream/health/health_checker.h"

namespace sluice::upstream::health {

// The health manager's counters (main thread), declared once (base/metric.h says how to add
// one).
// clang-format off
#define SLUICE_HEALTH_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                           \
  COUNTER(ejections, "sluice_health_ejections_total", "", "ejections",                             \
          "Endpoints ejected by outlier detection.")                                               \
  COUNTER(ejections_refused_max_percent, "sluice_health_ejections_refused_total", "",              \
          "ejections refused (max_ejection_percent)",                                              \
          "Ejections not made because max_ejection_percent of the cluster already was.")           \
  COUNTER(active_check_failures, "sluice_health_check_failures_total", "", "failed checks",        \
          "Active health checks that failed.")                                                     \
  COUNTER(panic_entered, "sluice_health_panic_entered_total", "", "panic mode entered",            \
          "Times a cluster entered panic mode.")                                                   \
  COUNTER(endpoint_sets_refused, "sluice_health_endpoint_sets_refused_total", "",                  \
          "endpoint sets refused (table full)",                                                    \
          "Endpoint sets from discovery not applied because the cluster's endpoint table would "   \
          "need more slots than it may have.")                                                     \
  COUNTER(slots_reclaimed, "sluice_health_endpoint_slots_reclaimed_total", "",                     \
          "endpoint slots reclaimed",                                                              \
          "Slots of departed endpoints freed for new ones once no worker used them.")
// clang-format on

struct HealthStats {
  SLUICE_METRIC_MEMBERS(SLUICE_HEALTH_STATS)
};

class HealthManager final : public OutcomeSink, private event::EndOfIteration {
 public:
  using Publish = std::function<void(size_t cluster, std::shared_ptr<const HealthSnapshot>)>;

  HealthManager(event::Loop& loop, std::vector<std::shared_ptr<const ClusterConfig>> clusters,
                Publish publish);
  ~HealthManager();

  // Reload. A new cluster gets the next index (indices are never reused: workers and
  // reports in flight name clusters by index); `tls` is the main thread's context for its
  // checks. A static cluster starts with its configured endpoints (the first snapshot the
  // workers get has them; its endpoint source then reports the same list). Returns its index.
  size_t add_cluster(std::shared_ptr<const ClusterConfig> config,
                     std::shared_ptr<tls::ClientContext> tls);
  // The cluster's settings changed: every endpoint keeps its state (health, ejections,
  // draining); changed check settings start new checkers. The endpoints change only through
  // set_endpoints (a static cluster's new list comes from its endpoint source, as any other
  // cluster's set). Also brings back a retired cluster. Publishes.
  void update_cluster(size_t cluster, std::shared_ptr<const ClusterConfig> config,
                      std::shared_ptr<tls::ClientContext> tls);
  // The cluster left the configuration: its checks and timers stop; its state stays, for a
  // cluster of the same name that comes back.
  void retire_cluster(size_t cluster);
  // The index of the cluster of that name, retired or not.
  std::optional<size_t> find_cluster(std::string_view name) const;
  bool retired(size_t cluster) const { return clusters_[cluster]->retired; }
  // Whether every endpoint of the cluster with active checks has had its first answer.
  bool checked(size_t cluster) const;
  size_t cluster_count() const { return clusters_.size(); }
  const std::shared_ptr<const ClusterConfig>& cluster_config(size_t cluster) const {
    return clusters_[cluster]->config;
  }

  // Starts the active checks. `on_first_round` runs once every endpoint with active checks
  // has had an answer, or after `timeout`, whichever comes first.
  void start(Duration timeout, std::function<void()> on_first_round);
  // The main thread's TLS context per cluster (config order; null: no `tls:`), for checks.
  // Before start().
  void set_tls(std::vector<std::shared_ptr<tls::ClientContext>> contexts);
  // Stops the checks and timers (at drain).
  void stop();

  ClusterShared& shared(size_t cluster) const { return *clusters_[cluster]->shared; }
  // Where workers report outcomes for `cluster`; null when it has no outlier detection.
  OutcomeSink* sink_for(size_t cluster) {
    return clusters_[cluster]->config->outlier ? this : nullptr;
  }
  // Any thread.
  void report(size_t cluster, size_t endpoint, Outcome outcome) override;
  // Loop thread: stops sending new requests to the endpoint (`draining`), or lets them go to
  // it again.
  void set_draining(size_t cluster, size_t endpoint, bool draining);
  // Loop thread: discovery's new endpoint set for the cluster. New addresses join (checked
  // first when active checks are on) in a free slot or a new one, missing ones are flagged
  // kRemoved, returning ones lose the flag. Returns false (and changes nothing) when the
  // table would need more than ClusterShared::kMaxEndpoints slots.
  bool set_endpoints(size_t cluster, const std::vector<EndpointConfig>& endpoints);
  // How many workers must release a removed endpoint before its slot is free (default 1).
  void set_worker_count(size_t workers) { workers_ = workers; }
  // Slots in the cluster's endpoint table (listed, removed but still in use, and free ones
  // below the highest slot in use).
  size_t table_size(size_t cluster) const { return clusters_[cluster]->table.size(); }
  // What an operator or outlier detection decided about one endpoint, for a binary upgrade's
  // new process (active check results are not kept: its own first round decides them).
  struct EndpointState {
    std::string cluster;
    std::string address;  // "ip:port"
    bool draining = false;
    uint32_t ejections = 0;
    int64_t ejected_ms_left = -1;  // -1: not ejected
  };
  std::vector<EndpointState> export_state() const;
  // Applies what another process exported, to the endpoints of the same cluster and address
  // (others are ignored); publishes the clusters it changed. Returns how many it applied.
  size_t import_state(const std::vector<EndpointState>& states);
  // The cluster's index and the endpoint's, by name and "ip:port".
  std::optional<std::pair<size_t, size_t>> find_endpoint(std::string_view cluster,
                                                         std::string_view address) const;

  const HealthStats& stats() const { return stats_; }
  // The cluster's snapshot as last published (or the initial one).
  const HealthSnapshot& snapshot(size_t cluster) const { return *clusters_[cluster]->last; }
  std::shared_ptr<const HealthSnapshot> snapshot_ptr(size_t cluster) const {
    return clusters_[cluster]->last;
  }
  // What the endpoint's last active check said ("status 200", "NOT_SERVING", ...; "" before
  // its first answer).
  const std::string& last_check(size_t cluster, size_t endpoint) const {
    return clusters_[cluster]->endpoints[endpoint].last_check;
  }
  // Ejections of one endpoint so far (the multiplier of its next ejection time).
  uint32_t ejections(size_t cluster, size_t endpoint) const {
    return clusters_[cluster]->endpoints[endpoint].ejections;
  }

 private:
  struct Endpoint {
    std::unique_ptr<HealthChecker> checker;
    bool answered = false;
    bool failed_check = false;
    uint32_t check_passes = 0;  // consecutive, after the first answer
    uint32_t check_failures = 0;
    std::string last_check;  // the last answer's detail
    uint32_t consecutive_5xx = 0;
    uint32_t consecutive_gateway = 0;
    bool ejected = false;
    uint32_t ejections = 0;  // multiplies the ejection time; decays while healthy
    std::unique_ptr<event::Timer> return_timer;
    bool draining = false;
    bool removed = false;
    bool free = false;      // removed and released by every worker: the slot is unused
    uint32_t removals = 0;  // the number of its last removal (the one workers release)
    size_t releases = 0;    // workers that released the current removal
  };
  struct ClusterState {
    std::shared_ptr<const ClusterConfig> config;
    std::unique_ptr<ClusterShared> shared;
    std::vector<EndpointConfig> table;  // grows only; by endpoint index
    std::vector<Endpoint> endpoints;    // state, by endpoint index
    bool panic = false;
    size_t usable = 0;   // endpoints with no flag, as last published
    size_t members = 0;  // endpoints not removed, as last published
    std::unique_ptr<event::Timer> decay_timer;
    std::shared_ptr<const HealthSnapshot> last;
    std::shared_ptr<tls::ClientContext> tls;
    std::string tls_host;
    bool retired = false;  // no longer in the configuration
    // Slots freed since the last snapshot: published once, at the end of the iteration.
    bool release_pending = false;
    uint32_t last_removal = 0;  // removals are numbered 1, 2, ... across the cluster's slots
  };

  std::unique_ptr<HealthChecker> make_checker(size_t cluster, size_t endpoint);
  // Outlier detection's timers and counters, when the cluster has it.
  void prepare_outlier(size_t cluster);
  // Puts `endpoint` in a free slot, or a new one; returns the slot.
  size_t add_endpoint(size_t cluster, const EndpointConfig& endpoint);
  void mark_removed(ClusterState& c, size_t endpoint);
  // A worker released removal `removal` of the slot (posted by ClusterShared::release).
  void on_release(size_t cluster, size_t endpoint, uint32_t removal);
  // EndOfIteration: the snapshots of the clusters whose slots were freed in this iteration.
  void on_iteration_end() override;
  void on_outcome(size_t cluster, size_t endpoint, Outcome outcome);
  void on_check(size_t cluster, size_t endpoint, bool passed, const std::string& detail);
  void eject(size_t cluster, size_t endpoint, const std::string& why);
  void end_ejection(size_t cluster, size_t endpoint);
  void decay(size_t cluster);
  // Success-rate and failure-percentage ejection over the interval's requests.
  void judge_rates(size_t cluster);
  void set_streak(ClusterState& c, size_t endpoint);
  void publish(size_t cluster);
  void check_first_round();
  void first_round_done();
  void log_panic(const ClusterState& c);
  std::string endpoint_name(const ClusterState& c, size_t endpoint) const;

  event::Loop& loop_;
  std::vector<std::unique_ptr<ClusterState>> clusters_;
  Publish publish_;
  std::function<void()> on_first_round_;
  event::Timer first_round_timer_;
  bool started_ = false;
  size_t workers_ = 1;
  HealthStats stats_;
};

}  // namespace sluice::upstream::health
