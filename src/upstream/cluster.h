// Cluster configuration (a named set of endpoints and how to connect to them) and the
// per-worker Cluster state built from it. ClusterConfig is immutable once loaded and shared
// by all workers through the config snapshot; a Cluster belongs to one worker.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/units.h"
#include "event/loop.h"
#include "net/address.h"
#include "net/socket_options.h"
#include "upstream/lb/load_balancer.h"
#include "upstream/pool/conn_pool.h"

namespace sluice::upstream {

struct EndpointConfig {
  net::Address address;
  uint32_t weight = 1;
};

struct ClusterConfig {
  static constexpr uint32_t kMaxWeight = 1000;

  std::string name;
  Duration connect_timeout = std::chrono::seconds(5);
  uint32_t max_connect_attempts = 3;
  std::optional<net::Address> source_address;  // bound with IP_BIND_ADDRESS_NO_PORT
  net::SocketOptions socket_options;
  std::vector<EndpointConfig> endpoints;
  // HTTP connection pools; max_connections is per endpoint across all workers.
  pool::PoolConfig pool;
};

// Counters for one cluster on one worker; merged across workers when exported.
struct ClusterStats {
  uint64_t connect_attempts = 0;
  uint64_t connect_failures = 0;
  uint64_t connect_timeouts = 0;
  uint64_t connect_refused = 0;
  uint64_t no_endpoint_reachable = 0;
};

class Cluster {
 public:
  // `workers` shares the pool's max_connections among the workers.
  Cluster(event::Loop& loop, std::shared_ptr<const ClusterConfig> config, uint32_t workers);

  const ClusterConfig& config() const { return *config_; }
  lb::LoadBalancer& load_balancer() { return *lb_; }
  ClusterStats& stats() { return stats_; }
  // This worker's HTTP connection pool for endpoint `index`, made on first use.
  pool::ConnPool& pool(size_t index);
  void drain_pools();
  // Opens every endpoint's pool now when min_idle asks for warm connections.
  void warm_up_pools();

 private:
  event::Loop& loop_;
  std::shared_ptr<const ClusterConfig> config_;
  std::unique_ptr<lb::LoadBalancer> lb_;
  pool::PoolConfig worker_pool_config_;
  std::vector<std::unique_ptr<pool::ConnPool>> pools_;
  ClusterStats stats_;
};

}  // namespace sluice::upstream
