// Sources: the endpoint sources (EndpointSource) of the clusters whose endpoints come from
// one (type: file), by the HealthManager's cluster index, on the main thread. Each new set
// a source reports goes to HealthManager::set_endpoints, which publishes it. DNS clusters
// are resolved by DnsDiscovery, static ones need none.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "discovery/endpoint_source.h"
#include "event/loop.h"
#include "event/timer.h"
#include "upstream/cluster.h"
#include "upstream/health/health_manager.h"

namespace sluice::discovery {

class Sources {
 public:
  // `clusters` in config order (indices as the HealthManager's).
  Sources(event::Loop& loop, upstream::health::HealthManager& health,
          const std::vector<std::shared_ptr<const upstream::ClusterConfig>>& clusters);
  ~Sources();

  // Starts every source; `on_first_round` runs once each has had its first read (good or
  // not), at once when there is none.
  void start(std::function<void()> on_first_round);
  void stop();
  // A reload: the cluster at `index` is new or changed. A source whose settings are the same
  // keeps running (and its set); otherwise a new one starts.
  void set_cluster(size_t index, std::shared_ptr<const upstream::ClusterConfig> config);
  void remove_cluster(size_t index);
  // Whether the cluster's source has had its first read; true for a cluster without one.
  bool answered(size_t index) const;
  // The first source's staleness_problem(), "" when none has one.
  std::string staleness_problem() const;
  // The cluster's source (null: none).
  const EndpointSource* source(size_t index) const;

 private:
  struct Entry {
    size_t index = 0;
    std::shared_ptr<const upstream::ClusterConfig> config;
    std::unique_ptr<EndpointSource> source;
  };
  std::unique_ptr<EndpointSource> make(size_t index, const upstream::ClusterConfig& config);
  Entry* find(size_t index);
  void check_first_round();

  event::Loop& loop_;
  upstream::health::HealthManager& health_;
  std::vector<Entry> entries_;
  std::function<void()> on_first_round_;
  // While the first round is pending: a source whose first attempt failed reports no set,
  // so its state is looked at every kFirstRoundPoll.
  event::Timer first_round_timer_;
  static constexpr Duration kFirstRoundPoll = std::chrono::milliseconds(50);
  bool started_ = false;
};

}  // namespace sluice::discovery
