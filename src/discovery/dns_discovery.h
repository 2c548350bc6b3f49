// DnsDiscovery: keeps the endpoint sets of DNS clusters (strict_dns, logical_dns, dns_srv)
// in step with DNS, on the main thread. A good answer is asked for again shortly before its
// TTL runs out (a tenth of the TTL early, at most 30 s), bypassing the cache, so a cluster
// never waits on an expired name; a negative answer when its negative TTL has run out. A
// changed set goes to the HealthManager, which publishes it to the workers (new addresses
// join, departed ones drain). A failed or empty answer never empties a cluster: each name
// keeps its last good addresses, and that is logged.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dns/resolver.h"
#include "event/loop.h"
#include "event/timer.h"
#include "upstream/cluster.h"
#include "upstream/health/health_manager.h"

namespace sluice::discovery {

class DnsDiscovery {
 public:
  // `clusters` in config order (indices as the HealthManager's); static ones are ignored.
  DnsDiscovery(event::Loop& loop, dns::Resolver& resolver, upstream::health::HealthManager& health,
               const std::vector<std::shared_ptr<const upstream::ClusterConfig>>& clusters);

  // A reload. The cluster at the HealthManager's `index` is new or changed: a DNS cluster
  // whose names (or type) changed is resolved again now, one whose names did not keeps its
  // answers; a cluster that is no longer a DNS one stops being resolved.
  void set_cluster(size_t index, std::shared_ptr<const upstream::ClusterConfig> config);
  // The cluster left the configuration: no more queries for it.
  void remove_cluster(size_t index);
  // Whether the cluster's names have had their first answer (good or not) since set_cluster;
  // true for a cluster this does not resolve.
  bool answered(size_t index) const;
  ~DnsDiscovery();

  // Resolves every DNS cluster; `on_first_round` runs once each has had one answer (good
  // or not). Runs it at once when there is no DNS cluster.
  void start(std::function<void()> on_first_round);
  void stop();

 private:
  struct Target {
    std::string host;
    uint16_t port = 0;
    uint32_t weight = 1;
    std::vector<net::Address> last;  // the last good addresses
    bool resolved = false;
    MonoTime refresh_at{};  // a good answer's refresh time: ask the servers, not the cache
  };
  struct ClusterState {
    size_t index = 0;
    std::shared_ptr<const upstream::ClusterConfig> config;
    std::vector<Target> targets;  // strict/logical: the configured names; dns_srv: SRV targets
    std::unique_ptr<event::Timer> timer;
    uint64_t round = 0;  // answers of an older round are ignored
    size_t pending = 0;
    Duration next{0};
    MonoTime srv_refresh_at{};  // dns_srv: as Target::refresh_at, for the SRV records
    bool answered = false;
    bool removed = false;
  };

  ClusterState* find(size_t index);
  void set_targets(ClusterState& c);

  void refresh(ClusterState& c);
  void keep_refresh_time(MonoTime& refresh_at, const dns::Answer& a) const;
  bool due(MonoTime refresh_at) const {
    return refresh_at != MonoTime{} && loop_.now() >= refresh_at;
  }
  void resolve_targets(ClusterState& c);
  void on_target(ClusterState& c, uint64_t round, size_t t, const dns::Answer& a);
  void finish_round(ClusterState& c);
  void check_first_round();

  event::Loop& loop_;
  dns::Resolver& resolver_;
  upstream::health::HealthManager& health_;
  std::vector<std::unique_ptr<ClusterState>> clusters_;
  std::function<void()> on_first_round_;
  bool stopped_ = false;
};

}  // namespace sluice::discovery
