// Sources: the endpoint source (EndpointSource) of every cluster, by the HealthManager's
// cluster index, on the main thread: StaticSource (static), DnsSource (strict_dns,
// logical_dns, dns_srv), FileSource (file) and EtcdSource (etcd). Each new set a source
// reports goes to HealthManager::set_endpoints, which publishes it. Sources also owns the
// DNS resolver the DNS sources share, made when the first DNS cluster appears.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "discovery/dns_source.h"
#include "discovery/endpoint_source.h"
#include "dns/resolver.h"
#include "event/loop.h"
#include "event/timer.h"
#include "upstream/cluster.h"
#include "upstream/health/health_manager.h"

namespace sluice::discovery {

class Sources {
 public:
  // `clusters` in config order (indices as the HealthManager's); `dns` the settings of the
  // resolver, made now when a cluster is a DNS one (an error when it cannot be), or later by
  // the first reload that adds one.
  static Result<std::unique_ptr<Sources>> create(
      event::Loop& loop, upstream::health::HealthManager& health,
      const std::vector<std::shared_ptr<const upstream::ClusterConfig>>& clusters,
      dns::ResolverConfig dns);
  ~Sources();

  // Starts every source; `on_first_round` runs once each has had its first read or answer
  // (good or not), at once when none is pending.
  void start(std::function<void()> on_first_round);
  void stop();
  // A reload: the cluster at `index` is new or changed. A source whose settings are the same
  // keeps running (and its set: a DNS cluster whose names did not change keeps its answers);
  // otherwise a new one starts.
  void set_cluster(size_t index, std::shared_ptr<const upstream::ClusterConfig> config);
  void remove_cluster(size_t index);
  // Whether the cluster's source has had its first read or answer; true without a source.
  bool answered(size_t index) const;
  // The first source's staleness_problem(), "" when none has one.
  std::string staleness_problem() const;
  // The cluster's source (null: none, a DNS cluster without a resolver).
  const EndpointSource* source(size_t index) const;
  // The DNS clusters' resolver (null until a DNS cluster needs one).
  dns::Resolver* resolver() { return resolver_.get(); }
  const dns::Resolver* resolver() const { return resolver_.get(); }

 private:
  struct Entry {
    size_t index = 0;
    std::shared_ptr<const upstream::ClusterConfig> config;
    std::unique_ptr<EndpointSource> source;
    DnsSource* dns = nullptr;  // `source`, when it is one (a reload hands it the new config)
  };
  Sources(event::Loop& loop, upstream::health::HealthManager& health, dns::ResolverConfig dns);
  Status make_resolver();
  // The cluster's entry; its source null when it has none.
  Entry make(size_t index, std::shared_ptr<const upstream::ClusterConfig> config);
  Entry* find(size_t index);
  void check_first_round();

  event::Loop& loop_;
  upstream::health::HealthManager& health_;
  dns::ResolverConfig dns_config_;
  // Before entries_: destroyed after the DNS sources (answers it gives then find them gone).
  std::unique_ptr<dns::Resolver> resolver_;
  std::vector<Entry> entries_;
  std::function<void()> on_first_round_;
  // While the first round is pending: a file or etcd source whose first attempt failed
  // reports no set, so its state is looked at every kFirstRoundPoll.
  event::Timer first_round_timer_;
  static constexpr Duration kFirstRoundPoll = std::chrono::milliseconds(50);
  bool started_ = false;
};

}  // namespace sluice::discovery
